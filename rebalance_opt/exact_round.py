"""The rounding's exact fallback: a whole-share point meeting every hard constraint, found by a MILP.

``rounding.round_trades`` searches a few share counts per symbol, and only the symbols the continuous
solution trades. Where a withdrawal must be raised under ``min_trade`` and ``max_tax``, no
combination of those may meet the hard constraints although a plan in whole shares exists (one
that sells a different fund, or one larger order instead of several small ones). Then, and only
then, this module solves a mixed-integer program over every symbol the stage may trade
(``scipy.optimize.milp``, HiGHS): its answer is a feasible whole-share point, or the proof that
the stage has none.

Variables (money in the account currency, shares in steps of a share or of a millionth)
    b[i]  shares bought of each symbol the stage may buy (integer steps; fractional plans: shares,
          continuous, rounded down to millionths afterwards)
    B[i]  1 if symbol i is bought (binary): b > 0 only if B, and then b·price >= min_trade
    s[j]  shares sold of each lot the stage may sell (continuous, <= the lot)
    n[i]  shares sold of symbol i (whole shares) = Σ_j∈i s[j], unless A[i] (fractional plans: no
          n, A; the sum is rounded up to millionths, within the symbol's shares)
    A[i]  1 if every sellable share of i is sold (binary; only where that is not a whole count)
    S[i]  1 if symbol i is sold (binary): Σ s > 0 only if S, and then its value >= min_trade;
          B[i] + S[i] <= 1 (a symbol is bought or sold, never both)
    t[r]  the square of one row of the tracking term (below)

Rows: cash after >= min_cash + withdrawal, lot tax <= max_tax, and in the cash-first stage the
sell room: selling just what the withdrawal needs, that is net proceeds at most the need plus
one step of any symbol sold (a share, or the whole order at min_trade) — where that leaves no
point (the tax budget needs a harvested loss beyond it), the least proceeds any feasible point
needs take the need's place.

Objective: SPEC section 2's, with the tracking term Σ_r (ρ_r · dev)² (rows of the identity,
√ of specific variances, factor rows) replaced by the maximum of its tangents at points around
the continuous optimum: a lower bound, exact at the points, within a quarter of a spacing² between.
The point found is then polished by the rounding's own local search on the exact objective.
"""
from __future__ import annotations

import ctypes
import math
import os
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .book import Book

# The search stops after NODE_LIMIT branch-and-bound nodes, a count, so that a plan depends on its
# inputs only and not on the machine's speed (HiGHS's MIP search is deterministic): 231 nodes at
# most on 600 stress households (13 MILPs, 0.9 s the slowest). TIME_LIMIT is a last guard only.
NODE_LIMIT = 5000
TIME_LIMIT = 60.0  # seconds per MILP
MIP_GAP = 1e-4    # HiGHS's default; the polish that follows works on the exact objective anyway
TIE_BREAK = 1e-9   # per unit of U traded, as problem.TIE_BREAK: of two equal plans, the one trading less
# Tangent points of each tracking row, either side of the continuous optimum, in units of the
# largest single order's effect on it (a share of the dearest symbol, or min_trade): doubling
# from a millionth (fractional plans, a share's millionth) to 128, so that between two points the
# tangents undershoot the square by at most a quarter of the distance from the optimum.
CUT_OFFSETS = (0.0,) + tuple(sign * 2.0 ** k for k in range(-20, 8) for sign in (1.0, -1.0))


@dataclass
class ExactResult:
    shares: np.ndarray | None   # signed shares per symbol; None when no point was found
    proven: bool                # None and proven: the stage has no feasible point at all
    proceeds: float = 0.0       # net proceeds of the point's sales
    solves: int = 0


_STDOUT_LOCK = threading.Lock()


