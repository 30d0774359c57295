"""Plans for many accounts at once: a local process pool or Dask, one basket, one log entry each.

The accounts are a folder's account files or one account set (``account_set``: a CSV or Parquet
table of lots with a template). Work goes out in chunks: of file paths, which the worker reads,
or of a set's accounts, each chunk carrying just its accounts' rows (the parent read the table
once). A worker process keeps one ``Planner`` for its whole life, so its compiled models (one per
size bucket for households, see ``problem``) are reused by every chunk it plans: thousands of
distinct accounts pay cvxpy's compilation a dozen times per worker, not once each. A worker
reads, validates and plans each account, and also renders the account's audit columns (canonical
inputs, their sha256, the plan's JSON columns), which is most of the log's cost, and, for a csv
basket, the plan's basket rows; the parent only chains the hashes and appends them
(``AuditLog.append_many``) and joins the rows.

One bad account fails that account, with its error in the summary, never the batch: every
exception a worker meets while planning an account is caught and returned with it.

The audit log. Without a basket, each chunk's entries are appended in one transaction as soon as
that chunk and every chunk before it are done (entries stay in input order, whatever order the
workers finish in). With a basket (``out``), the basket is staged first and every entry, each
naming the basket, is appended in one transaction before the basket is put in place: as for
``generate``, a crash leaves neither a basket without its entries nor entries without it.
"""
from __future__ import annotations

import asyncio
import gc
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from . import __version__
from .account import Account
from .account_file import account_to_dict, load_account
from .account_set import AccountSet, SetChunk, set_source
from .audit import AuditLog, Entry, LogLocation, canonical_json, inputs_json, record_of, sha256_text
from .errors import InputError, RebalanceError
from .exports import CsvRows, check_account_exportable, csv_rows, refuse_overwrite, stage_basket
from .interrupts import signals_held
from .plan import Plan, check_reason
from .pool import local_pool

FileTask = Sequence[tuple[int, str]]  # (batch index, account file) pairs
Task = FileTask | SetChunk             # what one worker call plans

ACCOUNT_SUFFIXES = (".toml", ".json")
ENGINES = ("local", "dask")
MAX_CHUNK = 64          # accounts per task: large enough to amortize the round trip
CHUNKS_PER_WORKER = 8   # at least this many tasks per worker, for an even finish


# --- what a worker returns ------------------------------------------------------------------------
@dataclass(frozen=True)
class PlanFigures:
    """What the batch's summary adds up of one plan: a plan made in this run, or (``--resume``)
    the one an earlier entry logged, read back from that entry instead of planned again."""

    account: str
    stage: str
    orders: int
    estimated_tax: float
    lot_tax: float
    turnover: float

    @staticmethod
    def of(plan: Plan) -> "PlanFigures":
        return PlanFigures(plan.account, plan.stage, len(plan.orders), plan.tax.estimated_tax, plan.lot_tax,
                           plan.turnover)

    @staticmethod
    def of_entry(entry: Entry) -> "PlanFigures":
        """The figures of the plan ``entry`` logged (``record_of``'s columns: the orders, the tax
        with its lot tax, the rest of the plan with its stage and turnover). ValueError for an
        entry whose columns do not hold them (an altered entry: a string's characters were
        counted as orders, a text tax crashed the batch; a review): its account is planned again."""
        tax, rest, orders, account = entry.field("tax"), entry.field("plan"), entry.field("orders"), entry.field("account")

        def number(table: Any, key: str) -> float:
            value = table.get(key) if isinstance(table, dict) else None
            if type(value) not in (int, float) or not math.isfinite(value):
                raise ValueError(f"entry {entry.id}: no {key}")
            return float(value)
        stage = rest.get("stage") if isinstance(rest, dict) else None
        if not (isinstance(orders, list) and isinstance(stage, str) and isinstance(account, str)):
            raise ValueError(f"entry {entry.id}: no orders, stage or account")
        return PlanFigures(account, stage, len(orders), number(tax, "estimated_tax"), number(tax, "lot_tax"),
                           number(rest, "turnover"))


@dataclass(frozen=True)
class AccountResult:
    """One account's outcome: a plan (with its audit columns) or the error that stopped it."""

    index: int                       # position in the batch's input order
    source: str                      # the account file, or FILE#account=ID for a set's account
    account: str | None = None       # its id, when it could be read
    plan: Plan | None = None
    record: dict[str, str] | None = None  # audit columns (``audit.record_of``), when logging
    basket_rows: CsvRows | None = None    # the plan's csv basket rows, when the basket is csv
    error: str | None = None
    kind: str | None = None          # "input error" | "no feasible plan" | "error"
    exit_code: int | None = None
    path: str | None = None          # the key path of an input error
    seconds: float = 0.0
    constraints: tuple[str, ...] = ()  # no feasible plan: the rules that failed (``Infeasible.constraints``)
    logged_as: int | None = None     # --resume: the entry that already logs these exact inputs
    logged_plan: PlanFigures | None = None  # --resume: that entry's plan, when it was not planned again

    @property
    def ok(self) -> bool:
        return self.plan is not None or self.logged_plan is not None

    @property
    def figures(self) -> PlanFigures | None:
        """The plan's figures, made in this run or read from the entry that logged it."""
        return PlanFigures.of(self.plan) if self.plan is not None else self.logged_plan

    def failure(self) -> dict:
        out = {"source": self.source, "account": self.account, "kind": self.kind, "exit_code": self.exit_code,
               "message": self.error, "path": self.path}
        if self.kind == "no feasible plan":
            out["constraints"] = list(self.constraints)
        return out


