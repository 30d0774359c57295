"""Whole-share rounding: as good as an exhaustive floor/ceil search around the continuous plan.

The continuous plan is the engine's fractional one (millionths of a share); the search, the lot
relief and the objective below are this test's own code.
"""
from __future__ import annotations

import itertools
import math
from datetime import date, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from rebalance_opt import Planner, account_from_dict, plan_rebalance
from rebalance_opt.problem import ModelCache

AS_OF = date(2026, 11, 24)
TOLERANCE = 1e-6  # objective units (SPEC section 2): 1e-6 is a 0.1-point drift, squared


@st.composite
def small_accounts(draw):
    n = draw(st.integers(2, 8))
    prices, classes, lots = {}, {}, []
    for i in range(n):
        sym = f"S{i}"
        prices[sym] = round(draw(st.floats(5.0, 400.0)), 2)
        classes[sym] = f"C{i % 4}"
        for j in range(draw(st.integers(0, 2))):
            lots.append({"id": f"{sym}-{j}", "symbol": sym, "quantity": draw(st.integers(1, 60)),
                         "cost_basis": round(prices[sym] * draw(st.floats(0.5, 1.5)), 2),
                         "acquired": (AS_OF - timedelta(days=draw(st.sampled_from([100, 400, 2000])))).isoformat()})
    n_classes = len(set(classes.values()))
    raw = [draw(st.floats(0.05, 1.0)) for _ in range(n_classes)]
    targets = {f"C{k}": round(w / sum(raw) * 0.97, 4) for k, w in enumerate(raw)}
    return {
        "account": {"id": "r", "cash": draw(st.sampled_from([0.0, 300.0, 3_000.0])), "as_of": AS_OF.isoformat()},
        "tax": {"short_term_rate": 0.37, "long_term_rate": 0.2},
        "targets": targets, "classes": classes, "prices": prices, "lots": lots,
        "policy": {"tax_weight": draw(st.sampled_from([0.0, 0.2, 2.0])), "band": 0.0,
                   "trade_cost_bps": draw(st.sampled_from([0.0, 10.0]))},
    }


def objective(d: dict, shares: dict[str, float]) -> float | None:
    """SPEC section 2's objective of signed share trades, or None when cash goes below zero."""
    p, prices = d["policy"], d["prices"]
    kappa = p["trade_cost_bps"] * 1e-4
    held = _held(d)
    cash = d["account"]["cash"]
    value = cash + sum(prices[s] * q for s, q in held.items())
    lot_tax = notional = 0.0
    for sym, q in shares.items():
        cash -= q * prices[sym] + abs(q) * prices[sym] * kappa
        notional += abs(q) * prices[sym]
        if q < 0:  # relieve lots, cheapest tax per share first
            def tax_per_share(l):
                long = (AS_OF - date.fromisoformat(l["acquired"])).days > 366
                return (0.2 if long else 0.37) * (prices[sym] - l["cost_basis"])
            left = -q
            for l in sorted((l for l in d["lots"] if l["symbol"] == sym), key=tax_per_share):
                take = min(left, l["quantity"])
                lot_tax += take * tax_per_share(l)
                left -= take
    if cash < -1e-6:
        return None
    after = {s: (held.get(s, 0) + shares.get(s, 0)) * prices[s] for s in prices}
    tracking = 0.0
    for cls, target in d["targets"].items():
        w = sum(v for s, v in after.items() if d["classes"][s] == cls) / value
        tracking += (w - target) ** 2
    tracking += (cash / value - (1 - sum(d["targets"].values()))) ** 2
    return tracking + p["tax_weight"] * lot_tax / value + kappa * notional / value


def _signed(plan) -> dict[str, float]:
    """A plan's shares per symbol traded: + bought, − sold."""
    return {o.symbol: o.quantity * (1 if o.side == "buy" else -1) for o in plan.orders}


def _held(d: dict) -> dict[str, float]:
    """Shares held per symbol of an account dict."""
    held: dict[str, float] = {}
    for l in d["lots"]:
        held[l["symbol"]] = held.get(l["symbol"], 0) + l["quantity"]
    return held


