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
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

HELD = (signal.SIGINT, signal.SIGTERM)
_noted: list[int] = []  # Ctrl-Cs the command line's handler has seen, while it runs


def _ctrl_c(signum, frame):
    """The command line's SIGINT handler: Python's own (KeyboardInterrupt), and a note of it.
    CPython drops the exception when the signal lands in a callback (a weakref callback of
    importlib's module locks: "Exception ignored in ... KeyboardInterrupt"), so a Ctrl-C during a
    lazy import could be lost and the command run on to log its plan; the note keeps it."""
    _noted.append(signum)
    raise KeyboardInterrupt


def ctrl_c_noted() -> bool:
    """Whether Ctrl-C was pressed while the command line ran (``ctrl_c_noting``)."""
    return bool(_noted)


@contextmanager
def ctrl_c_noting() -> Iterator[None]:
    """While the command line runs, Ctrl-C raises KeyboardInterrupt as usual and is noted too, so
    that ``signals_held`` writes nothing after one whose exception was lost, and the command
    exits 130. Nested uses (the console script, then ``cli.main``) keep the outer note. Nothing
    changes outside the main thread, nor where SIGINT is ignored (a background job of a shell
    without job control: Python leaves it ignored too) or handled by code that is not Python."""
    current = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    if current is None or current is _ctrl_c or current == signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, _ctrl_c)
    _noted.clear()
    unraisable = sys.unraisablehook

    def quiet_when_noted(exc):  # CPython's "Exception ignored in ..." for the dropped Ctrl-C: noted, so unsaid
        if not (isinstance(exc.exc_value, KeyboardInterrupt) and _noted):
            unraisable(exc)
    sys.unraisablehook = quiet_when_noted
    try:
        yield
    finally:
        sys.unraisablehook = unraisable
        signal.signal(signal.SIGINT, current)
        _noted.clear()


@contextmanager
def ctrl_c_unnoted() -> Iterator[None]:
    """Python's own Ctrl-C handler for the block, under ``ctrl_c_noting``: for ``serve``, whose
    Ctrl-C is its ordinary end. asyncio installs its handler only over Python's own, so with the
    noting one uvicorn's graceful stop went on to exit 130 where it had exited 0."""
    if signal.getsignal(signal.SIGINT) is not _ctrl_c:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, _ctrl_c)


@contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C or SIGTERM arriving in the block takes effect when the block ends, through the
    handler it was meant for. Outside the main thread (a library caller's thread, a server's
    worker), where Python handles no signal, the block runs as it is; so does a signal whose
    handler was not installed from Python (it cannot be put back). A Ctrl-C noted earlier whose
    exception was lost (``ctrl_c_noting``) stops the block before it starts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _noted:
        raise KeyboardInterrupt
    caught: list[int] = []
    previous = {s: h for s in HELD if (h := signal.getsignal(s)) is not None}
    for s in previous:
        signal.signal(s, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for s in dict.fromkeys(caught):
            signal.raise_signal(s)
