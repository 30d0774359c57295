"""Stage 2's direction choices: a choice whose lower bound (``_unbought_bound``: an underweight
class with no buy target keeps its gap) cannot beat the best rounded plan so far is not solved,
and skipping it never changes a plan; a choice the relaxation's optimum already answers
(``_exact_from_relaxation``) is read off it, at the exact optimum.

Expected values: exact optima from the same model solved directly, the bound by hand, and plans
from the planner with the bound switched off (every choice solved).
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given

import rebalance_opt.solve as solve_module
from benchmarks.synth import household, perturbed, sized_household
from rebalance_opt import account_from_dict
from rebalance_opt.book import Book
from rebalance_opt.problem import ModelCache, ModelData, SolveFailure
from rebalance_opt.rounding import NOISE
from rebalance_opt.solve import (BUY_CAP, SALE_NOISE, Planner, _base_data, _cash_price, _directions,
                                 _exact_from_relaxation, _tracking, _unbought_bound, direction_choices,
                                 NO_SELL_LIMIT)
from tests.conftest import first_layout, make
from tests.test_properties import SETTINGS, accounts

CACHE = ModelCache()


def _choice_solver(book, base, tracking):
    """Solves the exact problem of a direction choice directly: (buy targets) -> Solution or None;
    ``relaxed``: the relaxation, in which the targets' lots may be sold too."""
    model = CACHE.get(first_layout(book, tracking))
    s_cap = base.s_max * book.lot_sellable

    def solve(buys, relaxed=False):
        lot_allowed = book.lot_sellable & (True if relaxed else ~buys[book.lot_symbol])
        data = ModelData(**{**base.__dict__, "b_max": buys * BUY_CAP, "s_max": s_cap * lot_allowed,
                            "sell_room": NO_SELL_LIMIT})
        try:
            return model.solve(data)
        except SolveFailure as exc:
            if exc.infeasible:
                return None
            raise
    return solve


def _stage_two(account):
    """Every direction choice of an account's relaxation, as the planner forms them, with the exact
    optimum of each solved directly: [(buys, lot_allowed, exact objective or None)], and the
    pieces the bound needs."""
    book = Book(account)
    tracking = _tracking(book)
    if book.invested <= 0:  # nothing to rebalance: the planner does not reach stage 2
        return book, None, tracking, None, None, []
    base = _base_data(book, tracking)
    s_cap = base.s_max * book.lot_sellable
    solve = _choice_solver(book, base, tracking)
    relaxed = solve(book.buy_targets(sold=np.zeros(len(book.symbols), dtype=bool)), relaxed=True)
    if relaxed is None:
        return book, base, tracking, s_cap, relaxed, []
    out = []
    for sells_symbol in direction_choices(book, relaxed, base.tax_weight * base.u_over_v * base.lot_tax):
        buys = book.buy_targets(sold=sells_symbol)
        exact = solve(buys)
        out.append((buys, book.lot_sellable & ~buys[book.lot_symbol], None if exact is None else exact.objective))
    return book, base, tracking, s_cap, relaxed, out


def _best_of_every_choice(account) -> float:
    """The least exact optimum over every direction choice (each set of held symbols sold), by
    brute force: an independent bound on what stage 2 can reach."""
    book = Book(account)
    tracking = _tracking(book)
    solve = _choice_solver(book, _base_data(book, tracking), tracking)
    held = np.unique(book.lot_symbol)
    best = np.inf
    for sold_held in itertools.product([False, True], repeat=len(held)):
        sold = np.zeros(len(book.symbols), dtype=bool)
        sold[held[list(sold_held)]] = True
        if (sol := solve(book.buy_targets(sold=sold))) is not None:
            best = min(best, sol.objective)
    return best


def _prices(book, base, tracking, relaxed):
    """Prices of cash to bound at: none, the planner's (``_cash_price``) and a few more; any
    price ≥ 0 gives a lower bound."""
    return (0.0, _cash_price(book, base, tracking, relaxed), 1e-4, 1e-2, 0.3)


