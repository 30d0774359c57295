"""``rebalance batch --resume``: an interrupted batch is finished without logging any account twice.
Before it, a re-run planned and logged every account again, and the README told operators to sort
out by hand which accounts had an entry of the interrupted run."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from benchmarks.synth import households, write_accounts
from rebalance_opt.audit import AuditLog, LogLocation
from rebalance_opt.batch import account_files, run_batch

from .conftest import cli
from .test_interrupts import ctrl_c_after

N = 8
pytestmark = pytest.mark.usefixtures("ctrl_c_raises")


@pytest.fixture
def folder(tmp_path):
    write_accounts(tmp_path / "a", list(households(N, seed=5)))
    return tmp_path / "a"


def logged_accounts(log) -> Counter:
    return Counter(e.row["account"] for e in AuditLog(LogLocation(log, "--log")).entries())


def interrupted_batch(folder, log, monkeypatch) -> int:
    """A batch stopped by Ctrl-C after its second chunk of two is committed: how many it logged."""
    ctrl_c_after(monkeypatch, "append_many", call=2)
    with pytest.raises(KeyboardInterrupt) as stopped:
        run_batch(account_files(folder), workers=1, chunk=2, log=LogLocation(log, "--log"))
    monkeypatch.undo()
    return stopped.value.logged


def test_resuming_an_interrupted_batch_logs_every_account_once_and_the_chain_stays_intact(folder, tmp_path, monkeypatch):
    log = tmp_path / "audit.sqlite"
    assert interrupted_batch(folder, log, monkeypatch) == 4
    first = {e.row["account"]: e.id for e in AuditLog(LogLocation(log, "--log")).entries()}

    outcome = run_batch(account_files(folder), workers=1, chunk=2, log=LogLocation(log, "--log"), resume=True)
    assert all(r.ok for r in outcome.results) and len(outcome.plans) == N - 4  # the logged four not planned again
    assert logged_accounts(log) == Counter({r.account: 1 for r in outcome.results})  # each once
    assert {r.account: r.logged_as for r in outcome.already_logged} == first  # the first run's entries
    assert len(outcome.log_ids) == N - 4 and AuditLog(LogLocation(log, "--log")).verify().ok


def counted_plans(monkeypatch) -> list[str]:
    """The accounts ``Planner.plan`` is called for from now on (in this process: ``workers=1``)."""
    from rebalance_opt.solve import Planner
    calls, plan = [], Planner.plan

    def counting(self, account, reason=None):
        calls.append(account.id)
        return plan(self, account, reason)
    monkeypatch.setattr(Planner, "plan", counting)
    return calls


def test_a_resumed_batch_plans_only_the_accounts_not_yet_logged_and_its_totals_are_the_whole_batchs(
        folder, tmp_path, monkeypatch):
    # the whole batch's totals, from a dry run that plans every account
    whole = run_batch(account_files(folder), workers=1, log=None).summary()
    log = tmp_path / "audit.sqlite"
    interrupted_batch(folder, log, monkeypatch)
    logged = set(logged_accounts(log))

    planned = counted_plans(monkeypatch)
    outcome = run_batch(account_files(folder), workers=1, chunk=2, log=LogLocation(log, "--log"), resume=True)
    assert len(planned) == N - 4 and not logged & set(planned)
    assert {r.account for r in outcome.already_logged} == logged
    assert all(r.plan is None and r.logged_plan is not None for r in outcome.already_logged)
    resumed = outcome.summary()
    # read back from the entries, the logged plans add up exactly as planning them again does
    for key in ("accounts", "planned", "failed", "orders", "estimated_tax", "lot_tax", "turnover"):
        assert resumed[key] == whole[key], key
    entries = {e.id: e.field("orders") for e in AuditLog(LogLocation(log, "--log")).entries()}
    assert {p["account"]: p["orders"] for p in outcome.to_dict()["plans"]} == {
        p["account"]: len(entries[p["log_id"]]) for p in outcome.to_dict()["plans"]}


@pytest.mark.parametrize("workers", [2])
def test_the_workers_of_a_local_pool_skip_the_accounts_already_logged(folder, tmp_path, workers):
    log = LogLocation(tmp_path / "audit.sqlite", "--log")
    run_batch(account_files(folder)[:5], workers=workers, chunk=2, log=log)
    outcome = run_batch(account_files(folder), workers=workers, chunk=2, log=log, resume=True)
    assert [r.plan is None for r in outcome.results] == [True] * 5 + [False] * (N - 5)
    assert [r.logged_as is not None for r in outcome.results] == [True] * 5 + [False] * (N - 5)
    assert sum(logged_accounts(log.path).values()) == N and AuditLog(log).verify().ok


def test_when_a_worker_cannot_read_the_log_the_logged_accounts_are_planned_and_still_not_logged_again(
        folder, tmp_path, monkeypatch):
    log = LogLocation(tmp_path / "audit.sqlite", "--log")
    run_batch(account_files(folder), workers=1, log=log)

    def unreadable(self, keys, up_to=None):
        raise OSError("the worker cannot see the log")
    monkeypatch.setattr(AuditLog, "logged_entries", unreadable)
    planned = counted_plans(monkeypatch)
    outcome = run_batch(account_files(folder), workers=1, log=log, resume=True)
    assert len(planned) == N and len(outcome.already_logged) == N and not outcome.log_ids
    assert sum(logged_accounts(log.path).values()) == N


@pytest.mark.parametrize("seed", range(12))
def test_the_key_a_worker_matches_before_planning_is_the_one_the_plans_entry_stores(seed):
    # the key (account, inputs sha256, reason) made without planning must be the record's, or a
    # resumed batch would plan (and log) every account again; withdrawals and a given reason too
    from rebalance_opt import Planner, account_from_dict
    from rebalance_opt.account_file import account_to_dict
    from rebalance_opt.audit import inputs_json, record_of, sha256_text
    from rebalance_opt.solve import rebalance_reason
    account = account_from_dict(next(households(1, seed=100 + seed)))
    if seed % 3 == 1:
        account = account.with_policy(withdrawal=1000.0)
    elif seed % 3 == 2:  # every class in band: "Cash Flow" with cash to deploy, else "Manual"
        account = account.with_policy(band=1.0, withdrawal=0.0).replace(cash=account.cash * (seed // 3 % 2))
    reason = "Quarterly Reset" if seed % 4 == 0 else None
    record = record_of(Planner().plan(account, reason).to_dict(), account_to_dict(account))
    key = (account.id, sha256_text(inputs_json(account_to_dict(account))), rebalance_reason(account, reason))
    assert key == (record["account"], record["inputs_sha256"], record["reason"])


def test_resume_logs_an_account_again_when_its_inputs_changed(folder, tmp_path):
    log = LogLocation(tmp_path / "audit.sqlite", "--log")
    run_batch(account_files(folder), workers=1, log=log)
    changed = account_files(folder)[3]
    book = json.loads(changed.read_text())
    book["account"]["cash"] += 1000.0  # a deposit since: a new rebalance, not the one logged
    changed.write_text(json.dumps(book))

    outcome = run_batch(account_files(folder), workers=1, log=log, resume=True)
    assert [r.source for r in outcome.results if r.logged_as is None] == [str(changed)]
    assert sorted(logged_accounts(log.path).values()) == [1] * (N - 1) + [2]


def test_a_resumed_batch_says_what_was_already_logged(folder, tmp_path, capsys):
    log = tmp_path / "audit.sqlite"
    cli(capsys, "rebalance", "batch", str(folder), "--workers", "1", "--log", str(log))
    entries = {e.row["account"]: e.id for e in AuditLog(LogLocation(log, "--log")).entries()}

    code, out, err = cli(capsys, "rebalance", "batch", str(folder), "--workers", "1", "--log", str(log),
                         "--resume", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["already_logged"] == N and result["planned"] == N
    assert {p["account"]: p["log_id"] for p in result["plans"]} == entries and all(p["already_logged"] for p in result["plans"])
    assert f"logged 0 entries in {log}" in err and f"{N} accounts were already logged with the same inputs" in err

    code, out, _ = cli(capsys, "rebalance", "batch", str(folder), "--workers", "1", "--log", str(log), "--resume")
    assert code == 0 and "already logged" in out and len(AuditLog(LogLocation(log, "--log")).entries()) == N


@pytest.mark.parametrize("other, says", [(["--dry-run"], "a dry run records nothing"),
                                         (["--out", "basket.csv"], "with --out an interrupted batch logged nothing")])
def test_resume_without_a_log_to_finish_is_an_input_error_that_writes_nothing(folder, tmp_path, capsys, monkeypatch,
                                                                              other, says):
    monkeypatch.chdir(tmp_path)
    log = tmp_path / "audit.sqlite"
    code, out, err = cli(capsys, "rebalance", "batch", str(folder), "--log", str(log), "--resume", *other)
    assert code == 2 and "--resume" in err and says in err and "Traceback" not in err
    assert not log.exists() and not (tmp_path / "basket.csv").exists()


def test_an_interrupted_batch_tells_the_operator_to_resume(folder, tmp_path, capsys, monkeypatch):
    log = tmp_path / "audit.sqlite"
    ctrl_c_after(monkeypatch, "append_many", call=1)
    code, _, err = cli(capsys, "rebalance", "batch", str(folder), "--workers", "1", "--chunk", "2", "--log", str(log))
    assert code == 130
    assert err.startswith(f"interrupted: 2 of {N} accounts planned; 2 entries logged to {log}")
    assert "run the same command again with --resume" in err


def test_resume_recognizes_the_accounts_of_an_account_set(tmp_path, capsys, examples):
    log = tmp_path / "audit.sqlite"
    args = ["rebalance", "batch", str(examples / "set" / "lots.csv"), "--template", str(examples / "set" / "template.toml"),
            "--workers", "1", "--log", str(log), "--json"]
    code, out, _ = cli(capsys, *args)
    assert code == 0 and json.loads(out)["already_logged"] == 0
    code, out, _ = cli(capsys, *args, "--resume")
    result = json.loads(out)
    assert code == 0 and result["already_logged"] == result["planned"] == 5
    assert sum(logged_accounts(log).values()) == 5


def test_logged_inputs_finds_exact_inputs_of_many_accounts_up_to_an_entry(tmp_path):
    from rebalance_opt.audit import record_of, sha256_text

    from .test_audit import INPUTS, plan_dict
    log = AuditLog(tmp_path / "audit.sqlite")
    # 1,200 accounts (more than one SQL statement's parameters), each logged with the same inputs
    ids = log.append_many([record_of(plan_dict(f"a{i:04d}"), INPUTS) for i in range(1200)])
    sha, why = record_of(plan_dict("a0000"), INPUTS)["inputs_sha256"], "Drift Trigger"
    other = sha256_text("other inputs")
    keys = [(f"a{i:04d}", sha, why) for i in range(0, 1200, 7)] + [
        ("a0001", other, why), ("nobody", sha, why), ("a0002", sha, "Quarterly Reset")]
    found = log.logged_inputs(keys)
    assert found == {(f"a{i:04d}", sha, why): ids[i] for i in range(0, 1200, 7)}  # only exact inputs and reason
    assert log.logged_inputs(keys, up_to=ids[699]) == {(f"a{i:04d}", sha, why): ids[i] for i in range(0, 700, 7)}
    again = log.append(plan_dict("a0007"), INPUTS)  # a newer entry of the same inputs is the one named
    assert log.logged_inputs([("a0007", sha, why)]) == {("a0007", sha, why): again.id}
    assert log.logged_inputs([]) == {}


def test_a_resumed_batch_does_not_count_its_own_entries_as_already_logged(folder, tmp_path):
    # a copy of an account in the folder is planned and logged from each file, as without --resume
    first = account_files(folder)[0]
    (folder / f"zz-copy-{first.name}").write_text(first.read_text())
    log = LogLocation(tmp_path / "audit.sqlite", "--log")
    outcome = run_batch(account_files(folder), workers=1, chunk=1, log=log, resume=True)
    assert not outcome.already_logged and len(outcome.log_ids) == N + 1


def test_resume_logs_an_account_whose_inputs_were_logged_for_another_reason(folder, tmp_path, capsys):
    # a `generate` for a client call is not this quarter's batch, though the file is the same
    log = tmp_path / "audit.sqlite"
    one = account_files(folder)[2]
    cli(capsys, "rebalance", "generate", str(one), "--log", str(log), "--reason", "client call")
    code, out, _ = cli(capsys, "rebalance", "batch", str(folder), "--workers", "1", "--log", str(log),
                       "--reason", "Quarterly Reset", "--resume", "--json")
    assert code == 0 and json.loads(out)["already_logged"] == 0 and sum(logged_accounts(log).values()) == N + 1


def test_a_signal_as_the_last_chunk_is_committed_says_the_batch_had_finished(folder, tmp_path, capsys, monkeypatch):
    log = tmp_path / "audit.sqlite"
    ctrl_c_after(monkeypatch, "append_many", call=4)  # the fourth and last chunk of two
    code, _, err = cli(capsys, "rebalance", "batch", str(folder), "--workers", "1", "--chunk", "2", "--log", str(log))
    assert code == 130 and sum(logged_accounts(log).values()) == N
    assert err.startswith(f"interrupted: {N} of {N} accounts planned; the batch had finished: {N} entries logged to {log}")
    assert "--resume" not in err


def test_a_dask_batch_skips_logged_accounts_on_its_own_local_cluster_and_matches_them_on_an_existing_one(
        folder, tmp_path):
    # the workers of a LocalCluster the batch starts read its log; those of an existing cluster
    # may run on another machine, so there every account is planned and the parent matches them
    distributed = pytest.importorskip("dask.distributed")
    log = LogLocation(tmp_path / "audit.sqlite", "--log")
    run_batch(account_files(folder)[:5], workers=1, log=log)
    own = run_batch(account_files(folder), engine="dask", workers=2, chunk=2, log=log, resume=True)
    assert [r.plan is None for r in own.results] == [True] * 5 + [False] * (N - 5)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as c:
        existing = run_batch(account_files(folder), engine="dask", scheduler=c.scheduler_address, chunk=2, log=log,
                             resume=True)
    assert all(r.plan is not None for r in existing.results) and len(existing.already_logged) == N
    assert sum(logged_accounts(log.path).values()) == N and AuditLog(log).verify().ok


def test_a_resumed_batch_interrupted_again_counts_what_earlier_runs_logged_too(folder, tmp_path, capsys, monkeypatch):
    log = tmp_path / "audit.sqlite"
    assert interrupted_batch(folder, log, monkeypatch) == 4
    ctrl_c_after(monkeypatch, "append_many", call=1)  # the first chunk this run logs (its third)
    code, _, err = cli(capsys, "rebalance", "batch", str(folder), "--workers", "1", "--chunk", "2", "--log", str(log),
                       "--resume")
    assert code == 130
    assert err.startswith(f"interrupted: 6 of {N} accounts planned; 2 entries logged to {log} (each chunk is "
                          "committed as it finishes), 4 accounts found already logged by an earlier run. "
                          "To finish the rest, run the same command again with --resume")
    monkeypatch.undo()
    code, out, _ = cli(capsys, "rebalance", "batch", str(folder), "--workers", "1", "--log", str(log), "--resume",
                       "--json")
    assert code == 0 and json.loads(out)["already_logged"] == 6 and sum(logged_accounts(log).values()) == N


@pytest.mark.parametrize("column, value", [("tax", '{"estimated_tax":"12345","lot_tax":0}'),
                                           ("tax", '{"estimated_tax":null,"lot_tax":0}'),
                                           ("orders", '"forty-four characters of a string, not orders"'),
                                           ("plan", '{"stage":"full"}')])
def test_an_altered_entry_is_not_read_as_a_plan_the_account_is_planned_again(folder, tmp_path, column, value):
    # figures read straight from an altered entry crashed the batch (a text tax) or counted a
    # string's characters as orders (a review); that account is planned, and still not logged again
    import sqlite3
    log = LogLocation(tmp_path / "audit.sqlite", "--log")
    whole = run_batch(account_files(folder), workers=1, log=log).summary()
    with sqlite3.connect(log.path) as db:
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            db.execute(f'DROP TRIGGER "{name}"')  # the log's own guard against edits: this is the tampering
        db.execute(f"UPDATE entries SET {column} = ? WHERE id = 1", (value,))
    outcome = run_batch(account_files(folder), workers=1, log=log, resume=True)
    assert [r.plan is not None for r in outcome.results] == [True] + [False] * (N - 1)
    assert len(outcome.already_logged) == N and not outcome.log_ids
    resumed = outcome.summary()
    for key in ("planned", "orders", "estimated_tax", "lot_tax", "turnover"):
        assert resumed[key] == whole[key], key
