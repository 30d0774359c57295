"""Carrying an account through time: executed plans become lots, years close with their tax."""
import datetime as dt

import pytest

from rebalance_opt import Account, Lot, Policy, TaxSettings, plan_rebalance
from rebalance_opt.simulate import Broker, Fill, advance, apply_plan, close_year, fills_from_plan
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


# --- the Broker: lots, wash sales, tax years (hand-computed cases, TAX-CASES.md / IRS Pub 550) ---------
D = dt.date


def _broker(lots=(), cash=0.0, as_of=D(2023, 1, 3), price=10.0) -> Broker:
    account = Account(id="sim", as_of=as_of, cash=cash, tax=TaxSettings(0.37, 0.20), targets={"XYZ": 1.0},
                      prices={"XYZ": price}, lots=tuple(lots), policy=Policy(fractional=True))
    return Broker.open(account)


def _at(broker: Broker, day: dt.date, price: float, deposit: float = 0.0) -> Broker:
    moved, _ = broker.move_to(day, {"XYZ": price}, deposit)
    return moved


def _buy(broker: Broker, qty: float, price: float) -> Broker:
    return broker.execute((Fill("XYZ", "buy", qty, price),))[0]


def _sell(broker: Broker, lots: list[tuple[str, float]], price: float):
    return broker.execute((Fill("XYZ", "sell", sum(q for _, q in lots), price, tuple(lots)),))


def _lots(broker: Broker) -> list[Lot]:
    return sorted(broker.account.lots, key=lambda l: (l.acquired, l.id))


def test_pub_550_rebuy_within_30_days_moves_the_loss_into_the_new_shares():
    # Buy 100 at $10, sell them at $7.50, buy 100 at $8 ten days later: the $250 loss is disallowed
    # and the new shares' basis is $8 + $2.50 = $10.50 each, their holding period tacked on.
    b = _broker(cash=1_000.0)
    b = _buy(b, 100, 10.0)
    lot = b.account.lots[0].id
    b = _at(b, D(2023, 3, 1), 7.5)
    b, sale = _sell(b, [(lot, 100)], 7.5)
    assert b.account.tax.realized_short_term == pytest.approx(-250.0)
    assert sale.sales[0].gain == pytest.approx(-250.0) and not sale.wash_sales
    b = _at(b, D(2023, 3, 11), 8.0, deposit=50.0)
    b = _buy(b, 100, 8.0)
    (new,) = b.account.lots
    assert new.quantity == pytest.approx(100) and new.cost_basis == pytest.approx(10.50)
    assert new.acquired == D(2023, 3, 11) - (D(2023, 3, 1) - D(2023, 1, 3))   # the sold shares' 57 days
    assert b.account.tax.realized_short_term == pytest.approx(0.0)            # the loss is gone this year
    assert b.account.cash == pytest.approx(1_000 - 1_000 + 750 + 50 - 800)


def test_partial_replacement_disallows_the_loss_pro_rata():
    # 100 shares bought for $2,000 sold for $1,300 (loss $700); 75 replacement shares within the window:
    # 75/100 of the loss ($525) moves onto them ($7 a share), $175 stays deductible.
    b = _broker(lots=[Lot("A", "XYZ", 100, 20.0, D(2022, 12, 1))], as_of=D(2023, 3, 27), price=13.0)
    b, _ = _sell(b, [("A", 100)], 13.0)
    b = _at(b, D(2023, 4, 5), 14.0, deposit=1_050.0)
    b = _buy(b, 75, 14.0)
    (new,) = b.account.lots
    assert new.quantity == pytest.approx(75) and new.cost_basis == pytest.approx(14.0 + 7.0)
    assert b.account.tax.realized_short_term == pytest.approx(-175.0)
    # the other 25 shares' loss stays allowed however many shares are bought later in the window
    b = _at(b, D(2023, 4, 20), 14.0, deposit=1_400.0)
    b = _buy(b, 100, 14.0)
    assert b.account.tax.realized_short_term == pytest.approx(0.0)      # 25 more matched: all $700 washed
    washed = [l for l in b.account.lots if l.cost_basis > 14.0]
    assert sum(l.quantity for l in washed) == pytest.approx(100)        # 75 + 25 shares carry it
    assert sum(l.quantity for l in b.account.lots) == pytest.approx(175)


