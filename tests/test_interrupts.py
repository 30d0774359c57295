"""Ctrl-C or SIGTERM never cuts a rebalance's writes in two: found by CI, where a batch ended by
SIGTERM said "2 entries logged" with 4 in the log (the signal landed between a chunk's commit and
its count). Each test sends the signal at the worst moment, right after the log's commit."""
from __future__ import annotations

import hashlib
import signal
import sqlite3
import threading
import weakref

import pytest

from benchmarks.synth import households, write_accounts
from rebalance_opt.audit import AuditLog, LogLocation
from rebalance_opt.batch import account_files, run_batch
from rebalance_opt.interrupts import signals_held

from .conftest import cli

pytestmark = pytest.mark.usefixtures("ctrl_c_raises")

def entries(log) -> int:
    with sqlite3.connect(log) as db:
        return db.execute("SELECT count(*) FROM entries").fetchone()[0]


def ctrl_c_after(monkeypatch, method: str, call: int = 1) -> None:
    """``AuditLog.<method>`` commits as usual, then Ctrl-C arrives on its ``call``-th use."""
    original, calls = getattr(AuditLog, method), []

    def committed_then_ctrl_c(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == call:
            signal.raise_signal(signal.SIGINT)
        return result
    monkeypatch.setattr(AuditLog, method, committed_then_ctrl_c)


def test_a_signal_in_the_block_is_raised_when_the_block_ends_and_the_handler_is_put_back():
    before = signal.getsignal(signal.SIGINT)
    ran = []
    with pytest.raises(KeyboardInterrupt):
        with signals_held():
            signal.raise_signal(signal.SIGINT)
            ran.append("after the signal")  # the block ran to its end
    assert ran == ["after the signal"] and signal.getsignal(signal.SIGINT) is before


def test_a_block_without_a_signal_raises_nothing_and_sigterm_goes_to_its_own_handler():
    got = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
    try:
        with signals_held():
            signal.raise_signal(signal.SIGTERM)
            assert got == []  # held
        assert got == [signal.SIGTERM]
        with signals_held():
            pass
        assert got == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_outside_the_main_thread_the_block_runs_as_it_is():
    seen = []

    def in_thread():
        with signals_held():
            seen.append(signal.getsignal(signal.SIGINT))
    worker = threading.Thread(target=in_thread)
    worker.start()
    worker.join()
    assert seen == [signal.getsignal(signal.SIGINT)]


def test_ctrl_c_right_after_a_chunk_is_committed_counts_that_chunk(tmp_path, monkeypatch):
    write_accounts(tmp_path / "a", list(households(8, seed=3)))
    log = tmp_path / "audit.sqlite"
    ctrl_c_after(monkeypatch, "append_many", call=2)
    with pytest.raises(KeyboardInterrupt) as interrupted:
        run_batch(account_files(tmp_path / "a"), engine="local", workers=1, chunk=2,
                  log=LogLocation(log, "--log"))
    assert interrupted.value.logged == entries(log) == 4  # two chunks of two, both counted
    assert interrupted.value.planned == 4 and not interrupted.value.finished


def test_ctrl_c_as_a_batch_writes_its_log_and_basket_says_both_were_written(tmp_path, monkeypatch, capsys):
    write_accounts(tmp_path / "a", list(households(4, seed=3)))
    log, out = tmp_path / "audit.sqlite", tmp_path / "basket.csv"
    ctrl_c_after(monkeypatch, "append_many")
    code, _, err = cli(capsys, "rebalance", "batch", str(tmp_path / "a"), "--workers", "1",
                       "--log", str(log), "--out", str(out))
    assert code == 130 and "Traceback" not in err
    assert out.exists() and entries(log) == 4
    assert err.startswith("interrupted: 4 of 4 accounts planned; the batch had finished: "
                          f"4 entries logged to {log} and the basket written to {out}")


def test_ctrl_c_right_after_generate_logs_its_plan_still_puts_the_logged_basket_in_place(
        tmp_path, monkeypatch, capsys, examples):
    log, out = tmp_path / "audit.sqlite", tmp_path / "basket.csv"
    ctrl_c_after(monkeypatch, "append")
    code, _, err = cli(capsys, "rebalance", "generate", str(examples / "household.toml"),
                       "--log", str(log), "--out", str(out))
    assert code == 130 and "Traceback" not in err
    (entry,) = AuditLog(LogLocation(log, "--log")).entries()
    assert entry.field("basket")["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()  # the basket it logged


def test_a_ctrl_c_whose_exception_python_dropped_still_stops_generate_before_it_writes(
        tmp_path, monkeypatch, capsys, examples):
    # CPython drops a KeyboardInterrupt raised in a callback (importlib's module-lock weakref
    # callback, during a lazy import): generate ran on, logged its plan and exited 0. Here the
    # planner swallows it the same way.
    import rebalance_opt.solve as solve
    ctrl_c_lost_before(monkeypatch, solve, "plan_rebalance")
    log, out = tmp_path / "audit.sqlite", tmp_path / "basket.csv"
    code, _, err = cli(capsys, "rebalance", "generate", str(examples / "household.toml"),
                       "--log", str(log), "--out", str(out))
    assert code == 130 and "Traceback" not in err and "Exception ignored" not in err
    assert not log.exists() and not out.exists()


def ctrl_c_lost_before(monkeypatch, module, name: str) -> None:
    """``module.<name>`` runs after a Ctrl-C landed in a weakref callback, as in importlib's:
    CPython reports its KeyboardInterrupt to ``sys.unraisablehook`` and carries on."""
    original = getattr(module, name)

    def after_a_lost_ctrl_c(*args, **kwargs):
        class Lock:
            pass
        lock = Lock()
        ref = weakref.ref(lock, lambda _: signal.raise_signal(signal.SIGINT))  # noqa: F841 - kept alive
        del lock
        return original(*args, **kwargs)
    monkeypatch.setattr(module, name, after_a_lost_ctrl_c)


def test_a_dropped_ctrl_c_in_a_command_that_writes_nothing_still_exits_130(monkeypatch, capsys, examples):
    import rebalance_opt.drift as drift
    ctrl_c_lost_before(monkeypatch, drift, "drift_report")
    code, _, _ = cli(capsys, "rebalance", "check", str(examples / "household.toml"))
    assert code == 130
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the command line's handler is gone


def test_the_command_line_leaves_an_ignored_ctrl_c_ignored(monkeypatch, capsys, examples):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # restored by ctrl_c_raises
    code, _, _ = cli(capsys, "rebalance", "check", str(examples / "household.toml"))
    assert code == 0 and signal.getsignal(signal.SIGINT) == signal.SIG_IGN
