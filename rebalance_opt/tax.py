"""US-style capital-gains rules (SPEC section 2): holding period, per-lot tax, netting, wash sales.

Pure functions of dates and numbers; nothing here knows about the optimizer.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Iterable

from .account import Account, Lot, TaxSettings


def one_year_after(d: date) -> date:
    """The one-year anniversary; that of 29 February is 28 February (SPEC section 2)."""
    try:
        return d.replace(year=d.year + 1)
    except ValueError:
        return date(d.year + 1, 2, 28)


def is_long_term(acquired: date, sold: date) -> bool:
    """Long-term when sold *after* the anniversary: the holding period starts the day after the
    trade date and must exceed one year (IRS Pub 550, "Holding Period")."""
    return sold > one_year_after(acquired)


def last_long_term_ordinal(sold: date) -> int:
    """The latest acquisition date (as an ordinal) of a lot that is long-term when sold on
    ``sold``; 0 when none is. The anniversary never moves back as the acquisition date moves
    forward, so a lot is long-term exactly when acquired on or before it: one comparison per lot
    instead of an anniversary each."""
    n = sold.toordinal() - 366
    while n + 1 >= 1 and is_long_term(date.fromordinal(n + 1), sold):
        n += 1
    while n >= 1 and not is_long_term(date.fromordinal(n), sold):
        n -= 1
    return max(n, 0)


def term(acquired: date, sold: date) -> str:
    return "long" if is_long_term(acquired, sold) else "short"


def rate(settings: TaxSettings, term_: str) -> float:
    return settings.long_term_rate if term_ == "long" else settings.short_term_rate


def lot_tax_per_share(account: Account, lot: Lot) -> float:
    """rate(term) × (price − basis): the tax of selling one share of the lot (< 0 for a loss)."""
    r = rate(account.tax, term(lot.acquired, account.as_of))
    return r * (account.prices[lot.symbol] - lot.cost_basis)


def min_tax_order(account: Account, lots: Iterable[Lot]) -> list[Lot]:
    """Lots in the order a minimum-tax sale relieves them: tax per share, most negative first
    (losses first, then the cheapest gains); ties broken by acquisition date, then id."""
    return sorted(lots, key=lambda l: (lot_tax_per_share(account, l), l.acquired, l.id))


# --- netting ------------------------------------------------------------------------------
@dataclass(frozen=True)
class YearTax:
    """The year's tax after netting, and the net loss left to carry forward."""

    tax: float
    net_loss_carried: float


def year_tax(short_term: float, long_term: float, settings: TaxSettings) -> YearTax:
    """Tax on net short- and long-term gains of a year (carryforwards already subtracted).

    Same-term gains and losses net first (the arguments are those nets); a net loss on one side
    then offsets a net gain on the other and is taxed at that other side's rate; the year's tax
    is never below zero and a loss left over carries forward (IRC §1211(b), §1212(b)).
    """
    st, lt = short_term, long_term
    if st < 0 < lt:
        lt, st = max(lt + st, 0.0), min(lt + st, 0.0)
    elif lt < 0 < st:
        st, lt = max(st + lt, 0.0), min(st + lt, 0.0)
    tax = max(st, 0.0) * settings.short_term_rate + max(lt, 0.0) * settings.long_term_rate
    return YearTax(tax=tax, net_loss_carried=-min(st, 0.0) - min(lt, 0.0) + 0.0)


@dataclass(frozen=True)
class TaxSummary:
    """A plan's tax estimate (SPEC section 3 ``tax``): its own gains by term, the change it makes
    to this year's bill (negative when its losses lower it), and the loss left to carry."""

    short_term_gain: float
    long_term_gain: float
    estimated_tax: float
    net_loss_carried: float

    def to_dict(self) -> dict:
        return {"short_term_gain": self.short_term_gain, "long_term_gain": self.long_term_gain,
                "estimated_tax": self.estimated_tax, "net_loss_carried": self.net_loss_carried}


def estimate(settings: TaxSettings, plan_short_term: float, plan_long_term: float) -> TaxSummary:
    """Estimated tax of a plan = tax(realized this year + plan) − tax(realized this year)."""
    base_st = settings.realized_short_term - settings.carryforward_short_term
    base_lt = settings.realized_long_term - settings.carryforward_long_term
    before = year_tax(base_st, base_lt, settings)
    after = year_tax(base_st + plan_short_term, base_lt + plan_long_term, settings)
    return TaxSummary(short_term_gain=plan_short_term, long_term_gain=plan_long_term,
                      estimated_tax=after.tax - before.tax, net_loss_carried=after.net_loss_carried)


# --- wash sales ---------------------------------------------------------------------------
def _in_window(d: date, as_of: date, days: int) -> bool:
    return as_of - timedelta(days=days) <= d <= as_of


def buy_blocked_symbols(account: Account) -> set[str]:
    """Symbols the plan may not buy: sold at a loss within ``wash_sale_days`` before as_of
    (inclusive), since buying them now would wash that loss (IRC §1091)."""
    days = account.policy.wash_sale_days
    return {t.symbol for t in account.trades
            if t.side == "sell" and (t.realized_gain or 0.0) < 0 and _in_window(t.date, account.as_of, days)}


def loss_sale_blocked(account: Account, lot: Lot) -> bool:
    """True when selling this lot at a loss would be a wash sale: its symbol was bought (a
    ``trades`` buy, or another lot acquired) within ``wash_sale_days`` before as_of, inclusive."""
    days = account.policy.wash_sale_days
    if any(t.side == "buy" and t.symbol == lot.symbol and _in_window(t.date, account.as_of, days)
           for t in account.trades):
        return True
    return any(o.symbol == lot.symbol and o.id != lot.id and _in_window(o.acquired, account.as_of, days)
               for o in account.lots)


def is_loss(account: Account, lot: Lot) -> bool:
    return account.prices[lot.symbol] < lot.cost_basis


def sellable(account: Account, lot: Lot) -> bool:
    """A lot may be sold unless its symbol is in no_sell or the sale would realize a washed loss."""
    if lot.symbol in account.policy.no_sell:
        return False
    return not (is_loss(account, lot) and loss_sale_blocked(account, lot))

