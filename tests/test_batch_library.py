"""``run_batch`` called from Python, as a notebook or another tool does: it checks what the command
line checks, takes paths as well as its own types, and leaves the caller's process as it found it
(a review of the library found each of these broken)."""
from __future__ import annotations

import gc
import multiprocessing
import os

import pytest

from benchmarks.synth import households, write_accounts
from rebalance_opt.audit import AuditLog, LogLocation
from rebalance_opt.batch import account_files, run_batch
from rebalance_opt.errors import InputError

N = 4


@pytest.fixture
def folder(tmp_path):
    write_accounts(tmp_path / "a", list(households(N, seed=9)))
    return tmp_path / "a"


def test_a_basket_over_the_batchs_own_audit_log_is_refused_and_the_log_kept(folder, tmp_path):
    log = LogLocation(tmp_path / "audit.sqlite", "log")
    run_batch(account_files(folder), workers=1, log=log)
    before = AuditLog(log).head()
    for out in (log.path, tmp_path / "audit.sqlite-wal"):
        with pytest.raises(InputError) as err:
            run_batch(account_files(folder), workers=1, log=log, out=out)
        assert err.value.path == "--out" and "audit log" in str(err.value)
    assert AuditLog(log).head() == before and AuditLog(log).verify().ok


def test_a_basket_over_an_account_file_or_the_sets_template_is_refused(folder, tmp_path, examples):
    files = account_files(folder)
    kept = files[1].read_bytes()
    with pytest.raises(InputError) as err:
        run_batch(files, workers=1, out=str(files[1]))
    assert "an account file of the batch" in str(err.value) and files[1].read_bytes() == kept
    from rebalance_opt.account_set import read_account_set
    account_set = read_account_set(examples / "set" / "lots.csv", examples / "set" / "template.toml")
    for out, what in ((examples / "set" / "lots.csv", "the account set"),
                      (examples / "set" / "template.toml", "the template")):
        with pytest.raises(InputError) as err:
            run_batch(account_set, workers=1, out=out)
        assert what in str(err.value)


def test_the_accounts_folder_the_log_and_the_basket_may_be_given_as_paths(folder, tmp_path):
    outcome = run_batch(str(folder), workers=1, log=tmp_path / "audit.sqlite", out=str(tmp_path / "basket.csv"))
    assert len(outcome.results) == N and not outcome.failures
    assert len(AuditLog(tmp_path / "audit.sqlite").entries()) == N and (tmp_path / "basket.csv").exists()
    again = run_batch(folder, workers=1, log=str(tmp_path / "audit.sqlite"), resume=True)
    assert len(again.already_logged) == N


@pytest.mark.parametrize("caller_froze", [False, True])
def test_a_batch_leaves_the_callers_frozen_heap_as_it_found_it(folder, caller_froze):
    gc.unfreeze()
    if caller_froze:
        gc.freeze()
    try:
        run_batch(account_files(folder), workers=1)
        assert (gc.get_freeze_count() > 0) == caller_froze
    finally:
        gc.unfreeze()


def test_a_dask_batch_leaves_the_callers_environment_and_start_method_as_they_were(folder):
    pytest.importorskip("dask.distributed")
    import socket
    import warnings
    environ, method = dict(os.environ), multiprocessing.get_start_method(allow_none=True)
    held = socket.socket()  # another batch's scheduler on Dask's default port: "Port 8787 is already in use"
    try:
        held.bind(("127.0.0.1", 8787))
        held.listen()
    except OSError:
        pass  # something holds it already: the same case
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run_batch(account_files(folder), engine="dask", workers=1)
    finally:
        held.close()
    assert not [w for w in caught if "already in use" in str(w.message)]
    assert dict(os.environ) == environ  # OMP_NUM_THREADS=1 and its kind stayed behind
    assert multiprocessing.get_start_method(allow_none=True) == method


@pytest.mark.parametrize("option, value", [("workers", 0), ("workers", -1), ("chunk", 0), ("workers", 1.5),
                                           ("reason", 5), ("reason", "")])
def test_bad_options_are_one_input_error_before_any_work(folder, tmp_path, option, value):
    with pytest.raises(InputError) as err:
        run_batch(account_files(folder), log=tmp_path / "audit.sqlite", **{option: value})
    assert option in err.value.path and not (tmp_path / "audit.sqlite").exists()
