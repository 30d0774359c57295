"""Lot screening (``rebalance_opt.screen``): solving over a prefix of each symbol's lots reaches the
optimum over every lot, and on many-lot accounts the solver sees a fraction of them.

Each expected optimum comes from the same model solved with every lot (no screening).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from benchmarks.synth import household, lots_account
from rebalance_opt import account_from_dict
from rebalance_opt import screen as screen_module
from rebalance_opt.book import Book
from rebalance_opt.problem import ModelCache, ModelData, SolveFailure
from rebalance_opt.screen import LotScreen, screened
from rebalance_opt.solve import BUY_CAP, Planner, _base_data, _tracking
from tests.conftest import first_layout
from tests.test_properties import SETTINGS, accounts

CACHE = ModelCache()


def _relaxation(raw: dict):
    """The planner's relaxation stage of an account: (solve(caps), screen, sellable caps)."""
    book = Book(account_from_dict(raw))
    tracking = _tracking(book)
    model = CACHE.get(first_layout(book, tracking))
    base = _base_data(book, tracking)
    b_max = book.buy_targets(sold=np.zeros(len(book.symbols), dtype=bool)) * BUY_CAP
    seen = []

    def solve(caps):
        seen.append(int(np.count_nonzero(caps)))
        data = ModelData(**{**base.__dict__, "b_max": b_max, "s_max": caps, "sell_room": 1e6})
        try:
            return model.solve(data)
        except SolveFailure as exc:  # as the planner: infeasible is None, anything else fails
            if exc.infeasible:
                return None
            raise

    screen = LotScreen(book.lot_symbol, book.class_of_symbol, base.lot_tax, base.gap[:-1])  # at any size
    return solve, screen, base.s_max * book.lot_sellable, seen


def _assert_same_optimum(raw: dict) -> list[int]:
    solve, screen, caps, seen = _relaxation(raw)
    full = screened(solve, None, caps)
    seen.clear()
    fast = screened(solve, screen, caps)
    if full is None:
        assert fast is None
        return seen
    assert fast.objective == pytest.approx(full.objective, abs=1e-9)
    assert np.all(fast.sells <= caps + 1e-9)
    return seen


@SETTINGS
@given(accounts())
def test_screened_solve_reaches_the_optimum_over_every_lot(raw):
    if not raw["lots"]:
        return
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(screen_module, "WORTH", 1.0)  # screen even where it would not pay
        _assert_same_optimum(raw)


@SETTINGS
@given(accounts())
def test_screening_from_the_smallest_start_widens_to_the_optimum(raw):
    """With no coverage at all, the first solve sees each symbol's losses and one lot more; every
    symbol it sells out must be widened until the optimum is proven."""
    if not raw["lots"]:
        return
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(screen_module, "COVER", 0.0)
        mp.setattr(screen_module, "WORTH", 1.0)
        _assert_same_optimum(raw)


@pytest.mark.parametrize("seed", range(12))
def test_household_relaxation_is_unchanged_by_screening(seed, monkeypatch):
    monkeypatch.setattr(screen_module, "WORTH", 1.0)
    _assert_same_optimum(household(seed))


def test_a_screen_that_leaves_out_little_solves_with_every_lot():
    """A direct index with a class per stock: the first set would keep most lots, so the solve
    takes them all at once rather than risk a widening re-solve."""
    from benchmarks.synth import direct_index
    seen = _assert_same_optimum(direct_index(0, n_symbols=60, lots_per_symbol=4, n_factors=3))
    solve, screen, caps, _ = _relaxation(direct_index(0, n_symbols=60, lots_per_symbol=4, n_factors=3))
    assert np.count_nonzero(screen.initial(caps) & (caps > 0)) > 0.5 * np.count_nonzero(caps)
    assert seen == [np.count_nonzero(caps)]


