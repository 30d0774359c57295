"""From the continuous solution to tradable share counts.

Rounding is kept out of the convex model (as PyPortfolioOpt's ``DiscreteAllocation`` does):
for each traded symbol the candidates are no trade, the share count just below and just above
the continuous one (and the smallest order that meets ``min_trade``); the combination chosen
minimizes the SPEC objective subject to every hard constraint, by exhaustive search when the
combinations are few and by best-improvement coordinate search otherwise. When no combination
meets the hard constraints, an exact search over every symbol the stage may trade takes over
(``exact_round``, a MILP; ``_exact_fallback``), so that a stage is infeasible in whole shares
only when it has no whole-share plan at all. With ``policy.milp_rounding`` that exact search runs
on every rounding and the better of the two plans is kept (``_milp_improved``). A sell's tax and
the lots it relieves come from ``orders.SymbolLots`` (minimum-tax order).

Everything here is vectorized: the coordinate search scores all single-symbol moves at once from
running totals, so the cost grows with the number of traded symbols and lots, not with their
product.
"""
from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass

import numpy as np

from .account import PLAN_RULES
from .book import Book
from .errors import Infeasible
from .orders import SymbolLots, Trades
from .plan import Objective

WHOLE_SHARE = 1.0
FRACTIONAL_STEP = 1e-6      # fractional plans trade in millionths of a share
STEPS_PER_SHARE = 1_000_000  # 1 / FRACTIONAL_STEP, exactly
EXHAUSTIVE_LIMIT = 50_000   # combinations scored at once before falling back to coordinate search
ZERO_EXHAUSTIVE_LIMIT = 4_096  # up to this many, no trade is one of every symbol's options too
# One-share steps beyond floor/ceil, while they improve the objective: a cap that no plan of 930
# synthetic accounts reaches. At 50 a $5 fund stopped 51 shares into spending the cash a rounded-up
# sale of a $366 share raised, one share short of where steps stopped paying (found by a test).
POLISH_ROUNDS = 1000
NOISE = 1e-7                # continuous trades below this fraction of U are solver noise, not trades
# Traded symbols up to which a rounding whose sales rounded down leave the buys unpaid is searched
# from both starts (``_round``). On small accounts the second search is cheap and pays: searched
# only where the first plan left cash idle, 2 of 240 budgeted random fractional plans ended more
# than 1% above the MILP's (up to 7.7%), against none from both starts. On the 2,000-symbol
# direct index (1,700 traded) it took 20 s against 1 s for the first, for a plan no better. Above
# the limit the second start is searched only where the first search fails or misses a limit, or
# its plan leaves cash idle (``_idle``).
BOTH_STARTS_LIMIT = 100
# Float noise allowed on cash, tax-budget and min_trade checks, in money: half the independent
# check's 1e-6 (verify.py), so the two computing the same cash in a different order can never
# disagree on a plan planned right at the floor (found with fractional shares: -0.0000010).
MONEY_TOLERANCE = 5e-7
FEW_COMBINATIONS = 64       # a class with at most this many combinations is summed in Python (``_exhaustive``)


@dataclass(frozen=True)
class Tracking:
    """The tracking term over deviations (classes, then cash): ‖G dev‖² + ‖σ ∘ dev‖², with
    G = I when there is no risk model. G holds the dense (factor) rows of the risk factor and σ
    its one-entry (specific risk) rows, so a k-factor model over n classes costs k·n, not n²."""

    factor: np.ndarray | None = None    # r × (classes + 1)
    specific: np.ndarray | None = None  # classes + 1

    @property
    def identity(self) -> bool:
        return self.factor is None and self.specific is None

    def value(self, dev: np.ndarray) -> np.ndarray:
        """Tracking of each row of ``dev`` (M × (classes + 1))."""
        if self.identity:
            return np.square(dev).sum(axis=1)
        out = np.zeros(dev.shape[0])
        if self.factor is not None:
            out += np.square(dev @ self.factor.T).sum(axis=1)
        if self.specific is not None:
            out += np.square(dev * self.specific).sum(axis=1)
        return out

    def diagonal(self, size: int) -> np.ndarray:
        """The weights of the diagonal part over ``size`` deviations (classes, then cash): 1 for
        the identity, σ² for specific risk, 0 for factor rows alone."""
        if self.identity:
            return np.ones(size)
        return np.square(self.specific) if self.specific is not None else np.zeros(size)

    def matrix(self) -> np.ndarray | None:
        """The full factor (rows of G, then diag σ) or None for the identity."""
        if self.identity:
            return None
        parts = ([self.factor] if self.factor is not None else []) + \
                ([np.diag(self.specific)] if self.specific is not None else [])
        return np.vstack(parts)


