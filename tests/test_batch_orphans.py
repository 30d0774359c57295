"""The local pool's workers die with the batch: a batch killed with SIGKILL (the OOM killer, ``kill -9``)
left its workers running on as orphans (~135 MB each), found by fuzzing. And a worker lost mid-batch
still fails only its chunks' accounts."""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from benchmarks.synth import households, write_accounts
from rebalance_opt import batch, pool
from rebalance_opt.audit import LogLocation
from rebalance_opt.batch import account_files, run_batch

from .conftest import ROOT, signalled, wait_for_first_entry
from .test_audit import fill

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux's")
PR_GET_PDEATHSIG = 2


def death_signal_and_parent() -> tuple[int, int]:
    """In a pool worker: the signal it gets when its parent dies (0: none), and its parent's pid."""
    libc = ctypes.CDLL(None, use_errno=True)
    sig = ctypes.c_int(-1)
    assert libc.prctl(PR_GET_PDEATHSIG, ctypes.byref(sig), 0, 0, 0) == 0
    return sig.value, os.getppid()


@linux_only
def test_a_pool_worker_is_forked_by_the_batch_and_gets_sigkill_when_it_dies():
    with pool.local_pool(1) as workers:
        assert workers.submit(death_signal_and_parent).result(timeout=60) == (signal.SIGKILL, os.getpid())


@linux_only
def test_a_worker_whose_parent_died_before_it_started_exits_at_once():
    # The death signal only comes for a death after prctl: a worker whose parent was already gone
    # (re-parented: its parent pid is no longer the batch's) must not start working for nobody.
    fork = multiprocessing.get_context("fork")
    orphan = fork.Process(target=pool._die_with_parent, args=(-1,))  # -1: no process's pid
    orphan.start()
    orphan.join(30)
    assert orphan.exitcode == 1
    child = fork.Process(target=pool._die_with_parent, args=(os.getpid(),))  # its real parent: carries on
    child.start()
    child.join(30)
    assert child.exitcode == 0


def _gone(p: psutil.Process) -> bool:
    """Exited (a zombie no one has reaped yet counts: it holds no memory and runs nothing)."""
    try:
        return not p.is_running() or p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _cpu(p: psutil.Process) -> float:
    try:
        t = p.cpu_times()
        return t.user + t.system
    except psutil.NoSuchProcess:
        return 0.0