def test_many_lot_account_hands_the_solver_a_fraction_of_its_lots():
    raw = lots_account(0, 5_000)
    seen = _assert_same_optimum(raw)
    assert max(seen) < 5_000 // 4, seen


def test_many_lot_plan_equals_the_plan_over_every_lot():
    account = account_from_dict(lots_account(1, 2_000))
    fast = Planner(cache=ModelCache()).plan(account)
    full = Planner(cache=ModelCache(), screen_lots=False).plan(account)
    assert fast.objective.total == pytest.approx(full.objective.total, abs=1e-7)


# --- the screen's arithmetic on hand-made lots --------------------------------------------------
def _screen():
    """Two symbols in classes 0 and 1; symbol 0 has lots 0-4 (two losses first), symbol 1 lots 5-7.
    Lot value 0.1 of U each; class 0 is 0.1 above target, class 1 at target."""
    lot_symbol = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    lot_tax = np.array([-0.1, -0.05, 0.01, 0.02, 0.03, 0.0, 0.05, 0.1])
    return LotScreen(lot_symbol, np.array([0, 1]), lot_tax, np.array([0.1, 0.0])), np.full(8, 0.1)


def test_initial_set_is_losses_then_coverage_then_one_lot_more():
    screen, caps = _screen()
    keep = screen.initial(caps)
    # Symbol 0: losses (lots 0, 1) already cover 1.5 × 0.1; one sellable lot more (lot 2).
    # Symbol 1: no excess to cover and no losses, so its first lot alone.
    assert keep.tolist() == [True, True, True, False, False, True, False, False]


def test_initial_set_skips_past_unsellable_lots():
    screen, caps = _screen()
    caps[[0, 1, 2]] = 0.0  # e.g. wash-sale blocked losses and a lot in this solve's no-sell
    keep = screen.initial(caps)
    assert keep[:5].tolist() == [True, True, True, True, True]  # lots 3 and 4 cover 0.15


def test_widen_proves_a_symbol_with_a_lot_left_below_its_cap():
    screen, caps = _screen()
    keep = screen.initial(caps)
    sells = np.zeros(8)
    sells[[0, 1]] = 0.1   # losses sold out, lot 2 untouched
    sells[5] = 0.05       # symbol 1 part-sold
    assert screen.widen(keep, caps, sells) is None


def test_widen_doubles_only_a_sold_out_symbol():
    screen, caps = _screen()
    keep = screen.initial(caps)
    sells = np.where(keep, caps, 0.0)  # symbol 0's three lots sold out, left out: lots 3 and 4
    sells[5] = 0.05                     # symbol 1's one lot part-sold: proven
    wider = screen.widen(keep, caps, sells)
    assert wider.tolist() == [True] * 5 + [True, False, False]


def test_an_account_with_few_lots_is_not_screened():
    small = Book(account_from_dict(household(0)))
    assert len(small.lots) < screen_module.MIN_LOTS_TO_SCREEN
    assert LotScreen.of(small, _base_data(small, _tracking(small))) is None
    large = Book(account_from_dict(lots_account(0, 1_000)))
    assert LotScreen.of(large, _base_data(large, _tracking(large))) is not None


def test_screening_with_a_risk_model_reaches_the_optimum_over_every_lot(monkeypatch):
    """The exchange argument is about lots of one symbol, whatever the tracking term: with a full
    covariance over the classes (the account's own structure, not a bucket) it holds too."""
    monkeypatch.setattr(screen_module, "WORTH", 1.0)
    raw = lots_account(2, 1_500)
    classes = sorted(raw["targets"])
    rng = np.random.default_rng(5)
    loadings = rng.normal(size=(len(classes), 2))
    covariance = loadings @ loadings.T * 0.01 + np.eye(len(classes)) * 0.02
    raw["risk"] = {"classes": classes, "covariance": covariance.tolist()}
    seen = _assert_same_optimum(raw)
    assert min(seen) < 1_500  # it did screen