class Scorer:
    """The SPEC objective and the hard-constraint violation of trades, vectorized over many."""

    def __init__(self, book: Book, tracking: Tracking):
        a, p = book.account, book.account.policy
        self.book = book
        self.u, self.v = max(book.invested, 1e-300), max(book.value, 1e-300)
        self.kappa = p.trade_cost_bps * 1e-4
        self.tax_weight = p.tax_weight
        self.cash_floor = p.min_cash + p.withdrawal
        self.max_tax = p.max_tax
        self.tracking = tracking
        self.base_dev = np.append(book.class_value, a.cash - p.withdrawal) / self.u - book.targets
        self.cash = a.cash
        # Net proceeds of sales a plan may not exceed: the cash-first stage's sell room
        # (``capped``); +inf in every other stage, where the checks below skip it.
        self.max_sold = math.inf

    def capped(self, max_sold: float) -> "Scorer":
        """This scorer with sales' net proceeds limited to ``max_sold`` (money)."""
        out = copy.copy(self)
        out.max_sold = max_sold
        return out

    def score(self, class_dv: np.ndarray, dv: np.ndarray, notional: np.ndarray, lot_tax: np.ndarray):
        """Objective and violation for M candidate plans: ``class_dv`` (M × classes) is the value
        traded into each class, ``dv`` the net value bought, ``notional`` the value traded."""
        cash_delta = -dv - self.kappa * notional
        dev = np.empty((len(dv), class_dv.shape[1] + 1))
        np.divide(class_dv, self.u, out=dev[:, :-1])
        np.divide(cash_delta, self.u, out=dev[:, -1])
        dev += self.base_dev
        objective = self.tracking.value(dev) + (self.tax_weight * lot_tax + self.kappa * notional) / self.v
        return objective, self.violation(cash_delta, lot_tax, self.sold(dv, notional))

    def violation(self, cash_delta: np.ndarray, lot_tax: np.ndarray | None,
                  sold: np.ndarray | None = None) -> np.ndarray:
        """How far plans break the cash floor, the tax budget and the sell room (money / V, 0:
        not at all). Without a budget (max_tax = inf) lot tax breaks nothing, and ``lot_tax`` may
        be None."""
        out = np.maximum(self.cash_floor - (self.cash + cash_delta) - MONEY_TOLERANCE, 0.0)
        if lot_tax is not None and self.max_tax != math.inf:
            out = out + np.maximum(lot_tax - self.max_tax - MONEY_TOLERANCE, 0.0)
        if sold is not None:  # net proceeds, against ``max_sold``
            out = out + np.maximum(sold - self.max_sold - MONEY_TOLERANCE, 0.0)
        return out / max(self.v, 1.0)

    def sold(self, dv: np.ndarray, notional: np.ndarray) -> np.ndarray | None:
        """Net proceeds of sales from the value bought net (``dv``) and traded (``notional``),
        where ``max_sold`` applies; None where it does not."""
        if self.max_sold == math.inf:
            return None
        return (1 - self.kappa) * (notional - dv) / 2


@dataclass
class _Candidates:
    """Candidate share counts for one traded symbol and what each does (plain floats: a
    handful per symbol; ``_Moves`` and the numpy paths of ``_exhaustive`` make arrays of them)."""

    symbol: int
    klass: int
    continuous: float      # the continuous solution's share count (absolute)
    shares: list[float]    # signed
    value: list[float]     # signed money into the symbol
    notional: list[float]
    lot_tax: list[float]


def on_grid(count: float, step: float) -> float:
    """``count`` steps of ``step`` shares (whole shares, or millionths): the float nearest the exact
    quantity. A millionth is no binary fraction, so count × 1e-6 can land an ulp off (104435669
    millionths came out as 104.43566899999999 shares, so written in the basket); count / 10⁶ cannot."""
    return count * step if step == WHOLE_SHARE else count / STEPS_PER_SHARE


class _Rounder:
    """Candidates per symbol for one rounding (one continuous solution, one set of sellable lots)."""

    def __init__(self, book: Book, lot_allowed: np.ndarray, step: float):
        self.book = book
        self.lot_allowed = lot_allowed
        self.step = step
        self.min_trade = book.account.policy.min_trade
        self._lots: dict[int, SymbolLots] = {}
        self._around: dict[tuple[int, float], _Candidates] = {}
        self._price = book.price.tolist()
        self._klass = book.class_of_symbol.tolist()

    def lots(self, i: int) -> SymbolLots:
        if i not in self._lots:
            self._lots[i] = SymbolLots(self.book, i, self.lot_allowed)
        return self._lots[i]

    def candidates(self, i: int, x: float) -> _Candidates:
        """The counts just below and above |x|, the smallest order meeting min_trade, and no
        trade when no smaller count is a valid order (``_with_zero`` adds it otherwise)."""
        size, step = abs(x), self.step
        lo, hi = on_grid(math.floor(size / step + 1e-9), step), on_grid(math.ceil(size / step - 1e-9), step)
        sizes = {lo, hi}
        if lo * self._price[i] < self.min_trade - MONEY_TOLERANCE:
            sizes.add(0.0)
        if self.min_trade > 0 and size > 0:
            sizes.add(on_grid(math.ceil(self.min_trade / self._price[i] / step - 1e-9), step))
        return self.options(i, x, sizes)

    def options(self, i: int, x: float, sizes: set[float]) -> _Candidates:
        """Candidates of the given sizes in the direction of ``x``, within what may be sold and
        meeting min_trade (or zero). Plain floats until the end: a handful of options per
        symbol, where numpy's per-call overhead would dominate."""
        price = self._price[i]
        sell = x < 0
        if sell:
            lots = self.lots(i)
            cap = lots.capacity
            options = sorted({q if q <= cap else cap for q in sizes if q >= 0})
        else:
            options = sorted(q for q in sizes if q >= 0)
        if self.min_trade > 0:
            least = self.min_trade - MONEY_TOLERANCE
            options = [q for q in options if q == 0 or q * price >= least]
        shares = [-q for q in options] if sell else [float(q) for q in options]
        value = [q * price for q in shares]
        taxes = [lots.tax_of(q) for q in options] if sell else [0.0] * len(options)
        return _Candidates(i, self._klass[i], abs(x), shares, value, [abs(v) for v in value], taxes)

    def around(self, i: int, x: float, q: float) -> _Candidates:
        """Polish candidates: no trade, ``q`` and the counts a step either side of it on the
        share grid (the same object for the same symbol and count, so a polish round rebuilds
        only what moved). ``q`` itself may be off the grid: all of a symbol's sellable shares,
        a fractional holding; a step down from it is the whole count below, not q − 1."""
        key = (i, q)
        if key not in self._around:
            size, step = abs(q), self.step
            down, up = math.ceil(size / step - 1e-9), math.floor(size / step + 1e-9)
            sizes = {0.0, size, on_grid(up + 1, step), on_grid(max(down - 1, 0), step)}
            if step < WHOLE_SHARE:
                # Millionths: steps of 10, 100, ... millionths too, up to ten times the count (at
                # least ten shares). One millionth a round could not move a fractional plan: where
                # the search had cut a buy to its min_trade size to cover a sale it dropped, the
                # polish's 1,000 steps restored a thousandth of a share of the rest.
                k, span = 10, 10 * max(up, STEPS_PER_SHARE)
                while k <= span:
                    sizes.add(on_grid(up + k, step))
                    if down - k >= 0:
                        sizes.add(on_grid(down - k, step))
                    k *= 10
            c = self.options(i, x, sizes)
            c.continuous = size
            self._around[key] = c
        return self._around[key]

    def trades(self, cands: list[_Candidates], choice: list[int]) -> Trades:
        shares = np.zeros(len(self.book.symbols))
        lot_shares = np.zeros(len(self.book.lots))
        for c, j in zip(cands, choice):
            shares[c.symbol] = c.shares[j]
            if c.shares[j] < 0:
                lot_shares += self.lots(c.symbol).relieve(-c.shares[j], len(self.book.lots))
        return Trades(shares, lot_shares)


