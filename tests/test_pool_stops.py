"""An interrupted pool stops at once. ``ProcessPoolExecutor``'s exit waits for every task submitted:
a batch interrupted by Ctrl-C planned every account left before it exited (about 10 s of a
2,000-account batch), and one whose chunk generator was left suspended hung at exit with its idle
workers (a review: 2 of 10 interrupted ``--out`` batches). A forked worker also inherited the
batch's SIGTERM handler and printed a traceback when the signal reached it."""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

from benchmarks.synth import households, write_accounts
from rebalance_opt import pool
from rebalance_opt.audit import LogLocation
from rebalance_opt.batch import account_files, run_batch

from .conftest import ROOT, signalled, wait_for_first_entry


def finish_later(marker: str, seconds: float) -> None:
    """A long task: it says it finished by creating ``marker``."""
    time.sleep(seconds)
    Path(marker).write_text("finished")


def alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def signal_handlers() -> tuple:
    return signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)


def test_a_pool_left_by_an_exception_kills_its_workers_instead_of_finishing_their_tasks(tmp_path):
    markers = [str(tmp_path / f"task{k}") for k in range(4)]
    with pytest.raises(KeyboardInterrupt):
        with pool.local_pool(2) as workers:
            futures = [workers.submit(finish_later, m, 20.0) for m in markers]
            processes = [psutil.Process(pid) for pid in workers._processes]
            raise KeyboardInterrupt
    assert not any(Path(m).exists() for m in markers)  # no task ran to its end, queued or running
    assert not any(alive(p) for p in processes)
    assert all(f.done() for f in futures)


def test_a_pool_left_normally_still_finishes_every_task(tmp_path):
    markers = [str(tmp_path / f"task{k}") for k in range(3)]
    with pool.local_pool(2) as workers:
        for m in markers:
            workers.submit(finish_later, m, 0.0)
    assert all(Path(m).exists() for m in markers)


def test_pool_workers_ignore_ctrl_c_and_take_sigterms_default_action():
    # the parent's handlers (the batch's SIGTERM handler raised Terminated in a worker) are not theirs
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        with pool.local_pool(1) as workers:
            assert workers.submit(signal_handlers).result(timeout=60) == (signal.SIG_IGN, signal.SIG_DFL)
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_ctrl_c_while_the_batch_logs_a_chunk_stops_the_pool_before_run_batch_returns(tmp_path, ctrl_c_raises):
    # Ctrl-C in the parent's own work (here the progress callback) left the chunks' generator
    # suspended, and its pool alive: the process then hung at exit, joining idle workers
    write_accounts(tmp_path / "a", list(households(24, seed=4)))
    seen = []

    def progress(n):
        seen.append(n)
        raise KeyboardInterrupt
    def children() -> set[int]:  # alive, not zombies; another test's helpers (a resource tracker) are left out below
        return {c.pid for c in psutil.Process().children(recursive=True) if alive(c)}
    before = children()
    with pytest.raises(KeyboardInterrupt) as stopped:
        run_batch(account_files(tmp_path / "a"), workers=2, chunk=2, log=LogLocation(tmp_path / "log.sqlite", "--log"),
                  progress=progress)
    # while the interruption is still held (the CLI holds it to say how far the batch got, and its
    # traceback holds run_batch's frame), no worker is left
    assert seen == [2] and children() - before == set() and stopped.value is not None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals to a process group")
@pytest.mark.parametrize("signum, code, engine", [(signal.SIGINT, 130, "local"), (signal.SIGTERM, 143, "local"),
                                                  (signal.SIGINT, 130, "dask")])
def test_a_signal_to_the_whole_process_group_ends_the_batch_without_a_traceback(tmp_path, signum, code, engine):
    # Ctrl-C at a terminal, or a service manager's SIGTERM, reaches the workers too (each Dask
    # worker printed a KeyboardInterrupt traceback, and a warning per chunk it was planning)
    import subprocess
    if engine == "dask":
        pytest.importorskip("dask.distributed")
    write_accounts(tmp_path / "a", list(households(300, seed=3)))
    log = tmp_path / "audit.sqlite"
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "rebalance", "batch", str(tmp_path / "a"),
                             "--workers", "2", "--chunk", "2", "--log", str(log), "--engine", engine],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for_first_entry(log)
    err = signalled(proc, signum, group=True)
    if proc.returncode == 0 or "the batch had finished" in err:
        pytest.skip("the batch finished before the signal")  # a very fast machine
    assert proc.returncode == code and err.startswith("interrupted: "), err
    assert "Traceback" not in err and "Exception ignored" not in err and "WARNING" not in err, err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals to a process group")
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_backtest_says_so_and_leaves_no_report_folder(tmp_path, signum, code):
    # SIGTERM ended a backtest with -15 and no word, its staged report left in --out for good
    pytest.importorskip("skfolio", reason="the bundled prices ship in skfolio (the backtest extra)")
    import subprocess
    out = tmp_path / "report"
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "backtest", "--years", "12", "--workers", "2",
                             "--no-plots", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines = []
    for line in proc.stderr:  # until the first strategy has finished: the pool is at work
        lines.append(line)
        if "tax paid" in line:
            break
    err = signalled(proc, signum, group=True)
    if proc.returncode == 0:
        pytest.skip("the backtest finished before the signal")  # a very fast machine
    assert proc.returncode == code, "".join(lines) + err
    assert f"interrupted: no report written ({out} left as it was)" in err and "Traceback" not in err
    assert not out.exists()


def half_a_result_then_killed() -> None:
    """A worker killed as it sends its result: the header of a 1 MB message and 10 bytes of it in
    the pool's result pipe (what SIGKILL mid-send leaves), then the worker is gone."""
    import gc
    import multiprocessing.queues
    import struct
    results = [q for q in gc.get_objects() if type(q) is multiprocessing.queues.SimpleQueue]
    os.write(results[0]._writer.fileno(), struct.pack("!i", 1_000_000) + b"x" * 10)
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_pool_stopped_after_a_worker_died_mid_result_does_not_leave_its_manager_waiting(tmp_path):
    # the manager thread waited for the rest of that message for ever, and the interpreter's exit
    # with it: a batch that printed "interrupted" and never exited (a review, under load)
    with pytest.raises(KeyboardInterrupt):
        with pool.local_pool(1) as workers:
            future = workers.submit(half_a_result_then_killed)
            manager = workers._executor_manager_thread
            deadline = time.monotonic() + 60
            while any(alive(psutil.Process(p)) for p in list(workers._processes)) and time.monotonic() < deadline:
                time.sleep(0.05)  # until the worker is gone
            raise KeyboardInterrupt
    manager.join(timeout=60)
    assert not manager.is_alive() and future.done()
