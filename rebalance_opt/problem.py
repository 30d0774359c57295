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
solve itself at household sizes): ``qp.CompiledQP`` takes cvxpy's own compiled parametric program
(``get_problem_data``) once, and per solve multiplies its parameter-to-data tensors by the
parameter vector, removes the variables that this solve's bounds fix at zero (symbols that may
not be bought, lots that may not be sold, padding) and calls the solver on what is left.
"""
from __future__ import annotations

import threading
import time
import warnings
from dataclasses import dataclass
from typing import Union

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from .qp import DEFAULT_SOLVERS, CompiledQP, recently_used

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


class ModelCache:
    """Compiled models by layout, so re-solves never recompile (most recently used kept)."""

    def __init__(self, maxsize: int = 64, remembered: int = 1024):
        self.maxsize = maxsize
        self._models: dict[Layout, RebalanceModel] = {}
        self.remembered = remembered
        self._planned: dict[Structure, bool] = {}  # structures planned through a bucket, most recent last
        self._lock = threading.Lock()  # ``_planned`` is shared by the threads planning with this cache

    def __getstate__(self) -> dict:
        """A cache goes to another process (a backtest's strategies, a batch's planner) empty:
        its compiled models and lock belong to this one, and are made again there on demand."""
        return {"maxsize": self.maxsize, "remembered": self.remembered}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def get(self, layout: Layout) -> RebalanceModel:
        return recently_used(self._models, layout, self.maxsize, lambda: RebalanceModel(layout))

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
        with self._lock:
            if structure in self._models:
                return True
            seen = self._planned.pop(structure, False)
            self._planned[structure] = True
            while len(self._planned) > self.remembered:
                self._planned.pop(next(iter(self._planned)))
            return seen

    def __len__(self) -> int:
        return len(self._models)