@dataclass(frozen=True)
class Resume:
    """``--resume``'s lookup, sent with each chunk to workers that read the batch's own log file
    (a local pool, a LocalCluster the batch starts): the log, and the newest entry before the batch."""

    log: LogLocation
    up_to: int


# One Planner per worker process, kept across chunks and shared by the process's threads (the
# workers of an existing Dask cluster often run several): a solve never writes to a compiled model,
# it applies its numbers to a fresh copy of the program's data (``qp.CompiledQP.apply``).
_PLANNER = None
_PLANNER_LOCK = threading.Lock()
WORKER_GEN0_THRESHOLD = 10_000  # a settled worker's youngest-generation threshold (``_settle_heap``)
_HEAP_SETTLED = False


def _settle_heap() -> None:
    """Once per worker process, after its first chunk: collect, then freeze what is left (the engine's
    modules, the first compiled models) out of the cyclic garbage collector's reach. Those live as
    long as the process, and each full collection re-walked them: in one worker the collector's
    time per account fell from 0.30-0.44 ms to 0.12-0.13 ms. What is made later is collected as
    usual, and reference counting still frees a frozen object nothing refers to. The youngest
    generation is then collected every WORKER_GEN0_THRESHOLD net allocations instead of 700: a
    plan frees almost all it makes by reference counting, so that is a handful of collections per
    thousand accounts instead of ~400 (0.09 -> 0.01 ms per account)."""
    global _HEAP_SETTLED
    if not _HEAP_SETTLED:
        _HEAP_SETTLED = True
        gc.collect()
        gc.freeze()
        gc.set_threshold(WORKER_GEN0_THRESHOLD, *gc.get_threshold()[1:])


def _planner():
    global _PLANNER
    with _PLANNER_LOCK:
        if _PLANNER is None:
            from .problem import ModelCache
            from .solve import Planner
            _PLANNER = Planner(cache=ModelCache(maxsize=256))
        return _PLANNER


def task_accounts(task: Task) -> Iterator[tuple[int, str, str | None, Callable[[], Account]]]:
    """``(index, source, account id if known, build)`` for each account of a task: a file is read
    by ``load_account``, a set's account is built from its rows (``SetChunk.accounts``)."""
    if isinstance(task, SetChunk):
        yield from task.accounts()
        return
    for index, source in task:
        yield index, source, None, partial(load_account, source)


def plan_chunk(task: Task, reason: str | None = None, log: bool = True,
               basket: str | None = None, resume: Resume | None = None) -> list[AccountResult]:
    """Read, validate and plan each account of a task; never raises for one account's fault.
    With ``basket="csv"`` each plan's basket rows are rendered here too (in parallel, where the
    parent would render them all after the last chunk). With ``resume``, an account whose exact
    inputs and reason an entry up to ``resume.up_to`` logs is not planned again: its result
    carries that entry's id and figures (``_logged_before``)."""
    planner = _planner()
    read: list[tuple[int, str, Account, float]] = []  # the chunk's accounts, read and checked
    out: list[AccountResult] = []
    broken: Exception | None = None
    try:
        for index, source, account_id, build in task_accounts(task):
            started = time.perf_counter()
            try:
                account = build()
                if basket is not None:
                    check_account_exportable(basket, account, file=source)
                read.append((index, source, account, time.perf_counter() - started))
            except Exception as exc:  # noqa: BLE001 - one account's fault (or our bug) fails that account
                out.append(_failed(index, source, account_id, exc, time.perf_counter() - started))
    except Exception as exc:  # noqa: BLE001 - reading the chunk itself failed: its accounts fail, not the batch
        broken = exc
    logged = _logged_before(read, reason, resume) if resume is not None else {}
    for index, source, account, seconds in read:
        started = time.perf_counter()
        if index in logged:
            entry_id, figures = logged[index]
            out.append(AccountResult(index, source, account.id, logged_as=entry_id, logged_plan=figures,
                                     seconds=seconds))
            continue
        try:
            plan = planner.plan(account, reason)
            record = record_of(plan.to_dict(), account_to_dict(account)) if log else None
            rows = csv_rows(plan) if basket == "csv" else None
            out.append(AccountResult(index, source, account.id, plan, record, rows,
                                     seconds=seconds + time.perf_counter() - started))
        except Exception as exc:  # noqa: BLE001 - one account's bug must not stop the batch
            out.append(_failed(index, source, account.id, exc, seconds + time.perf_counter() - started))
    if broken is not None:
        done = {r.index for r in out}
        out.extend(AccountResult(index, source, account_id, kind="error", exit_code=1,
                                 error=f"unexpected error reading its chunk: {type(broken).__name__}: {broken}")
                   for index, source, account_id in _members(task) if index not in done)
    out.sort(key=lambda r: r.index)
    return out


