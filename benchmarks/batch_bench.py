"""The batch benchmark: N distinct household accounts, end to end, local pool and Dask.

The accounts are written to a temporary folder first (not timed). Each engine then runs in a
child process (``python -m benchmarks.batch_bench --child``) exactly as ``rebalance batch``
runs: read and validate every file, plan, one combined csv basket, one audit-log entry per
account in a fresh log (committed inside the timed region).

``--input`` picks the books: ``folder`` (the default) is N distinct households as a folder of
account files; ``parquet`` and ``csv`` are a firm's book of N households on one model portfolio
(``synth.firm_book``) as one account set with a template, and ``firm-folder`` is that same book
as a folder of files, to compare the two inputs on equal books. With a set, reading the table
and the template is inside the timed region, as it is inside ``rebalance batch``. The parent samples the memory of
the child and all its descendants (pool or Dask workers) every 0.1 s: the peak is the largest
sum of their proportional set sizes (PSS: shared pages counted once), or RSS where PSS is not
readable; PSS is read at most once a second per process and scaled by the resident size in
between (``TreeMemory``: reading it ten times a second took 8% of the CPU from the batch).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


INPUTS = ("folder", "firm-folder", "parquet", "csv")


def write_books(folder: Path, n: int, seed: int = 2026) -> list[Path]:
    from benchmarks.synth import households, write_accounts
    return write_accounts(folder, households(n, seed=seed))


def write_input(work: Path, n: int, kind: str = "folder", seed: int = 2026) -> tuple[Path, Path | None]:
    """Write the books of ``kind`` (one of INPUTS) under ``work`` (not timed); returns what
    ``rebalance batch`` is given: (folder or account set, template or None)."""
    if kind == "folder":
        write_books(work / "accounts", n, seed)
        return work / "accounts", None
    from benchmarks.synth import firm_book, write_account_set, write_accounts
    book = firm_book(n, seed=seed)
    if kind == "firm-folder":
        write_accounts(work / "accounts", book.accounts)
        return work / "accounts", None
    if kind not in INPUTS:
        raise ValueError(f"unknown input {kind!r}: one of {', '.join(INPUTS)}")
    return write_account_set(work / "set", book, fmt=kind)


class TreeMemory:
    """The memory in use by a process and its descendants, sampled often without taking the CPU
    the measured batch needs.

    The measure is the sum of proportional set sizes (PSS: pages shared by forked workers counted
    once; RSS where PSS is not readable). PSS is dear to read: the kernel walks every page of the
    process for ``/proc/PID/smaps_rollup``, 4 ms for a 200 MB worker, so reading it for the parent
    and two workers ten times a second took about 8% of a 2-core machine from the batch (3,000
    accounts: 230 against 248 accounts/s read once a second). So each process's PSS is read when
    it is first seen and then at most once every ``PSS_EVERY`` seconds, and every sample in
    between scales its resident size (``statm``, 16 us) by the ratio PSS/RSS last read: a peak
    between two PSS reads is still seen."""

    PSS_EVERY = 1.0

    def __init__(self) -> None:
        self._ratio: dict[int, tuple[float, float]] = {}  # pid -> (PSS/RSS, when read)

    def __call__(self, pid: int) -> int:
        import psutil
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        now, total = time.monotonic(), 0.0
        for p in procs:
            try:
                rss = p.memory_info().rss
                ratio, when = self._ratio.get(p.pid, (1.0, -math.inf))
                if now - when >= self.PSS_EVERY:
                    ratio = self._pss_ratio(p, rss)
                    self._ratio[p.pid] = (ratio, now)
                total += rss * ratio
            except psutil.Error:
                pass
        return int(total)

    @staticmethod
    def _pss_ratio(p: Any, rss: int) -> float:
        import psutil
        try:
            info = p.memory_full_info()
        except psutil.AccessDenied:
            return 1.0
        pss = getattr(info, "pss", None)
        return pss / info.rss if pss is not None and info.rss else 1.0


def tree_memory(pid: int) -> int:
    """Bytes in use by ``pid`` and its descendants now (PSS, else RSS): one reading, read in full."""
    return TreeMemory()(pid)


def run_engine(folder: Path, engine: str, workers: int, work: Path, scheduler: str | None = None,
               template: Path | None = None, resume: bool = False) -> dict[str, Any]:
    """Run one batch (of a folder, or of an account set with its ``template``) in a child
    process; returns its timing and the tree's peak memory. ``resume``: the same batch again with
    ``--resume`` on the log the engine's run wrote (every account already logged)."""
    out = work / f"result-{engine}{'-resume' if resume else ''}.json"
    cmd = [sys.executable, "-m", "benchmarks.batch_bench", "--child", str(folder), "--engine", engine,
           "--workers", str(workers), "--work", str(work), "--result", str(out)]
    if scheduler:
        cmd += ["--scheduler", scheduler]
    if template is not None:
        cmd += ["--template", str(template)]
    if resume:
        cmd += ["--resume"]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    peak, memory = 0, TreeMemory()
    while proc.poll() is None:
        peak = max(peak, memory(proc.pid))
        time.sleep(0.1)
    if proc.returncode != 0:
        raise RuntimeError(f"batch child failed with exit code {proc.returncode}")
    result = json.loads(out.read_text())
    result["peak_memory_mb"] = peak / 2 ** 20
    return result