def test_shares_bought_within_30_days_before_the_sale_are_replacements_too():
    # Pub 550: 100 shares bought 24 Sep for $5,000; 50 on 18 Dec for $2,750; 25 on 28 Dec for $1,125; the
    # September shares sold 7 Jan for $4,000: 75 shares were bought within 30 days before, so $750 of the
    # $1,000 loss is disallowed ($10 a share onto each lot) and $250 is deductible.
    lots = [Lot("SEP", "XYZ", 100, 50.0, D(2009, 9, 24)), Lot("DEC18", "XYZ", 50, 55.0, D(2009, 12, 18)),
            Lot("DEC28", "XYZ", 25, 45.0, D(2009, 12, 28))]
    b = _broker(lots=lots, as_of=D(2010, 1, 7), price=40.0)
    b, ex = _sell(b, [("SEP", 100)], 40.0)
    by_quantity = {l.quantity: l for l in b.account.lots}
    assert by_quantity[50].cost_basis * 50 == pytest.approx(2_750 + 500)
    assert by_quantity[25].cost_basis * 25 == pytest.approx(1_125 + 250)
    assert ex.sales[0].gain == pytest.approx(-250.0) and ex.sales[0].disallowed == pytest.approx(750.0)
    assert b.account.tax.realized_short_term == pytest.approx(-250.0)
    # holding periods include the September shares' 105 days
    assert by_quantity[50].acquired == D(2009, 12, 18) - (D(2010, 1, 7) - D(2009, 9, 24))


def test_more_replacement_shares_than_sold_take_the_loss_in_purchase_order():
    # Sold 100 at a $700 loss; bought 100 on 1 Mar and 50 on 10 Mar: the whole loss goes to the first 100.
    b = _broker(lots=[Lot("DEC", "XYZ", 100, 20.0, D(2008, 12, 1))], as_of=D(2009, 2, 27), price=13.0)
    b, _ = _sell(b, [("DEC", 100)], 13.0)
    b = _at(b, D(2009, 3, 1), 24.0, deposit=2_400.0)
    b = _buy(b, 100, 24.0)
    b = _at(b, D(2009, 3, 10), 26.0, deposit=1_300.0)
    b = _buy(b, 50, 26.0)
    first, second = _lots(b)
    assert (first.quantity, first.cost_basis) == (pytest.approx(100), pytest.approx(31.0))
    assert (second.quantity, second.cost_basis, second.acquired) == (pytest.approx(50), pytest.approx(26.0),
                                                                      D(2009, 3, 10))


def test_the_rest_of_the_lot_sold_is_not_its_replacement_but_another_purchase_is():
    # Rev. Rul. 56-602: 200 shares bought at $50 in one lot, 100 sold at $40 within 30 days: not a wash sale.
    one = _broker(lots=[Lot("L", "XYZ", 200, 50.0, D(2023, 3, 1))], as_of=D(2023, 3, 20), price=40.0)
    one, ex = _sell(one, [("L", 100)], 40.0)
    assert not ex.wash_sales and one.account.tax.realized_short_term == pytest.approx(-1_000.0)
    # Two purchases of 100 on 1 March: selling one lot at a loss is washed by the other (TAX-CASES.md).
    two = _broker(lots=[Lot("L1", "XYZ", 100, 50.0, D(2023, 3, 1)), Lot("L2", "XYZ", 100, 50.0, D(2023, 3, 1))],
                  as_of=D(2023, 3, 20), price=40.0)
    two, ex = _sell(two, [("L1", 100)], 40.0)
    assert ex.wash_sales[0].disallowed == pytest.approx(1_000.0)
    assert two.account.tax.realized_short_term == pytest.approx(0.0)
    (rest,) = two.account.lots
    assert rest.cost_basis == pytest.approx(60.0)


def test_tacked_holding_period_makes_a_replacement_long_term_sooner():
    # Sold after 300 days at a loss, bought back 5 days later; 70 days after that the replacement has a
    # holding period of 370 days: its gain is long-term (it would be short-term on its own).
    b = _broker(lots=[Lot("A", "XYZ", 10, 100.0, D(2022, 1, 10))], as_of=D(2022, 11, 6), price=90.0)
    b, _ = _sell(b, [("A", 10)], 90.0)
    b = _at(b, D(2022, 11, 11), 91.0)
    b = _buy(b, 9, 91.0)
    b = _at(b, D(2023, 1, 20), 150.0)
    (lot,) = b.account.lots
    b, ex = _sell(b, [(lot.id, 9)], 150.0)
    assert ex.sales[0].term == "long"
    assert ex.sales[0].gain == pytest.approx(9 * (150.0 - 101.0))


def test_a_year_settles_when_its_wash_sale_window_closes_and_a_january_rebuy_washes_december():
    b = _broker(lots=[Lot("OLD", "XYZ", 100, 10.0, D(2020, 1, 2)), Lot("NEW", "XYZ", 50, 40.0, D(2022, 6, 1))],
                as_of=D(2022, 12, 20), price=30.0)
    b, _ = _sell(b, [("OLD", 40), ("NEW", 50)], 30.0)     # LT gain 40 × 20 = 800, ST loss 50 × 10 = 500
    assert (b.account.tax.realized_long_term, b.account.tax.realized_short_term) == (800.0, -500.0)
    b, ends = b.move_to(D(2023, 1, 10), {"XYZ": 31.0})
    assert ends == ()                                     # 2022 still open: a purchase could wash its sale
    assert b.account.tax.realized_long_term == 0          # the engine sees 2023 ...
    assert b.account.tax.carryforward_short_term == 0     # ... and the provisional carryforward of 2022
    b = _buy(b, 20, 31.0)                                 # 20 of the 50 loss shares replaced: $200 disallowed
    b, ends = b.move_to(D(2023, 1, 30), {"XYZ": 31.0})
    assert ends == ()                                     # 30 January: a 31 December sale could still wash
    b, ends = b.move_to(D(2023, 2, 1), {"XYZ": 31.0})
    (end,) = ends
    assert end.year == 2022
    assert end.realized_short_term == pytest.approx(-300.0) and end.realized_long_term == pytest.approx(800.0)
    assert end.tax_paid == pytest.approx((800 - 300) * 0.20)   # the ST loss offsets LT at the LT rate
    assert b.ledger.years == ()


