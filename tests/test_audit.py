"""The audit log: chain, tamper detection (edit, delete, reorder, truncate, rehash), real SIGKILLs
(including between the insert and the commit) and concurrent writer processes."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from rebalance_opt import InputError, account_from_dict, plan_rebalance
from rebalance_opt.account_file import account_to_dict
from rebalance_opt.audit import (ENV_CRASH, ENV_LOG, FIELDS, GENESIS, AuditLog, LogLocation, canonical_json,
                                 check_writable, default_log_path, entry_hash, parse_head, parse_since,
                                 record_of, resolve_log, sha256_text)
from rebalance_opt.errors import DamagedLog
from tests.test_exports import seed

ROOT = Path(__file__).resolve().parents[1]


def plan_dict(account: str = "acct-1", reason: str = "Drift Trigger", n: int = 0) -> dict:
    """A small plan in ``Plan.to_dict()``'s shape (the log stores whatever the plan holds)."""
    return {"account": account, "as_of": "2026-11-24", "currency": "USD", "status": "optimal", "reason": reason,
            "stage": "full",
            "orders": [{"symbol": "VTI", "side": "sell", "quantity": 3.0 + n, "price": 100.0, "notional": 300.0,
                        "lots": [{"lot": "L1", "quantity": 3.0 + n, "gain": 90.0, "term": "long", "tax": 18.0}]}],
            "tax": {"short_term_gain": 0.0, "long_term_gain": 90.0, "estimated_tax": 18.0, "net_loss_carried": 0.0},
            "drift_before": {"US_STOCK": 0.1, "CASH": -0.1}, "drift_after": {"US_STOCK": 0.0, "CASH": 0.0},
            "solver": {"name": "OSQP", "status": "optimal", "solves": 2, "solve_seconds": 0.01,
                       "total_seconds": 0.02},
            "value": 1000.0, "cash_before": 10.0, "cash_after": 310.0, "notes": [], "log_id": None}


INPUTS = account_to_dict(account_from_dict(seed("acct-1")))


def fill(path: Path, n: int, account: str = "acct-1") -> AuditLog:
    log = AuditLog(path)
    for i in range(n):
        log.append(plan_dict(account, n=i), INPUTS)
    return log


def tamper(path: Path, *sql: str, params: tuple = ()) -> None:
    """Edit the log as an attacker with the sqlite3 module would: drop the guards, change rows."""
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER IF EXISTS entries_no_update")
    conn.execute("DROP TRIGGER IF EXISTS entries_no_delete")
    for stmt in sql:
        conn.execute(stmt, params if "?" in stmt else ())
    conn.commit()
    conn.close()


def run_sql(path: Path, script: str) -> None:
    """Change the log's file directly, guards left as they are (unlike ``tamper``)."""
    conn = sqlite3.connect(path)
    conn.executescript(script)
    conn.close()


def rows(path: Path) -> list[dict]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    out = [dict(r) for r in conn.execute("SELECT * FROM entries ORDER BY id")]
    conn.close()
    return out


def rehash_from(path: Path, start: int) -> None:
    """Recompute the hashes of entries ``start``.. so every link is consistent again."""
    all_rows = rows(path)
    prev = all_rows[start - 2]["hash"] if start > 1 else GENESIS
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER IF EXISTS entries_no_update")
    for r in all_rows[start - 1:]:
        r["prev_hash"] = prev
        r["hash"] = entry_hash(r)
        conn.execute("UPDATE entries SET prev_hash = ?, hash = ? WHERE id = ?", (prev, r["hash"], r["id"]))
        prev = r["hash"]
    conn.commit()
    conn.close()


# --- the chain ----------------------------------------------------------------------------------
def test_entries_chain_and_hash_every_field(tmp_path):
    path = tmp_path / "log.sqlite"
    log = fill(path, 3)
    stored = rows(path)
    assert [r["id"] for r in stored] == [1, 2, 3]
    assert stored[0]["prev_hash"] == GENESIS
    for before, r in zip([None, *stored], stored):
        assert r["hash"] == entry_hash(r)
        if before is not None:
            assert r["prev_hash"] == before["hash"]
        assert r["inputs_sha256"] == sha256_text(r["inputs"])
        assert r["time"].endswith("Z")
    result = log.verify()
    assert result.ok and result.entries == 3 and result.head == stored[-1]["hash"]
    assert log.head() == (3, stored[-1]["hash"])
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    # the hash covers every stored column
    for field in FIELDS:
        changed = dict(stored[1])
        changed[field] = "x" if changed[field] != "x" else "y"
        assert entry_hash(changed) != stored[1]["hash"], field