@settings(max_examples=max(40, settings.default.max_examples), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(small_accounts())
def test_whole_share_plan_is_as_good_as_exhaustive_floor_ceil_search(d):
    assume(d["account"]["cash"] > 0 or d["lots"])
    whole = plan_rebalance(account_from_dict(d))
    frac_d = {**d, "policy": {**d["policy"], "fractional": True}}
    frac = plan_rebalance(account_from_dict(frac_d))
    continuous = _signed(frac)
    held = _held(d)
    options = []
    for sym, x in continuous.items():
        lo, hi = math.floor(abs(x)), math.ceil(abs(x))
        cap = held.get(sym, 0) if x < 0 else math.inf
        options.append([(sym, math.copysign(min(q, cap), x)) for q in {lo, hi}])
    best = math.inf
    for combo in itertools.product(*options):
        value = objective(d, dict(combo))
        if value is not None:
            best = min(best, value)
    mine = objective(d, _signed(whole))
    assert mine is not None
    assert abs(mine - whole.objective.total) < 1e-9  # the engine reports the objective it achieves
    assert mine <= best + TOLERANCE, (mine, best)


@settings(max_examples=max(40, settings.default.max_examples), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(small_accounts())
@example({  # the polish stopped after 50 one-share steps of S1 (785 shares), and 786 was better
    "account": {"id": "r", "cash": 0.0, "as_of": AS_OF.isoformat()},
    "tax": {"short_term_rate": 0.37, "long_term_rate": 0.2},
    "targets": {"C0": 0.485, "C1": 0.485}, "classes": {"S0": "C0", "S1": "C1"},
    "prices": {"S0": 366.0, "S1": 5.0},
    "lots": [{"id": "S0-0", "symbol": "S0", "quantity": 13, "cost_basis": 240.19, "acquired": "2026-08-16"},
             {"id": "S0-1", "symbol": "S0", "quantity": 10, "cost_basis": 366.0, "acquired": "2026-08-16"}],
    "policy": {"tax_weight": 2.0, "band": 0.0, "trade_cost_bps": 0.0}})
def test_no_one_share_change_of_a_traded_symbol_improves_a_whole_share_plan(d):
    # The polish's promise, checked with this file's own objective: one share more or less of
    # any symbol the plan trades (a sale within the shares held), or dropping a buy, is no
    # better. (Dropping a sale is left out: it can move the class's buys to another symbol.)
    assume(d["account"]["cash"] > 0 or d["lots"])
    plan = plan_rebalance(account_from_dict(d))
    shares = _signed(plan)
    mine = objective(d, shares)
    assert mine is not None
    held = _held(d)
    for sym, q in shares.items():
        steps = [q - 1, q + 1] + ([0.0] if q > 0 else [])
        for other in steps:
            if other != 0 and (math.copysign(1, other) != math.copysign(1, q) or -other > held.get(sym, 0)):
                continue
            value = objective(d, {**shares, sym: other})
            assert value is None or value >= mine - 1e-12, (sym, q, other, mine, value)


COARSE = {  # $5.8k in three funds: one share of A1 is 11% of the account, of B1 6%
    "account": {"id": "coarse", "cash": 1384.55, "as_of": AS_OF.isoformat()},
    "tax": {"short_term_rate": 0.37, "long_term_rate": 0.2},
    "targets": {"A": 0.323, "B": 0.335}, "classes": {"A1": "A", "A2": "A", "B1": "B"},
    "prices": {"A1": 612.68, "A2": 337.18, "B1": 366.6},
    "lots": [{"id": "A1-0", "symbol": "A1", "quantity": 1, "cost_basis": 534.34, "acquired": "2024-11-14"},
             {"id": "A1-1", "symbol": "A1", "quantity": 5, "cost_basis": 441.11, "acquired": "2025-07-16"},
             {"id": "B1-0", "symbol": "B1", "quantity": 2, "cost_basis": 341.22, "acquired": "2025-11-08"}],
    "policy": {"band": 0.01, "tax_weight": 0.0, "trade_cost_bps": 0.0},
}


def test_milp_rounding_finds_the_best_whole_share_plan_where_the_local_search_stops_short():
    # Every whole-share plan of COARSE, by SPEC section 2's rules: A2 (no lots) is bought only
    # when A1, first in its class, is sold; a symbol is bought or sold, not both.
    d = COARSE
    best = math.inf
    for a1, a2, b1 in itertools.product(range(-6, 10), range(0, 18), range(-2, 16)):
        if a2 > 0 and a1 >= 0:
            continue
        value = objective(d, {"A1": float(a1), "A2": float(a2), "B1": float(b1)})
        if value is not None:
            best = min(best, value)
    local = plan_rebalance(account_from_dict(d))
    milp = plan_rebalance(account_from_dict({**d, "policy": {**d["policy"], "milp_rounding": True}}))
    assert local.stage == milp.stage == "full"
    # The local search rounds the continuous plan (sell 3 A1, buy 3 B1) and no one-share step
    # improves it; the best plan sells 4 A1 and buys 2 A2, its class-mate, for a finer weight.
    assert objective(d, _signed(local)) > best + 1e-4
    assert _signed(milp) == {"A1": -4.0, "A2": 2.0, "B1": 3.0}
    assert objective(d, _signed(milp)) == pytest.approx(best, abs=1e-12)
    assert milp.objective.total == pytest.approx(best, abs=1e-12)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_accounts())
def test_milp_rounding_is_never_worse_than_the_local_search(d):
    assume(d["account"]["cash"] > 0 or d["lots"])
    local = plan_rebalance(account_from_dict(d))
    milp = plan_rebalance(account_from_dict({**d, "policy": {**d["policy"], "milp_rounding": True}}))
    assert milp.objective.total <= local.objective.total + 1e-12
    assert objective(d, _signed(milp)) == pytest.approx(milp.objective.total, abs=1e-9)


@pytest.mark.parametrize("seed, gap", [(7, 1e-2), (349, 1e-4)])
def test_a_plan_too_large_for_exhaustive_search_still_rounds_close_to_its_continuous_optimum(seed, gap):
    # Synthetic households of 28 funds: too many floor/ceil combinations to score them all. From
    # the nearest rounding alone the search once ended 0.077 (seed 7) and 0.0019 (seed 349) above
    # the fractional plan's objective; the cash-safe second start brings it within these gaps.
    from benchmarks.synth import household
    d = household(seed)
    whole = plan_rebalance(account_from_dict(d))
    frac = plan_rebalance(account_from_dict({**d, "policy": {**d.get("policy", {}), "fractional": True}}))
    assert whole.objective.total - frac.objective.total < gap


def test_polishing_a_sell_of_a_whole_fractional_holding_steps_down_to_whole_shares():
    # One lot of 9.3 SCHE (a fractional holding). Rounding may sell all 9.3; the polish then
    # tried 9.3 − 1 = 8.3, neither whole nor closing the lot, and the plan failed its check.
    import json
    from pathlib import Path
    d = json.loads((Path(__file__).parent / "data" / "fractional_holding_polish.json").read_text())
    plan = plan_rebalance(account_from_dict(d))  # raises if the independent check fails
    for o in plan.sells:
        held = sum(l["quantity"] for l in d["lots"] if l["symbol"] == o.symbol)
        assert o.quantity == round(o.quantity) or abs(o.quantity - held) < 1e-9


def test_the_count_of_combinations_is_exact_for_hundreds_of_traded_symbols():
    # 500 traded symbols with 2 options each (3 with no trade): counted in numpy integers the
    # product wrapped around to a small number, and the exhaustive search tried 3^500 plans.
    from rebalance_opt.rounding import _Candidates, combinations
    two = [1.0, 2.0]
    cands = [_Candidates(i, 0, 1.5, two, two, two, [0.0, 0.0]) for i in range(500)]
    assert combinations(cands) == 2 ** 500
    assert combinations(cands, with_zero=True) == 3 ** 500
    zero_first = [0.0, 1.0]
    assert combinations([_Candidates(0, 0, 0.5, zero_first, zero_first, zero_first, [0.0, 0.0])],
                        with_zero=True) == 2


def test_a_fractional_plan_spending_cash_to_the_floor_passes_the_independent_check():
    # Rounding accepted cash after of -0.0000010 (its own tolerance was the check's 1e-6) and the
    # check, adding the orders in another order, rejected the plan. Rounding now keeps half that.
    import json
    from pathlib import Path
    d = json.loads((Path(__file__).parent / "data" / "cash_floor_fractional.json").read_text())
    plan = plan_rebalance(account_from_dict(d))  # raises if the independent check fails
    assert plan.cash_after >= -5e-7


def _one_fund(cash: float, lots: list[dict], target: float, max_tax: float = math.inf):
    """A fractional account of one fund (price 100, or 134.165 with no lots) and its book."""
    from rebalance_opt.book import Book
    price = 100.0 if lots else 134.165
    d = {"account": {"id": "f", "cash": cash, "as_of": AS_OF.isoformat()},
         "tax": {"short_term_rate": 0.37, "long_term_rate": 0.2},
         "targets": {"FUNDS": target}, "classes": {"FND": "FUNDS"}, "prices": {"FND": price}, "lots": lots,
         "policy": {"band": 0.0, "fractional": True, "max_tax": max_tax}}
    return Book(account_from_dict(d)), price


def test_a_fractional_buy_of_all_the_cash_a_few_cents_too_large_still_spends_the_cash():
    # The solver meets the cash floor to a relative tolerance: cents on a large account, more than
    # a millionth of a share. Every count around such a buy was short of cash, so the search
    # started from no trade and stepped up a millionth at a time: 0.001 shares bought.
    from rebalance_opt.rounding import Scorer, Tracking, round_trades
    book, price = _one_fund(5_000.0, [], 1.0)
    continuous = np.array([(5_000.0 + 0.03) / price])  # 3 cents more than the cash
    trades = round_trades(book, continuous, book.lot_sellable, Scorer(book, Tracking()))
    most = math.floor(5_000.0 / price * 1e6) / 1e6  # the largest count of millionths the cash buys
    assert abs(trades.shares[0] - most) <= 1e-6
    assert trades.shares[0] * price <= 5_000.0 + 5e-7


def test_a_fractional_sale_a_few_cents_over_the_tax_budget_still_sells_up_to_the_budget():
    # 100 long-term shares with a gain of 50 each: 10 of tax per share, a budget of 300 allows 30.
    from rebalance_opt.rounding import Scorer, Tracking, round_trades
    lot = {"id": "L", "symbol": "FND", "quantity": 100, "cost_basis": 50.0,
           "acquired": (AS_OF - timedelta(days=800)).isoformat()}
    book, _ = _one_fund(0.0, [lot], 0.5, max_tax=300.0)
    continuous = np.array([-(30.0 + 2.5e-6)])  # 2.5 cents of tax over the budget
    trades = round_trades(book, continuous, book.lot_sellable, Scorer(book, Tracking()))
    assert abs(trades.shares[0] + 30.0) <= 1e-6
    assert trades.lot_shares @ book.lot_tax_per_share <= 300.0 + 5e-7


# Few examples: trades drawn at random are no optimum, so the polish walks up to its 1,000
# millionth-share steps from most of them (about half a second an example).
@settings(max_examples=max(15, settings.default.max_examples // 7), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(small_accounts(), st.floats(1e-9, 1e-7), st.data())
def test_fractional_rounding_of_trades_just_short_of_cash_stays_at_their_objective(d, overshoot, data):
    # Any trades that spend the cash and ``overshoot`` × the account more (the solver's tolerance):
    # a fractional rounding scores at most a hair above them (or lower: the search may improve).
    from rebalance_opt.book import Book
    from rebalance_opt.orders import SymbolLots, Trades
    from rebalance_opt.rounding import Scorer, Tracking, round_trades, terms_of
    d = {**d, "policy": {**d["policy"], "fractional": True}}
    book = Book(account_from_dict(d))
    assume(book.invested > 0)
    scorer, kappa = Scorer(book, Tracking()), d["policy"]["trade_cost_bps"] * 1e-4
    n, allowed = len(book.symbols), book.lot_sellable
    shares, lot_shares = np.zeros(n), np.zeros(len(book.lots))
    for i in range(n):  # sell a drawn fraction of some symbols' sellable shares
        lots = SymbolLots(book, i, allowed)
        if lots.capacity > 0 and data.draw(st.booleans()):
            shares[i] = -lots.capacity * data.draw(st.floats(0.05, 1.0))
            lot_shares += lots.relieve(-shares[i], len(book.lots))
    buy = [i for i in range(n) if shares[i] == 0 and data.draw(st.booleans())]
    assume(buy)
    spend = (d["account"]["cash"] - (1 + kappa) * 0 + (1 - kappa) * float(-(shares * book.price).sum())
             + overshoot * book.invested) / (1 + kappa)
    weights = [data.draw(st.floats(0.1, 1.0)) for _ in buy]
    for i, w in zip(buy, weights):
        shares[i] = spend * w / sum(weights) / book.price[i]
    reference = terms_of(scorer, book, Trades(shares, lot_shares)).total
    trades = round_trades(book, shares, allowed, scorer)
    assert terms_of(scorer, book, trades).total <= reference + 1e-6


def test_a_fractional_plan_spreads_the_cash_a_sale_raised_to_min_trade_brings():
    # The continuous plan sells $617 of A (under min_trade, which the convex model does not know)
    # and all of C, and buys B with all of it. Rounded, A is best sold at min_trade ($1,000),
    # which brings $383 more: the polish, a millionth of a share a round, bought a thousandth of
    # a share with it and left $382 in cash. By hand: A's class is then s = $383 under its target
    # whatever else is done; the other deviations (B's class, C's, cash; C and cash can only stay
    # at or above theirs) sum to +s, so the least sum of squares splits s equally among the
    # three: tracking (s² + 3·(s/3)²) / U². Not selling A at all costs 2·(617.4)² / U², more.
    from rebalance_opt.book import Book
    from rebalance_opt.rounding import Scorer, Tracking, round_trades, terms_of
    lots = [{"id": "A1", "symbol": "A", "quantity": 20, "cost_basis": 68.6, "acquired": "2020-01-02"},
            {"id": "C1", "symbol": "C", "quantity": 100, "cost_basis": 200.0, "acquired": "2020-01-02"}]
    u = 20 * 68.6 + 100 * 200.0
    a_target = round(11 * 68.6 / u, 6)
    d = {"account": {"id": "m", "cash": 0.0, "as_of": AS_OF.isoformat()},
         "tax": {"short_term_rate": 0.37, "long_term_rate": 0.2},
         "targets": {"AC": a_target, "CC": 0.0, "BC": 1.0 - a_target}, "classes": {"A": "AC", "C": "CC", "B": "BC"},
         "prices": {"A": 68.6, "C": 200.0, "B": 640.47}, "lots": lots,
         "policy": {"band": 0.0, "fractional": True, "min_trade": 1_000.0}}
    book = Book(account_from_dict(d))
    assert list(book.symbols) == ["A", "C", "B"]
    continuous = np.array([-9.0, -100.0, (9 * 68.6 + 20_000.0) / 640.47])
    scorer = Scorer(book, Tracking())
    trades = round_trades(book, continuous, book.lot_sellable, scorer)
    a_sold = math.ceil(1_000.0 / 68.6 * 1e6) / 1e6  # min_trade in millionths of a share
    under = a_target - (20 - a_sold) * 68.6 / u
    best = under ** 2 + 3 * (under / 3) ** 2
    assert trades.shares[0] == -a_sold
    assert abs(terms_of(scorer, book, trades).tracking - best) < 1e-9


def test_a_fractional_backtest_account_invests_its_cash_where_the_solver_overshot_it_by_cents():
    # A harvesting backtest's account (1997-07-01): the continuous plan sells two funds and buys
    # bonds with all the cash, 3 cents more than there is; the plan bought 0.0067 of bonds instead,
    # and month after month the deposits piled up (the mean drift reached 7.8 points).
    import json
    from pathlib import Path
    d = json.loads((Path(__file__).parent / "data" / "fractional_buy_short_of_cash.json").read_text())
    plan = plan_rebalance(account_from_dict(d))  # raises if the independent check fails
    proceeds = sum(o.quantity * d["prices"][o.symbol] for o in plan.sells)
    bought = sum(o.quantity * d["prices"][o.symbol] for o in plan.buys)
    assert proceeds > 18_000  # the two sales the continuous plan makes
    assert d["account"]["cash"] + proceeds - bought < 1.0  # and every dollar of it in bonds
    assert plan.cash_after >= -5e-7


def _moves_of_a_household(specific: bool):
    """Candidates and their moves for a synthetic household's first 12 symbols, each with a
    made-up continuous trade of about 2% of the account (buys and sells alternating)."""
    from benchmarks.synth import household
    from rebalance_opt.book import Book
    from rebalance_opt.rounding import Scorer, Tracking, _Moves, _nearest, _Rounder, _with_zero

    book = Book(account_from_dict(household(3)))
    n_classes = len(book.classes)
    tracking = Tracking(specific=np.linspace(0.5, 1.5, n_classes + 1)) if specific else Tracking()
    scorer = Scorer(book, tracking)
    rounder = _Rounder(book, book.lot_sellable, 1.0)
    symbols = range(min(12, len(book.symbols)))
    shares = [(1 if i % 2 else -1) * 0.02 * book.value / book.price[i] for i in symbols]
    shares = [x if x > 0 else max(x, -0.9 * book.shares[i]) for i, x in zip(symbols, shares)]
    cands = [_with_zero(rounder.candidates(i, x)) for i, x in zip(symbols, shares)]
    return cands, scorer, _Moves(cands, scorer, n_classes), _nearest(cands), n_classes


@pytest.mark.parametrize("specific", [False, True])
def test_two_symbol_moves_are_scored_like_the_whole_plan(specific):
    cands, scorer, moves, current, n_classes = _moves_of_a_household(specific)
    objective, violation = moves.pairs(current)
    checked = 0
    for m1, m2 in itertools.combinations(range(len(moves.col)), 2):
        if moves.col[m1] == moves.col[m2]:
            assert objective[m1, m2] == math.inf
            continue
        choice = current.copy()
        choice[moves.col[m1]], choice[moves.col[m2]] = moves.alt[m1], moves.alt[m2]
        class_dv = np.zeros((1, n_classes))
        dv = notional = tax = 0.0
        for c, j in zip(cands, choice):  # the plan's totals, summed directly
            class_dv[0, c.klass] += c.value[j]
            dv, notional, tax = dv + c.value[j], notional + c.notional[j], tax + c.lot_tax[j]
        want_obj, want_vio = scorer.score(class_dv, np.array([dv]), np.array([notional]), np.array([tax]))
        assert objective[m1, m2] == pytest.approx(want_obj[0], rel=1e-9, abs=1e-15)
        assert violation[m1, m2] == pytest.approx(want_vio[0], abs=1e-15)
        checked += 1
    assert checked > 100


def test_two_symbol_moves_over_a_subset_are_those_of_the_whole():
    cands, scorer, moves, current, n_classes = _moves_of_a_household(True)
    among = np.arange(0, len(moves.col), 3)
    objective, violation = moves.pairs(current, among)
    all_objective, all_violation = moves.pairs(current)
    assert np.array_equal(objective, all_objective[np.ix_(among, among)])
    assert np.array_equal(violation, all_violation[np.ix_(among, among)])


def test_two_symbol_search_leaves_no_single_or_pair_move_that_improves(monkeypatch):
    from rebalance_opt import rounding
    monkeypatch.setattr(rounding, "PAIR_MOVES", 10_000)  # every pair, not the best-scoring moves'
    cands, scorer, moves, current, n_classes = _moves_of_a_household(False)
    result = np.array(rounding._coordinate_search(cands, scorer, n_classes, current, moves, pairs=True))
    objective, violation, (now_obj, now_vio) = moves.evaluate(result)
    assert now_vio == 0
    assert np.all((objective >= now_obj - 1e-15) | (violation > 0))
    pair_objective, pair_violation = moves.pairs(result)
    assert np.all((pair_objective >= now_obj - 1e-15) | (pair_violation > 0))


def test_a_repeated_evaluation_is_the_same_and_a_new_choice_is_evaluated_afresh():
    from rebalance_opt.rounding import _Moves
    cands, scorer, moves, current, n_classes = _moves_of_a_household(False)
    first = moves.evaluate(current)
    again = moves.evaluate(current.copy())  # the same choice: the kept result
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    other = current.copy()
    other[0] = (other[0] + 1) % len(cands[0].shares)
    fresh = _Moves(cands, scorer, n_classes).evaluate(other)
    assert all(np.array_equal(a, b) for a, b in zip(moves.evaluate(other), fresh))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 500), st.floats(0.0, 300.0), st.booleans()), min_size=1, max_size=90))