@contextmanager
def _stdout_discarded():
    """The process's stdout (file descriptor 1) points at the null device while HiGHS runs: the
    HiGHS 1.12 in scipy prints a stray debug line ("HighsMipSolverData::transformNewIntegerFeasible
    Solution tmpSolver.run();") straight to stdout when a presolved solution needs repair
    (ERGO-Code/HiGHS#2783), whatever its output options: stdout of ``generate --json`` holds only
    JSON (SPEC section 3), and on stderr the line came once per repair (hundreds in a backtest
    with ``milp_rounding``), telling a user nothing. C's buffers are flushed before stdout is put
    back. One solve at a time per process (a lock): another thread's prints meanwhile are lost too."""
    with _STDOUT_LOCK:
        try:
            sys.stdout.flush()
            saved = os.dup(1)
        except (OSError, ValueError, AttributeError):  # no stdout to protect
            yield
            return
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, 1)
            finally:
                os.close(null)
            yield
        finally:
            try:
                ctypes.CDLL(None).fflush(None)
            except (OSError, AttributeError, TypeError):  # no C library to flush (not POSIX)
                pass
            os.dup2(saved, 1)
            os.close(saved)


class _Rows:
    """Constraint rows lo <= A·x <= hi, gathered as (row, column, value) entries."""

    def __init__(self) -> None:
        self.entries: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.lo: list[float] = []
        self.hi: list[float] = []

    def add(self, cols, vals, low: float, high: float) -> None:
        """One row."""
        r = len(self.lo)
        self.entries.append((np.full(len(cols), r), np.asarray(cols, dtype=int), np.asarray(vals, dtype=float)))
        self.lo.append(low)
        self.hi.append(high)

    def add_many(self, n_rows: int, row_local, cols, vals, low, high) -> None:
        """``n_rows`` rows at once: entry k goes to row ``row_local[k]`` of them."""
        r = len(self.lo)
        self.entries.append((r + np.asarray(row_local, dtype=int), np.asarray(cols, dtype=int),
                             np.asarray(vals, dtype=float)))
        self.lo.extend(np.broadcast_to(low, n_rows).tolist())
        self.hi.extend(np.broadcast_to(high, n_rows).tolist())

    def matrix(self, n_columns: int) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
        entries = [x for x in self.entries if len(x[0])]
        ri = np.concatenate([x[0] for x in entries]) if entries else np.zeros(0, dtype=int)
        ci = np.concatenate([x[1] for x in entries]) if entries else np.zeros(0, dtype=int)
        vi = np.concatenate([x[2] for x in entries]) if entries else np.zeros(0)
        return sp.coo_matrix((vi, (ri, ci)), shape=(len(self.lo), n_columns)).tocsr(), np.array(self.lo), np.array(self.hi)


