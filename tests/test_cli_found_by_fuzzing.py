"""Entry points run as a user runs them, on inputs a fuzzing pass over the CLI found mishandled:
a basket that would overwrite the audit log, an account or its lots file; a batch FIX basket with
names FIX cannot carry; lot ids a csv basket cannot separate; files that ended in "unexpected
error" (exit 1) instead of an input error (exit 2) naming the file."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from tests.conftest import ROOT, base_dict, cli, run_cli


@pytest.fixture
def folder(tmp_path):
    f = tmp_path / "accounts"
    f.mkdir()
    shutil.copy(ROOT / "examples" / "household.toml", f / "household.toml")
    return f


def test_a_batch_basket_never_replaces_the_audit_log(capsys, folder, tmp_path):
    log = tmp_path / "log.sqlite"
    assert cli(capsys, "rebalance", "batch", str(folder), "--workers", "1", "--log", str(log))[0] == 0
    before = log.read_bytes()
    code, _, err = cli(capsys, "rebalance", "batch", str(folder), "--workers", "1", "--log", str(log),
                       "--out", str(log), "--format", "csv")
    assert code == 2 and "is the audit log" in err
    assert log.read_bytes() == before
    assert cli(capsys, "rebalance", "log", "--verify", "--log", str(log))[0] == 0


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm", "-journal"])
@pytest.mark.parametrize("dry_run", [False, True])
def test_a_basket_never_replaces_the_audit_log_or_the_files_sqlite_keeps_beside_it(capsys, folder, tmp_path,
                                                                                   suffix, dry_run):
    log = tmp_path / "log.sqlite"
    account = str(folder / "household.toml")
    assert cli(capsys, "rebalance", "generate", account, "--log", str(log))[0] == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    out = Path(f"{log}{suffix}")
    dry = ["--dry-run"] if dry_run else []
    for command in (["generate", account], ["batch", str(folder), "--workers", "1"]):
        code, output, err = cli(capsys, "rebalance", *command, "--log", str(log), "--out", str(out),
                                "--format", "csv", "--json", *dry)
        assert code == 2, err
        error = json.loads(output)["error"]
        assert error["path"] == "--out" and repr(str(out)) in error["message"]
        assert ("is the audit log;" if not suffix else f"is the audit log's {suffix} file") in error["message"]
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before  # nothing written
    assert cli(capsys, "rebalance", "log", "--verify", "--log", str(log))[0] == 0


def test_a_dry_run_basket_never_replaces_the_log_named_by_the_environment(capsys, folder, tmp_path, monkeypatch):
    log = tmp_path / "env.sqlite"
    monkeypatch.setenv("REBALANCE_OPT_LOG", str(log))
    assert cli(capsys, "rebalance", "generate", str(folder / "household.toml"))[0] == 0
    before = log.read_bytes()
    code, _, err = cli(capsys, "rebalance", "generate", str(folder / "household.toml"), "--dry-run",
                       "--out", f"{log}-wal", "--format", "json")
    assert code == 2 and "--out" in err and "-wal file" in err and not Path(f"{log}-wal").exists()
    assert log.read_bytes() == before


def test_a_batch_basket_is_never_written_into_the_account_folder(capsys, folder):
    account = folder / "household.toml"
    before = account.read_bytes()
    code, _, err = cli(capsys, "rebalance", "batch", str(folder), "--workers", "1", "--dry-run",
                       "--out", str(account), "--format", "csv")
    assert code == 2 and "inside the account folder" in err
    assert account.read_bytes() == before


def test_generate_never_replaces_the_accounts_own_lots_file(capsys, tmp_path):
    d = base_dict()
    lots = tmp_path / "lots.csv"
    lots.write_text("id,symbol,quantity,cost_basis,acquired\n"
                    + "".join(f"{l['id']},{l['symbol']},{l['quantity']},{l['cost_basis']},{l['acquired']}\n"
                              for l in d.pop("lots")))
    d["lots_file"] = "lots.csv"
    account = tmp_path / "acct.json"
    account.write_text(json.dumps(d))
    before = lots.read_bytes()
    code, _, err = cli(capsys, "rebalance", "generate", str(account), "--dry-run", "--out", str(lots))
    assert code == 2 and "lots_file" in err
    assert lots.read_bytes() == before


def test_a_batch_fix_basket_fails_the_account_whose_names_fix_cannot_carry(capsys, folder, tmp_path):
    d = base_dict()
    d["account"]["id"] = "Kontø"
    (folder / "odd.json").write_text(json.dumps(d))
    out = tmp_path / "basket.fix"
    code, output, _ = cli(capsys, "rebalance", "batch", str(folder), "--workers", "1", "--dry-run",
                          "--out", str(out), "--json")
    summary = json.loads(output)
    assert code == 5 and summary["failed"] == 1
    (failure,) = summary["failures"]
    assert failure["kind"] == "input error" and failure["path"] == "account.id"
    assert out.read_bytes().isascii()  # the other account's orders, in printable ASCII


def test_a_lot_id_with_a_semicolon_cannot_go_in_a_csv_basket(capsys, tmp_path):
    d = base_dict()
    d["lots"][0]["id"] = "L;1"
    account = tmp_path / "acct.json"
    account.write_text(json.dumps(d))
    code, _, err = cli(capsys, "rebalance", "generate", str(account), "--dry-run", "--out", str(tmp_path / "b.csv"))
    assert code == 2 and "lots[0].id" in err
    assert not (tmp_path / "b.csv").exists()
    code, _, _ = cli(capsys, "rebalance", "generate", str(account), "--dry-run", "--out", str(tmp_path / "b.json"))
    assert code == 0  # JSON keeps every lot id apart


@pytest.mark.parametrize("lots_bytes, message", [
    ("id,symbol,quantity,cost_basis,acquired\nLé1,VTI,100,60.0,2020-01-02\n".encode("latin-1"), "not UTF-8"),
    (("id,symbol,quantity,cost_basis,acquired\n" + "x" * 200_000 + ",VTI,1,1,2020-01-02\n").encode(),
     "not a readable CSV"),
])
def test_an_unreadable_lots_file_is_an_input_error_naming_it(capsys, tmp_path, lots_bytes, message):
    d = base_dict()
    d.pop("lots")
    d["lots_file"] = "lots.csv"
    (tmp_path / "lots.csv").write_bytes(lots_bytes)
    account = tmp_path / "acct.json"
    account.write_text(json.dumps(d))
    code, _, err = cli(capsys, "rebalance", "check", str(account))
    assert code == 2 and message in err and "lots.csv" in err and "Traceback" not in err


def test_a_ragged_covariance_is_an_input_error(capsys, tmp_path):
    d = base_dict()
    d["risk"] = {"classes": ["US_STOCK", "INTL_STOCK", "US_BOND"], "covariance": [[0.04], [0.0, 0.01], [0, 0, 1]]}
    account = tmp_path / "acct.json"
    account.write_text(json.dumps(d))
    code, _, err = cli(capsys, "rebalance", "check", str(account))
    assert code == 2 and "risk.covariance" in err


@pytest.mark.parametrize("suffix, text", [(".json", "[" * 100_000), (".toml", "a = " + "[" * 100_000)])
def test_a_file_nested_too_deeply_is_an_input_error(capsys, tmp_path, suffix, text):
    account = tmp_path / f"acct{suffix}"
    account.write_text(text)
    code, _, err = cli(capsys, "rebalance", "check", str(account))
    assert code == 2 and "nested too deeply" in err


def test_one_file_the_reader_fails_on_does_not_break_the_web_app(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    import rebalance_opt.server as server
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(base_dict()))
    bad.write_text(json.dumps(base_dict()))
    load = server.load_account

    def flaky(path):  # a reader bug on one file (a ragged covariance raised ValueError)
        if str(path).endswith("bad.json"):
            raise ValueError("setting an array element with a sequence")
        return load(path)
    monkeypatch.setattr(server, "load_account", flaky)
    client = TestClient(server.create_app([good, bad]), base_url="http://127.0.0.1:8765",
                        raise_server_exceptions=False)
    listing = client.get("/api/accounts")
    assert listing.status_code == 200
    entries = listing.json()
    assert entries[0]["error"] is None and "cannot be read" in entries[1]["error"]["message"]
    assert client.get("/api/accounts/1/drift").status_code == 422
    assert client.get("/api/accounts/unknown-id/drift").status_code == 404


def test_an_entry_number_past_sqlites_integers_is_no_such_entry(capsys, folder, tmp_path):
    log = tmp_path / "log.sqlite"
    assert cli(capsys, "rebalance", "batch", str(folder), "--workers", "1", "--log", str(log))[0] == 0
    missing = cli(capsys, "rebalance", "log", "--show", "5", "--log", str(log))
    huge = cli(capsys, "rebalance", "log", "--show", "99999999999999999999", "--log", str(log))
    assert huge[0] == missing[0] != 1 and "Traceback" not in huge[2]  # was OverflowError, exit 1


def test_a_batch_starts_no_more_workers_than_it_has_accounts(folder):
    from rebalance_opt.batch import account_files, run_batch
    outcome = run_batch(account_files(folder), workers=1000, log=None)
    assert outcome.workers == 1 and not outcome.failures


def test_the_web_app_refuses_a_lone_surrogate_reason_and_unknown_huge_entry_numbers(tmp_path):
    from fastapi.testclient import TestClient

    import rebalance_opt.server as server
    account = tmp_path / "acct.json"
    account.write_text(json.dumps(base_dict()))
    client = TestClient(server.create_app([account]), base_url="http://127.0.0.1:8765",
                        raise_server_exceptions=False)
    response = client.post("/api/accounts/0/plan", content=b'{"reason": "\\ud800"}',
                           headers={"content-type": "application/json"})
    assert response.status_code == 422 and "surrogate" in response.json()["error"]["message"]
    assert client.get("/api/log/99999999999999999999999").status_code == 404


def test_a_log_with_a_column_dropped_fails_verification_as_tampered(capsys, folder, tmp_path):
    import sqlite3
    log = tmp_path / "log.sqlite"
    assert cli(capsys, "rebalance", "batch", str(folder), "--workers", "1", "--log", str(log))[0] == 0
    with sqlite3.connect(log) as conn:
        for trigger in [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")]:
            conn.execute(f'DROP TRIGGER "{trigger}"')
        conn.execute("ALTER TABLE entries DROP COLUMN basket")
    code, out, err = cli(capsys, "rebalance", "log", "--verify", "--log", str(log))
    assert code == 4 and "no column" in out + err  # was KeyError: 'basket', exit 1


def test_a_byte_order_mark_is_not_content(capsys, tmp_path):
    # Spreadsheet and Notepad exports start with one; account sets already took it, while a lots_file
    # header read it as part of "id" and a TOML account as an invalid statement.
    d = base_dict()
    lots = d.pop("lots")
    (tmp_path / "lots.csv").write_text("\ufeffid,symbol,quantity,cost_basis,acquired\n" + "".join(
        f"{l['id']},{l['symbol']},{l['quantity']},{l['cost_basis']},{l['acquired']}\n" for l in lots))
    d["lots_file"] = "lots.csv"
    account = tmp_path / "acct.json"
    account.write_text("\ufeff" + json.dumps(d))
    assert cli(capsys, "rebalance", "check", str(account))[0] == 0
    toml = tmp_path / "household.toml"
    toml.write_bytes(b"\xef\xbb\xbf" + (ROOT / "examples" / "household.toml").read_bytes())
    assert cli(capsys, "rebalance", "check", str(toml))[0] == 0


def test_a_json_key_given_twice_is_an_input_error_as_in_toml(capsys, tmp_path):
    text = json.dumps(base_dict())
    account = tmp_path / "acct.json"
    account.write_text(text.replace('"id": "t-1"', '"id": "t-1", "id": "t-2"', 1))
    code, _, err = cli(capsys, "rebalance", "check", str(account))
    assert code == 2 and "given twice" in err and "'id'" in err  # JSON kept "t-2" silently


@pytest.mark.parametrize("since", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
def test_a_since_outside_the_calendar_in_utc_is_an_input_error(capsys, tmp_path, since):
    code, _, err = cli(capsys, "rebalance", "log", "--since", since, "--log", str(tmp_path / "log.sqlite"))
    assert code == 2 and "--since" in err  # was OverflowError, exit 1


@pytest.mark.parametrize("reason, message", [("x" * 501, "at most 500"), ("Quarterly\x00Reset", "NUL")])
def test_the_cli_takes_a_reason_as_the_web_app_does(capsys, tmp_path, reason, message):
    account = tmp_path / "acct.json"
    account.write_text(json.dumps(base_dict()))
    code, _, err = cli(capsys, "rebalance", "generate", str(account), "--dry-run", "--reason", reason)
    assert code == 2 and "--reason" in err and message in err  # 100,000 characters and NUL were logged
    assert cli(capsys, "rebalance", "generate", str(account), "--dry-run", "--reason", "x" * 500)[0] == 0


def test_a_batch_says_when_one_account_id_comes_from_several_files(capsys, folder, tmp_path):
    shutil.copy(folder / "household.toml", folder / "household-copy.toml")
    code, out, err = cli(capsys, "rebalance", "batch", str(folder), "--workers", "1", "--dry-run")
    assert code == 0 and "warning: account household-1 is in 2 files" in out + err  # was silent
    assert "each was planned" in out + err and "logged" not in (out + err).split("each was")[1].split("\n")[0]
    code, out, err = cli(capsys, "rebalance", "batch", str(folder), "--workers", "1", "--log", str(tmp_path / "l.sqlite"))
    assert "each was planned and logged" in out + err  # a dry run's warning said "logged" too
    code, out, _ = cli(capsys, "rebalance", "batch", str(folder), "--workers", "1", "--dry-run", "--json")
    assert sorted(json.loads(out)["duplicate_accounts"]["household-1"]) == sorted(
        str(folder / f) for f in ("household.toml", "household-copy.toml"))


def _logged(capsys, folder, tmp_path, *tamper: str):
    """A log of one batch over ``folder``, then edited with ``tamper`` (its guards dropped first)."""
    import sqlite3
    log = tmp_path / "log.sqlite"
    assert cli(capsys, "rebalance", "batch", str(folder), "--workers", "1", "--log", str(log))[0] == 0
    if tamper:
        with sqlite3.connect(log) as conn:
            for trigger in [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")]:
                conn.execute(f'DROP TRIGGER "{trigger}"')
            for sql in tamper:
                conn.execute(sql)
        conn.close()
    return log


def _web_log(folder, log):
    from fastapi.testclient import TestClient

    import rebalance_opt.server as server
    app = server.create_app([folder / "household.toml"], audit_path=log)
    return TestClient(app, base_url="http://127.0.0.1:8765", raise_server_exceptions=False)


def _assert_damaged_everywhere(capsys, folder, tmp_path, log, problem: str):
    """Every command reading or writing ``log`` refuses it as damaged (exit 4, naming the file and
    the ``problem``), writes nothing to it, and the web app answers an error JSON naming it, not a 500."""
    before = log.read_bytes()
    words = ("not an intact audit log", problem)
    for args in (["--show", "1"], ["--head"], [], ["--verify"]):
        code, out, err = cli(capsys, "rebalance", "log", *args, "--log", str(log))
        assert code == 4 and str(log) in err and problem in err, (args, code, err)
        assert "unexpected error" not in err and "Traceback" not in err
        assert args == ["--verify"] or words[0] in err
    code, out, err = cli(capsys, "rebalance", "log", "--show", "1", "--json", "--log", str(log))
    assert code == 4 and json.loads(out)["error"]["file"] == str(log)
    basket = tmp_path / "basket.csv"
    for command in (["generate", str(folder / "household.toml")], ["batch", str(folder), "--workers", "1"]):
        code, _, err = cli(capsys, "rebalance", *command, "--log", str(log), "--out", str(basket))
        assert code == 4 and str(log) in err and all(w in err for w in words), (command, code, err)
        assert not basket.exists()
    assert log.read_bytes() == before, "nothing is written to a damaged log"
    client = _web_log(folder, log)
    for url in ("/api/log", "/api/log/1"):
        response = client.get(url)
        assert response.status_code == 422, (url, response.text)
        error = response.json()["error"]
        assert error["file"] == str(log) and all(w in error["message"] for w in words)


@pytest.mark.parametrize("column", ["basket", "inputs_sha256"])
def test_a_log_with_a_column_dropped_is_a_damaged_log_for_every_command(capsys, folder, tmp_path, column):
    # log --show and the listing ended in a KeyError (exit 1), generate in an OperationalError after
    # solving (exit 1), the web app in a 500; only log --verify said what was wrong.
    log = _logged(capsys, folder, tmp_path, f"ALTER TABLE entries DROP COLUMN {column}")
    _assert_damaged_everywhere(capsys, folder, tmp_path, log, f"no column '{column}'")


def test_a_log_whose_table_was_rebuilt_with_text_ids_is_a_damaged_log(capsys, folder, tmp_path):
    from rebalance_opt.audit import FIELDS
    # The fuzzer's tampered log: its entries copied into a table whose id column holds text.
    log = _logged(capsys, folder, tmp_path, "ALTER TABLE entries RENAME TO old",
                  f"CREATE TABLE entries AS SELECT 'x' || id AS {', '.join(FIELDS)}, hash FROM old", "DROP TABLE old")
    _assert_damaged_everywhere(capsys, folder, tmp_path, log, "INTEGER PRIMARY KEY")


def test_log_head_on_a_text_id_is_a_damaged_log(capsys, folder, tmp_path):
    import sqlite3
    log = _logged(capsys, folder, tmp_path)
    with sqlite3.connect(log) as conn:  # the same columns, WITHOUT ROWID: the id may then hold text
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'entries'").fetchone()[0]
        conn.execute("DROP TRIGGER entries_no_update")
        conn.execute("DROP TRIGGER entries_no_delete")
        conn.execute("DROP INDEX entries_account")
        conn.execute("ALTER TABLE entries RENAME TO old")
        conn.execute(sql + " WITHOUT ROWID")
        conn.execute("INSERT INTO entries SELECT * FROM old")
        conn.execute("DROP TABLE old")
        conn.execute("UPDATE entries SET id = 'x1' WHERE id = 1")
    conn.close()
    code, _, err = cli(capsys, "rebalance", "log", "--head", "--log", str(log))
    assert code == 4 and "'x1' is not a whole number" in err  # was ValueError from int(), exit 1
    before = log.read_bytes()
    assert cli(capsys, "rebalance", "generate", str(folder / "household.toml"), "--log", str(log))[0] == 4
    assert log.read_bytes() == before
    code, out, _ = cli(capsys, "rebalance", "log", "--verify", "--json", "--log", str(log))
    assert code == 4 and json.loads(out)["first_bad"] == 1


@pytest.mark.parametrize("keep", [0.5, 0.1])
def test_a_log_cut_short_is_a_damaged_log_for_every_command(capsys, folder, tmp_path, keep):
    # log --verify exited 2 ("not a rebalance-opt audit log": an input error) on a log cut to half
    # its bytes; a log that is not intact is exit 4 in every command, as a failed --verify is.
    log = _logged(capsys, folder, tmp_path)
    log.write_bytes(log.read_bytes()[:int(log.stat().st_size * keep)])
    _assert_damaged_everywhere(capsys, folder, tmp_path, log, "cut short")
    code, out, _ = cli(capsys, "rebalance", "log", "--verify", "--json", "--log", str(log))
    result = json.loads(out)
    assert code == 4 and not result["ok"] and "cut short" in result["problem"] and result["first_bad"] == 1


def test_a_file_that_is_no_log_at_all_is_still_an_input_error(capsys, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello " * 200)
    for args in (["--verify"], ["--head"], []):
        code, _, err = cli(capsys, "rebalance", "log", *args, "--log", str(notes))
        assert code == 2 and "not a rebalance-opt audit log" in err


def test_verify_head_with_the_genesis_hash_counts_its_id(capsys, folder, tmp_path):
    log = _logged(capsys, folder, tmp_path)
    code, _, err = cli(capsys, "rebalance", "log", "--verify", "--head", "7:" + "0" * 64, "--log", str(log))
    assert code == 2 and "--head" in err and "no entry 7" in err  # was exit 0: "ok", the 7 ignored
    assert cli(capsys, "rebalance", "log", "--verify", "--head", "0:" + "0" * 64, "--log", str(log))[0] == 0


def _run_read_only(folder, *args: str) -> subprocess.CompletedProcess:
    """``python cli.py ARGS`` with ``folder`` and its files not writable to the command: by their
    permissions for an ordinary user; root ignores those, so a read-only bind mount of the folder
    in a private mount namespace stands in (the test is skipped where that is not allowed)."""
    if getattr(os, "geteuid", lambda: -1)() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.iterdir()]}
        try:
            for p in modes:
                p.chmod(0o555 if p.is_dir() else 0o444)
            return run_cli(*args)
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
    mount = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" || exit 99; exec "$@"'
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "--mount", "sh", "-c", mount, str(folder), "true"],
                                         capture_output=True).returncode != 0:
        pytest.skip("running as root, and no read-only mount can be made here")
    return subprocess.run([unshare, "--mount", "sh", "-c", mount, str(folder), sys.executable, str(ROOT / "cli.py"),
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def _log_in(capsys, folder, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "log.sqlite"
    assert cli(capsys, "rebalance", "batch", str(folder), "--workers", "1", "--log", str(log))[0] == 0
    assert cli(capsys, "rebalance", "batch", str(folder), "--workers", "1", "--log", str(log))[0] == 0
    return logs, log


def test_a_log_the_user_cannot_write_is_read_and_verified_read_only(capsys, folder, tmp_path):
    # A WAL-mode log in a read-only folder: log --verify said "not a rebalance-opt audit log:
    # attempt to write a readonly database" (SQLite could not create the log's -shm index there).
    logs, log = _log_in(capsys, folder, tmp_path)
    head = cli(capsys, "rebalance", "log", "--head", "--log", str(log))[1].strip().split(":")[1]
    before = log.read_bytes()
    verified = _run_read_only(logs, "rebalance", "log", "--verify", "--log", str(log))
    assert verified.returncode == 0 and "ok: 2 entries" in verified.stdout, verified.stderr
    assert _run_read_only(logs, "rebalance", "log", "--head", "--log", str(log)).stdout.strip() == f"2:{head}"
    shown = _run_read_only(logs, "rebalance", "log", "--show", "2", "--log", str(log))
    assert shown.returncode == 0 and json.loads(shown.stdout)["hash"] == head
    listed = _run_read_only(logs, "rebalance", "log", "--json", "--log", str(log))
    assert listed.returncode == 0 and len(json.loads(listed.stdout)["entries"]) == 2
    generated = _run_read_only(logs, "rebalance", "generate", str(folder / "household.toml"), "--log", str(log))
    assert generated.returncode == 2 and "not writable" in generated.stderr  # generate needs write access
    assert sorted(os.listdir(logs)) == ["log.sqlite"] and log.read_bytes() == before


def test_a_damaged_log_the_user_cannot_write_is_exit_4_not_unwritable(capsys, folder, tmp_path):
    # generate checked write access first, so a damaged log in a read-only folder was "not
    # writable" (exit 2), which sends the user after permissions instead of the damage
    import sqlite3
    logs, log = _log_in(capsys, folder, tmp_path)
    with closing(sqlite3.connect(log)) as conn:
        conn.executescript("DROP TRIGGER entries_no_update; DROP TRIGGER entries_no_delete; "
                           "ALTER TABLE entries DROP COLUMN basket;")
    before = log.read_bytes()
    generated = _run_read_only(logs, "rebalance", "generate", str(folder / "household.toml"), "--log", str(log))
    assert generated.returncode == 4 and "no column 'basket'" in generated.stderr, generated.stderr
    assert sorted(os.listdir(logs)) == ["log.sqlite"] and log.read_bytes() == before


def test_a_read_only_log_never_drops_the_entries_still_in_its_wal(capsys, folder, tmp_path):
    logs, log = _log_in(capsys, folder, tmp_path)
    # A writer killed while another connection had the log open: its entry is committed, in the
    # -wal file only (the log file itself still holds 2 entries).
    writer = ("import os, signal, sqlite3, sys\n"
              "keep = sqlite3.connect(sys.argv[1]); keep.execute('SELECT count(*) FROM entries').fetchone()\n"
              "from rebalance_opt.cli import main\n"
              "try:\n    main(['rebalance', 'generate', sys.argv[2], '--log', sys.argv[1]])\n"
              "except SystemExit:\n    pass\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    subprocess.run([sys.executable, "-c", writer, str(log), str(folder / "household.toml")], cwd=ROOT,
                   capture_output=True, timeout=300)
    assert (logs / "log.sqlite-wal").stat().st_size > 0
    listed = _run_read_only(logs, "rebalance", "log", "--verify", "--log", str(log))
    # With its -shm index there, SQLite reads the -wal read-only (or, where it cannot, says so).
    assert (listed.returncode, "ok: 3 entries" in listed.stdout) == (0, True) or (
        listed.returncode == 2 and "log.sqlite-wal may hold entries" in listed.stderr), listed.stderr
    (logs / "log.sqlite-shm").unlink()  # without it, reading the log file alone would miss entry 3
    for args in (["--verify"], ["--head"]):
        result = _run_read_only(logs, "rebalance", "log", *args, "--log", str(log))
        assert result.returncode == 2 and "log.sqlite-wal may hold entries not yet in the log file" in result.stderr
    assert cli(capsys, "rebalance", "log", "--verify", "--log", str(log))[1].startswith("ok: 3 entries")


def _household_with(tmp_path, tax_weight: float = 0.1, us_stock_variance: float | None = None):
    """The household example with another tax_weight, or a diagonal covariance (0.04 per class)
    whose US_STOCK entry is ``us_stock_variance``."""
    text = (ROOT / "examples" / "household.toml").read_text()
    assert "tax_weight = 0.1\n" in text
    text = text.replace("tax_weight = 0.1\n", f"tax_weight = {tax_weight!r}\n")
    if us_stock_variance is not None:
        classes = ["US_STOCK", "INTL_STOCK", "EM_STOCK", "US_BOND", "TIPS", "REIT"]
        cov = [[(us_stock_variance if i == 0 else 0.04) if i == j else 0.0 for j in range(6)] for i in range(6)]
        text += f"\n[risk]\nclasses = {json.dumps(classes)}\ncovariance = {json.dumps(cov)}\n"
    account = tmp_path / "household.toml"
    account.write_text(text)
    return account


def _verdicts(capsys, account) -> list[tuple[int, str]]:
    """(exit code, stdout) of ``generate --dry-run --json`` and ``tax --json`` on one account."""
    return [cli(capsys, "rebalance", *args, str(account), "--json")[:2]
            for args in (("generate", "--dry-run"), ("tax",))]


@pytest.mark.parametrize("variance", [1e300, 100.5])
def test_a_covariance_above_its_bound_is_an_input_error_from_generate_and_tax_alike(capsys, tmp_path, variance):
    # 1e300 was planned by generate (exit 0) while tax said "no feasible plan" (exit 3): tax also
    # solves the buy-only plan, whose solve the huge variance made the solvers call infeasible.
    account = _household_with(tmp_path, us_stock_variance=variance)
    for code, out in _verdicts(capsys, account):
        error = json.loads(out)["error"]
        assert code == 2 and error["file"] == str(account) and error["path"] == "risk.covariance[0][0]"
        assert f"(got {variance!r})" in error["message"] and "at most 100" in error["message"]


def test_a_covariance_at_its_bound_plans_with_generate_and_tax_alike(capsys, tmp_path):
    account = _household_with(tmp_path, us_stock_variance=100.0)
    (generate, _), (tax, out) = _verdicts(capsys, account)
    assert generate == tax == 0 and json.loads(out)["plan"]["status"] == "optimal"


@pytest.mark.parametrize("tax_weight", [1e300, 10_000.5])
def test_a_tax_weight_above_its_bound_is_an_input_error(capsys, tmp_path, tax_weight):
    # 1e300 ended in "the solvers did not reach an accurate optimum" (SolverFailed, exit 1)
    account = _household_with(tmp_path, tax_weight=tax_weight)
    for code, out in _verdicts(capsys, account):
        error = json.loads(out)["error"]
        assert code == 2 and error["file"] == str(account) and error["path"] == "policy.tax_weight"
        assert f"(got {tax_weight!r})" in error["message"] and "at most 10,000" in error["message"]


def test_a_tax_weight_at_its_bound_plans(capsys, tmp_path):
    account = _household_with(tmp_path, tax_weight=10_000.0)
    assert [code for code, _ in _verdicts(capsys, account)] == [0, 0]


def test_tax_weights_to_sweep_or_backtest_are_bounded_as_the_policys(capsys, tmp_path):
    from rebalance_opt.errors import InputError
    from rebalance_opt.strategies import make_strategies
    account = _household_with(tmp_path)
    code, _, err = cli(capsys, "rebalance", "tax", str(account), "--frontier", "--tax-weights", "0,1,1e5")
    assert code == 2 and "--tax-weights" in err and "10,000" in err
    assert cli(capsys, "rebalance", "tax", str(account), "--frontier", "--tax-weights", "0,10000")[0] == 0
    for spec, weights in (("optimizer@1e5", (0.1,)), ("harvest", (1.0, 2e4))):
        with pytest.raises(InputError, match="at most 10,000"):
            make_strategies([spec], weights)


def test_tax_reports_the_plan_generate_makes_when_buying_only_has_no_plan(capsys, tmp_path, monkeypatch):
    # Found checking that tax and generate agree: a withdrawal that, in whole shares under max_tax
    # 0, the buy-only rounding could not meet. generate planned it; tax, which also solves the
    # buy-only plan to compare with, said "no feasible plan" (exit 3). The rounding's exact search
    # now finds the buy-only plan (selling BND's loss lot beside VTI's gain; see
    # tests/test_rounding_exact.py); a buy-only stage still comes up empty where that search stops
    # at its time limit, which is forced here.
    from rebalance_opt import Planner
    from rebalance_opt.errors import Infeasible
    from tests.conftest import make
    d = base_dict(withdrawal=619.57, max_tax=0.0)
    d["account"]["cash"] = 0.0
    d["lots"] = [{"id": "VTI0", "symbol": "VTI", "quantity": 29, "cost_basis": 76.54, "acquired": "2020-01-02"},
                 {"id": "VXUS0", "symbol": "VXUS", "quantity": 2, "cost_basis": 52.79, "acquired": "2020-01-02"},
                 {"id": "BND0", "symbol": "BND", "quantity": 17, "cost_basis": 90.88, "acquired": "2020-01-02"}]
    assert Planner().plan(make(d, allow_sells=False)).stage == "cash_first"
    planned = Planner.plan

    def buying_only_has_no_plan(self, account, reason=None):
        if not account.policy.allow_sells:
            raise Infeasible("no feasible plan from buying with cash and selling only for the withdrawal "
                             "(the exact search stopped at its time limit)")
        return planned(self, account, reason)
    monkeypatch.setattr(Planner, "plan", buying_only_has_no_plan)
    account = tmp_path / "acct.json"
    account.write_text(json.dumps(d))
    (generate, plan), (tax, impact) = _verdicts(capsys, account)
    assert generate == tax == 0
    impact = json.loads(impact)
    assert impact["plan"]["orders"] == json.loads(plan)["orders"] != []
    assert impact["tax_of_selling"] is None and "buying with cash" in impact["buy_only_infeasible"]
    assert [a["name"] for a in impact["alternatives"]] == ["optimized", "full reset (FIFO)"]
    assert all(s["drift_without"] is None for s in impact["sells"])
    # without the buy-only frame, each sell names its class's drift now and after, and that the
    # withdrawal changes what the drift after is measured on (fuzz pass 3: it read as if selling
    # had raised the class's weight)
    before = json.loads(plan)["drift_before"]
    for s in impact["sells"]:
        assert s["drift_now"] == before[s["asset_class"]]
        assert f"goes from {s['drift_now'] * 100:+.1f}% now to" in s["sentence"]
        assert "of what stays invested after the withdrawal" in s["sentence"]
    code, out, _ = cli(capsys, "rebalance", "tax", str(account))
    assert code == 0 and "No buy-only plan to compare selling with" in out


def test_a_lot_id_a_csv_basket_cannot_carry_is_named_at_its_line_of_the_lots_file(capsys, tmp_path):
    d = base_dict()
    lots = d.pop("lots")
    lots[1]["id"] = "L;2"
    (tmp_path / "lots.csv").write_text("id,symbol,quantity,cost_basis,acquired\n" + "".join(
        f"{l['id']},{l['symbol']},{l['quantity']},{l['cost_basis']},{l['acquired']}\n" for l in lots))
    d["lots_file"] = "lots.csv"
    account = tmp_path / "acct.json"
    account.write_text(json.dumps(d))
    code, out, _ = cli(capsys, "rebalance", "generate", str(account), "--dry-run", "--json",
                       "--out", str(tmp_path / "b.csv"))
    error = json.loads(out)["error"]
    assert code == 2 and error["file"] == str(tmp_path / "lots.csv") and error["path"] == "line 3"  # was lots[1].id
    assert "id: cannot be written in a csv basket" in error["message"] and not (tmp_path / "b.csv").exists()


def test_a_broken_symlink_in_a_batch_folder_fails_as_its_own_account(capsys, folder, tmp_path):
    # It was skipped silently: the batch reported every account planned, one fewer than the folder lists.
    (folder / "gone.toml").symlink_to(tmp_path / "moved-away.toml")
    (folder / "loop.json").symlink_to(folder / "loop.json")
    (folder / "linked.toml").symlink_to(folder / "household.toml")  # a good link is an account like any
    code, out, _ = cli(capsys, "rebalance", "batch", str(folder), "--workers", "1", "--dry-run", "--json")
    summary = json.loads(out)
    assert code == 5 and (summary["accounts"], summary["planned"], summary["failed"]) == (4, 2, 2)
    failures = {f["source"]: f for f in summary["failures"]}
    gone, loop = failures[str(folder / "gone.toml")], failures[str(folder / "loop.json")]
    assert gone["kind"] == "input error" and "broken symbolic link" in gone["message"]
    assert "moved-away.toml" in gone["message"]
    assert loop["kind"] == "input error" and "cannot read account file" in loop["message"]
    code, out, err = cli(capsys, "rebalance", "batch", str(folder), "--workers", "1", "--dry-run")
    assert code == 5 and "gone.toml" in out + err and "broken symbolic link" in out + err


def test_a_folder_or_pipe_named_like_an_account_fails_as_its_own_account(capsys, folder):
    # A folder was skipped silently (one account fewer than the folder lists); a pipe would have
    # blocked the batch on its read.
    import os
    (folder / "dirlike.toml").mkdir()
    os.mkfifo(folder / "pipe.json")
    code, out, _ = cli(capsys, "rebalance", "batch", str(folder), "--workers", "1", "--dry-run", "--json")
    summary = json.loads(out)
    assert code == 5 and (summary["accounts"], summary["failed"]) == (3, 2)
    failures = {f["source"]: f for f in summary["failures"]}
    assert "is a folder, not an account file" in failures[str(folder / "dirlike.toml")]["message"]
    assert "not a regular file" in failures[str(folder / "pipe.json")]["message"]
    assert all(f["kind"] == "input error" for f in failures.values())


def test_hidden_files_in_a_batch_folder_are_no_accounts(capsys, folder):
    # A folder copied from a Mac holds ._household.toml (AppleDouble metadata, binary): each failed
    # as an account and the batch ended in exit 5; an editor's .household.toml.swp is no .toml anyway
    (folder / "._household.toml").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")
    (folder / ".draft.json").write_text("{")
    code, out, _ = cli(capsys, "rebalance", "batch", str(folder), "--workers", "1", "--dry-run", "--json")
    summary = json.loads(out)
    assert code == 0 and (summary["accounts"], summary["planned"], summary["failed"]) == (1, 1, 0)


def test_a_tampered_entry_holding_bytes_is_shown_and_reported_altered(capsys, folder, tmp_path):
    # A reason edited to a BLOB: log --show, --json and the web app's /api/log ended in exit 1 /
    # a 500 (bytes are not JSON); one edited to text that is not UTF-8 made every read exit 2.
    log = _logged(capsys, folder, tmp_path, "UPDATE entries SET reason = x'ff00fe' WHERE id = 1")
    for args in (["--show", "1"], ["--json"], []):
        code, out, err = cli(capsys, "rebalance", "log", *args, "--log", str(log))
        assert code == 0 and "unexpected error" not in err, (args, err)
    code, out, _ = cli(capsys, "rebalance", "log", "--verify", "--json", "--log", str(log))
    assert code == 4 and json.loads(out)["first_bad"] == 1
    client = _web_log(folder, log)
    assert client.get("/api/log").status_code == 200 and client.get("/api/log/1").status_code == 200


def test_reading_a_log_that_is_a_directory_says_so(capsys, tmp_path):
    log = tmp_path / "log.sqlite"
    log.mkdir()
    for args in (["--verify"], ["--head"], [], ["--show", "1"]):
        code, _, err = cli(capsys, "rebalance", "log", *args, "--log", str(log))
        assert code == 2 and "is a directory" in err  # was "unable to open database file"


def test_verify_with_an_empty_head_is_an_input_error_not_an_unchecked_pass(capsys, folder, tmp_path):
    # `log --verify --head "$KEPT"` with KEPT empty passed as a plain --verify: the kept head unchecked.
    log = _logged(capsys, folder, tmp_path)
    for head in ("", "  "):
        code, _, err = cli(capsys, "rebalance", "log", "--verify", "--head", head, "--log", str(log))
        assert code == 2 and "--head" in err
    code, _, err = cli(capsys, "rebalance", "log", "--verify", "--head", "--log", str(log))
    assert code == 2 and "--head" in err


def test_a_lots_file_not_in_utf8_names_the_byte_from_the_files_start_and_its_line(capsys, tmp_path):
    # The byte was counted from the start of the 8 KiB the reader had decoded: "byte 1051" for a bad
    # byte at 123,931, on line 5,002, which the error did not name.
    d = base_dict()
    d.pop("lots")
    d["lots_file"] = "lots.csv"
    data = ("\ufeffid,symbol,quantity,cost_basis,acquired\n"
            + "".join(f"L{i},VTI,1,1,2020-01-02\n" for i in range(5000))).encode() + b"L\xe9,VTI,1,1,2020-01-02\n"
    (tmp_path / "lots.csv").write_bytes(data)
    account = tmp_path / "acct.json"
    account.write_text(json.dumps(d))
    code, out, err = cli(capsys, "rebalance", "check", str(account), "--json")
    error = json.loads(out)["error"]
    bad = data.index(b"\xe9")
    assert code == 2 and error["path"] == "line 5002" and f"byte {bad})" in error["message"]


@pytest.mark.parametrize("address", ["abc", "tcp://", "http://127.0.0.1:8787", "tcp://127.0.0.1:5/x"])
def test_a_scheduler_address_that_is_none_is_an_input_error(capsys, folder, tmp_path, address):
    # Was "unexpected error: ValueError: missing port number" / "unknown address scheme" (exit 1).
    log = tmp_path / "log.sqlite"
    code, out, err = cli(capsys, "rebalance", "batch", str(folder), "--engine", "dask", "--scheduler", address,
                         "--log", str(log), "--json")
    assert code == 2 and json.loads(out)["error"]["path"] == "--scheduler" and "unexpected" not in err
    assert not log.exists()


@pytest.fixture
def listener():
    """A local TCP server that is no Dask scheduler: ``greeting`` is what it sends each connection
    (b"": nothing, as an HTTP server waiting for a request). Yields a function starting one."""
    import socket
    import threading
    servers, threads = [], []

    def start(greeting: bytes) -> str:
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        server.settimeout(0.1)  # so the thread sees the server closed: close() does not wake accept()
        servers.append(server)

        def serve():
            while server.fileno() != -1:
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                if greeting:
                    conn.sendall(greeting)
                servers.append(conn)
        threads.append(threading.Thread(target=serve, daemon=True))
        threads[-1].start()
        return f"tcp://127.0.0.1:{server.getsockname()[1]}"
    yield start
    for s in servers:
        s.close()
    for t in threads:  # no thread left running when later tests fork worker processes
        t.join(5)
        assert not t.is_alive()


@pytest.mark.parametrize("greeting, words", [
    (b"", "did not answer as a Dask scheduler within 2 s"),  # waited forever (an HTTP server, the dashboard)
    (b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n", "did not answer as a Dask scheduler (MemoryError)"),  # was exit 1
])
def test_an_address_that_is_not_a_dask_scheduler_is_an_input_error_within_the_timeout(
        capsys, folder, tmp_path, monkeypatch, listener, greeting, words):
    from rebalance_opt import batch
    monkeypatch.setattr(batch, "SCHEDULER_TIMEOUT", 1.0)
    monkeypatch.setattr(batch, "ANSWER_TIMEOUT", 2.0)
    log = tmp_path / "log.sqlite"
    code, out, err = cli(capsys, "rebalance", "batch", str(folder), "--engine", "dask", "--scheduler",
                         listener(greeting), "--log", str(log), "--json")
    error = json.loads(out)["error"]
    assert code == 2 and error["path"] == "--scheduler" and words in error["message"], error
    assert "dashboard" in error["message"] and not log.exists()


def test_a_symbolic_link_to_a_log_in_a_read_only_folder_reads_it(capsys, folder, tmp_path):
    # The link's own (writable) folder was checked: SQLite, which keeps -shm beside the file the link
    # points to, could not read it, and the lock-free read was not tried: "unable to open database file".
    logs, log = _log_in(capsys, folder, tmp_path)
    link = tmp_path / "log-link.sqlite"
    link.symlink_to(log)
    verified = _run_read_only(logs, "rebalance", "log", "--verify", "--log", str(link))
    assert verified.returncode == 0 and "ok: 2 entries" in verified.stdout, verified.stderr
    generated = _run_read_only(logs, "rebalance", "generate", str(folder / "household.toml"), "--log", str(link))
    assert generated.returncode == 2 and f"directory {logs} writable" in generated.stderr


@pytest.mark.parametrize("weights, item", [("1,,2", 2), ("1,2,", 3), (",1", 1), ("", 1)])
def test_an_empty_tax_weight_is_refused_by_tax_and_backtest_alike(capsys, tmp_path, weights, item):
    # `rebalance tax --tax-weights 1,,2` swept 1 and 2 (empty items skipped) where `backtest` said
    # "must be comma-separated numbers >= 0 (got '')": one parser now, strict, with one shape of error
    account = _household_with(tmp_path)
    out = tmp_path / "backtest-out"
    for args in (["rebalance", "tax", str(account), "--frontier"], ["backtest", "--out", str(out)]):
        code, stdout, err = cli(capsys, *args, "--tax-weights", weights, "--json")
        error = json.loads(stdout)["error"]
        assert code == 2 and error["path"] == "--tax-weights" and "Traceback" not in err
        assert "must be comma-separated numbers" in error["message"] and f"item {item} is empty" in error["message"]
        assert error["message"].endswith(f"(got {weights!r})")
    assert not out.exists()
    # each command keeps its own range: tax the policy's (0 to 10,000), backtest >= 0 here and the
    # 10,000 in make_strategies
    assert "from 0 to 10,000" in cli(capsys, "rebalance", "tax", str(account), "--frontier", "--tax-weights",
                                     "1,2e4")[2]
    code, _, err = cli(capsys, "backtest", "--out", str(out), "--tax-weights", "1,2e4")
    assert code == 2 and "at most 10,000" in err and not out.exists()
    # spaces around an item are still fine, in both
    assert cli(capsys, "rebalance", "tax", str(account), "--frontier", "--tax-weights", " 0 , 1 ")[0] == 0


@pytest.mark.parametrize("text", ["1_000", "١٢", "１２", "1e1_0", "0x10", "\u00a012"])
def test_number_options_are_plain_ascii_decimals(capsys, tmp_path, text):
    # typer's float and Python's float() took 1_000 (and typer some others); a number option is
    # digits 0-9 with an optional sign, fraction and exponent (ASCII spaces around it allowed)
    account = _household_with(tmp_path)
    out = tmp_path / "backtest-out"
    for option in ("--deposit", "--initial", "--withdrawal", "--years", "--bonds", "--short-term-rate"):
        code, _, err = cli(capsys, "backtest", "--out", str(out), option, text)
        assert code == 2 and option in err and repr(text) in err and "Traceback" not in err, (option, err)
    for args in (["--frontier", "--tax-weights", f"0,{text}"], ["--sell", f"VTI:{text}"]):
        code, stdout, err = cli(capsys, "rebalance", "tax", str(account), *args, "--json")
        assert code == 2 and json.loads(stdout)["error"]["path"] == args[0].replace("--frontier", "--tax-weights")
    code, _, err = cli(capsys, "backtest", "--out", str(out), "--tax-weights", text)
    assert code == 2 and "--tax-weights" in err
    assert not out.exists()


def test_well_formed_number_options_are_read_as_before(capsys, tmp_path):
    from rebalance_opt.cli.common import number_option, parse_numbers
    for text, value in (("1000", 1000.0), (" 5 ", 5.0), ("+2.5", 2.5), ("1e3", 1000.0), (".5", 0.5), ("5.", 5.0),
                        ("-1", -1.0)):
        assert number_option(text) == value
    assert number_option("inf") == float("inf")  # then refused by the range check, naming the option
    out = tmp_path / "backtest-out"
    code, _, err = cli(capsys, "backtest", "--out", str(out), "--deposit", "inf")
    assert code == 2 and "--deposit: must be a finite amount >= 0 (got inf)" in err
    assert parse_numbers("0.1, 1,1e1", "--tax-weights", "numbers >= 0") == [0.1, 1.0, 10.0]
    code, _, err = cli(capsys, "backtest", "--out", str(out), "--tax-weights", "1,nan")
    assert code == 2 and "item 2 ('nan') is not finite" in err and not out.exists()


@pytest.mark.parametrize("args,option,words", [
    (["rebalance", "log", "--show", "1_0"], "--show", "not a whole number"),  # was entry 10
    (["rebalance", "log", "--show", "2.0"], "--show", "not a whole number"),
    (["serve", "--port", "70000"], "--port", "from 1 to 65535"),  # was exit 1, OverflowError from bind()
    (["serve", "--port", "0x50"], "--port", "not a whole number"),
    (["backtest", "--workers", "0"], "--workers", "at least 1"),
    (["backtest", "--workers", "٢"], "--workers", "not a whole number"),
])
def test_whole_number_options_are_ascii_digits_in_range(capsys, args, option, words):
    code, _, err = cli(capsys, *args)
    assert code == 2 and option in err and words in err and "Traceback" not in err


def test_whole_number_options_read_plain_digits_as_before():
    from rebalance_opt.cli.common import whole_number_option
    assert [whole_number_option(1)(t) for t in ("1", " 2 ", "+3", "0004")] == [1, 2, 3, 4]
    assert whole_number_option()("99999999999999999999") == 99999999999999999999  # "no entry …", not an overflow
    assert whole_number_option(1, 65535)(8765) == 8765  # the default, as typer hands it over


@pytest.mark.parametrize("command", ["batch", "generate", "log"])
def test_an_empty_log_option_is_an_input_error_not_the_default_log(capsys, folder, tmp_path, command):
    # `--log "$LOG"` with the variable unset: the entries went to the default log (another log)
    default = tmp_path / "audit.sqlite"  # REBALANCE_OPT_LOG (conftest): what `--log ""` fell back to
    args = {"batch": ["rebalance", "batch", str(folder), "--workers", "1"],
            "generate": ["rebalance", "generate", str(folder / "household.toml")],
            "log": ["rebalance", "log"]}[command]
    code, stdout, err = cli(capsys, *args, "--log", "", "--json")
    assert code == 2 and json.loads(stdout)["error"]["path"] == "--log" and "is empty" in err
    assert not default.exists()


def test_the_web_app_answers_an_account_key_of_thousands_of_digits_as_unknown(tmp_path):
    # int() refuses a number of over 4,300 digits: the key was a 500 (ValueError), not a 404
    from fastapi.testclient import TestClient

    import rebalance_opt.server as server
    account = tmp_path / "acct.json"
    account.write_text(json.dumps(base_dict()))
    client = TestClient(server.create_app([account]), base_url="http://127.0.0.1:8765",
                        raise_server_exceptions=False)
    for key in ("9" * 5000, "0" * 5000 + "1", "9" * 19):
        for method, route in (("get", "drift"), ("get", "tax"), ("post", "plan")):
            response = client.request(method, f"/api/accounts/{key}/{route}", json={} if method == "post" else None)
            assert response.status_code == 404 and "unknown account" in response.json()["error"]["message"]
    assert client.get("/api/accounts/" + "0" * 5000 + "/drift").status_code == 200  # index 0, however written


@pytest.mark.parametrize("command", ["generate", "batch"])
def test_a_basket_is_never_renamed_over_a_device_or_pipe(capsys, folder, tmp_path, command):
    # `--out /dev/null` run as root replaced the device with a regular file (the basket is a new
    # file renamed into place); a FIFO stands in for it here
    fifo = tmp_path / "orders.csv"
    os.mkfifo(fifo)
    target = folder / "household.toml" if command == "generate" else folder
    code, _, err = cli(capsys, "rebalance", command, str(target), "--dry-run", "--out", str(fifo),
                       *(["--workers", "1"] if command == "batch" else []))
    assert code == 2 and "not a regular file" in err and "--out" in err
    assert fifo.is_fifo()


@pytest.mark.parametrize("targets, risk, path", [
    (None, {"loadings": [[], [], []], "factor_covariance": []}, "risk.factor_covariance"),
    (None, {"loadings": [[], [], []], "factor_covariance": [], "specific_variance": [0.01, 0.01, 0.01]},
     "risk.factor_covariance"),
    ({}, {"covariance": []}, "risk.classes"),
])


@pytest.mark.parametrize("command", ["check", "generate", "tax"])
def test_a_risk_model_of_no_factors_or_no_classes_is_an_input_error(capsys, tmp_path, targets, risk, path, command):
    # an empty matrix was read as 1-D: "unexpected error: LinAlgError" (exit 1)
    d = base_dict()
    classes = ["US_STOCK", "INTL_STOCK", "US_BOND"]
    if targets is not None:
        d["targets"], d["lots"], classes = targets, [], []
    d["risk"] = {"classes": classes, **risk}
    account = tmp_path / "acct.json"
    account.write_text(json.dumps(d))
    code, out, err = cli(capsys, "rebalance", command, str(account), "--json",
                         *(["--dry-run"] if command == "generate" else []))
    assert code == 2 and "unexpected" not in err
    assert json.loads(out)["error"]["path"] == path


def test_a_risk_model_listing_a_class_twice_is_an_input_error(capsys, tmp_path):
    # the model silently took the last row and column of US_BOND (a variance of 9, not 1)
    d = base_dict()
    d["risk"] = {"classes": ["US_STOCK", "INTL_STOCK", "US_BOND", "US_BOND"],
                 "covariance": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 9]]}
    account = tmp_path / "acct.json"
    account.write_text(json.dumps(d))
    code, out, err = cli(capsys, "rebalance", "generate", str(account), "--dry-run", "--json")
    assert code == 2 and "twice" in err
    assert json.loads(out)["error"]["path"] == "risk.classes"


def test_tax_weights_without_frontier_are_an_input_error_not_ignored(capsys, tmp_path):
    # `rebalance tax --tax-weights 0,1` printed the report without any sweep, exit 0
    account = _household_with(tmp_path)
    code, out, err = cli(capsys, "rebalance", "tax", str(account), "--tax-weights", "0,1", "--json")
    assert code == 2 and "--frontier" in err
    assert json.loads(out)["error"]["path"] == "--tax-weights"
    assert cli(capsys, "rebalance", "tax", str(account), "--frontier", "--tax-weights", "0,1")[0] == 0


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("command", [["check"], ["generate", "--dry-run"]])
def test_json_output_to_a_full_device_is_one_error_message_not_a_traceback(tmp_path, command):
    # the error's own JSON went to the same failing stdout: a second OSError, a Python traceback
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "rebalance", command[0],
                            str(ROOT / "examples" / "household.toml"), *command[1:], "--json"],
                           stdout=full, stderr=subprocess.PIPE, text=True, timeout=120,
                           env={**os.environ, "REBALANCE_OPT_LOG": str(tmp_path / "audit.sqlite")})
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.count("No space left on device") == 1


def test_fractional_quantities_are_whole_millionths_in_the_plan_and_the_basket(capsys, tmp_path):
    # a count of millionths times 1e-6 lands an ulp off: the household with fractional = true
    # bought 104.43566899999999 VNQ, and the csv basket said so
    import csv
    text = (ROOT / "examples" / "household.toml").read_text().replace("[policy]", "[policy]\nfractional = true", 1)
    account, basket = tmp_path / "acct.toml", tmp_path / "orders.csv"
    account.write_text(text)
    code, out, _ = cli(capsys, "rebalance", "generate", str(account), "--dry-run", "--json", "--out", str(basket))
    assert code == 0
    quantities = [o["quantity"] for o in json.loads(out)["orders"]]
    assert any(q != int(q) for q in quantities)
    assert all(q == round(q, 6) for q in quantities), quantities
    with basket.open(newline="") as fh:
        assert all(len(row["quantity"].partition(".")[2]) <= 6 for row in csv.DictReader(fh))


def test_a_partial_lot_of_a_fractional_plan_is_relieved_by_the_decimal_a_broker_reads():
    # the last lot of a sell got "order quantity less the lots before it" in floats:
    # 96.31577300000004 shares (in the JSON and the basket's lots column), 31 of 1,340 lot sales
    # on 200 synthetic fractional households; on the decimals, 96.315773
    from benchmarks.synth import household
    from rebalance_opt import Infeasible, account_from_dict, plan_rebalance
    partial = 0
    for seed in range(60):
        book = household(seed, max_lots=30)
        book.setdefault("policy", {})["fractional"] = True
        try:
            plan = plan_rebalance(account_from_dict(book))
        except Infeasible:
            continue
        held = {lot["id"]: lot["quantity"] for lot in book["lots"]}
        for order in plan.sells:
            assert abs(sum(s.quantity for s in order.lots) - order.quantity) <= 1e-9 * order.quantity
            for sale in order.lots:
                assert sale.quantity == round(sale.quantity, 6), (order.symbol, sale.quantity)
                partial += sale.quantity < held[sale.lot]
    assert partial >= 5  # the property is not vacuous


@pytest.mark.parametrize("quantity,fractional,words", [
    ("0.5", False, "whole number of shares (policy.fractional is false)"),  # was priced as a sale
    ("1e-320", False, "whole number of shares"),  # was reported with no lots relieved
    ("475.0000000009", False, None),  # within 1e-9 of all of it: all of it
    ("0.0000001", True, "whole number of millionths"),
    ("nan", False, "--sell: quantity after ':' must be a finite number"),  # "quantity: ... or None" named no option
    ("inf", False, "--sell: quantity after ':' must be a finite number"),
    ("1e400", False, "--sell: quantity after ':' must be a finite number"),
])
def test_a_what_if_sale_is_an_order_the_account_could_place(capsys, tmp_path, quantity, fractional, words):
    text = (ROOT / "examples" / "household.toml").read_text()
    if fractional:
        text = text.replace("[policy]", "[policy]\nfractional = true", 1)
    account = tmp_path / "acct.toml"
    account.write_text(text)
    code, out, err = cli(capsys, "rebalance", "tax", str(account), "--sell", f"VTI:{quantity}", "--json")
    if quantity.startswith("475."):  # all 475 shares, the lots adding up to exactly that
        what = json.loads(out)["what_if"]
        assert code == 0 and what["quantity"] == 475.0
        assert sum(s["quantity"] for s in what["minimum_tax"]["lots"]) == 475.0
        return
    assert code == 2 and json.loads(out)["error"]["path"] == "--sell" and words in err


@pytest.mark.parametrize("account_id", [" ", "acct\x00", "acct\nEOF", "a\tb"])
def test_an_account_id_is_not_blank_and_has_no_control_characters(capsys, tmp_path, account_id):
    # a NUL or newline went into the csv basket and the audit log; a blank id named nothing
    d = base_dict()
    d["account"]["id"] = account_id
    account = tmp_path / "acct.json"
    account.write_text(json.dumps(d))
    code, out, err = cli(capsys, "rebalance", "check", str(account), "--json")
    assert code == 2 and json.loads(out)["error"]["path"] == "account.id" and "control characters" in err


def test_serve_without_account_files_is_an_input_error_not_an_empty_app(capsys, monkeypatch, tmp_path):
    # it started, serving a page and an API with nothing in them
    import uvicorn

    import rebalance_opt.server as server
    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append(kw))
    monkeypatch.setattr(server, "_check_can_listen", lambda host, port: None)  # 8765 may be in use here
    code, _, err = cli(capsys, "serve", "--log", str(tmp_path / "audit.sqlite"))
    assert code == 2 and "name the account files to serve" in err and served == []
    account = tmp_path / "acct.json"
    account.write_text(json.dumps(base_dict()))
    code, _, err = cli(capsys, "serve", str(account), "--log", str(tmp_path / "audit.sqlite"))
    assert code == 0 and len(served) == 1 and "serving 1 account file(s)" in err


def _run_into_a_closed_pipe(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """``python cli.py ARGS | head -c 0``, deterministically: stdout is a pipe whose reading end
    is closed before the command starts, so its first write meets a broken pipe."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=120, cwd=ROOT,
                              env={**os.environ, "REBALANCE_OPT_LOG": str(tmp_path / "audit.sqlite")})
    finally:
        os.close(write_end)