def test_a_net_loss_carries_forward_into_the_next_years_tax():
    b = _broker(lots=[Lot("A", "XYZ", 100, 50.0, D(2021, 1, 4))], as_of=D(2022, 6, 1), price=20.0)
    b, _ = _sell(b, [("A", 50)], 20.0)                    # LT loss 1,500
    b, (end,) = b.move_to(D(2023, 2, 1), {"XYZ": 20.0})
    assert end.tax_paid == 0 and end.carryforward_long_term == pytest.approx(1_500)
    assert b.account.tax.carryforward_long_term == pytest.approx(1_500)
    b = _at(b, D(2023, 3, 1), 100.0)
    b, _ = _sell(b, [("A", 20)], 100.0)                   # LT gain 1,000, less the 1,500 carried
    assert b.tax_due() == 0
    assert b.liquidation_tax() == pytest.approx((30 * 50 - 500) * 0.20)   # the other 30 shares: 1,500 − 500 left


def test_liquidation_tax_nets_with_the_open_year():
    b = _broker(lots=[Lot("A", "XYZ", 10, 10.0, D(2023, 1, 3)), Lot("B", "XYZ", 10, 30.0, D(2020, 1, 3))],
                as_of=D(2023, 6, 1), price=20.0)
    b, _ = _sell(b, [("A", 5)], 20.0)                     # ST +50 realized
    assert b.tax_due() == pytest.approx(50 * 0.37)
    # liquidating: ST +50 more, LT −100 → ST 100 − 100 = 0 after netting: the liquidation lowers the bill
    assert b.liquidation_tax() == pytest.approx(0 - 50 * 0.37)


def test_a_tax_bill_beyond_the_cash_is_paid_from_outside_the_account():
    # 10 shares bought at 10, sold at 20 (a 100 short-term gain); the bill (say 500, a past year's)
    # is due from 150 of cash after a withdrawal of 50: 150 paid from the account, 350 from outside.
    b = _broker(lots=[Lot("A", "XYZ", 10, 10.0, D(2023, 1, 3))], as_of=D(2023, 6, 1), price=20.0)
    b, ex = b.execute((Fill("XYZ", "sell", 10, 20.0, (("A", 10),)),), withdrawal=50.0, tax=500.0)
    assert b.account.cash == 0.0
    assert ex.withdrawn == 50.0 and ex.tax_from_outside == pytest.approx(350.0)
    b2, ex2 = _broker(cash=600.0).execute((), tax=500.0)  # covered: nothing from outside
    assert b2.account.cash == pytest.approx(100.0) and ex2.tax_from_outside == 0.0
    # a bill equal to the cash but for float dust is paid by the account (the main backtest listed
    # six strategies as paying "0" from outside)
    b3, ex3 = _broker(cash=0.1 + 0.2).execute((), tax=0.30000000000000004 + 1e-12)
    assert ex3.tax_from_outside == 0.0 and b3.account.cash == 0.0


def test_the_books_refuse_fills_they_cannot_take():
    b = _broker(lots=[Lot("A", "XYZ", 10, 10.0, D(2023, 1, 3))], price=10.0)
    with pytest.raises(ValueError, match="lot 'B'"):
        _sell(b, [("B", 1)], 10.0)
    with pytest.raises(ValueError, match="holds 10"):
        _sell(b, [("A", 11)], 10.0)
    with pytest.raises(ValueError, match="cash"):
        _buy(b, 1, 10.0)
    with pytest.raises(ValueError, match="back in time"):
        b.move_to(D(2022, 1, 1), {})


def test_engine_plans_execute_on_the_books_without_wash_sales():
    account = make()
    broker = Broker.open(account)
    plan = plan_rebalance(account)
    after, ex = broker.execute(fills_from_plan(plan))
    assert after.account.cash == pytest.approx(plan.cash_after)
    assert after.account.shares() == pytest.approx(apply_plan(account, plan).shares())
    assert not ex.wash_sales
    st = sum(s.gain for o in plan.sells for s in o.lots if s.term == "short")
    assert after.account.tax.realized_short_term == pytest.approx(st)
