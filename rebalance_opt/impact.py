"""Pre-trade tax impact: what the sells cost in tax next to the drift they remove.

"Selling AAPL costs $5k in tax; is it worth it?" is answered against the best buy-only
(cash-flow) plan for the same account: the drift the sells remove beyond what cash alone could
do, and the tax per point of drift removed. Alternatives side by side (buy-only, the optimized
plan, a full reset to target with FIFO lots) show what the optimizer saves; ``what_if_sell``
prices a sale the user is considering, minimum-tax lots against FIFO.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .account import Account, Lot, require_account
from .book import Book
from .drift import DriftReport, drift_report
from .errors import Infeasible, InputError
from .plan import LotSale, Plan
from .solve import Planner
from .tax import TaxSummary, estimate, min_tax_order, rate, sellable, term


@dataclass(frozen=True)
class Alternative:
    """One way to rebalance, summarized: tax, drift after, tracking error, turnover."""

    name: str
    estimated_tax: float
    lot_tax: float
    tracking_error: float     # √Σ drift² over classes and cash, after the trades
    max_abs_drift: float
    turnover: float
    trades: int
    drift_after: dict[str, float]

    def to_dict(self) -> dict:
        return {"name": self.name, "estimated_tax": self.estimated_tax, "lot_tax": self.lot_tax,
                "tracking_error": self.tracking_error, "max_abs_drift": self.max_abs_drift,
                "turnover": self.turnover, "trades": self.trades, "drift_after": self.drift_after}


def _pct(drift: float) -> str:
    """A drift in signed points (``+18.3%``), one that rounds to zero ``0.0%`` without a sign, as the
    tables and the web page show it (a drift of -0.01 points read ``-0.0%``)."""
    text = f"{drift * 100:+.1f}"
    return (text.lstrip("+-") if float(text) == 0 else text) + "%"


@dataclass(frozen=True)
class SellImpact:
    """One sell of the optimized plan: its lot tax next to the weight it takes off its class.

    Selling a value X out of a class lowers that class's weight by exactly X / V' (V' = V −
    withdrawal), so ``points`` is the sell's own share of the drift removed; the class's drift
    after the best buy-only plan and after the optimized plan frame it.
    """

    symbol: str
    asset_class: str
    quantity: float
    notional: float
    lot_tax: float               # Σ rate × gain over the lots it relieves (< 0: a harvested loss)
    points: float                # weight taken off the class, in points
    drift_without: float | None  # the class's drift after the best buy-only plan (None: none is feasible)
    drift_with: float            # the class's drift after the optimized plan
    replaced_by: str | None      # the class's fund the plan buys instead, if any
    drift_now: float = 0.0       # the class's drift before the plan (measured on V)
    withdrawal: bool = False     # the plan withdraws: drift after is measured on V' < V
    estimated_tax: float | None = None  # what it adds to this year's tax (None: its lot tax)

    @property
    def tax(self) -> float:
        """What the sell adds to this year's estimated tax, given the plan's other sells: the plan's
        estimated tax with it less without it (SPEC section 2's netting with the year's realized
        gains and carryforwards), so what leaving it out would save. Its lot tax prices each gain
        at its term's rate, which is what it costs only where the netting leaves that rate the
        marginal one: a carryforward can absorb a gain (tax 0), and a short-term loss set against
        long-term gains saves the long-term rate. With netting between sells these need not add
        up to the plan's estimated tax; their lot taxes do add up to its lot tax."""
        return self.lot_tax if self.estimated_tax is None else self.estimated_tax

    @property
    def tax_per_point(self) -> float | None:
        return self.tax / self.points if self.points > 1e-9 and self.tax > 0 else None

    @property
    def sentence(self) -> str:
        head = f"Selling {self.quantity:,.6g} {self.symbol}"
        frame = (f"{self.asset_class} goes from {_pct(self.drift_without)} (buying only) "
                 f"to {_pct(self.drift_with)}" if self.drift_without is not None
                 else f"{self.asset_class} goes from {_pct(self.drift_now)} now to {_pct(self.drift_with)}"
                 + (" of what stays invested after the withdrawal" if self.withdrawal else ""))
        netted = ("" if abs(self.tax - self.lot_tax) < 0.005 else
                  f" (what leaving it out saves; ${self.lot_tax:,.0f} at its term's rate, moved by netting with "
                  "the plan's other sales and the year's gains, losses and carryforwards)")
        swap = f", replaced by {self.replaced_by}" if self.replaced_by else ""
        if self.lot_tax < 0 and self.tax < 0:
            return (f"{head} harvests a loss that lowers this year's tax by about ${-self.tax:,.0f}{netted}{swap}; "
                    f"{frame}.")
        if self.lot_tax < 0:  # a loss that changes nothing this year (a net loss is carried anyway)
            return (f"{head} realizes a loss that does not lower this year's tax{netted}{swap}; {frame}.")
        text = (f"{head} costs ${self.tax:,.0f} in tax{netted} and takes {self.points:.1f} points off "
                f"{self.asset_class}; {frame}")
        per = self.tax_per_point
        return text + (f"; ${per:,.0f} of tax per point of drift removed." if per is not None else ".")

    def to_dict(self) -> dict:
        return {"symbol": self.symbol, "asset_class": self.asset_class, "quantity": self.quantity,
                "notional": self.notional, "lot_tax": self.lot_tax, "estimated_tax": self.tax, "points": self.points,
                "drift_without": self.drift_without, "drift_with": self.drift_with,
                "replaced_by": self.replaced_by, "drift_now": self.drift_now, "tax_per_point": self.tax_per_point,
                "sentence": self.sentence}