@SETTINGS
@given(accounts())
def test_the_unbought_bound_never_exceeds_the_exact_optimum(raw):
    book, base, tracking, s_cap, relaxed, choices = _stage_two(account_from_dict(raw))
    for buys, lot_allowed, exact in choices:
        tight = _unbought_bound(book, base, tracking, buys, s_cap * lot_allowed)
        loose = _unbought_bound(book, base, tracking, buys, s_cap * lot_allowed, enough=-np.inf)
        assert loose <= tight + 1e-12  # the early answer is the looser bound of the same relaxation
        if exact is not None:
            for price in _prices(book, base, tracking, relaxed):
                assert _unbought_bound(book, base, tracking, buys, s_cap * lot_allowed, price=price) <= exact + 1e-9


@pytest.mark.parametrize("seed", range(12))
def test_the_unbought_bound_holds_on_synthetic_households(seed):
    book, base, tracking, s_cap, relaxed, choices = _stage_two(account_from_dict(household(seed)))
    for buys, lot_allowed, exact in choices:
        if exact is not None:
            for price in _prices(book, base, tracking, relaxed):
                assert _unbought_bound(book, base, tracking, buys, s_cap * lot_allowed, price=price) <= exact + 1e-9


def _two_classes(bnd_basis: float) -> dict:
    """V = U = 100,000, no cash: 800 VTI at $100 (basis $60) against a 60% target, 400 BND at $50
    against 40%; long-term lots, tax weight 0.5."""
    return {
        "account": {"id": "b", "cash": 0.0, "as_of": "2026-11-24"},
        "tax": {"short_term_rate": 0.37, "long_term_rate": 0.20},
        "targets": {"US_STOCK": 0.60, "US_BOND": 0.40},
        "classes": {"VTI": "US_STOCK", "BND": "US_BOND"},
        "prices": {"VTI": 100.0, "BND": 50.0},
        "lots": [{"id": "s", "symbol": "VTI", "quantity": 800, "cost_basis": 60.0, "acquired": "2019-01-02"},
                 {"id": "b", "symbol": "BND", "quantity": 400, "cost_basis": bnd_basis, "acquired": "2019-01-02"}],
        "policy": {"tax_weight": 0.5},
    }


def test_pricing_cash_tightens_the_bound_by_hand():
    # V = U = 100,000, no cash: stocks 80% against 60% (gap +0.2, a gain of 0.04 per unit sold:
    # 0.5 × 0.20 × (1 − 60/100)), bonds 20% against 40% (gap −0.2); both may be bought.
    book, base, tracking, s_cap, relaxed, choices = _stage_two(make(_two_classes(bnd_basis=50.0)))
    both = np.array([True, True])
    # Unpriced, bonds buy back for free: stocks alone, min (0.2 − σ)² + 0.04σ at σ = 0.18.
    assert _unbought_bound(book, base, tracking, both, s_cap) == pytest.approx(0.0076, rel=1e-12)
    # At price m a buy costs m: bonds −m·(−0.2) − m²/4; stocks at σ = 0.18 + m/2 cost
    # (0.02 − m/2)² + (0.04 − m)σ; the cash row's gap and room are 0, so no constant. In all
    # 0.0076 + 0.02m − 0.5m², largest at m = 0.02: 0.0078.
    for m in (0.01, 0.02, 0.03):
        assert _unbought_bound(book, base, tracking, both, s_cap, price=m) == pytest.approx(
            0.0076 + 0.02 * m - 0.5 * m * m, rel=1e-12)
    # The exact optimum sells σ and buys as much: 2(0.2 − σ)² + 0.04σ, least at σ = 0.19: 0.0078,
    # the bound at the price read off the relaxation (bonds end 0.01 below target: −2 × −0.01).
    assert relaxed.objective == pytest.approx(0.0078, abs=1e-8)
    assert _cash_price(book, base, tracking, relaxed) == pytest.approx(0.02, abs=1e-6)


