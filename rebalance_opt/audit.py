"""The audit log (SPEC section 4): an append-only, hash-chained SQLite file of every rebalance.

Where it lives: ``--log PATH``, else ``$REBALANCE_OPT_LOG``, else
``$XDG_DATA_HOME/rebalance-opt/audit.sqlite`` (``~/.local/share/rebalance-opt/audit.sqlite``
when ``XDG_DATA_HOME`` is unset), whose directory is created on first use.

One entry per generated plan: its id (1, 2, 3, … with no gaps), the UTC time, account, reason,
the canonical inputs (``account_to_dict``, JSON with sorted keys) and their sha256, the policy,
drift before and after, the orders, the tax estimate, the solver (name, status, time), the rest
of the plan, the basket written if any (path, format, sha256), the previous entry's hash and the
entry's own hash: sha256 over a canonical JSON array of every other stored column, exactly as
stored. The first entry's previous hash is 64 zeros.

Durability and concurrency: the file is in WAL mode with ``synchronous=FULL``; an entry is one
``BEGIN IMMEDIATE`` transaction (reading the head and inserting happen under the write lock, so
concurrent writers queue and the chain stays linear), committed before ``generate`` reports
success. A writer waits at most BUSY_TIMEOUT in all for another's write transaction, then fails
(``_begin_immediate``) with nothing written. ``AuditLog.append_many`` appends many entries (a
batch) the same way, in one transaction.
A process killed at any point leaves the log as it was before its entry (or entries). Triggers
refuse UPDATE and DELETE on entries, so only a deliberate edit (dropping them) can alter it.

Reading needs only read access: in a directory this process cannot write, a log with no
entries pending in its ``-wal`` is read ``immutable`` (``_open_to_read``).

A log that is not intact (its entries table or a column gone, the table rebuilt, the file cut
short or overwritten) raises ``DamagedLog`` (exit 4, as a failed ``verify``) in every reader and
before any append; ``verify`` reports it as a failed check. A file that is no audit log at all is
an ``InputError`` (exit 2).

For tests, ``REBALANCE_OPT_CRASH_AT=after_insert`` (or ``after_commit``) makes the appending
process SIGKILL itself at that point, so crash tests use a real kill.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from .errors import DamagedLog, InputError, RebalanceError

ENV_LOG = "REBALANCE_OPT_LOG"
ENV_CRASH = "REBALANCE_OPT_CRASH_AT"
GENESIS = "0" * 64
SCHEMA_VERSION = "1"
HASH_TAG = "rebalance-opt audit entry v1"
BUSY_TIMEOUT = 60.0  # seconds a writer waits for another writer's transaction

# Every stored column but ``hash``, in the order they are hashed.
FIELDS = ("id", "time", "account", "as_of", "reason", "inputs", "inputs_sha256", "policy", "drift_before",
          "drift_after", "orders", "tax", "solver", "plan", "basket", "prev_hash")
JSON_FIELDS = ("inputs", "policy", "drift_before", "drift_after", "orders", "tax", "solver", "plan", "basket")
# Keys of Plan.to_dict() kept in their own columns; the rest goes to the ``plan`` column.
_OWN_COLUMNS = ("account", "as_of", "reason", "orders", "tax", "drift_before", "drift_after", "solver", "log_id")
# Columns the chain sets when an entry is appended (a record from ``record_of`` has the rest).
_CHAIN_FIELDS = ("id", "time", "prev_hash")

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS entries (
        id            INTEGER PRIMARY KEY,
        time          TEXT NOT NULL,
        account       TEXT NOT NULL,
        as_of         TEXT NOT NULL,
        reason        TEXT NOT NULL,
        inputs        TEXT NOT NULL,
        inputs_sha256 TEXT NOT NULL,
        policy        TEXT NOT NULL,
        drift_before  TEXT NOT NULL,
        drift_after   TEXT NOT NULL,
        orders        TEXT NOT NULL,
        tax           TEXT NOT NULL,
        solver        TEXT NOT NULL,
        plan          TEXT NOT NULL,
        basket        TEXT NOT NULL,
        prev_hash     TEXT NOT NULL,
        hash          TEXT NOT NULL UNIQUE)""",
    "CREATE INDEX IF NOT EXISTS entries_account ON entries (account, id)",
    """CREATE TRIGGER IF NOT EXISTS entries_no_update BEFORE UPDATE ON entries
       BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS entries_no_delete BEFORE DELETE ON entries
       BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
)
_SQL_VARIABLES = 500  # parameters per statement, well under SQLite's limit (999 before 3.32)
_TRIGGERS = {statement.split()[5]: statement for statement in SCHEMA if statement.startswith("CREATE TRIGGER")}


# --- where the log lives ------------------------------------------------------------------------
@dataclass(frozen=True)
class LogLocation:
    """The log's path and where it came from (``--log``, ``REBALANCE_OPT_LOG`` or the default)."""

    path: Path
    source: str  # "--log" | "REBALANCE_OPT_LOG" | "default"

    def error(self, message: str) -> InputError:
        return InputError(message, path=None if self.source == "default" else self.source, file=str(self.path))

    def damaged(self, problem: str) -> DamagedLog:
        """The log here is not intact (exit 4): ``problem`` says how, as ``verify`` reports it."""
        return DamagedLog(problem, path=None if self.source == "default" else self.source, file=str(self.path))

    def files(self) -> list[tuple[Path, str]]:
        """The log and the files SQLite keeps beside it (``-wal``, ``-shm``, ``-journal``, next to the
        file a symbolic link points to), each with what it is: a basket written over any of them
        destroys or corrupts the log (``exports.refuse_overwrite``)."""
        try:
            real = self.path.resolve()
        except (OSError, RuntimeError):  # a link that loops, a name too long: no file to protect beside it
            real = self.path
        return [(self.path, "the audit log")] + [
            (Path(f"{real}{suffix}"), f"the audit log's {suffix} file (beside {self.path})")
            for suffix in SIDE_FILE_SUFFIXES]