class _Program:
    """The MILP of one stage, built once; solved with a sell cap and objective as asked. Its
    variables are blocks b, B, s, n, A, S (the module docstring; offsets ``o_b`` …), then η and τ
    per tracking row (``_tracking_rows``) and one variable fixed at 1 for the constant."""

    def __init__(self, book: Book, continuous_shares: np.ndarray, lot_allowed: np.ndarray,
                 buyable: np.ndarray, scorer, step: float, capacity: dict[int, float], sells: bool):
        self.book, self.scorer, self.step = book, scorer, step
        self.whole = whole = step == 1.0
        # Shares per unit of b: a step when whole, a share when fractional (b is then continuous
        # and rounded down to millionths afterwards; counted in millionths it would reach 1e12)
        self.bstep = step if whole else 1.0
        lots = np.flatnonzero(lot_allowed & (book.lot_quantity > 0)) if sells else np.zeros(0, dtype=int)
        sell_sym = np.unique(book.lot_symbol[lots])
        buy_sym = np.flatnonzero(buyable)
        self.lots, self.sell_sym, self.buy_sym = lots, sell_sym, buy_sym
        nb, nl, ns = len(buy_sym), len(lots), len(sell_sym)
        cap = np.array([capacity[int(i)] for i in sell_sym], dtype=float)
        off_grid = np.array([abs(c / step - round(c / step)) > 1e-9 for c in cap], dtype=bool) if whole \
            else np.zeros(ns, dtype=bool)
        self.cap, self.off_grid = cap, off_grid
        self.o_b, self.o_B = 0, nb
        self.o_s = 2 * nb
        self.o_n = self.o_s + nl
        self.o_A = self.o_n + (ns if whole else 0)
        self.o_S = self.o_A + (ns if whole else 0)
        self.o_t = self.o_S + ns
        col_of_sell = {int(i): k for k, i in enumerate(sell_sym)}
        self.lot_sym_col = np.array([col_of_sell[int(i)] for i in book.lot_symbol[lots]], dtype=int)
        budget = max(scorer.cash + float((book.lot_value).sum()), 0.0)
        self.max_buy = np.floor(budget / (book.price[buy_sym] * self.bstep)) + 1
        kappa = scorer.kappa
        self.sell_money = book.price[book.lot_symbol[lots]] * (1 - kappa)  # cash a share of each lot raises
        self.buy_money = book.price[buy_sym] * self.bstep * (1 + kappa)     # cash a step of each buy costs

        rows = _Rows()
        self._order_rows(rows)
        self._cash_and_tax_rows(rows)
        y_star, h = self._tracking_rows(rows, continuous_shares)
        self.nv = self.o_one + 1
        self.objective = self._objective(y_star, h)
        self.proceeds = np.zeros(self.nv)
        self.proceeds[self.o_s: self.o_s + nl] = self.sell_money
        self.A, self.lo, self.hi = rows.matrix(self.nv)
        self._bounds()

    def _order_rows(self, rows: _Rows) -> None:
        """What makes an order an order: a buy or sale is 0 or at least min_trade, sales within
        the allowed lots' capacity and in whole steps (or the whole capacity), and no symbol both
        bought and sold."""
        book, step, whole = self.book, self.step, self.whole
        price, lots, cap, lot_sym_col = book.price, self.lots, self.cap, self.lot_sym_col
        nb, nl, ns = len(self.buy_sym), len(lots), len(self.sell_sym)
        mt = book.account.policy.min_trade
        k_b, k_l, k_s = np.arange(nb), np.arange(nl), np.arange(ns)
        # buys: b <= max_buy·B ; b·price >= min_trade·B (a fractional plan's b is rounded
        # down afterwards: one step of margin); sells likewise below
        if nb:
            rows.add_many(nb, np.r_[k_b, k_b], np.r_[self.o_b + k_b, self.o_B + k_b],
                          np.r_[np.ones(nb), -self.max_buy], -np.inf, 0.0)
        if mt > 0 and nb:
            least = mt + (0.0 if whole else price[self.buy_sym] * step)
            rows.add_many(nb, np.r_[k_b, k_b], np.r_[self.o_b + k_b, self.o_B + k_b],
                          np.r_[price[self.buy_sym] * self.bstep, -np.broadcast_to(least, nb)], 0.0, np.inf)
        if ns:
            # Σ s over the symbol's lots <= capacity·S
            rows.add_many(ns, np.r_[lot_sym_col, k_s], np.r_[self.o_s + k_l, self.o_S + k_s],
                          np.r_[np.ones(nl), -cap], -np.inf, 0.0)
            if mt > 0:
                rows.add_many(ns, np.r_[lot_sym_col, k_s], np.r_[self.o_s + k_l, self.o_S + k_s],
                              np.r_[price[book.lot_symbol[lots]], -np.full(ns, mt)], 0.0, np.inf)
            if whole:
                big = cap + 1.0
                # Σ s − step·n ∈ [−big·A, big·A]: whole steps unless the whole capacity is sold
                cols = np.r_[self.o_s + k_l, self.o_n + k_s, self.o_A + k_s]
                rows.add_many(ns, np.r_[lot_sym_col, k_s, k_s], cols, np.r_[np.ones(nl), -np.full(ns, step), -big],
                              -np.inf, 0.0)
                rows.add_many(ns, np.r_[lot_sym_col, k_s, k_s], cols, np.r_[np.ones(nl), -np.full(ns, step), big],
                              0.0, np.inf)
                # A = 1: every allowed lot of the symbol sold whole
                fl = np.flatnonzero(self.off_grid[lot_sym_col])
                if len(fl):
                    rows.add_many(len(fl), np.r_[np.arange(len(fl)), np.arange(len(fl))],
                                  np.r_[self.o_s + fl, self.o_A + lot_sym_col[fl]],
                                  np.r_[np.ones(len(fl)), -book.lot_quantity[lots[fl]]], 0.0, np.inf)
        # bought or sold, never both
        both = np.intersect1d(self.buy_sym, self.sell_sym)
        if len(both):
            bcol = np.searchsorted(self.buy_sym, both)
            scol = np.searchsorted(self.sell_sym, both)
            rows.add_many(len(both), np.r_[np.arange(len(both)), np.arange(len(both))],
                          np.r_[self.o_B + bcol, self.o_S + scol], np.ones(2 * len(both)), -np.inf, 1.0)

    def _cash_and_tax_rows(self, rows: _Rows) -> None:
        """Cash after >= min_cash + withdrawal; lot tax <= max_tax (a fractional plan's sales are
        rounded up afterwards: one step of margin each)."""
        scorer, nl, nb = self.scorer, len(self.lots), len(self.buy_sym)
        rows.add(np.r_[self.o_s + np.arange(nl), self.o_b + np.arange(nb)], np.r_[self.sell_money, -self.buy_money],
                 scorer.cash_floor - scorer.cash, np.inf)
        tax = self.book.lot_tax_per_share[self.lots]
        if math.isfinite(scorer.max_tax) and nl:
            margin = 0.0 if self.whole else float(np.maximum(tax, 0).sum()) * self.step
            rows.add(self.o_s + np.arange(nl), tax, -np.inf, scorer.max_tax - margin)

    def _tracking_rows(self, rows: _Rows, continuous_shares: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The tracking rows y = R·dev, dev = base_dev + Dv·x / U, each written as y = y* + h·η
        (y* at the continuous optimum, η in units of the largest single order's effect on the
        row: small, well-scaled rows whatever the account's size), and y² = y*² + 2y*h·η + h²·τ
        with τ >= η² by its tangents at CUT_OFFSETS. Returns (y*, h); sets the η, τ and constant
        variables' offsets."""
        book, scorer, price = self.book, self.scorer, self.book.price
        nb, nl = len(self.buy_sym), len(self.lots)
        k_b, k_l = np.arange(nb), np.arange(nl)
        n_cls = len(book.classes)
        u = scorer.u
        cls_b = book.class_of_symbol[self.buy_sym]
        cls_l = book.class_of_symbol[book.lot_symbol[self.lots]]
        sell_val = price[book.lot_symbol[self.lots]]
        Dv = sp.coo_matrix(
            (np.r_[price[self.buy_sym] * self.bstep, -sell_val, -self.buy_money, self.sell_money] / u,
             (np.r_[cls_b, cls_l, np.full(nb, n_cls), np.full(nl, n_cls)],
              np.r_[self.o_b + k_b, self.o_s + k_l, self.o_b + k_b, self.o_s + k_l])),
            shape=(n_cls + 1, self.o_t)).tocsr()
        tracking = scorer.tracking
        parts = []
        w = tracking.diagonal(n_cls + 1)
        if tracking.factor is None or tracking.specific is not None:
            keep = np.flatnonzero(w > 0)
            parts.append(sp.coo_matrix((np.sqrt(w[keep]), (np.arange(len(keep)), keep)), shape=(len(keep), n_cls + 1)))
        if tracking.factor is not None:
            parts.append(sp.coo_matrix(tracking.factor))
        R = sp.vstack(parts).tocsr() if parts else sp.csr_matrix((0, n_cls + 1))
        RD = (R @ Dv).tocsr()
        live = np.flatnonzero(np.diff(RD.indptr) > 0)  # rows some variable moves
        R, RD = R[live], RD[live]
        self.n_t = n_t = len(live)
        c_values = continuous_shares * price
        moved = np.bincount(book.class_of_symbol, weights=c_values, minlength=n_cls)
        cash_moved = -float(c_values.sum()) - scorer.kappa * float(np.abs(c_values).sum())
        dev_star = scorer.base_dev + np.append(moved, cash_moved) / u
        const = R @ scorer.base_dev
        y_star = R @ dev_star
        traded_sym = np.r_[self.buy_sym, self.sell_sym]
        mt = book.account.policy.min_trade
        unit = max(mt, float(price[traded_sym].max()) if len(traded_sym) else 0.0) / u  # a share, or min_trade
        h = np.maximum(np.abs(R).max(axis=1).toarray().ravel() * unit, 1e-12) if n_t else np.zeros(0)
        self.o_eta, self.o_tau, self.o_one = self.o_t, self.o_t + n_t, self.o_t + 2 * n_t
        if n_t:
            k_t = np.arange(n_t)
            RDh = (sp.diags(1.0 / h) @ RD).tocoo()
            # η − (RD/h)·x = (const − y*)/h
            rows.add_many(n_t, np.r_[k_t, RDh.row], np.r_[self.o_eta + k_t, RDh.col],
                          np.r_[np.ones(n_t), -RDh.data], (const - y_star) / h, (const - y_star) / h)
            offsets = np.array(CUT_OFFSETS)
            m = len(offsets)
            # τ − 2c·η >= −c², per row and offset
            rl = np.arange(n_t * m)
            rows.add_many(n_t * m, np.r_[rl, rl], np.r_[np.repeat(self.o_tau + k_t, m), np.repeat(self.o_eta + k_t, m)],
                          np.r_[np.ones(n_t * m), np.tile(-2 * offsets, n_t)], np.tile(-offsets ** 2, n_t), np.inf)
        return y_star, h

    def _objective(self, y_star: np.ndarray, h: np.ndarray) -> np.ndarray:
        """Tracking rows, tax, trading cost and the tie-break, scaled to about 1 (HiGHS's gaps
        are relative, its absolute ones would dwarf a household's objective)."""
        book, scorer = self.book, self.scorer
        k_b, k_l = np.arange(len(self.buy_sym)), np.arange(len(self.lots))
        u, v = scorer.u, scorer.v
        c = np.zeros(self.nv)
        c[self.o_eta: self.o_tau] = 2 * y_star * h
        c[self.o_tau: self.o_one] = h * h
        c[self.o_one] = float(y_star @ y_star)
        sell_val = book.price[book.lot_symbol[self.lots]]
        c[self.o_s + k_l] += (scorer.tax_weight * book.lot_tax_per_share[self.lots] / v
                              + (scorer.kappa / v + TIE_BREAK / u) * sell_val)
        c[self.o_b + k_b] += (scorer.kappa / v + TIE_BREAK / u) * book.price[self.buy_sym] * self.bstep
        reference = max(float(y_star @ y_star), float(h @ h), 1e-12)
        return c / reference

    def _bounds(self) -> None:
        """Variable bounds and integrality."""
        nb, nl, ns = len(self.buy_sym), len(self.lots), len(self.sell_sym)
        k_b, k_l, k_s = np.arange(nb), np.arange(nl), np.arange(ns)
        self.lb = np.zeros(self.nv)
        self.ub = np.full(self.nv, np.inf)
        self.lb[self.o_eta: self.o_tau] = -np.inf
        self.lb[self.o_one] = 1.0
        self.ub[self.o_one] = 1.0
        self.ub[self.o_b + k_b] = self.max_buy
        self.ub[self.o_B: self.o_B + nb] = 1
        self.ub[self.o_s + k_l] = self.book.lot_quantity[self.lots]
        if self.whole:
            self.ub[self.o_n + k_s] = np.ceil(self.cap / self.step + 1e-9)
            self.ub[self.o_A + k_s] = self.off_grid.astype(float)
        self.ub[self.o_S + k_s] = 1
        self.integrality = np.zeros(self.nv)
        self.integrality[self.o_B: self.o_B + nb] = 1
        self.integrality[self.o_S: self.o_S + ns] = 1
        if self.whole:
            self.integrality[self.o_b: self.o_b + nb] = 1
            self.integrality[self.o_n: self.o_S] = 1

    def cap_rows(self, base: float) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
        """The cash-first sell room: for each symbol sold, net proceeds <= ``base`` + one step of
        it (a share, or the whole order at min_trade): no order could shrink and still cover ``base``."""
        ns = len(self.sell_sym)
        if not ns:
            return sp.csr_matrix((0, self.nv)), np.zeros(0), np.zeros(0)
        nl = len(self.lots)
        big = float(self.sell_money @ self.book.lot_quantity[self.lots]) + 1.0
        kappa = self.scorer.kappa
        unit = (1 - kappa) * (self.book.price[self.sell_sym] * self.step + self.book.account.policy.min_trade)
        rl = np.r_[np.repeat(np.arange(ns), nl), np.arange(ns)]
        cols = np.r_[np.tile(self.o_s + np.arange(nl), ns), self.o_S + np.arange(ns)]
        vals = np.r_[np.tile(self.sell_money, ns), np.full(ns, big)]
        m = sp.coo_matrix((vals, (rl, cols)), shape=(ns, self.nv)).tocsr()
        return m, np.full(ns, -np.inf), base + unit + big

    def solve(self, objective: np.ndarray, extra=None):
        from scipy.optimize import Bounds, LinearConstraint, milp
        A, lo, hi = self.A, self.lo, self.hi
        if extra is not None:
            A = sp.vstack([A, extra[0]]).tocsr()
            lo, hi = np.r_[lo, extra[1]], np.r_[hi, extra[2]]
        constraints = [LinearConstraint(A, lo, hi)] if A.shape[0] else []
        with _stdout_discarded():
            return milp(objective, integrality=self.integrality, bounds=Bounds(self.lb, self.ub),
                        constraints=constraints,
                        options={"node_limit": NODE_LIMIT, "time_limit": TIME_LIMIT, "mip_rel_gap": MIP_GAP,
                                 "presolve": True})

    def shares(self, x: np.ndarray) -> np.ndarray:
        """Signed shares per symbol of a MILP point: whole steps (a fractional plan's buys
        rounded down and sales up), or every sellable share of a symbol."""
        out = np.zeros(len(self.book.symbols))
        step = self.step
        b = x[self.o_b: self.o_b + len(self.buy_sym)]
        # count / 10⁶ rather than count × 1e-6: the float nearest the quantity (``rounding.on_grid``)
        bought = np.floor(b + 1e-6) * step if step == 1.0 else np.floor(b / step + 1e-6) / round(1 / step)
        out[self.buy_sym] = bought
        sold = np.bincount(self.lot_sym_col, weights=x[self.o_s: self.o_s + len(self.lots)],
                           minlength=len(self.sell_sym))
        for k, i in enumerate(self.sell_sym):
            if step == 1.0:
                if self.off_grid[k] and x[self.o_A + k] > 0.5:
                    q = self.cap[k]
                else:
                    q = float(np.round(x[self.o_n + k])) * step
            else:
                q = min(math.ceil(sold[k] / step - 1e-6) / round(1 / step), self.cap[k])
            if q > 0:
                out[i] = -q
        return out


def nearest_feasible(book: Book, continuous_shares: np.ndarray, lot_allowed: np.ndarray, buyable: np.ndarray,
                     scorer, step: float, capacity: dict[int, float], sell_room: float) -> ExactResult:
    """The best whole-share point of the stage by the MILP's objective (see the module docstring),
    or none, with whether none exists at all (``proven``) or a limit stopped the search.

    ``sell_room`` is what the cash-first stage may raise by selling (money; +inf in later stages,
    0 where the stage sells nothing)."""
    sells = sell_room > 0
    prog = _Program(book, continuous_shares, lot_allowed, buyable, scorer, step, capacity, sells)
    solves = 0
    extra = None
    if sells and math.isfinite(sell_room):
        extra = prog.cap_rows(sell_room)
        res = prog.solve(prog.objective, extra)
        solves += 1
        if res.x is None and res.status == 2:
            # The need itself cannot be met within a share of it (a tax budget may need a loss
            # harvested beyond it): the least proceeds any feasible point needs takes its place.
            least = prog.solve(prog.proceeds / max(sell_room, 1.0))
            solves += 1
            if least.x is None:
                return ExactResult(None, least.status == 2, solves=solves)
            base = float(prog.proceeds @ least.x) + 1e-6
            res = prog.solve(prog.objective, prog.cap_rows(base))
            solves += 1
            if res.x is None:  # the least-proceeds point itself is within that room
                res = least
    else:
        res = prog.solve(prog.objective)
        solves += 1
    if res.x is None:
        return ExactResult(None, res.status == 2, solves=solves)
    shares = prog.shares(res.x)
    sold = -np.minimum(shares, 0.0)
    proceeds = float(sold @ book.price) * (1 - scorer.kappa)
    return ExactResult(shares, True, proceeds, solves)
