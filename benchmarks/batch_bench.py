"""The batch benchmark: N distinct household accounts, end to end, local pool and Dask.

The accounts are written to a temporary folder first (not timed). Each engine then runs in a
child process (``python -m benchmarks.batch_bench --child``) exactly as ``rebalance batch``
runs: read and validate every file, plan, one combined csv basket, one audit-log entry per
account in a fresh log (committed inside the timed region). The parent samples the memory of
the child and all its descendants (pool or Dask workers) every 0.1 s: the peak is the largest
sum of their proportional set sizes (PSS: shared pages counted once), or RSS where PSS is not
readable.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def write_books(folder: Path, n: int, seed: int = 2026) -> list[Path]:
    from benchmarks.synth import households, write_accounts
    return write_accounts(folder, households(n, seed=seed))


def tree_memory(pid: int) -> int:
    """Bytes in use by ``pid`` and its descendants (PSS, else RSS)."""
    import psutil
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            info = p.memory_full_info()
            total += getattr(info, "pss", info.rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
    return total


def run_engine(folder: Path, engine: str, workers: int, work: Path, scheduler: str | None = None) -> dict[str, Any]:
    """Run one batch in a child process; returns its timing and the tree's peak memory."""
    out = work / f"result-{engine}.json"
    cmd = [sys.executable, "-m", "benchmarks.batch_bench", "--child", str(folder), "--engine", engine,
           "--workers", str(workers), "--work", str(work), "--result", str(out)]
    if scheduler:
        cmd += ["--scheduler", scheduler]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_memory(proc.pid))
        time.sleep(0.1)
    if proc.returncode != 0:
        raise RuntimeError(f"batch child failed with exit code {proc.returncode}")
    result = json.loads(out.read_text())
    result["peak_memory_mb"] = peak / 2 ** 20
    return result


def run(n: int, workers: int = 2, engines: tuple[str, ...] = ("local", "dask")) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="rebalance-batch-bench-") as tmp:
        work = Path(tmp)
        folder = work / "accounts"
        write_books(folder, n)
        return [run_engine(folder, engine, workers, work) for engine in engines]


def _child(args: argparse.Namespace) -> None:
    """The timed batch, as ``rebalance batch`` runs it (imports before the clock starts)."""
    from rebalance_opt.audit import LogLocation
    from rebalance_opt.batch import account_files, run_batch
    work = Path(args.work)
    log = work / f"audit-{args.engine}.sqlite"
    started = time.perf_counter()
    files = account_files(Path(args.folder))
    outcome = run_batch(files, engine=args.engine, workers=args.workers, scheduler=args.scheduler,
                        log=LogLocation(log, "--log"), out=work / f"basket-{args.engine}.csv", basket_format="csv")
    seconds = time.perf_counter() - started
    s = outcome.summary()
    Path(args.result).write_text(json.dumps({
        "engine": args.engine, "workers": args.workers, "accounts": s["accounts"], "planned": s["planned"],
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
    args = parser.parse_args()
    if args.child:
        _child(args)
    else:
        print(json.dumps(run(int(args.folder or 1000), args.workers), indent=2))