def default_log_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "rebalance-opt" / "audit.sqlite"


def resolve_log(option: str | Path | None) -> LogLocation:
    """The log from ``--log``, else ``$REBALANCE_OPT_LOG``, else the default path. An empty
    ``--log`` (``--log "$LOG"`` with the variable unset) is an input error, not the default log:
    entries would silently go to another log than the one meant."""
    if option is not None and str(option) == "":
        raise InputError("is empty: give the audit log's file path, or leave out --log for the default",
                         path="--log", value=str(option), has_value=True)
    if option is not None:
        where = LogLocation(Path(option).expanduser(), "--log")
    elif os.environ.get(ENV_LOG):
        where = LogLocation(Path(os.environ[ENV_LOG]).expanduser(), ENV_LOG)
    else:
        where = LogLocation(default_log_path(), "default")
    text = str(option if where.source == "--log" else os.environ.get(ENV_LOG, ""))
    if text.startswith(("postgres:/", "postgresql:/")):  # (a Path option has "//" folded to "/")
        raise InputError("PostgreSQL logs are not supported; give a SQLite file path",
                         path=where.source, value=text, has_value=True)
    return where


def check_writable(where: LogLocation) -> None:
    """Fail before any work if an entry could not be appended at ``where``; creates nothing.

    Beside what cannot be written (a directory, no access, a damaged log), this refuses what SQLite
    would only fail on once the plan is solved: a file that is not a regular file (a device, a pipe:
    "disk I/O error", a journal file left beside it), a symbolic link that loops or points into a
    folder that does not exist, a name the file system refuses (too long) or one leaving no room
    for the files SQLite keeps beside the log (``-journal``, ``-wal``: "unable to open database
    file", the log file created empty)."""
    try:
        _check_writable(where)
    except OSError as exc:  # a name or path longer than the file system allows, ...
        raise where.error(f"cannot be used as the audit log: {exc.strerror or exc}") from None


def _check_writable(where: LogLocation) -> None:
    path = where.path
    if path.is_dir():
        raise where.error("is a directory, not an audit log file")
    real = Path(os.path.realpath(path))  # SQLite opens the file a symbolic link points to, and works beside it
    if real.is_symlink():  # where resolving a link stops: it loops
        raise where.error("is a symbolic link that loops; give the audit log's file path")
    if path.exists() and not path.is_file():
        raise where.error("is not a regular file (a device or a pipe); give the audit log's file path")
    existing = real.parent
    while not existing.exists():
        existing = existing.parent
    room = _name_max(existing) - len(SIDE_FILE_SUFFIX)
    if (not real.exists() or real.stat().st_size == 0) and len(os.fsencode(real.name)) > room:  # a new log
        raise where.error(f"the audit log's name is too long: SQLite keeps files such as NAME{SIDE_FILE_SUFFIX} "
                          f"beside it, so the name is at most {room} bytes")
    if path.exists():
        # A damaged log is exit 4 whether or not it is writable: check it as a reader would first
        if os.access(path, os.R_OK):
            conn, _ = _open_to_read(where)
            with closing(conn):
                _check_schema(where, conn)
        # SQLite follows a symbolic link and keeps its -wal and -shm beside the file it points to
        folder = path.resolve().parent
        if not os.access(path, os.R_OK | os.W_OK) or not os.access(folder, os.W_OK | os.X_OK):
            raise where.error(f"the audit log is not writable (WAL mode needs its directory {folder} writable too)")
        return
    if where.source != "default" and not real.parent.is_dir():
        raise where.error("the audit log's directory does not exist" + (
            f" (the link points to {real})" if real != path else ""))
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise where.error(f"cannot create the audit log: {existing} is not a writable directory")


# The files SQLite keeps beside the log: NAME-journal while it switches a new log to WAL mode,
# then NAME-wal and NAME-shm; the longest of them bounds the log's own name.
SIDE_FILE_SUFFIXES = ("-wal", "-shm", "-journal")
SIDE_FILE_SUFFIX = max(SIDE_FILE_SUFFIXES, key=len)


