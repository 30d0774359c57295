"""Invariants of every plan over random accounts (hypothesis).

The checks below recompute everything from the raw account dict with their own code (holding
period, netting, wash-sale windows) and import nothing from the engine but the entry point.
"""
from __future__ import annotations

import math
from datetime import date, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rebalance_opt import Infeasible, account_from_dict, plan_rebalance

# Whole lots mostly; fractional holdings (dividend reinvestment, a fractional broker) sometimes.
QUANTITY = st.one_of(st.integers(1, 400), st.floats(0.1, 400.0).map(lambda x: round(x, 3)))
AS_OF = date(2026, 11, 24)
SETTINGS = settings(settings.default, max_examples=max(60, settings.default.max_examples), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def accounts(draw, free_trading: bool = False):
    n_classes = draw(st.integers(1, 4))
    classes, prices, lots, targets = {}, {}, [], {}
    for k in range(n_classes):
        for j in range(draw(st.integers(1, 3))):
            sym = f"S{k}{j}"
            classes[sym] = f"C{k}"
            price = draw(st.floats(1.0, 500.0))
            prices[sym] = round(price, 2)
            for n in range(draw(st.integers(0, 3))):
                basis = round(price * draw(st.floats(0.3, 1.8)), 2)  # gains and losses
                days = draw(st.sampled_from([5, 20, 200, 364, 365, 366, 900, 3000]))  # both terms
                lots.append({"id": f"{sym}-{n}", "symbol": sym, "quantity": draw(QUANTITY),
                             "cost_basis": basis, "acquired": (AS_OF - timedelta(days=days)).isoformat()})
    weights = [draw(st.floats(0.0, 1.0)) for _ in range(n_classes)]
    total = sum(weights) or 1.0
    invest = draw(st.sampled_from([1.0, 0.98, 0.9]))
    targets = {f"C{k}": math.floor(w / total * invest * 1e4) / 1e4 for k, w in enumerate(weights)}
    cash = draw(st.sampled_from([0.0, 500.0, 5_000.0, 40_000.0]))
    value = cash + sum(prices[l["symbol"]] * l["quantity"] for l in lots)
    symbols = sorted(prices)
    policy = {"tax_weight": draw(st.sampled_from([0.0, 0.1, 1.0, 10.0])),
              "fractional": draw(st.booleans())}
    trades = []
    if free_trading:
        policy.update(tax_weight=0.0, allow_sells=True)
    else:
        policy["allow_sells"] = draw(st.booleans())
        policy["trade_cost_bps"] = draw(st.sampled_from([0.0, 5.0]))
        policy["min_trade"] = draw(st.sampled_from([0.0, 50.0]))
        policy["no_buy"] = draw(st.lists(st.sampled_from(symbols), max_size=2, unique=True))
        policy["no_sell"] = draw(st.lists(st.sampled_from(symbols), max_size=2, unique=True))
        if draw(st.booleans()):
            policy["withdrawal"] = round(value * draw(st.floats(0.0, 0.6)), 2)  # often binding
        policy["min_cash"] = draw(st.sampled_from([0.0, 250.0]))
        if draw(st.booleans()):
            policy["max_tax"] = draw(st.sampled_from([0.0, 100.0, 2_000.0]))
        for sym in draw(st.lists(st.sampled_from(symbols), max_size=3)):
            side = draw(st.sampled_from(["buy", "sell"]))
            t = {"symbol": sym, "side": side, "quantity": 10, "price": prices[sym],
                 "date": (AS_OF - timedelta(days=draw(st.integers(0, 60)))).isoformat()}
            if side == "sell":
                t["realized_gain"] = draw(st.sampled_from([-300.0, 200.0]))
            trades.append(t)
    return {
        "account": {"id": "prop", "cash": cash, "as_of": AS_OF.isoformat()},
        "tax": {"short_term_rate": 0.37, "long_term_rate": 0.2,
                "realized_short_term": draw(st.sampled_from([0.0, 3_000.0, -2_000.0])),
                "realized_long_term": draw(st.sampled_from([0.0, 5_000.0])),
                "carryforward_long_term": draw(st.sampled_from([0.0, 1_000.0]))},
        "targets": targets, "classes": classes, "prices": prices, "lots": lots, "trades": trades,
        "policy": policy,
    }


# --- independent re-computations ------------------------------------------------------------
def is_long(acquired: str, as_of: date) -> bool:
    a = date.fromisoformat(acquired)
    anniversary = date(a.year + 1, a.month, 28 if (a.month, a.day) == (2, 29) else a.day)
    return as_of > anniversary


def year_tax(stg: float, ltg: float, r_st: float, r_lt: float) -> float:
    if stg < 0 < ltg:
        return max(ltg + stg, 0) * r_lt
    if ltg < 0 < stg:
        return max(stg + ltg, 0) * r_st
    return max(stg, 0) * r_st + max(ltg, 0) * r_lt


def recent(day: str, days: int, as_of: date) -> bool:
    return as_of - timedelta(days=days) <= date.fromisoformat(day) <= as_of


def check_plan(d: dict, plan: dict) -> None:
    p = d["policy"]
    as_of = date.fromisoformat(str(d["account"]["as_of"]))
    lots = {l["id"]: l for l in d["lots"]}
    days = p.get("wash_sale_days", 30)
    bought = {o["symbol"] for o in plan["orders"] if o["side"] == "buy"}
    sold = {o["symbol"] for o in plan["orders"] if o["side"] == "sell"}
    assert not bought & sold, "a symbol both bought and sold"
    cash = d["account"]["cash"]
    st_gain = lt_gain = lot_tax = 0.0
    kappa = p.get("trade_cost_bps", 0.0) * 1e-4
    held = {}
    for l in d["lots"]:
        held[l["symbol"]] = held.get(l["symbol"], 0) + l["quantity"]
    for o in plan["orders"]:
        price = d["prices"][o["symbol"]]
        assert o["quantity"] > 0 and o["price"] == price
        if not p.get("fractional", False) and o["side"] == "buy":
            assert o["quantity"] == int(o["quantity"])
        if p.get("min_trade"):
            assert o["quantity"] * price >= p["min_trade"] - 1e-6
        cost = o["quantity"] * price * kappa
        if o["side"] == "buy":
            assert o["symbol"] not in p.get("no_buy", [])
            assert not any(t["symbol"] == o["symbol"] and t["side"] == "sell" and t.get("realized_gain", 0) < 0
                           and recent(t["date"], days, as_of) for t in d["trades"]), "bought after a loss sale"
            cash -= o["quantity"] * price + cost
            continue
        assert o["symbol"] not in p.get("no_sell", [])
        assert o["quantity"] <= held[o["symbol"]] + 1e-9, "short position"
        assert abs(sum(s["quantity"] for s in o["lots"]) - o["quantity"]) < 1e-9
        cash += o["quantity"] * price - cost
        for s in o["lots"]:
            lot = lots[s["lot"]]
            assert lot["symbol"] == o["symbol"] and 0 < s["quantity"] <= lot["quantity"] + 1e-9, "lot oversold"
            gain = (price - lot["cost_basis"]) * s["quantity"]
            assert abs(gain - s["gain"]) < 1e-6 * max(1, abs(gain))
            long = is_long(lot["acquired"], as_of)
            assert s["term"] == ("long" if long else "short")
            if long:
                lt_gain += gain
            else:
                st_gain += gain
            lot_tax += gain * (d["tax"]["long_term_rate"] if long else d["tax"]["short_term_rate"])
            if gain < 0:  # wash sale: no purchase of the symbol in the window, none in this plan
                assert not any(t["symbol"] == o["symbol"] and t["side"] == "buy" and recent(t["date"], days, as_of)
                               for t in d["trades"])
                assert not any(x["symbol"] == o["symbol"] and x["id"] != lot["id"] and recent(x["acquired"], days, as_of)
                               for x in d["lots"])
    assert cash >= p.get("min_cash", 0.0) + p.get("withdrawal", 0.0) - 1e-6, "cash below the floor"
    assert abs(cash - plan["cash_after"]) < 1e-6 * max(1.0, abs(cash))
    assert lot_tax <= p.get("max_tax", float("inf")) + 1e-6
    t = d["tax"]
    base_st = t["realized_short_term"] - t.get("carryforward_short_term", 0.0)
    base_lt = t["realized_long_term"] - t.get("carryforward_long_term", 0.0)
    expected = (year_tax(base_st + st_gain, base_lt + lt_gain, t["short_term_rate"], t["long_term_rate"])
                - year_tax(base_st, base_lt, t["short_term_rate"], t["long_term_rate"]))
    assert abs(plan["tax"]["estimated_tax"] - expected) < 1e-6 * max(1.0, abs(expected))
    assert abs(plan["tax"]["short_term_gain"] - st_gain) < 1e-6 * max(1.0, abs(st_gain))
    assert abs(plan["tax"]["long_term_gain"] - lt_gain) < 1e-6 * max(1.0, abs(lt_gain))


@SETTINGS
@given(accounts())
def test_every_plan_meets_the_hard_constraints_and_its_tax_adds_up(d):
    account = account_from_dict(d)
    try:
        plan = plan_rebalance(account)
    except Infeasible:
        p = d["policy"]
        # only a cash need (withdrawal / min_cash above cash) or a tax budget can make it infeasible
        assert p.get("withdrawal", 0) + p.get("min_cash", 0) > d["account"]["cash"] or "max_tax" in p
        return
    check_plan(d, plan.to_dict())


@settings(max_examples=max(40, settings.default.max_examples), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(accounts(free_trading=True))
def test_free_trading_with_zero_tax_weight_never_worsens_total_squared_drift(d):
    plan = plan_rebalance(account_from_dict(d))
    check_plan(d, plan.to_dict())
    assert plan.drift_after.squared_error <= plan.drift_before.squared_error + 1e-12