@dataclass(frozen=True)
class TaxImpact:
    plan: Plan
    buy_only: Plan | None        # None: no buy-only plan is feasible, ``buy_only_infeasible`` says why
    sells: tuple[SellImpact, ...]
    alternatives: tuple[Alternative, ...]
    buy_only_infeasible: str | None = None

    @property
    def tax_of_selling(self) -> float | None:
        """What the sells add to this year's tax, beyond the buy-only plan (None without one)."""
        if self.buy_only is None:
            return None
        return self.plan.tax.estimated_tax - self.buy_only.tax.estimated_tax

    def to_dict(self) -> dict:
        return {"account": self.plan.account, "as_of": self.plan.as_of, "plan": self.plan.to_dict(),
                "tax": self.plan.tax.to_dict(), "tax_of_selling": self.tax_of_selling,
                "sells": [s.to_dict() for s in self.sells],
                "alternatives": [a.to_dict() for a in self.alternatives],
                "buy_only_infeasible": self.buy_only_infeasible}


def _summary(name: str, tax: TaxSummary, lot_tax: float, after: DriftReport, turnover: float,
             trades: int) -> Alternative:
    drifts = after.drift_map()
    return Alternative(name, tax.estimated_tax, lot_tax, math.sqrt(after.squared_error),
                       max(abs(d) for d in drifts.values()), turnover, trades, drifts)


def _alt(name: str, plan: Plan) -> Alternative:
    return _summary(name, plan.tax, plan.lot_tax, plan.drift_after, plan.turnover, len(plan.orders))


def tax_impact(account: Account, planner: Planner | None = None) -> TaxImpact:
    """The optimized plan's tax, sell by sell, against the drift it removes (see module doc).

    The plan is the one ``generate`` makes, and so is the verdict: where no buy-only plan is
    found (the rounding's exact search finds one whenever any whole-share plan exists, unless it
    stops at its time limit) the plan is still reported, without the comparison (``buy_only``
    None, and why in ``buy_only_infeasible``).
    """
    require_account(account, "tax_impact")
    planner = planner or Planner()
    plan = planner.plan(account)
    try:
        buy_only, why = planner.plan(account.with_policy(allow_sells=False)), None
    except Infeasible as exc:
        buy_only, why = None, str(exc)
    invested = plan.drift_after.value
    bought = {o.asset_class: o.symbol for o in plan.buys}
    sells = tuple(SellImpact(o.symbol, o.asset_class, o.quantity, o.notional, sum(s.tax for s in o.lots),
                             o.notional / invested * 100,
                             buy_only.drift_after.row(o.asset_class).drift if buy_only is not None else None,
                             plan.drift_after.row(o.asset_class).drift, bought.get(o.asset_class),
                             plan.drift_before.row(o.asset_class).drift, plan.withdrawal > 0,
                             _marginal_tax(account, plan, o.lots))
                  for o in plan.sells)
    reset = full_reset(account)
    alternatives = ((_alt("buy-only", buy_only),) if buy_only is not None else ()) + (_alt("optimized", plan), reset)
    return TaxImpact(plan, buy_only, sells, alternatives, why)