def round_trades(book: Book, continuous_shares: np.ndarray, lot_allowed: np.ndarray,
                 scorer: Scorer, buyable: np.ndarray | None = None, sell_room: float = math.inf) -> Trades:
    """Tradable share counts closest in objective to the continuous solution, meeting every hard
    constraint (cash floor, tax budget, lot quantities, min_trade); ``Infeasible`` if none does.

    ``buyable`` (per symbol) and ``sell_room`` (net proceeds the stage may raise: +inf, or the
    cash-first stage's need, 0 where it sells nothing) are the stage's rules. The sell room holds
    the rounded plan to the need plus one step of the dearest fund the continuous plan sells (a
    share, and ``min_trade``): whole shares may overshoot the need by that much, never more (the
    search would otherwise sell beyond it wherever that helps tracking). ``buyable`` is for the
    exact fallback, when the search finds no feasible combination (``_exact_fallback``), and for
    ``policy.milp_rounding``; by default the symbols the continuous solution buys."""
    step = FRACTIONAL_STEP if book.account.policy.fractional else WHOLE_SHARE
    buyable = continuous_shares > 0 if buyable is None else buyable
    rounder = _Rounder(book, lot_allowed, step)
    value = np.abs(continuous_shares) * book.price
    traded = np.flatnonzero(value > NOISE * book.invested)
    search = scorer
    sold = continuous_shares < 0
    if 0 < sell_room < math.inf and sold.any():
        step_value = float(np.max(book.price[sold])) * step + book.account.policy.min_trade
        search = scorer.capped(sell_room + (1 - scorer.kappa) * step_value)
    try:
        trades = _round(rounder, traded, continuous_shares, search)
    except Infeasible as exc:
        failed = exc
    else:
        if book.account.policy.milp_rounding:
            return _milp_improved(book, continuous_shares, lot_allowed, scorer, search, step, buyable, sell_room,
                                  trades)
        return trades
    # A needed trade can hide below the noise level (a withdrawal of a few cents split over
    # several funds): round again with every trade the solver made, however small.
    everything = np.flatnonzero(value > 0)
    if len(everything) != len(traded):
        try:
            return _round(rounder, everything, continuous_shares, search)
        except Infeasible as exc:
            failed = exc
    return _exact_fallback(book, continuous_shares, lot_allowed, scorer, step, buyable, sell_room, failed)


def _exact_fallback(book: Book, continuous_shares: np.ndarray, lot_allowed: np.ndarray, scorer: Scorer,
                    step: float, buyable: np.ndarray, sell_room: float, failed: Infeasible) -> Trades:
    """When no combination of the candidates meets the hard constraints: the best whole-share
    point of the stage by a MILP (``exact_round``: every symbol the stage may trade, any order
    size), polished by the same local search as any rounding. ``Infeasible`` only when the MILP
    proves that the stage has no whole-share plan at all (or stops at its node or time limit
    without one, which the message says). In the cash-first stage the polish may move sales between
    symbols but not raise more than the MILP's point does (``Scorer.capped``)."""
    from .exact_round import NODE_LIMIT, TIME_LIMIT, nearest_feasible

    rounder = _Rounder(book, lot_allowed, step)  # its own: candidates follow the new point's directions
    sellable = np.unique(book.lot_symbol[lot_allowed]) if sell_room > 0 else np.zeros(0, dtype=int)
    capacity = {int(i): rounder.lots(int(i)).capacity for i in sellable}
    found = nearest_feasible(book, continuous_shares, lot_allowed, buyable, scorer, step, capacity, sell_room)
    if found.shares is None:
        if found.proven:
            raise failed
        raise Infeasible(f"{failed} (the exact search stopped at its limit of {NODE_LIMIT:,} nodes or "
                         f"{TIME_LIMIT:g} s without finding a plan)", constraints=failed.constraints)
    point = found.shares
    traded = (point != 0) | ((np.abs(continuous_shares) * book.price > NOISE * book.invested)
                             & np.where(continuous_shares < 0, np.isin(np.arange(len(point)), sellable), buyable))
    direction = np.where(point != 0, point, continuous_shares)
    if math.isfinite(sell_room):
        scorer = scorer.capped(found.proceeds)
    cands = [rounder.around(int(i), float(direction[i]), float(point[i])) for i in np.flatnonzero(traded)]
    choice = [c.shares.index(float(point[c.symbol])) if float(point[c.symbol]) in c.shares else int(j)
              for c, j in zip(cands, _nearest(cands))]
    try:
        return _polish(rounder, cands, choice, direction, scorer, len(book.classes))
    except Infeasible:
        # The point failed the rounding's own arithmetic (the MILP's tolerance) and no step
        # repairs it: this stage has no plan the check would take.
        raise failed from None