def _failed(index: int, source: str, account_id: str | None, exc: Exception, seconds: float) -> AccountResult:
    """The result of an account whose reading or planning raised ``exc``."""
    if isinstance(exc, RebalanceError):
        kind = {2: "input error", 3: "no feasible plan"}.get(exc.exit_code, "error")
        path = exc.path if isinstance(exc, InputError) else None
        return AccountResult(index, source, account_id, error=str(exc), kind=kind, exit_code=exc.exit_code,
                             path=path, seconds=seconds, constraints=getattr(exc, "constraints", ()))
    return AccountResult(index, source, account_id, error=f"unexpected error: {type(exc).__name__}: {exc}",
                         kind="error", exit_code=1, seconds=seconds)


def _logged_before(read: list[tuple[int, str, Account, float]], reason: str | None, resume: Resume
                   ) -> dict[int, tuple[int, PlanFigures]]:
    """The entries (by batch index: their id and figures) that already log these accounts' exact inputs and reason: the
    key ``record_of`` would give each plan (account id, sha256 of the canonical inputs, reason),
    made without planning. An account whose key cannot be made, or a log that cannot be read
    here, is simply planned: the parent still matches every record against the log
    (``_already_logged``), so nothing is logged twice either way."""
    from .solve import rebalance_reason
    keys: dict[int, tuple[str, str, str]] = {}
    for index, _, account, _ in read:
        try:
            keys[index] = (account.id, sha256_text(inputs_json(account_to_dict(account))),
                           rebalance_reason(account, reason))
        except Exception:  # noqa: BLE001 - planning it reports the problem as its own failure
            continue
    try:
        entries = AuditLog(resume.log).logged_entries(keys.values(), resume.up_to)
    except Exception:  # noqa: BLE001 - see above
        return {}
    found = {}
    for index, key in keys.items():
        if key in entries:
            try:
                found[index] = (entries[key].id, PlanFigures.of_entry(entries[key]))
            except ValueError:  # an entry whose columns do not read: plan the account instead
                continue
    return found


def _members(task: Task) -> list[tuple[int, str, str | None]]:
    """``(index, source, account id if known)`` of each account of a task, without reading any."""
    if isinstance(task, SetChunk):
        return [(task.first + k, set_source(task.file, account_id), account_id) for k, account_id in enumerate(task.ids)]
    return [(index, source, None) for index, source in task]


def plan_chunk_in_worker(task: Task, reason: str | None = None, log: bool = True,
                         basket: str | None = None, settle: bool = True,
                         resume: Resume | None = None) -> list[AccountResult]:
    """``plan_chunk`` in a worker process, which then settles its heap (``_settle_heap``) when
    ``settle``: in the local pool and a LocalCluster the batch starts, never in the workers of an
    existing Dask cluster, which outlive the batch and run others' work too."""
    out = plan_chunk(task, reason, log, basket, resume)
    if settle:
        _settle_heap()
    return out


# --- the batch ------------------------------------------------------------------------------------
@dataclass
class BatchResult:
    """Every account's outcome in input order, what was written, and how long it all took."""

    results: list[AccountResult]
    engine: str
    workers: int
    seconds: float
    log: str | None = None
    log_ids: dict[int, int] = field(default_factory=dict)  # result index -> entry id
    basket: dict | None = None

    @property
    def already_logged(self) -> list[AccountResult]:
        """With ``resume``: the accounts whose exact inputs an earlier entry logs."""
        return [r for r in self.results if r.logged_as is not None]

    @property
    def plans(self) -> list[Plan]:
        """The plans made in this run (with ``resume``, an account already logged may have none)."""
        return [r.plan for r in self.results if r.plan is not None]

    @property
    def failures(self) -> list[AccountResult]:
        return [r for r in self.results if not r.ok]

    def summary(self) -> dict:
        """The batch's totals, over every account with a plan: made in this run or, with
        ``resume``, read from the entry that logged it (``planned`` counts both)."""
        figures = [f for f in (r.figures for r in self.results) if f is not None]
        return {
            "accounts": len(self.results), "planned": len(figures), "failed": len(self.failures),
            "already_logged": len(self.already_logged), "orders": sum(f.orders for f in figures),
            "estimated_tax": math.fsum(f.estimated_tax for f in figures),
            "lot_tax": math.fsum(f.lot_tax for f in figures),
            "turnover": math.fsum(f.turnover for f in figures),
            "engine": self.engine, "workers": self.workers, "seconds": self.seconds,
            "accounts_per_second": len(self.results) / self.seconds if self.seconds > 0 else None,
            "log": self.log, "basket": self.basket, "duplicate_accounts": self.duplicate_accounts(),
        }

    def duplicate_accounts(self) -> dict[str, list[str]]:
        """Account ids planned from more than one source, with those sources: each is planned and
        logged, and its orders all go in the one basket, so the summary says so."""
        sources: dict[str, list[str]] = {}
        for r in self.results:
            if r.ok:
                sources.setdefault(r.figures.account, []).append(r.source)
        return {account: found for account, found in sources.items() if len(found) > 1}

    def to_dict(self) -> dict:
        out = {**self.summary(), "failures": [r.failure() for r in self.failures], "plans": []}
        for r in self.results:
            if (f := r.figures) is not None:
                out["plans"].append({"account": f.account, "source": r.source, "stage": f.stage, "orders": f.orders,
                                     "estimated_tax": f.estimated_tax, "log_id": self.log_ids.get(r.index, r.logged_as),
                                     "already_logged": r.logged_as is not None})
        return out


