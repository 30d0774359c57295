"""From share counts to orders: the lots each sell relieves and the basket's orders.

Sells relieve lots in minimum-tax order (losses first, then the cheapest gains), which is also the
order the convex model itself prefers, since lots of one symbol differ only in their tax. The tax
of selling q shares of a symbol is a piecewise-linear function read off cumulative sums of its
lots (``SymbolLots``), which the rounding (``rounding.py``) reads for every candidate count.
"""
from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from .book import Book
from .plan import LotSale, Order

FEW_LOTS = 64               # a symbol with at most this many lots has its cumulative sums built in Python


@dataclass(frozen=True)
class Trades:
    """Shares per symbol (signed: + buy, − sell) and shares sold per lot (book order)."""

    shares: np.ndarray
    lot_shares: np.ndarray


class SymbolLots:
    """One symbol's sellable lots in minimum-tax order, with cumulative quantity and tax, so
    the tax of selling q shares and the lots relieved are read off in O(log lots). Kept as
    Python floats: a plan asks for a handful of quantities, where numpy's per-call overhead
    costs more than the arithmetic (the results are the same IEEE operations)."""

    def __init__(self, book: Book, symbol: int, lot_allowed: np.ndarray):
        ranges, qty_all, tax_all = book.lot_lists
        start, end = ranges[symbol]
        if end - start <= FEW_LOTS:  # plain Python: the same sums, in the same order, as cumsum
            allowed = lot_allowed[start:end].tolist()
            self.lots = [start + j for j, ok in enumerate(allowed) if ok]
            self.quantity = [qty_all[j] for j in self.lots]
            self.tax_per_share = [tax_all[j] for j in self.lots]
            self.cum_qty = list(itertools.accumulate(self.quantity))
            self.cum_tax = list(itertools.accumulate(q * t for q, t in zip(self.quantity, self.tax_per_share)))
        else:
            self.lots = (start + np.flatnonzero(lot_allowed[start:end])).tolist()
            qty = book.lot_quantity[self.lots]
            tax_per_share = book.lot_tax_per_share[self.lots]
            self.cum_qty = np.cumsum(qty).tolist()
            self.cum_tax = np.cumsum(qty * tax_per_share).tolist()
            self.quantity = qty.tolist()
            self.tax_per_share = tax_per_share.tolist()
        self.capacity = float(self.cum_qty[-1]) if self.lots else 0.0

    def tax(self, quantity: np.ndarray) -> np.ndarray:
        """Lot-level tax of selling each of ``quantity`` shares."""
        return np.array([self.tax_of(float(q)) for q in np.atleast_1d(quantity)], dtype=float)

    def tax_of(self, q: float) -> float:
        n = len(self.cum_qty)
        if not n:
            return 0.0
        k = min(bisect.bisect_left(self.cum_qty, q - 1e-12), n - 1)
        before_qty = self.cum_qty[k - 1] if k > 0 else 0.0
        before_tax = self.cum_tax[k - 1] if k > 0 else 0.0
        return before_tax + (min(q, self.cum_qty[k]) - before_qty) * self.tax_per_share[k]

    def relieve(self, quantity: float, n_lots: int) -> np.ndarray:
        """Per-lot shares relieved (all lots of the book) when selling ``quantity`` shares: every
        lot sold whole is relieved by exactly its quantity (rebuilt from cumulative sums, a 54-share
        lot after lots of 0.1 and 0.2 came out as 54.000000000000014), the last one by the rest."""
        out = np.zeros(n_lots)
        if quantity <= 0 or not self.lots:
            return out
        if quantity >= self.capacity:  # all of it
            out[self.lots] = self.quantity
            return out
        before = 0.0  # shares of the lots before this one (as ``tax_of`` counts them)
        for k, (lot, qty, cum) in enumerate(zip(self.lots, self.quantity, self.cum_qty)):
            if before >= quantity - 1e-12:
                break
            out[lot] = qty if cum <= quantity + 1e-12 else _rest(quantity, self.quantity[:k])
            before = cum
        return out


def _rest(quantity: float, whole: list[float]) -> float:
    """``quantity`` less the lots sold whole, worked out on the decimals the numbers are written
    as (their shortest repr: a file's lot quantities, an order of millionths), so a partial lot is
    relieved by the decimal a broker reads: 100.123456 − 3.807683 is 96.315773, where float
    subtraction gave 96.31577300000004 (in the basket's lots column). Numpy floats are read as
    floats: numpy 2's repr of one is ``np.float64(3.5)``, no decimal."""
    if not whole:
        return quantity
    return float(Decimal(repr(float(quantity))) - sum(Decimal(repr(float(q))) for q in whole))


def relieve(book: Book, symbol: int, quantity: float, lot_allowed: np.ndarray) -> np.ndarray:
    """Per-lot shares relieved when selling ``quantity`` of one symbol: lots in minimum-tax order."""
    return SymbolLots(book, symbol, lot_allowed).relieve(quantity, len(book.lots))


def to_orders(book: Book, trades: Trades) -> tuple[Order, ...]:
    """Orders from share counts: sells (with the lots they relieve) first, then buys."""
    sells, buys = [], []
    shares, price, klass = trades.shares.tolist(), book.price.tolist(), book.class_of_symbol.tolist()
    for i in np.flatnonzero(trades.shares).tolist():
        sym, q, cls = book.symbols[i], shares[i], book.classes[klass[i]]
        if q > 0:
            buys.append(Order(sym, "buy", q, price[i], cls))
            continue
        start, end = book.lot_range[i].tolist()
        sold = trades.lot_shares[start:end].tolist()
        gain_per_share = book.lot_gain_per_share[start:end].tolist()
        rate = book.lot_rate[start:end].tolist()
        sales = []
        for k, qty in enumerate(sold):
            if qty > 0:
                lot, gain = book.lots[start + k], qty * gain_per_share[k]
                sales.append(LotSale(lot.id, qty, gain, book.lot_term[start + k], rate[k] * gain,
                                     lot.cost_basis, lot.acquired.isoformat()))
        sells.append(Order(sym, "sell", -q, price[i], cls, tuple(sales)))
    return tuple(sells + buys)
