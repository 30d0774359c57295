"""`generate --out/--dry-run/--log` and `rebalance log`: baskets written, entries logged, nothing
written on an input error, reason inference, verify/head from the command line, a real SIGKILL."""
from __future__ import annotations

import copy
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from rebalance_opt import account_from_dict, drift_report, plan_rebalance
from rebalance_opt.audit import ENV_CRASH, ENV_LOG, AuditLog
from rebalance_opt.solve import infer_reason
from tests.conftest import cli
from tests.test_exports import SEED, seed

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def log_env(tmp_path, monkeypatch) -> Path:
    """Every test logs to its own file, never to the user's default log."""
    path = tmp_path / "audit.sqlite"
    monkeypatch.setenv(ENV_LOG, str(path))
    monkeypatch.delenv(ENV_CRASH, raising=False)
    return path


def account_file(tmp_path: Path, d: dict | None = None, name: str = "acct.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(d if d is not None else seed()))
    return p


def files(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir())


# --- generate: basket and log -------------------------------------------------------------------
def test_generate_writes_the_basket_and_logs_the_entry(tmp_path, capsys, log_env):
    acct = account_file(tmp_path)
    code, out, err = cli(capsys, "rebalance", "generate", str(acct), "--out", str(tmp_path / "b.csv"), "--json")
    assert code == 0, err
    doc = json.loads(out)  # stdout holds only JSON
    assert doc["log_id"] == 1 and doc["reason"] == "Drift Trigger"
    assert doc["basket"]["format"] == "csv" and doc["basket"]["orders"] == len(doc["orders"])
    assert "basket: " in err and "logged as entry 1" in err
    data = (tmp_path / "b.csv").read_bytes()
    assert data.startswith(b"symbol,side,quantity") and doc["basket"]["sha256"] == hashlib.sha256(data).hexdigest()

    code, out, err = cli(capsys, "rebalance", "generate", str(acct), "--reason", "Quarterly Reset", "--json",
                         "--out", str(tmp_path / "basket.txt"), "--format", "fix")
    assert code == 0 and json.loads(out)["log_id"] == 2
    assert (tmp_path / "basket.txt").read_bytes().startswith(b"8=FIX.4.4\x01")

    code, out, _ = cli(capsys, "rebalance", "log", "--json")
    listing = json.loads(out)
    assert listing["log"] == str(log_env)
    assert [(e["id"], e["reason"]) for e in listing["entries"]] == [(1, "Drift Trigger"), (2, "Quarterly Reset")]
    code, out, _ = cli(capsys, "rebalance", "log", "--show", "1", "--json")
    whole = json.loads(out)
    assert whole["basket"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert whole["inputs"]["account"]["id"] == "household-1" and len(whole["inputs_sha256"]) == 64
    assert whole["orders"] and whole["solver"]["status"] == "optimal"


def test_human_output_and_log_option(tmp_path, capsys, log_env):
    acct = account_file(tmp_path)
    other = tmp_path / "team.sqlite"
    code, out, _ = cli(capsys, "rebalance", "generate", str(acct), "--log", str(other))
    assert code == 0 and f"logged as entry 1 in {other}" in out
    assert other.exists() and not log_env.exists(), "--log wins over REBALANCE_OPT_LOG"
    code, out, _ = cli(capsys, "rebalance", "log", "--log", str(other))
    assert code == 0 and "Drift Trigger" in out and "1 entry in" in out
    code, out, _ = cli(capsys, "rebalance", "log")
    assert code == 0 and "0 entries" in out and "no log there yet" in out
    assert not log_env.exists(), "listing creates nothing"


def test_dry_run_writes_the_basket_but_logs_nothing(tmp_path, capsys, log_env):
    acct = account_file(tmp_path)
    code, out, err = cli(capsys, "rebalance", "generate", str(acct), "--dry-run", "--json",
                         "--out", str(tmp_path / "b.json"))
    assert code == 0 and json.loads(out)["log_id"] is None
    assert json.loads((tmp_path / "b.json").read_text())["order_count"] == len(json.loads(out)["orders"])
    assert not log_env.exists() and "nothing recorded" in err


def test_empty_plan_says_so(tmp_path, capsys):
    d = seed("even")
    d.update(targets={"VTI": 0.5, "BND": 0.5}, classes={}, prices={"VTI": 100.0, "BND": 100.0},
             lots=[{"id": "A", "symbol": "VTI", "quantity": 10, "cost_basis": 50, "acquired": "2020-01-01"},
                   {"id": "B", "symbol": "BND", "quantity": 10, "cost_basis": 50, "acquired": "2020-01-01"}])
    d["account"]["cash"] = 0.0
    code, out, err = cli(capsys, "rebalance", "generate", str(account_file(tmp_path, d)), "--json",
                         "--out", str(tmp_path / "e.csv"))
    assert code == 0 and json.loads(out)["orders"] == [] and "empty basket" in err
    assert (tmp_path / "e.csv").read_text().strip() == "symbol,side,quantity,order_type,est_price,est_notional," \
                                                       "asset_class,lots,account,currency"


# --- an input error (or no plan) writes nothing anywhere ----------------------------------------
def bad_price(tmp_path):
    d = seed()
    d["prices"]["VTI"] = -1
    return account_file(tmp_path, d, "bad.json")


def not_a_log(tmp_path):
    p = tmp_path / "notes.sqlite"
    p.write_text("not a database, just some text " * 50)
    return p


@pytest.mark.parametrize("make_args,path", [
    (lambda t: ["--out", str(t / "b.xlsx")], "--format"),
    (lambda t: ["--out", str(t / "b.csv"), "--format", "xml"], "--format"),
    (lambda t: ["--format", "csv"], "--format"),
    (lambda t: ["--out", str(t / "nowhere" / "b.csv")], "--out"),
    (lambda t: ["--out", str(t)], "--out"),
    (lambda t: ["--out", str(t / "acct.json"), "--format", "csv"], "--out"),
    (lambda t: ["--out", str(t / "b.csv"), "--reason", "  "], "--reason"),
    (lambda t: ["--out", str(t / "b.csv"), "--log", str(not_a_log(t))], "--log"),
    (lambda t: ["--out", str(t / "b.csv"), "--log", str(t / "nowhere" / "log.sqlite")], "--log"),
    (lambda t: ["--out", str(t / "b.csv"), "--log", "postgresql://me@db/audit"], "--log"),
    (lambda t: ["ACCOUNT=bad", "--out", str(t / "b.csv")], "prices.VTI"),
])
def test_an_input_error_writes_nothing_anywhere(tmp_path, capsys, log_env, make_args, path):
    acct = account_file(tmp_path)
    args = make_args(tmp_path)
    if args[0] == "ACCOUNT=bad":
        acct, args = bad_price(tmp_path), args[1:]
    before = files(tmp_path)
    code, out, err = cli(capsys, "rebalance", "generate", str(acct), *args, "--json")
    assert code == 2 and "input error" in err
    error = json.loads(out)["error"]
    assert error["path"] == path, error
    assert files(tmp_path) == before, "no basket, no log, no temporary file"
    assert not log_env.exists()


def test_no_feasible_plan_writes_nothing(tmp_path, capsys, log_env):
    acct = account_file(tmp_path, seed(withdrawal=10_000_000.0))
    before = files(tmp_path)
    code, out, err = cli(capsys, "rebalance", "generate", str(acct), "--out", str(tmp_path / "b.csv"), "--json")
    assert code == 3 and "error" in json.loads(out)
    assert files(tmp_path) == before and not log_env.exists()


# --- reason inference ---------------------------------------------------------------------------
def inband(cash: float, **policy) -> dict:
    """Four equal classes of 21 each (each 4 points under target, in band) plus ``cash``."""
    d = copy.deepcopy(SEED)
    syms = ["A", "B", "C", "D"]
    d["account"]["cash"] = cash
    d["targets"] = {s: 0.25 for s in syms}
    d["classes"] = {}
    d["prices"] = {s: 1.0 for s in syms}
    d["lots"] = [{"id": f"L{s}", "symbol": s, "quantity": 21, "cost_basis": 1.0, "acquired": "2020-01-01"}
                 for s in syms]
    d["policy"] = dict(policy)
    return d


@pytest.mark.parametrize("d,reason", [
    (seed(), "Drift Trigger"),                               # US_STOCK out of band
    (seed(withdrawal=1000.0), "Withdrawal"),                 # a withdrawal wins over drift
    (inband(4.0), "Cash Flow"),                              # cash to deploy, everything in band
    (inband(16.0), "Cash Flow"),                             # only cash itself over its band: a deposit
    (inband(16.0, min_cash=16.0), "Manual"),                 # the cash must stay
    ({**inband(0.0), "lots": [{"id": f"L{s}", "symbol": s, "quantity": 25, "cost_basis": 1.0,
                               "acquired": "2020-01-01"} for s in "ABCD"]}, "Manual"),  # on target
    ({**inband(0.0), "targets": {s: 0.2 for s in "ABCD"}}, "Drift Trigger"),  # cash 20 pts under target
])
def test_reason_inference(d, reason):
    account = account_from_dict(d)
    assert infer_reason(account, drift_report(account)) == reason
    assert plan_rebalance(account).reason == reason


def test_given_reason_is_kept_and_logged(tmp_path, capsys):
    acct = account_file(tmp_path)
    code, out, _ = cli(capsys, "rebalance", "generate", str(acct), "--reason", "  Quarterly Reset ", "--json")
    assert code == 0 and json.loads(out)["reason"] == "Quarterly Reset"
    code, out, _ = cli(capsys, "rebalance", "log", "--show", "1", "--json")
    assert json.loads(out)["reason"] == "Quarterly Reset"


# --- rebalance log ------------------------------------------------------------------------------
def generate_n(tmp_path, capsys, accounts: list[str]) -> None:
    for name in accounts:
        code, _, err = cli(capsys, "rebalance", "generate", str(account_file(tmp_path, seed(name), f"{name}.json")),
                           "--json")
        assert code == 0, err


def test_log_filters_and_show(tmp_path, capsys):
    generate_n(tmp_path, capsys, ["a", "b", "a"])
    code, out, _ = cli(capsys, "rebalance", "log", "--account", "a", "--json")
    assert code == 0 and [e["id"] for e in json.loads(out)["entries"]] == [1, 3]
    code, out, _ = cli(capsys, "rebalance", "log", "--since", "2000-01-01", "--json")
    assert len(json.loads(out)["entries"]) == 3
    code, out, _ = cli(capsys, "rebalance", "log", "--since", "2999-01-01", "--json")
    assert json.loads(out)["entries"] == []
    code, out, _ = cli(capsys, "rebalance", "log", "--show", "2")
    assert code == 0 and json.loads(out)["account"] == "b"
    for args, path in ((["--show", "99"], "--show"), (["--since", "yesterday"], "--since"),
                       (["--show", "1", "--verify"], "--verify"), (["--verify", "--account", "a"], "--account"),
                       (["--head", "0" * 64], "--head"), (["--verify", "--head", "nothex"], "--head")):
        code, out, err = cli(capsys, "rebalance", "log", *args, "--json")
        assert code == 2 and json.loads(out)["error"]["path"] == path, (args, out)


def test_verify_and_head_from_the_command_line(tmp_path, capsys, log_env):
    generate_n(tmp_path, capsys, ["a", "b", "c", "d"])
    code, out, _ = cli(capsys, "rebalance", "log", "--verify")
    assert code == 0 and out.startswith("ok: 4 entries")
    code, out, err = cli(capsys, "rebalance", "log", "--head")
    kept = out.strip()  # ID:HASH, what --verify --head checks most strictly
    assert code == 0 and kept.startswith("4:") and "entry 4" in err and f"--verify --head {kept}`" in err
    head = kept.split(":")[1]
    assert len(head) == 64
    code, out, _ = cli(capsys, "rebalance", "log", "--head", "--json")  # a bare --head before another option
    assert json.loads(out) == {"log": str(log_env), "id": 4, "hash": head}
    code, out, _ = cli(capsys, "rebalance", "log", "--verify", "--head", head, "--json")
    assert code == 0 and json.loads(out)["ok"] is True
    code, out, _ = cli(capsys, "rebalance", "log", "--verify", "--head", kept, "--json")  # as printed
    assert code == 0 and json.loads(out)["ok"] is True

    conn = sqlite3.connect(log_env)
    conn.execute("DROP TRIGGER entries_no_delete")
    conn.execute("DELETE FROM entries WHERE id = 4")  # cut off the newest entry
    conn.commit()
    code, _, _ = cli(capsys, "rebalance", "log", "--verify")
    assert code == 0, "without a kept head, a cut-off end is not visible"
    code, out, err = cli(capsys, "rebalance", "log", "--verify", "--head", f"4:{head}", "--json")
    assert code == 4 and json.loads(out)["first_bad"] == 4 and "entry 4" in err and "cut off" in err

    conn.execute("DROP TRIGGER entries_no_update")
    conn.execute("UPDATE entries SET reason = 'Quarterly Reset' WHERE id = 2")  # rewrite history
    conn.commit()
    conn.close()
    code, out, err = cli(capsys, "rebalance", "log", "--verify")
    assert code == 4 and "entry 2" in err and "altered" in err and out == ""
    code, out, _ = cli(capsys, "rebalance", "log", "--verify", "--json")
    result = json.loads(out)
    assert result["ok"] is False and result["first_bad"] == 2


def test_sigkill_inside_generate_leaves_log_and_basket_as_they_were(tmp_path, capsys, log_env):
    acct = account_file(tmp_path)
    generate_n(tmp_path, capsys, ["a"])
    out = tmp_path / "b.csv"
    env = {**os.environ, ENV_LOG: str(log_env), ENV_CRASH: "after_insert"}
    proc = subprocess.run([sys.executable, str(ROOT / "cli.py"), "rebalance", "generate", str(acct), "--out",
                           str(out), "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL and proc.stdout == ""
    assert not out.exists(), "the basket is put in place only after the entry commits"
    log = AuditLog(log_env)
    assert [e.id for e in log.entries()] == [1] and log.verify().ok
    code, doc, _ = cli(capsys, "rebalance", "generate", str(acct), "--out", str(out), "--json")
    assert code == 0 and json.loads(doc)["log_id"] == 2 and out.exists() and log.verify().ok