@pytest.mark.parametrize("args", [["check"], ["tax", "--frontier", "--json"], ["generate", "--json"], ["generate"]])
def test_output_piped_to_a_reader_that_left_stops_quietly_with_141(capsys, tmp_path, args):
    # `tax --frontier | head -c 10` exited 1 with nothing said (rich's own handling), and with
    # --json 130, the code of Ctrl-C; now 141, a shell's code for a pipe's writer its reader left
    account = str(ROOT / "examples" / "household.toml")
    r = _run_into_a_closed_pipe(tmp_path, "rebalance", args[0], account, *args[1:])
    assert r.returncode == 141 and r.stderr == "", r.stderr
    if args[0] == "generate":  # logged before printing: the entry is whole and verifies
        code, out, _ = cli(capsys, "rebalance", "log", "--json")
        assert code == 0 and len(json.loads(out)["entries"]) == 1
        assert cli(capsys, "rebalance", "log", "--verify")[0] == 0


@pytest.mark.parametrize("args", [["--help"], ["rebalance", "--help"], ["rebalance", "generate", "--help"]])
def test_help_piped_to_a_reader_that_left_stops_quietly_with_141(tmp_path, args):
    # `python cli.py --help | head -1` exited 1: click's own handling of the broken pipe
    r = _run_into_a_closed_pipe(tmp_path, *args)
    assert r.returncode == 141 and r.stderr == "", r.stderr