def _name_max(folder: Path) -> int:
    """The longest file name (bytes) ``folder``'s file system takes; 255 where it cannot say."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # pragma: no cover - Windows has no pathconf
        return 255


# --- entries --------------------------------------------------------------------------------------
def canonical_json(obj: Any) -> str:
    """Sorted keys, no spaces, UTF-8 text; a non-finite float is written as its string ("inf").

    Plain JSON data with finite numbers (every plan and account dict) serializes directly; only
    what that refuses (a non-finite number, a mapping that is not a dict) takes the slower walk,
    which yields the same text for everything the direct path accepts.
    """
    return _encoded(_CANONICAL, obj)


# One encoder for every call (``json.dumps`` with these options builds a new one each time).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_ORDERED = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def inputs_json(inputs: Mapping[str, Any]) -> str:
    """An account's inputs (``account_to_dict``) as stored: ``canonical_json``'s form, but in the
    account's own key order, since order is part of the input: a class's symbols in ``[classes]``
    are its buy order (SPEC section 2), and the symbols' order breaks ties. Sorted, the inputs of
    two accounts that buy different funds were one text with one sha256, and replaying a logged
    entry bought another fund (5 of 8 replays differed)."""
    return _encoded(_ORDERED, inputs)


def _encoded(encoder: json.JSONEncoder, obj: Any) -> str:
    """``obj`` by ``encoder``; only what it refuses (a non-finite number, a mapping that is not a
    dict) takes the slower walk through ``_finite``, which gives the same text for the rest."""
    try:
        return encoder.encode(obj)
    except (TypeError, ValueError):
        return encoder.encode(_finite(obj))


def _finite(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, Mapping):
        return {str(k): _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def entry_hash(row: Mapping[str, Any]) -> str:
    """sha256 of a canonical JSON array of the stored columns (``FIELDS``), prev_hash included."""
    payload = json.dumps([HASH_TAG, *[row[f] for f in FIELDS]], ensure_ascii=False, separators=(",", ":"),
                         allow_nan=False)
    return sha256_text(payload)


def record_of(plan_dict: Mapping[str, Any], inputs: Mapping[str, Any],
              basket: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The stored text columns (no id, time or hashes) of a plan (``Plan.to_dict()``) and its inputs."""
    inputs_text = inputs_json(inputs)
    rest = {k: v for k, v in plan_dict.items() if k not in _OWN_COLUMNS}
    return {
        "account": str(plan_dict["account"]), "as_of": str(plan_dict["as_of"]), "reason": str(plan_dict["reason"]),
        "inputs": inputs_text, "inputs_sha256": sha256_text(inputs_text),
        "policy": canonical_json(inputs.get("policy", {})),
        "drift_before": canonical_json(plan_dict["drift_before"]),
        "drift_after": canonical_json(plan_dict["drift_after"]),
        "orders": canonical_json(plan_dict["orders"]), "tax": canonical_json(plan_dict["tax"]),
        "solver": canonical_json(plan_dict["solver"]), "plan": canonical_json(rest),
        "basket": canonical_json(basket),
    }