def test_a_symbols_lot_sums_are_the_same_in_python_and_numpy(rows):
    # SymbolLots builds a symbol's cumulative quantity and tax in plain Python up to FEW_LOTS lots
    # and with numpy above: both must give the very same floats (and so the same plans).
    from rebalance_opt import orders
    from rebalance_opt.book import Book
    lots = [{"id": f"L{j}", "symbol": "AAA", "quantity": q, "cost_basis": b, "acquired": "2024-01-02"}
            for j, (q, b, _) in enumerate(rows)]
    d = {"account": {"id": "s", "cash": 0.0, "as_of": "2026-11-24"},
         "tax": {"short_term_rate": 0.37, "long_term_rate": 0.20},
         "targets": {"EQ": 1.0}, "classes": {"AAA": "EQ"}, "prices": {"AAA": 100.0}, "lots": lots}
    book = Book(account_from_dict(d))
    allowed = np.array([rows[int(lot.id[1:])][2] for lot in book.lots])  # in the book's lot order
    python = orders.SymbolLots(book, 0, allowed)
    few = orders.FEW_LOTS
    try:
        orders.FEW_LOTS = -1
        numpy = orders.SymbolLots(book, 0, allowed)
    finally:
        orders.FEW_LOTS = few
    assert python.lots == numpy.lots
    assert python.cum_qty == numpy.cum_qty and python.cum_tax == numpy.cum_tax
    assert python.tax_per_share == numpy.tax_per_share and python.capacity == numpy.capacity


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.tuples(st.floats(-1e5, 1e5), st.floats(0, 1e3)), min_size=1, max_size=4),
                min_size=1, max_size=3),
       st.floats(0.0, 2.0), st.floats(-0.5, 0.5), st.booleans())
