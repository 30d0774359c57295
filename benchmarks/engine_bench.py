"""One size of the engine benchmark: the engine against the naive baseline and the raw solvers.

Everything for one size runs in a fresh process (``measure`` is called through a spawn pool by
``run``), so compiled models and memory do not carry over between sizes; the peak memory is that
process's peak resident set.

Timed workloads (each over ``repeats`` re-plans of the same account with every price moved by a
seeded ~1%, so every run solves new data of the same structure):

* engine plan: ``Planner.plan`` end to end (validated account in; the cash-first stage, the
  relaxation, the exact solves, rounding, per-lot tax, the independent check out), compiled
  model reused; "first plan" is the cold call that compiles;
* engine QP: one solve of the relaxation through the engine's compiled model (parameters in,
  solution out), the unit the baseline and the raw solvers also do;
* naive QP: ``benchmarks.naive`` (plain cvxpy, rebuilt per account, ``solve(solver=OSQP)``);
* naive plan: the engine's ``Planner`` with every solve done the naive way (like for like);
* raw OSQP: the engine's QP matrices (cvxpy's compiled data for this account's own structure)
  in one OSQP object, ``update`` + warm-started ``solve`` per run;
* raw Clarabel: the same QP, with the variables its bounds fix at zero removed (what the engine
  hands Clarabel), set up and solved per run.

Matched accuracy: a reference objective per run from Clarabel at a 1e-12 gap (1e-10 if that
stops short) on the naive problem; OSQP's tolerance (naive and raw) is the loosest of 1e-3 …
1e-10 whose objective is within 1e-6 relative of the reference on every timed run (not only the
first: one account's tolerance left the big direct index's raw OSQP at 4e-4 on another), and
every timed run's error is reported (``acc`` columns: the worst relative error seen).
"""
from __future__ import annotations

import resource
import statistics
import time
from typing import Any

import numpy as np

from rebalance_opt.qp import TIGHT_MAX_VARIABLES

REL_ACCURACY = 1e-6
EPS_LADDER = (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10)
OSQP_TIME_LIMIT = 300.0  # seconds per OSQP solve; a solve stopped by it fails the accuracy check


def rel_error(value: float, reference: float) -> float:
    return abs(value - reference) / max(abs(reference), 1e-300)


def measure(name: str, book: dict[str, Any], repeats: int, naive: bool = True,
            naive_plans: int | None = None) -> dict[str, Any]:
    """Every number of one row of the table, in one process (``run`` calls the two halves in
    separate processes, so the engine's peak memory is its own)."""
    engine = measure_engine(name, book, repeats)
    return combine(engine, measure_baselines(book, repeats, naive, naive_plans))


def combine(engine: dict[str, Any], baselines: dict[str, Any]) -> dict[str, Any]:
    references = baselines.pop("references")
    row = {**engine, **baselines, "objective": references[0]}
    row["engine_acc"] = max(rel_error(v, r) for v, r in zip(engine.pop("engine_objectives"), references))
    row.pop("engine_objectives", None)
    return row


def _runs(book: dict[str, Any], repeats: int):
    from benchmarks.synth import perturbed
    from rebalance_opt import account_from_dict
    runs = [account_from_dict(perturbed(book, seed)) for seed in range(repeats + 1)]
    return runs[0], runs[1:]


