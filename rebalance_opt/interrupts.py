"""Writes that must not be cut in two by Ctrl-C or SIGTERM.

A rebalance writes two things that must agree: its audit entry and its basket (``generate``), or a
chunk's entries and the count of what is logged (``batch``). Python runs a signal handler between
any two bytecodes, so Ctrl-C could land after the log's commit and before the basket was put in
place (an entry for a basket that was then discarded), or before the batch counted the commit
(an interrupted batch reported 2 entries logged with 4 in the log).

The hold covers the wait for the log's write lock too (at most 60 s, ``audit.BUSY_TIMEOUT``): a
Ctrl-C then takes effect once the entry is written. It mostly did before as well, since SQLite's
busy wait does not return to Python, where the handler runs, until it has the lock or gives up.
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

HELD = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C or SIGTERM arriving in the block takes effect when the block ends, through the
    handler it was meant for. Outside the main thread (a library caller's thread, a server's
    worker), where Python handles no signal, the block runs as it is; so does a signal whose
    handler was not installed from Python (it cannot be put back)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {s: signal.getsignal(s) for s in HELD}
    previous = {s: h for s, h in previous.items() if h is not None}
    for s in previous:
        signal.signal(s, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for s in dict.fromkeys(caught):
            signal.raise_signal(s)
