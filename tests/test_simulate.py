"""Carrying an account through time: executed plans become lots, years close with their tax."""
import datetime as dt

import pytest

from rebalance_opt import TaxSettings, plan_rebalance
from rebalance_opt.simulate import advance, apply_plan, close_year
from tests.conftest import make


def test_apply_plan_relieves_sold_lots_creates_bought_lots_and_books_gains():
    account = make(withdrawal=0.0)
    plan = plan_rebalance(account)
    after = apply_plan(account, plan)
    assert after.cash == pytest.approx(plan.cash_after)
    held = after.shares()
    for o in plan.orders:
        sign = 1 if o.side == "buy" else -1
        assert held[o.symbol] == pytest.approx(account.shares()[o.symbol] + sign * o.quantity)
    st = sum(s.gain for o in plan.sells for s in o.lots if s.term == "short")
    lt = sum(s.gain for o in plan.sells for s in o.lots if s.term == "long")
    assert after.tax.realized_short_term == pytest.approx(st)
    assert after.tax.realized_long_term == pytest.approx(lt)
    assert len(after.trades) == len(plan.orders)
    # the plan just executed is done: re-planning the same day makes (almost) no trades
    assert sum(o.notional for o in plan_rebalance(after).orders) < 0.01 * account.value


def test_close_year_pays_netted_tax_and_carries_losses_in_their_term():
    s = TaxSettings(0.37, 0.20, realized_short_term=-5_000, realized_long_term=2_000)
    new, due = close_year(s)
    assert due == 0
    assert new.carryforward_short_term == pytest.approx(3_000) and new.carryforward_long_term == 0
    new, due = close_year(TaxSettings(0.37, 0.20, realized_short_term=1_000, realized_long_term=4_000,
                                      carryforward_long_term=1_000))
    assert due == pytest.approx(1_000 * 0.37 + 3_000 * 0.20)
    assert new.realized_long_term == 0 and new.carryforward_long_term == 0


def test_advance_into_a_new_year_pays_the_tax_from_cash():
    account = make().replace(tax=TaxSettings(0.37, 0.20, realized_long_term=10_000))
    moved, year_end = advance(account, dt.date(2027, 1, 4), {"VTI": 101.0}, deposit=500.0)
    assert year_end.tax_paid == pytest.approx(2_000)
    assert moved.cash == pytest.approx(account.cash + 500 - 2_000)
    assert moved.as_of == dt.date(2027, 1, 4) and moved.prices["VTI"] == 101.0
    assert moved.tax.realized_long_term == 0
