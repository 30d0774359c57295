"""Run every benchmark and print the tables: ``.venv/bin/python -m benchmarks.run``.

    python -m benchmarks.run                 # the full run (sizes, lots sweep, 10,000-account batch)
    python -m benchmarks.run --quick         # small sizes and a 300-account batch (a smoke run)
    python -m benchmarks.run --json out.json # also write every number measured

Each size runs in a fresh process (spawned, so nothing compiled or allocated carries over); all
ratios are measured in the same run on the same machine. See ``engine_bench`` for what each
column times and how accuracy is matched, ``batch_bench`` for the batch.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

SIZES: dict[str, tuple[str, tuple]] = {
    # name: (generator, arguments)
    "household 10x5": ("sized_household", (0, 10, 5)),
    "large household 50x10": ("sized_household", (0, 50, 10)),
    "direct index 500x10 (10 factors)": ("direct_index", (0, 500, 10, 10)),
    "big direct index 2000x5 (10 factors)": ("direct_index", (0, 2000, 5, 10)),
}
QUICK_SIZES = {"household 10x5": ("sized_household", (0, 10, 5)),
               "direct index 60x4 (3 factors)": ("direct_index", (0, 60, 4, 3))}
SMALL_SIZES = ("household 10x5",)
SMALL_FACTOR = 5
LOTS = (100, 1_000, 5_000, 10_000, 50_000)
QUICK_LOTS = (100, 400)


def _engine(name: str, generator: str, args: tuple, repeats: int) -> dict[str, Any]:
    from benchmarks import engine_bench, synth
    return engine_bench.measure_engine(name, getattr(synth, generator)(*args), repeats)


def _baselines(generator: str, args: tuple, repeats: int, naive_plans: int) -> dict[str, Any]:
    from benchmarks import engine_bench, synth
    return engine_bench.measure_baselines(getattr(synth, generator)(*args), repeats, naive_plans=naive_plans)


def _measure_size(name: str, generator: str, args: tuple, repeats: int, naive_plans: int) -> dict[str, Any]:
    """The engine and the baselines in separate fresh processes (so the engine's memory is its own)."""
    from benchmarks import engine_bench
    engine = in_fresh_process(_engine, name, generator, args, repeats)
    return engine_bench.combine(engine, in_fresh_process(_baselines, generator, args, repeats, naive_plans))


def _measure_lots(n: int, repeats: int) -> dict[str, Any]:
    from benchmarks import engine_bench
    return engine_bench.measure_lots(n, repeats)


def in_fresh_process(fn: Callable, *args) -> Any:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def machine() -> str:
    import clarabel
    import cvxpy
    import numpy
    import osqp
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30 if hasattr(os, "sysconf") else 0
    return (f"{cpu}, {len(os.sched_getaffinity(0))} cores, {mem:.0f} GiB; Python {platform.python_version()}, "
            f"cvxpy {cvxpy.__version__}, Clarabel {clarabel.__version__}, OSQP {osqp.__version__}, "
            f"NumPy {numpy.__version__}; load average at start {os.getloadavg()[0]:.2f}")


def ms(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x * 1e3:,.1f}" if x < 10 else f"{x:,.1f} s"


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:,.1f}x" if a and b else "—"


def size_table(rows: list[dict[str, Any]]) -> str:
    head = ("| size | lots | engine plan ms (first) | naive plan ms | **plan speed-up** | engine QP ms | naive QP ms "
            "| **QP speed-up** | raw OSQP warm ms | raw Clarabel ms | engine QP / raw Clarabel | engine QP / raw OSQP "
            "| solves/plan | solve ms/plan | OSQP eps (naive, raw) | rel. error (engine, naive, raw OSQP) | engine peak MB |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['lots']:,} | {ms(r['engine_plan_s'])} ({ms(r['engine_first_s'])}) "
            f"| {ms(r.get('naive_plan_s'))} | **{ratio(r.get('naive_plan_s'), r['engine_plan_s'])}** "
            f"| {ms(r['engine_qp_s'])} | {ms(r.get('naive_qp_s'))} | **{ratio(r.get('naive_qp_s'), r['engine_qp_s'])}** "
            f"| {ms(r['raw_osqp_s'])} | {ms(r['raw_clarabel_s'])} | {ratio(r['engine_qp_s'], r['raw_clarabel_s'])} "
            f"| {ratio(r['engine_qp_s'], r['raw_osqp_s'])} | {r['solves_per_plan']:g} | {ms(r['engine_solve_s'])} "
            f"| {r.get('naive_eps', float('nan')):.0e}, {r['raw_osqp_eps']:.0e} "
            f"| {r['engine_acc']:.0e}, {r.get('naive_acc', float('nan')):.0e}, {r['raw_osqp_acc']:.0e} "
            f"| {r['peak_rss_mb']:,.0f} |")
    return "\n".join(lines)