def test_a_broken_pipe_that_is_not_stdouts_is_an_unexpected_error(capsys, monkeypatch):
    # only stdout's reader leaving is a quiet exit; a pipe elsewhere breaking is reported
    import rebalance_opt.drift as drift

    def broken(*_):
        raise BrokenPipeError(32, "Broken pipe")
    monkeypatch.setattr(drift, "drift_report", broken)
    code, _, err = cli(capsys, "rebalance", "check", str(ROOT / "examples" / "household.toml"))
    assert code == 1 and "unexpected error: BrokenPipeError" in err


def test_a_usage_error_with_json_into_a_closed_pipe_is_exit_2_not_a_traceback(tmp_path):
    r = _run_into_a_closed_pipe(tmp_path, "rebalance", "check", "--bogus", "--json")
    assert r.returncode == 2 and "No such option: --bogus" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("redirect", [">&-", "1<"])
def test_a_closed_stdout_is_an_input_error_before_anything_is_logged(tmp_path, redirect):
    # `generate --json >&-` printed nothing, exited 0 and logged the entry: an automation that
    # lost its output never knew; `1<FILE` (stdout read-only) ended in "unexpected error" after logging
    log = tmp_path / "audit.sqlite"
    readable = tmp_path / "stdout.txt"
    readable.write_text("")
    shell = 'exec "$0" "$@" >&-' if redirect == ">&-" else 'exec "$0" "$@" 1<"$STDOUT_FILE"'
    r = subprocess.run(["sh", "-c", shell, sys.executable, str(ROOT / "cli.py"), "rebalance", "generate",
                        str(ROOT / "examples" / "household.toml"), "--json", "--out", str(tmp_path / "orders.csv")],
                       stderr=subprocess.PIPE, text=True, timeout=120, cwd=ROOT,
                       env={**os.environ, "REBALANCE_OPT_LOG": str(log), "STDOUT_FILE": str(readable)})
    assert r.returncode == 2 and r.stderr.startswith("input error: stdout is "), r.stderr
    assert not log.exists() and not (tmp_path / "orders.csv").exists()