@linux_only
def test_a_batch_killed_with_sigkill_leaves_no_pool_workers_behind(tmp_path):
    folder = tmp_path / "accounts"
    write_accounts(folder, list(households(200, seed=5)))
    log = tmp_path / "audit.sqlite"
    fill(log, 1)
    # Another process's write transaction on the log: the batch blocks at its first append (for up
    # to the 60 s busy timeout) with its pool started, so it is certainly still running when killed,
    # however fast or loaded the machine.
    holder = sqlite3.connect(log, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    stderr = tmp_path / "stderr.txt"
    workers: list[psutil.Process] = []
    with stderr.open("wb") as err:
        proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "rebalance", "batch", str(folder),
                                 "--engine", "local", "--workers", "2", "--log", str(log), "--json"],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
    try:
        main = psutil.Process(proc.pid)
        deadline = time.monotonic() + 120
        # Both workers forked and planning (past their initializer: each has used some CPU).
        while not (len(workers) == 2 and all(_cpu(w) >= 0.05 for w in workers)):
            assert proc.poll() is None, f"the batch ended before it was killed:\n{stderr.read_text()}"
            assert time.monotonic() < deadline, f"no 2 busy pool workers seen: {workers}"
            workers = main.children()
            time.sleep(0.02)
        assert all(w.ppid() == proc.pid for w in workers)

        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        deadline = time.monotonic() + 10
        while not all(_gone(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = [w.pid for w in workers if not _gone(w)]
        assert not left, f"pool workers {left} outlived the batch killed with SIGKILL"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for w in workers:
            if not _gone(w):  # is_running() checks the create time: never another process given the pid
                w.kill()
        holder.execute("ROLLBACK")
        holder.close()


def dies_on_the_second_chunk(task, *args, **kwargs):
    """``plan_chunk_in_worker``, but the worker given the chunk of account 3 is killed outright."""
    if any(index == 3 for index, _ in task):
        os.kill(os.getpid(), signal.SIGKILL)
    return batch.plan_chunk(task, *args)


def test_a_chunk_that_kills_its_pool_worker_every_time_fails_alone_and_the_rest_are_planned(tmp_path, monkeypatch):
    # BrokenProcessPool: one dead process broke the pool, and every chunk not yet returned failed
    # with it (262 of 300 accounts in a review); now the rest are resubmitted and only the chunk
    # that kills its process each time it is tried fails (exit 5).
    write_accounts(tmp_path / "a", list(households(12, seed=7)))
    files = account_files(tmp_path / "a")
    monkeypatch.setattr(batch, "plan_chunk_in_worker", dies_on_the_second_chunk)
    outcome = run_batch(files, engine="local", workers=2, chunk=3, log=None)
    assert [Path(r.source) for r in outcome.results] == files  # every account, in input order
    lost = [r for r in outcome.failures if "the worker process planning it was lost, each time it was tried" in r.error]
    assert [files.index(Path(r.source)) for r in lost] == [3, 4, 5]
    assert len(outcome.plans) == len(files) - 3 and all(r.exit_code == 1 for r in lost)


def dies_once(task, *args, **kwargs):
    """``plan_chunk_in_worker``, but the first worker given the chunk of account 3 is killed (an
    OOM kill that does not come back); the marker file says it happened."""
    marker = Path(os.environ["DIES_ONCE_MARKER"])
    if any(index == 3 for index, _ in task) and not marker.exists():
        marker.write_text("killed")
        os.kill(os.getpid(), signal.SIGKILL)
    return batch.plan_chunk(task, *args)


def test_a_pool_worker_killed_once_costs_no_account(tmp_path, monkeypatch):
    write_accounts(tmp_path / "a", list(households(12, seed=7)))
    files = account_files(tmp_path / "a")
    monkeypatch.setenv("DIES_ONCE_MARKER", str(tmp_path / "killed"))
    monkeypatch.setattr(batch, "plan_chunk_in_worker", dies_once)
    log = LogLocation(tmp_path / "audit.sqlite", "--log")
    outcome = run_batch(files, engine="local", workers=2, chunk=3, log=log)
    assert (tmp_path / "killed").exists()  # a worker was killed ...
    assert not outcome.failures and len(outcome.plans) == len(files)  # ... and every account planned
    assert len(outcome.log_ids) == len(files)  # once each: no chunk logged twice


def test_a_batch_ended_by_sigterm_says_how_far_it_got_and_its_log_is_intact(tmp_path):
    # SIGTERM ended the batch silently (exit 143): nothing said which accounts were logged.
    write_accounts(tmp_path / "a", list(households(80, seed=3)))
    log = tmp_path / "audit.sqlite"
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "rebalance", "batch", str(tmp_path / "a"),
                             "--workers", "1", "--chunk", "2", "--log", str(log)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_first_entry(log, 60)
    err = signalled(proc, signal.SIGTERM)
    if proc.returncode == 0 or "the batch had finished" in err:
        pytest.skip("the batch finished before the signal")  # a very fast machine
    assert proc.returncode == 143 and "Traceback" not in err, err
    logged = int(err.split(" entries logged to ")[0].rsplit("; ", 1)[1].replace(",", ""))
    assert err.startswith("interrupted: ") and "of 80 accounts planned" in err and 0 < logged < 80
    verified = subprocess.run([sys.executable, str(ROOT / "cli.py"), "rebalance", "log", "--log", str(log), "--verify"],
                              capture_output=True, text=True)
    assert verified.returncode == 0 and f"ok: {logged} entries" in verified.stdout
    assert "run the same command again with --resume" in err
    resumed = subprocess.run([sys.executable, str(ROOT / "cli.py"), "rebalance", "batch", str(tmp_path / "a"),
                              "--workers", "1", "--log", str(log), "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    with sqlite3.connect(log) as db:  # every account logged once: the rest added, none twice
        assert db.execute("SELECT count(DISTINCT account), count(*) FROM entries").fetchone() == (80, 80)
