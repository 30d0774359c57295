"""The account as arrays for the math: symbols, lots and classes by position, with what may trade.

Built once per plan from a validated ``Account``; the model, the rounding and the plan all
index into the same arrays, so a symbol or a lot has one position everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property

import numpy as np
import pandas as pd

from .account import CASH, Account, Lot
from .tax import buy_blocked_symbols, last_long_term_ordinal


@dataclass(frozen=True, eq=False)
class Book:
    account: Account

    # --- classes and symbols ------------------------------------------------------------
    @cached_property
    def classes(self) -> tuple[str, ...]:
        """Asset classes (cash excluded): targeted ones, then held ones without a target."""
        return self.account.class_names

    @cached_property
    def symbols(self) -> tuple[str, ...]:
        """Symbols of those classes, in buy-preference order within each class."""
        known = set(self.classes)
        return tuple(s for s in self.account.symbols if self.account.class_of(s) in known)

    @cached_property
    def symbol_index(self) -> dict[str, int]:
        return {s: i for i, s in enumerate(self.symbols)}

    @cached_property
    def class_of_symbol(self) -> np.ndarray:
        idx = {c: k for k, c in enumerate(self.classes)}
        return np.array([idx[self.account.class_of(s)] for s in self.symbols], dtype=int)

    @cached_property
    def price(self) -> np.ndarray:
        return np.array([self.account.prices[s] for s in self.symbols], dtype=float)

    @cached_property
    def shares(self) -> np.ndarray:
        held = self.account.shares()
        return np.array([held.get(s, 0.0) for s in self.symbols], dtype=float)

    @cached_property
    def targets(self) -> np.ndarray:
        """Target weight per class, then the cash target."""
        return np.array([self.account.target(c) for c in (*self.classes, CASH)], dtype=float)

    # --- lots -----------------------------------------------------------------------------
    @cached_property
    def _lot_table(self) -> dict[str, np.ndarray]:
        """Every lot's numbers, read in one pass and put in relief order: grouped by symbol in
        ``symbols`` order, each group in minimum-tax order (``tax.min_tax_order``: tax per
        share, most negative first, then acquisition date, then id), vectorized."""
        a = self.account
        index = self.symbol_index
        held = [l for l in a.lots if l.symbol in index]
        n = len(held)
        symbol = np.fromiter((index[l.symbol] for l in held), dtype=int, count=n)
        quantity = np.fromiter((l.quantity for l in held), dtype=float, count=n)
        basis = np.fromiter((l.cost_basis for l in held), dtype=float, count=n)
        acquired = np.fromiter((l.acquired.toordinal() for l in held), dtype=int, count=n)
        long = acquired <= last_long_term_ordinal(a.as_of)  # tax.is_long_term, for every lot at once
        rates = np.where(long, a.tax.long_term_rate, a.tax.short_term_rate)
        tax_per_share = rates * (self.price[symbol] - basis)
        ids = np.array([l.id for l in held], dtype=str) if n else np.zeros(0, dtype=str)
        order = np.lexsort((ids, acquired, tax_per_share, symbol))
        return {"order": order, "symbol": symbol[order], "quantity": quantity[order], "basis": basis[order],
                "acquired": acquired[order], "long": long[order], "rate": rates[order],
                "held": held}

    @cached_property
    def lots(self) -> tuple[Lot, ...]:
        """Lots grouped by symbol, each group in minimum-tax relief order (losses first)."""
        held = self._lot_table["held"]
        return tuple(held[j] for j in self._lot_table["order"])

    @cached_property
    def lot_symbol(self) -> np.ndarray:
        return self._lot_table["symbol"]

    @cached_property
    def lot_range(self) -> np.ndarray:
        """Per symbol, [start, end) of its lots in ``lots`` (which are grouped by symbol)."""
        edges = np.searchsorted(self.lot_symbol, np.arange(len(self.symbols) + 1), side="left")
        return np.column_stack([edges[:-1], edges[1:]])

    @cached_property
    def lot_quantity(self) -> np.ndarray:
        return self._lot_table["quantity"]

    @cached_property
    def lot_basis(self) -> np.ndarray:
        return self._lot_table["basis"]

    @cached_property
    def lot_term(self) -> tuple[str, ...]:
        return tuple("long" if x else "short" for x in self._lot_table["long"])

    @cached_property
    def lot_rate(self) -> np.ndarray:
        return self._lot_table["rate"]

    @cached_property
    def lot_gain_per_share(self) -> np.ndarray:
        return self.price[self.lot_symbol] - self.lot_basis

    @cached_property
    def lot_tax_per_share(self) -> np.ndarray:
        return self.lot_rate * self.lot_gain_per_share

    @cached_property
    def lot_value(self) -> np.ndarray:
        return self.lot_quantity * self.price[self.lot_symbol]

    @cached_property
    def lot_lists(self) -> tuple[list[list[int]], list[float], list[float]]:
        """``lot_range``, ``lot_quantity`` and ``lot_tax_per_share`` as Python lists, converted
        once per plan: the rounding reads a few lots of a symbol at a time, many times."""
        return self.lot_range.tolist(), self.lot_quantity.tolist(), self.lot_tax_per_share.tolist()

    # --- what may trade ---------------------------------------------------------------------
    @cached_property
    def lot_sellable(self) -> np.ndarray:
        """False for lots in no_sell and for loss lots whose sale would be a wash sale
        (``tax.loss_sale_blocked``: the symbol was bought within the window, by a ``trades`` buy
        or another lot acquired), decided per symbol in one pass over the lots."""
        a, p = self.account, self.account.policy
        start = a.as_of - timedelta(days=p.wash_sale_days)
        acquired = self._lot_table["acquired"]
        recent = (acquired >= start.toordinal()) & (acquired <= a.as_of.toordinal())
        recent_lots = np.bincount(self.lot_symbol, weights=recent, minlength=len(self.symbols))
        buys = _recent_buys(a, start)
        bought = np.array([s in buys for s in self.symbols], dtype=bool)
        # Another lot of the symbol acquired in the window: the count, less the lot itself.
        other_recent = recent_lots[self.lot_symbol] - recent > 0
        blocked = bought[self.lot_symbol] | other_recent
        loss = self.price[self.lot_symbol] < self.lot_basis
        no_sell = np.array([s in p.no_sell for s in self.symbols], dtype=bool)[self.lot_symbol]
        return ~no_sell & ~(loss & blocked)

    @cached_property
    def wash_blocked_buys(self) -> frozenset[str]:
        return frozenset(buy_blocked_symbols(self.account))

    @cached_property
    def buy_eligible(self) -> np.ndarray:
        """May be bought at all: not in no_buy, not sold at a loss in the wash-sale window."""
        p = self.account.policy
        return np.array([s not in p.no_buy and s not in self.wash_blocked_buys for s in self.symbols], dtype=bool)

    def buy_targets(self, sold: np.ndarray) -> np.ndarray:
        """Per symbol, True for the one symbol of its class that buys go to: the first listed that
        may be bought and is not sold in this plan (SPEC section 2)."""
        chosen = np.zeros(len(self.symbols), dtype=bool)
        is_sold = np.asarray(sold).tolist()
        taken: set[int] = set()
        for i, k in self.buyable:
            if k not in taken and not is_sold[i]:
                chosen[i] = True
                taken.add(k)
        return chosen

    @cached_property
    def buyable_in_class(self) -> dict[int, list[int]]:
        """Per class, the symbols that may be bought, in listed order (classes with none left out)."""
        funds: dict[int, list[int]] = {}
        for i, k in self.buyable:
            funds.setdefault(k, []).append(i)
        return funds

    @cached_property
    def buyable(self) -> list[tuple[int, int]]:
        """(symbol, class) of each symbol that may be bought, in listed order."""
        eligible = self.buy_eligible.tolist()
        return [(i, k) for i, k in enumerate(self.class_of_symbol.tolist()) if eligible[i]]

    # --- values ---------------------------------------------------------------------------
    @cached_property
    def value(self) -> float:
        """V = cash + Σ price × quantity."""
        return self.account.value

    @cached_property
    def invested(self) -> float:
        """U = V − withdrawal: what weights are measured on after the plan."""
        return self.value - self.account.policy.withdrawal

    @cached_property
    def class_value(self) -> np.ndarray:
        return np.bincount(self.class_of_symbol, weights=self.shares * self.price, minlength=len(self.classes))

    def holdings_frame(self) -> pd.DataFrame:
        """Shares, price, value and class per symbol: a pandas view for notebooks."""
        return pd.DataFrame({"asset_class": [self.classes[k] for k in self.class_of_symbol],
                             "shares": self.shares, "price": self.price, "value": self.shares * self.price},
                            index=pd.Index(self.symbols, name="symbol"))


def _recent_buys(account: Account, start: date) -> frozenset[str]:
    """Symbols with a ``trades`` buy dated in [start, as_of]."""
    return frozenset(t.symbol for t in account.trades if t.side == "buy" and start <= t.date <= account.as_of)
