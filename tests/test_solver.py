"""Solver failures: fall back to the next solver, say which one produced the plan, and never
emit a plan from an inaccurate solve (issue 8)."""
from __future__ import annotations

import json

import pytest

from rebalance_opt import SolverFailed, plan_rebalance
from rebalance_opt import problem
from rebalance_opt import qp as qp_module
from rebalance_opt.cli import main
from rebalance_opt.problem import ModelCache, ModelData
from rebalance_opt.solve import Planner
from tests.conftest import ROOT, first_layout, make


def _relaxation_model(account, cache: ModelCache | None = None):
    """(book, the planner's relaxation data, the compiled model of its layout) for ``account``."""
    from benchmarks.naive import relaxation_data
    from rebalance_opt.solve import _tracking
    book, data = relaxation_data(account)
    return book, data, (cache or ModelCache()).get(first_layout(book, _tracking(book)))


def failing(status):
    def solve(*args, **kwargs):
        return status, None
    return solve


def test_clarabel_failing_falls_back_to_osqp_and_the_plan_says_so(monkeypatch):
    expected = plan_rebalance(make())
    monkeypatch.setattr(qp_module, "_clarabel", failing("inaccurate (MaxIterations)"))
    plan = Planner(cache=ModelCache()).plan(make())
    assert plan.solver.name == "OSQP" and plan.solver.status == "optimal"
    assert [(o.symbol, o.quantity) for o in plan.orders] == [(o.symbol, o.quantity) for o in expected.orders]


