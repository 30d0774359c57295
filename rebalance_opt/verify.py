"""An independent check of a plan against SPEC section 2's hard constraints.

Written from the raw account fields, sharing no code with the model or the rounding, so a
bug there cannot also hide here. A plan that fails is never emitted (``PlanRejected``).
"""
from __future__ import annotations

from datetime import timedelta

from .account import Account
from .errors import PlanRejected

TOLERANCE = 1e-6  # money and shares: float noise only
# ... plus the noise of summing large amounts: a few thousand IEEE sums drift by at most ~1e-13 of
# the magnitudes summed (n · 2⁻⁵³), so a $4e11 sale ending at $0.39 of cash is not "off by $1.5e-5".
RELATIVE_NOISE = 1e-12


def violations(account: Account, plan) -> list[str]:
    """Every hard constraint the plan breaks, in words (empty when it is valid)."""
    a, p = account, account.policy
    out: list[str] = []
    lots = {lot.id: lot for lot in a.lots}
    window_start = a.as_of - timedelta(days=p.wash_sale_days)
    recent = lambda d: window_start <= d <= a.as_of  # noqa: E731 - inclusive window, SPEC section 2
    bought_symbols = {o.symbol for o in plan.orders if o.side == "buy"}
    recent_buys = {t.symbol for t in a.trades if t.side == "buy" and recent(t.date)}
    recent_lots: dict[str, set[str]] = {}  # symbol -> ids of its lots acquired in the window
    for x in a.lots:
        if recent(x.acquired):
            recent_lots.setdefault(x.symbol, set()).add(x.id)
    seen: set[str] = set()
    cash = a.cash
    flow = abs(a.cash)  # the magnitudes the cash sum goes through
    lot_tax = 0.0
    for o in plan.orders:
        if o.symbol in seen:
            out.append(f"{o.symbol} has more than one order")
        seen.add(o.symbol)
        if o.quantity <= 0 or o.price != a.prices.get(o.symbol):
            out.append(f"{o.symbol}: bad quantity {o.quantity} or price {o.price}")
        if p.min_trade and o.quantity * o.price < p.min_trade - TOLERANCE:
            out.append(f"{o.symbol}: order of {o.quantity * o.price:.2f} is below min_trade {p.min_trade}")
        cost = o.quantity * o.price * p.trade_cost_bps * 1e-4
        flow += o.quantity * o.price + cost
        if o.side == "buy":
            cash -= o.quantity * o.price + cost
            if o.symbol in p.no_buy:
                out.append(f"{o.symbol} is bought but is in no_buy")
            if any(t.symbol == o.symbol and t.side == "sell" and (t.realized_gain or 0) < 0 and recent(t.date)
                   for t in a.trades):
                out.append(f"{o.symbol} is bought within {p.wash_sale_days} days of a loss sale")
            if not p.fractional and abs(o.quantity - round(o.quantity)) > 1e-9:
                out.append(f"{o.symbol}: buy of {o.quantity} is not whole shares")
            continue
        cash += o.quantity * o.price - cost
        if o.symbol in p.no_sell:
            out.append(f"{o.symbol} is sold but is in no_sell")
        relieved = 0.0
        closes_fraction = False
        for sale in o.lots:
            lot = lots.get(sale.lot)
            if lot is None or lot.symbol != o.symbol:
                out.append(f"{o.symbol}: lot {sale.lot} is not a lot of {o.symbol}")
                continue
            if sale.quantity > lot.quantity * (1 + RELATIVE_NOISE) + TOLERANCE or sale.quantity <= 0:
                out.append(f"lot {lot.id}: sells {sale.quantity} of {lot.quantity} shares")
            closes_fraction |= abs(sale.quantity - lot.quantity) <= TOLERANCE and lot.quantity != round(lot.quantity)
            relieved += sale.quantity
            gain = (o.price - lot.cost_basis) * sale.quantity
            anniversary = _anniversary(lot.acquired)
            rate = a.tax.long_term_rate if a.as_of > anniversary else a.tax.short_term_rate
            lot_tax += rate * gain
            if gain < 0 and (o.symbol in bought_symbols or o.symbol in recent_buys
                             or recent_lots.get(o.symbol, set()) - {lot.id}):
                out.append(f"lot {lot.id}: loss sale would be a wash sale")
        if abs(relieved - o.quantity) > TOLERANCE + RELATIVE_NOISE * o.quantity:
            out.append(f"{o.symbol}: lots relieve {relieved} shares but the order sells {o.quantity}")
        if not p.fractional and not closes_fraction and abs(o.quantity - round(o.quantity)) > 1e-9:
            out.append(f"{o.symbol}: sell of {o.quantity} is not whole shares")
    floor = p.min_cash + p.withdrawal
    noise = RELATIVE_NOISE * flow
    if cash < floor - TOLERANCE - noise:
        out.append(f"cash after {cash:.6f} is below min_cash + withdrawal {floor:.2f}")
    if abs(cash - plan.cash_after) > TOLERANCE * max(1.0, abs(cash)) + noise:
        out.append(f"cash after {plan.cash_after} does not reconcile with the orders ({cash})")
    if lot_tax > p.max_tax + TOLERANCE:
        out.append(f"lot tax {lot_tax:.2f} exceeds max_tax {p.max_tax:.2f}")
    return out


def _anniversary(d):
    try:
        return d.replace(year=d.year + 1)
    except ValueError:
        return d.replace(year=d.year + 1, day=28)


def verify_plan(account: Account, plan) -> None:
    problems = violations(account, plan)
    if problems:
        raise PlanRejected("the plan failed its independent check and was not emitted: " + "; ".join(problems))