def account_files(folder: Path) -> list[Path]:
    """The account files (``.toml``, ``.json``) directly in ``folder``, sorted by name. Anything
    else named like one is listed too (a broken symbolic link, a folder, a pipe): it fails as its
    own account (its error in the summary, like any unreadable file) rather than being skipped
    silently. Hidden files (a name starting with ".": editors' and macOS's ``._x.toml``
    companions) are no accounts."""
    if not folder.exists():
        raise InputError("no such folder", path="ACCOUNTS", value=str(folder), has_value=True)
    if not folder.is_dir():
        raise InputError("must be a folder of account files (.toml or .json)", path="ACCOUNTS",
                         value=str(folder), has_value=True)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in ACCOUNT_SUFFIXES and not p.name.startswith("."))
    if not files:
        raise InputError("holds no account files (.toml or .json)", path="ACCOUNTS", value=str(folder),
                         has_value=True)
    return files


def chunk_size(accounts: int, workers: int, chunk: int | None = None) -> int:
    """Accounts per task: ``chunk`` if given, else at least CHUNKS_PER_WORKER tasks per worker
    and at most MAX_CHUNK accounts each."""
    return chunk or max(1, min(MAX_CHUNK, math.ceil(accounts / (workers * CHUNKS_PER_WORKER))))


def chunked(files: Sequence[Path], workers: int, chunk: int | None = None) -> list[list[tuple[int, str]]]:
    """Split a folder's files into tasks of ``chunk_size`` accounts."""
    size = chunk_size(len(files), workers, chunk)
    items = [(i, str(f)) for i, f in enumerate(files)]
    return [items[i: i + size] for i in range(0, len(items), size)]


def make_tasks(accounts: Sequence[Path] | AccountSet, workers: int, chunk: int | None = None) -> list[Task]:
    """The batch's tasks: chunks of file paths, or chunks of a set's accounts with their rows."""
    if isinstance(accounts, AccountSet):
        return list(accounts.chunks(chunk_size(len(accounts), workers, chunk)))
    return list(chunked(accounts, workers, chunk))


def check_engine(engine: str, scheduler: str | None, workers: int | None, chunk: int | None = None) -> None:
    """The engine options fit together: ``scheduler`` only with Dask, ``workers`` only for a pool
    or cluster the batch starts itself (an existing cluster's workers are its own); ``workers``
    and ``chunk`` whole numbers from 1 (a library call's 0 or -1 was taken as the default)."""
    if engine not in ENGINES:
        raise InputError(f"must be one of {', '.join(ENGINES)}", path="--engine", value=engine, has_value=True)
    if scheduler is not None and engine != "dask":
        raise InputError("is for --engine dask", path="--scheduler", value=scheduler, has_value=True)
    for name, value in (("--workers", workers), ("--chunk", chunk)):
        if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            raise InputError("must be a whole number >= 1", path=name, value=value, has_value=True)
    if scheduler is not None and workers is not None:
        raise InputError("sizes the local pool or the LocalCluster a batch starts; the cluster at --scheduler "
                         "has its own workers", path="--workers", value=workers, has_value=True)


def run_batch(accounts: Sequence[Path] | AccountSet | str | os.PathLike, *, engine: str = "local",
              workers: int | None = None, scheduler: str | None = None,
              log: LogLocation | str | os.PathLike | None = None, out: str | os.PathLike | None = None,
              basket_format: str | None = None, reason: str | None = None, chunk: int | None = None,
              progress: Callable[[int], None] | None = None, resume: bool = False) -> BatchResult:
    """Plan every account (a folder's files, the folder itself, or an ``AccountSet`` read by
    ``read_account_set``); append one audit entry per plan to ``log`` (a ``LogLocation`` or a
    path; None: a dry run) and write one basket of every
    plan to ``out`` (nothing when no account was planned: a file already there is left as it was).
    ``progress`` is called with the number of accounts each finished chunk held.

    ``resume``: finish a batch that was interrupted. An account whose exact inputs and reason
    (its id, the sha256 of its validated inputs and the reason, as its entry stores them) already
    have an entry in ``log`` is planned but not logged again (``AccountResult.logged_as`` names
    that entry); the rest are logged as usual. Only for a batch logged chunk by chunk: with
    ``out`` the log and the basket are written together at the end, so an interrupted batch left
    nothing to resume."""
    check_engine(engine, scheduler, workers, chunk)
    if reason is not None:  # once, not as every account's failure
        reason = check_reason(reason, "reason")
    accounts, log, out = _arguments(accounts, log, out)
    resume_up_to = _resumable(log, out) if resume else None
    workers = max(1, min(workers or default_workers(), len(accounts)))  # no idle processes to start
    started = time.perf_counter()
    sink = _LogSink(log, deferred=out is not None) if log is not None else None
    results: list[AccountResult] = []
    fmt = (basket_format or "csv") if out is not None else None

    def every_one_logged() -> bool:  # a signal as the last chunk was committed (without --out)
        return len(results) == len(accounts) and sink is not None and not sink.pending and not sink.deferred

    with ExitStack() as stack, _results_frozen() as freeze, _interruption_counted(results, sink, every_one_logged):
        # Workers look up what is already logged themselves where they read this very log file:
        # a local pool, or the LocalCluster the batch starts (an existing cluster's workers may
        # run elsewhere and see another file, or none, at that path).
        ahead = Resume(log, resume_up_to) if resume_up_to and scheduler is None else None
        # The chunks' generator is closed on the way out, whatever ends the batch: left suspended
        # (by Ctrl-C as this loop logged a chunk), its pool lived on and the process hung at exit.
        if engine == "local":
            chunks = stack.enter_context(closing(
                _run_local(make_tasks(accounts, workers, chunk), workers, reason, log is not None, fmt, ahead)))
        else:
            client, workers, settle = stack.enter_context(_dask_client(workers, scheduler, accounts))
            chunks = stack.enter_context(closing(
                _run_dask(client, make_tasks(accounts, workers, chunk), settle, reason, log is not None, fmt, ahead)))
        for batch in _in_order(chunks):
            if resume_up_to:
                batch = _already_logged(batch, log, resume_up_to)
            results.extend(batch)
            if sink is not None:
                sink.add(batch)
            if progress is not None:
                progress(len(batch))
            freeze()
    outcome = BatchResult(results, engine, workers, 0.0, log=str(log.path) if log is not None else None)
    staged = None
    if out is not None and outcome.plans:  # every account failed: no basket, an existing file kept as it is
        rows = [r.basket_rows for r in results if r.plan is not None] if fmt == "csv" else None
        staged = stage_basket(outcome.plans, out, fmt, rows=rows)
        outcome.basket = staged.to_dict()
    written = False
    try:
        # the log's entries and the basket land together, or neither; a signal in between is
        # reported once both are in place
        with _interruption_counted(results, sink, lambda: written), signals_held():
            if sink is not None:
                outcome.log_ids = sink.flush(outcome.basket)
            if staged is not None:
                staged.commit()
            written = True
    finally:
        if staged is not None:
            staged.discard()
    outcome.seconds = time.perf_counter() - started
    return outcome