def test_osqp_is_asked_for_a_status_not_an_exception(monkeypatch):
    # osqp 1.1 warns that solve() will raise on anything but "solved" by default: the fallback must
    # keep reading statuses, so it asks for them, and no such warning is left
    import warnings
    monkeypatch.setattr(qp_module, "_clarabel", failing("inaccurate (MaxIterations)"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", PendingDeprecationWarning)
        plan = Planner(cache=ModelCache()).plan(make())
    assert plan.solver.name == "OSQP"


def test_every_solver_failing_emits_no_plan(monkeypatch):
    monkeypatch.setattr(qp_module, "_clarabel", failing("inaccurate (NumericalError)"))
    monkeypatch.setattr(qp_module, "_osqp", failing("inaccurate (maximum iterations reached)"))
    with pytest.raises(SolverFailed, match="CLARABEL.*OSQP"):
        Planner(cache=ModelCache()).plan(make())


def test_cli_exits_1_on_solver_failure_and_logs_nothing(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(qp_module, "_clarabel", failing("inaccurate (NumericalError)"))
    monkeypatch.setattr(qp_module, "_osqp", failing("inaccurate (maximum iterations reached)"))
    log = tmp_path / "log.sqlite"
    with pytest.raises(SystemExit) as e:
        main(["rebalance", "generate", str(ROOT / "examples" / "household.toml"), "--json", "--log", str(log)])
    out = capsys.readouterr()
    assert e.value.code == 1 and "Traceback" not in out.err
    assert "accurate optimum" in json.loads(out.out)["error"]["message"]
    assert not log.exists()


def test_the_log_records_which_solver_produced_the_plan(monkeypatch, tmp_path, capsys):
    from rebalance_opt.audit import AuditLog
    monkeypatch.setattr(qp_module, "_clarabel", failing("inaccurate (MaxIterations)"))
    log = tmp_path / "log.sqlite"
    with pytest.raises(SystemExit) as e:
        main(["rebalance", "generate", str(ROOT / "examples" / "household.toml"), "--json", "--log", str(log)])
    assert e.value.code == 0
    entry = AuditLog(log).entries()[0]
    assert "OSQP" in json.dumps(entry.to_dict())


def test_an_account_where_unregularized_clarabel_stalls_still_gets_a_plan():
    # A backtest state (84 lots, many at a loss, March 2020) on which Clarabel without static
    # regularization stopped at AlmostSolved at 1e-12 and 1e-10, and OSQP at "solved inaccurate".
    from rebalance_opt import account_from_dict
    d = json.loads((ROOT / "tests" / "data" / "almost_solved_backtest_account.json").read_text())
    plan = Planner(cache=ModelCache()).plan(account_from_dict(d))
    assert plan.solver.name == "CLARABEL" and plan.status == "optimal"


def test_solves_that_share_a_reduction_pattern_do_not_leak_into_each_other():
    # Re-plans of one account with new prices reuse the reduction of the matrices (cached by
    # pattern): alternating two price sets must give each the plan a fresh planner gives it.
    from benchmarks.synth import perturbed, sized_household
    from rebalance_opt import account_from_dict
    book = sized_household(0, 10, 5)
    a, b = account_from_dict(perturbed(book, 1)), account_from_dict(perturbed(book, 2))
    shared = Planner(cache=ModelCache())
    plans = [shared.plan(x) for x in (a, b, a, b)]
    fresh = [Planner(cache=ModelCache()).plan(x) for x in (a, b)]

    def orders(p):
        return [(o.symbol, o.side, o.quantity) for o in p.orders]
    assert [orders(p) for p in plans] == [orders(p) for p in fresh * 2]
    assert [p.objective.total for p in plans] == [p.objective.total for p in fresh * 2]


def test_a_bucket_model_gives_each_structure_its_own_incidence_however_they_alternate():
    # The bucket model keeps the dense incidence of the last structure it saw: two households of
    # one bucket, alternated, must each get their own (as built from scratch), read-only.
    import numpy as np

    from benchmarks.synth import household
    from rebalance_opt import account_from_dict
    from rebalance_opt.book import Book
    from rebalance_opt.problem import _incidence_dense
    from rebalance_opt.solve import _base_data, _tracking
    books = [Book(account_from_dict(household(s))) for s in range(40)]
    layout = first_layout(books[0], _tracking(books[0]))
    pair = [b for b in books if first_layout(b, _tracking(b)) == layout][:2]
    assert len(pair) == 2
    assert not (np.array_equal(pair[0].class_of_symbol, pair[1].class_of_symbol)
                and np.array_equal(pair[0].lot_symbol, pair[1].lot_symbol))  # two structures
    model = ModelCache().get(layout)
    for book in pair + pair:
        data = _base_data(book, _tracking(book))
        values = model.values(data)
        rows = model._rows(len(data.gap))
        cls = rows[book.class_of_symbol]
        expected = _incidence_dense(cls, cls[book.lot_symbol], model.n_rows, model.n_symbols, model.n_lots)
        for got, want in zip((values[model.A_b.id], values[model.A_s.id]), expected):
            assert np.array_equal(got, want) and not got.flags.writeable


def test_a_buckets_padding_classes_leave_the_solvers_problem_and_change_no_value():
    # A bucket model pads the classes: a padding class's deviation is pinned at 0 by its own
    # equality row (alone there, b = 0). ``Reduction.of`` removes it with its row; the solve must
    # be the one with them kept (``DROP_PINNED`` off), to 1e-9.
    import numpy as np

    from benchmarks.synth import household
    from rebalance_opt import account_from_dict
    from rebalance_opt.problem import Bucket
    padded = 0
    for seed in range(12):
        book, data, model = _relaxation_model(account_from_dict(household(seed)))
        layout = model.layout
        qp = model.compiled.apply(model.values(data))
        keep = qp.reduced(-1.0)[0].keep_col
        col, size = model.compiled.offsets[model.d.id]
        assert keep[col: col + size].sum() == len(data.gap)  # real classes and cash only
        padded += isinstance(layout, Bucket) and size > len(data.gap)
        status, x, objective = qp.solve("CLARABEL")
        model.compiled._reductions.clear()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(qp_module, "DROP_PINNED", False)  # the rule off: padding kept
            kept = qp.reduced(-1.0)[0].keep_col
            assert kept[col: col + size].all()
            status_all, x_all, objective_all = qp.solve("CLARABEL")
        model.compiled._reductions.clear()
        assert status == status_all == "optimal"
        assert np.allclose(x, x_all, rtol=0.0, atol=1e-9) and abs(objective - objective_all) <= 1e-12
    assert padded >= 6


def test_the_variables_removed_are_those_whose_bounds_or_a_lone_equality_fix_them_at_zero():
    # ``Reduction.of`` reads the fixed variables off signs (and keeps the result per sign
    # pattern); checked here against the bounds themselves, worked out row by row, on the
    # relaxation and buy-only solves of households (many lots unsellable, padding classes).
    import numpy as np

    from benchmarks.synth import household
    from rebalance_opt import account_from_dict
    cache, checked = ModelCache(), 0
    for seed in range(10):
        book, relaxed, model = _relaxation_model(account_from_dict(household(seed)), cache)
        c = model.compiled
        for data in (relaxed, ModelData(**{**relaxed.__dict__, "s_max": 0 * relaxed.s_max, "sell_room": 0.0})):
            qp = c.apply(model.values(data))
            lower, upper = [-np.inf] * c.n, [np.inf] * c.n
            rows: dict[int, list[int]] = {}  # equality rows: nonzero entries; others: every entry
            for k, (row, col, value) in enumerate(zip(c.a_rows, c.a_cols, qp.a)):
                if value != 0.0 or row >= c.n_eq:
                    rows.setdefault(int(row), []).append(k)
            fixed = set()
            for row, entries in rows.items():
                if len(entries) != 1 or qp.a[entries[0]] == 0.0:
                    continue
                k = entries[0]
                col, coef, b = int(c.a_cols[k]), qp.a[k], qp.b[row]
                if row < c.n_eq:
                    if b == 0.0:
                        fixed.add(col)      # coef·x = 0
                elif coef > 0:
                    lower[col] = max(lower[col], -b / coef)
                else:
                    upper[col] = min(upper[col], -b / coef)
            fixed |= {j for j in range(c.n) if lower[j] == 0.0 and upper[j] == 0.0}
            reduction = qp.reduced(-1.0)[0]
            keep = reduction.keep_col
            substituted = {int(j) for j in reduction.sub_cols}
            assert {int(j) for j in np.flatnonzero(~keep)} == fixed | substituted and not fixed & substituted
            assert not keep.flags.writeable
            checked += len(fixed)
    assert checked > 0


def test_plans_made_in_threads_sharing_a_planner_equal_plans_made_one_by_one():
    # The web server plans in a thread pool with one shared planner: the cached models and
    # reductions are shared, each solve's values are its own, so concurrent plans never read
    # each other's numbers.
    from concurrent.futures import ThreadPoolExecutor

    from benchmarks.synth import perturbed, sized_household
    from rebalance_opt import account_from_dict
    book = sized_household(0, 10, 5)
    accounts = [account_from_dict(perturbed(book, s)) for s in range(40)]
    alone = [Planner(cache=ModelCache()).plan(a) for a in accounts]
    shared = Planner(cache=ModelCache())
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(shared.plan, accounts * 3))

    def orders(p):
        return [(o.symbol, o.side, o.quantity) for o in p.orders]
    assert [orders(p) for p in together] == [orders(p) for p in alone * 3]
    assert [p.objective.total for p in together] == [p.objective.total for p in alone * 3]

    # Accounts of several size buckets through a cache of two models: evictions race too.
    from benchmarks.synth import household
    mixed = [account_from_dict(household(s)) for s in range(24)]
    alone = [Planner(cache=ModelCache()).plan(a) for a in mixed]
    small = Planner(cache=ModelCache(maxsize=2))
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(small.plan, mixed * 2))
    assert [orders(p) for p in together] == [orders(p) for p in alone * 2]


def test_a_large_qp_tries_clarabel_without_refinement_first_then_the_refined_rungs(monkeypatch):
    # Above TIGHT_MAX_VARIABLES the first rung is 1e-10 without iterative refinement; where it stops
    # short, the refined 1e-10 solve and then the regularized one follow, as on a household.
    from benchmarks.synth import lots_account
    from rebalance_opt import account_from_dict
    account = account_from_dict(lots_account(0, 2_000))
    tried = []
    real = qp_module._clarabel

    def clarabel(P, q, minus_A, b, n_eq, settings):
        tried.append((P.shape[0] > qp_module.TIGHT_MAX_VARIABLES, settings.tol_gap_rel,
                      settings.iterative_refinement_enable, settings.static_regularization_enable))
        if len(tried) == 1:
            return "inaccurate (AlmostSolved)", None
        return real(P, q, minus_A, b, n_eq, settings)

    monkeypatch.setattr(qp_module, "_clarabel", clarabel)
    plan = Planner(cache=ModelCache(), screen_lots=False).plan(account)
    assert plan.solver.name == "CLARABEL" and tried[0][0], "the account's QP is a large one"
    assert tried[:2] == [(True, 1e-10, False, False), (True, 1e-10, True, False)]
    assert [qp_module.CLARABEL_LADDER[r]["tol_gap_rel"] for r in qp_module.LARGE_RUNGS] == [1e-10] * 3
    assert [qp_module.CLARABEL_LADDER[r].get("static_regularization_enable") for r in qp_module.LARGE_RUNGS] == \
        [False, False, True]


def test_the_unrefined_large_rung_is_as_accurate_as_the_refined_one():
    # the first large rung trades iterative refinement for time; against a 1e-12 refined solve its
    # x and objective must be as close as the refined 1e-10 rung's (at 1e-10 both sit 1e-8 to 3e-5
    # of the account from the tight optimum, whose ties leave a face of optima, not a point)
    import numpy as np

    from benchmarks.naive import relaxation_data
    from benchmarks.synth import direct_index
    from rebalance_opt import account_from_dict
    from rebalance_opt.problem import RebalanceModel
    from rebalance_opt.qp import CLARABEL_LADDER, LARGE_RUNGS, _clarabel, _clarabel_settings
    from rebalance_opt.solve import _structure, _tracking
    fast, refined = LARGE_RUNGS[0], CLARABEL_LADDER.index(qp_module.CLARABEL_RETRY)
    tight = _clarabel_settings(CLARABEL_LADDER.index(qp_module.CLARABEL_SETTINGS))  # 1e-12, refined
    for seed in (1, 2):
        book, data = relaxation_data(account_from_dict(direct_index(seed, 150, 8, 4)))
        model = RebalanceModel(_structure(book, _tracking(book)))
        qp = model.compiled.apply(model.values(data))
        reduction, P, q, minus_A, b = qp.reduced(-1.0)
        assert P.shape[0] > qp_module.TIGHT_MAX_VARIABLES
        solved = {name: _clarabel(P, q, minus_A, b, reduction.n_eq, settings)
                  for name, settings in (("fast", _clarabel_settings(fast)), ("refined", _clarabel_settings(refined)),
                                         ("tight", tight))}
        assert {status for status, _ in solved.values()} == {"optimal"}
        x = {name: x for name, (_, x) in solved.items()}
        objective = {name: qp.objective(reduction.expand(qp, v)) for name, v in x.items()}
        x_error = {name: float(np.max(np.abs(x[name] - x["tight"]))) for name in ("fast", "refined")}
        objective_error = {name: abs(objective[name] - objective["tight"]) / abs(objective["tight"])
                           for name in ("fast", "refined")}
        assert x_error["fast"] <= max(2 * x_error["refined"], 1e-7), x_error
        assert objective_error["fast"] <= max(2 * objective_error["refined"], 1e-10), objective_error


def test_clarabel_given_plain_lists_solves_exactly_as_given_scipy_matrices():
    # The engine hands Clarabel its matrices as lists (``qp.Csc``: faster to set up); the
    # solution must be the one the scipy matrices give, to the bit, and ``Csc.scipy`` that matrix.
    import numpy as np

    from benchmarks.synth import household
    from rebalance_opt import account_from_dict
    from rebalance_opt.solve import _base_data, _tracking
    from rebalance_opt.book import Book
    from rebalance_opt.qp import _clarabel, _clarabel_settings

    for seed in range(5):
        book = Book(account_from_dict(household(seed)))
        tracking = _tracking(book)
        model = Planner(cache=ModelCache()).cache.get(first_layout(book, tracking))
        qp = model.compiled.apply(model.values(_base_data(book, tracking)))
        reduction, P, q, minus_A, b = qp.reduced(-1.0)
        n_eq = reduction.n_eq
        assert isinstance(P, qp_module.Csc) and isinstance(minus_A, qp_module.Csc)
        for m in (P, minus_A):
            s = m.scipy()
            assert s.shape == m.shape and s.data.tolist() == m.data and s.indices.tolist() == m.indices
        with_lists = _clarabel(P, q, minus_A, b, n_eq, _clarabel_settings(1))
        with_scipy = _clarabel(P.scipy(), q, minus_A.scipy(), b, n_eq, _clarabel_settings(1))
        assert with_lists[0] == with_scipy[0] == "optimal"
        assert np.array_equal(with_lists[1], with_scipy[1])


def test_a_clarabel_binding_that_rejects_plain_lists_gets_scipy_matrices(monkeypatch):
    # Clarabel's binding reads a matrix by attribute; one that wants more than ``Csc`` carries
    # (another version) must still get the same plan, from scipy matrices.
    import clarabel

    from benchmarks.synth import household
    from rebalance_opt import account_from_dict
    account = account_from_dict(household(3))
    expected = Planner(cache=ModelCache()).plan(account)
    real = clarabel.DefaultSolver
    refused = []

    def strict(P, q, A, b, cones, settings):
        if isinstance(P, qp_module.Csc) or isinstance(A, qp_module.Csc):
            refused.append(1)
            raise AttributeError("'Csc' object has no attribute 'format'")
        return real(P, q, A, b, cones, settings)
    monkeypatch.setattr(clarabel, "DefaultSolver", strict)
    plan = Planner(cache=ModelCache()).plan(account)
    assert refused and plan.solver.name == "CLARABEL"
    assert [(o.symbol, o.side, o.quantity) for o in plan.orders] == \
        [(o.symbol, o.side, o.quantity) for o in expected.orders]
    assert plan.objective.total == expected.objective.total


def test_a_stage_free_to_sell_has_no_sell_room_row():
    # Stage 2 may sell anything: its sell room is +inf and the row leaves the solver's problem
    # (a 1e6 sentinel cost Clarabel half as many iterations again). The optimum is the one with
    # the row at 1e6, on households with and without trading costs, and the naive baseline's.
    import numpy as np

    from benchmarks import naive
    from benchmarks.synth import household
    from rebalance_opt import account_from_dict
    from rebalance_opt.solve import NO_SELL_LIMIT
    for seed in range(12):
        book, data, model = _relaxation_model(account_from_dict(household(seed)))
        assert data.sell_room == NO_SELL_LIMIT == np.inf
        sentinel = ModelData(**{**data.__dict__, "sell_room": 1e6})
        rows = [model.compiled.apply(model.values(d)).reduced(-1.0)[3].shape[0] for d in (data, sentinel)]
        assert rows[0] == rows[1] - 1
        free, loose = model.solve(data), model.solve(sentinel)
        assert abs(free.objective - loose.objective) <= 1e-10 * max(1.0, abs(loose.objective))
        plain, _ = naive.solve_data(data, "CLARABEL")
        assert abs(plain.objective - loose.objective) <= 1e-7 * max(1.0, abs(loose.objective))


def test_cost_variables_are_substituted_out_and_the_optimum_is_the_full_problems():
    # tax_cost and trading_cost are their equality rows solved for them: the solver never sees
    # them (nor those two dense rows), and ``expand`` puts them back. The solution must be an
    # optimum of the problem as cvxpy states it (solved through ``Problem.solve``), and the two
    # variables must equal the terms they stand for.
    from benchmarks.synth import direct_index, household
    from rebalance_opt import account_from_dict
    accounts = [account_from_dict(household(seed)) for seed in range(8)]
    accounts.append(account_from_dict(direct_index(1, 40, 3, 3)))  # a factor-risk structure
    for account in accounts:
        book, data, model = _relaxation_model(account)
        c = model.compiled
        qp = c.apply(model.values(data))
        reduction = qp.reduced(-1.0)[0]
        (tax_col, _), (cost_col, _) = c.offsets[model.tax_cost.id], c.offsets[model.trading_cost.id]
        # (with a factor model the cash deviation goes too: no risk on cash, in one row only)
        assert {tax_col, cost_col} <= set(reduction.sub_cols.tolist())
        status, x, objective = qp.solve("CLARABEL")
        assert status == "optimal"
        b, s = c.value(model.b, x), c.value(model.s, x)
        q_tax = data.tax_weight * data.u_over_v * data.lot_tax
        assert x[tax_col] == pytest.approx(float(q_tax @ s[: len(q_tax)]), abs=1e-12)
        assert x[cost_col] == pytest.approx(
            (data.cost_rate * data.u_over_v + problem.TIE_BREAK) * float(b.sum() + s.sum()), abs=1e-12)
        reference = model.solve_with_cvxpy(data, "CLARABEL", tol_gap_abs=1e-12, tol_gap_rel=1e-12,
                                           tol_feas=1e-12)  # its objective keeps the tie-break
        spec = reference.objective - problem.TIE_BREAK * float(reference.buys.sum() + reference.sells.sum())
        assert model.solve(data).objective == pytest.approx(spec, rel=1e-8, abs=1e-10)


def test_qps_with_one_reduction_pattern_reduce_alike():
    # ``CompiledQP.reduction`` keeps one Reduction per pattern of the signs ``Reduction.of``
    # reads. Flip what it does not read (a class's gap, a lot's gain or loss, the tax budget's
    # size) and what it does (caps at zero, a budget at all): QPs of one pattern must reduce to
    # the very same arrays, and the pattern must not split QPs that only differ in the former.
    import dataclasses

    import numpy as np

    from benchmarks.synth import household
    from rebalance_opt import account_from_dict
    from rebalance_opt.qp import Reduction
    cache = ModelCache()
    groups: dict[tuple, list] = {}
    for seed in range(6):
        book, data, model = _relaxation_model(account_from_dict(household(seed)), cache)
        variants = [data,
                    dataclasses.replace(data, gap=-data.gap),
                    dataclasses.replace(data, lot_tax=-data.lot_tax),
                    dataclasses.replace(data, s_max=data.s_max * (np.arange(len(data.s_max)) % 2 == 0)),
                    dataclasses.replace(data, tax_room=0.01), dataclasses.replace(data, tax_room=0.02)]
        for variant in variants:
            qp = model.compiled.apply(model.values(variant))
            key = (id(model), model.compiled.pattern(qp.a, qp.b, qp.p))
            groups.setdefault(key, []).append(Reduction.of(model.compiled, qp.a, qp.b, qp.p))
    shared = [g for g in groups.values() if len(g) > 1]
    assert len(shared) >= 6  # gap and gain signs, and a budget's size, share a pattern
    for group in shared:
        for r in group[1:]:
            for f in dataclasses.fields(Reduction):
                x, y = getattr(r, f.name), getattr(group[0], f.name)
                assert (np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y), f.name
