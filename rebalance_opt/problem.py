"""The rebalancing model: one parametrized convex QP, compiled once and re-solved with new data.

Everything is measured in fractions of U, the value that stays invested after a withdrawal
(U = V − withdrawal, SPEC section 2), so post-trade weights are the variables' sums directly
and the problem stays well scaled whatever the account's size.

Variables
    b[i]  ≥ 0   value bought of symbol i            (fraction of U)
    s[j]  ≥ 0   value sold from lot j               (fraction of U)
    d[k]        post-trade weight − target, per class k and cash (last row)

Objective (SPEC section 2, divided through by nothing: its units are the SPEC's own)
    tracking   ‖d‖²            (or ‖G d‖² + ‖σ ∘ d‖² with a risk model: ex-ante tracking variance,
                                 factor rows G and specific risk σ kept apart so that a
                                 k-factor model over n classes stays k × n, not n × n)
    lot tax    Σ_j q_tax[j] s[j]          q_tax = tax_weight · (U/V) · rate_j · (1 − basis_j / price_j)
    trading    q_cost · (Σ b + Σ s)       q_cost = trade_cost_bps · 10⁻⁴ · (U/V) + TIE_BREAK
(the two linear terms, G d and σ ∘ d enter through auxiliary variables defined by constraints
``tax_cost``, ``trading_cost``, ``risk_factor``, ``risk_specific``; see ``RebalanceModel``)

Constraints
    deviation   d = gap + A_b b − A_s s − κ e_cash (Σ b + Σ s)     (definition of d)
    buy caps    0 ≤ b ≤ b_max    (0 where a symbol may not be bought in this solve)
    lot caps    0 ≤ s ≤ s_max    (a lot's value; 0 where it may not be sold)
    cash        Σ b − Σ s + κ (Σ b + Σ s) ≤ cash_room    (cash after ≥ min_cash + withdrawal)
    tax budget  Σ_j t[j] s[j] ≤ tax_room                 (lot-level tax ≤ max_tax; +inf, and the
                                                          row dropped, where sales cannot reach it)
    sell room   (1 − κ) Σ s ≤ sell_room                   (cash-first stage: sell only what a
                                                          withdrawal needs; later stages: +inf,
                                                          and the row is dropped)

Only parameters change between solves, so the problem is DPP and cvxpy compiles it once.
The incidence matrices A_b, A_s (which symbol is in which class, which lot belongs to which
symbol) come in two layouts:

* ``Bucket`` (household sizes, no risk model): A_b and A_s are parameters too, over a padded
  size bucket (classes, symbols and lots rounded up to a power of 4). One compiled model then
  serves every account that fits the bucket, so thousands of distinct households pay cvxpy's
  compilation a dozen times, not once each. Padding is inert: padded symbols and lots have
  caps of 0 and padded classes a gap and target of 0.
* ``Structure`` (direct indexing, risk models, anything larger, and re-plans of an account in
  the largest bucket, whose padding costs every solve: ``ModelCache.for_account``): A_b and A_s
  are constants, so the compiled program is as sparse as the account; re-plans reuse it.

Solving does not go through ``Problem.solve`` (whose per-call overhead is several times the
solve itself at household sizes): ``CompiledQP`` takes cvxpy's own compiled parametric program
(``get_problem_data``) once, and per solve multiplies its parameter-to-data tensors by the
parameter vector, removes the variables that this solve's bounds fix at zero (symbols that may
not be bought, lots that may not be sold, padding) and calls the solver on what is left.
"""
from __future__ import annotations

import functools
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Union

import clarabel
import cvxpy as cp
import numpy as np
import osqp
import scipy.sparse as sp

# Solver settings. Clarabel (interior point) is the default at every size the benchmarks cover
# (~20 iterations; OSQP needs hundreds to thousands at these accuracies, see benchmarks/). At
# household sizes it runs to a 1e-12 gap, which puts fractional weights within ~1e-8 of the exact
# optimum (an interior point's x converges more slowly than its objective); where it stops short
# of that (AlmostSolved, a few problems in a thousand) it is rerun at 1e-10. OSQP (first-order,
# tight tolerances and polishing) is the last resort. The plan's money is recomputed
# from share counts afterwards, so no solver error reaches the reported amounts.
CLARABEL_SETTINGS = dict(tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12, verbose=False,
                         presolve_enable=False,  # ``QP.reduced`` has already removed what it would
                         # Measured on 260 household solves: without the static regularization
                         # every one reached 1e-12 (two stopped short with it) in 0.58 ms, not
                         # 0.80; dynamic regularization still guards the factorization.
                         static_regularization_enable=False)