@dataclass(frozen=True)
class Entry:
    """One stored entry, its columns exactly as stored (JSON columns as text)."""

    row: Mapping[str, Any]

    @property
    def id(self) -> int:
        return int(self.row["id"])

    @property
    def hash(self) -> str:
        return str(_shown(self.row["hash"]))

    def field(self, name: str) -> Any:
        """A JSON column parsed (None if it no longer parses: a tampered row), or a plain column
        (bytes a tampered row holds, a BLOB or text that is not UTF-8, shown as text)."""
        value = self.row[name]
        if name in JSON_FIELDS:
            try:
                return json.loads(value)
            except (TypeError, ValueError):
                return None
        return _shown(value)

    def summary(self) -> dict[str, Any]:
        """The listing view: who, when, why, how much — without the inputs."""
        orders = self.field("orders") or []
        tax = self.field("tax") or {}
        solver = self.field("solver") or {}
        return {"id": self.row["id"], "time": self.field("time"), "account": self.field("account"),
                "as_of": self.field("as_of"), "reason": self.field("reason"),
                "orders": len(orders) if isinstance(orders, list) else None,
                "estimated_tax": tax.get("estimated_tax") if isinstance(tax, dict) else None,
                "solver_status": solver.get("status") if isinstance(solver, dict) else None,
                "inputs_sha256": self.field("inputs_sha256"), "hash": self.hash}

    def to_dict(self) -> dict[str, Any]:
        """The whole entry, JSON columns parsed."""
        out: dict[str, Any] = {f: self.field(f) for f in FIELDS}
        out["hash"] = self.hash
        return out


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of ``verify``: ``first_bad`` is the id of the first altered/missing entry."""

    log: str
    ok: bool
    entries: int
    head: str
    head_id: int
    first_bad: int | None = None
    problem: str | None = None
    since_kept_head: int | None = None  # entries appended after the head checked against
    warnings: tuple[str, ...] = ()       # the log's guards changed, its entries still intact

    @property
    def message(self) -> str:
        if self.ok:
            text = (f"ok: {self.entries} {'entry' if self.entries == 1 else 'entries'}, chain intact, "
                    f"head {self.head_id}:{self.head}")
            if self.since_kept_head is not None:
                text += f"; the kept head is in the chain ({self.since_kept_head} entries appended since)"
            return text
        return f"{self.log}: entry {self.first_bad}: {self.problem}"

    def to_dict(self) -> dict[str, Any]:
        return {"log": self.log, "ok": self.ok, "entries": self.entries, "head": self.head, "head_id": self.head_id,
                "first_bad": self.first_bad, "problem": self.problem, "message": self.message,
                "since_kept_head": self.since_kept_head, "warnings": list(self.warnings)}


# --- the log ------------------------------------------------------------------------------------
def _triggers(names: list[str], one: str = "is", many: str = "are") -> str:
    """``trigger X is`` or ``triggers X, Y are``: the subject of a warning, in number."""
    return f"trigger {names[0]} {one}" if len(names) == 1 else f"triggers {', '.join(names)} {many}"


class AuditLog:
    """An audit log file. ``append`` creates it (and its default directory) on first use; reading
    a log that does not exist yet finds no entries and creates nothing."""

    def __init__(self, where: LogLocation | str | Path):
        self.where = where if isinstance(where, LogLocation) else LogLocation(Path(where), "--log")

    @property
    def path(self) -> Path:
        return self.where.path

    def append(self, plan_dict: Mapping[str, Any], inputs: Mapping[str, Any],
               basket: Mapping[str, Any] | None = None, now: datetime | None = None) -> Entry:
        """Append one entry in one transaction and return it (committed when this returns)."""
        return Entry(self._append_rows([record_of(plan_dict, inputs, basket)], now)[0])

    def append_many(self, records: Sequence[Mapping[str, str]], now: datetime | None = None) -> list[int]:
        """Append many entries in one transaction; returns their ids, in the order given.

        ``records`` are entries' stored columns as ``record_of`` renders them (so the expensive
        rendering can happen elsewhere, e.g. in a batch's worker processes). The chain is the one
        ``append`` extends, under the same write lock: each entry links to the one before, the
        first to the log's current head, and they share one time stamp. Either every entry is
        committed or none is (a crash or a bad record leaves the log as it was). No records:
        nothing is written and the file is not created."""
        if not records:
            return []
        return [int(row["id"]) for row in self._append_rows(records, now)]

    def _append_rows(self, records: Sequence[Mapping[str, str]], now: datetime | None) -> list[dict[str, Any]]:
        """The chain's one writer: read the head and insert ``records`` after it under one
        ``BEGIN IMMEDIATE``, commit, and return the stored rows (with id, time and hashes)."""
        if self.where.source == "default":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        cols = (*FIELDS, "hash")
        with closing(_connect(self.where, create=True)) as conn:
            _ensure_schema(self.where, conn)
            _begin_immediate(conn, self.where)
            try:
                last = conn.execute("SELECT id, hash FROM entries ORDER BY id DESC LIMIT 1").fetchone()
                head_id, prev = _head_of(self.where, last[0], last[1]) if last else (0, GENESIS)
                next_id = head_id + 1
                stamp = _utc_now(now)
                rows = []
                for i, record in enumerate(records):
                    row = {"id": next_id + i, "time": stamp,
                           **{f: record[f] for f in FIELDS if f not in _CHAIN_FIELDS}, "prev_hash": prev}
                    row["hash"] = prev = entry_hash(row)
                    rows.append(row)
                conn.executemany(f"INSERT INTO entries ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                                 [[row[c] for c in cols] for row in rows])
                stored = conn.execute("SELECT id, hash FROM entries WHERE id >= ? ORDER BY id", (next_id,)).fetchall()
                if [tuple(r) for r in stored] != [(row["id"], row["hash"]) for row in rows]:
                    # a trigger someone added swallowed or changed the entries (RAISE(IGNORE), ...)
                    raise self.where.damaged("altered: the log did not store the entries as written (a trigger "
                                             "on its entries table dropped or changed them); nothing was appended")
                _maybe_crash("after_insert")
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if _is_corrupt(exc):
                    raise _sqlite_error(self.where, exc) from None
                if isinstance(exc, sqlite3.IntegrityError):  # every entry it writes fits the table it made
                    raise self.where.damaged(f"altered: the log refused the entry (SQLite: {exc}): its entries "
                                             "table or triggers were changed") from None
                raise
        _maybe_crash("after_commit")
        return rows

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> Iterator[dict[str, Any]]:
        """The rows of ``sql``, read as they come; none from a log that does not exist. A log
        that is not intact raises DamagedLog: before any row when its file or table is damaged,
        after the last readable row when a later part of the file is. Reading needs only read
        access (see ``_open_to_read``)."""
        try:
            exists, is_dir = self.path.exists(), self.path.is_dir()
        except OSError as exc:  # a name longer than the file system allows (was "unexpected error")
            raise self.where.error(f"cannot read the audit log: {exc.strerror or exc}") from None
        if not exists:
            return
        if is_dir:
            raise self.where.error("is a directory, not an audit log file")
        conn, stamp = _open_to_read(self.where)
        try:
            with closing(conn):
                if not _check_schema(self.where, conn):
                    return  # no tables yet (a zero-byte file): a new log, as ``append`` takes it
                try:
                    for row in conn.execute(sql, args):
                        yield dict(row)
                except sqlite3.DatabaseError as exc:
                    raise _sqlite_error(self.where, exc) from None
        finally:
            if stamp is not None and _file_stamp(self.path) != stamp:
                raise self.where.error("the audit log was written to while it was read without locks (its "
                                       "directory is not writable); run the command again")

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return list(self._rows(sql, args))

    def entries(self, account: str | None = None, since: datetime | None = None) -> list[Entry]:
        """Entries in id order, optionally of one account and at or after ``since`` (UTC)."""
        sql, args, where = "SELECT * FROM entries", [], []
        if account is not None:
            where.append("account = ?")
            args.append(account)
        if since is not None:
            where.append("time >= ?")
            args.append(_utc_now(since))
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [Entry(r) for r in self._query(sql + " ORDER BY id", args)]

    def logged_inputs(self, keys: Iterable[tuple[str, str, str]], up_to: int | None = None
                      ) -> dict[tuple[str, str, str], int]:
        """Which of ``keys`` (``(account, inputs_sha256, reason)``: the same rebalance) an entry
        already logs, with the newest such entry's id, among entries numbered up to ``up_to``
        (None: all): a batch's ``--resume``. Only the entries of those accounts are read (by the
        account index), without their text, so a log of millions of entries costs what the
        accounts' own history does."""
        wanted = set(keys)
        accounts = sorted({key[0] for key in wanted})
        found: dict[tuple[str, str, str], int] = {}
        for start in range(0, len(accounts), _SQL_VARIABLES):
            part = accounts[start: start + _SQL_VARIABLES]
            sql = (f"SELECT id, account, inputs_sha256, reason FROM entries "
                   f"WHERE account IN ({','.join('?' * len(part))})")
            args: list[Any] = list(part)
            if up_to is not None:
                sql += " AND id <= ?"
                args.append(up_to)
            for r in self._rows(sql + " ORDER BY id", args):
                key = (r["account"], r["inputs_sha256"], r["reason"])
                if key in wanted:
                    found[key] = r["id"]
        return found

    def logged_entries(self, keys: Iterable[tuple[str, str, str]], up_to: int | None = None
                       ) -> dict[tuple[str, str, str], Entry]:
        """``logged_inputs`` with the entries themselves (read by id): what a resumed batch's
        worker needs to report a plan it does not make again."""
        found = self.logged_inputs(keys, up_to)
        ids = sorted(set(found.values()))
        by_id: dict[int, Entry] = {}
        for start in range(0, len(ids), _SQL_VARIABLES):
            part = ids[start: start + _SQL_VARIABLES]
            for r in self._rows(f"SELECT * FROM entries WHERE id IN ({','.join('?' * len(part))})", part):
                by_id[int(r["id"])] = Entry(r)
        return {key: by_id[i] for key, i in found.items() if i in by_id}

    def get(self, entry_id: int) -> Entry | None:
        if not -2 ** 63 <= entry_id < 2 ** 63:  # past SQLite's integers: no such entry (was OverflowError)
            return None
        rows = self._query("SELECT * FROM entries WHERE id = ?", (entry_id,))
        return Entry(rows[0]) if rows else None

    def head(self) -> tuple[int, str]:
        """(id, hash) of the newest entry; (0, 64 zeros) for an empty or missing log."""
        rows = self._query("SELECT id, hash FROM entries ORDER BY id DESC LIMIT 1")
        return _head_of(self.where, rows[0]["id"], rows[0]["hash"]) if rows else (0, GENESIS)

    def verify(self, head: str | None = None) -> VerifyResult:
        """Check the whole chain: ids 1, 2, 3, … with none missing, every hash recomputed, every
        entry linked to the one before. With ``head`` (``HASH`` or ``ID:HASH`` from ``log --head``
        kept elsewhere) also check that the log still holds that entry unchanged, which catches
        entries cut off the end and a chain rewritten and rehashed as a whole. The empty log's
        head, ``0:`` and 64 zeros, is the start of every chain."""
        kept_id, kept_hash = parse_head(head) if head is not None else (None, None)
        log = str(self.path)
        prev_id, prev_hash, found_at = 0, GENESIS, (0 if kept_hash == GENESIS else None)
        rows = self._rows("SELECT * FROM entries ORDER BY id")
        with closing(rows):
            try:
                for row in rows:
                    expected, rid = prev_id + 1, row["id"]
                    problem = _row_problem(row, expected, prev_hash)
                    if problem is not None:
                        return VerifyResult(log, False, prev_id, prev_hash, prev_id, expected, problem)
                    if kept_hash is not None and row["hash"] == kept_hash:
                        if kept_id is not None and kept_id != rid:
                            return VerifyResult(log, False, prev_id, prev_hash, prev_id, rid,
                                                f"the kept head names entry {kept_id} but its hash is entry {rid}'s")
                        found_at = rid
                    prev_id, prev_hash = rid, row["hash"]
            except DamagedLog as exc:  # a damaged file or table: the entries from here on cannot be checked
                return VerifyResult(log, False, prev_id, prev_hash, prev_id, prev_id + 1, exc.problem)
        if kept_hash is not None and found_at is None:
            if kept_id is not None and kept_id > prev_id:
                return VerifyResult(log, False, prev_id, prev_hash, prev_id, prev_id + 1,
                                    f"missing: the log ends at entry {prev_id} but the kept head is entry "
                                    f"{kept_id} (the newest entries were cut off)")
            bad = kept_id if kept_id is not None else 1
            return VerifyResult(log, False, prev_id, prev_hash, prev_id, bad,
                                f"the kept head {kept_hash[:12]}… is not in the log: entries were cut off back "
                                "past it, or the chain was rewritten and rehashed")
        since = prev_id - found_at if found_at is not None else None
        # A mistyped --log verified as an empty chain ("ok: 0 entries"), as if the log were fine.
        missing = () if self.path.exists() else (f"there is no log file at {log}: nothing has been recorded "
                                                 "there (is this the log you meant?)",)
        return VerifyResult(log, True, prev_id, prev_hash, prev_id, since_kept_head=since,
                            warnings=missing + self._guard_warnings())

    def _guard_warnings(self) -> tuple[str, ...]:
        """What about the entries table differs from what the log creates, though every entry is
        intact: its append-only triggers gone or rewritten, triggers it never had (one could drop
        or change what is appended), columns no hash covers. The chain still catches any change
        to an entry, so these are warnings, not a failed verify. A log without tables yet (a
        zero-byte file: the new log appending takes it for) has no guards to miss."""
        if not self._query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'entries'"):
            return ()
        expected = {name: " ".join(sql.replace("IF NOT EXISTS ", "").split()) for name, sql in _TRIGGERS.items()}
        found = {r["name"]: " ".join(str(r["sql"]).split())
                 for r in self._query("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                                      "AND tbl_name = 'entries'")}
        extra_columns = [r["name"] for r in self._query("PRAGMA table_info(entries)")
                         if r["name"] not in (*FIELDS, "hash")]
        warnings = []
        if gone := [name for name in expected if name not in found]:
            warnings.append(f"the append-only {_triggers(gone)} gone: SQLite no longer refuses "
                            "changes to entries (the chain still shows any change)")
        if changed := [name for name in expected if name in found and found[name] != expected[name]]:
            warnings.append(f"the append-only {_triggers(changed, 'was', 'were')} rewritten (the chain still "
                            "shows any change to an entry)")
        if others := sorted(set(found) - set(expected)):
            warnings.append(f"triggers the log does not create are on its entries: {', '.join(others)} (one "
                            "could drop or change what is appended)")
        if extra_columns:
            warnings.append(f"the entries table has columns the log does not write and no hash covers: "
                            f"{', '.join(extra_columns)}")
        return tuple(warnings)


def parse_head(text: str) -> tuple[int | None, str]:
    """``HASH`` or ``ID:HASH`` (as printed by ``log --head``) -> (id or None, hash)."""
    raw = text.strip().lower()
    entry_id: int | None = None
    if ":" in raw:
        left, raw = raw.split(":", 1)
        if not (left.isascii() and left.isdigit()):  # "³".isdigit() too, which int() refuses
            raise InputError("a head is HASH or ID:HASH as printed by `log --head`", path="--head",
                             value=text, has_value=True)
        entry_id = int(left)
    if len(raw) != 64 or any(c not in "0123456789abcdef" for c in raw):
        raise InputError("a head hash is 64 hex digits (`log --head` prints ID:HASH)", path="--head",
                         value=text, has_value=True)
    # 64 zeros is no entry's hash but the empty log's head, which `log --head` prints as 0:000…;
    # any other pairing could never have been printed (the id was ignored with 64 zeros).
    if entry_id is not None and (entry_id == 0) != (raw == GENESIS):
        problem = (f"64 zeros is the head of the empty log (0:{GENESIS[:8]}…), no entry {entry_id}'s hash"
                   if entry_id else "entry 0 is the empty log, whose head hash is 64 zeros")
        raise InputError(f"{problem}; give the ID:HASH `log --head` printed", path="--head", value=text,
                         has_value=True)
    return entry_id, raw


def parse_since(text: str) -> datetime:
    """``YYYY-MM-DD`` (midnight UTC) or an ISO date-time (UTC unless it names an offset)."""
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
        t = t if t.tzinfo else t.replace(tzinfo=timezone.utc)
        return t.astimezone(timezone.utc)  # in range in UTC too (9999-12-31T23:59-14:00 is not)
    except (ValueError, OverflowError):
        raise InputError("must be a date YYYY-MM-DD or an ISO date-time", path="--since", value=text,
                         has_value=True) from None


# --- internals ----------------------------------------------------------------------------------
def _row_problem(row: Mapping[str, Any], expected_id: int, prev_hash: str) -> str | None:
    try:
        return _row_fields_problem(row, expected_id, prev_hash)
    except (KeyError, IndexError) as exc:  # a column dropped from the table (was a KeyError, exit 1)
        return f"altered: the log has no column {exc}"


def _row_fields_problem(row: Mapping[str, Any], expected_id: int, prev_hash: str) -> str | None:
    rid = row["id"]
    if rid != expected_id:
        return (f"missing: entry {expected_id} was removed (the next entry is {rid})" if isinstance(rid, int)
                and rid > expected_id else f"out of order: found id {rid!r} where entry {expected_id} belongs")
    try:
        recomputed = entry_hash(row)
    except (TypeError, ValueError):
        recomputed = None
    if recomputed != row["hash"]:
        return "altered: its contents do not match its hash"
    if not isinstance(row["inputs"], str) or sha256_text(row["inputs"]) != row["inputs_sha256"]:
        return "altered: its inputs do not match their sha256"
    if row["prev_hash"] != prev_hash:
        prev = f"entry {expected_id - 1}" if expected_id > 1 else "the start of the chain"
        return (f"broken link: its previous hash is not {prev}'s hash ({prev} or this entry was altered and "
                "rehashed, or entries were reordered)")
    return None


def _connect(where: LogLocation, create: bool, immutable: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit); ``create=False`` never creates
    the file (a write-protected file opens read-only); ``immutable`` opens it read-only without
    locks or the WAL (see ``_open_to_read``)."""
    try:
        if create:
            conn = sqlite3.connect(str(where.path), timeout=BUSY_TIMEOUT, isolation_level=None)
        else:
            mode = "mode=ro&immutable=1" if immutable else "mode=rw"
            conn = sqlite3.connect(f"{where.path.resolve().as_uri()}?{mode}", uri=True, timeout=BUSY_TIMEOUT,
                                   isolation_level=None)
    except sqlite3.Error as exc:
        raise where.error(f"cannot open the audit log: {exc}") from None
    conn.row_factory = sqlite3.Row
    conn.text_factory = _text_or_bytes
    return conn


def _open_to_read(where: LogLocation) -> tuple[sqlite3.Connection, tuple[int, int, int] | None]:
    """A connection to read the log: ``(conn, None)``, or ``(conn, stamp)`` for a log in a
    directory this process cannot write.

    A WAL-mode file is read through its ``-shm`` index, which SQLite must be able to create next
    to it: without write access to the directory even a read fails ("attempt to write a readonly
    database", "unable to open database file"). Then, if no ``-wal`` file holds committed entries,
    the log file alone is the whole log and is read ``immutable`` (no locks, no WAL); ``stamp``
    (inode, size, mtime) lets the reader check afterwards that no writer with access changed it
    meanwhile. A ``-wal`` that is not empty may hold entries an immutable read would miss: that is
    an error, never a log shown without them."""
    conn = _connect(where, create=False)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn, None
    except sqlite3.DatabaseError as exc:
        conn.close()
        name = str(getattr(exc, "sqlite_errorname", ""))
        blocked = name == "SQLITE_CANTOPEN" or name.startswith("SQLITE_READONLY")
        real = where.path.resolve()  # a symbolic link's -wal and -shm are beside the file it points to
        if not blocked or os.access(real.parent, os.W_OK):
            raise _sqlite_error(where, exc) from None
    wal = Path(f"{real}-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise where.error(f"cannot read the audit log without write access to {real.parent}: {wal.name} "
                          "may hold entries not yet in the log file, which SQLite reads only through an index it "
                          "must create there (any `rebalance log` run by a user who can write there folds them in)")
    stamp = _file_stamp(where.path)
    return _connect(where, create=False, immutable=True), stamp


def _file_stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _check_schema(where: LogLocation, conn: sqlite3.Connection) -> bool:
    """An existing file must be an intact audit log of this schema (an empty file is a new log);
    False for a file without tables yet (a zero-byte file: no entries), else True.

    What is no audit log at all (another file, an SQLite file of other tables, a newer schema) is
    an InputError (exit 2). An audit log that is not intact is a DamagedLog (exit 4): the file cut
    short or overwritten, its entries table or a column of it gone, the table rebuilt with another
    id column or a column of another type than TEXT (SQLite would convert what is appended, and the
    entry would no longer match its hash), its schema record edited to no schema (``0``, ``one``).
    Every command checks this before reading or writing an entry."""
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = None
        if "meta" in tables:
            r = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            version = r[0] if r else None
        # name -> (cid, name, type, notnull, default, pk)
        columns = {r[1]: tuple(r) for r in conn.execute("PRAGMA table_info(entries)")}
    except sqlite3.DatabaseError as exc:
        raise _sqlite_error(where, exc) from None
    if not tables:
        return False
    missing = [c for c in (*FIELDS, "hash") if c not in columns]
    if version is None:
        if "entries" in tables and not missing:  # the log's own table, its schema record deleted
            raise where.damaged("altered: the log's schema record (table meta) is gone")
        raise where.error("not a rebalance-opt audit log (an SQLite file of other tables)")
    if version != SCHEMA_VERSION:
        if _is_newer_schema(version):
            raise where.error(f"audit log schema {version} is not the supported {SCHEMA_VERSION} (written by a "
                              "newer rebalance-opt)")
        raise where.damaged(f"altered: the log's schema record (table meta) says {version!r}, where "
                            f"rebalance-opt writes {SCHEMA_VERSION!r}")
    if "entries" not in tables:
        raise where.damaged("altered: the log's entries table is gone")
    if missing:
        raise where.damaged(f"altered: the log has no column {', '.join(map(repr, missing))}")
    _, _, id_type, _, _, id_key = columns["id"]
    if str(id_type).upper() != "INTEGER" or id_key != 1:
        raise where.damaged("altered: the entries table was rebuilt, its id no longer the INTEGER PRIMARY KEY "
                            "that keeps every entry id a whole number")
    for name in (*FIELDS, "hash"):
        declared = str(columns[name][2]).upper()
        if name != "id" and declared != "TEXT":
            raise where.damaged(f"altered: the entries table was rebuilt, its column {name} declared "
                                f"{declared or 'without a type'} where the log keeps TEXT (SQLite would convert "
                                "what is appended, and the entry would no longer match its hash)")
    return True


def _is_newer_schema(version: Any) -> bool:
    """Whether a schema record names a later schema than this one (a number above it)."""
    try:
        return isinstance(version, str) and float(version) > float(SCHEMA_VERSION)
    except ValueError:
        return False


def _shown(value: Any) -> Any:
    """A stored value as shown: bytes (a BLOB, or text that is not UTF-8: a tampered row) as text."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _text_or_bytes(raw: bytes) -> str | bytes:
    """SQLite text as str; text that is not UTF-8 (written by hand into a row) stays bytes, which
    no hash matches, instead of failing the whole read ("Could not decode to UTF-8 column")."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def _head_of(where: LogLocation, entry_id: Any, digest: Any) -> tuple[int, str]:
    """The newest entry's (id, hash) as read, if they are an entry's (the chain goes on from it)."""
    if type(entry_id) is not int:
        raise where.damaged(f"altered: the newest entry's id {entry_id!r} is not a whole number")
    if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise where.damaged(f"altered: entry {entry_id}'s hash {_shown(digest)!r:.80} is not a sha256 digest "
                            "(64 hex digits)")
    return entry_id, digest


def _is_corrupt(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.DatabaseError) and str(getattr(exc, "sqlite_errorname", "")).startswith(
        "SQLITE_CORRUPT")


def _sqlite_error(where: LogLocation, exc: sqlite3.DatabaseError, doing: str = "read") -> RebalanceError:
    """An SQLite error on the log as the user's error: a file SQLite finds damaged is a damaged log
    (exit 4: a log cut short, or overwritten); a file that is no database is not a log (exit 2);
    anything else (no access, a read-only file system) says it cannot ``doing`` the log (exit 2)."""
    if _is_corrupt(exc):
        return where.damaged(f"damaged: the file was cut short or overwritten, SQLite reports \"{exc}\"")
    if getattr(exc, "sqlite_errorname", None) == "SQLITE_NOTADB":
        return where.error(f"not a rebalance-opt audit log: {exc}")
    return where.error(f"cannot {doing} the audit log: {exc}")


def _ensure_schema(where: LogLocation, conn: sqlite3.Connection) -> None:
    """WAL mode, full sync, and the tables, created in one transaction if the file is new."""
    try:
        _retry_locked(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone())
        conn.execute("PRAGMA synchronous=FULL")
    except sqlite3.DatabaseError as exc:
        raise _sqlite_error(where, exc, "write") from None
    _check_schema(where, conn)
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'entries'").fetchone():
        return
    _begin_immediate(conn, where)
    try:
        for statement in SCHEMA:
            conn.execute(statement)
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _begin_immediate(conn: sqlite3.Connection, where: LogLocation) -> None:
    try:
        _retry_locked(lambda: conn.execute("BEGIN IMMEDIATE"))
    except sqlite3.OperationalError as exc:
        if not _is_locked(exc):
            raise
        raise RebalanceError(f"{where.path}: the audit log stayed locked by another process for {BUSY_TIMEOUT:g} s "
                             "(another rebalance-opt appending, or a program holding a write transaction open); "
                             "nothing was written: run the command again") from None


def _is_locked(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def _retry_locked(action: Callable[[], Any], attempts: int = 200) -> Any:
    """Run ``action``, retrying while another process holds a lock the busy timeout does not cover
    (SQLite returns "locked" at once in some cases). Each attempt may itself wait the busy timeout,
    so the retries stop once BUSY_TIMEOUT has passed in all: a lock held that long is an error,
    not a wait of attempts × BUSY_TIMEOUT (200 × 60 s)."""
    deadline = time.monotonic() + BUSY_TIMEOUT
    for i in range(attempts):
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if not _is_locked(exc) or i == attempts - 1 or time.monotonic() >= deadline:
                raise
            time.sleep(0.01 + 0.002 * i)
    return None  # pragma: no cover


def _utc_now(now: datetime | None = None) -> str:
    """A time as the log stores it and compares it as text: ``2026-11-24T15:30:00.000000Z``. The
    year has its four digits (``strftime("%Y")`` writes year 999 as ``999``, which sorted after
    ``2026``: ``log --since 0999-01-01`` listed no entry)."""
    t = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return t.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _maybe_crash(point: str) -> None:
    """Test hook: ``REBALANCE_OPT_CRASH_AT=<point>`` kills this process right here with SIGKILL."""
    if os.environ.get(ENV_CRASH) == point:
        kill = getattr(signal, "SIGKILL", None)
        if kill is not None:
            os.kill(os.getpid(), kill)
        os._exit(137)  # pragma: no cover - platforms without SIGKILL