def _milp_improved(book: Book, continuous_shares: np.ndarray, lot_allowed: np.ndarray, scorer: Scorer,
                   search: Scorer, step: float, buyable: np.ndarray, sell_room: float, trades: Trades) -> Trades:
    """``policy.milp_rounding``: the exact search's point where it scores lower than the local
    search's ``trades`` and meets the same rules (``search``: the cash-first stage's sell room
    too), else ``trades``. The local search stops at a plan no one-share step improves; the MILP
    looks at every whole-share plan of the stage, at 0.03-0.6 s a plan (README, Whole shares)."""
    try:
        point = _exact_fallback(book, continuous_shares, lot_allowed, scorer, step, buyable, sell_room,
                                Infeasible("no whole-share plan"))
    except Infeasible:
        return trades
    if _violation_of(search, book, point) > 0:
        return trades
    return point if terms_of(search, book, point).total < terms_of(search, book, trades).total - 1e-15 else trades


def _totals(book: Book, trades: Trades) -> tuple[np.ndarray, float, float, float]:
    """Value traded into each class, net value bought, value traded and lot tax of ``trades``."""
    values = trades.shares * book.price
    class_dv = np.bincount(book.class_of_symbol, weights=values, minlength=len(book.classes))
    return class_dv, float(values.sum()), float(np.abs(values).sum()), float(trades.lot_shares @ book.lot_tax_per_share)


def terms_of(scorer: Scorer, book: Book, trades: Trades) -> Objective:
    """SPEC section 2's objective of rounded trades, term by term (``Scorer``'s arithmetic)."""
    class_dv, bought, notional, lot_tax = _totals(book, trades)
    cash_delta = -bought - scorer.kappa * notional
    dev = scorer.base_dev + np.append(class_dv, cash_delta) / scorer.u
    tracking = float(scorer.tracking.value(dev[None, :])[0])
    return Objective(tracking, scorer.tax_weight * lot_tax / scorer.v, scorer.kappa * notional / scorer.v)


def _violation_of(scorer: Scorer, book: Book, trades: Trades) -> float:
    """How far ``trades`` break a hard constraint the scorer checks (0: not at all)."""
    _, bought, notional, lot_tax = _totals(book, trades)
    sold = scorer.sold(np.array([bought]), np.array([notional]))
    return float(scorer.violation(np.array([-bought - scorer.kappa * notional]), np.array([lot_tax]), sold)[0])


def _round(rounder: "_Rounder", traded: np.ndarray, continuous_shares: np.ndarray, scorer: Scorer) -> Trades:
    """The search from the counts around the continuous trades; where those miss a hard limit by
    the solver's tolerance, from the counts around trades that meet it (``_fitted``) instead, with
    fractional shares, or as well, keeping the better plan, with whole shares; where only the
    sales rounded down leave the buys unpaid, from the continuous trades, and from the fitted ones
    as well where at most BOTH_STARTS_LIMIT symbols trade or that plan leaves cash idle
    (``_idle``). A millionth-share
    search from counts that are all short of cash only inches towards what the fitted start
    reaches at once: in a harvesting backtest (122 such roundings) it ended lower by at most 5e-8
    of the objective in 34, up to 1.9 times higher in others, and took 40 times as long."""
    n_classes = len(rounder.book.classes)
    fitted, misses = _fitted(rounder, traded, continuous_shares, scorer)
    found, failed = [], None

    def search(start: np.ndarray) -> None:
        nonlocal failed
        try:
            cands, choice = _start(rounder, traded, start, scorer, n_classes)
            found.append(_polish(rounder, cands, choice, continuous_shares, scorer, n_classes))
        except Infeasible as exc:
            failed = exc

    if fitted is None or rounder.step < WHOLE_SHARE and misses:
        search(continuous_shares if fitted is None else fitted)
    else:
        search(continuous_shares)
        if misses or not found or len(traded) <= BOTH_STARTS_LIMIT or _idle(rounder, scorer, found[0],
                                                                              continuous_shares, traded):
            search(fitted)
    if not found:
        raise failed
    return found[0] if len(found) == 1 else min(found, key=lambda t: terms_of(scorer, rounder.book, t).total)


def _idle(rounder: "_Rounder", scorer: Scorer, trades: Trades, continuous_shares: np.ndarray,
          traded: np.ndarray) -> bool:
    """Whether ``trades`` leave more cash above the floor than one more step of every symbol the
    continuous plan buys would cost: a plan that dropped or cut a buy it could pay for, which
    the fitted start is then searched for as well, however many symbols trade."""
    _, bought, notional, _ = _totals(rounder.book, trades)
    left = scorer.cash - bought - scorer.kappa * notional - scorer.cash_floor
    buys = traded[continuous_shares[traded] > 0]
    return left > (1 + scorer.kappa) * rounder.step * float(rounder.book.price[buys].sum()) + MONEY_TOLERANCE


def _polish(rounder: "_Rounder", cands: list[_Candidates], choice: list[int], direction: np.ndarray,
            scorer: Scorer, n_classes: int) -> Trades:
    """Polish: a share more or less than floor/ceil can still pay (the continuous point is only a
    guide once shares are whole), so walk one step at a time while the objective improves.
    Once single steps stop paying, two at a time are tried, from where the single steps ended.
    ``direction``: per symbol, its sign is the side it trades (the continuous solution's)."""
    for _ in range(POLISH_ROUNDS if cands else 0):
        chosen = [float(c.shares[j]) for c, j in zip(cands, choice)]
        around = [rounder.around(c.symbol, direction[c.symbol], q) for c, q in zip(cands, chosen)]
        moves = _Moves(around, scorer, n_classes)
        new = _coordinate_search(around, scorer, n_classes, moves=moves)
        if [float(c.shares[j]) for c, j in zip(around, new)] == chosen:
            new = _coordinate_search(around, scorer, n_classes, np.array(new), moves, pairs=True)
            if [float(c.shares[j]) for c, j in zip(around, new)] == chosen:
                break
        cands, choice = around, new
    return rounder.trades(cands, choice)