def test_a_class_combinations_are_the_same_floats_in_python_and_numpy(symbols, w, base, budget):
    from rebalance_opt import rounding
    from rebalance_opt.book import Book
    from rebalance_opt.rounding import Scorer, Tracking, _Candidates, _class_combinations
    from tests.conftest import base_dict, make
    scorer = Scorer(Book(make(base_dict(tax_weight=0.3, trade_cost_bps=5.0))), Tracking())
    group = [_Candidates(i, 0, 1.0, [v for v, _ in opts], [v for v, _ in opts], [abs(v) for v, _ in opts],
                         [t for _, t in opts])
             for i, opts in enumerate(symbols)]
    python = _class_combinations(group, w, base, scorer, budget)
    few = rounding.FEW_COMBINATIONS
    try:
        rounding.FEW_COMBINATIONS = 0
        numpy = _class_combinations(group, w, base, scorer, budget)
    finally:
        rounding.FEW_COMBINATIONS = few
    assert python.shape == numpy.shape == (2 + budget, math.prod(len(o) for o in symbols))
    assert np.array_equal(python, numpy)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.0, 1.0, 2.0, 0.5, math.inf]), st.sampled_from([0.0, -1.0, 1e-9, 3.0])),
                min_size=1, max_size=12))
def test_the_best_choice_is_the_first_feasible_one_of_least_objective(rows):
    from rebalance_opt.rounding import _best
    objective = np.array([o for o, _ in rows])
    violation = np.array([v for _, v in rows])
    feasible = [i for i, (_, v) in enumerate(rows) if v <= 0]
    expected = min(feasible, key=lambda i: (rows[i][0], i)) if feasible else None
    assert _best(objective, violation) == expected