def test_the_bound_by_hand_on_a_two_class_account():
    # V = U = 100,000: stocks 80% against 60% (gap +0.2), bonds 20% against 40% (gap −0.2), and
    # BND may not be bought here (the choice's buy targets: VTI only).
    d = _two_classes(bnd_basis=40.0)
    vti_only = np.array([True, False])

    def bound(d):
        book = Book(make(d))
        tracking = _tracking(book)
        base = _base_data(book, tracking)
        return _unbought_bound(book, base, tracking, vti_only, base.s_max)

    # Bonds cannot rise and selling them (a gain) only costs: 0.2² = 0.04. Stocks: selling σ of U
    # costs 0.5 × 0.20 × (1 − 60/100) = 0.04 per unit, so min (0.2 − σ)² + 0.04 σ is at
    # σ = 0.2 − 0.04/2 = 0.18: 0.02² + 0.04 × 0.18 = 0.0076.
    assert bound(d) == pytest.approx(0.04 + 0.0076, rel=1e-12)
    # A loss lot instead (basis 150): each unit sold saves 0.5 × 0.20 × 0.5 = 0.05, so all 0.8 of
    # it is sold (VTI buys back what falls below target): 0 − 0.05 × 0.8 = −0.04.
    d["lots"][0]["cost_basis"] = 150.0
    assert bound(d) == pytest.approx(0.04 - 0.04, abs=1e-15)
    # Bonds may be bought too: nothing is stuck, and the bonds' gap costs nothing.
    vti_only[1] = True
    assert bound(d) == pytest.approx(-0.04, rel=1e-12)


def _plans_without_shortcuts(accounts, bound: bool = True, read_off: bool = False):
    """Plans with the chosen shortcuts off: the bound (every choice not pruned by it is solved)
    and/or the read-off (every choice not pruned is solved, none read off the relaxation)."""
    with pytest.MonkeyPatch.context() as patch:
        if bound:
            patch.setattr(solve_module._Bound, "__call__", lambda *a: -np.inf)
        if read_off:
            patch.setattr(solve_module, "_exact_from_relaxation", lambda *a: None)
        return [Planner(cache=ModelCache()).plan(a) for a in accounts]


def _orders(plan):
    return [(o.symbol, o.side, o.quantity) for o in plan.orders]


def test_skipped_solves_leave_every_plan_as_solving_every_choice_makes_it():
    accounts_ = [account_from_dict(household(s)) for s in range(40)]
    accounts_ += [account_from_dict(perturbed(sized_household(0, 10, 5), s)) for s in range(10)]
    fast = [Planner(cache=ModelCache()).plan(a) for a in accounts_]
    slow = _plans_without_shortcuts(accounts_)
    for f, s in zip(fast, slow):
        assert _orders(f) == _orders(s)
        assert f.objective.total == pytest.approx(s.objective.total, abs=1e-12)
        assert f.solver.solves <= s.solver.solves
    assert sum(f.solver.solves for f in fast) < sum(s.solver.solves for s in slow)


@SETTINGS
@given(accounts())
def test_skipped_solves_never_change_a_plan(raw):
    account = account_from_dict(raw)
    try:
        fast = Planner(cache=ModelCache()).plan(account)
    except solve_module.Infeasible:
        with pytest.raises(solve_module.Infeasible):
            _plans_without_shortcuts([account])
        return
    slow, = _plans_without_shortcuts([account])
    assert fast.objective.total == pytest.approx(slow.objective.total, abs=1e-9)


def test_a_noise_level_sale_does_not_take_a_symbol_off_its_class_buy_list():
    # A batch household (US_SMALL: VB first, IJR second): the relaxation sells VB and, at one of
    # its many optima, 5e-7 of U of IJR. Counted as a sale, that left US_SMALL with no buy
    # target and the plan 0.005 worse in objective; a sale counts above SALE_NOISE of U (or
    # half a share, where that is less).
    from rebalance_opt.problem import Solution
    account = account_from_dict(household(2026001783))
    book = Book(account)
    vb, ijr = book.symbol_index["VB"], book.symbol_index["IJR"]
    (ijr_lot,) = np.flatnonzero(book.lot_symbol == ijr)[:1]
    vb_lot = np.flatnonzero(book.lot_symbol == vb)[0]

    def directions(ijr_sold: float):
        sells = np.zeros(len(book.lots))
        sells[vb_lot], sells[ijr_lot] = 0.01, ijr_sold
        buys = np.zeros(len(book.symbols))
        return _directions(book, Solution(buys, sells, 0.0, "optimal", "CLARABEL", 0.0))

    half_share = 0.5 * book.price[ijr] / book.invested
    assert half_share > SALE_NOISE
    for noise in (2e-7, 5e-7, 0.9 * SALE_NOISE):
        net_sell, conflict = directions(noise)
        assert net_sell[vb] and not net_sell[ijr] and not conflict.any()
    assert directions(1.1 * SALE_NOISE)[0][ijr]

    plan = Planner(cache=ModelCache()).plan(account)
    assert any(o.symbol == "IJR" and o.side == "buy" for o in plan.orders)
    assert not any(o.symbol == "VB" and o.side == "buy" for o in plan.orders)