def _start(rounder: "_Rounder", traded: np.ndarray, continuous_shares: np.ndarray, scorer: Scorer,
           n_classes: int) -> tuple[list[_Candidates], list[int]]:
    """The starting rounding: the best combination of floor, ceiling and no trade when those are
    few (up to ZERO_EXHAUSTIVE_LIMIT), else the best floor/ceil combination (dropping a trade is
    left to the polish, which tries it symbol by symbol); when no floor/ceil combination meets
    the hard constraints, or there are too many to score, a search that may also drop trades."""
    if not len(traded):
        objective, violation = scorer.score(np.zeros((1, n_classes)), np.zeros(1), np.zeros(1), np.zeros(1))
        if violation[0] > 0:
            raise _infeasible(scorer)
        return [], []
    cands = [rounder.candidates(int(i), continuous_shares[i]) for i in traded]
    with_zero = combinations(cands, with_zero=True)
    if with_zero > ZERO_EXHAUSTIVE_LIMIT and combinations(cands) <= EXHAUSTIVE_LIMIT:
        try:
            return cands, _exhaustive(cands, scorer, n_classes)
        except Infeasible:
            pass
    cands = [_with_zero(c) for c in cands]
    if with_zero <= EXHAUSTIVE_LIMIT:
        return cands, _exhaustive(cands, scorer, n_classes)
    return cands, _search_from_two_starts(cands, scorer, n_classes)


def _fitted(rounder: "_Rounder", traded: np.ndarray, continuous_shares: np.ndarray,
            scorer: Scorer) -> tuple[np.ndarray | None, bool]:
    """The continuous trades made smaller to meet the hard limits they miss by the solver's
    tolerance, or that their sales rounded down leave unpaid, and whether they miss a limit:
    (None, False) when neither. The solver meets the cash floor, tax budget and sell room
    to a relative tolerance: cents on a large account, more than a millionth of a share, so with
    fractional shares every count around a buy of all the cash could be short of cash, and the
    search started from no trade and stepped up a millionth at a time (a backtest account kept
    $5,000 of deposits uninvested for months). Sales shrink by the fraction that meets the tax
    budget and sell room (a lot-level tax T is convex with T(0) = 0, so T(s·q) <= s·T(q)), then
    buys by the fraction that meets the cash floor, each with a margin of one step of every
    traded symbol (the counts are floored on the grid). The tax is read only under a budget."""
    if not len(traded):
        return None, False
    price = rounder.book.price[traded]
    q = continuous_shares[traded]
    value = q * price
    sells = q < 0
    step_value = rounder.step * float(price.sum())
    buy_value, sell_value = float(value[~sells].sum()), float(-value[sells].sum())
    sold = (1 - scorer.kappa) * sell_value
    margin = step_value + MONEY_TOLERANCE
    shrink = 0.0  # the fraction of every sale to drop
    lot_tax = 0.0 if math.isinf(scorer.max_tax) else math.fsum(
        rounder.lots(int(i)).tax_of(float(-continuous_shares[i])) for i in traded[sells])
    if lot_tax - scorer.max_tax > MONEY_TOLERANCE:
        shrink = (lot_tax - scorer.max_tax + margin) / lot_tax
    if sold - scorer.max_sold > MONEY_TOLERANCE:
        shrink = max(shrink, (sold - scorer.max_sold + margin) / sold)
    sell_scale = max(1.0 - shrink, 0.0)
    cash_after = scorer.cash - (1 + scorer.kappa) * buy_value + sell_scale * sold
    deficit = scorer.cash_floor - cash_after
    buy_scale = 1.0
    if deficit > MONEY_TOLERANCE and buy_value > 0:
        buy_scale = max(1.0 - (deficit + margin) / ((1 + scorer.kappa) * buy_value), 0.0)
    misses = sell_scale < 1.0 or buy_scale < 1.0
    if buy_value > 0 and sells.any():
        # The start may have to round every sale down (up breaks the tax budget or the sell room),
        # and where the buys rounded down then still cost more than that raises, no count around
        # the continuous buys is feasible: with whole shares the start dropped a buy of 2,580 $35
        # shares after a $289 sale lost its 0.8 share, and the polish, a share a round, stopped
        # 1,000 shares later with $54,000 idle; with millionths a sale's lost 8e-7 share left the
        # buys $0.0002 short and a $47,000 buy was dropped, the polish recovering half of it. Here
        # the buys shrink to what the sales rounded down pay for, and the search starts beside the plan.
        step = rounder.step
        sold_down = (1 - scorer.kappa) * float(np.floor(-q[sells] * sell_scale / step + 1e-9) @ price[sells]) * step
        bought_down = float(np.floor(q[~sells] * buy_scale / step + 1e-9) @ price[~sells]) * step
        short = scorer.cash_floor - (scorer.cash - (1 + scorer.kappa) * buy_value + sold_down)
        if scorer.cash - (1 + scorer.kappa) * bought_down + sold_down < scorer.cash_floor - MONEY_TOLERANCE:
            buy_scale = min(buy_scale, max(1.0 - (short + margin) / ((1 + scorer.kappa) * buy_value), 0.0))
    if sell_scale == 1.0 and buy_scale == 1.0:
        return None, False
    out = continuous_shares.copy()
    out[traded] = q * np.where(sells, sell_scale, buy_scale)
    return out, misses


def combinations(cands: list[_Candidates], with_zero: bool = False) -> int:
    """How many combinations of the candidates there are (with no trade added to each, if asked).
    Python integers: 500 traded symbols make a number far beyond any machine integer."""
    return math.prod(len(c.shares) + int(with_zero and c.shares[0] != 0) for c in cands)


def _with_zero(c: _Candidates) -> _Candidates:
    """``c`` with no trade as its first option (options are sorted by size)."""
    if c.shares[0] == 0:
        return c
    return _Candidates(c.symbol, c.klass, c.continuous, [0.0] + c.shares, [0.0] + c.value, [0.0] + c.notional,
                       [0.0] + c.lot_tax)