@pytest.mark.parametrize("command", ["generate", "batch"])
def test_a_basket_out_through_a_symbolic_link_updates_the_file_it_points_to(capsys, folder, tmp_path, command):
    # the basket was renamed over the link: the link became a file, the file it named kept the old basket
    real, links = tmp_path / "real", tmp_path / "links"
    real.mkdir()
    links.mkdir()
    (real / "orders.csv").write_text("old\n")
    link = links / "orders.csv"
    link.symlink_to(Path("..") / "real" / "orders.csv")
    target = folder / "household.toml" if command == "generate" else folder
    code, out, _ = cli(capsys, "rebalance", command, str(target), "--out", str(link), "--json",
                       *(["--workers", "1"] if command == "batch" else []))
    assert code == 0 and link.is_symlink()
    assert (real / "orders.csv").read_text().startswith("symbol,side,quantity")
    assert json.loads(out)["basket"]["path"] == str((real / "orders.csv").resolve())
    assert sorted(p.name for p in links.iterdir()) == ["orders.csv"]  # no temporary file left beside the link
    assert sorted(p.name for p in real.iterdir()) == ["orders.csv"]


@pytest.mark.parametrize("points_to", ["nowhere.csv", "orders.csv"])  # broken, and a loop
@pytest.mark.parametrize("command", ["generate", "batch"])
def test_a_basket_out_through_a_link_pointing_nowhere_is_an_input_error(capsys, folder, tmp_path, command, points_to):
    link = tmp_path / "orders.csv"
    link.symlink_to(points_to)
    target = folder / "household.toml" if command == "generate" else folder
    code, _, err = cli(capsys, "rebalance", command, str(target), "--out", str(link),
                       *(["--workers", "1"] if command == "batch" else []))
    assert code == 2 and "is a symbolic link to" in err and "does not exist" in err
    assert link.is_symlink() and not (tmp_path / "nowhere.csv").exists()
    assert not (tmp_path / "audit.sqlite").exists()