def test_a_sale_that_could_round_to_one_share_counts_however_small_a_share_is():
    # The noise floor is SALE_NOISE of U, or half a share where that is less. A small account:
    # 0.4 share of S1 (3.5% of it) counts. A large one holding a $5 fund: one share is 5e-7 of
    # U, far below SALE_NOISE, and still a sale; 0.4 share (above NOISE) is not.
    from rebalance_opt.problem import Solution

    def book_of(cash: float, price: float, quantity: float) -> Book:
        return Book(make({"account": {"id": "t", "cash": cash, "as_of": "2026-11-24"},
                          "tax": {"short_term_rate": 0.37, "long_term_rate": 0.2},
                          "targets": {"C0": 0.5, "C1": 0.5}, "classes": {"S0": "C0", "S1": "C1"},
                          "prices": {"S0": 10.0, "S1": price},
                          "lots": [{"id": "a", "symbol": "S1", "quantity": quantity, "cost_basis": 1.0,
                                    "acquired": "2026-08-16"}]}))

    def sells_s1(book: Book, shares: float) -> bool:
        sells = np.array([shares * book.price[1] / book.invested])
        return bool(_directions(book, Solution(np.zeros(2), sells, 0.0, "optimal", "CLARABEL", 0.0))[0][1])

    small = book_of(3000.0, 400.0, 4)
    assert 0.5 * 400.0 / small.invested > SALE_NOISE
    assert sells_s1(small, 0.4) and not sells_s1(small, 1e-4)
    large = book_of(10_000_000.0, 5.0, 100_000)
    assert 0.5 * 5.0 / large.invested < SALE_NOISE
    assert sells_s1(large, 1.0) and not sells_s1(large, 0.4)


def _buys_past_an_unsold_first_symbol(account, plan) -> list[tuple[str, str]]:
    """(bought, skipped): a buy of a class's later symbol while an earlier one that may be bought
    is not sold in the plan (SPEC section 2: buys go to the first such symbol). The test's own
    reading of the account: listed order, no_buy and wash-sale blocks."""
    from rebalance_opt.tax import buy_blocked_symbols
    blocked = set(buy_blocked_symbols(account)) | set(account.policy.no_buy)
    sold = {o.symbol for o in plan.orders if o.side == "sell"}
    out = []
    for o in plan.orders:
        if o.side != "buy":
            continue
        for s in account.symbols:
            if s == o.symbol:
                break
            if account.class_of(s) == account.class_of(o.symbol) and s not in blocked and s not in sold:
                out.append((o.symbol, s))
                break
    return out


def test_a_plan_buys_a_class_through_its_first_symbol_it_does_not_sell():
    # household 2026000152: the relaxation sold the one share of GOVT (TREASURY's first fund), so
    # the choice let GOVT sell and sent the class's buys to VGIT; its optimum then kept GOVT and
    # bought a share of VGIT. The plan now follows its own sales: it buys GOVT, or not at all.
    account = account_from_dict(household(2026000152))
    plan = Planner(cache=ModelCache()).plan(account)
    assert _buys_past_an_unsold_first_symbol(account, plan) == []
    assert not any(o.symbol == "VGIT" and o.side == "buy" for o in plan.orders)


def test_plans_of_many_households_buy_each_class_through_its_first_unsold_symbol():
    planner = Planner(cache=ModelCache())
    for seed in range(150):
        account = account_from_dict(household(2026000000 + seed))
        plan = planner.plan(account)
        assert _buys_past_an_unsold_first_symbol(account, plan) == [], seed


