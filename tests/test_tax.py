"""Tax rules against the hand-worked cases of shared/TAX-CASES.md (expected values by hand)."""
from datetime import date

import pytest

from rebalance_opt import TaxSettings
from rebalance_opt.book import Book
from rebalance_opt.orders import relieve
from rebalance_opt.tax import (estimate, is_long_term, last_long_term_ordinal, min_tax_order, one_year_after,
                               year_tax)
from tests.conftest import base_dict, make

RATES = TaxSettings(short_term_rate=0.37, long_term_rate=0.20)


@pytest.mark.parametrize("acquired, sold, long", [
    ("2005-01-01", "2006-01-01", False),  # exactly one year: still short-term
    ("2005-01-01", "2006-01-02", True),
    ("2012-09-19", "2013-09-19", False),
    ("2012-09-19", "2013-09-20", True),
    ("2024-02-29", "2025-02-28", False),  # anniversary of 29 February is 28 February
    ("2024-02-29", "2025-03-01", True),
])
def test_holding_period_is_long_only_after_the_anniversary(acquired, sold, long):
    assert is_long_term(date.fromisoformat(acquired), date.fromisoformat(sold)) is long


def test_leap_day_anniversary_is_28_february():
    assert one_year_after(date(2024, 2, 29)) == date(2025, 2, 28)


@pytest.mark.parametrize("sold", ["2024-02-28", "2024-02-29", "2024-03-01", "2025-02-28", "2025-03-01",
                                  "2026-11-24", "2028-02-29", "2027-12-31", "2028-01-01", "0002-01-02"])
def test_the_long_term_cutoff_splits_acquisition_dates_exactly_as_the_per_lot_rule(sold):
    # The book classifies every lot by one comparison with this cutoff; it must agree with
    # is_long_term on every acquisition date around it (leap days included).
    d = date.fromisoformat(sold)
    cutoff = last_long_term_ordinal(d)
    for n in range(max(d.toordinal() - 800, 1), d.toordinal() + 1):
        assert is_long_term(date.fromordinal(n), d) is (n <= cutoff), date.fromordinal(n)


def test_nothing_is_long_term_when_sold_in_the_first_year_of_the_calendar():
    assert last_long_term_ordinal(date(1, 6, 1)) == 0


@pytest.mark.parametrize("st, lt, tax, carried", [
    (10_000, -4_000, 6_000 * 0.37, 0),     # LT loss offsets ST gain at the ST rate: $2,220
    (-3_000, 8_000, 5_000 * 0.20, 0),      # ST loss offsets LT gain: $1,000
    (-5_000, 2_000, 0, 3_000),             # net loss carried
    (4_000, 1_000, 4_000 * 0.37 + 1_000 * 0.20, 0),
    (-1_000, -2_000, 0, 3_000),
])
def test_netting_examples(st, lt, tax, carried):
    result = year_tax(st, lt, RATES)
    assert result.tax == pytest.approx(tax)
    assert result.net_loss_carried == pytest.approx(carried)


def test_plan_loss_against_realized_gain_is_a_saving():
    settings = TaxSettings(0.37, 0.20, realized_long_term=5_000)
    t = estimate(settings, 0.0, -2_000)
    assert t.estimated_tax == pytest.approx(600 - 1_000)  # tax(LT 3,000) − tax(LT 5,000) = −$400
    assert t.net_loss_carried == 0


def test_plan_loss_with_nothing_realized_costs_nothing_and_carries_the_loss():
    t = estimate(RATES, 0.0, -2_000)
    assert t.estimated_tax == 0
    assert t.net_loss_carried == pytest.approx(2_000)


def test_carryforward_counts_as_a_loss_of_its_term():
    settings = TaxSettings(0.37, 0.20, carryforward_long_term=3_000)
    # plan realizes LT +5,000; carryforward leaves 2,000 taxable at 20%
    assert estimate(settings, 0.0, 5_000).estimated_tax == pytest.approx(400)
    # ST gain 1,000 is offset by the LT carryforward (net LT −3,000): no tax, 2,000 still carried
    t = estimate(settings, 1_000, 0.0)
    assert t.estimated_tax == 0 and t.net_loss_carried == pytest.approx(2_000)