def _marginal_tax(account: Account, plan: Plan, lots) -> float:
    """What one sell's lots add to the plan's estimated tax: the estimate of every sale of the
    plan less the estimate without these lots' gains, each netted with the year (SPEC section 2)."""
    short = math.fsum(s.gain for s in lots if s.term == "short")
    long_ = math.fsum(s.gain for s in lots if s.term == "long")
    without = estimate(account.tax, plan.tax.short_term_gain - short, plan.tax.long_term_gain - long_)
    return plan.tax.estimated_tax - without.estimated_tax


# --- the naive reference: reset every class to target, selling FIFO ---------------------------
def full_reset(account: Account) -> Alternative:
    """Sell every overweight class down to target (oldest lots first, as brokers default to) and
    buy every underweight class up to target with the proceeds, in whole shares (or fractions
    if the policy allows). Restrictions (no_sell, no_buy, wash sales) are respected."""
    book = Book(account)
    p = account.policy
    u = book.invested
    step = 1e-6 if p.fractional else 1.0
    shares = book.shares.copy()
    cash = account.cash
    kappa = p.trade_cost_bps * 1e-4
    sold_lots: dict[str, float] = {}
    gains = {"short": 0.0, "long": 0.0}
    lot_tax = 0.0
    turnover = 0.0
    trades = 0
    targets = book.targets[:-1] * u
    value = book.class_value.copy()
    for k, cls in enumerate(book.classes):
        excess = value[k] - targets[k]
        if excess <= 0:
            continue
        lots = sorted((l for l in account.lots if account.class_of(l.symbol) == cls and sellable(account, l)),
                      key=lambda l: (l.acquired, l.id))
        for lot in lots:
            if excess <= 0:
                break
            price = account.prices[lot.symbol]
            qty = min(lot.quantity, math.ceil(excess / price / step - 1e-9) * step)
            if qty <= 0:
                continue
            sold_lots[lot.id] = qty
            shares[book.symbol_index[lot.symbol]] -= qty
            gain = (price - lot.cost_basis) * qty
            t = term(lot.acquired, account.as_of)
            gains[t] += gain
            lot_tax += rate(account.tax, t) * gain
            cash += qty * price * (1 - kappa)
            turnover += qty * price
            excess -= qty * price
            value[k] -= qty * price
    sold_symbols = {l.symbol for l in account.lots if l.id in sold_lots}
    trades += len(sold_symbols)
    buys = book.buy_targets(sold=np.array([s in sold_symbols for s in book.symbols]))
    for k, cls in enumerate(book.classes):
        need = targets[k] - value[k]
        idx = [i for i in range(len(book.symbols)) if book.class_of_symbol[i] == k and buys[i]]
        if need <= 0 or not idx:
            continue
        i = idx[0]
        price = book.price[i]
        budget = max(cash - p.min_cash - p.withdrawal, 0.0) / (1 + kappa)
        qty = math.floor(min(need, budget) / price / step + 1e-9) * step
        if qty <= 0:
            continue
        shares[i] += qty
        cash -= qty * price * (1 + kappa)
        turnover += qty * price
        trades += 1
    after = drift_report(account, dict(zip(book.symbols, shares)), cash - p.withdrawal, u)
    tax = estimate(account.tax, gains["short"], gains["long"])
    return _summary("full reset (FIFO)", tax, lot_tax, after, turnover, trades)


# --- what if I sell ...? ------------------------------------------------------------------------
@dataclass(frozen=True)
class LotPick:
    method: str                 # "minimum tax" | "FIFO"
    lots: tuple[LotSale, ...]
    lot_tax: float
    tax: TaxSummary

    def to_dict(self) -> dict:
        return {"method": self.method, "lots": [l.to_dict() for l in self.lots], "lot_tax": self.lot_tax,
                "tax": self.tax.to_dict()}


@dataclass(frozen=True)
class WhatIf:
    symbol: str
    quantity: float
    minimum_tax: LotPick
    fifo: LotPick

    @property
    def saving(self) -> float:
        return self.fifo.tax.estimated_tax - self.minimum_tax.tax.estimated_tax

    def to_dict(self) -> dict:
        return {"symbol": self.symbol, "quantity": self.quantity, "minimum_tax": self.minimum_tax.to_dict(),
                "fifo": self.fifo.to_dict(), "saving": self.saving}