def test_a_dust_buy_of_a_fund_sold_in_full_is_no_conflict():
    # household 2026004652: the relaxation sold all 987 SCHP and bought 0.0008 of a share back.
    # As a conflict, its flip (keep SCHP, stop selling it) took the place of the alternative
    # that paid (a plan 0.0015 worse). A buy counts above the same floor as a sale.
    from rebalance_opt.problem import Solution
    account = account_from_dict(household(2026004652))
    book = Book(account)
    schp = book.symbol_index["SCHP"]
    lots = np.flatnonzero(book.lot_symbol == schp)
    sells = np.zeros(len(book.lots))
    sells[lots] = book.lot_value[lots] / book.invested

    def directions(bought_shares: float):
        buys = np.zeros(len(book.symbols))
        buys[schp] = bought_shares * book.price[schp] / book.invested
        return _directions(book, Solution(buys, sells, 0.0, "optimal", "CLARABEL", 0.0))

    net_sell, conflict = directions(0.0008)
    assert net_sell[schp] and not conflict[schp]
    net_sell, conflict = directions(3.0)
    assert net_sell[schp] and conflict[schp]


def _check_read_off(account) -> int:
    """For every direction choice the relaxation answers (``_exact_from_relaxation``), the answer
    is an exact plan (buys only the choice's targets, sells none of the lots it keeps, every
    class and cash moved as in the relaxation) whose objective is the exact optimum solved
    directly. Returns how many answers differ from the relaxation's own optimum."""
    book, base, tracking, s_cap, relaxed, choices = _stage_two(account)
    changed = 0
    for buys, lot_allowed, exact in choices:
        read = _exact_from_relaxation(book, base, relaxed, buys, lot_allowed)
        if read is None:
            continue
        assert exact is not None
        # Both sides are Clarabel optima (relaxation and direct solve, 1e-12 gap or the 1e-10 retry),
        # so they agree to the solver's relative accuracy: an account with every target 0 (objective
        # 1.8) gave 1.8174693251 against 1.8174693282, 3e-9 apart (hypothesis, 2026-12-01).
        assert read.objective == pytest.approx(exact, rel=1e-8, abs=1e-9)
        assert read.buys[~buys].sum() <= NOISE and read.sells[~lot_allowed].sum() <= NOISE  # dust at most
        assert (read.buys >= 0).all() and (read.sells >= 0).all()

        def net(sol):  # what each class gains (buys less sales), and what cash pays
            sold = np.bincount(book.lot_symbol, weights=sol.sells, minlength=len(book.symbols))
            per_class = np.bincount(book.class_of_symbol, weights=sol.buys - sold, minlength=len(book.classes))
            return np.append(per_class, sold.sum() - sol.buys.sum())
        assert net(read) == pytest.approx(net(relaxed), abs=2 * NOISE)
        changed += read is not relaxed
    return changed


@SETTINGS
@given(accounts())
def test_a_choice_read_off_the_relaxation_is_its_exact_optimum(raw):
    _check_read_off(account_from_dict(raw))


@pytest.mark.parametrize("seed", [2026000029, 2026000047, 2026000106, 2026000219])
def test_a_relaxation_that_sells_and_rebuys_a_fund_answers_the_choice_that_buys_the_next(seed):
    # Batch households where the relaxation sells lots of a class's first fund and buys it back;
    # the choice that sells it buys the class's next fund instead, at the same objective.
    assert _check_read_off(account_from_dict(household(seed))) >= 1


@pytest.mark.parametrize("seed", range(6))
def test_a_harvest_bought_straight_back_answers_the_choice_that_keeps_the_fund(seed):
    # The benchmark household (no trading costs): the relaxation sells loss lots of funds it
    # buys back; the choice that keeps those funds is the same plan without the pairs.
    account = account_from_dict(perturbed(sized_household(0, 10, 5), seed))
    assert account.policy.trade_cost_bps == 0
    assert _check_read_off(account) >= 1