def _best(objective: np.ndarray, violation: np.ndarray) -> int | None:
    """The first feasible entry of least objective, None if none is feasible."""
    i = int(np.argmin(np.where(violation <= 0, objective, np.inf)))
    if violation[i] <= 0:
        return i
    feasible = np.flatnonzero(violation <= 0)  # none, or every feasible objective is +inf
    return int(feasible[0]) if feasible.size else None


def _exhaustive(cands: list[_Candidates], scorer: Scorer, n_classes: int) -> list[int]:
    """The best feasible combination of every symbol's candidates. With a diagonal tracking term
    (no factor rows) the objective splits by class but for cash: each class's combinations are
    built first (outer sums over its symbols) and reduced to two numbers (cash moved, and the
    class's own tracking plus tax and trading cost; and lot tax under a tax budget, net proceeds
    under a sell room), and only those are combined across classes, so the full product carries
    two to four rows and no combination × symbol index is formed."""
    if scorer.tracking.factor is not None:
        return _exhaustive_factor(cands, scorer, n_classes)
    s, t = scorer, scorer.tracking
    w = t.diagonal(n_classes + 1)
    order = sorted(range(len(cands)), key=lambda j: cands[j].klass)  # symbols grouped by class
    traded_classes = {c.klass for c in cands}
    untouched = [k for k in range(n_classes) if k not in traded_classes]
    rest = float(np.sum(w[untouched] * np.square(s.base_dev[untouched]))) if untouched else 0.0
    budget = s.max_tax != math.inf  # then a row of lot tax (without a budget it breaks nothing)
    capped = s.max_sold != math.inf  # then a row of net proceeds of sales
    totals = np.array([[0.0]] + ([[0.0]] if budget else []) + [[rest]] + ([[0.0]] if capped else []))
    for klass, group in itertools.groupby(order, key=lambda j: cands[j].klass):
        group = [cands[j] for j in group]
        own = _class_combinations(group, float(w[klass]), float(s.base_dev[klass]), s, budget)
        totals = (totals[:, :, None] + own[:, None, :]).reshape(len(totals), -1)
    cash, cost = totals[0], totals[1 + budget]
    objective = cost + w[n_classes] * np.square(s.base_dev[n_classes] + cash / s.u)
    violation = s.violation(cash, totals[1] if budget else None, totals[-1] if capped else None)
    best = _best(objective, violation)
    if best is None:
        raise _infeasible(scorer)
    picked = _unravel(best, [len(cands[j].shares) for j in order])
    choice = [0] * len(cands)
    for j, i in zip(order, picked):
        choice[j] = i
    return choice


def _unravel(flat: int, sizes: list[int]) -> list[int]:
    """``np.unravel_index`` (C order) for any number of symbols: numpy's stops at 64 dimensions,
    and symbols with a single option (a whole holding sold, an order below min_trade dropped)
    let far more than 64 traded symbols fit EXHAUSTIVE_LIMIT combinations."""
    out = []
    for size in reversed(sizes):
        flat, i = divmod(int(flat), size)
        out.append(i)
    return out[::-1]


def _class_combinations(group: list[_Candidates], w: float, base: float, s: Scorer, budget: bool) -> np.ndarray:
    """Every combination of one class's symbols' options (the last symbol's varying fastest), as
    rows: cash moved, lot tax (only under a tax budget, ``budget``: a fifth of ``_exhaustive``'s
    work on the largest products is carrying rows), and the class's own cost (its tracking, tax
    and trading cost), and with a sell room (``Scorer.max_sold``) the net proceeds of its sales.
    A few combinations are summed in plain Python, more with numpy outer sums: the same
    operations in the same order either way, so the same floats."""
    if math.prod(len(c.shares) for c in group) <= FEW_COMBINATIONS:
        value, notional, lot_tax = [0.0], [0.0], [0.0]
        for c in group:
            value = [a + b for a in value for b in c.value]
            notional = [a + b for a in notional for b in c.notional]
            lot_tax = [a + b for a in lot_tax for b in c.lot_tax]
        rows = [[-v - s.kappa * n for v, n in zip(value, notional)]] + ([lot_tax] if budget else []) + [
                [w * ((base + v / s.u) * (base + v / s.u)) + (s.tax_weight * t + s.kappa * n) / s.v
                 for v, n, t in zip(value, notional, lot_tax)]]
        if s.max_sold != math.inf:
            rows.append([(1 - s.kappa) * (n - v) / 2 for v, n in zip(value, notional)])
        return np.array(rows)
    value, notional, lot_tax = np.zeros(1), np.zeros(1), np.zeros(1)
    for c in group:
        value = (value[:, None] + np.array(c.value)).ravel()
        notional = (notional[:, None] + np.array(c.notional)).ravel()
        lot_tax = (lot_tax[:, None] + np.array(c.lot_tax)).ravel()
    own = w * np.square(base + value / s.u) + (s.tax_weight * lot_tax + s.kappa * notional) / s.v
    rows = [-value - s.kappa * notional] + ([lot_tax] if budget else []) + [own]
    if s.max_sold != math.inf:
        rows.append(s.sold(value, notional))
    return np.array(rows)


def _exhaustive_factor(cands: list[_Candidates], scorer: Scorer, n_classes: int) -> list[int]:
    """``_exhaustive`` for a risk model with factor rows: every class's total per combination."""
    class_dv = np.zeros((1, n_classes))
    dv, notional, tax = np.zeros(1), np.zeros(1), np.zeros(1)
    for c in cands:
        L = len(c.shares)
        value = np.array(c.value)
        class_dv = np.repeat(class_dv, L, axis=0)
        class_dv[:, c.klass] += np.tile(value, len(dv))
        dv = (dv[:, None] + value).ravel()
        notional = (notional[:, None] + np.array(c.notional)).ravel()
        tax = (tax[:, None] + np.array(c.lot_tax)).ravel()
    objective, violation = scorer.score(class_dv, dv, notional, tax)
    best = _best(objective, violation)
    if best is None:
        raise _infeasible(scorer)
    return _unravel(best, [len(c.shares) for c in cands])


