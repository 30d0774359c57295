"""Process pools whose workers die with the process that made them (Linux), for the batch's local
engine and the backtest: a batch or backtest killed outright leaves no orphaned workers."""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

PR_SET_PDEATHSIG = 1  # prctl(2) option, <linux/prctl.h>


@contextmanager
def local_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A process pool for the engine's work on this machine (the batch's local engine, the
    backtest's strategies), as a ``with`` block. On Linux its workers are forked
    (``multiprocessing``'s "fork" context, named rather than left to the default, which Python
    3.14 makes "forkserver": the engine imported and the heap frozen before the fork are what the
    workers start from) and die with this process (``_die_with_parent``). Elsewhere: the
    platform's default start method, and no such guarantee.

    A block left by an exception (Ctrl-C, SIGTERM, an error; a generator closed while it waits in
    the block) stops the workers at once (``_stop_now``). ``ProcessPoolExecutor``'s own exit
    waits for every task submitted: an interrupted batch went on planning every account left
    before it exited (10 s of a 2,000-account batch), and one whose generator was left suspended
    hung at exit, its idle workers waiting for work (a review). The workers ignore Ctrl-C and
    take SIGTERM's default action (``_worker_start``): this process alone handles both."""
    if sys.platform.startswith("linux"):
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"),
                                   initializer=_worker_start, initargs=(os.getpid(),))
    else:
        pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_start, initargs=(None,))
    try:
        yield pool
    except BaseException:
        _stop_now(pool)
        raise
    pool.shutdown(wait=True)


def _stop_now(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and kill the workers: they hold nothing to save (the parent
    alone writes the log, the basket and the report)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # no public way before 3.14
    manager = getattr(pool, "_executor_manager_thread", None)
    for p in processes:
        try:
            p.kill()
        except (OSError, ValueError):  # gone already, or closed
            pass
    # A worker killed while it sent a result leaves half a message in the result pipe, and the
    # manager thread waits for the rest for ever (this process holds the pipe's write end too);
    # then so did the interpreter's exit, which joins that thread (a batch hung after Ctrl-C under
    # load: a review). Closing this process's write end, the workers' gone with them, ends the
    # wait (EOF): the manager then fails what was left, as for any broken pool, and closes its pipes.
    writer = getattr(getattr(pool, "_result_queue", None), "_writer", None)
    if writer is not None and processes:
        for p in processes:
            try:
                p.join(timeout=10)  # dead: its end of the pipe is closed
            except (OSError, ValueError, AssertionError):
                pass
        try:
            writer.close()
        except OSError:
            pass
    # The manager is waited for before the shutdown: beside it, CPython 3.11's exit hook could
    # write to a pipe it was closing ("Exception ignored ... Bad file descriptor").
    if manager is not None:
        manager.join(timeout=30)
    pool.shutdown(wait=manager is None or not manager.is_alive(), cancel_futures=True)


def _worker_start(parent: int | None) -> None:
    """Pool worker initializer. A forked worker inherits the parent's Python signal handlers: the
    batch's SIGTERM handler raised ``Terminated`` in a worker, with a traceback on the batch's
    stderr (a review), and Ctrl-C at a terminal reaches every process of the group. So the worker
    ignores SIGINT and takes SIGTERM's default action; the parent stops it (``_stop_now``). Then
    on Linux ``_die_with_parent``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if parent is not None:
        _die_with_parent(parent)


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
