"""Lot screening: solve with the lots that can matter, then prove the others stay unsold.

Within one symbol, the model's lots differ only in their tax per unit sold (``lot_tax``) and
their caps: every lot of a symbol has the same column in the class, cash, trading-cost and
sell-room rows. So, by an exchange argument on the KKT conditions, a lot is never worth selling
while a cheaper lot of the same symbol is left unsold:

    if an included lot j of symbol i ends below its cap, its reduced cost is ≥ 0; any excluded lot
    j' of i with lot_tax[j'] ≥ lot_tax[j] has reduced cost
        rc[j] + (lot_tax[j'] − lot_tax[j]) · (tax_weight · U/V + λ_tax_budget) ≥ rc[j] ≥ 0
    (tax_weight ≥ 0, the budget's multiplier λ ≥ 0), so leaving j' at zero keeps the solution
    optimal for the problem with every lot.

``Book`` orders each symbol's lots by tax per share (the minimum-tax relief order, which is
``lot_tax`` order since one symbol has one price), so the screened set is a prefix of each
symbol's lots. It starts from what a plan can plausibly sell: per class, its cheapest lots
covering ``COVER`` times its excess over target, every loss lot, and then each symbol's next
sellable lot (expected to stay below its cap, so that it proves the rest). After a solve, a
symbol whose included lots are all sold to their caps (within ``SATURATED``) may need more; its
prefix doubles and the model is solved again. A solve of the screened problem that is infeasible
or fails falls back to every lot, and so does a first set that would leave out too little to pay
(``WORTH``). The result is the optimum of the full problem, while the solver of a many-lot
account sees the lots that matter.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .errors import SolverFailed
from .problem import ModelData, Solution

COVER = 1.5         # the initial set covers this multiple of each class's excess over target
SATURATED = 1e-6    # a lot sold within this much of its cap (fraction of U) counts as sold out
MIN_LOTS = 4        # a doubling adds at least this many lots to a symbol's prefix
# Screen only when the first set leaves out more than half the sellable lots: the solve saved is
# smaller than a widening's re-solve otherwise (a direct index with a class per stock kept 84%
# of its lots and paid a fifth solve).
WORTH = 0.5
# Accounts with fewer lots are not screened: there a solve costs little more than its setup, and
# screening saved nothing measurable (300 synthetic households of 10-30 funds: 5.4 ms a plan with
# or without it), while its own bookkeeping costs a tenth of a millisecond a plan.
MIN_LOTS_TO_SCREEN = 256


def class_runs(sorted_class: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For lots sorted by class: where each class's run starts, and each lot's run number."""
    first = np.r_[True, sorted_class[1:] != sorted_class[:-1]] if len(sorted_class) else np.zeros(0, bool)
    return np.flatnonzero(first), np.cumsum(first) - 1