def _arguments(accounts: Sequence[Path] | AccountSet | str | os.PathLike, log: LogLocation | str | os.PathLike | None,
               out: str | os.PathLike | None) -> tuple[Sequence[Path] | AccountSet, LogLocation | None, Path | None]:
    """``run_batch``'s inputs as it works with them: a folder (or its path as text) is its account
    files, a log path its ``LogLocation``, ``out`` a Path; and the basket refused where it would
    replace an account file, the set or its template, or the log (the command line checks the
    same first, with the account folder). Called from the library, a basket written over the
    batch's own audit log destroyed every entry (a review)."""
    if isinstance(accounts, (str, os.PathLike)):
        accounts = account_files(Path(accounts))
    if isinstance(log, (str, os.PathLike)):
        log = LogLocation(Path(log), "log")
    if out is not None:
        out = Path(out)
        if isinstance(accounts, AccountSet):
            read = [(Path(accounts.file), "the account set"), (Path(accounts.template_file), "the template")]
        else:
            read = [(Path(f), "an account file of the batch") for f in accounts]
        refuse_overwrite(out, read + (log.files() if log is not None else []))
    return accounts, log, out


def _resumable(log: LogLocation | None, out: Path | None) -> int:
    """The newest entry of ``log`` before the batch (what ``resume`` looks up to: entries this
    batch appends are its own); a resume that cannot work is an InputError."""
    if log is None:
        raise InputError("needs the audit log: a dry run records nothing to resume from", path="--resume")
    if out is not None:
        raise InputError("is for a batch logged chunk by chunk: with --out an interrupted batch logged "
                         "nothing and wrote no basket, so run it again as it was", path="--resume")
    return AuditLog(log).head()[0]


def _already_logged(batch: list[AccountResult], log: LogLocation, up_to: int) -> list[AccountResult]:
    """The chunk's results, without their audit columns where an entry up to ``up_to`` already
    logs their exact inputs and reason (``logged_as`` names it)."""
    def key(r: AccountResult) -> tuple[str, str, str]:
        return r.record["account"], r.record["inputs_sha256"], r.record["reason"]
    logged = AuditLog(log).logged_inputs((key(r) for r in batch if r.record is not None), up_to)
    return [r if r.record is None or key(r) not in logged else replace(r, record=None, logged_as=logged[key(r)])
            for r in batch]


@contextmanager
def _interruption_counted(results: list[AccountResult], sink: "_LogSink | None",
                          finished: Callable[[], bool] = lambda: False):
    """On Ctrl-C (or SIGTERM, which the CLI turns into one), the interruption says how far the
    batch got: ``planned`` (accounts with a plan so far), ``logged`` (entries committed to the
    audit log: without ``--out`` each chunk's are committed as they come, with it none until the
    end), ``already_logged`` (``resume``: accounts an earlier run logged) and ``finished`` (the signal came as the last entries and the basket were written: all are)."""
    try:
        yield
    except KeyboardInterrupt as exc:
        exc.planned = sum(r.ok for r in results)
        exc.logged = len(sink.ids) if sink is not None else 0
        exc.already_logged = sum(r.logged_as is not None for r in results)
        exc.finished = finished()
        raise


