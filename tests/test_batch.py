"""The batch: the same plans as one account at a time, failures isolated, one log entry each."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from benchmarks.synth import household, households, write_accounts
from rebalance_opt import account_to_dict, load_account, plan_rebalance
from rebalance_opt.audit import AuditLog, LogLocation
from rebalance_opt.batch import account_files, run_batch
from rebalance_opt.exports import render_basket

from .conftest import run_cli

N_GOOD = 10


def comparable(plan_dict: dict) -> dict:
    """A plan's JSON without what legitimately differs between runs: timings and the log id."""
    out = {**plan_dict, "log_id": None}
    out["solver"] = {k: v for k, v in plan_dict["solver"].items() if not k.endswith("seconds")}
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Ten households, one file that is not an account, one account with no feasible plan."""
    root = tmp_path_factory.mktemp("accounts")
    write_accounts(root, list(households(N_GOOD, seed=11)))
    (root / "broken.json").write_text('{"account": {"id": "broken"}}')
    infeasible = household(999)
    infeasible["account"]["id"] = "too-much"
    infeasible["policy"]["withdrawal"] = 1e12
    (root / "too-much.json").write_text(json.dumps(infeasible))
    (root / "notes.txt").write_text("not an account")
    return root


@pytest.fixture(scope="module")
def expected(folder) -> dict[str, dict]:
    out = {}
    for f in account_files(folder):
        try:
            out[f.name] = comparable(plan_rebalance(load_account(f)).to_dict())
        except Exception:  # noqa: BLE001 - the two bad files
            pass
    return out


def check_outcome(outcome, folder: Path, expected: dict[str, dict]) -> None:
    files = account_files(folder)
    assert [Path(r.source).name for r in outcome.results] == [f.name for f in files]  # input order
    assert len(outcome.plans) == N_GOOD and len(expected) == N_GOOD
    for r in outcome.results:
        if r.ok:
            assert comparable(r.plan.to_dict()) == expected[Path(r.source).name]
    failures = {Path(r.source).name: r for r in outcome.failures}
    assert set(failures) == {"broken.json", "too-much.json"}
    assert failures["broken.json"].kind == "input error" and failures["broken.json"].exit_code == 2
    assert "required key is missing" in failures["broken.json"].error
    assert failures["too-much.json"].kind == "no feasible plan" and failures["too-much.json"].account == "too-much"
    # the rule that failed travels back from the worker, by key, into the failures table
    assert "policy.withdrawal" in failures["too-much.json"].failure()["constraints"]
    assert "constraints" not in failures["broken.json"].failure()


def test_local_batch_equals_one_account_at_a_time_and_isolates_failures(folder, expected, tmp_path):
    log = tmp_path / "audit.sqlite"
    out = tmp_path / "basket.csv"
    outcome = run_batch(account_files(folder), engine="local", workers=2, chunk=3,
                        log=LogLocation(log, "--log"), out=out, basket_format="csv")
    check_outcome(outcome, folder, expected)

    entries = AuditLog(log).entries()
    assert len(entries) == N_GOOD and AuditLog(log).verify().ok
    assert [e.row["account"] for e in entries] == [p.account for p in outcome.plans]  # input order
    assert sorted(outcome.log_ids.values()) == [e.id for e in entries]
    basket_info = entries[0].field("basket")
    assert basket_info["path"] == str(out.resolve()) and basket_info["sha256"] == outcome.basket["sha256"]
    for entry, plan in zip(entries, outcome.plans):
        assert json.loads(entry.row["orders"]) == json.loads(json.dumps([o.to_dict() for o in plan.orders]))

    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == sum(len(p.orders) for p in outcome.plans) == outcome.summary()["orders"]
    assert {r["account"] for r in rows} <= {p.account for p in outcome.plans}
    # The workers rendered the rows; the file is byte for byte the basket of the plans rendered whole.
    assert out.read_bytes() == render_basket(outcome.plans, "csv")


def test_dask_batch_on_a_local_cluster_gives_the_same_plans(folder, expected, tmp_path):
    pytest.importorskip("dask.distributed")
    log = tmp_path / "audit.sqlite"
    outcome = run_batch(account_files(folder), engine="dask", workers=2, chunk=4, log=LogLocation(log, "--log"))
    check_outcome(outcome, folder, expected)
    assert len(AuditLog(log).entries()) == N_GOOD and AuditLog(log).verify().ok


@pytest.fixture
def existing_cluster():
    """A running Dask cluster the batch did not start: one in-process worker with two threads
    (``dask worker`` runs several threads per worker by default)."""
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        yield cluster


def test_an_existing_dask_cluster_plans_the_batch_given_its_address(folder, expected, tmp_path, existing_cluster):
    log = tmp_path / "audit.sqlite"
    outcome = run_batch(account_files(folder), engine="dask", scheduler=existing_cluster.scheduler_address,
                        chunk=3, log=LogLocation(log, "--log"))
    check_outcome(outcome, folder, expected)
    assert outcome.workers == 2  # the cluster's threads, not this machine's CPUs
    assert len(AuditLog(log).entries()) == N_GOOD and AuditLog(log).verify().ok


def test_workers_that_cannot_read_the_folder_stop_the_batch_before_any_work(folder, tmp_path, existing_cluster,
                                                                             monkeypatch):
    import os

    from rebalance_opt.errors import InputError
    first = str(account_files(folder)[0].resolve())
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: path != first and real_access(path, mode))
    with pytest.raises(InputError) as caught:
        run_batch(account_files(folder), engine="dask", scheduler=existing_cluster.scheduler_address,
                  log=LogLocation(tmp_path / "audit.sqlite", "--log"))
    assert caught.value.path == "--scheduler" and f"1 of 1 workers cannot read {first}" in str(caught.value)
    assert "account set" in str(caught.value)
    assert not (tmp_path / "audit.sqlite").exists()


def test_a_chunk_whose_dask_worker_was_lost_fails_its_accounts_and_the_rest_are_planned(
        folder, expected, tmp_path, existing_cluster, monkeypatch):
    # A worker killed mid-batch (KilledWorker once the scheduler gives up on the task) ended the
    # whole batch in "unexpected error: KilledWorker" (exit 1), the summary lost, after the chunks
    # before it were logged (found by fuzzing).
    import rebalance_opt.batch as batch
    real = batch.plan_chunk_in_worker
    files = account_files(folder)
    doomed = str(files[4])

    def dies_on_one_chunk(task, *args, **kwargs):
        if any(source == doomed for _, source in task):
            raise RuntimeError("the worker died")  # as KilledWorker reaches the client
        return real(task, *args, **kwargs)

    monkeypatch.setattr(batch, "plan_chunk_in_worker", dies_on_one_chunk)
    log = tmp_path / "audit.sqlite"
    outcome = run_batch(files, engine="dask", scheduler=existing_cluster.scheduler_address, chunk=3,
                        log=LogLocation(log, "--log"))
    lost = [r for r in outcome.failures if "worker planning it was lost" in (r.error or "")]
    assert [r.source for r in lost] == [str(f) for f in files[3:6]] and all(r.exit_code == 1 for r in lost)
    assert [Path(r.source).name for r in outcome.results] == [f.name for f in files]  # input order kept
    planned = [r for r in outcome.results if r.ok]
    assert all(comparable(r.plan.to_dict()) == expected[Path(r.source).name] for r in planned)
    assert len(AuditLog(log).entries()) == len(planned) and AuditLog(log).verify().ok


def test_a_cluster_left_without_workers_fails_what_is_left_instead_of_waiting_forever(
        folder, tmp_path, existing_cluster, monkeypatch):
    # Workers killed until the nanny gave up left the scheduler with none: the batch waited forever.
    import rebalance_opt.batch as batch
    monkeypatch.setattr(batch, "NO_WORKERS_WAIT", 1.0)
    monkeypatch.setattr(batch, "_POLL", 0.2)
    files = account_files(folder)
    seen = []

    def stop_the_workers(n):
        if not seen:
            existing_cluster.scale(0)
        seen.append(n)

    outcome = run_batch(files, engine="dask", scheduler=existing_cluster.scheduler_address, chunk=1,
                        log=LogLocation(tmp_path / "audit.sqlite", "--log"), progress=stop_the_workers)
    assert [Path(r.source).name for r in outcome.results] == [f.name for f in files]
    lost = [r for r in outcome.failures if (r.error or "").startswith("not planned")]
    assert lost and "had no workers for 1 s" in lost[-1].error
    logged = AuditLog(tmp_path / "audit.sqlite").entries()
    assert len(logged) == len(outcome.plans) and AuditLog(tmp_path / "audit.sqlite").verify().ok


def test_cluster_problem_says_what_to_fix_on_the_workers():
    from rebalance_opt.batch import cluster_problem
    ok = {"version": "1.2", "error": None, "readable": True}
    assert cluster_problem({"w1": ok, "w2": ok}, "1.2", "/a/b.toml") is None
    assert "no workers" in cluster_problem({}, "1.2", None)
    lacking = {"version": None, "error": "ModuleNotFoundError: No module named 'rebalance_opt'", "readable": True}
    message = cluster_problem({"w1": ok, "w2": lacking}, "1.2", None)
    assert "1 of 2 workers cannot import rebalance_opt (ModuleNotFoundError" in message
    assert "install rebalance-opt 1.2" in message
    assert "run rebalance-opt 1.1, this is 1.2" in cluster_problem({"w1": {**ok, "version": "1.1"}}, "1.2", None)
    blind = {**ok, "readable": False}
    assert "2 of 2 workers cannot read /a/b.toml" in cluster_problem({"w1": blind, "w2": blind}, "1.2", "/a/b.toml")


def test_a_dry_run_logs_nothing_and_one_worker_plans_in_process(folder, expected, tmp_path):
    outcome = run_batch(account_files(folder), engine="local", workers=1, log=None)
    check_outcome(outcome, folder, expected)
    assert outcome.log is None and not outcome.log_ids


def test_results_are_kept_out_of_the_garbage_collectors_walks_and_let_back_after(folder):
    import gc
    frozen = []
    outcome = run_batch(good(folder)[:3], engine="local", workers=1, chunk=1, log=None,
                        progress=lambda n: frozen.append(gc.get_freeze_count()))
    assert len(outcome.plans) == 3 and gc.isenabled()
    assert frozen[0] == 0 and frozen[1] > 0  # the first chunk's results frozen before the second's
    assert gc.get_freeze_count() == 0


def test_a_worker_freezes_its_settled_heap_once_and_still_collects_new_garbage(folder, monkeypatch):
    import gc

    from rebalance_opt import batch
    monkeypatch.setattr(batch, "_HEAP_SETTLED", False)
    task = [(i, str(f)) for i, f in enumerate(good(folder)[:2])]
    threshold = gc.get_threshold()
    try:
        assert gc.get_freeze_count() == 0
        batch.plan_chunk_in_worker(task, log=False, settle=False)  # a worker of someone else's cluster
        assert gc.get_freeze_count() == 0 and gc.get_threshold() == threshold
        first = batch.plan_chunk_in_worker(task, log=False)
        frozen = gc.get_freeze_count()
        assert frozen > 0 and all(r.ok for r in first)
        assert gc.get_threshold() == (batch.WORKER_GEN0_THRESHOLD, *threshold[1:])
        batch.plan_chunk_in_worker(task, log=False)
        assert gc.get_freeze_count() <= frozen  # once per process: the first results are not frozen
        cycle = [None]
        cycle[0] = cycle
        del cycle
        assert gc.collect() >= 1  # what is made after the freeze is collected as usual
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def good(folder: Path) -> list[Path]:
    return [f for f in account_files(folder) if f.name.startswith("hh-")]


def test_entries_appended_after_existing_ones_keep_one_chain(folder, tmp_path):
    log = tmp_path / "audit.sqlite"
    account = load_account(good(folder)[0])
    AuditLog(log).append(plan_rebalance(account).to_dict(), account_to_dict(account))
    run_batch(good(folder)[:4], workers=1, log=LogLocation(log, "--log"))
    assert [e.id for e in AuditLog(log).entries()] == [1, 2, 3, 4, 5]
    assert AuditLog(log).verify().ok


def test_canonical_json_fast_path_is_the_walks_text(folder):
    from rebalance_opt.audit import _finite, canonical_json
    account = load_account(good(folder)[0])
    plan = plan_rebalance(account).to_dict()
    for obj in (plan, account_to_dict(account), {**plan, "extra": float("inf")}):
        walked = json.dumps(_finite(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        assert canonical_json(obj) == walked


def test_cli_batch_summary_json_and_exit_codes(folder, tmp_path):
    result = run_cli("rebalance", "batch", str(folder), "--json", "--workers", "2", "--log", str(tmp_path / "a.sqlite"),
                     "--out", str(tmp_path / "basket.json"))
    assert result.returncode == 5, result.stderr  # some accounts failed; the rest were planned
    summary = json.loads(result.stdout)
    assert summary["accounts"] == N_GOOD + 2 and summary["planned"] == N_GOOD and summary["failed"] == 2
    assert {f["source"].rsplit("/", 1)[-1] for f in summary["failures"]} == {"broken.json", "too-much.json"}
    assert summary["orders"] == sum(p["orders"] for p in summary["plans"])
    assert all(p["log_id"] for p in summary["plans"])
    assert json.loads((tmp_path / "basket.json").read_text())["order_count"] == summary["orders"]

    human = run_cli("rebalance", "batch", str(folder), "--dry-run", "--workers", "1")
    assert human.returncode == 5
    assert "Failures" in human.stdout and "broken.json" in human.stdout and "dry run" in human.stdout

    missing = run_cli("rebalance", "batch", str(tmp_path / "nowhere"), "--json")
    assert missing.returncode == 2 and json.loads(missing.stdout)["error"]["path"] == "ACCOUNTS"
    wrong = run_cli("rebalance", "batch", str(folder), "--scheduler", "tcp://127.0.0.1:1", "--dry-run")
    assert wrong.returncode == 2 and "--scheduler" in wrong.stderr
    both = run_cli("rebalance", "batch", str(folder), "--engine", "dask", "--scheduler", "tcp://127.0.0.1:1",
                   "--workers", "4", "--dry-run")
    assert both.returncode == 2 and "--workers" in both.stderr and "has its own workers" in both.stderr


def test_a_folder_of_good_accounts_exits_zero(tmp_path):
    write_accounts(tmp_path / "ok", [household(5), household(6)], fmt="toml")
    result = run_cli("rebalance", "batch", str(tmp_path / "ok"), "--dry-run", "--json", "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["planned"] == 2


def test_a_batch_where_every_account_fails_leaves_an_existing_basket_untouched(tmp_path):
    accounts = tmp_path / "accounts"
    accounts.mkdir()
    (accounts / "broken.json").write_text('{"account": {"id": "broken"}}')
    (accounts / "also-broken.json").write_text('{"account": {"id": "also-broken", "cash": -1}}')
    out = tmp_path / "out" / "basket.csv"
    out.parent.mkdir()
    before = "symbol,side,quantity\nVTI,buy,10\n"
    out.write_text(before)

    outcome = run_batch(account_files(accounts), workers=1, log=LogLocation(tmp_path / "a.sqlite", "--log"),
                        out=out, basket_format="csv")
    assert len(outcome.failures) == 2 and outcome.plans == [] and outcome.basket is None
    assert out.read_text() == before and sorted(p.name for p in out.parent.iterdir()) == ["basket.csv"]

    result = run_cli("rebalance", "batch", str(accounts), "--json", "--workers", "1",
                     "--log", str(tmp_path / "a.sqlite"), "--out", str(out))
    assert result.returncode == 5, result.stderr
    summary = json.loads(result.stdout)
    assert summary["planned"] == 0 and summary["failed"] == 2 and summary["basket"] is None
    assert "not written, every account failed" in result.stderr
    assert out.read_text() == before and sorted(p.name for p in out.parent.iterdir()) == ["basket.csv"]
    assert AuditLog(tmp_path / "a.sqlite").entries() == []