def before_in_class(values: np.ndarray, class_start: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """For lots sorted by class, the sum of ``values`` over the lots before each one in its class."""
    before = np.cumsum(values) - values
    return before - before[class_start][segment]


class LotScreen:
    """The screening of one plan's lots (fixed data: which symbol and class each lot is in, and
    its tax per unit sold; the caps change per solve)."""

    def __init__(self, lot_symbol: np.ndarray, class_of_symbol: np.ndarray, lot_tax: np.ndarray,
                 class_excess: np.ndarray):
        m, n = len(lot_symbol), len(class_of_symbol)
        self.lot_symbol = lot_symbol
        self.n_symbols = n
        starts = np.searchsorted(lot_symbol, np.arange(n), side="left")
        self.position = np.arange(m) - starts[lot_symbol]  # rank within the symbol's lots
        self.size = np.bincount(lot_symbol, minlength=n)
        self.held = self.size > 0
        self.starts = starts[self.held]  # segment starts of the symbols with lots (for reduceat)
        lot_class = class_of_symbol[lot_symbol] if m else np.zeros(0, int)
        self.by_class = np.lexsort((np.arange(m), lot_tax, lot_class))
        sorted_class = lot_class[self.by_class]
        self.class_start, self.segment = class_runs(sorted_class)
        self.need = COVER * np.maximum(class_excess, 0.0)[sorted_class]
        self.losses = self._per_symbol(np.maximum, np.where(lot_tax < 0, self.position + 1, 0), 0)

    @staticmethod
    def of(book, data: ModelData) -> LotScreen | None:
        """The screen of a plan's ``Book`` and its base ``ModelData`` (class gaps, lot tax); None
        below ``MIN_LOTS_TO_SCREEN`` lots."""
        if len(book.lot_symbol) < MIN_LOTS_TO_SCREEN:
            return None
        return LotScreen(book.lot_symbol, book.class_of_symbol, data.lot_tax, data.gap[:-1])

    def _per_symbol(self, ufunc: np.ufunc, values: np.ndarray, empty: int) -> np.ndarray:
        """``ufunc`` reduced over each symbol's lots (``empty`` for a symbol without lots)."""
        out = np.full(self.n_symbols, empty)
        if len(self.starts):
            out[self.held] = ufunc.reduceat(values, self.starts)
        return out

    def initial(self, s_max: np.ndarray) -> np.ndarray:
        """Lots to solve with first (a prefix of each symbol's lots), as a mask."""
        if len(s_max) == 0:
            return np.zeros(0, dtype=bool)
        cap = s_max[self.by_class]
        before = before_in_class(cap, self.class_start, self.segment)  # sold before it, cheapest first
        covering = np.zeros(len(s_max), dtype=bool)
        covering[self.by_class] = (before < self.need) & (cap > 0)
        count = np.maximum(self._per_symbol(np.maximum, np.where(covering, self.position + 1, 0), 0), self.losses)
        # Up to the first sellable lot past the covering set and the losses (whose sale may be
        # all the plan needs): a lot expected to stay below its cap proves the rest unneeded.
        beyond = (s_max > 0) & (self.position >= count[self.lot_symbol])
        end = self._per_symbol(np.minimum, np.where(beyond, self.position + 1, len(s_max)), 0)
        return self.position < np.minimum(end, self.size)[self.lot_symbol]

    def widen(self, keep: np.ndarray, s_max: np.ndarray, sells: np.ndarray) -> np.ndarray | None:
        """None when the solution ``sells`` (with lots ``keep``) is optimal for every lot; else a
        wider mask: each symbol with sellable lots left out and every included lot sold out gets
        its prefix doubled."""
        room = (s_max - sells > SATURATED) & keep  # an included lot left below its cap
        proven = np.bincount(self.lot_symbol, weights=room, minlength=self.n_symbols) > 0
        left_out = np.bincount(self.lot_symbol, weights=~keep & (s_max > 0), minlength=self.n_symbols) > 0
        grow = left_out & ~proven
        if not grow.any():
            return None
        count = np.bincount(self.lot_symbol, weights=keep, minlength=self.n_symbols).astype(int)
        count = np.where(grow, np.maximum(2 * count, count + MIN_LOTS), count)
        return self.position < count[self.lot_symbol]


def screened(solve: Callable[[np.ndarray], Solution | None], screen: LotScreen | None,
             s_max: np.ndarray) -> Solution | None:
    """``solve(caps)`` (a solve of the model with these lot caps; None when infeasible) at the
    optimum over every lot, done over screened lots: widened until proven, and over every lot
    when a screened solve is infeasible or fails (or ``screen`` is None)."""
    sellable = s_max > 0
    keep = screen.initial(s_max) if screen is not None else sellable
    if np.count_nonzero(keep & sellable) > WORTH * np.count_nonzero(sellable):
        keep = sellable  # too little left out to pay for the re-solve a widening would cost
    while not keep[sellable].all():
        try:
            sol = solve(s_max * keep)
        except SolverFailed:
            sol = None
        if sol is None:
            break  # infeasible or failed with fewer lots: every lot decides
        wider = screen.widen(keep, s_max, sol.sells)
        if wider is None:
            return sol
        keep = wider
    return solve(s_max)