@pytest.mark.parametrize("command", ["generate", "batch", "backtest"])
def test_an_empty_out_option_is_an_input_error_saying_it_is_empty(capsys, folder, tmp_path, monkeypatch, command):
    # `--out ""` read as ".": "is a directory (got '.')" for a basket, the current folder for a backtest's report
    monkeypatch.chdir(tmp_path)
    args = {"generate": ["rebalance", "generate", str(folder / "household.toml")],
            "batch": ["rebalance", "batch", str(folder), "--workers", "1"],
            "backtest": ["backtest", "--years", "1", "--no-plots"]}[command]
    before = sorted(p.name for p in tmp_path.iterdir())
    code, stdout, err = cli(capsys, *args, "--out", "", "--json")
    assert code == 2 and json.loads(stdout)["error"]["path"] == "--out" and "is empty" in err and "'.'" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no log, no report


def _prices(path, days) -> str:
    path.write_text("date,A,B\n" + "".join(f"{d},{10 + i % 3},{20 - i % 2}\n" for i, d in enumerate(days)))
    return str(path)


@pytest.mark.parametrize("days,args,option,words", [
    # a month from the 1st ends before the next month's first trading day: was "--start: leaves less than two months"
    (["2023-03-01", "2023-03-15", "2023-03-31", "2023-04-03", "2023-05-01"], ["--years", "0.01"], "--years",
     "give --years 0.17 or more (the next prices are on 2023-04-03)"),
    # a gap in the prices: three months from January hold January only
    (["2023-01-02", "2023-01-31", "2023-06-01", "2023-07-03"], ["--years", "0.25"], "--years",
     "the prices have no day from 2023-02-01 to 2023-05-31"),
    # all the prices in one month, no --start given: was "--start" too
    (["2023-01-02", "2023-01-03", "2023-01-31"], [], "--prices", "hold days of one month only"),
    (["2023-01-02", "2023-01-31", "2023-02-01"], ["--start", "2023-02-01"], "--start", "give an earlier --start"),
])
def test_a_backtest_window_under_two_monthly_steps_names_what_to_change(capsys, tmp_path, days, args, option, words):
    prices = _prices(tmp_path / "prices.csv", days)
    code, stdout, err = cli(capsys, "backtest", "--prices", prices, "--strategies", "band-fifo", "--no-plots",
                            "--out", str(tmp_path / "o"), *args, "--json")
    assert code == 2 and json.loads(stdout)["error"]["path"] == option and words in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("initial", ["1e-300", "0.0099", "1e16"])