def test_more_than_64_traded_symbols_round_by_exhaustive_search():
    # 64 unclassified holdings of one $10 share each, min_trade $100, no cash: the relaxation sells
    # them all to buy the bond fund, but no sale can meet min_trade, so each symbol's one option
    # is no trade, and 65 symbols fit the exhaustive search (numpy's unravel_index stops at 64
    # dimensions: this was a ValueError). By hand: nothing can be sold, nothing bought.
    d = {"account": {"id": "a", "cash": 0.0, "as_of": "2026-11-24"},
         "tax": {"short_term_rate": 0.37, "long_term_rate": 0.2}, "targets": {"BOND": 1.0},
         "classes": {"BND": "BOND"}, "prices": {"BND": 10.0, **{f"S{i}": 10.0 for i in range(64)}},
         "lots": [{"id": f"L{i}", "symbol": f"S{i}", "quantity": 1.0, "cost_basis": 10.0, "acquired": "2020-01-01"}
                  for i in range(64)],
         "policy": {"min_trade": 100.0}}
    plan = plan_rebalance(account_from_dict(d))
    assert plan.orders == () and plan.cash_after == 0.0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=30).flatmap(
    lambda sizes: st.tuples(st.just(sizes), st.integers(0, math.prod(sizes) - 1))))