def lots_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| lots | engine plan ms (first) | solve ms/plan | solves/plan | plan µs per lot | peak MB |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['lots']:,} | {ms(r['engine_plan_s'])} ({ms(r['engine_first_s'])}) "
                     f"| {ms(r['engine_solve_s'])} | {r['solves_per_plan']:g} "
                     f"| {r['engine_plan_s'] / r['lots'] * 1e6:,.1f} | {r['peak_rss_mb']:,.0f} |")
    return "\n".join(lines)


def batch_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| engine | workers | accounts | planned | failed | orders | seconds | accounts/s | peak MB "
             "| vs local |", "|---|---|---|---|---|---|---|---|---|---|"]
    local = next((r for r in rows if r["engine"] == "local"), None)  # "local --resume": that batch again, all logged
    for r in rows:
        versus = f"{r['seconds'] / local['seconds']:.2f}x" if local else "—"
        lines.append(f"| {r['engine']} | {r['workers']} | {r['accounts']:,} | {r['planned']:,} | {r['failed']:,} "
                     f"| {r['orders']:,} | {r['seconds']:.1f} | {r['accounts_per_second']:,.0f} "
                     f"| {r['peak_memory_mb']:,.0f} | {versus} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes only (a smoke run)")
    parser.add_argument("--repeats", type=int, default=None, help="timed re-plans per size (default 7; quick 3)")
    parser.add_argument("--accounts", type=int, default=None, help="batch size (default 10,000; quick 300)")
    parser.add_argument("--workers", type=int, default=2, help="batch workers (default 2)")
    parser.add_argument("--skip", action="append", default=[], choices=["sizes", "lots", "batch", "dask"],
                        help="leave out a part (repeatable)")
    parser.add_argument("--json", type=Path, help="also write every number to this file")
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 7)
    sizes = QUICK_SIZES if args.quick else SIZES
    lots = QUICK_LOTS if args.quick else LOTS
    accounts = args.accounts or (300 if args.quick else 10_000)
    results: dict[str, Any] = {"machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    print(f"Machine: {results['machine']}\n", flush=True)

    if "sizes" not in args.skip:
        rows = []
        for name, (generator, gen_args) in sizes.items():
            print(f"  measuring {name} …", file=sys.stderr, flush=True)
            household = "household" in name
            # A naive direct-index plan is four OSQP solves of minutes each: there the naive side is
            # the single QP (and the plan ratio is left out), with fewer repeats.
            # A household plan takes milliseconds, where a shared machine's noise is largest: its
            # medians are taken over SMALL_FACTOR times as many re-plans (engine and naive alike).
            size_repeats = (repeats * SMALL_FACTOR if name in SMALL_SIZES
                            else repeats if household else max(3, repeats // 2))
            rows.append(_measure_size(name, generator, gen_args, size_repeats, size_repeats if household else 0))
        results["sizes"] = rows
        print(f"Engine vs naive cvxpy+OSQP vs the raw solvers (medians of {repeats} re-plans, "
              f"{repeats * SMALL_FACTOR} for {', '.join(SMALL_SIZES)}, {max(3, repeats // 2)} for direct "
              "indexes; each with new prices; ms unless marked):\n")
        print(size_table(rows), "\n", flush=True)

    if "lots" not in args.skip:
        rows = []
        for n in lots:
            print(f"  measuring {n:,} lots …", file=sys.stderr, flush=True)
            rows.append(in_fresh_process(_measure_lots, n, max(3, repeats // 2)))
        results["lots"] = rows
        print("Lots sweep (household-shaped, 20 funds; engine only):\n")
        print(lots_table(rows), "\n", flush=True)

    if "batch" not in args.skip:
        from benchmarks import batch_bench
        engines = ("local",) if "dask" in args.skip else ("local", "dask")
        print(f"  batch of {accounts:,} accounts …", file=sys.stderr, flush=True)
        rows = batch_bench.run(accounts, args.workers, engines)
        results["batch"] = rows
        print(f"Batch: {accounts:,} distinct household accounts (10-30 symbols, up to 300 lots), files in, one csv "
              "basket and one audit entry per account out; then the local batch again with --resume, every "
              "account already logged (read and looked up, not planned):\n")
        print(batch_table(rows), "\n", flush=True)

    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