def test_a_backtest_initial_amount_is_from_a_cent_to_the_largest_amount(capsys, tmp_path, initial):
    # --initial 1e-300 made one share 1e302 of the account: numpy overflow warnings from the
    # rounding step, exit 0; 1e16 was "account.cash: is too large", naming no option given
    code, _, err = cli(capsys, "backtest", "--initial", initial, "--out", str(tmp_path / "o"))
    assert code == 2 and "--initial: must be from 0.01 (a cent) to 1e+15" in err and "Warning" not in err
    assert not (tmp_path / "o").exists()


def test_a_backtest_of_a_cent_runs_without_overflow(capsys, tmp_path):
    import warnings

    import pandas as pd
    prices = _prices(tmp_path / "prices.csv", [str(d.date()) for d in pd.bdate_range("2023-01-02", "2023-04-28")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow warning fails the test
        code, _, err = cli(capsys, "backtest", "--prices", prices, "--strategies", "optimizer,band-fifo",
                           "--initial", "0.01", "--deposit", "0", "--no-plots", "--out", str(tmp_path / "o"))
    assert code == 0, err


def test_names_from_users_print_as_written_never_as_rich_markup_or_emoji(capsys, tmp_path):
    # an account id "[bold]h[/x]" ended generate, log and batch in "unexpected error: MarkupError"
    # (exit 1, after the plan was logged); "[red]" in a file name vanished from the failures table
    d = base_dict()
    d["account"]["id"] = "[bold]h[/x] :joy:"
    books = tmp_path / "books"
    books.mkdir()
    (books / "a.json").write_text(json.dumps(d))
    bad = base_dict()
    bad["account"]["cash"] = -5
    (books / "[red]b.json").write_text(json.dumps(bad))
    account = str(books / "a.json")
    for args in (["check", account], ["generate", account], ["log"]):
        code, out, err = cli(capsys, "rebalance", *args)
        assert code == 0, err
        assert "[bold]h[/x]" in out and ":joy:" in out  # the log's table may wrap the id
    code, out, err = cli(capsys, "rebalance", "batch", str(books), "--workers", "1")
    assert code == 5 and "[red]b.json" in out + err and "MarkupError" not in out + err


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_a_terminal_in_a_legacy_encoding_gets_plain_characters_not_an_unexpected_error(tmp_path, encoding):
    # every view ended in "unexpected error: UnicodeEncodeError" (exit 1), generate after logging
    account = str(ROOT / "examples" / "household.toml")
    env = {**os.environ, "PYTHONIOENCODING": encoding, "REBALANCE_OPT_LOG": str(tmp_path / "audit.sqlite")}

    def run(*args: str) -> subprocess.CompletedProcess:  # read in the terminal's encoding, strictly
        return subprocess.run([sys.executable, str(ROOT / "cli.py"), "rebalance", *args], cwd=ROOT, env=env,
                              capture_output=True, encoding=encoding, timeout=120)
    for command in ("check", "tax", "generate"):
        r = run(command, account)
        assert r.returncode == 0 and "Error" not in r.stderr, r.stderr
    check = run("check", account).stdout
    assert "#" in check and "overweight" in check  # the bars, in plain characters
    assert json.loads(run("check", account, "--json").stdout)["account"] == "household-1"


def _basket_args(command: str, folder: Path) -> list[str]:
    return (["rebalance", "generate", str(folder / "household.toml")] if command == "generate"
            else ["rebalance", "batch", str(folder), "--workers", "1"])


@pytest.mark.parametrize("command", ["generate", "batch"])
def test_a_basket_named_up_to_the_file_systems_limit_is_written(capsys, folder, tmp_path, command):
    # its temporary file, ".NAME.xxxxxxxx.tmp" beside it, went past the limit: "unexpected error: OSError:
    # File name too long" (exit 1) after the solve
    if os.pathconf(tmp_path, "PC_NAME_MAX") < 255:
        pytest.skip("a file system with names under 255 bytes")
    baskets = tmp_path / "baskets"
    baskets.mkdir()
    out = baskets / ("b" * 251 + ".csv")  # 255 bytes
    code, stdout, _ = cli(capsys, *_basket_args(command, folder), "--out", str(out), "--json")
    assert code == 0 and json.loads(stdout)["basket"]["path"] == str(out.resolve())
    assert out.read_text().startswith("symbol,side,quantity")
    assert [p.name for p in baskets.iterdir()] == [out.name]  # no temporary file left


@pytest.mark.parametrize("command", ["generate", "batch"])
def test_a_basket_name_past_the_file_systems_limit_is_an_input_error(capsys, folder, tmp_path, command):
    # "unexpected error: OSError: [Errno 36] File name too long" (exit 1)
    out = tmp_path / ("b" * 300 + ".csv")
    code, stdout, err = cli(capsys, *_basket_args(command, folder), "--out", str(out), "--json")
    assert code == 2 and json.loads(stdout)["error"]["path"] == "--out" and "cannot be used" in err
    assert not (tmp_path / "audit.sqlite").exists()


@pytest.mark.skipif(sys.platform != "linux", reason="file names of any bytes (macOS and Windows take Unicode)")
@pytest.mark.parametrize("command", ["generate", "batch"])
def test_a_basket_name_not_in_utf8_is_an_input_error_before_any_work(capsys, folder, tmp_path, command):
    # a name in latin-1 bytes ("\xff") came through as a lone surrogate, which the audit entry's hash could
    # not encode: "unexpected error: UnicodeEncodeError" (exit 1) after the solve (a batch's whole run)
    out = tmp_path / os.fsdecode(b"orders-\xff.csv")
    code, stdout, err = cli(capsys, *_basket_args(command, folder), "--out", str(out), "--json")
    error = json.loads(stdout)["error"]
    assert code == 2 and error["path"] == "--out" and "not UTF-8" in err and "\\udcff" in error["message"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["accounts"]  # no basket, no log


@pytest.mark.parametrize("log_name", ["loop", "c" * 300])
def test_a_log_path_that_cannot_be_a_log_file_is_an_input_error_before_the_solve(capsys, monkeypatch, folder, tmp_path,
                                                                                 log_name):
    # a symbolic link that loops was "unexpected error: RuntimeError" (exit 1) with --out, and "unable to open
    # database file" after the solve without; a name past the file system's limit was exit 1 in `log` too
    def no_solve(*args, **kwargs):
        raise AssertionError("solved before the log was checked")
    monkeypatch.setattr("rebalance_opt.solve.plan_rebalance", no_solve)
    log = tmp_path / log_name
    if log_name == "loop":
        log.symlink_to(log_name)
    out = tmp_path / "orders.csv"
    code, stdout, err = cli(capsys, "rebalance", "generate", str(folder / "household.toml"), "--log", str(log),
                            "--out", str(out), "--json")
    assert code == 2 and json.loads(stdout)["error"]["path"] == "--log" and not out.exists()
    if log_name != "loop":
        code, _, err = cli(capsys, "rebalance", "log", "--log", str(log))
        assert code == 2 and "cannot read the audit log" in err


def test_a_lots_file_link_that_loops_is_named_as_an_input_error_with_out(capsys, tmp_path):
    # checking that the basket would not replace the lots file resolved the link: "unexpected error:
    # RuntimeError: Symlink loop" (exit 1) with --out; without it the reader named the lots_file (exit 2)
    d = base_dict()
    d.pop("lots")
    d["lots_file"] = "lots.csv"
    (tmp_path / "lots.csv").symlink_to("lots.csv")
    account = tmp_path / "acct.json"
    account.write_text(json.dumps(d))
    out = tmp_path / "orders.csv"
    code, stdout, _ = cli(capsys, "rebalance", "generate", str(account), "--out", str(out), "--json")
    assert code == 2 and json.loads(stdout)["error"]["path"] == "lots_file" and not out.exists()
    assert not (tmp_path / "audit.sqlite").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="arguments of any bytes")
def test_a_log_account_filter_not_in_utf8_is_an_input_error(capsys, folder, tmp_path):
    # `log --account $'\xff'` came through as a lone surrogate, which SQLite could not be given:
    # "unexpected error: UnicodeEncodeError" (exit 1)
    assert cli(capsys, "rebalance", "generate", str(folder / "household.toml"))[0] == 0
    code, stdout, err = cli(capsys, "rebalance", "log", "--account", os.fsdecode(b"household-\xff"), "--json")
    error = json.loads(stdout)["error"]
    assert code == 2 and error["path"] == "--account" and "not UTF-8" in err and "\\udcff" in error["message"]
    code, stdout, _ = cli(capsys, "rebalance", "log", "--account", "household-1", "--json")
    assert code == 0 and len(json.loads(stdout)["entries"]) == 1


def test_money_never_shows_a_negative_zero():
    # the log listing showed -0.00 for an estimated tax just below zero (a loss under half a cent)
    from rebalance_opt.render import money
    assert [money(x) for x in (-0.001, -0.0, 0.0, -0.006, -1234.567)] == ["0.00", "0.00", "0.00", "-0.01", "-1,234.57"]
    assert money(-0.004, "USD") == "0.00 USD"


def test_money_rounds_half_cents_as_the_basket_does():
    # the terminal formatted floats (2.675 is 2.67499999... in binary: "2.67") while the basket
    # rounds the shortest decimal half away from zero ("2.68"): the two disagreed by a cent
    from decimal import Decimal

    from rebalance_opt.exports import cents
    from rebalance_opt.render import money
    ties = [2.675, 1.005, -2.675, 1234567.895, 0.125]
    assert [money(x) for x in ties] == ["2.68", "1.01", "-2.68", "1,234,567.90", "0.13"]
    assert [money(x).replace(",", "") for x in ties] == [str(cents(x)) for x in ties]
    assert money(float("inf")) == "inf" and money(1e30).startswith("1,000,000,000,000,000,0")
    assert Decimal(money(1e15 + 0.5).replace(",", "")) == Decimal("1000000000000000.50")


def test_the_drift_view_never_shows_a_negative_zero(capsys, tmp_path):
    # a drift of -0.01 points was shown "-0.0" (and a zero drift "+0.0"); one that rounds to zero is "0.0"
    from rebalance_opt.render import pct, points
    assert [points(x) for x in (-1e-4, -0.0, 0.0, 1e-4, -6e-4, 0.183, -0.026)] == \
        ["0.0", "0.0", "0.0", "0.0", "-0.1", "+18.3", "-2.6"]
    assert [pct(x) for x in (-1e-12, -0.0, 0.5, 0.0004)] == ["0.0%", "0.0%", "50.0%", "0.0%"]
    d = base_dict()
    d["account"]["cash"] = 0.0
    d.update(targets={"A": 0.5, "B": 0.5}, classes={}, prices={"A": 100.0, "B": 100.0}, lots=[
        {"id": "L1", "symbol": "A", "quantity": 4999, "cost_basis": 100.0, "acquired": "2020-01-02"},
        {"id": "L2", "symbol": "B", "quantity": 5001, "cost_basis": 100.0, "acquired": "2020-01-02"}])
    account = tmp_path / "a.json"
    account.write_text(json.dumps(d))  # A at 49.99% and B at 50.01% of 1,000,000: drifts of -0.01 and +0.01 points
    code, out, err = cli(capsys, "rebalance", "check", str(account))
    assert code == 0, err
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()[:1] in (["A"], ["B"], ["CASH"])}
    assert {name: row[1:4] for name, row in rows.items()} == {
        "A": ["50.0%", "50.0%", "0.0"], "B": ["50.0%", "50.0%", "0.0"], "CASH": ["0.0%", "0.0%", "0.0"]}
    assert "-0.0" not in out and "+0.0" not in out


def test_the_plan_view_shows_share_counts_and_sub_dollar_prices_exactly(capsys, tmp_path):
    # quantities were shown to 6 significant digits: 1,234,567 shares as 1.23457e+06, 1234.567891 as
    # 1,234.57; a $0.0042 price as 0.00
    d = base_dict(fractional=True)
    d["prices"] = {"VTI": 0.00425, "VXUS": 50.0, "BND": 80.0}
    d["lots"][0].update(quantity=30_000_000, cost_basis=0.001)
    account = tmp_path / "a.json"
    account.write_text(json.dumps(d))
    code, out, err = cli(capsys, "rebalance", "generate", str(account), "--dry-run", "--json")
    assert code == 0, err
    plan = json.loads(out)
    code, view, err = cli(capsys, "rebalance", "generate", str(account), "--dry-run")
    assert code == 0, err
    flat = view.replace(",", "")
    assert "e+" not in view and "0.0043" in view
    for o in plan["orders"]:
        q = o["quantity"]
        assert (str(int(q)) if float(q).is_integer() else repr(float(q))) in flat, (q, view)
    assert any(o["quantity"] >= 1e6 for o in plan["orders"])


def test_out_with_a_tilde_is_written_in_the_home_folder_as_log_is(capsys, tmp_path, monkeypatch):
    # --out=~/basket.csv (no shell expansion after '=') wrote a folder named '~' in the current one
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, "rebalance", "generate", str(ROOT / "examples" / "household.toml"), "--dry-run",
                       "--out=~/basket.csv")
    assert code == 0, err
    assert (tmp_path / "home" / "basket.csv").is_file() and not (tmp_path / "~").exists()


def test_the_batch_summary_counts_one_worker_in_the_singular(capsys, folder):
    # "(1 workers)"; with Dask the number is the cluster's threads, and the line says so
    code, out, err = cli(capsys, "rebalance", "batch", str(folder), "--workers", "1", "--dry-run")
    assert code == 0 and "with --engine local (1 worker) in" in out + err