def test_with_trading_costs_a_harvest_bought_back_is_solved():
    # A pair now costs cash, which moves the cash row: the choice must be solved.
    raw = perturbed(sized_household(0, 10, 5), 0)
    raw["policy"]["trade_cost_bps"] = 5.0
    book, base, tracking, s_cap, relaxed, choices = _stage_two(account_from_dict(raw))
    kept_sold = [float(relaxed.sells[~lot_allowed].sum()) for _, lot_allowed, _ in choices]
    assert max(kept_sold) > NOISE
    for (buys, lot_allowed, _), sold in zip(choices, kept_sold):
        if sold > NOISE:
            assert _exact_from_relaxation(book, base, relaxed, buys, lot_allowed) is None


def test_reading_choices_off_the_relaxation_keeps_each_plans_objective_with_fewer_solves():
    accounts_ = [account_from_dict(household(s)) for s in (2026000029, 2026000047, 2026000106, 2026000112,
                                                           2026000219, 2026000279, 2026000282, 2026000316)]
    fast = [Planner(cache=ModelCache()).plan(a) for a in accounts_]
    slow = _plans_without_shortcuts(accounts_, bound=False, read_off=True)
    for f, s in zip(fast, slow):
        assert f.objective.total == pytest.approx(s.objective.total, abs=1e-9)
    assert sum(f.solver.solves for f in fast) < sum(s.solver.solves for s in slow)


HARVEST = {  # VXUS far above its 5% target forces stage 2; VTI and BND each hold a loss lot
    "account": {"id": "h", "cash": 5000.0, "as_of": "2026-11-24"},
    "tax": {"short_term_rate": 0.37, "long_term_rate": 0.2},
    "targets": {"US": 0.55, "BOND": 0.35, "INTL": 0.05},
    "classes": {"VTI": "US", "BND": "BOND", "AGG": "BOND", "VXUS": "INTL"},
    "prices": {"VTI": 250.0, "BND": 72.0, "AGG": 98.0, "VXUS": 60.0},
    "lots": [{"id": "vti-loss", "symbol": "VTI", "quantity": 150, "cost_basis": 280.0, "acquired": "2022-01-10"},
             {"id": "vti-gain", "symbol": "VTI", "quantity": 50, "cost_basis": 150.0, "acquired": "2019-03-01"},
             {"id": "bnd-loss", "symbol": "BND", "quantity": 300, "cost_basis": 80.0, "acquired": "2022-02-01"},
             {"id": "vxus", "symbol": "VXUS", "quantity": 400, "cost_basis": 50.0, "acquired": "2020-05-01"}],
    "policy": {"tax_weight": 0.5, "band": 0.03},
}


def test_a_loss_is_harvested_into_the_class_mate_even_where_another_fund_has_none():
    # The relaxation harvests both loss lots and buys both funds back. Keeping both funds drops
    # both harvests; selling both leaves US with nothing to buy. The plan sells BND's loss lot
    # and buys AGG, BOND's next fund, and keeps VTI, alone in US.
    plan = Planner(cache=ModelCache()).plan(account_from_dict(HARVEST))
    orders = {o.symbol: (o.side, o.quantity) for o in plan.orders}
    assert orders["BND"] == ("sell", 300.0) and orders["AGG"][0] == "buy"
    assert orders["VTI"][0] == "buy" and "VXUS" in orders and orders["VXUS"][0] == "sell"
    # By hand: VXUS's gain 10/share and BND's loss 8/share, both long-term at 20%.
    sold_vxus = orders["VXUS"][1]
    assert plan.tax.estimated_tax == pytest.approx(0.2 * (10 * sold_vxus - 8 * 300))
    # The best plan that keeps BND (what the two choices alone gave) pays the whole VXUS tax.
    kept = Planner(cache=ModelCache()).plan(account_from_dict({**HARVEST, "policy": {**HARVEST["policy"],
                                                                                      "no_sell": ["BND"]}}))
    assert plan.objective.total < kept.objective.total - 1e-3