def test_minimum_tax_lot_order_beats_fifo():
    d = base_dict()
    d["prices"]["VTI"] = 100.0
    d["lots"] = [
        {"id": "old", "symbol": "VTI", "quantity": 10, "cost_basis": 20.0, "acquired": "2015-01-02"},   # LT gain 80/sh
        {"id": "st-gain", "symbol": "VTI", "quantity": 10, "cost_basis": 90.0, "acquired": "2026-06-01"},  # ST +10/sh
        {"id": "loss", "symbol": "VTI", "quantity": 10, "cost_basis": 130.0, "acquired": "2025-01-02"},  # LT −30/sh
        {"id": "st-loss", "symbol": "VTI", "quantity": 10, "cost_basis": 110.0, "acquired": "2026-09-01"},  # ST −10/sh
    ]
    account = make(d)
    order = [l.id for l in min_tax_order(account, account.lots)]
    # tax per share: loss −6.0 (LT 20%), st-loss −3.7, st-gain +3.7, old +16.0
    assert order == ["loss", "st-loss", "st-gain", "old"]
    # selling 20 shares: minimum-tax = −60 − 37 = −97; FIFO (old, then loss) = 160 − 60 = +100
    book = Book(account)
    relieved = relieve(book, book.symbol_index["VTI"], 20, book.lot_sellable)
    assert float(relieved @ book.lot_tax_per_share) == pytest.approx(-97.0)
    fifo_tax = 0.2 * (100 - 20) * 10 + 0.2 * (100 - 130) * 10  # oldest two lots: "old" then "loss"
    assert fifo_tax == pytest.approx(100.0)


def test_relieving_a_numpy_quantity_that_ends_inside_a_lot_gives_the_rest_of_it():
    # 25 shares of the 40 above: the two loss lots whole (minimum-tax order), then 5 of st-gain.
    # A numpy float (what a caller computing quantities in numpy passes) failed: Decimal was
    # given numpy 2's repr, "np.float64(25.0)".
    import numpy as np
    d = base_dict()
    d["prices"]["VTI"] = 100.0
    d["lots"] = [
        {"id": "old", "symbol": "VTI", "quantity": 10, "cost_basis": 20.0, "acquired": "2015-01-02"},
        {"id": "st-gain", "symbol": "VTI", "quantity": 10, "cost_basis": 90.0, "acquired": "2026-06-01"},
        {"id": "loss", "symbol": "VTI", "quantity": 10, "cost_basis": 130.0, "acquired": "2025-01-02"},
        {"id": "st-loss", "symbol": "VTI", "quantity": 10, "cost_basis": 110.0, "acquired": "2026-09-01"},
    ]
    book = Book(make(d))
    relieved = relieve(book, book.symbol_index["VTI"], np.float64(25.0), book.lot_sellable)
    assert dict(zip((l.id for l in book.lots), relieved.tolist())) == {"old": 0.0, "st-gain": 5.0, "loss": 10.0,
                                                                        "st-loss": 10.0}


@pytest.mark.parametrize("seed", range(40))
def test_the_books_vectorized_lot_order_is_the_minimum_tax_order_per_symbol(seed):
    from benchmarks.synth import household
    from rebalance_opt import account_from_dict
    from rebalance_opt.tax import rate, term
    account = account_from_dict(household(seed))
    book = Book(account)
    by_symbol = {}
    for lot in account.lots:
        by_symbol.setdefault(lot.symbol, []).append(lot)
    expected = tuple(l for s in book.symbols for l in min_tax_order(account, by_symbol.get(s, [])))
    assert book.lots == expected
    assert book.lot_term == tuple(term(l.acquired, account.as_of) for l in expected)
    assert list(book.lot_rate) == [rate(account.tax, term(l.acquired, account.as_of)) for l in expected]


def test_lots_with_equal_tax_and_date_are_relieved_in_id_order():
    d = base_dict()
    d["lots"] = [{"id": i, "symbol": "VTI", "quantity": 1, "cost_basis": 80.0, "acquired": "2020-01-02"}
                 for i in ("b", "c", "a")]
    book = Book(make(d))
    assert [l.id for l in book.lots if l.symbol == "VTI"] == ["a", "b", "c"]