CLARABEL_RETRY = dict(CLARABEL_SETTINGS, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
# Last Clarabel rung: static regularization back on. Found on a backtest account (84 lots, many at
# a loss, March 2020) where 1e-12 and 1e-10 without it stopped at AlmostSolved and OSQP at
# "solved inaccurate"; with it the same problem solves to 1e-10 (tests/test_solver.py).
CLARABEL_REGULARIZED = dict(CLARABEL_RETRY, static_regularization_enable=True)
# First rung at household sizes: the same without iterative refinement of the KKT solves, a
# quarter less time per solve at the same iteration count; where it stops short of 1e-12 the
# next rung (with refinement) solves again.
CLARABEL_FAST = dict(CLARABEL_SETTINGS, iterative_refinement_enable=False)
CLARABEL_LADDER = (CLARABEL_FAST, CLARABEL_SETTINGS, CLARABEL_RETRY, CLARABEL_REGULARIZED)
LARGE_FIRST_RUNG = CLARABEL_LADDER.index(CLARABEL_RETRY)  # above TIGHT_MAX_VARIABLES: 1e-10 first
# Above this many free variables 1e-12 is mostly out of reach in double precision (the benchmark's
# direct-index problems stop at AlmostSolved), so those start at 1e-10: still a relative
# objective error far below 1e-6 at those sizes.
TIGHT_MAX_VARIABLES = 1_000
OSQP_SETTINGS = dict(eps_abs=1e-9, eps_rel=1e-9, polishing=True, max_iter=200_000, verbose=False)
DEFAULT_SOLVERS = ("CLARABEL", "OSQP")
# Tie-break: a turnover cost this small (objective units per unit of U traded) picks, among plans
# the SPEC objective cannot tell apart, the one that trades least. Without it, with no tax weight
# and no trading cost, selling one fund to buy another of the same class is free, and the
# interior point returns the middle of that face: large swaps that round badly. It moves the
# SPEC objective by at most TIE_BREAK × turnover (< 1e-9); Solution.objective excludes it.
TIE_BREAK = 1e-9

# Size buckets of the parametric-incidence layout: each dimension rounds up to a power of 4,
# from these minimums, up to these maximums (beyond them an account gets its own structure).
BUCKET_MIN = {"classes": 4, "symbols": 16, "lots": 64}
BUCKET_MAX = {"classes": 64, "symbols": 64, "lots": 1024}
OWN_MODEL_LOTS = 1024  # re-plans in buckets of this many lots get their own model (``ModelCache.for_account``)


@dataclass(frozen=True)
class Structure:
    """A model specific to one account's incidence (which lot belongs to which symbol, which
    symbol to which class) and risk shape: constant incidence, as sparse as the account."""

    class_of_symbol: tuple[int, ...]  # class index per symbol
    symbol_of_lot: tuple[int, ...]    # symbol index per lot
    n_classes: int                    # asset classes, cash excluded
    risk_rows: int = 0                # dense rows of the risk factor G; 0 = squared deviations
    risk_diagonal: bool = False       # a specific-risk term ‖σ ∘ d‖² as well

    @property
    def n_symbols(self) -> int:
        return len(self.class_of_symbol)

    @property
    def n_lots(self) -> int:
        return len(self.symbol_of_lot)


@dataclass(frozen=True)
class Bucket:
    """A model for every account up to these sizes: incidence as parameters, padded."""

    n_classes: int
    n_symbols: int
    n_lots: int

    @staticmethod
    def fitting(n_classes: int, n_symbols: int, n_lots: int) -> Bucket | None:
        """The bucket an account of these sizes uses, or None when it is too large for one."""
        sizes = {"classes": n_classes, "symbols": n_symbols, "lots": n_lots}
        out = {}
        for name, size in sizes.items():
            b = BUCKET_MIN[name]
            while b < size:
                b *= 4
            if b > BUCKET_MAX[name]:
                return None
            out[name] = b
        return Bucket(out["classes"], out["symbols"], out["lots"])


Layout = Union[Structure, Bucket]


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
    tax_room: float        # max_tax / U (+inf: no budget, or one no sales can reach)
    sell_room: float       # net proceeds the solve may raise by selling, / U (+inf: no limit)
    risk: np.ndarray | None = None           # G (risk_rows × (n_classes + 1)), cash column zero
    risk_diagonal: np.ndarray | None = None  # σ per class and cash (cash 0)
    class_of_symbol: np.ndarray | None = None  # incidence, for the bucket layout
    symbol_of_lot: np.ndarray | None = None


@dataclass(frozen=True)
class Solution:
    buys: np.ndarray   # per symbol, fraction of U
    sells: np.ndarray  # per lot, fraction of U
    objective: float
    status: str
    solver: str
    solve_seconds: float


class SolveFailure(Exception):
    """No solver reached an accurate optimum; ``statuses`` says what each one reported."""

    def __init__(self, statuses: list[str]):
        self.statuses = statuses
        self.infeasible = any("infeasible" in s for s in statuses) and not any("unbounded" in s for s in statuses)
        super().__init__("; ".join(statuses))


class RebalanceModel:
    """The compiled QP for one layout (``Structure`` or ``Bucket``); ``solve`` sets parameters
    and re-solves."""

    def __init__(self, layout: Layout):
        self.layout = layout
        padded = isinstance(layout, Bucket)
        n, m, k = layout.n_symbols, layout.n_lots, layout.n_classes + 1
        self.n_symbols, self.n_lots, self.n_rows = n, m, k

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
        risk_rows = 0 if padded else layout.risk_rows
        self.G = P((risk_rows, k), name="risk_factor") if risk_rows else None
        self.sigma = P(k, nonneg=True, name="risk_specific") if not padded and layout.risk_diagonal else None
        if padded:  # incidence as parameters: one compiled model for every account in the bucket
            self.A_b = P((k, n), name="buy_incidence")
            self.A_s = P((k, m), name="sell_incidence")
            a_b, a_s = self.A_b, self.A_s
        else:
            self.A_b = self.A_s = None
            a_b, a_s = _incidence(np.asarray(layout.class_of_symbol, int), np.asarray(layout.symbol_of_lot, int), k)
        e_cash = np.zeros(k)
        e_cash[-1] = 1.0

        turnover = cp.sum(self.b) + cp.sum(self.s)
        lot_tax_cost = self.q_tax @ self.s
        trading_cost = self.q_cost * turnover
        # Every parameter × variable product sits in a constraint, none in the objective: cvxpy
        # expands a parametrized objective into a dense (variables × parameters) array while it
        # compiles (56 GB at 50,000 lots), but keeps constraints sparse. So the objective is
        # ‖d‖² (or ‖y‖² + ‖z‖² with y = G d, z = σ ∘ d) plus two scalars equal to the linear terms.
        self.tax_cost = cp.Variable(name="tax_cost")
        self.trading_cost = cp.Variable(name="trading_cost")
        risk = {}
        if self.G is None and self.sigma is None:
            tracking = cp.sum_squares(self.d)
        else:
            parts = []
            if self.G is not None:
                self.y = cp.Variable(risk_rows, name="factor_exposure")
                risk["risk_factor"] = self.y == self.G @ self.d
                parts.append(cp.sum_squares(self.y))
            if self.sigma is not None:
                self.z = cp.Variable(k, name="specific_exposure")
                risk["risk_specific"] = self.z == cp.multiply(self.sigma, self.d)
                parts.append(cp.sum_squares(self.z))
            tracking = parts[0] + parts[1] if len(parts) > 1 else parts[0]
        self.terms = {"tracking": tracking, "tax": lot_tax_cost, "trading": trading_cost}

        self.constraints = {
            "tax_cost": self.tax_cost == lot_tax_cost,
            "trading_cost": self.trading_cost == trading_cost,
            **risk,
            "deviation": self.d == self.gap + a_b @ self.b - a_s @ self.s - self.kappa * turnover * e_cash,
            "buy_nonneg": self.b >= 0,
            "buy_cap": self.b <= self.b_max,
            "sell_nonneg": self.s >= 0,
            "lot_cap": self.s <= self.s_max,
            "cash": cp.sum(self.b) - cp.sum(self.s) + self.kappa * turnover <= self.cash_room,
            "tax_budget": self.lot_tax @ self.s <= self.tax_room,
            "sell_room": self.one_minus_kappa * cp.sum(self.s) <= self.sell_room,
        }
        self.problem = cp.Problem(cp.Minimize(tracking + self.tax_cost + self.trading_cost),
                                  list(self.constraints.values()))
        assert self.problem.is_dpp()
        self._set_placeholder_values()
        self.compiled = CompiledQP(self.problem)
        self._last_incidence: tuple | None = None  # (structure, dense incidence), see ``_incidence``
        self._row_maps: dict[int, np.ndarray] = {}  # ``_rows`` per class count

    # --- parameters -----------------------------------------------------------------------------
    def _set_placeholder_values(self) -> None:
        """Give every parameter a value (compilation checks them); ``values`` replaces them."""
        for p in self.problem.parameters():
            p.value = np.zeros(p.shape)

    def values(self, data: ModelData) -> dict[int, np.ndarray]:
        """One solve's numbers by parameter id (padded with inert zeros for a bucket). They go
        straight into the compiled program's parameter vector: assigning ``Parameter.value``
        re-validates every array, which costs more than the solve at household sizes."""
        k_real = len(data.gap)
        rows = self._rows(k_real)
        out = {
            self.gap.id: _padded(data.gap, self.n_rows, rows),
            self.b_max.id: _padded(np.maximum(data.b_max, 0.0), self.n_symbols),
            self.s_max.id: _padded(np.maximum(data.s_max, 0.0), self.n_lots),
            self.lot_tax.id: _padded(data.lot_tax, self.n_lots),
            self.q_tax.id: _padded(data.tax_weight * data.u_over_v * data.lot_tax, self.n_lots),
            self.q_cost.id: np.float64(data.cost_rate * data.u_over_v + TIE_BREAK),
            self.kappa.id: np.float64(data.cost_rate),
            self.one_minus_kappa.id: np.float64(1.0 - data.cost_rate),
            self.cash_room.id: np.float64(data.cash_room),
            self.tax_room.id: np.float64(data.tax_room),
            self.sell_room.id: np.float64(max(data.sell_room, 0.0)),
        }
        if self.G is not None:
            out[self.G.id] = np.asarray(data.risk, dtype=float)
        if self.sigma is not None:
            out[self.sigma.id] = np.asarray(data.risk_diagonal, dtype=float)
        if self.A_b is not None:
            out[self.A_b.id], out[self.A_s.id] = self._incidence(rows, data)
        return out

    def _incidence(self, rows: np.ndarray, data: ModelData) -> tuple[np.ndarray, np.ndarray]:
        """``_incidence_dense`` of an account's structure, kept for the last structure seen (the
        stages of a plan and re-plans of an account repeat it). Read-only arrays, swapped in as
        one tuple, so threads sharing the model never see half an entry."""
        class_of_symbol = np.asarray(data.class_of_symbol, int)
        symbol_of_lot = np.asarray(data.symbol_of_lot, int)
        key = (len(rows), class_of_symbol.tobytes(), symbol_of_lot.tobytes())
        last = self._last_incidence
        if last is None or last[0] != key:
            cls = rows[class_of_symbol]
            lot_cls = cls[symbol_of_lot] if len(symbol_of_lot) else np.zeros(0, int)
            # column-major, as θ holds them: ``parameter_vector`` then copies them in one piece
            a_b, a_s = (np.asfortranarray(x) for x in _incidence_dense(cls, lot_cls, self.n_rows,
                                                                          self.n_symbols, self.n_lots))
            a_b.flags.writeable = a_s.flags.writeable = False
            last = (key, (a_b, a_s))
            self._last_incidence = last
        return last[1]

    def set(self, data: ModelData) -> None:
        """Assign one solve's numbers to the cvxpy parameters (for ``Problem.solve``)."""
        values = self.values(data)
        for p in self.problem.parameters():
            p.value = values[p.id]

    def _rows(self, k_real: int) -> np.ndarray:
        """Row of each real class (and cash, last) in the model: padding sits before cash
        (read-only, kept per class count)."""
        rows = self._row_maps.get(k_real)
        if rows is None:
            rows = np.append(np.arange(k_real - 1), self.n_rows - 1)
            rows.flags.writeable = False
            self._row_maps[k_real] = rows
        return rows

    # --- solving --------------------------------------------------------------------------------
    def solve(self, data: ModelData, solvers: tuple[str, ...] = DEFAULT_SOLVERS) -> Solution:
        """Solve to optimality, falling back to the next solver when one does not report an
        accurate optimum; raises ``SolveFailure`` (with the statuses seen) when none does."""
        qp = self.compiled.apply(self.values(data))
        seen = []
        for solver in solvers:
            started = time.perf_counter()
            status, x, objective = qp.solve(solver)
            seconds = time.perf_counter() - started
            if status == cp.OPTIMAL:
                return self._solution(x, objective, data, solver, seconds)
            seen.append(f"{solver}: {status}")
            if status == cp.INFEASIBLE and solver == solvers[-1]:
                break
        raise SolveFailure(seen)

    def solve_with_cvxpy(self, data: ModelData, solver: str = "CLARABEL", **settings) -> Solution:
        """The same solve through ``Problem.solve`` (cvxpy's own path): a cross-check for tests
        and the benchmarks, never used to make a plan."""
        self.set(data)
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self.problem.solve(solver=solver, **settings)
        if self.problem.status != cp.OPTIMAL:
            raise SolveFailure([f"{solver}: {self.problem.status}"])
        return Solution(np.maximum(self.b.value[: len(data.b_max)], 0.0),
                        np.maximum(self.s.value[: len(data.s_max)], 0.0), float(self.problem.value),
                        self.problem.status, solver, time.perf_counter() - started)

    def _solution(self, x: np.ndarray, objective: float, data: ModelData, solver: str, seconds: float) -> Solution:
        """Buys and sells within their caps: a solver meets bounds to its tolerance (a lot sold
        in full came back 1e-9 of U over its cap), the plan's arithmetic assumes them exactly."""
        buys = self.compiled.value(self.b, x)[: len(data.b_max)]
        sells = self.compiled.value(self.s, x)[: len(data.s_max)]
        objective -= TIE_BREAK * float(buys.sum() + sells.sum())  # the SPEC objective, without it
        buys = np.minimum(np.maximum(buys, 0.0), np.maximum(data.b_max, 0.0))  # np.clip, at a third of its overhead
        sells = np.minimum(np.maximum(sells, 0.0), np.maximum(data.s_max, 0.0))
        return Solution(buys, sells, objective, cp.OPTIMAL, solver, seconds)


def _incidence(class_of_symbol: np.ndarray, symbol_of_lot: np.ndarray, k: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """A buy adds to its class and takes from cash (the last row); a sale does the opposite."""
    n, m = len(class_of_symbol), len(symbol_of_lot)
    lot_class = class_of_symbol[symbol_of_lot] if m else np.zeros(0, int)
    rows_b = np.concatenate([class_of_symbol, np.full(n, k - 1)])
    rows_s = np.concatenate([lot_class, np.full(m, k - 1)])
    a_b = sp.csr_matrix((np.concatenate([np.ones(n), -np.ones(n)]), (rows_b, np.tile(np.arange(n), 2))), shape=(k, n))
    a_s = sp.csr_matrix((np.concatenate([np.ones(m), -np.ones(m)]), (rows_s, np.tile(np.arange(m), 2))), shape=(k, m))
    return a_b, a_s


def _incidence_dense(cls: np.ndarray, lot_cls: np.ndarray, k: int, n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The incidence of ``_incidence`` as dense padded arrays (zero columns for padding)."""
    a_b, a_s = np.zeros((k, n)), np.zeros((k, m))
    a_b[cls, np.arange(len(cls))] = 1.0
    a_b[k - 1, : len(cls)] = -1.0
    a_s[lot_cls, np.arange(len(lot_cls))] = 1.0
    a_s[k - 1, : len(lot_cls)] = -1.0
    return a_b, a_s


def _padded(values: np.ndarray, size: int, at: np.ndarray | None = None) -> np.ndarray:
    out = np.zeros(size)
    if at is None:
        out[: len(values)] = values
    else:
        out[at] = values
    return out


# --- the compiled program, applied and solved ------------------------------------------------------
class CompiledQP:
    """cvxpy's compiled parametric program of a problem, applied to parameter values by its own
    tensors and handed to the solver without ``Problem.solve``'s per-call machinery.

    cvxpy compiles ``minimize ½xᵀPx + qᵀx + d  s.t.  A x + b ∈ {0}ᵉ × ℝ₊ⁱ`` with P, q, d, A, b
    affine in the parameter vector θ: ``vec([A b]) = T_A θ``, ``[q; d] = T_q θ``, ``vec(P) = T_P θ``
    (kept stacked as one matrix ``T``).
    ``apply`` evaluates those products (on the structurally nonzero rows only) and returns a
    ``QP`` in CSC form with a fixed sparsity pattern.
    """

    def __init__(self, problem: cp.Problem):
        data, _, _ = problem.get_problem_data(cp.OSQP)  # compiles once; cvxpy caches the program
        prog = data[cp.settings.PARAM_PROB]
        if prog.lower_bounds is not None or prog.upper_bounds is not None:  # pragma: no cover
            raise RuntimeError("variable bounds in the compiled program are not supported")
        self.prog = prog
        self.n = n = prog.x.size
        self.n_eq, self.n_ineq = prog.cone_dims.zero, prog.cone_dims.nonneg
        rows = self.n_eq + self.n_ineq
        if not {p.id for p in prog.parameters} <= {p.id for p in problem.parameters()}:  # pragma: no cover
            raise RuntimeError("cvxpy transformed the parameters; the compiled program cannot be applied directly")
        # (id, column in θ, size, a matrix: column-major into θ)
        self.parameters = [(p.id, prog.param_id_to_col[p.id], p.size, len(p.shape) > 1) for p in prog.parameters]
        self.param_size = prog.total_param_size

        # The tensors are tall (one row per entry of vec([A b]): rows × (n + 1) of them), so they
        # are only ever handled by their stored entries, never by row (a CSR index would be a
        # rows × n array).
        flat, t_a = _rows_of(prog.A, lambda i: i < rows * n)            # → A's values, CSC order
        self.a_rows, self.a_cols = flat % rows, flat // rows
        _, t_b = _rows_of(prog.A, lambda i: i >= rows * n, keep_all=rows * n)  # → b (dense, every row)
        t_q = sp.csr_matrix(prog.q)                                        # → q, then the constant d
        flat_p, t_p = _rows_of(prog.P, lambda i: (i % n) <= (i // n))      # → upper triangle of P
        # Stacked: one product per solve (each row's sum is the same as on its own).
        self.T = sp.vstack([t_a, t_b, t_q, t_p], format="csr")
        self.splits = tuple(int(x) for x in np.cumsum([t_a.shape[0], t_b.shape[0], t_q.shape[0]]))
        self.p_rows, self.p_cols = flat_p % n, flat_p // n
        self.p_half = np.where(self.p_rows == self.p_cols, 0.5, 1.0)  # ½ on P's diagonal (``QP.objective``)

        # Rows that bound one variable (x ≥ l or x ≤ u): where a solve's bounds pin a variable at
        # zero (not buyable, not sellable, padding) the variable and those rows are removed.
        count = np.bincount(self.a_rows, minlength=rows)
        single = (count == 1)[self.a_rows] & (self.a_rows >= self.n_eq)
        self.bound_entries = np.flatnonzero(single)
        self.row_is_eq = np.arange(rows) < self.n_eq
        self.offsets = {v.id: (prog.var_id_to_col[v.id], v.size) for v in prog.variables}
        self._reductions: dict[bytes, Reduction] = {}

    def reduction(self, a: np.ndarray, b: np.ndarray, p: np.ndarray) -> "Reduction":
        """What ``QP.reduced`` removes for these values of A, b and P, and where the rest goes.
        It depends on signs alone, and only on those ``Reduction.of`` reads: which entries of A
        and P are nonzero, the sign of a bound row's entry, which equality rows have b = 0, and
        the sign (or +inf) of each inequality row's b. So it is kept per such pattern (the most
        recent ones): re-plans of an account, the stages of one plan, and accounts of one shape
        whose gaps or gains differ in sign repeat them."""
        return _recently_used(self._reductions, self.pattern(a, b, p), REDUCTION_CACHE,
                              lambda: Reduction.of(self, a, b, p))

    def pattern(self, a: np.ndarray, b: np.ndarray, p: np.ndarray) -> bytes:
        """The key of ``reduction``: one bit per entry and test (packed: a bucket's A has ~78,000
        entries, and hashing and comparing a byte per entry cost more than the tests)."""
        e = self.n_eq
        return b"".join(np.packbits(m).tobytes() for m in (
            a != 0.0, a[self.bound_entries] > 0.0, p != 0.0,
            b[:e] == 0.0, b[e:] > 0.0, b[e:] < 0.0, b[e:] == np.inf))

    def parameter_vector(self, values: dict[int, np.ndarray]) -> np.ndarray:
        """θ: every parameter's value, column-major, at its column; 1 in the last (constant)."""
        theta = np.empty(self.param_size + 1)
        for pid, col, size, matrix in self.parameters:
            theta[col: col + size] = values[pid].ravel(order="F") if matrix else values[pid]
        theta[-1] = 1.0
        return theta

    def apply(self, values: dict[int, np.ndarray]) -> QP:
        theta = self.parameter_vector(values)
        y = self.T @ theta
        s_a, s_b, s_q = self.splits
        a, b, qd, p = y[:s_a], y[s_a:s_b], y[s_b:s_q], y[s_q:]
        return QP(self, a, b, qd[:-1], float(qd[-1]), p)

    def value(self, variable: cp.Variable, x: np.ndarray) -> np.ndarray:
        """``variable``'s entries of x. A variable of size 0 (the lots of an account that holds
        none) is not in cvxpy's compiled program at all: its value is empty."""
        if variable.id not in self.offsets and variable.size == 0:
            return np.zeros(0)
        col, size = self.offsets[variable.id]
        return x[col: col + size]


REDUCTION_CACHE = 64  # reduction patterns kept per compiled program
DROP_PINNED = True    # a variable alone in an equality row with b = 0 goes with its row (tests turn it off)


@dataclass(frozen=True)
class Reduction:
    """What the solver is not given, for one sign pattern of A, b and P: the variables fixed at
    zero, those substituted out, the rows that go with them; and the CSC structure of the rest
    of A and P (a solve fills in the values, ``QP.reduced``). Immutable (arrays read-only), so
    concurrent plans (the web server's threads) share it safely."""

    keep_col: np.ndarray  # the columns the solver sees
    infeasible: bool      # a removed row is violated
    # Substituted variables: column, its row's entry for it, that row; and the row's other
    # entries (entry, which substitution, full and reduced column).
    sub_cols: np.ndarray
    sub_entries: np.ndarray
    sub_rows: np.ndarray
    row_entries: np.ndarray
    row_owner: np.ndarray
    row_cols: np.ndarray
    row_cols_reduced: np.ndarray
    a_entries: np.ndarray
    a_indices: list[int]
    a_indptr: list[int]
    a_shape: tuple[int, int]
    p_entries: np.ndarray
    p_indices: list[int]
    p_indptr: list[int]
    p_shape: tuple[int, int]
    keep_row: np.ndarray
    n_eq: int

    @staticmethod
    def of(c: "CompiledQP", a: np.ndarray, b: np.ndarray, p: np.ndarray) -> "Reduction":
        """A variable is fixed at zero by its bound rows (x ≥ −b/coef where coef > 0, x ≤ −b/coef
        where coef < 0), when its greatest lower bound and least upper bound are both 0: read
        off the signs of −b/coef, which are those of −b and b. Or by an equality row in which it
        is the only nonzero entry, with b = 0 (a bucket's padding classes: deviation 0).
        An inequality row with b = +inf never binds and goes too (a stage with no sell room).
        Removing those changes no other variable's value (tests/test_solver.py), and made
        Clarabel's household solves 10% faster.

        A variable without a quadratic term whose one nonzero entry is in an equality row is
        that row solved for it (``tax_cost`` and ``trading_cost``: cvxpy needs them to compile
        the objective sparsely, the solver does not): it is substituted out of the objective,
        and its row goes (``QP.reduced``, ``expand``). Two dense rows fewer: Clarabel's household
        solves 13.3 -> 11.2 iterations, a fifth less time."""
        e = c.bound_entries
        coef, col, sign_b = a[e], c.a_cols[e], np.sign(b[c.a_rows[e]])
        lower = np.full(c.n, -np.inf)
        upper = np.full(c.n, np.inf)
        np.maximum.at(lower, col[coef > 0], -sign_b[coef > 0])
        np.minimum.at(upper, col[coef < 0], sign_b[coef < 0])
        keep_col = ~((lower == 0.0) & (upper == 0.0))
        # Only A's nonzero entries matter below, and a bucket's are few (its incidence is dense
        # parameters, mostly 0): every entry-wise step works on them, as entry numbers in order.
        nz = np.flatnonzero(a != 0.0)
        rows, cols = c.a_rows[nz], c.a_cols[nz]
        is_eq = c.row_is_eq[rows]
        if DROP_PINNED:
            eq_rows = rows[is_eq]
            alone = (np.bincount(eq_rows, minlength=c.n_eq)[eq_rows] == 1) & (b[eq_rows] == 0.0)
            keep_col[cols[is_eq][alone]] = False

        never_binds = (b == np.inf) & ~c.row_is_eq
        live = keep_col[cols] & ~never_binds[rows]
        n_rows = len(c.row_is_eq)

        in_p = np.zeros(c.n, dtype=bool)
        p_nonzero = p != 0.0
        in_p[c.p_rows[p_nonzero]] = in_p[c.p_cols[p_nonzero]] = True
        single = (np.bincount(cols[live], minlength=c.n) == 1) & ~in_p
        candidates = np.flatnonzero(live & single[cols] & is_eq)  # positions in nz
        _, first = np.unique(rows[candidates], return_index=True)  # one per row
        sub_entries = nz[candidates[np.sort(first)]]
        sub_cols, sub_rows = c.a_cols[sub_entries], c.a_rows[sub_entries]
        keep_col[sub_cols] = False
        keep_col.flags.writeable = False
        col_map = np.cumsum(keep_col) - 1
        owner = np.full(n_rows, -1)
        owner[sub_rows] = np.arange(len(sub_rows))
        live &= keep_col[cols]
        owned = owner[rows] >= 0
        row_entries = nz[live & owned]
        row_cols = c.a_cols[row_entries]

        entry = live & ~owned
        keep_row = np.bincount(rows[entry], minlength=n_rows) > 0
        row_map = np.cumsum(keep_row) - 1
        n_kept, m_kept = int(keep_col.sum()), int(keep_row.sum())
        a_entries = nz[entry]
        p_entries = np.flatnonzero(keep_col[c.p_rows] & keep_col[c.p_cols] & p_nonzero)
        dropped = ~keep_row
        dropped[sub_rows] = False  # solved for their variables, not dropped
        infeasible = bool((b[dropped & c.row_is_eq] != 0.0).any() or (b[dropped & ~c.row_is_eq] < 0.0).any())
        arrays = (sub_cols, sub_entries, sub_rows, row_entries, owner[c.a_rows[row_entries]], row_cols,
                  col_map[row_cols])
        for x in (*arrays, a_entries, p_entries, keep_row):
            x.flags.writeable = False
        return Reduction(
            keep_col, infeasible, *arrays,
            a_entries, row_map[c.a_rows[a_entries]].tolist(),
            _indptr(col_map[c.a_cols[a_entries]], n_kept).tolist(), (m_kept, n_kept),
            p_entries, col_map[c.p_rows[p_entries]].tolist(),
            _indptr(col_map[c.p_cols[p_entries]], n_kept).tolist(), (n_kept, n_kept),
            keep_row, int((keep_row & c.row_is_eq).sum()))

    def expand(self, qp: "QP", x_kept: np.ndarray) -> np.ndarray:
        """The full x from the solver's: zeros where fixed, substituted variables from their rows
        (a_rt x_t + Σ_j a_rj x_j + b_r = 0)."""
        x = np.zeros(qp.compiled.n)
        x[self.keep_col] = x_kept
        if len(self.sub_cols):
            rest = np.bincount(self.row_owner, weights=qp.a[self.row_entries] * x[self.row_cols],
                               minlength=len(self.sub_cols))
            x[self.sub_cols] = -(qp.b[self.sub_rows] + rest) / qp.a[self.sub_entries]
        return x


@dataclass(frozen=True)
class Csc:
    """A CSC matrix as plain Python lists: the attributes Clarabel's binding reads from a scipy
    matrix (data, indices, indptr, shape, nnz; has_canonical_format since 0.11). Its extractor
    walks each array element by element; from a numpy array that makes a numpy scalar per
    element, from a list it does not: measured on household QPs, a solver set up a fifth faster
    (the same values, the same solution to the bit). ``scipy()`` for everything else, and for a
    binding that wants more of a scipy matrix than this (``_clarabel`` falls back to it)."""

    data: list[float]
    indices: list[int]
    indptr: list[int]
    shape: tuple[int, int]
    has_canonical_format: bool = True
    has_sorted_indices: bool = True

    @property
    def nnz(self) -> int:
        return len(self.data)

    def scipy(self) -> sp.csc_matrix:
        return sp.csc_matrix((np.array(self.data, dtype=float), np.array(self.indices, dtype=np.int32),
                              np.array(self.indptr, dtype=np.int32)), shape=self.shape)


def _indptr(cols: np.ndarray, n_cols: int) -> np.ndarray:
    """CSC column pointers of entries already in column-major order."""
    indptr = np.zeros(n_cols + 1, dtype=np.int32)
    np.cumsum(np.bincount(cols, minlength=n_cols), out=indptr[1:])
    return indptr


@dataclass
class QP:
    """One solve's data: ``minimize ½xᵀPx + qᵀx + d  s.t.  A x + b ∈ {0}ᵉ × ℝ₊ⁱ``, values on
    the compiled program's fixed sparsity pattern."""

    compiled: CompiledQP
    a: np.ndarray   # A's values (pattern: compiled.a_rows, a_cols)
    b: np.ndarray
    q: np.ndarray
    d: float
    p: np.ndarray   # upper triangle of P (pattern: compiled.p_rows, p_cols)

    def reduced(self, sign: float = 1.0):
        """The problem the solver is given (``Reduction``): (reduction, P, q, sign × A, b), P and
        A as ``Csc``, or None when a removed row is violated (the problem is infeasible).
        Clarabel takes −A (``sign=-1``); ``reduction.expand`` maps its x back, and
        ``reduction.n_eq`` is the number of equality rows."""
        r = self.compiled.reduction(self.a, self.b, self.p)
        if r.infeasible:
            return None
        a = self.a[r.a_entries]
        A = Csc((a if sign == 1.0 else sign * a).tolist(), r.a_indices, r.a_indptr, r.a_shape)
        P = Csc(self.p[r.p_entries].tolist(), r.p_indices, r.p_indptr, r.p_shape)
        q = self.q[r.keep_col]
        if len(r.sub_cols):  # q_t x_t = −(q_t / a_rt)(Σ_j a_rj x_j + b_r): the constant is dropped
            ratio = self.q[r.sub_cols] / self.a[r.sub_entries]
            q -= np.bincount(r.row_cols_reduced, weights=ratio[r.row_owner] * self.a[r.row_entries],
                             minlength=len(q))
        return r, P, q, A, self.b[r.keep_row]

    def solve(self, solver: str) -> tuple[str, np.ndarray | None, float]:
        """(cvxpy status, full x or None, objective) from ``solver`` (CLARABEL or OSQP)."""
        reduced = self.reduced(-1.0 if solver == "CLARABEL" else 1.0)
        if reduced is None:
            return cp.INFEASIBLE, None, np.inf
        r, P, q, A, b = reduced  # A is −A for Clarabel (its own form)
        n_eq = r.n_eq
        if not r.keep_col.any():
            x = r.expand(self, np.zeros(0))
            return cp.OPTIMAL, x, self.objective(x)
        if solver == "CLARABEL":
            first = 0 if P.shape[0] <= TIGHT_MAX_VARIABLES else LARGE_FIRST_RUNG
            for rung in range(first, len(CLARABEL_LADDER)):
                status, xr = _clarabel(P, q, A, b, n_eq, _clarabel_settings(rung))
                if not status.startswith("inaccurate"):
                    break
        elif solver == "OSQP":
            status, xr = _osqp(P, q, A, b, n_eq)
        else:
            raise ValueError(f"unknown solver {solver!r}")
        if xr is None:
            return status, None, np.inf
        x = r.expand(self, xr)
        return status, x, self.objective(x)

    def objective(self, x: np.ndarray) -> float:
        """½xᵀPx + qᵀx + d, P given by its upper triangle."""
        r, c = self.compiled.p_rows, self.compiled.p_cols
        quad = float(np.sum(self.compiled.p_half * self.p * x[r] * x[c]))
        return quad + float(self.q @ x) + self.d


def _rows_of(tensor, select, keep_all: int | None = None) -> tuple[np.ndarray, sp.csr_matrix]:
    """The selected stored rows of a tall parameter tensor as a compact CSR matrix, with their
    original row numbers (sorted). ``keep_all=start``: every row from ``start`` on, stored or not
    (for b, whose zero entries are values too)."""
    coo = sp.coo_matrix(tensor)
    pick = select(coo.row)
    row, col, val = coo.row[pick], coo.col[pick], coo.data[pick]
    if keep_all is not None:
        flat = np.arange(keep_all, tensor.shape[0])
    else:
        flat = np.unique(row)
    index = np.searchsorted(flat, row)
    return flat, sp.csr_matrix((val, (index, col)), shape=(len(flat), tensor.shape[1]))


def _clarabel(P, q, minus_A, b, n_eq, settings) -> tuple[str, np.ndarray | None]:
    """Clarabel on ``minimize ½xᵀPx + qᵀx  s.t.  −(minus_A) x + b ∈ {0}ⁿᵉ × ℝ₊`` (its own form:
    minus_A x + s = b, s in the cones); P and minus_A as ``Csc`` (or scipy CSC) matrices."""
    cones = ([clarabel.ZeroConeT(n_eq)] if n_eq else []) + \
            ([clarabel.NonnegativeConeT(minus_A.shape[0] - n_eq)] if minus_A.shape[0] > n_eq else [])
    try:
        solver = clarabel.DefaultSolver(P, q.tolist(), minus_A, b.tolist(), cones, settings)
    except (AttributeError, TypeError):
        if not isinstance(P, Csc):
            raise
        # a Clarabel binding that reads more of a scipy matrix than ``Csc`` carries: give it one
        solver = clarabel.DefaultSolver(P.scipy(), q, minus_A.scipy(), b, cones, settings)
    result = solver.solve()
    status = str(result.status)
    if status == "Solved":
        return cp.OPTIMAL, np.asarray(result.x)
    if status == "PrimalInfeasible":
        return cp.INFEASIBLE, None
    if status == "DualInfeasible":
        return cp.UNBOUNDED, None
    return f"inaccurate ({status})", None


@functools.lru_cache(maxsize=len(CLARABEL_LADDER))
def _clarabel_settings(rung: int) -> clarabel.DefaultSettings:
    settings = clarabel.DefaultSettings()
    for key, value in CLARABEL_LADDER[rung].items():
        setattr(settings, key, value)
    return settings


def _osqp(P, q, A, b, n_eq) -> tuple[str, np.ndarray | None]:
    lower = -b
    upper = np.where(np.arange(len(b)) < n_eq, -b, np.inf)
    solver = osqp.OSQP()
    solver.setup(P.scipy(), q, A.scipy(), lower, upper, **OSQP_SETTINGS)
    result = solver.solve()
    status = result.info.status
    if status == "solved":
        return cp.OPTIMAL, np.asarray(result.x)
    if status in ("primal infeasible", "primal_infeasible"):
        return cp.INFEASIBLE, None
    return f"inaccurate ({status})", None




class ModelCache:
    """Compiled models by layout, so re-solves never recompile (most recently used kept)."""

    def __init__(self, maxsize: int = 64, remembered: int = 1024):
        self.maxsize = maxsize
        self._models: dict[Layout, RebalanceModel] = {}
        self.remembered = remembered
        self._planned: dict[Structure, bool] = {}  # structures planned through a bucket, most recent last

    def get(self, layout: Layout) -> RebalanceModel:
        return _recently_used(self._models, layout, self.maxsize, lambda: RebalanceModel(layout))

    def for_account(self, structure: Structure, bucket: Bucket | None) -> RebalanceModel:
        """The model an account plans with: its own ``structure`` when no bucket fits it, else
        the shared ``bucket`` (one compiled model for thousands of distinct accounts), except
        that a re-plan (the structure planned again: new prices or policy, the same lots) in a
        bucket of OWN_MODEL_LOTS lots gets its own model. Both give the same reduced QP (plans
        identical on 1,900 accounts), but the largest bucket's padded incidence (~70,000 cells)
        costs every solve: a 500-lot household's QP takes 2.1 ms through it, 1.7 ms through its
        own model, compiled in ~20 ms. In smaller buckets the two solve alike (within 60 µs a
        plan at 200-256 lots), so a second compile would not pay."""
        if bucket is None:
            return self.get(structure)
        if bucket.n_lots >= OWN_MODEL_LOTS and self._again(structure):
            return self.get(structure)
        return self.get(bucket)

    def _again(self, structure: Structure) -> bool:
        """Whether ``structure`` was planned before (its model compiled, or remembered among
        the last ``remembered`` structures planned through a bucket); it is remembered now."""
        with _STORE_LOCK:
            if structure in self._models:
                return True
            seen = self._planned.pop(structure, False)
            self._planned[structure] = True
            while len(self._planned) > self.remembered:
                self._planned.pop(next(iter(self._planned)))
            return seen

    def __len__(self) -> int:
        return len(self._models)


def _recently_used(store: dict, key, maxsize: int, make):
    """``store[key]``, made by ``make()`` when missing; the store keeps the ``maxsize`` most
    recently used entries (a dict in use order, most recent last). Safe to share between threads:
    the dict is only touched under a lock (``make`` runs outside it; if two threads make the same
    entry at once, the first one stored is kept)."""
    with _STORE_LOCK:
        value = store.pop(key, None)
        if value is not None:
            store[key] = value
            return value
    made = make()
    with _STORE_LOCK:
        value = store.pop(key, made)
        store[key] = value
        while len(store) > maxsize:
            store.pop(next(iter(store)))
        return value


_STORE_LOCK = threading.Lock()
