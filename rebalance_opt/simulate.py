"""Carrying an account through time: execute a plan, move to a new date, pay tax at year end.

Used by research notebooks and simulations: every buy becomes a new lot, every sell relieves
the lots its order names, realized gains accumulate in ``[tax]`` until the year ends, when the
year's tax (after netting, SPEC section 2) is paid from cash and a net loss carries forward.
Trades are kept in the account's history so the wash-sale rules see them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Mapping

from .account import Account, Lot, TaxSettings, Trade
from .plan import Plan
from .tax import year_tax


def apply_plan(account: Account, plan: Plan) -> Account:
    """The account after executing ``plan`` at its prices (the withdrawal leaves the account)."""
    relieved: dict[str, float] = {}
    trades = list(account.trades)
    new_lots = []
    st = lt = 0.0
    for o in plan.orders:
        if o.side == "sell":
            gain = 0.0
            for s in o.lots:
                relieved[s.lot] = relieved.get(s.lot, 0.0) + s.quantity
                gain += s.gain
                if s.term == "short":
                    st += s.gain
                else:
                    lt += s.gain
            trades.append(Trade(o.symbol, "sell", o.quantity, o.price, account.as_of, gain))
        else:
            n = sum(1 for l in account.lots if l.symbol == o.symbol) + len(new_lots)
            new_lots.append(Lot(f"{o.symbol}-{account.as_of.isoformat()}-{n}", o.symbol, o.quantity, o.price,
                                account.as_of))
            trades.append(Trade(o.symbol, "buy", o.quantity, o.price, account.as_of))
    lots = []
    for lot in account.lots:
        left = lot.quantity - relieved.get(lot.id, 0.0)
        if left > 1e-9:
            lots.append(dataclasses.replace(lot, quantity=left) if left != lot.quantity else lot)
    tax = dataclasses.replace(account.tax, realized_short_term=account.tax.realized_short_term + st,
                              realized_long_term=account.tax.realized_long_term + lt)
    cash = max(plan.cash_after - plan.withdrawal, 0.0)
    policy = dataclasses.replace(account.policy, withdrawal=0.0)
    return account.replace(cash=cash, lots=tuple(lots) + tuple(new_lots), trades=tuple(trades), tax=tax,
                           policy=policy)


@dataclass(frozen=True)
class YearEnd:
    """Tax paid when a tax year closed, and the losses carried into the next."""

    year: int
    tax_paid: float
    carryforward_short_term: float
    carryforward_long_term: float


def close_year(settings: TaxSettings) -> tuple[TaxSettings, float]:
    """Net the year's realized gains with its carryforwards; return the new year's settings and
    the tax due. A net loss carries forward in its own term (IRC §1212(b))."""
    st = settings.realized_short_term - settings.carryforward_short_term
    lt = settings.realized_long_term - settings.carryforward_long_term
    due = year_tax(st, lt, settings).tax
    # after cross-term netting, what is left negative carries forward in its term
    if st < 0 < lt:
        st, lt = min(st + lt, 0.0), 0.0
    elif lt < 0 < st:
        lt, st = min(st + lt, 0.0), 0.0
    new = dataclasses.replace(settings, realized_short_term=0.0, realized_long_term=0.0,
                              carryforward_short_term=max(-st, 0.0), carryforward_long_term=max(-lt, 0.0))
    return new, due


def advance(account: Account, as_of: date, prices: Mapping[str, float], deposit: float = 0.0
            ) -> tuple[Account, YearEnd | None]:
    """Move the account to ``as_of`` with new prices and a deposit. If a tax year ends on the
    way, its tax is paid from cash (cash may go no lower than zero; any shortfall is reported as
    paid all the same, as if from outside the account)."""
    year_end = None
    tax = account.tax
    cash = account.cash + deposit
    if as_of.year != account.as_of.year:
        tax, due = close_year(tax)
        year_end = YearEnd(account.as_of.year, due, tax.carryforward_short_term, tax.carryforward_long_term)
        cash = max(cash - due, 0.0)
    keep_after = as_of - timedelta(days=max(account.policy.wash_sale_days, 0) + 1)
    trades = tuple(t for t in account.trades if t.date >= keep_after)
    return account.replace(as_of=as_of, prices={**account.prices, **prices}, cash=cash, tax=tax,
                           trades=trades), year_end
