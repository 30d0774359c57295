"""Wash-sale rules of SPEC section 2, on hand-built cases (IRC §1091; window inclusive)."""
from __future__ import annotations

import pytest

from rebalance_opt import plan_rebalance
from rebalance_opt.tax import buy_blocked_symbols, loss_sale_blocked, sellable
from tests.conftest import make


def wash_dict(**extra) -> dict:
    """Stocks far overweight with only a loss lot to sell; intl underweight with two funds."""
    d = {
        "account": {"id": "w", "cash": 0.0, "as_of": "2026-11-24"},
        "tax": {"short_term_rate": 0.37, "long_term_rate": 0.20},
        "targets": {"US_STOCK": 0.5, "INTL_STOCK": 0.5},
        "classes": {"VTI": "US_STOCK", "VXUS": "INTL_STOCK", "IXUS": "INTL_STOCK"},
        "prices": {"VTI": 100.0, "VXUS": 50.0, "IXUS": 40.0},
        "lots": [
            {"id": "loss", "symbol": "VTI", "quantity": 800, "cost_basis": 120.0, "acquired": "2025-03-01"},
            {"id": "intl", "symbol": "VXUS", "quantity": 400, "cost_basis": 40.0, "acquired": "2020-03-01"},
        ],
        "trades": [],
        "policy": {"tax_weight": 0.1},
    }
    for k, v in extra.items():
        d[k] = v
    return d


def test_loss_lot_is_sold_when_no_recent_purchase():
    plan = plan_rebalance(make(wash_dict()))
    assert [o.symbol for o in plan.sells] == ["VTI"]
    assert plan.sells[0].lots[0].gain < 0


@pytest.mark.parametrize("days_ago, blocked", [(0, True), (30, True), (31, False)])
def test_recent_buy_of_the_symbol_blocks_a_loss_sale_window_inclusive(days_ago, blocked):
    from datetime import date, timedelta
    when = (date(2026, 11, 24) - timedelta(days=days_ago)).isoformat()
    d = wash_dict(trades=[{"symbol": "VTI", "side": "buy", "quantity": 5, "price": 101.0, "date": when}])
    account = make(d)
    assert loss_sale_blocked(account, account.lots[0]) is blocked
    plan = plan_rebalance(account)
    assert ("VTI" in {o.symbol for o in plan.sells}) is (not blocked)


def test_another_lot_acquired_in_the_window_blocks_the_loss_sale_but_not_a_gain_sale():
    d = wash_dict()
    d["lots"].append({"id": "new", "symbol": "VTI", "quantity": 10, "cost_basis": 95.0, "acquired": "2026-11-10"})
    account = make(d)
    loss, _, new = account.lots
    assert not sellable(account, loss)
    assert sellable(account, new)  # a gain: no wash sale to worry about
    plan = plan_rebalance(account)
    relieved = {s.lot for o in plan.sells for s in o.lots}
    assert "loss" not in relieved


def test_symbol_sold_at_a_loss_recently_is_not_bought_and_buys_go_to_the_next_fund():
    d = wash_dict(trades=[{"symbol": "VXUS", "side": "sell", "quantity": 100, "price": 45.0,
                           "date": "2026-11-01", "realized_gain": -500.0}])
    account = make(d)
    assert buy_blocked_symbols(account) == {"VXUS"}
    plan = plan_rebalance(account)
    assert {o.symbol for o in plan.buys} == {"IXUS"}


def test_a_gain_sale_in_history_does_not_block_buying():
    d = wash_dict(trades=[{"symbol": "VXUS", "side": "sell", "quantity": 100, "price": 45.0,
                           "date": "2026-11-01", "realized_gain": 500.0}])
    assert buy_blocked_symbols(make(d)) == set()


def test_the_plan_never_realizes_a_loss_on_a_symbol_it_buys():
    # VTI is the only US fund, underweight, with a loss lot: harvesting and buying back would wash.
    d = wash_dict()
    d["targets"] = {"US_STOCK": 0.9, "INTL_STOCK": 0.1}
    d["account"]["cash"] = 20_000.0
    d["policy"]["tax_weight"] = 5.0  # a strong pull to harvest the loss
    plan = plan_rebalance(make(d))
    bought = {o.symbol for o in plan.buys}
    assert bought == {"VTI"}
    assert all(o.symbol not in bought for o in plan.sells)


def test_harvest_with_replacement_when_the_class_has_a_second_fund():
    # VXUS (loss lot) and IXUS in one class: selling the loss and buying IXUS keeps the class on
    # target while the loss is realized; buying VXUS back would wash the loss.
    d = wash_dict()
    d["lots"][1]["cost_basis"] = 70.0  # VXUS now at a loss
    d["targets"] = {"US_STOCK": 0.35, "INTL_STOCK": 0.65}
    d["lots"][0]["cost_basis"] = 60.0
    d["policy"]["tax_weight"] = 2.0
    plan = plan_rebalance(make(d))
    sold, bought = {o.symbol for o in plan.sells}, {o.symbol for o in plan.buys}
    assert sold == {"VTI", "VXUS"} and bought == {"IXUS"}
    vxus = next(o for o in plan.sells if o.symbol == "VXUS")
    assert vxus.lots[0].gain == pytest.approx(400 * (50.0 - 70.0))  # the whole loss lot harvested


def test_notes_explain_blocked_loss_lots():
    d = wash_dict(trades=[{"symbol": "VTI", "side": "buy", "quantity": 5, "price": 101.0, "date": "2026-11-20"}])
    plan = plan_rebalance(make(d))
    assert any("VTI" in n and "wash sale" in n for n in plan.notes)