def test_unravel_is_numpys_unravel_index_for_any_number_of_symbols(case):
    from rebalance_opt.rounding import _unravel
    sizes, flat = case
    assert _unravel(flat, sizes) == [int(i) for i in np.unravel_index(flat, sizes)]
    assert _unravel(flat, sizes + [1] * 70) == _unravel(flat, sizes) + [0] * 70


def _budget_account(max_tax: float, **policy) -> dict:
    """$2,000 cash, 550 VTI at $289.07 (basis $190, long-term), 100 BND at $34.70; VTI far
    overweight, its sale held back by ``max_tax``."""
    return {"account": {"id": "budget", "cash": 2000.0, "as_of": "2026-11-24"},
            "tax": {"short_term_rate": 0.37, "long_term_rate": 0.20},
            "targets": {"STK": 0.18, "BOND": 0.74}, "classes": {"VTI": "STK", "BND": "BOND"},
            "prices": {"VTI": 289.07, "BND": 34.70},
            "lots": [{"id": "V1", "symbol": "VTI", "quantity": 550, "cost_basis": 190.0, "acquired": "2022-10-16"},
                     {"id": "B1", "symbol": "BND", "quantity": 100, "cost_basis": 30.0, "acquired": "2022-10-16"}],
            "policy": {"tax_weight": 0.0, "max_tax": max_tax, **policy}}


