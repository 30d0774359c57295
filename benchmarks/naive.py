"""The naive baseline: the obvious implementation, a plain cvxpy problem built for each account.

Each solve is the engine's model written the way one writes a first version: constants instead of
parameters (so cvxpy compiles the problem again for every account and every change of data), the
whole risk factor as one matrix, and ``Problem.solve(solver=OSQP)``. Two baselines use it:

* the naive QP: one solve (the relaxation) of an account, built from the account;
* the naive plan: the engine's own ``Planner`` (stages, rounding, tax, checks) with every solve
  done this way (``NaiveCache``), so the plan comparison is like for like.

``relaxation_data`` is shared with the raw-solver rows: the numbers of that solve, computed from
the account exactly as the engine computes them.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import cvxpy as cp
import numpy as np

from rebalance_opt import Account
from rebalance_opt.book import Book
from rebalance_opt.problem import ModelData, Solution, SolveFailure
from rebalance_opt.solve import BUY_CAP, NO_SELL_LIMIT, _base_data, _tracking


@dataclass(frozen=True)
class NaiveResult:
    objective: float
    status: str
    build_seconds: float
    solve_seconds: float

    @property
    def seconds(self) -> float:
        return self.build_seconds + self.solve_seconds


def relaxation_data(account: Account) -> tuple[Book, ModelData]:
    """The engine's relaxation solve (every sellable lot may be sold, each class's first buyable
    symbol bought) for ``account``."""
    book = Book(account)
    base = _base_data(book, _tracking(book))
    buys = book.buy_targets(sold=np.zeros(len(book.symbols), dtype=bool))
    data = ModelData(**{**base.__dict__, "b_max": buys * BUY_CAP, "s_max": base.s_max * book.lot_sellable,
                        "sell_room": NO_SELL_LIMIT})
    return book, data


def build(data: ModelData) -> cp.Problem:
    """The plain cvxpy problem of one solve's numbers, constants inlined (no parameters)."""
    n, m, k = len(data.b_max), len(data.s_max), len(data.gap)
    b, s = cp.Variable(n), cp.Variable(m)
    cls = np.asarray(data.class_of_symbol, int)
    lot_class = cls[np.asarray(data.symbol_of_lot, int)] if m else np.zeros(0, int)
    a_b = np.zeros((k, n))
    a_b[cls, np.arange(n)] = 1.0
    a_b[-1, :] = -1.0
    a_s = np.zeros((k, m))
    a_s[lot_class, np.arange(m)] = 1.0
    a_s[-1, :] = -1.0
    kappa = data.cost_rate
    turnover = cp.sum(b) + cp.sum(s)
    e_cash = np.zeros(k)
    e_cash[-1] = 1.0
    dev = data.gap + a_b @ b - a_s @ s - kappa * turnover * e_cash
    if data.risk is None and data.risk_diagonal is None:
        tracking = cp.sum_squares(dev)
    else:  # the whole factor as one matrix: covariance = GᵀG
        rows = ([data.risk] if data.risk is not None else []) + \
               ([np.diag(data.risk_diagonal)] if data.risk_diagonal is not None else [])
        tracking = cp.sum_squares(np.vstack(rows) @ dev)
    q_tax = data.tax_weight * data.u_over_v * data.lot_tax
    objective = tracking + q_tax @ s + kappa * data.u_over_v * turnover
    constraints = [b >= 0, b <= np.maximum(data.b_max, 0), s >= 0, s <= np.maximum(data.s_max, 0),
                   cp.sum(b) - cp.sum(s) + kappa * turnover <= data.cash_room]
    if np.isfinite(data.tax_room):  # +inf: no tax budget
        constraints.append(data.lot_tax @ s <= data.tax_room)
    if np.isfinite(data.sell_room):  # +inf: no sell room
        constraints.append((1 - kappa) * cp.sum(s) <= max(data.sell_room, 0.0))
    return cp.Problem(cp.Minimize(objective), constraints)


def solve_data(data: ModelData, solver: str = "OSQP", **settings) -> tuple[NaiveResult, cp.Problem]:
    """Build and solve one problem; cvxpy's compilation (inside ``solve``) counts as building."""
    started = time.perf_counter()
    problem = build(data)
    built = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        problem.solve(solver=solver, **settings)
    done = time.perf_counter()
    compile_seconds = min(problem.compilation_time or 0.0, done - built)
    value = float(problem.value) if problem.value is not None else float("nan")
    return NaiveResult(value, problem.status, built - started + compile_seconds, done - built - compile_seconds), problem


def solve(account: Account, solver: str = "OSQP", **settings) -> NaiveResult:
    """The relaxation of ``account``, built from the account (its arrays included) and solved."""
    started = time.perf_counter()
    _, data = relaxation_data(account)
    prep = time.perf_counter() - started
    result, _ = solve_data(data, solver, **settings)
    return NaiveResult(result.objective, result.status, result.build_seconds + prep, result.solve_seconds)


class NaiveModel:
    """Stands in for ``RebalanceModel`` in a ``Planner``: every solve builds a new plain problem
    and solves it with OSQP, so the naive plan runs the engine's own stages and rounding."""

    def __init__(self, eps: float):
        self.settings = dict(eps_abs=eps, eps_rel=eps, polishing=True, max_iter=400_000)

    fallbacks = 0  # solves where OSQP stopped short and Clarabel finished (as the engine once did)

    def solve(self, data: ModelData, solvers=("OSQP",)) -> Solution:
        result, problem = solve_data(data, "OSQP", **self.settings)
        name = "OSQP"
        if problem.status != cp.OPTIMAL:
            NaiveModel.fallbacks += 1
            result, problem = solve_data(data, "CLARABEL")
            name = "CLARABEL"
        if problem.status != cp.OPTIMAL:
            raise SolveFailure([f"{name}: {problem.status}"])
        b, s = problem.variables()[:2]
        return Solution(np.maximum(b.value, 0.0), np.maximum(s.value, 0.0), result.objective, problem.status,
                        name, result.solve_seconds)


class NaiveCache:
    """A ``ModelCache`` that caches nothing: the naive planner compiles every solve."""

    def __init__(self, eps: float):
        self.eps = eps

    def for_account(self, structure, bucket) -> NaiveModel:
        return NaiveModel(self.eps)

    def __len__(self) -> int:
        return 0