class _Moves:
    """Every single-symbol change of a current choice, scored from running totals.

    A move changes one symbol's value, which moves two deviations (its class and cash): the
    tracking of every move is the current tracking corrected on those two coordinates (through
    the factor rows G·dev for a risk model), so one pass costs O(moves · risk rows)."""

    def __init__(self, cands: list[_Candidates], scorer: Scorer, n_classes: int):
        self.cands, self.scorer = cands, scorer
        self._last: tuple[bytes, tuple] | None = None  # (choice, its ``evaluate`` result)
        sizes = np.array([len(c.shares) for c in cands])
        self.col = np.repeat(np.arange(len(cands)), sizes)
        self.start = np.cumsum(sizes) - sizes
        self.alt = np.arange(len(self.col)) - self.start[self.col]
        self.klass = np.array([c.klass for c in cands], dtype=int)[self.col]
        # Each option's value, notional and lot tax as the rows of one array, so a choice's three
        # are read, summed and differenced by one numpy call each (``_current``), not three.
        self.options = np.array([[v for c in cands for v in c.value], [v for c in cands for v in c.notional],
                                 [v for c in cands for v in c.lot_tax]])
        self.value, self.notional, self.tax = self.options
        self.cash_col = n_classes
        t = scorer.tracking
        self.g_cls = t.factor[:, self.klass] if t.factor is not None else None
        self.g_cash = t.factor[:, n_classes] if t.factor is not None else None
        self.w_diagonal = t.diagonal(n_classes + 1)
        self.w_cls, self.w_cash = self.w_diagonal[self.klass], self.w_diagonal[n_classes]

    def _current(self, current: np.ndarray, among: np.ndarray | None):
        """The current choice's totals and deviations, and what each move (of ``among``, default
        all) changes: (flat index of each column's option, value bought, notional, tax, deviation
        per class and cash, (Δvalue, Δnotional, Δtax) per move)."""
        s = self.scorer
        pos = self.start + current          # flat index of each column's current option
        cur = self.options[:, pos]          # value, notional, tax of each column's option
        dv, notional, tax = cur[0].sum(), cur[1].sum(), cur[2].sum()  # (a sum along axis 1 adds in another order)
        # Traded value per class, then cash moved, in one array (bincount leaves the cash slot 0).
        moved = np.bincount(self.klass[pos], weights=cur[0], minlength=self.cash_col + 1)
        moved[self.cash_col] = -dv - s.kappa * notional
        dev = s.base_dev + moved / s.u
        moves = slice(None) if among is None else among
        deltas = tuple(self.options[:, moves] - cur[:, self.col[moves]])
        return pos, dv, notional, tax, dev, deltas

    def _diagonal(self, dev: np.ndarray) -> float:
        """The diagonal tracking term (identity or specific risk) of deviations ``dev``."""
        return float(np.sum(self.w_diagonal * dev ** 2))

    def evaluate(self, current: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
        """Objective and violation of every move, and of ``current`` unchanged. The last result
        is kept: the pair search starts where the single-move search stopped, at that choice."""
        key = np.asarray(current).tobytes()
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        result = self._evaluate(current)
        self._last = (key, result)
        return result

    def _evaluate(self, current: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
        s = self.scorer
        pos, dv, notional, tax, dev, (d_value, d_notional, d_tax) = self._current(current, None)
        m_dv, m_notional = dv + d_value, notional + d_notional
        m_tax = tax + d_tax  # differences first: a null move adds exactly 0
        cash_delta = -m_dv - s.kappa * m_notional
        d_cls = d_value / s.u
        cls_dev = dev[self.klass]
        new_cls = cls_dev + d_cls
        new_cash = s.base_dev[self.cash_col] + cash_delta / s.u
        d_cash = new_cash - dev[self.cash_col]
        t = s.tracking
        # Diagonal part (identity or specific risk): only two coordinates change.
        base = self._diagonal(dev)
        tracking = (base + self.w_cls * (new_cls ** 2 - cls_dev ** 2)
                    + self.w_cash * (new_cash ** 2 - dev[self.cash_col] ** 2))
        if t.factor is not None:
            r = t.factor @ dev
            moved = r[:, None] + self.g_cls * d_cls + self.g_cash[:, None] * d_cash
            tracking = tracking + np.square(moved).sum(axis=0)
        objective = tracking + s.tax_weight * m_tax / s.v + s.kappa * m_notional / s.v
        violation = s.violation(cash_delta, m_tax, s.sold(m_dv, m_notional))
        # "Unchanged" is the null move of the first symbol, scored by the same arithmetic as
        # every move, so a move that changes nothing never looks better by float noise.
        return objective, violation, (objective[pos[0]], violation[pos[0]])

    def pairs(self, current: np.ndarray, among: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Objective and violation of every change of two symbols at once, over the moves
        ``among`` (default: all) × the same (+inf where both moves change the same symbol, and
        below the diagonal). Diagonal tracking only (identity or specific risk): a pair then
        moves at most three deviations, its two classes (one, if shared) and cash."""
        s = self.scorer
        among = np.arange(len(self.col)) if among is None else among
        col, klass = self.col[among], self.klass[among]
        _, dv, notional, tax, dev, (d_value, d_notional, d_tax) = self._current(current, among)
        m_notional = notional + (d_notional[:, None] + d_notional[None, :])
        m_tax = tax + (d_tax[:, None] + d_tax[None, :])
        cash_delta = -(dv + (d_value[:, None] + d_value[None, :])) - s.kappa * m_notional
        a = d_value / s.u
        w = self.w_cls[among]
        own = w * (2.0 * dev[klass] + a) * a          # one move's change to its class term
        shared = np.where(klass[:, None] == klass[None, :], 2.0 * w[:, None] * a[:, None] * a[None, :], 0.0)
        new_cash = s.base_dev[self.cash_col] + cash_delta / s.u
        tracking = (self._diagonal(dev) + own[:, None] + own[None, :] + shared
                    + self.w_cash * (new_cash ** 2 - dev[self.cash_col] ** 2))
        objective = tracking + s.tax_weight * m_tax / s.v + s.kappa * m_notional / s.v
        objective[col[:, None] >= col[None, :]] = np.inf
        sold = None if s.max_sold == math.inf else s.sold(dv + (d_value[:, None] + d_value[None, :]), m_notional)
        return objective, s.violation(cash_delta, m_tax, sold)

    def best_pair(self, current: np.ndarray, now_obj: float, single: np.ndarray) -> tuple[int, int] | None:
        """The feasible two-symbol move that improves ``now_obj`` most, among the PAIR_MOVES
        moves whose own objective (``single``, feasible or not) is lowest; None if none does, or
        when the tracking has factor rows."""
        if self.g_cls is not None:
            return None
        among = np.argsort(single, kind="stable")[:PAIR_MOVES] if len(single) > PAIR_MOVES else None
        objective, violation = self.pairs(current, among)
        objective[violation > 0] = np.inf
        flat = int(np.argmin(objective))
        if not objective.flat[flat] < now_obj - 1e-15:
            return None
        m1, m2 = divmod(flat, objective.shape[1])
        return (m1, m2) if among is None else (int(among[m1]), int(among[m2]))


# Two-symbol moves are searched among this many single moves, those scoring best alone: a pair
# pays where two nearly-paying moves offset each other's cash (or class) deviation.
PAIR_MOVES = 32


def _coordinate_search(cands: list[_Candidates], scorer: Scorer, n_classes: int,
                       start: np.ndarray | None = None, moves: "_Moves | None" = None,
                       pairs: bool = False) -> list[int]:
    """Best-improvement search over single-symbol changes, from ``start`` (default: the rounding
    nearest the continuous solution); first towards feasibility, then down the objective. With
    ``pairs``, where no single change improves, changes of two symbols at once are tried
    (``_Moves.pairs``): a share more of one fund and less of another can pay where either alone
    moves cash the wrong way."""
    current = _nearest(cands) if start is None else start
    moves = moves or _Moves(cands, scorer, n_classes)
    for _ in range(20 * len(cands) + 100):
        objective, violation, (now_obj, now_vio) = moves.evaluate(current)
        if now_vio > 0:
            better = violation < now_vio
            if not better.any():
                raise _infeasible(scorer)
            pick = np.flatnonzero(better)[np.lexsort((objective[better], violation[better]))[0]]
        else:
            pick = _best(objective, violation)
            if pick is None or objective[pick] >= now_obj - 1e-15:
                pair = moves.best_pair(current, now_obj, objective) if pairs else None
                if pair is None:
                    break
                current = current.copy()
                for m in pair:
                    current[moves.col[m]] = moves.alt[m]
                continue
        current = current.copy()
        current[moves.col[pick]] = moves.alt[pick]
    else:  # out of iterations: never hand back a choice that breaks a hard constraint
        _, _, (_, now_vio) = moves.evaluate(current)
        if now_vio > 0:
            raise _infeasible(scorer)
    return list(current)


def _search_from_two_starts(cands: list[_Candidates], scorer: Scorer, n_classes: int) -> list[int]:
    """Coordinate search from the nearest rounding and from the cash-safe one (buys rounded
    down, sells up: cash never below the continuous plan's), the better result kept. From the
    nearest rounding alone, a plan a few dollars short of cash can only reach feasibility by
    dropping whole trades, far from the optimum."""
    moves = _Moves(cands, scorer, n_classes)
    nearest, safe = _nearest(cands), _cash_safe(cands)
    results = []
    for start in (nearest,) if np.array_equal(nearest, safe) else (nearest, safe):
        try:
            choice = _coordinate_search(cands, scorer, n_classes, start, moves)
        except Infeasible as exc:
            error = exc
            continue
        _, _, (objective, _) = moves.evaluate(np.array(choice))
        results.append((objective, choice))
    if not results:
        raise error
    return min(results, key=lambda r: r[0])[1]


def _nearest(cands: list[_Candidates]) -> np.ndarray:
    """Per symbol, the option closest in size to the continuous count (the first, on a tie)."""
    out = []
    for c in cands:
        gaps = [abs(abs(q) - c.continuous) for q in c.shares]
        out.append(gaps.index(min(gaps)))
    return np.array(out, dtype=int)


def _cash_safe(cands: list[_Candidates]) -> np.ndarray:
    """Per symbol, the largest buy not above the continuous one, the smallest sell not below it
    (the nearest other option where there is none)."""
    out = []
    for c in cands:
        buy = max(c.shares, default=0) > 0
        size = np.abs(c.shares)
        ok = (size <= c.continuous + 1e-9) if buy else (size >= c.continuous - 1e-9)
        if not ok.any():
            out.append(int(np.argmin(np.abs(size - c.continuous))))
        elif buy:
            out.append(int(np.flatnonzero(ok)[np.argmax(size[ok])]))
        else:
            out.append(int(np.flatnonzero(ok)[np.argmin(size[ok])]))
    return np.array(out)


def _infeasible(scorer: Scorer) -> Infeasible:
    """No combination of the candidates meets the cash floor, the tax budget and min_trade."""
    p = scorer.book.account.policy
    step = "fractional shares" if p.fractional else "whole shares"
    return Infeasible(f"no plan in {step} meets the cash floor (min_cash + withdrawal = {scorer.cash_floor:,.2f}) "
                      f"and the tax budget (max_tax = {scorer.max_tax:,.2f}) together with min_trade",
                      constraints=p.hard_rules(*PLAN_RULES))