def test_entry_holds_the_spec_fields_and_canonical_inputs(tmp_path):
    account = account_from_dict(seed("household-1"))
    plan = plan_rebalance(account, reason="Quarterly Reset")
    entry = AuditLog(tmp_path / "log.sqlite").append(plan.to_dict(), account_to_dict(account),
                                                     {"path": "/x/b.csv", "format": "csv", "sha256": "ab"})
    whole = AuditLog(tmp_path / "log.sqlite").get(entry.id).to_dict()
    assert whole["reason"] == "Quarterly Reset" and whole["account"] == "household-1"
    assert whole["orders"] == json.loads(canonical_json(plan.to_dict()["orders"]))
    assert whole["tax"]["estimated_tax"] == plan.tax.estimated_tax
    assert whole["drift_before"] == plan.drift_before.drift_map()
    assert whole["drift_after"] == plan.drift_after.drift_map()
    assert whole["solver"]["name"] == plan.solver.name and whole["solver"]["status"] == "optimal"
    assert whole["solver"]["total_seconds"] == plan.solver.total_seconds
    assert whole["policy"] == account_to_dict(account)["policy"]
    assert whole["basket"]["format"] == "csv"
    # the inputs in the account's own order (class order is buy order), and they rebuild the very account
    stored = rows(tmp_path / "log.sqlite")[0]["inputs"]
    assert stored == json.dumps(account_to_dict(account), separators=(",", ":"), ensure_ascii=False)
    assert whole["inputs_sha256"] == sha256_text(stored)
    assert account_from_dict(whole["inputs"]) == account