@contextmanager
def _results_frozen():
    """``freeze()`` moves every object so far (the results) out of the cyclic garbage collector's
    reach until the block ends. The results (plans: thousands of small objects per chunk, none in
    cycles) only grow, so each full collection re-walked every result so far for nothing: 1.2 s
    of this process's CPU per 5,000 accounts, on the 2 cores the workers need. The collector
    stays on for what is new (Dask's client makes cyclic garbage in this process). A caller that
    had frozen its own heap (``gc.freeze()`` before forking, say) finds it frozen again after
    (with what the batch made since: it cannot be told apart); it was left unfrozen (a review)."""
    frozen_before = gc.get_freeze_count()
    try:
        yield gc.freeze
    finally:
        gc.unfreeze()
        if frozen_before:
            gc.freeze()


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _in_order(chunks: Iterable[list[AccountResult]]) -> Iterator[list[AccountResult]]:
    """Re-order finished chunks into input order (a chunk is released once all before it are)."""
    waiting: dict[int, list[AccountResult]] = {}
    expected = 0
    for batch in chunks:
        if not batch:
            continue
        waiting[batch[0].index] = batch
        while expected in waiting:
            ready = waiting.pop(expected)
            expected = ready[-1].index + 1
            yield ready
    for key in sorted(waiting):  # pragma: no cover - only if a chunk came back empty
        yield waiting[key]


POOL_RETRIES = 2  # times the chunks left are resubmitted to a new pool after a pool process is lost


def _run_local(tasks, workers, reason, log, basket, resume=None) -> Iterator[list[AccountResult]]:
    """Each chunk as it finishes, from a local process pool. A pool process that dies (the OOM
    killer, ``kill -9``) breaks the whole pool: every chunk not yet returned fails with it, though
    only one was in the dead process. So the chunks left are resubmitted to a new pool, up to
    POOL_RETRIES times (a worker killed once costs nothing); after that the rest run a window of
    ``workers`` chunks at a time, and a window whose pool breaks is run again one chunk at a time,
    so only a chunk that loses its process on its own fails, as ``not planned``."""
    if workers == 1:  # no pool: plan in this process (same code path, no pickling)
        for t in tasks:
            yield plan_chunk(t, reason, log, basket, resume)
        return
    # The engine (cvxpy, Clarabel: 1.4 s of CPU to import) is imported here once, before the pool
    # forks, so forked workers start with it instead of each importing it again.
    from . import solve  # noqa: F401
    gc.freeze()  # and the workers inherit it outside the collector's walks (as ``gc.freeze`` advises before a fork)
    left = list(tasks)
    for _ in range(POOL_RETRIES + 1):
        done = yield from _pooled(left, workers, reason, log, basket, resume)
        left = [t for k, t in enumerate(left) if k not in done]
        if not left:
            return
    for start in range(0, len(left), workers):  # the pool broke every time: find the chunk that breaks it
        window = left[start: start + workers]
        done = yield from _pooled(window, workers, reason, log, basket, resume)
        for k, task in enumerate(window):
            if k not in done and not (yield from _pooled([task], 1, reason, log, basket, resume)):
                yield lost_chunk(task, "the worker process planning it was lost, each time it was tried "
                                       f"({POOL_RETRIES + 2} times)")


def _pooled(tasks, workers, reason, log, basket, resume=None):
    """Run ``tasks`` in a new pool of ``workers`` processes, yielding each finished chunk; returns
    the positions of the tasks that finished (all of them unless a pool process was lost)."""
    done: set[int] = set()
    if not tasks:
        return done
    with local_pool(min(workers, len(tasks))) as pool:
        futures = {pool.submit(plan_chunk_in_worker, t, reason, log, basket, resume=resume): k
                   for k, t in enumerate(tasks)}
        for f in as_completed(futures):
            try:
                result = f.result()
            except BrokenProcessPool:
                continue  # this and every chunk still waiting: resubmitted by the caller
            except Exception as exc:  # noqa: BLE001 - the chunk's result could not come back (unpicklable)
                result = lost_chunk(tasks[futures[f]], f"its result could not be returned ({type(exc).__name__}: {exc})")
            done.add(futures[f])
            yield result
    return done


def _ctrl_c_ignored() -> None:
    """Run on each worker of the LocalCluster a batch starts (in its main thread): Ctrl-C at a
    terminal reaches every process of the group, and each Dask worker printed a KeyboardInterrupt
    traceback under the batch's message. The batch alone handles it, and closes the cluster; the
    warning each worker then logs for every chunk it was planning ("Async instruction for <Task
    cancelled ...>") is left out too."""
    import logging
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("distributed.worker.state_machine").setLevel(logging.ERROR)


@contextmanager
def _process_state_kept():
    """Restore the environment and multiprocessing's start method once the LocalCluster is closed:
    Dask's worker processes are started with OMP_NUM_THREADS=1 (and its kind) written into this
    process's own ``os.environ``, and the start method set to fork, so a notebook's later
    subprocesses ran single-threaded BLAS (a review)."""
    import multiprocessing
    environ, method = dict(os.environ), multiprocessing.get_start_method(allow_none=True)
    try:
        yield
    finally:
        for key in set(os.environ) - set(environ):
            del os.environ[key]
        os.environ.update({k: v for k, v in environ.items() if os.environ.get(k) != v})
        if multiprocessing.get_start_method(allow_none=True) != method:
            multiprocessing.set_start_method(method, force=True)