def measure_engine(name: str, book: dict[str, Any], repeats: int) -> dict[str, Any]:
    """The engine's numbers and peak memory (its own process): the cold first plan, the median
    re-plan, its solve time, and one relaxation solve through the cached compiled model."""
    from benchmarks import naive as baseline
    from rebalance_opt import Planner
    from rebalance_opt.problem import ModelCache
    from rebalance_opt.solve import _bucket, _structure, _tracking

    first, timed = _runs(book, repeats)
    row: dict[str, Any] = {"size": name, "symbols": len(first.prices), "lots": len(first.lots)}
    planner = Planner(cache=ModelCache())
    t = time.perf_counter()
    plan = planner.plan(first)
    row["engine_first_s"] = time.perf_counter() - t
    plans, plan_s = [], []
    for account in timed:
        t = time.perf_counter()
        plans.append(planner.plan(account))
        plan_s.append(time.perf_counter() - t)
    row["engine_plan_s"] = statistics.median(plan_s)
    row["engine_solve_s"] = statistics.median(p.solver.solve_seconds for p in plans)
    row["solves_per_plan"] = statistics.median(p.solver.solves for p in plans)
    row["solver"] = plan.solver.name

    book0, _ = baseline.relaxation_data(first)
    tracking = _tracking(book0)
    model = planner.cache.for_account(_structure(book0, tracking), _bucket(book0, tracking))  # the re-plans' model
    qp_s, objectives = [], []
    for account in timed:
        data = baseline.relaxation_data(account)[1]
        t = time.perf_counter()
        sol = model.solve(data)
        qp_s.append(time.perf_counter() - t)
        objectives.append(sol.objective)
    row["engine_qp_s"] = statistics.median(qp_s)
    row["engine_objectives"] = objectives
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def measure_baselines(book: dict[str, Any], repeats: int, naive: bool = True,
                      naive_plans: int | None = None) -> dict[str, Any]:
    """References, the naive baseline and the raw solvers on the same accounts (own process)."""
    import osqp

    from benchmarks import naive as baseline
    from rebalance_opt import Planner
    from rebalance_opt.problem import RebalanceModel
    from rebalance_opt.qp import LARGE_FIRST_RUNG, _clarabel, _clarabel_settings
    from rebalance_opt.solve import _structure, _tracking

    first, timed = _runs(book, repeats)
    naive_plans = repeats if naive_plans is None else naive_plans
    row: dict[str, Any] = {}
    references = [_reference(a) for a in timed]
    ref_first = _reference(first)
    row["references"] = references

    # --- the naive baseline --------------------------------------------------------------------------
    if naive:
        eps, results = _matched(lambda e: _naive(first, e).objective, ref_first,
                                lambda e: [_naive(a, e) for a in timed], lambda rs: [r.objective for r in rs],
                                references)
        row["naive_eps"] = eps
        row["naive_qp_s"] = statistics.median(r.seconds for r in results)
        row["naive_build_s"] = statistics.median(r.build_seconds for r in results)
        row["naive_acc"] = max(rel_error(r.objective, ref) for r, ref in zip(results, references))
        naive_planner = Planner(cache=baseline.NaiveCache(eps), solvers=("OSQP",))
        naive_s = []
        for account in timed[:naive_plans]:
            t = time.perf_counter()
            naive_planner.plan(account)
            naive_s.append(time.perf_counter() - t)
        row["naive_plan_s"] = statistics.median(naive_s) if naive_s else None
        row["naive_fallbacks"] = baseline.NaiveModel.fallbacks

    # --- raw solvers on the same QP ------------------------------------------------------------------
    book0, data0 = baseline.relaxation_data(first)
    exact = RebalanceModel(_structure(book0, _tracking(book0)))
    qps = [exact.compiled.apply(exact.values(baseline.relaxation_data(a)[1])) for a in timed]
    qp_first = exact.compiled.apply(exact.values(data0))

    def osqp_run(eps: float, sequence) -> tuple[list[float], list[float]]:
        solver = osqp.OSQP()
        P, q, A, lo, up = _osqp_form(qp_first)
        solver.setup(P, q, A, lo, up, eps_abs=eps, eps_rel=eps, polishing=True, max_iter=400_000, verbose=False,
                     warm_starting=True, time_limit=OSQP_TIME_LIMIT)
        solver.solve(raise_error=False)
        times, objs = [], []
        for qp in sequence:
            P, q, A, lo, up = _osqp_form(qp)
            t = time.perf_counter()
            solver.update(q=q, l=lo, u=up, Px=P.data, Ax=A.data)
            result = solver.solve(raise_error=False)
            times.append(time.perf_counter() - t)
            objs.append(result.info.obj_val + qp.d)
        return times, objs

    raw_eps, (times, objs) = _matched(lambda e: osqp_run(e, [qp_first])[1][0], ref_first,
                                      lambda e: osqp_run(e, qps), lambda run: run[1], references)
    row["raw_osqp_eps"] = raw_eps
    row["raw_osqp_s"] = statistics.median(times)
    row["raw_osqp_acc"] = max(rel_error(o, r) for o, r in zip(objs, references))

    clar_s, clar_obj = [], []
    for qp in qps:
        reduction, P, q, minus_A, b = qp.reduced(-1.0)  # Clarabel's own form
        tight = P.shape[0] <= TIGHT_MAX_VARIABLES
        t = time.perf_counter()
        _, x = _clarabel(P, q, minus_A, b, reduction.n_eq, _clarabel_settings(0 if tight else LARGE_FIRST_RUNG))
        clar_s.append(time.perf_counter() - t)
        clar_obj.append(qp.objective(reduction.expand(qp, x)) if x is not None else np.inf)
    row["raw_clarabel_s"] = statistics.median(clar_s)
    row["raw_clarabel_acc"] = max(rel_error(o, r) for o, r in zip(clar_obj, references))
    row["qp_variables"] = qp_first.compiled.n
    row["baseline_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def _matched(first_objective, ref_first, run_all, objectives, references):
    """The loosest OSQP tolerance of EPS_LADDER within REL_ACCURACY of the reference on the
    first account and on every timed one, and the timed runs at it: (eps, run_all(eps)).
    A tolerance is tried on the first account alone before the timed ones are run with it."""
    for eps in EPS_LADDER[:-1]:
        if rel_error(first_objective(eps), ref_first) > REL_ACCURACY:
            continue
        runs = run_all(eps)
        if max(rel_error(o, r) for o, r in zip(objectives(runs), references)) <= REL_ACCURACY:
            return eps, runs
    return EPS_LADDER[-1], run_all(EPS_LADDER[-1])  # the tightest, its error printed in the table


def _osqp_form(qp):
    """OSQP's l ≤ A x ≤ u form of a compiled QP, on its fixed sparsity pattern (explicit zeros
    kept, so ``update`` can swap values)."""
    c = qp.compiled
    n, rows = c.n, len(qp.b)
    P = _pattern_csc(qp.p, c.p_rows, c.p_cols, (n, n))
    A = _pattern_csc(qp.a, c.a_rows, c.a_cols, (rows, n))
    lower = -qp.b
    upper = np.where(np.arange(rows) < c.n_eq, -qp.b, np.inf)
    return P, qp.q, A, lower, upper


def _pattern_csc(values, rows, cols, shape):
    import scipy.sparse as sp

    from rebalance_opt.qp import _indptr
    return sp.csc_matrix((values, rows.astype(np.int32), _indptr(cols, shape[1])), shape=shape)


def _naive(account, eps: float):
    from benchmarks import naive as baseline
    return baseline.solve(account, "OSQP", eps_abs=eps, eps_rel=eps, polishing=True, max_iter=400_000,
                          time_limit=OSQP_TIME_LIMIT)


def _reference(account) -> float:
    """The tight reference objective: Clarabel on the naive problem at a 1e-12 gap (1e-10 where
    that stops short)."""
    from benchmarks import naive as baseline
    for tol in (1e-12, 1e-10):
        result = baseline.solve(account, "CLARABEL", tol_gap_abs=tol, tol_gap_rel=tol, tol_feas=tol)
        if result.status == "optimal":
            return result.objective
    raise RuntimeError(f"no accurate reference for {account.id}: {result.status}")


def measure_lots(n_lots: int, repeats: int) -> dict[str, Any]:
    """One point of the lots sweep: the engine's cold and warm plan, and its solve time."""
    from benchmarks.synth import lots_account, perturbed
    from rebalance_opt import Planner, account_from_dict
    from rebalance_opt.problem import ModelCache
    book = lots_account(0, n_lots)
    runs = [account_from_dict(perturbed(book, seed)) for seed in range(repeats + 1)]
    planner = Planner(cache=ModelCache())
    t = time.perf_counter()
    planner.plan(runs[0])
    first = time.perf_counter() - t
    plan_s, solve_s = [], []
    for account in runs[1:]:
        t = time.perf_counter()
        plan = planner.plan(account)
        plan_s.append(time.perf_counter() - t)
        solve_s.append(plan.solver.solve_seconds)
    return {"lots": n_lots, "engine_first_s": first, "engine_plan_s": statistics.median(plan_s),
            "engine_solve_s": statistics.median(solve_s), "solves_per_plan": plan.solver.solves,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