def test_triggers_refuse_update_and_delete(tmp_path):
    path = tmp_path / "log.sqlite"
    fill(path, 2)
    conn = sqlite3.connect(path)
    for stmt in ("UPDATE entries SET reason = 'x' WHERE id = 1", "DELETE FROM entries WHERE id = 2"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute(stmt)
    conn.close()
    assert AuditLog(path).verify().ok


def test_an_intact_log_verifies_without_warnings(tmp_path):
    path = tmp_path / "log.sqlite"
    fill(path, 2)
    result = AuditLog(path).verify()
    assert result.ok and result.warnings == () and result.to_dict()["warnings"] == []


@pytest.mark.parametrize("sql,words", [
    ("DROP TRIGGER entries_no_delete", ["append-only trigger entries_no_delete is gone"]),
    ("DROP TRIGGER entries_no_update; DROP TRIGGER entries_no_delete",
     ["append-only triggers entries_no_update, entries_no_delete are gone"]),
    ("DROP TRIGGER entries_no_update; CREATE TRIGGER entries_no_update BEFORE UPDATE ON entries BEGIN SELECT 1; END",
     ["append-only trigger entries_no_update was rewritten"]),
    ("CREATE TRIGGER swallow BEFORE INSERT ON entries BEGIN SELECT RAISE(IGNORE); END",
     ["not create are on its entries: swallow"]),
    ("ALTER TABLE entries ADD COLUMN note TEXT", ["no hash covers: note"]),
])
def test_verify_warns_when_the_guards_changed_though_every_entry_is_intact(tmp_path, sql, words):
    # The chain checks entries, not the table's guards: with the triggers dropped, a column added or
    # an insert trigger that swallows entries, every entry still verifies, yet the log is no longer
    # guarded as it was made; verify says so (exit 0, the chain is intact)
    path = tmp_path / "log.sqlite"
    fill(path, 3)
    run_sql(path, sql)
    result = AuditLog(path).verify()
    assert result.ok and result.entries == 3
    assert len(result.warnings) == len(words)
    assert all(w in warning for w, warning in zip(words, result.warnings))
    assert result.to_dict()["warnings"] == list(result.warnings)


def test_an_append_a_trigger_swallows_is_a_damaged_log_and_nothing_is_appended(tmp_path):
    path = tmp_path / "log.sqlite"
    fill(path, 2)
    run_sql(path, "CREATE TRIGGER swallow BEFORE INSERT ON entries BEGIN SELECT RAISE(IGNORE); END")
    with pytest.raises(DamagedLog, match="did not store the entries as written"):
        AuditLog(path).append(plan_dict("acct-1", n=9), INPUTS)
    run_sql(path, "DROP TRIGGER swallow")
    assert len(rows(path)) == 2 and AuditLog(path).verify().ok


def test_log_verify_prints_the_warnings_on_stderr_and_exits_0(tmp_path):
    path = tmp_path / "log.sqlite"
    fill(path, 2)
    run_sql(path, "DROP TRIGGER entries_no_update")
    r = subprocess.run([sys.executable, str(Path(__file__).parents[1] / "cli.py"), "rebalance", "log", "--verify",
                        "--log", str(path)], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert r.returncode == 0 and r.stdout.startswith("ok: 2 entries, chain intact")
    assert "warning: the append-only trigger entries_no_update is gone" in r.stderr


def test_log_verify_of_a_mistyped_log_path_warns_that_there_is_no_log_there(tmp_path):
    # It printed "ok: 0 entries, chain intact" and nothing else, as if the log were fine.
    path = tmp_path / "typo.sqlite"
    r = subprocess.run([sys.executable, str(Path(__file__).parents[1] / "cli.py"), "rebalance", "log", "--verify",
                        "--log", str(path)], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert r.returncode == 0 and r.stdout.startswith("ok: 0 entries, chain intact")
    assert f"warning: there is no log file at {path}" in r.stderr and not path.exists()


# --- tamper detection ---------------------------------------------------------------------------
@pytest.mark.parametrize("sql,bad,word", [
    ("UPDATE entries SET reason = 'Quarterly Reset' WHERE id = 3", 3, "altered"),
    ("UPDATE entries SET orders = '[]' WHERE id = 2", 2, "altered"),
    ("UPDATE entries SET time = '2020-01-01T00:00:00.000000Z' WHERE id = 1", 1, "altered"),
    ("UPDATE entries SET inputs = replace(inputs, '10000.0', '99999.0') WHERE id = 4", 4, "altered"),
    ("DELETE FROM entries WHERE id = 3", 3, "missing"),
    ("DELETE FROM entries WHERE id = 1", 1, "missing"),
    ("UPDATE entries SET id = id + 100 WHERE id = 2", 2, "missing"),
])
def test_verify_names_the_first_altered_or_missing_entry(tmp_path, sql, bad, word):
    path = tmp_path / "log.sqlite"
    fill(path, 5)
    tamper(path, sql)
    result = AuditLog(path).verify()
    assert not result.ok and result.first_bad == bad and word in result.problem
    assert f"entry {bad}" in result.message


def test_reordered_entries_are_detected(tmp_path):
    path = tmp_path / "log.sqlite"
    fill(path, 4)
    tamper(path, "UPDATE entries SET id = -2 WHERE id = 2", "UPDATE entries SET id = 2 WHERE id = 3",
           "UPDATE entries SET id = 3 WHERE id = -2")
    result = AuditLog(path).verify()
    assert not result.ok and result.first_bad == 2


def test_an_altered_and_rehashed_entry_breaks_the_next_link(tmp_path):
    path = tmp_path / "log.sqlite"
    fill(path, 4)
    r = rows(path)[1]
    r["reason"] = "Manual"
    tamper(path, "UPDATE entries SET reason = 'Manual', hash = ? WHERE id = 2", params=(entry_hash(r),))
    result = AuditLog(path).verify()
    assert not result.ok and result.first_bad == 3 and "link" in result.problem


def test_truncation_and_rehashing_need_the_kept_head(tmp_path):
    path = tmp_path / "log.sqlite"
    log = fill(path, 5)
    head_id, head = log.head()
    kept = f"{head_id}:{head}"
    assert log.verify(head).ok and log.verify(kept).ok
    fill(path, 2)  # legitimate appends after the head was kept
    result = log.verify(kept)
    assert result.ok and result.since_kept_head == 2

    tamper(path, "DELETE FROM entries WHERE id >= 5")  # cut off the newest three
    assert log.verify().ok, "a chain alone cannot see its end cut off"
    cut = log.verify(kept)
    assert not cut.ok and cut.first_bad == 5 and "cut off" in cut.problem
    cut = log.verify(head)
    assert not cut.ok and "not in the log" in cut.problem

    path2 = tmp_path / "log2.sqlite"
    log2 = fill(path2, 4)
    kept2 = "%d:%s" % log2.head()
    tamper(path2, "UPDATE entries SET reason = 'Manual' WHERE id = 2")
    rehash_from(path2, 2)
    assert log2.verify().ok, "a rehashed chain is consistent"
    result = log2.verify(kept2)
    assert not result.ok and "rehashed" in result.problem and result.first_bad == 4


def test_genesis_head_and_bad_heads(tmp_path):
    log = AuditLog(tmp_path / "none.sqlite")
    assert log.head() == (0, GENESIS) and log.verify(GENESIS).ok
    assert not (tmp_path / "none.sqlite").exists(), "reading creates nothing"
    for bad in ("xyz", "12", "a:" + "0" * 64, "0" * 63):
        with pytest.raises(InputError) as e:
            parse_head(bad)
        assert e.value.path == "--head"
    assert parse_head("7:" + "AB" * 32) == (7, "ab" * 32)


@pytest.mark.parametrize("head,message", [
    ("5:" + GENESIS, "no entry 5's hash"),
    ("1:" + GENESIS, "no entry 1's hash"),
    ("0:" + "ab" * 32, "entry 0 is the empty log"),
])
def test_a_kept_head_pairs_the_genesis_hash_with_id_0_only(tmp_path, head, message):
    # `--verify --head 5:000…` passed on any intact log: the id was ignored with the genesis hash.
    log = fill(tmp_path / "log.sqlite", 3)
    with pytest.raises(InputError) as e:
        log.verify(head)
    assert e.value.path == "--head" and message in str(e.value)
    assert log.verify("0:" + GENESIS).ok and log.verify(GENESIS).ok  # the empty log starts every chain
    assert AuditLog(tmp_path / "empty.sqlite").verify("0:" + GENESIS).ok


def test_a_kept_head_with_the_wrong_id_is_reported(tmp_path):
    log = fill(tmp_path / "log.sqlite", 3)
    _, digest = log.head()
    result = log.verify(f"2:{digest}")
    assert not result.ok and "entry 2" in result.problem


@pytest.mark.parametrize("sql,problem", [
    ("ALTER TABLE entries DROP COLUMN basket", "no column 'basket'"),
    ("DROP TABLE entries", "entries table is gone"),
    ("DELETE FROM meta", "schema record"),
])
def test_a_log_missing_part_of_its_schema_is_damaged_not_another_file(tmp_path, sql, problem):
    path = tmp_path / "log.sqlite"
    log = fill(path, 3)
    tamper(path, sql)
    before = path.read_bytes()
    for read in (log.entries, log.head, lambda: log.get(1)):
        with pytest.raises(DamagedLog) as e:
            read()
        assert e.value.exit_code == 4 and problem in str(e.value) and e.value.file == str(path)
    with pytest.raises(DamagedLog):
        check_writable(LogLocation(path, "--log"))
    with pytest.raises(DamagedLog):
        log.append(plan_dict(), INPUTS)
    assert path.read_bytes() == before
    result = log.verify()
    assert not result.ok and result.first_bad == 1 and problem in result.problem


def test_verify_names_the_first_entry_it_cannot_read_in_a_damaged_file(tmp_path):
    path = tmp_path / "log.sqlite"
    AuditLog(path).append_many([record_of(plan_dict(n=i), INPUTS) for i in range(40)])
    data = bytearray(path.read_bytes())
    page = len(data) // 4096 * 2 // 3  # a page of entries two thirds in, overwritten
    data[page * 4096:(page + 1) * 4096] = b"\xff" * 4096
    path.write_bytes(bytes(data))
    result = AuditLog(path).verify()
    assert not result.ok and "cut short or overwritten" in result.problem
    assert 1 < result.first_bad <= 40 and result.entries == result.first_bad - 1


def test_a_lock_free_read_overlapped_by_a_writer_is_refused(tmp_path, monkeypatch):
    # In a directory the reader cannot write, a log is read `immutable` (no locks, no WAL): if a
    # writer who can write there changes the file meanwhile, the read may be torn, so it is refused.
    import rebalance_opt.audit as audit
    path = tmp_path / "log.sqlite"
    log = fill(path, 2)
    monkeypatch.setattr(audit, "_open_to_read", lambda where: (
        audit._connect(where, create=False, immutable=True), audit._file_stamp(where.path)))
    assert [e.id for e in log.entries()] == [1, 2] and log.verify().ok
    rows = log._rows("SELECT id FROM entries ORDER BY id")
    assert next(rows)["id"] == 1
    fill(path, 1)  # its commit is folded into the log file when it closes
    with pytest.raises(InputError, match="run the command again"):
        list(rows)


# --- where the log is, and what is not a log ----------------------------------------------------
def test_log_location_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_LOG, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert resolve_log(None) == LogLocation(tmp_path / "xdg" / "rebalance-opt" / "audit.sqlite", "default")
    assert default_log_path() == tmp_path / "xdg" / "rebalance-opt" / "audit.sqlite"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_log_path() == Path.home() / ".local" / "share" / "rebalance-opt" / "audit.sqlite"
    monkeypatch.setenv(ENV_LOG, str(tmp_path / "env.sqlite"))
    assert resolve_log(None) == LogLocation(tmp_path / "env.sqlite", ENV_LOG)
    assert resolve_log(str(tmp_path / "opt.sqlite")) == LogLocation(tmp_path / "opt.sqlite", "--log")
    with pytest.raises(InputError) as e:
        resolve_log("postgresql://user@host/db")
    assert e.value.path == "--log"


def test_default_log_directory_is_created_on_demand(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_LOG, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    where = resolve_log(None)
    check_writable(where)
    assert not (tmp_path / "xdg").exists(), "checking creates nothing"
    AuditLog(where).append(plan_dict(), INPUTS)
    assert where.path.exists() and AuditLog(where).verify().ok


def test_what_is_not_a_writable_log_is_an_input_error(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello " * 200)
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    for path in (text, other, tmp_path, tmp_path / "missing" / "log.sqlite"):
        with pytest.raises(InputError) as e:
            check_writable(LogLocation(path, "--log"))
        assert e.value.path == "--log" and e.value.file == str(path)
    assert not (tmp_path / "missing").exists()
    with pytest.raises(InputError):
        AuditLog(other).entries()
    check_writable(LogLocation(tmp_path / "new.sqlite", "--log"))
    assert not (tmp_path / "new.sqlite").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_a_log_path_sqlite_would_fail_on_after_the_solve_is_refused_before_any_work(tmp_path):
    # each passed the check, so `generate` solved, then ended in "unable to open database file" or "disk
    # I/O error" (exit 2, an empty file or a -journal left behind), or "unexpected error" (exit 1)
    if os.pathconf(tmp_path, "PC_NAME_MAX") != 255:
        pytest.skip("names are not limited to 255 bytes here")
    loop = tmp_path / "loop.sqlite"
    loop.symlink_to("loop.sqlite")
    into_nowhere = tmp_path / "link.sqlite"
    into_nowhere.symlink_to(tmp_path / "missing" / "log.sqlite")
    fifo = tmp_path / "fifo.sqlite"
    os.mkfifo(fifo)
    too_long = tmp_path / ("c" * 300 + ".sqlite")
    no_room = tmp_path / ("c" * 241 + ".sqlite")  # 248 bytes: SQLite's NAME-journal beside it would be 256
    made = sorted(p.name for p in tmp_path.iterdir())
    for path, words in ((loop, "loops"), (into_nowhere, "directory does not exist"), (fifo, "not a regular file"),
                        (too_long, "cannot be used"), (no_room, "at most 247 bytes")):
        with pytest.raises(InputError) as e:
            check_writable(LogLocation(path, "--log"))
        assert e.value.path == "--log" and e.value.file == str(path) and words in str(e.value), str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == made
    with pytest.raises(InputError, match="cannot read the audit log"):  # was OSError: File name too long
        AuditLog(too_long).entries()
    longest = tmp_path / ("c" * 240 + ".sqlite")  # 247 bytes
    check_writable(LogLocation(longest, "--log"))
    fill(longest, 2)
    assert AuditLog(longest).verify().ok


def test_listing_filters_by_account_and_time(tmp_path):
    log = AuditLog(tmp_path / "log.sqlite")
    log.append(plan_dict("a"), INPUTS, now=datetime(2026, 1, 5, 12, tzinfo=timezone.utc))
    log.append(plan_dict("b"), INPUTS, now=datetime(2026, 2, 5, 12, tzinfo=timezone.utc))
    log.append(plan_dict("a"), INPUTS, now=datetime(2026, 3, 5, 12, tzinfo=timezone.utc))
    assert [e.id for e in log.entries()] == [1, 2, 3]
    assert [e.id for e in log.entries(account="a")] == [1, 3]
    assert [e.id for e in log.entries(since=parse_since("2026-02-05"))] == [2, 3]
    assert [e.id for e in log.entries(account="a", since=parse_since("2026-02-05T13:00:00Z"))] == [3]
    assert log.entries(account="zzz") == []
    # a year before 1000 was written with three digits ("999-01-01..."), which sorts after "2026-..."
    assert [e.id for e in log.entries(since=parse_since("0999-01-01"))] == [1, 2, 3]
    assert [e.id for e in log.entries(since=parse_since("0300-06-01T00:00:00+01:00"))] == [1, 2, 3]
    assert [e.id for e in log.entries(since=parse_since("9999-12-31"))] == []
    s = log.entries()[0].summary()
    assert s["orders"] == 1 and s["estimated_tax"] == 18.0 and s["solver_status"] == "optimal"
    with pytest.raises(InputError) as e:
        parse_since("last tuesday")
    assert e.value.path == "--since"


# --- real processes: SIGKILL and concurrent writers ---------------------------------------------
WORKER = """
import json, os, sys, time
from rebalance_opt.audit import AuditLog
path, count, go, account = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
plan, inputs = json.loads(os.environ["PLAN"]), json.loads(os.environ["INPUTS"])
while not os.path.exists(go):
    time.sleep(0.002)
log, i = AuditLog(path), 0
while count < 0 or i < count:
    plan["orders"][0]["quantity"] = i
    log.append(plan, inputs)
    i += 1
"""


def spawn(path: Path, count: int, go: Path, account: str = "acct-1", crash: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "PLAN": json.dumps(plan_dict(account)), "INPUTS": json.dumps(INPUTS),
           "PYTHONPATH": str(ROOT)}
    env.pop(ENV_CRASH, None)
    if crash:
        env[ENV_CRASH] = crash
    return subprocess.Popen([sys.executable, "-c", WORKER, str(path), str(count), str(go), account], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def count_entries(path: Path) -> int:
    return len(AuditLog(path).entries())


def test_sigkill_between_insert_and_commit_leaves_the_log_as_it_was(tmp_path):
    path, go = tmp_path / "log.sqlite", tmp_path / "go"
    fill(path, 3)
    before = rows(path)
    go.touch()
    proc = spawn(path, 1, go, crash="after_insert")
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert rows(path) == before, "the killed entry left no trace"
    assert AuditLog(path).verify().ok
    log = fill(path, 1)  # the next append continues the chain
    assert [e.id for e in log.entries()] == [1, 2, 3, 4] and log.verify().ok

    proc = spawn(path, 1, go, crash="after_commit")  # killed just after committing: the entry stays
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert count_entries(path) == 5 and AuditLog(path).verify().ok


def test_concurrent_writers_all_land_with_the_chain_intact(tmp_path):
    path, go = tmp_path / "log.sqlite", tmp_path / "go"
    procs = [spawn(path, 25, go, account=f"acct-{k}") for k in range(3)]  # a fresh log: creation races too
    time.sleep(0.5)
    go.touch()
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()
    entries = AuditLog(path).entries()
    assert [e.id for e in entries] == list(range(1, 76))
    assert sorted(e.row["account"] for e in entries) == sorted(f"acct-{k}" for k in range(3) for _ in range(25))
    assert AuditLog(path).verify().ok


def test_writers_killed_at_random_moments_leave_a_valid_log(tmp_path):
    path, go = tmp_path / "log.sqlite", tmp_path / "go"
    fill(path, 1)
    procs = [spawn(path, -1, go, account=f"acct-{k}") for k in range(3)]  # append until killed
    go.touch()
    deadline = time.monotonic() + 30
    for k, p in enumerate(procs):
        target = 10 * (k + 1)
        while count_entries(path) < target and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.003 * k)
        p.send_signal(signal.SIGKILL)
        p.communicate(timeout=30)
        assert p.returncode == -signal.SIGKILL
    result = AuditLog(path).verify()
    assert result.ok and result.entries >= 30
    assert fill(path, 1).verify().ok


# --- many entries in one transaction (``append_many``, what a batch uses) ---------------------------
def records(account: str, n: int, start: int = 0) -> list[dict]:
    from rebalance_opt.audit import record_of
    return [record_of(plan_dict(account, n=start + i), INPUTS) for i in range(n)]


def test_append_many_interleaves_with_single_appends_in_one_verified_chain(tmp_path):
    path = tmp_path / "log.sqlite"
    log = fill(path, 2, account="single")
    assert log.append_many(records("many", 3)) == [3, 4, 5]
    log.append(plan_dict("single", n=9), INPUTS)
    assert log.append_many(records("many", 2, start=3)) == [7, 8]
    assert log.append_many([]) == []

    entries = log.entries()
    assert [e.id for e in entries] == list(range(1, 9))
    assert [e.row["account"] for e in entries] == ["single"] * 2 + ["many"] * 3 + ["single"] + ["many"] * 2
    for before, entry in zip(entries, entries[1:]):
        assert entry.row["prev_hash"] == before.hash and entry.hash == entry_hash(entry.row)
    assert [e.field("orders")[0]["quantity"] for e in entries[2:5]] == [3.0, 4.0, 5.0]  # in the order given
    assert len({e.row["time"] for e in entries[2:5]}) == 1  # one transaction, one time stamp
    assert log.verify().ok

    cli = subprocess.run([sys.executable, str(ROOT / "cli.py"), "rebalance", "log", "--verify", "--log", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0 and "8 entries" in cli.stdout, cli.stdout + cli.stderr

    tamper(path, "UPDATE entries SET reason = 'edited' WHERE id = 4")
    result = AuditLog(path).verify()
    assert not result.ok and result.first_bad == 4
    cli = subprocess.run([sys.executable, str(ROOT / "cli.py"), "rebalance", "log", "--verify", "--log", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 4 and "entry 4" in (cli.stdout + cli.stderr)


def test_append_many_is_all_or_nothing(tmp_path):
    path = tmp_path / "log.sqlite"
    log = fill(path, 2)
    before = rows(path)
    good = records("acct-1", 2)
    broken = {k: v for k, v in good[1].items() if k != "orders"}  # a record missing a stored column
    with pytest.raises(KeyError):
        log.append_many([good[0], broken])
    assert rows(path) == before and log.verify().ok
    assert log.append_many(good) == [3, 4] and log.verify().ok


def test_append_many_on_a_new_log_creates_it_and_nothing_for_no_records(tmp_path):
    empty = AuditLog(tmp_path / "none.sqlite")
    assert empty.append_many([]) == [] and not empty.path.exists()
    log = AuditLog(tmp_path / "new.sqlite")
    assert log.append_many(records("acct-1", 3)) == [1, 2, 3]
    assert log.entries()[0].row["prev_hash"] == GENESIS and log.verify().ok


def test_batch_code_uses_no_private_part_of_the_audit_module():
    import ast
    tree = ast.parse((ROOT / "rebalance_opt" / "batch.py").read_text())
    imported = [a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module == "audit"
                for a in node.names]
    assert "AuditLog" in imported and not [n for n in imported if n.startswith("_")], imported
    attributes = [node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                  and isinstance(node.value, ast.Name) and node.value.id == "audit"]
    assert not [a for a in attributes if a.startswith("_")]


MANY_WRITER = """
import json, os, sys
from rebalance_opt.audit import AuditLog, record_of
plan, inputs = json.loads(os.environ["PLAN"]), json.loads(os.environ["INPUTS"])
records = []
for i in range(int(sys.argv[2])):
    plan["orders"][0]["quantity"] = i
    records.append(record_of(plan, inputs))
print(AuditLog(sys.argv[1]).append_many(records), flush=True)
"""


def test_sigkill_inside_append_many_leaves_the_log_as_it_was(tmp_path):
    path = tmp_path / "log.sqlite"
    fill(path, 2)
    before = rows(path)
    env = {**os.environ, "PLAN": json.dumps(plan_dict("many")), "INPUTS": json.dumps(INPUTS), "PYTHONPATH": str(ROOT),
           ENV_CRASH: "after_insert"}
    proc = subprocess.run([sys.executable, "-c", MANY_WRITER, str(path), "5"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert rows(path) == before and AuditLog(path).verify().ok  # none of the five entries landed

    env.pop(ENV_CRASH)
    proc = subprocess.run([sys.executable, "-c", MANY_WRITER, str(path), "5"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[3, 4, 5, 6, 7]", proc.stderr
    assert AuditLog(path).verify().ok


# --- found by the third fuzzing pass ---------------------------------------------------------------
def test_a_zero_byte_log_reads_as_the_empty_log_that_appending_takes_it_for(tmp_path):
    # Readers said "cannot read the audit log: no such table: entries" (exit 2) while generate and
    # batch appended to the same file as a new log.
    path = tmp_path / "log.sqlite"
    path.write_bytes(b"")
    log = AuditLog(path)
    assert log.entries() == [] and log.head() == (0, GENESIS) and log.get(1) is None
    assert log.verify().ok and log.verify("0:" + GENESIS).ok
    result = log.verify("3:" + "ab" * 32)
    assert not result.ok and "cut off" in result.problem  # a kept head still catches a log emptied
    assert path.read_bytes() == b"", "reading creates nothing"
    log.append(plan_dict(), INPUTS)
    assert [e.id for e in log.entries()] == [1] and log.verify().ok


def test_verifying_a_log_not_yet_written_warns_of_no_missing_triggers(tmp_path):
    # `log --verify` said "warning: the append-only triggers entries_no_update, entries_no_delete are gone"
    # of a log not created yet, and of a zero-byte file (`touch log.sqlite`), the new log appending takes it for
    path = tmp_path / "log.sqlite"
    result = AuditLog(path).verify()
    assert result.ok and result.entries == 0 and not path.exists()
    assert result.warnings == (f"there is no log file at {path}: nothing has been recorded there "
                               "(is this the log you meant?)",)  # only that: no missing triggers
    path.write_bytes(b"")
    result = AuditLog(path).verify()
    assert result.ok and result.entries == 0 and result.warnings == ()
    fill(path, 1)
    tamper(path)  # the guards dropped from a log with a table: still warned of
    assert " gone: SQLite no longer refuses" in AuditLog(path).verify().warnings[0]


@pytest.mark.parametrize("sql", ["UPDATE entries SET reason = CAST(x'ff41' AS TEXT) WHERE id = 2",
                                 "UPDATE entries SET reason = x'ff00fe' WHERE id = 2",
                                 "UPDATE entries SET account = x'61' WHERE id = 2"])
def test_an_entry_edited_to_bytes_is_altered_not_unreadable(tmp_path, sql):
    # Text that is not UTF-8 made every read fail ("Could not decode to UTF-8 column", exit 2, even
    # log --verify); a BLOB made log --show / --json exit 1 (bytes are not JSON) and the web app 500.
    path = tmp_path / "log.sqlite"
    log = fill(path, 3)
    tamper(path, sql)
    result = log.verify()
    assert not result.ok and result.first_bad == 2 and "do not match its hash" in result.problem
    entries = log.entries()
    assert [e.id for e in entries] == [1, 2, 3]
    json.dumps([e.summary() for e in entries]) and json.dumps(entries[1].to_dict(), allow_nan=False)
    assert all(isinstance(entries[1].summary()[k], str) for k in ("account", "reason"))


@pytest.mark.parametrize("version", ["0", "one", "1.0", " 1", "-3"])
def test_a_schema_record_edited_to_no_schema_is_a_damaged_log(tmp_path, version):
    path = tmp_path / "log.sqlite"
    log = fill(path, 2)
    tamper(path, "UPDATE meta SET value = ? WHERE key = 'schema'", params=(version,))
    before = path.read_bytes()
    with pytest.raises(DamagedLog, match="schema record"):
        log.entries()
    with pytest.raises(DamagedLog):
        log.append(plan_dict(), INPUTS)
    assert path.read_bytes() == before
    assert not log.verify().ok
    tamper(path, "UPDATE meta SET value = '2' WHERE key = 'schema'")  # a newer schema: another program's file
    with pytest.raises(InputError, match="newer rebalance-opt"):
        log.entries()


def test_a_column_retyped_is_a_damaged_log_before_anything_is_appended(tmp_path):
    # The table rebuilt with `reason INTEGER`: SQLite stored the reason "5" as the number 5, so the
    # entry generate had just written failed log --verify.
    path = tmp_path / "log.sqlite"
    fill(path, 2)
    conn = sqlite3.connect(path)
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'entries'").fetchone()[0]
    conn.executescript("DROP TRIGGER entries_no_update; DROP TRIGGER entries_no_delete; DROP INDEX entries_account;"
                       "ALTER TABLE entries RENAME TO old;"
                       + sql.replace("reason        TEXT", "reason        INTEGER")
                       + "; INSERT INTO entries SELECT * FROM old; DROP TABLE old;")
    conn.close()
    before = path.read_bytes()
    with pytest.raises(DamagedLog, match="column reason declared INTEGER"):
        AuditLog(path).append(plan_dict(reason="5"), INPUTS)
    assert path.read_bytes() == before
    assert "reason declared INTEGER" in AuditLog(path).verify().problem


@pytest.mark.parametrize("sql", [
    "CREATE TRIGGER no_insert BEFORE INSERT ON entries BEGIN SELECT RAISE(ABORT, 'no more'); END",
    "ALTER TABLE entries ADD COLUMN extra TEXT CHECK (id < 3)",  # holds for the entries there
])
def test_a_log_that_refuses_the_entry_is_a_damaged_log(tmp_path, sql):
    # generate solved, then ended in "unexpected error: IntegrityError" (exit 1).
    path = tmp_path / "log.sqlite"
    log = fill(path, 2)
    tamper(path, sql)
    before = rows(path)
    with pytest.raises(DamagedLog, match="refused the entry") as e:
        log.append(plan_dict(), INPUTS)
    assert e.value.exit_code == 4 and rows(path) == before


def test_a_head_hash_that_is_no_digest_is_a_damaged_log(tmp_path):
    # `log --head` printed "3:5" and advised `--verify --head 3:5`, which --head refuses.
    path = tmp_path / "log.sqlite"
    log = fill(path, 3)
    tamper(path, "UPDATE entries SET hash = 5 WHERE id = 3")
    with pytest.raises(DamagedLog, match="not a sha256 digest"):
        log.head()
    with pytest.raises(DamagedLog, match="not a sha256 digest"):
        log.append(plan_dict(), INPUTS)


@pytest.mark.parametrize("head", ["\u00b3:" + "ab" * 32, "\u0663:" + "ab" * 32])
def test_a_kept_heads_id_is_ascii_digits(head):
    # "³" passes str.isdigit() but not int(): exit 1; the Arabic-Indic "٣" was read as 3.
    with pytest.raises(InputError) as e:
        parse_head(head)
    assert e.value.path == "--head"


def test_a_write_lock_held_past_the_busy_timeout_is_an_error_not_hours_of_waiting(tmp_path, monkeypatch):
    # Each of 200 retries waited the whole 60 s busy timeout: generate, its plan solved, sat 3 h 20 min
    # behind another process's open write transaction.
    import rebalance_opt.audit as audit
    from rebalance_opt.errors import RebalanceError
    monkeypatch.setattr(audit, "BUSY_TIMEOUT", 0.5)
    path = tmp_path / "log.sqlite"
    log = fill(path, 2)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with pytest.raises(RebalanceError, match="locked by another process") as e:
            log.append(plan_dict(), INPUTS)
        assert time.monotonic() - started < 10 and e.value.exit_code == 1 and str(path) in str(e.value)
        assert [x.id for x in log.entries()] == [1, 2]  # readers are not blocked
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert log.append(plan_dict(), INPUTS).id == 3 and log.verify().ok


def test_a_log_reached_by_a_symbolic_link_needs_the_folder_it_points_into_writable(tmp_path, monkeypatch):
    # SQLite keeps -wal and -shm beside the file a link points to: the link's own folder was checked,
    # so a link in a read-only folder to a log in a writable one was refused (and the reverse passed).
    target = tmp_path / "logs" / "log.sqlite"
    target.parent.mkdir()
    fill(target, 1)
    (tmp_path / "links").mkdir()
    link = tmp_path / "links" / "log.sqlite"
    link.symlink_to(target)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != link.parent and real_access(p, mode))
    check_writable(LogLocation(link, "--log"))  # the link's folder is read-only: no matter
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != target.parent and real_access(p, mode))
    with pytest.raises(InputError, match=f"directory {target.parent} writable"):
        check_writable(LogLocation(link, "--log"))


def test_a_logged_entry_replays_to_the_same_orders_when_class_order_picks_the_fund(tmp_path):
    # The inputs were stored with sorted keys: [classes] came back alphabetical, so a class whose
    # buy fund is listed second (AGG above BND) replayed buying BND, and two accounts that buy
    # different funds shared one inputs_sha256.
    from rebalance_opt import load_account
    root = Path(__file__).parents[1] / "examples"
    text = (root / "cash_flow.toml").read_text()
    assert 'BND = "US_BOND"\nAGG = "US_BOND"' in text
    swapped = tmp_path / "agg_first.toml"
    swapped.write_text(text.replace('BND = "US_BOND"\nAGG = "US_BOND"', 'AGG = "US_BOND"\nBND = "US_BOND"'))
    log = AuditLog(tmp_path / "log.sqlite")
    entries = []
    for path in (root / "cash_flow.toml", swapped):
        account = load_account(path)
        entries.append(log.append(plan_rebalance(account).to_dict(), account_to_dict(account)))
    logged = [log.get(e.id).to_dict() for e in entries]
    bought = [{o["symbol"] for o in entry["orders"] if o["side"] == "buy"} for entry in logged]
    assert "BND" in bought[0] and "AGG" in bought[1]  # the two files buy different bond funds
    assert logged[0]["inputs_sha256"] != logged[1]["inputs_sha256"]
    for entry in logged:  # the inputs, as `log --show` prints them, plan the very orders logged
        replayed = plan_rebalance(account_from_dict(json.loads(json.dumps(entry["inputs"])))).to_dict()
        assert [(o["symbol"], o["side"], o["quantity"]) for o in replayed["orders"]] == \
            [(o["symbol"], o["side"], o["quantity"]) for o in entry["orders"]]