def test_a_sale_the_tax_budget_rounds_down_still_pays_for_the_buys_it_can():
    # By hand: the budget of 6,000 at 20% of a 99.07 gain allows 302.8 shares, so 302 are sold
    # (lot tax 302 × 99.07 × 0.2 = 5,983.83); cash 2,000 + 302 × 289.07 = 89,299.14 buys
    # floor(89,299.14 / 34.70) = 2,573 BND, the bonds being 17 points under target even then.
    # Rounding the sale down left the continuous buy of 2,580.26 unpaid, the start dropped it and
    # the polish, a share a round, stopped at 1,000 shares with $54,599 idle.
    plan = plan_rebalance(account_from_dict(_budget_account(6000.0)))
    assert {o.symbol: (o.side, o.quantity) for o in plan.orders} == {"VTI": ("sell", 302.0), "BND": ("buy", 2573.0)}
    assert plan.lot_tax == pytest.approx(302 * (289.07 - 190.0) * 0.2, abs=1e-6)
    assert plan.cash_after == pytest.approx(2000.0 + 302 * 289.07 - 2573 * 34.70, abs=1e-6)
    exact = plan_rebalance(account_from_dict(_budget_account(6000.0, milp_rounding=True)))
    assert plan.objective.total == pytest.approx(exact.objective.total, abs=1e-12)


A23 = {  # a review's account: 4 funds in 3 classes, fractional, a 2 bp trading cost
    "account": {"id": "a23", "cash": 2180.92, "as_of": "2026-11-24"},
    "tax": {"short_term_rate": 0.37, "long_term_rate": 0.2},
    "classes": {"C0S0": "K0", "C1S0": "K1", "C1S1": "K1", "C2S0": "K2"},
    "targets": {"K0": 0.2936, "K1": 0.0155, "K2": 0.6811},
    "prices": {"C0S0": 14.95, "C1S0": 132.89, "C1S1": 163.73, "C2S0": 220.53},
    "lots": [{"id": i, "symbol": s, "quantity": q, "cost_basis": c, "acquired": a} for i, s, q, c, a in [
        ("C0S0-0", "C0S0", 260, 12.51, "2022-10-16"), ("C0S0-1", "C0S0", 188, 16.69, "2026-05-08"),
        ("C0S0-2", "C0S0", 23, 14.52, "2026-05-08"), ("C1S0-0", "C1S0", 190, 126.57, "2025-07-12"),
        ("C1S0-1", "C1S0", 297, 96.35, "2025-07-12"), ("C1S0-2", "C1S0", 298, 75.56, "2022-10-16"),
        ("C1S1-0", "C1S1", 234, 170.37, "2026-05-08"), ("C1S1-1", "C1S1", 98, 186.52, "2025-07-12"),
        ("C2S0-0", "C2S0", 105, 213.0, "2026-10-10"), ("C2S0-1", "C2S0", 55, 185.45, "2025-07-12"),
        ("C2S0-2", "C2S0", 298, 159.77, "2025-07-12")]],
    "policy": {"fractional": True, "trade_cost_bps": 2.0, "band": 0.02, "tax_weight": 0.0},
}


