"""The rebalancing model: one parametrized convex QP, compiled once and re-solved with new data.

Everything is measured in fractions of U, the value that stays invested after a withdrawal
(U = V − withdrawal, SPEC section 2), so post-trade weights are the variables' sums directly
and the problem stays well scaled whatever the account's size.

Variables
    b[i]  ≥ 0   value bought of symbol i            (fraction of U)
    s[j]  ≥ 0   value sold from lot j               (fraction of U)
    d[k]        post-trade weight − target, per class k and cash (last row)

Objective (SPEC section 2, divided through by nothing: its units are the SPEC's own)
    tracking   ‖d‖²            (or ‖G d‖² with a covariance factor G: ex-ante tracking variance)
    lot tax    Σ_j q_tax[j] s[j]          q_tax = tax_weight · (U/V) · rate_j · (1 − basis_j / price_j)
    trading    q_cost · (Σ b + Σ s)       q_cost = trade_cost_bps · 10⁻⁴ · (U/V)

Constraints
    deviation   d = gap + A_b b − A_s s − κ e_cash (Σ b + Σ s)     (definition of d)
    buy caps    0 ≤ b ≤ b_max    (0 where a symbol may not be bought in this solve)
    lot caps    0 ≤ s ≤ s_max    (a lot's value; 0 where it may not be sold)
    cash        Σ b − Σ s + κ (Σ b + Σ s) ≤ cash_room    (cash after ≥ min_cash + withdrawal)
    tax budget  Σ_j t[j] s[j] ≤ tax_room                 (lot-level tax ≤ max_tax)
    sell room   (1 − κ) Σ s ≤ sell_room                   (cash-first stage: sell only what a
                                                          withdrawal needs)

Only parameters change between solves, so the problem is DPP and cvxpy reuses its compiled
form (``Problem.is_dpp()``); the matrices A_b, A_s (which symbol is in which class, which lot
belongs to which symbol) are the structure, and a new structure compiles a new model.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

# Solver settings. OSQP is a first-order method: tight tolerances plus solution polishing give
# weights accurate to ~1e-7 of U, far below a share of any realistic position; the plan's money is
# recomputed from share counts afterwards, so no solver error reaches the reported amounts.
OSQP_SETTINGS = dict(eps_abs=1e-9, eps_rel=1e-9, polishing=True, max_iter=200_000)
CLARABEL_SETTINGS = dict(tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)


@dataclass(frozen=True)
class Structure:
    """What a compiled model is specific to: the symbol/lot/class incidence and the risk shape."""

    class_of_symbol: tuple[int, ...]  # class index per symbol
    symbol_of_lot: tuple[int, ...]    # symbol index per lot
    n_classes: int                    # asset classes, cash excluded
    risk_rows: int = 0                # rows of the covariance factor G; 0 = squared deviations

    @property
    def n_symbols(self) -> int:
        return len(self.class_of_symbol)

    @property
    def n_lots(self) -> int:
        return len(self.symbol_of_lot)


@dataclass(frozen=True)
class ModelData:
    """The numbers of one solve, all in fractions of U (see the module docstring)."""

    gap: np.ndarray        # pre-trade weight − target, per class and cash (n_classes + 1)
    b_max: np.ndarray      # per symbol
    s_max: np.ndarray      # per lot
    lot_tax: np.ndarray    # per lot: rate × (1 − basis/price), tax per unit of U sold
    tax_weight: float
    u_over_v: float        # U / V
    cost_rate: float       # κ = trade_cost_bps × 1e-4
    cash_room: float       # (cash − withdrawal − min_cash) / U
    tax_room: float        # max_tax / U (finite)
    sell_room: float       # net proceeds the solve may raise by selling, / U
    risk: np.ndarray | None = None  # G (risk_rows × (n_classes + 1)), cash column zero


@dataclass(frozen=True)
class Solution:
    buys: np.ndarray   # per symbol, fraction of U
    sells: np.ndarray  # per lot, fraction of U
    objective: float
    status: str
    solver: str
    solve_seconds: float


class RebalanceModel:
    """The compiled QP for one ``Structure``; ``solve`` sets parameters and re-solves."""

    def __init__(self, structure: Structure):
        self.structure = st = structure
        n, m, k = st.n_symbols, st.n_lots, st.n_classes + 1
        rows_b = np.asarray(st.class_of_symbol, dtype=int)
        lot_class = rows_b[np.asarray(st.symbol_of_lot, dtype=int)] if m else np.zeros(0, int)
        # A buy adds to its class and takes from cash; a sale does the opposite.
        a_b = sp.coo_matrix((np.ones(n), (rows_b, np.arange(n))), shape=(k, n)).tocsr()
        a_b = a_b - sp.csr_matrix((np.ones(n), (np.full(n, k - 1), np.arange(n))), shape=(k, n))
        a_s = sp.coo_matrix((np.ones(m), (lot_class, np.arange(m))), shape=(k, m)).tocsr()
        a_s = a_s - sp.csr_matrix((np.ones(m), (np.full(m, k - 1), np.arange(m))), shape=(k, m))
        e_cash = np.zeros(k)
        e_cash[-1] = 1.0

        self.b = cp.Variable(n, name="buy")
        self.s = cp.Variable(m, name="sell")
        self.d = cp.Variable(k, name="deviation")
        P = cp.Parameter
        self.gap = P(k, name="gap")
        self.b_max = P(n, nonneg=True, name="b_max")
        self.s_max = P(m, nonneg=True, name="s_max")
        self.lot_tax = P(m, name="lot_tax")
        self.q_tax = P(m, name="q_tax")
        self.q_cost = P(nonneg=True, name="q_cost")
        self.kappa = P(nonneg=True, name="kappa")
        self.cash_room = P(name="cash_room")
        self.tax_room = P(name="tax_room")
        self.sell_room = P(nonneg=True, name="sell_room")
        self.one_minus_kappa = P(nonneg=True, name="one_minus_kappa")
        self.G = P((st.risk_rows, k), name="risk_factor") if st.risk_rows else None

        turnover = cp.sum(self.b) + cp.sum(self.s)
        tracking = cp.sum_squares(self.G @ self.d) if self.G is not None else cp.sum_squares(self.d)
        lot_tax_cost = self.q_tax @ self.s
        trading_cost = self.q_cost * turnover
        self.terms = {"tracking": tracking, "tax": lot_tax_cost, "trading": trading_cost}

        self.constraints = {
            "deviation": self.d == self.gap + a_b @ self.b - a_s @ self.s - self.kappa * turnover * e_cash,
            "buy_nonneg": self.b >= 0,
            "buy_cap": self.b <= self.b_max,
            "sell_nonneg": self.s >= 0,
            "lot_cap": self.s <= self.s_max,
            "cash": cp.sum(self.b) - cp.sum(self.s) + self.kappa * turnover <= self.cash_room,
            "tax_budget": self.lot_tax @ self.s <= self.tax_room,
            "sell_room": self.one_minus_kappa * cp.sum(self.s) <= self.sell_room,
        }
        self.problem = cp.Problem(cp.Minimize(tracking + lot_tax_cost + trading_cost),
                                  list(self.constraints.values()))
        assert self.problem.is_dpp()

    def set(self, data: ModelData) -> None:
        self.gap.value = data.gap
        self.b_max.value = np.maximum(data.b_max, 0.0)
        self.s_max.value = np.maximum(data.s_max, 0.0)
        self.lot_tax.value = data.lot_tax
        self.q_tax.value = data.tax_weight * data.u_over_v * data.lot_tax
        self.q_cost.value = data.cost_rate * data.u_over_v
        self.kappa.value = data.cost_rate
        self.one_minus_kappa.value = 1.0 - data.cost_rate
        self.cash_room.value = data.cash_room
        self.tax_room.value = data.tax_room
        self.sell_room.value = max(data.sell_room, 0.0)
        if self.G is not None:
            self.G.value = data.risk

    def solve(self, data: ModelData, solvers: tuple[str, ...] = ("OSQP", "CLARABEL")) -> Solution:
        """Solve to optimality, falling back to the next solver when one does not report an
        accurate optimum; raises ``SolveFailure`` (with the statuses seen) when none does."""
        self.set(data)
        seen = []
        for solver in solvers:
            settings = OSQP_SETTINGS if solver == "OSQP" else CLARABEL_SETTINGS if solver == "CLARABEL" else {}
            started = time.perf_counter()
            try:
                with warnings.catch_warnings():  # an inaccurate status is handled below, not warned
                    warnings.simplefilter("ignore", UserWarning)
                    self.problem.solve(solver=solver, warm_start=False, **settings)
            except cp.error.SolverError as exc:
                seen.append(f"{solver}: {exc}")
                continue
            status = self.problem.status
            if status == cp.OPTIMAL:
                return Solution(buys=np.maximum(self.b.value, 0.0), sells=np.maximum(self.s.value, 0.0),
                                objective=float(self.problem.value), status=status, solver=solver,
                                solve_seconds=time.perf_counter() - started)
            seen.append(f"{solver}: {status}")
            if status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE) and solver == solvers[-1]:
                break
        raise SolveFailure(seen)


class SolveFailure(Exception):
    """No solver reached an accurate optimum; ``statuses`` says what each one reported."""

    def __init__(self, statuses: list[str]):
        self.statuses = statuses
        self.infeasible = any("infeasible" in s for s in statuses) and not any("unbounded" in s for s in statuses)
        super().__init__("; ".join(statuses))


class ModelCache:
    """Compiled models by structure, so re-solves of the same account never recompile."""

    def __init__(self, maxsize: int = 64):
        self.maxsize = maxsize
        self._models: dict[Structure, RebalanceModel] = {}

    def get(self, structure: Structure) -> RebalanceModel:
        model = self._models.pop(structure, None) or RebalanceModel(structure)
        self._models[structure] = model  # most recently used last
        while len(self._models) > self.maxsize:
            self._models.pop(next(iter(self._models)))
        return model

    def __len__(self) -> int:
        return len(self._models)
