"""Process pools whose workers die with the process that made them (Linux), for the batch's local
engine and the backtest: a batch or backtest killed outright leaves no orphaned workers."""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor

PR_SET_PDEATHSIG = 1  # prctl(2) option, <linux/prctl.h>


def local_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool for the engine's work on this machine (the batch's local engine, the
    backtest's strategies). On Linux its workers are forked (``multiprocessing``'s
    "fork" context, named rather than left to the default, which Python 3.14 makes "forkserver":
    the engine imported and the heap frozen before the fork are what the workers start from) and
    die with this process (``_die_with_parent``). Elsewhere: the platform's default start method,
    and no such guarantee."""
    if not sys.platform.startswith("linux"):
        return ProcessPoolExecutor(max_workers=workers)
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"),
                               initializer=_die_with_parent, initargs=(os.getpid(),))


def _die_with_parent(parent: int) -> None:
    """Pool worker initializer (Linux): the worker is sent SIGKILL when the batch process dies, so a
    batch killed with SIGKILL (the OOM killer, ``kill -9``) leaves no orphaned workers planning on
    (~135 MB each) for nobody. ``parent`` is the pool owner's pid, taken before the fork.

    ``prctl(PR_SET_PDEATHSIG)`` ties the signal to the *thread* that forked the worker, not to the
    process: it fires when that thread exits. That is the thread that ran ``_run_local``: with the
    fork start method, ``ProcessPoolExecutor`` (3.11 to 3.13) forks every worker at once, in
    ``_launch_processes`` called by the first ``submit`` in the caller's thread, never from its
    management thread (which forks only to replace workers retired by ``max_tasks_per_child``,
    refused with fork; a worker that dies breaks the pool instead). That thread stays in
    ``_run_local``'s ``with`` block, whose exit joins every worker, so it outlives them all while
    its process lives; the signal comes only when the batch process itself is gone. A thread in
    each worker polling ``os.getppid()`` would be needed only if the forking thread could end
    first, so there is none.

    SIGKILL, not SIGTERM: a forked worker inherits its parent's Python signal handlers (a server's,
    say), which may catch SIGTERM and carry on; and a worker has nothing to clean up (the parent
    alone writes the log and the basket). If the parent died between the fork and this call, the
    signal will never come, and the worker has already been re-parented (``os.getppid()`` is no
    longer ``parent``): it exits at once.

    A no-op where there is no ``prctl`` (not Linux, or a libc without it); never an exception, which
    would break the pool."""
    if not sys.platform.startswith("linux"):
        return
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # on failure (-1): no signal; the check below still holds
    if os.getppid() != parent:
        os._exit(1)