def run(n: int, workers: int = 2, engines: tuple[str, ...] = ("local", "dask"),
        input: str = "folder") -> list[dict[str, Any]]:
    """Write ``n`` accounts as ``input`` (one of INPUTS), then time a batch per engine."""
    with tempfile.TemporaryDirectory(prefix="rebalance-batch-bench-") as tmp:
        work = Path(tmp)
        accounts, template = write_input(work, n, input)
        rows = [run_engine(accounts, engine, workers, work, template=template) for engine in engines]
        if "local" in engines:  # finishing a batch that was all logged: reads and looks up, plans nothing
            rows.append(run_engine(accounts, "local", workers, work, template=template, resume=True))
        return [{**row, "input": input} for row in rows]


def _child(args: argparse.Namespace) -> None:
    """The timed batch, as ``rebalance batch`` runs it (imports before the clock starts)."""
    from rebalance_opt.account_set import read_account_set
    from rebalance_opt.audit import LogLocation
    from rebalance_opt.batch import account_files, run_batch
    work = Path(args.work)
    log = work / f"audit-{args.engine}.sqlite"
    started = time.perf_counter()
    if args.template:
        accounts = read_account_set(Path(args.folder), Path(args.template))
    else:
        accounts = account_files(Path(args.folder))
    if args.resume:
        outcome = run_batch(accounts, engine=args.engine, workers=args.workers, scheduler=args.scheduler,
                            log=LogLocation(log, "--log"), resume=True)
    else:
        outcome = run_batch(accounts, engine=args.engine, workers=args.workers, scheduler=args.scheduler,
                            log=LogLocation(log, "--log"), out=work / f"basket-{args.engine}.csv", basket_format="csv")
    seconds = time.perf_counter() - started
    s = outcome.summary()
    Path(args.result).write_text(json.dumps({
        "engine": args.engine + (" --resume" if args.resume else ""), "workers": args.workers,
        "already_logged": s["already_logged"], "accounts": s["accounts"], "planned": s["planned"],
        "failed": s["failed"], "orders": s["orders"], "seconds": seconds,
        "accounts_per_second": s["accounts"] / seconds, "log_entries": len(outcome.log_ids),
        "failures": [r.failure() for r in outcome.failures][:20]}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", action="store_true")
    parser.add_argument("folder", nargs="?")
    parser.add_argument("--engine", default="local")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scheduler")
    parser.add_argument("--work")
    parser.add_argument("--result")
    parser.add_argument("--template", help="(child) the template of an account set")
    parser.add_argument("--resume", action="store_true", help="(child) again with --resume on the same log")
    parser.add_argument("--input", choices=INPUTS, default="folder",
                        help="folder: households as files (default); parquet/csv: a firm's book as one account "
                             "set; firm-folder: that book as files")
    parser.add_argument("--engines", default="local,dask", help="comma-separated: local, dask")
    args = parser.parse_args()
    if args.child:
        _child(args)
    else:
        engines = tuple(e for e in args.engines.split(",") if e)
        print(json.dumps(run(int(args.folder or 1000), args.workers, engines, input=args.input), indent=2))
