"""An independent feasibility oracle for whole-share plans: a MILP (scipy.optimize.milp, HiGHS).

Written from the raw account fields and SPEC section 2 alone, sharing no code with the engine
(no Book, no model, no rounding), so that a plan the engine fails to find can be told apart from
one that does not exist. It answers: is there a plan in whole shares (millionths of a share when
``fractional``) that meets every hard constraint and the rules of a cash-first stage?

* ``"cash_first"``: buys go to each class's first listed buyable symbol only; sells only when
  cash is short of min_cash + withdrawal, and then only "just what the withdrawal needs": no
  sold symbol could give up one share (or the whole order, at min_trade) and still cover it,
  that is the plan's net proceeds are at most the shortfall plus (one share + min_trade) of
  every symbol it sells (``room="strict"``). Where no plan is that close (a tax budget that
  needs a loss harvested beyond the need, say), the need is the least proceeds of any plan
  (``room="least"``, the default, falls back to that): the stage has a plan exactly when some
  whole-share sale covers the shortfall within the hard constraints.
* ``"any"``: any sellable lot may be sold, a symbol is bought or sold never both, and a class's
  buys go to its first listed buyable symbol not sold.

Variables: shares bought per symbol (integer steps), shares sold per symbol (integer steps, or
every sellable share of it when that is not a whole number), shares sold per lot (continuous;
their sum is the symbol's), and binaries for bought / sold (a trade is 0 or >= min_trade).
The point found (least value traded) is checked again in plain floats: lots relieved in
minimum-tax order, cash, tax and min_trade, with the independent check's tolerance.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix

TOLERANCE = 1e-6  # money, as rebalance_opt/verify.py


def _anniversary(d: date) -> date:
    try:
        return d.replace(year=d.year + 1)
    except ValueError:
        return d.replace(year=d.year + 1, day=28)


@dataclass
class Result:
    feasible: bool
    shares: dict[str, float]  # signed (+ buy, - sell), symbols traded only
    status: str               # "feasible" | "infeasible" | "unsure" (solver limit, or recheck failed)
    proceeds: float = 0.0     # net sale proceeds of the point


def symbols_in_order(a) -> list[str]:
    """Priced or held symbols: those listed in [classes] first, in that order."""
    seen: dict[str, None] = {}
    for s in a.classes:
        if s in a.prices:
            seen[s] = None
    for s in list(a.prices) + [lot.symbol for lot in a.lots]:
        seen.setdefault(s, None)
    return list(seen)


def sellable_lots(a) -> list:
    """Lots that may be sold: not in no_sell, and no loss lot of a symbol bought in the wash-sale
    window (a trades buy, or another lot acquired in it)."""
    start = a.as_of - timedelta(days=a.policy.wash_sale_days)
    recent = lambda d: start <= d <= a.as_of  # noqa: E731
    bought = {t.symbol for t in a.trades if t.side == "buy" and recent(t.date)}
    out = []
    for lot in a.lots:
        if lot.symbol in a.policy.no_sell:
            continue
        loss = a.prices[lot.symbol] < lot.cost_basis
        other_recent = any(o.id != lot.id and o.symbol == lot.symbol and recent(o.acquired) for o in a.lots)
        if loss and (lot.symbol in bought or other_recent):
            continue
        out.append(lot)
    return out


def buyable(a) -> set[str]:
    start = a.as_of - timedelta(days=a.policy.wash_sale_days)
    blocked = {t.symbol for t in a.trades if t.side == "sell" and (t.realized_gain or 0) < 0
               and start <= t.date <= a.as_of}
    return {s for s in a.prices if s not in a.policy.no_buy and s not in blocked}


def classes_in_play(a) -> list[str]:
    names = dict.fromkeys(a.targets)
    for lot in a.lots:
        names.setdefault(a.classes.get(lot.symbol, lot.symbol), None)
    return list(names)


def lot_tax_per_share(a, lot) -> float:
    rate = a.tax.long_term_rate if a.as_of > _anniversary(lot.acquired) else a.tax.short_term_rate
    return rate * (a.prices[lot.symbol] - lot.cost_basis)


def feasible_point(a, stage: str, allowed_lot_ids: set[str] | None = None, allow_buys: bool = True,
                   time_limit: float = 20.0, room: str = "least") -> Result:
    """A whole-share plan meeting the hard constraints and ``stage``'s rules, if there is one.

    ``allowed_lot_ids`` narrows the sellable lots further (one direction choice of the engine);
    ``allow_buys=False`` looks for a plan that sells only (buys never help feasibility)."""
    found = _feasible_point(a, stage, allowed_lot_ids, allow_buys, time_limit, capped=stage == "cash_first")
    if stage == "cash_first" and room == "least" and found.status == "infeasible":
        found = _feasible_point(a, stage, allowed_lot_ids, allow_buys, time_limit, capped=False)
    return found


def _feasible_point(a, stage, allowed_lot_ids, allow_buys, time_limit, capped: bool) -> Result:
    p = a.policy
    step = 1e-6 if p.fractional else 1.0
    kappa = p.trade_cost_bps * 1e-4
    floor = p.min_cash + p.withdrawal
    shortfall = max(0.0, floor - a.cash)
    mt = p.min_trade
    symbols = symbols_in_order(a)
    in_play = set(classes_in_play(a))
    symbols = [s for s in symbols if a.classes.get(s, s) in in_play]
    sym_index = {s: i for i, s in enumerate(symbols)}
    lots = [l for l in sellable_lots(a) if l.symbol in sym_index
            and (allowed_lot_ids is None or l.id in allowed_lot_ids)]
    if stage == "cash_first" and shortfall == 0:
        lots = []
    can_buy = buyable(a)
    first_buy: dict[str, str] = {}
    for s in symbols:
        if s in can_buy:
            first_buy.setdefault(a.classes.get(s, s), s)
    value = a.cash + sum(a.prices[l.symbol] * l.quantity for l in a.lots)

    n_sym, n_lot = len(symbols), len(lots)
    cap = np.zeros(n_sym)
    for l in lots:
        cap[sym_index[l.symbol]] += l.quantity
    price = np.array([a.prices[s] for s in symbols])
    # variable layout: b (buy steps), n (sell steps), B, S, A (sell all), s (per lot shares)
    ob, on, oB, oS, oA, os_ = 0, n_sym, 2 * n_sym, 3 * n_sym, 4 * n_sym, 5 * n_sym
    nv = 5 * n_sym + n_lot
    lo, hi = np.zeros(nv), np.zeros(nv)
    integrality = np.zeros(nv)
    integrality[: 5 * n_sym] = 1
    max_buy = np.floor(value / (price * step)) + 1
    frac_cap = np.array([abs(c / step - round(c / step)) > 1e-9 for c in cap])
    for i, s in enumerate(symbols):
        cls = a.classes.get(s, s)
        may_buy = allow_buys and s in can_buy and (stage == "any" or first_buy.get(cls) == s)
        hi[ob + i] = max_buy[i] if may_buy else 0
        hi[oB + i] = 1 if may_buy else 0
        hi[on + i] = math.ceil(cap[i] / step + 1e-9)
        hi[oS + i] = 1 if cap[i] > 0 else 0
        hi[oA + i] = 1 if frac_cap[i] else 0
    for j, l in enumerate(lots):
        hi[os_ + j] = l.quantity

    rows, rlo, rhi = [], [], []

    def add(coefs: dict[int, float], low: float, high: float) -> None:
        rows.append(coefs)
        rlo.append(low)
        rhi.append(high)

    lots_of: dict[int, list[int]] = {}
    for j, l in enumerate(lots):
        lots_of.setdefault(sym_index[l.symbol], []).append(j)
    for i in range(n_sym):
        mine = lots_of.get(i, [])
        if mine:
            # shares sold of the symbol = whole steps, unless every sellable share is sold (A)
            big = cap[i] + 1
            add({**{os_ + j: 1.0 for j in mine}, on + i: -step, oA + i: -big}, -np.inf, 0.0)
            add({**{os_ + j: 1.0 for j in mine}, on + i: -step, oA + i: big}, 0.0, np.inf)
            if frac_cap[i]:
                for j in mine:
                    add({os_ + j: 1.0, oA + i: -lots[j].quantity}, 0.0, np.inf)
            add({**{os_ + j: 1.0 for j in mine}, oS + i: -cap[i]}, -np.inf, 0.0)  # sold only if S
            if mt > 0:
                add({**{os_ + j: price[i] for j in mine}, oS + i: -mt}, -TOLERANCE / 2, np.inf)
        add({ob + i: 1.0, oB + i: -max_buy[i]}, -np.inf, 0.0)  # bought only if B
        if mt > 0:
            add({ob + i: price[i] * step, oB + i: -mt}, -TOLERANCE / 2, np.inf)
        add({oB + i: 1.0, oS + i: 1.0}, -np.inf, 1.0)  # bought or sold, never both
    if stage == "any":  # a class's buys go to its first listed buyable symbol not sold
        for i, s in enumerate(symbols):
            cls = a.classes.get(s, s)
            for k in range(i):
                if symbols[k] in can_buy and a.classes.get(symbols[k], symbols[k]) == cls:
                    add({oB + i: 1.0, oS + k: -1.0}, -np.inf, 0.0)
    sell_value = {os_ + j: price[sym_index[l.symbol]] * (1 - kappa) for j, l in enumerate(lots)}
    buy_value = {ob + i: price[i] * step * (1 + kappa) for i in range(n_sym)}
    cash = {**sell_value, **{k: -v for k, v in buy_value.items()}}
    add(cash, floor - a.cash - TOLERANCE / 2, np.inf)
    if math.isfinite(p.max_tax) and lots:
        add({os_ + j: lot_tax_per_share(a, l) for j, l in enumerate(lots)}, -np.inf, p.max_tax + TOLERANCE / 2)
    if capped and lots:
        most = float(sum(sell_value[os_ + j] * l.quantity for j, l in enumerate(lots)))
        for i in range(n_sym):
            if lots_of.get(i):
                unit = (1 - kappa) * (price[i] * step + mt)
                add({**sell_value, oS + i: most}, -np.inf, shortfall + unit + most)
    entries = [(r, k, v) for r, coefs in enumerate(rows) for k, v in coefs.items()]
    r_idx, k_idx, vals = (np.array(t) for t in zip(*entries)) if entries else (np.zeros(0),) * 3
    A = coo_matrix((vals, (r_idx, k_idx)), shape=(len(rows), nv))
    c = np.zeros(nv)
    for j, l in enumerate(lots):
        c[os_ + j] = price[sym_index[l.symbol]] / max(value, 1.0)
    for i in range(n_sym):
        c[ob + i] = price[i] * step / max(value, 1.0)
    constraints = [LinearConstraint(A.tocsr(), np.array(rlo), np.array(rhi))] if rows else []
    res = milp(c, integrality=integrality, bounds=Bounds(lo, hi), constraints=constraints,
               options={"time_limit": time_limit, "presolve": True})
    if res.x is None:
        status = "infeasible" if res.status == 2 else "unsure"
        return Result(False, {}, status)
    x = res.x
    shares: dict[str, float] = {}
    for i, s in enumerate(symbols):
        buy = round(x[ob + i]) * step
        if x[oA + i] > 0.5:
            sell = cap[i]
        else:
            sell = round(x[on + i]) * step
        if buy > 0:
            shares[s] = buy
        elif sell > 0:
            shares[s] = -min(sell, cap[i])
    ok, proceeds = recheck(a, shares, lots)
    return Result(ok, shares, "feasible" if ok else "unsure", proceeds)


def recheck(a, shares: dict[str, float], lots: list) -> tuple[bool, float]:
    """The point again in plain floats: lots relieved in minimum-tax order, then cash, tax and
    min_trade with the independent check's tolerance. (ok, net proceeds of its sales)."""
    p = a.policy
    kappa = p.trade_cost_bps * 1e-4
    cash, tax, proceeds = a.cash, 0.0, 0.0
    for s, q in shares.items():
        price = a.prices[s]
        if p.min_trade and abs(q) * price < p.min_trade - TOLERANCE:
            return False, 0.0
        if q > 0:
            cash -= q * price * (1 + kappa)
            continue
        cash += -q * price * (1 - kappa)
        proceeds += -q * price * (1 - kappa)
        left = -q
        mine = sorted((l for l in lots if l.symbol == s), key=lambda l: (lot_tax_per_share(a, l), l.acquired, l.id))
        for l in mine:
            take = min(left, l.quantity)
            tax += take * lot_tax_per_share(a, l)
            left -= take
        if left > TOLERANCE:
            return False, 0.0
    if cash < p.min_cash + p.withdrawal - TOLERANCE or tax > p.max_tax + TOLERANCE:
        return False, proceeds
    return True, proceeds