def _pick(account: Account, method: str, lots: list[Lot], quantity: float) -> LotPick:
    left = quantity
    sales, gains, lot_tax = [], {"short": 0.0, "long": 0.0}, 0.0
    price = account.prices[lots[0].symbol] if lots else 0.0
    for lot in lots:
        if left <= 1e-12:
            break
        q = min(left, lot.quantity)
        left -= q
        t = term(lot.acquired, account.as_of)
        gain = (price - lot.cost_basis) * q
        gains[t] += gain
        tax = rate(account.tax, t) * gain
        lot_tax += tax
        sales.append(LotSale(lot.id, q, gain, t, tax, lot.cost_basis, lot.acquired.isoformat()))
    return LotPick(method, tuple(sales), lot_tax, estimate(account.tax, gains["short"], gains["long"]))


def _number(x, path: str, what: str) -> float:
    """A library argument as a finite float (an ``np.int64`` too, whose results JSON refused), else
    an InputError naming it: ``"10"`` was a TypeError, ``True`` one share, ``"x"`` a ValueError."""
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise InputError(f"must be {what}", path=path, value=x, has_value=True)
    return float(x)


def what_if_sell(account: Account, symbol: str, quantity: float | None = None) -> WhatIf:
    """The tax of selling ``quantity`` shares of ``symbol`` (all of it when None): the lots the
    engine would relieve (minimum tax) against FIFO, each netted with this year's gains."""
    require_account(account, "what_if_sell")
    if quantity is not None:
        quantity = _number(quantity, "quantity", "a number of shares, or None for all of them")
    held = [l for l in account.lots if l.symbol == symbol and sellable(account, l)]
    if symbol not in account.prices or not any(l.symbol == symbol for l in account.lots):
        raise InputError("is not held in the account", path="--sell", value=symbol, has_value=True)
    available = math.fsum(l.quantity for l in held)
    if quantity is None and not held:  # "all of it" of nothing: name the symbol, not a quantity never given
        raise InputError(f"no share of {symbol} may be sold (policy.no_sell, or loss lots a wash sale blocks)",
                         path="--sell", value=symbol, has_value=True)
    given, quantity = quantity, available if quantity is None else quantity
    if not (quantity > 0) or quantity > available + 1e-9:
        raise InputError(f"must be > 0 and at most the {available:,.6g} shares of {symbol} that may be sold "
                         "(no_sell and wash-sale-blocked loss lots excluded)", path="--sell", value=quantity,
                         has_value=True)
    if abs(quantity - available) <= 1e-9:
        quantity = available  # all of it: the lots add up to exactly the quantity
    else:  # an order the account could place: whole shares, or millionths where the policy is fractional
        step = 1e-6 if account.policy.fractional else 1.0
        count = quantity / step
        if round(count) < 1 or abs(count - round(count)) > 1e-6 * max(1.0, count):
            unit = "millionths of a share" if account.policy.fractional else "shares (policy.fractional is false)"
            raise InputError(f"must be a whole number of {unit}, or all {available:,.6g} shares of {symbol}",
                             path="--sell", value=given, has_value=True)
    minimum = _pick(account, "minimum tax", min_tax_order(account, held), quantity)
    fifo = _pick(account, "FIFO", sorted(held, key=lambda l: (l.acquired, l.id)), quantity)
    return WhatIf(symbol, quantity, minimum, fifo)


# --- the frontier ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class FrontierPoint:
    tax_weight: float
    lot_tax: float
    estimated_tax: float
    tracking_error: float
    plan: Plan

    def to_dict(self) -> dict:
        return {"tax_weight": self.tax_weight, "lot_tax": self.lot_tax, "estimated_tax": self.estimated_tax,
                "tracking_error": self.tracking_error, "turnover": self.plan.turnover, "stage": self.plan.stage}


DEFAULT_TAX_WEIGHTS = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


def frontier(account: Account, tax_weights=DEFAULT_TAX_WEIGHTS, planner: Planner | None = None) -> list[FrontierPoint]:
    """Sweep ``tax_weight``: tax paid against tracking error after the trade, with each plan.

    The compiled model is reused across the sweep (``tax_weight`` only changes a parameter).
    """
    require_account(account, "frontier")
    if isinstance(tax_weights, (str, bytes)) or not isinstance(tax_weights, Iterable):
        raise TypeError(f"frontier expects tax_weights as a list of numbers ([0.1], not 0.1), "
                        f"got {type(tax_weights).__name__}")
    planner = planner or Planner()
    points = []
    for w in sorted(_number(w, "tax_weights", "numbers (tax_weight values)") for w in tax_weights):
        plan = planner.plan(account.with_policy(tax_weight=w))
        points.append(FrontierPoint(w, plan.lot_tax, plan.tax.estimated_tax,
                                    math.sqrt(plan.drift_after.squared_error), plan))
    return points