@contextmanager
def _dask_client(workers: int, scheduler: str | None, accounts: Sequence[Path] | AccountSet
                 ) -> Iterator[tuple[Any, int, bool]]:
    """A Dask client, how many tasks its cluster runs at once, and whether its workers may settle
    their heap (``plan_chunk_in_worker``): a LocalCluster of ``workers`` processes that the batch
    starts and closes, or the existing cluster at ``scheduler`` once ``cluster_problem`` finds
    nothing wrong with its workers."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover - dask is a dependency
        raise InputError("needs dask[distributed] installed", path="--engine", value="dask", has_value=True) from None
    import dask
    if scheduler is None:
        with _process_state_kept():
            # The workers' statistical profiler samples every thread's stack every 10 ms: measurable
            # CPU on a 2-core machine for a profile nobody reads here.
            with dask.config.set({"distributed.worker.profile.enabled": False}):
                # The scheduler's HTTP server starts even without a dashboard, on 8787 unless told:
                # a port another batch (or anything) held printed "Port 8787 is already in use".
                cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                       dashboard_address=":0", scheduler_kwargs={"dashboard": False})
            with cluster, Client(cluster) as client:
                client.run(_ctrl_c_ignored)  # before any chunk is sent
                yield client, workers, True
        return
    try:
        not_a_scheduler = _not_a_scheduler(scheduler)
        if not not_a_scheduler:
            client = Client(scheduler, timeout=f"{SCHEDULER_TIMEOUT:g}s")
    except (OSError, ValueError, TypeError) as exc:  # no answer; or no address ("abc", "tcp://", "http://…")
        raise InputError(f"cannot reach the Dask scheduler: {exc}", path="--scheduler", value=scheduler,
                         has_value=True) from None
    if not_a_scheduler:
        raise InputError(not_a_scheduler, path="--scheduler", value=scheduler, has_value=True)
    with client:
        # A folder's chunks carry file paths, which the workers open; a set's chunks carry rows.
        probe = None if isinstance(accounts, AccountSet) else str(Path(accounts[0]).resolve())
        facts = client.run(_worker_facts(probe)) if client.scheduler_info()["workers"] else {}
        problem = cluster_problem(facts, __version__, probe)
        if problem:
            raise InputError(problem, path="--scheduler", value=scheduler, has_value=True)
        threads = sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values())
        yield client, max(1, threads), False


SCHEDULER_TIMEOUT = 10.0  # seconds for the address at --scheduler to connect (Client's timeout too)
ANSWER_TIMEOUT = SCHEDULER_TIMEOUT + 5  # ... and to have answered as a scheduler


def _not_a_scheduler(address: str) -> str | None:
    """Why ``address`` is not a Dask scheduler, or None when one answers there within
    ANSWER_TIMEOUT. ``Client``'s timeout covers the connection only: at an address that accepts
    and then says nothing a scheduler would (an HTTP server, the dashboard's port) it waited
    forever, and at one that greets with something else (an SSH server) it read the greeting as a
    frame length and failed with MemoryError (exit 1). Asked here on a thread of its own, with its
    own event loop (the caller may run one: a notebook), and given up after the timeout however
    the other end behaves. Connection errors are raised (OSError, ValueError, TypeError), for the
    caller's "cannot reach"."""
    import queue

    async def identity():
        from distributed.comm import connect
        comm = await connect(address, timeout=SCHEDULER_TIMEOUT)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    def ask(out: queue.Queue) -> None:
        try:
            out.put(("reply", asyncio.run(asyncio.wait_for(identity(), ANSWER_TIMEOUT))))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, whatever it is
            out.put(("error", exc))

    answer: queue.Queue = queue.Queue()
    threading.Thread(target=ask, args=(answer,), daemon=True, name="dask-scheduler-probe").start()
    hint = " (is it the dashboard's port? a scheduler listens on 8786 unless told otherwise)"
    try:
        kind, value = answer.get(timeout=ANSWER_TIMEOUT + 5)
    except queue.Empty:
        return f"did not answer as a Dask scheduler within {ANSWER_TIMEOUT:g} s{hint}"
    if kind == "error":
        if isinstance(value, (OSError, ValueError, TypeError)) and not isinstance(value, asyncio.TimeoutError):
            raise value
        if isinstance(value, asyncio.TimeoutError):
            return f"did not answer as a Dask scheduler within {ANSWER_TIMEOUT:g} s{hint}"
        return f"did not answer as a Dask scheduler ({type(value).__name__}){hint}"
    if not (isinstance(value, dict) and value.get("type") == "Scheduler"):
        return f"answered, but not as a Dask scheduler{hint}"
    return None


def _worker_facts(path: str | None) -> Callable[[], dict]:
    """What ``cluster_problem`` needs from one worker. A closure, so Dask sends it by value: a
    worker without this package can still run it and say so."""
    def facts() -> dict:
        import os as _os
        try:
            import rebalance_opt
            version, error = rebalance_opt.__version__, None
        except Exception as exc:  # noqa: BLE001 - reported, whatever stops the import
            version, error = None, f"{type(exc).__name__}: {exc}"
        return {"version": version, "error": error, "readable": path is None or _os.access(path, _os.R_OK)}
    return facts


def cluster_problem(facts: dict[str, dict], version: str, probe: str | None) -> str | None:
    """Why an existing cluster cannot plan this batch (None: it can), from each worker's
    ``_worker_facts``: no workers (the work would wait forever), workers without this package
    or with another version of it (plans must not depend on which worker made them), or workers
    that cannot read the folder's first account file (a folder is read by path on the workers)."""
    if not facts:
        return "the Dask cluster has no workers: start some, or leave out --scheduler for a LocalCluster"
    n = len(facts)
    missing = sorted(w for w, f in facts.items() if f["version"] is None)
    if missing:
        return (f"{len(missing)} of {n} workers cannot import rebalance_opt ({facts[missing[0]]['error']}): "
                f"install rebalance-opt {version} where the workers run")
    other = sorted({f["version"] for f in facts.values()} - {version})
    if other:
        return (f"the workers run rebalance-opt {', '.join(other)}, this is {version}: "
                f"install the same version where the workers run")
    blind = sorted(w for w, f in facts.items() if not f["readable"])
    if blind:
        return (f"{len(blind)} of {n} workers cannot read {probe}: a folder's account files are read by "
                f"their path on the workers, so they need it on a file system they share; an account set "
                f"(--template) carries its rows with the work instead")
    return None


def lost_chunk(task: Task, why: str) -> list[AccountResult]:
    """Every account of a task its worker never returned, as a failure saying ``why`` (the batch
    goes on: the others are planned and logged, exit 5)."""
    return [AccountResult(index, source, account_id, error=f"not planned: {why}", kind="error", exit_code=1)
            for index, source, account_id, _ in task_accounts(task)]


NO_WORKERS_WAIT = 60.0  # seconds a batch waits for an existing cluster that has lost every worker
FETCH_WAIT = 5.0        # seconds to fetch one finished chunk before asking again whether any worker is left
_POLL = 2.0


def _run_dask(client, tasks, settle, reason, log, basket, resume=None) -> Iterator[list[AccountResult]]:
    """Each chunk as it finishes. A chunk whose workers died (``KilledWorker``) or that failed on the
    worker is a failure of its accounts; if the cluster has had no workers for NO_WORKERS_WAIT
    seconds, every chunk still waiting is one too (the work would otherwise wait forever). A
    finished chunk's result still lives on its worker, and fetching it from a worker that is gone
    waits for a recomputation: each fetch waits FETCH_WAIT at most and is tried again after the
    next look at the workers (one fetch that waited NO_WORKERS_WAIT kept the batch from looking,
    so it gave up after twice that)."""
    from dask.distributed import as_completed as dask_completed
    futures = client.map(plan_chunk_in_worker, tasks, reason=reason, log=log, basket=basket, settle=settle,
                         resume=resume, pure=False)
    remaining = {f.key: t for f, t in zip(futures, tasks)}  # the chunks not yet returned
    finished = dask_completed(futures)
    checked, without_workers = time.monotonic(), None
    while not finished.is_empty():
        if time.monotonic() - checked >= _POLL:  # now and then: is any worker left?
            checked = time.monotonic()
            if client.scheduler_info().get("workers"):
                without_workers = None
            elif without_workers is None:
                without_workers = checked
            elif checked - without_workers >= NO_WORKERS_WAIT:
                client.cancel([f for f in futures if f.key in remaining])
                why = f"the Dask cluster had no workers for {NO_WORKERS_WAIT:g} s (they died or were stopped)"
                for task in remaining.values():
                    yield lost_chunk(task, why)
                return
        ready = finished.next_batch(block=False)
        if not ready:
            time.sleep(0.02)
            continue
        for f in ready:
            if f.status not in ("finished", "error", "cancelled") or (without_workers is not None and f.status == "finished"):
                # Handed back to the scheduler (its worker was lost), or held by a worker while
                # none is left: still waiting, and ``result()`` would block while no worker runs it.
                finished.add(f)
                continue
            task = remaining[f.key]
            try:
                result = f.result(timeout=FETCH_WAIT)
            except TimeoutError:  # its worker is gone: look at the workers, then try again
                finished.add(f)
                continue
            except (Exception, asyncio.CancelledError) as exc:  # noqa: BLE001 - KilledWorker, lost data
                what = f"{type(exc).__name__}: {str(exc)[:300]}"
                result = lost_chunk(task, f"the Dask worker planning it was lost ({what})")
            del remaining[f.key]
            f.release()
            yield result
        if ready and all(f.key in remaining for f in ready):  # every one put back: do not spin
            time.sleep(0.02)


# --- the audit log, in transactions of many entries ----------------------------------------------
class _LogSink:
    """Appends the batch's entries to the hash chain: per chunk, or all at once (``deferred``)."""

    def __init__(self, where: LogLocation, deferred: bool):
        self.where = where
        self.deferred = deferred
        self.pending: list[AccountResult] = []
        self.ids: dict[int, int] = {}

    def add(self, batch: list[AccountResult]) -> None:
        self.pending.extend(r for r in batch if r.record is not None)
        if not self.deferred:
            self.flush(None)

    def flush(self, basket: dict | None) -> dict[int, int]:
        if self.pending:
            basket_text = canonical_json(basket) if basket is not None else None
            rows = [{**r.record, "basket": basket_text} if basket_text else r.record for r in self.pending]
            with signals_held():  # committed and counted together
                ids = AuditLog(self.where).append_many(rows)
                self.ids.update({r.index: i for r, i in zip(self.pending, ids)})
                self.pending = []
        return self.ids