LOSSY = {  # BOND far above target forces stage 2; VTI holds two loss lots, ITOT (US's second fund) one small one
    "account": {"id": "l", "cash": 5000.0, "as_of": "2026-11-24"},
    "tax": {"short_term_rate": 0.37, "long_term_rate": 0.2},
    "targets": {"US": 0.6, "BOND": 0.4},
    "classes": {"VTI": "US", "ITOT": "US", "BND": "BOND"},
    "prices": {"VTI": 250.0, "ITOT": 100.0, "BND": 80.0},
    "lots": [{"id": "vti-1", "symbol": "VTI", "quantity": 100, "cost_basis": 300.0, "acquired": "2022-01-10"},
             {"id": "vti-2", "symbol": "VTI", "quantity": 100, "cost_basis": 290.0, "acquired": "2022-06-10"},
             {"id": "itot", "symbol": "ITOT", "quantity": 20, "cost_basis": 110.0, "acquired": "2022-03-01"},
             {"id": "bnd", "symbol": "BND", "quantity": 1000, "cost_basis": 70.0, "acquired": "2019-03-01"}],
    "policy": {"tax_weight": 0.5, "fractional": True},
}


def test_a_class_buys_through_the_fund_whose_harvest_is_smallest():
    # The relaxation harvests all three loss lots and buys US back through VTI. ITOT then sells
    # on net, so the choices of a conflict alone keep VTI (no harvest: ITOT's $200 loss against
    # BND's gain, $579 of tax) or sell both US funds (US buys nothing). Buying US through ITOT
    # instead forfeits its $200 loss and keeps VTI's $9,000: (300 − 250) × 100 + (290 − 250) × 100.
    account = account_from_dict(LOSSY)
    plan = Planner(cache=ModelCache()).plan(account)
    orders = {o.symbol: (o.side, o.quantity) for o in plan.orders}
    assert orders["VTI"] == ("sell", 200.0) and orders["ITOT"][0] == "buy" and orders["BND"][0] == "sell"
    gain = (80.0 - 70.0) * orders["BND"][1] - 9000.0  # long-term, all of it: a net loss, no tax
    assert gain < 0 and plan.tax.estimated_tax == 0.0
    assert plan.objective.total == pytest.approx(_best_of_every_choice(account), abs=1e-6)
    # The plan says why US buys its second fund: 9,000 of loss by hand, as above.
    assert "US buys ITOT, not VTI: VTI is sold in this plan (a loss of 9,000.00 harvested), and a plan never " \
           "buys a symbol it sells" in plan.notes


@pytest.mark.parametrize("seed", range(8))
def test_loss_heavy_accounts_reach_the_best_direction_choice(seed):
    # Random 2-4 class accounts of one or two funds a class, lots 40% below to 60% above their
    # price, in millionths of a share (so rounding costs almost nothing): stage 2's plan is as
    # good as the best of every direction choice solved exactly. Before the cheapest-target
    # choices, 3 of these 8 were 12–112% above it (of seeds 150–399, 74 then and 6 now).
    account = account_from_dict(_lossy_account(seed))
    plan = Planner(cache=ModelCache()).plan(account)
    if plan.stage != "full":  # cash first kept the account in band: no direction was chosen
        return
    best = _best_of_every_choice(account)
    assert plan.objective.total <= best + 3e-3 * abs(best) + 1e-7


def _lossy_account(seed: int) -> dict:
    rng = np.random.default_rng([seed, 7])
    k = int(rng.integers(2, 5))
    classes = [f"K{i}" for i in range(k)]
    targets = {c: float(x) for c, x in zip(classes, rng.dirichlet(np.ones(k)) * 0.97)}
    symbols = {f"S{i}{j}": classes[i] for i in range(k) for j in range(int(rng.integers(1, 3)))}
    prices = {s: float(np.round(rng.uniform(5, 400), 2)) for s in symbols}
    lots = [{"id": f"{s}-{j}", "symbol": s, "quantity": float(np.round(rng.uniform(5, 800), 3)),
             "cost_basis": float(np.round(prices[s] * rng.uniform(0.6, 1.6), 2)),
             "acquired": ["2020-01-01", "2026-05-08", "2023-03-03"][j % 3]}
            for s in symbols for j in range(int(rng.integers(1, 4)))]
    return {"account": {"id": "x", "cash": float(np.round(rng.uniform(0, 30000), 2)), "as_of": "2026-11-24"},
            "tax": {"short_term_rate": 0.37, "long_term_rate": 0.2},
            "targets": targets, "classes": symbols, "prices": prices, "lots": lots,
            "policy": {"tax_weight": float(rng.choice([0.1, 0.3, 1.0])), "fractional": True}}