@pytest.mark.parametrize("fractional", [True, False])
def test_a_looser_tax_budget_never_gives_a_worse_plan_here(fractional):
    # At max_tax 500 a sale rounded down by 8e-7 of a share left the buys $0.0002 short: the
    # start dropped a $47,000 buy and the plan (0.0667) was worse than the one at 200 (0.0658),
    # which 500 also allows; the exact search's plan scores 0.0537.
    def plan(max_tax, **more):
        return plan_rebalance(account_from_dict({**A23, "policy": {**A23["policy"], "fractional": fractional,
                                                                   "max_tax": max_tax, **more}}))
    objectives = [plan(t).objective.total for t in (200.0, 500.0, 1000.0)]
    assert objectives == sorted(objectives, reverse=True)
    # within a share's worth of the exact search's plan (a share of a $221 fund moves a weight
    # 0.1 point here, about 1e-6 of the objective)
    assert objectives[1] <= plan(500.0, milp_rounding=True).objective.total + (1e-7 if fractional else 1e-5)


THREE_FUNDS = {  # fractional, a tax budget at half the unbudgeted plan's lot tax (6,784.72)
    "account": {"id": "three", "cash": 9685.05, "as_of": "2026-11-24"},
    "tax": {"short_term_rate": 0.37, "long_term_rate": 0.2},
    "targets": {"K0": 0.14797709653079566, "K1": 0.6618162607523423, "K2": 0.14020664271686184},
    "classes": {"S0": "K0", "S1": "K1", "S2": "K2"},
    "prices": {"S0": 274.79, "S1": 206.88, "S2": 216.49},
    "lots": [{"id": i, "symbol": s, "quantity": q, "cost_basis": c, "acquired": a} for i, s, q, c, a in [
        ("S0-0", "S0", 363, 205.01, "2020-01-01"), ("S1-0", "S1", 63, 171.43, "2020-01-01"),
        ("S1-1", "S1", 118, 187.95, "2026-05-08"), ("S1-2", "S1", 7, 296.75, "2023-03-03"),
        ("S2-0", "S2", 398, 168.79, "2020-01-01"), ("S2-1", "S2", 177, 151.18, "2026-05-08")]],
    "policy": {"tax_weight": 0.1, "fractional": True, "max_tax": 3392.36},
}


def _searches(monkeypatch, raw: dict, limit: int | None = None) -> tuple[list[int], object]:
    """The plan of ``raw`` and how many starts each of its roundings searched (``_start`` calls)."""
    import rebalance_opt.rounding as rounding
    counts: list[int] = []
    start, round_ = rounding._start, rounding._round

    def counted_round(*a):
        counts.append(0)
        return round_(*a)

    def counted_start(*a):
        counts[-1] += 1
        return start(*a)

    monkeypatch.setattr(rounding, "_round", counted_round)
    monkeypatch.setattr(rounding, "_start", counted_start)
    if limit is not None:
        monkeypatch.setattr(rounding, "BOTH_STARTS_LIMIT", limit)
    return counts, plan_rebalance(account_from_dict(raw), planner=Planner(cache=ModelCache()))


def test_a_small_plan_whose_sales_round_down_is_searched_from_both_starts(monkeypatch):
    # The sales rounded down leave the buys unpaid, though the first plan spends its cash: with
    # three funds trading, the fitted start is searched too (on another run of this account, one
    # whose solver returned a slightly different optimum, it found a sale mix 7.7% lower).
    counts, both = _searches(monkeypatch, THREE_FUNDS)
    assert 2 in counts
    # Counted as large (a limit of 0 traded symbols), only the first start is searched, and the
    # plan is no better for it.
    monkeypatch.undo()
    counts, one = _searches(monkeypatch, THREE_FUNDS, limit=0)
    assert max(counts) == 1 and both.objective.total <= one.objective.total + 1e-12


def test_a_large_plan_that_leaves_cash_idle_is_still_searched_from_the_fitted_start(monkeypatch):
    # The first plan of the budget account leaves $54,599 idle, so even counted as large the
    # fitted start is searched and the plan buys the 2,573 BND worked out above.
    counts, plan = _searches(monkeypatch, _budget_account(6000.0), limit=0)
    assert 2 in counts
    assert {o.symbol: (o.side, o.quantity) for o in plan.orders} == {"VTI": ("sell", 302.0), "BND": ("buy", 2573.0)}
