"""From the continuous solution to tradable share counts, and from share counts to orders.

Rounding is kept out of the convex model (as PyPortfolioOpt's ``DiscreteAllocation`` does):
for each traded symbol the candidates are no trade, the share count just below and just above
the continuous one (and the smallest order that meets ``min_trade``); the combination chosen
minimizes the SPEC objective subject to every hard constraint, by exhaustive search when the
combinations are few and by best-improvement coordinate search otherwise. Sells relieve lots in
minimum-tax order (losses first, then the cheapest gains), which is also the order the convex
model itself prefers, since lots of one symbol differ only in their tax.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from .book import Book
from .errors import Infeasible
from .plan import LotSale, Order

WHOLE_SHARE = 1.0
FRACTIONAL_STEP = 1e-6      # fractional plans trade in millionths of a share
EXHAUSTIVE_LIMIT = 50_000   # combinations scored at once before falling back to coordinate search
POLISH_ROUNDS = 50          # one-share steps beyond floor/ceil, while they improve the objective
NOISE = 1e-7                # continuous trades below this fraction of U are solver noise, not trades
MONEY_TOLERANCE = 1e-6      # float noise allowed on cash and tax-budget checks, in money


@dataclass(frozen=True)
class Trades:
    """Shares per symbol (signed: + buy, − sell) and shares sold per lot (book order)."""

    shares: np.ndarray
    lot_shares: np.ndarray


def relieve(book: Book, symbol: int, quantity: float, lot_allowed: np.ndarray) -> np.ndarray:
    """Per-lot shares relieved when selling ``quantity`` of one symbol: lots in minimum-tax order."""
    out = np.zeros(len(book.lots))
    left = quantity
    for j in np.flatnonzero((book.lot_symbol == symbol) & lot_allowed):
        take = min(left, book.lot_quantity[j])
        out[j] = take
        left -= take
        if left <= 1e-12:
            break
    return out


class Scorer:
    """The SPEC objective and the hard-constraint violation of trades, vectorized over many."""

    def __init__(self, book: Book, risk: np.ndarray | None):
        a, p = book.account, book.account.policy
        self.book = book
        self.u, self.v = max(book.invested, 1e-300), max(book.value, 1e-300)
        self.kappa = p.trade_cost_bps * 1e-4
        self.tax_weight = p.tax_weight
        self.cash_floor = p.min_cash + p.withdrawal
        self.max_tax = p.max_tax
        k = len(book.classes) + 1
        self.G = risk if risk is not None else np.eye(k)
        self.base_dev = np.append(book.class_value, a.cash - p.withdrawal) / self.u - book.targets
        self.cash = a.cash

    def score(self, class_dv: np.ndarray, dv: np.ndarray, notional: np.ndarray, lot_tax: np.ndarray):
        """Objective and violation for M candidate plans: ``class_dv`` (M × classes) is the value
        traded into each class, ``dv`` the net value bought, ``notional`` the value traded."""
        cash_delta = -dv - self.kappa * notional
        dev = self.base_dev + np.column_stack([class_dv, cash_delta]) / self.u
        tracking = np.square(dev @ self.G.T).sum(axis=1)
        objective = tracking + self.tax_weight * lot_tax / self.v + self.kappa * notional / self.v
        violation = (np.maximum(self.cash_floor - (self.cash + cash_delta) - MONEY_TOLERANCE, 0.0)
                     + np.maximum(lot_tax - self.max_tax - MONEY_TOLERANCE, 0.0)) / max(self.v, 1.0)
        return objective, violation


@dataclass
class _Candidates:
    """Candidate share counts for one traded symbol and what each does."""

    symbol: int
    continuous: float      # the continuous solution's share count (absolute)
    shares: np.ndarray     # signed
    value: np.ndarray      # signed money into the symbol
    notional: np.ndarray
    lot_tax: np.ndarray
    lots: list[np.ndarray]


def _candidates(book: Book, i: int, x: float, step: float, lot_allowed: np.ndarray) -> _Candidates:
    """No trade, the counts just below and above |x|, and the smallest order meeting min_trade."""
    size = abs(x)
    lo, hi = math.floor(size / step + 1e-9) * step, math.ceil(size / step - 1e-9) * step
    sizes = {0.0, lo, hi}
    min_trade = book.account.policy.min_trade
    if min_trade > 0 and size > 0:
        sizes.add(math.ceil(min_trade / book.price[i] / step - 1e-9) * step)
    return _options(book, i, x, sizes, lot_allowed)


def _options(book: Book, i: int, x: float, sizes: set[float], lot_allowed: np.ndarray) -> _Candidates:
    """Candidates of the given sizes in the direction of ``x``, within what may be sold and
    meeting min_trade (or zero)."""
    price = book.price[i]
    p = book.account.policy
    size = abs(x)
    cap = math.inf
    if x < 0:
        cap = float(book.lot_quantity[(book.lot_symbol == i) & lot_allowed].sum())
    options = sorted({min(q, cap) for q in sizes if q >= 0})
    options = [q for q in options if q == 0 or q * price >= p.min_trade - MONEY_TOLERANCE]
    sign = 1.0 if x > 0 else -1.0
    lots, taxes = [], []
    for q in options:
        relieved = relieve(book, i, q, lot_allowed) if sign < 0 else np.zeros(len(book.lots))
        lots.append(relieved)
        taxes.append(float(relieved @ book.lot_tax_per_share))
    q = np.array(options) * sign
    return _Candidates(i, size, q, q * price, np.abs(q) * price, np.array(taxes), lots)


def round_trades(book: Book, continuous_shares: np.ndarray, lot_allowed: np.ndarray,
                 scorer: Scorer) -> Trades:
    """Tradable share counts closest in objective to the continuous solution, meeting every hard
    constraint (cash floor, tax budget, lot quantities, min_trade); ``Infeasible`` if none does."""
    step = FRACTIONAL_STEP if book.account.policy.fractional else WHOLE_SHARE
    traded = [i for i in range(len(book.symbols))
              if abs(continuous_shares[i]) * book.price[i] > NOISE * book.invested]
    cands = [_candidates(book, i, continuous_shares[i], step, lot_allowed) for i in traded]
    n_classes = len(book.classes)
    if not cands:
        choice: list[int] = []
    elif math.prod(len(c.shares) for c in cands) <= EXHAUSTIVE_LIMIT:
        choice = _exhaustive(cands, book, scorer, n_classes)
    else:
        choice = _coordinate_search(cands, book, scorer, n_classes)
    # Polish: a share more or less than floor/ceil can still pay (the continuous point is only a
    # guide once shares are whole), so walk one step at a time while the objective improves.
    for _ in range(POLISH_ROUNDS if cands else 0):
        chosen = [float(c.shares[j]) for c, j in zip(cands, choice)]
        around = [_options(book, c.symbol, continuous_shares[c.symbol],
                           {0.0, abs(q), abs(q) + step, max(abs(q) - step, 0.0)}, lot_allowed)
                  for c, q in zip(cands, chosen)]
        for c, q in zip(around, chosen):
            c.continuous = abs(q)
        new = _coordinate_search(around, book, scorer, n_classes)
        if [float(c.shares[j]) for c, j in zip(around, new)] == chosen:
            break
        cands, choice = around, new

    shares = np.zeros(len(book.symbols))
    lot_shares = np.zeros(len(book.lots))
    for c, j in zip(cands, choice):
        shares[c.symbol] = c.shares[j]
        lot_shares += c.lots[j]
    return Trades(shares, lot_shares)


def _stack(cands: list[_Candidates], idx: np.ndarray, book: Book, n_classes: int):
    """Aggregate the chosen candidates (M × symbols index matrix) into the scorer's inputs."""
    M = idx.shape[0]
    class_dv = np.zeros((M, n_classes))
    dv = np.zeros(M)
    notional = np.zeros(M)
    tax = np.zeros(M)
    for col, c in enumerate(cands):
        pick = idx[:, col]
        value = c.value[pick]
        class_dv[:, book.class_of_symbol[c.symbol]] += value
        dv += value
        notional += c.notional[pick]
        tax += c.lot_tax[pick]
    return class_dv, dv, notional, tax


def _best(objective: np.ndarray, violation: np.ndarray) -> int | None:
    feasible = np.flatnonzero(violation <= 0)
    if feasible.size == 0:
        return None
    return int(feasible[np.argmin(objective[feasible])])


def _exhaustive(cands, book, scorer, n_classes) -> list[int]:
    idx = np.array(list(itertools.product(*[range(len(c.shares)) for c in cands])), dtype=int)
    objective, violation = scorer.score(*_stack(cands, idx, book, n_classes))
    best = _best(objective, violation)
    if best is None:
        raise Infeasible(_why_infeasible(scorer, violation.min()))
    return list(idx[best])


def _coordinate_search(cands, book, scorer, n_classes) -> list[int]:
    """Best-improvement search over single-symbol changes, from the rounding nearest the
    continuous solution; first towards feasibility, then down the objective."""
    current = np.array([int(np.argmin(np.abs(np.abs(c.shares) - c.continuous))) for c in cands])
    moves = [(col, j) for col, c in enumerate(cands) for j in range(len(c.shares))]
    cols = np.array([m[0] for m in moves])
    alts = np.array([m[1] for m in moves])
    for _ in range(20 * len(cands) + 100):
        trial = np.repeat(current[None, :], len(moves) + 1, axis=0)
        trial[np.arange(len(moves)), cols] = alts  # last row: current unchanged
        objective, violation = scorer.score(*_stack(cands, trial, book, n_classes))
        now_obj, now_vio = objective[-1], violation[-1]
        if now_vio > 0:
            better = violation < now_vio
            if not better.any():
                raise Infeasible(_why_infeasible(scorer, now_vio))
            pick = np.flatnonzero(better)[np.lexsort((objective[better], violation[better]))[0]]
        else:
            pick = _best(objective, violation)
            if pick is None or objective[pick] >= now_obj - 1e-15:
                break
        current = trial[pick]
    return list(current)


def _why_infeasible(scorer: Scorer, violation: float) -> str:
    step = "fractional shares" if scorer.book.account.policy.fractional else "whole shares"
    return (f"no plan in {step} meets the cash floor (min_cash + withdrawal = {scorer.cash_floor:,.2f}) "
            f"and the tax budget (max_tax = {scorer.max_tax:,.2f}) together with min_trade")


def to_orders(book: Book, trades: Trades) -> tuple[Order, ...]:
    """Orders from share counts: sells (with the lots they relieve) first, then buys."""
    sells, buys = [], []
    for i, sym in enumerate(book.symbols):
        q = trades.shares[i]
        if q == 0:
            continue
        cls = book.classes[book.class_of_symbol[i]]
        if q > 0:
            buys.append(Order(sym, "buy", float(q), float(book.price[i]), cls))
            continue
        sales = []
        for j in np.flatnonzero((book.lot_symbol == i) & (trades.lot_shares > 0)):
            lot, qty = book.lots[j], float(trades.lot_shares[j])
            gain = qty * float(book.lot_gain_per_share[j])
            sales.append(LotSale(lot.id, qty, gain, book.lot_term[j], float(book.lot_rate[j]) * gain,
                                 lot.cost_basis, lot.acquired.isoformat()))
        sells.append(Order(sym, "sell", float(-q), float(book.price[i]), cls, tuple(sales)))
    return tuple(sells + buys)
