"""A stage is infeasible in whole shares only when no whole-share plan exists at all.

The rounding searches a few share counts per symbol near the continuous plan; where none of
those meets the hard constraints it falls back to an exact search (``exact_round``, a MILP). The
accounts below are the smallest found where the search alone came up empty although a plan
existed (random small accounts with a withdrawal, min_trade and a tax budget); the property test
holds the planner against an independent MILP oracle (``tests/milp_oracle.py``, no engine code).
"""
from __future__ import annotations

import copy
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rebalance_opt import Infeasible, account_from_dict, plan_rebalance
from tests import milp_oracle

AS_OF = date(2026, 11, 24)
TAX = {"short_term_rate": 0.37, "long_term_rate": 0.2}


def account(cash, targets, classes, prices, lots, **policy) -> dict:
    return {"account": {"id": "r", "cash": cash, "as_of": AS_OF.isoformat()}, "tax": dict(TAX),
            "targets": targets, "classes": classes, "prices": prices,
            "lots": [{"id": i, "symbol": s, "quantity": q, "cost_basis": b, "acquired": d} for i, s, q, b, d in lots],
            "policy": policy}


# S0 is 83% of what stays invested (target 44%) with a long-term gain; S1 holds a short-term loss.
# The continuous plan sells 1.5 S0 (all the 6.96 budget allows) and 38.4 S1: around it, S0 is 0
# (one or two shares are below min_trade, seven exceed the budget) and 38 or 39 S1 are short of
# the 1,493.24 the withdrawal needs. Exit 3, "no feasible plan", before the exact search.
ONE_LOSS_LOT_PAYS = account(
    300.0, {"C0": 0.4384, "C1": 0.5316}, {"S0": "C0", "S1": "C1"}, {"S0": 78.07, "S1": 35.86},
    [("S0-0", "S0", 55, 55.23, "2021-06-03"), ("S1-0", "S1", 66, 37.8, "2026-08-16")],
    tax_weight=0.0, band=0.0, withdrawal=1793.24, min_trade=500.0, max_tax=6.96, allow_sells=False)

# min_trade 5,000 on a 10,500 account: S0's 44 shares (all of it, 5,063) have 313 of tax, over the
# 105 budget; S1's loss lot, all 33 shares (5,140), is the only order that can pay the 138.13 the
# withdrawal is short. The continuous plans never sold all of S1 (the relaxation buys it: C1 is
# under target): exit 3 from both stages, though selling freely was allowed.
WHOLE_HOLDING_AT_MIN_TRADE = account(
    300.0, {"C0": 0.3246, "C1": 0.6454}, {"S0": "C0", "S1": "C1"}, {"S0": 115.07, "S1": 155.76},
    [("S0-0", "S0", 44, 79.45, "2025-10-20"), ("S1-0", "S1", 33, 181.18, "2026-08-16")],
    tax_weight=0.0, band=0.0, withdrawal=438.13, min_trade=5000.0, max_tax=105.03, allow_sells=True)

# max_tax 0 and no cash: the 4,049.79 must come from S1's long-term gain (32.77 of tax a share)
# paid for by S0's losses (its short-term lot loses 20.64 a share). Exit 3 before.
HARVEST_PAYS_THE_GAIN = account(
    0.0, {"C0": 0.5456, "C1": 0.4244}, {"S0": "C0", "S1": "C1"}, {"S0": 157.97, "S1": 346.28},
    [("S0-0", "S0", 10, 159.31, "2025-10-20"), ("S0-1", "S0", 9, 213.75, "2026-08-16"),
     ("S1-0", "S1", 75, 182.41, "2025-10-20")],
    tax_weight=2.0, band=0.0, withdrawal=4049.79, min_trade=500.0, max_tax=0.0, allow_sells=False)

# A withdrawal of 9,712.50 from no cash, min_trade 5,000, max_tax 0: the cash-first rounding found
# nothing, so the plan sold freely (42 S0 and 21 S2, objective 0.012389, 13,126.26 raised). A
# cash-first plan exists and is better: about 40 S0 and 20 S2 (0.01218), less sold.
CASH_FIRST_WAS_SKIPPED = account(
    0.0, {"C0": 0.1417, "C1": 0.5744, "C2": 0.2538}, {"S0": "C0", "S1": "C1", "S2": "C2"},
    {"S0": 177.17, "S1": 383.13, "S2": 270.72},
    [("S0-0", "S0", 45, 196.44, "2021-06-03"), ("S0-1", "S0", 28, 169.1, "2026-08-16"),
     ("S1-0", "S1", 53, 349.89, "2026-08-16"), ("S1-1", "S1", 54, 331.9, "2026-08-16"),
     ("S2-0", "S2", 69, 232.88, "2021-06-03"), ("S2-1", "S2", 45, 144.25, "2021-06-03")],
    tax_weight=0.0, band=0.05, withdrawal=9712.5, min_trade=5000.0, max_tax=0.0, allow_sells=True)


def orders(plan) -> list[tuple[str, str, float]]:
    return [(o.symbol, o.side, o.quantity) for o in plan.orders]


def test_a_withdrawal_only_a_loss_lot_can_pay_within_the_tax_budget_gets_a_cash_first_plan_not_exit_3():
    plan = plan_rebalance(account_from_dict(ONE_LOSS_LOT_PAYS))
    assert plan.stage == "cash_first"
    assert orders(plan) == [("S0", "sell", 7.0), ("S1", "sell", 35.0)]  # S0 at min_trade, the rest S1
    assert plan.lot_tax <= 6.96 and plan.cash_after >= 1793.24


def test_a_withdrawal_that_needs_a_whole_holding_sold_at_min_trade_gets_a_plan_not_exit_3():
    plan = plan_rebalance(account_from_dict(WHOLE_HOLDING_AT_MIN_TRADE))
    assert plan.stage == "cash_first"
    assert orders(plan) == [("S1", "sell", 33.0)]
    assert plan.cash_after >= 438.13


def test_a_zero_tax_budget_is_met_by_harvesting_losses_beside_the_gain_the_withdrawal_needs():
    plan = plan_rebalance(account_from_dict(HARVEST_PAYS_THE_GAIN))
    assert plan.stage == "cash_first"
    assert {o.symbol for o in plan.sells} == {"S0", "S1"}
    assert plan.lot_tax <= 0.0 and plan.cash_after >= 4049.79


def test_a_withdrawal_plan_raised_cash_first_where_rounding_had_fallen_through_to_selling_freely():
    plan = plan_rebalance(account_from_dict(CASH_FIRST_WAS_SKIPPED))
    assert plan.stage == "cash_first"
    assert [(o.symbol, o.side) for o in plan.orders] == [("S0", "sell"), ("S2", "sell")]
    assert plan.objective.total < 0.012389  # the sell-freely plan it used to be
    assert 9712.5 <= plan.cash_after < 13126.26


def test_a_stage_with_no_whole_share_plan_at_all_is_still_infeasible():
    # 50 to raise from one fund at 100 a share with 10 of tax a share, within a budget of 5: half
    # a share would do (the continuous plan), a whole one breaks the budget. No plan (exit 3).
    d = account(0.0, {"A": 0.9}, {}, {"A": 100.0}, [("A1", "A", 10, 50.0, "2020-01-02")],
                withdrawal=50.0, max_tax=5.0)
    assert milp_oracle.feasible_point(account_from_dict(d), "any", allow_buys=False).status == "infeasible"
    with pytest.raises(Infeasible, match="whole shares|no feasible plan") as info:
        plan_rebalance(account_from_dict(d))
    # the withdrawal, the budget and whole shares together; no min_cash or min_trade is set
    assert info.value.constraints == ("policy.withdrawal", "policy.max_tax", "policy.fractional")


def forced_fallback(monkeypatch):
    """Every rounding goes straight to the exact search, as if its own search found nothing."""
    from rebalance_opt import rounding

    def nothing(*args, **kwargs):
        raise Infeasible("forced")
    monkeypatch.setattr(rounding, "_round", nothing)


def harvest_needed() -> dict:
    """100 to raise, max_tax 0: one A (100, 10 of tax) needs ten B (1 each, −1 of tax each)."""
    return account(0.0, {"A": 0.5, "B": 0.5}, {}, {"A": 100.0, "B": 1.0},
                   [("A1", "A", 10, 50.0, "2020-01-02"), ("B1", "B", 20, 6.0, "2020-01-02")],
                   withdrawal=100.0, max_tax=0.0, allow_sells=False)


def test_the_exact_search_sells_beyond_the_withdrawal_when_the_tax_budget_needs_a_harvest(monkeypatch):
    # Net proceeds of 110 are more than "the need plus one share of B": the least any plan needs
    # (110) takes the need's place, and the stage has its plan.
    d = harvest_needed()
    forced_fallback(monkeypatch)
    plan = plan_rebalance(account_from_dict(d))
    assert plan.stage == "cash_first"
    assert orders(plan) == [("A", "sell", 1.0), ("B", "sell", 10.0)]


def test_the_exact_search_stops_at_a_node_count_not_a_time_so_plans_do_not_depend_on_the_machine(monkeypatch):
    import scipy.optimize

    from rebalance_opt import exact_round
    seen, milp = [], scipy.optimize.milp

    def recording(*args, options=None, **kwargs):
        seen.append(dict(options))
        return milp(*args, options=options, **kwargs)
    monkeypatch.setattr(scipy.optimize, "milp", recording)
    d = harvest_needed()
    forced_fallback(monkeypatch)
    plan_rebalance(account_from_dict(d))
    assert seen and all(o["node_limit"] == exact_round.NODE_LIMIT for o in seen)
    # a time limit stays only as a guard far beyond any search seen (0.9 s at most)
    assert all(o["time_limit"] >= 60 for o in seen)


def test_the_exact_search_never_sells_in_the_cash_first_stage_when_cash_covers_the_withdrawal(monkeypatch):
    d = account(5000.0, {"A": 0.5, "B": 0.45}, {}, {"A": 100.0, "B": 50.0},
                [("A1", "A", 60, 50.0, "2020-01-02"), ("B1", "B", 50, 60.0, "2020-01-02")],
                withdrawal=1000.0, min_trade=500.0, allow_sells=False)
    forced_fallback(monkeypatch)
    plan = plan_rebalance(account_from_dict(d))
    assert plan.stage == "cash_first" and not plan.sells and plan.buys


@pytest.mark.parametrize("d", [ONE_LOSS_LOT_PAYS, WHOLE_HOLDING_AT_MIN_TRADE, HARVEST_PAYS_THE_GAIN,
                               CASH_FIRST_WAS_SKIPPED, {**CASH_FIRST_WAS_SKIPPED, "policy": {
                                   **CASH_FIRST_WAS_SKIPPED["policy"], "fractional": True, "trade_cost_bps": 5.0}}],
                         ids=["loss-lot", "whole-holding", "harvest", "cash-first", "fractional"])
def test_every_plan_of_the_exact_search_passes_the_independent_check(monkeypatch, d):
    # Forced on every rounding, not only the chosen plan: each point the search returns, as
    # orders, meets every hard constraint by rebalance_opt/verify.py (which shares no code).
    import types

    from rebalance_opt import orders, rounding
    from rebalance_opt import verify
    from rebalance_opt.solve import _cash_after

    real = rounding._exact_fallback
    checked = []

    def checking(book, *args):
        trades = real(book, *args)
        plan = types.SimpleNamespace(orders=orders.to_orders(book, trades),
                                     cash_after=_cash_after(book, trades, book.account.policy.trade_cost_bps * 1e-4))
        assert verify.violations(book.account, plan) == []
        checked.append(plan)
        return trades
    monkeypatch.setattr(rounding, "_exact_fallback", checking)
    forced_fallback(monkeypatch)
    plan_rebalance(account_from_dict(d))
    assert checked


def test_plans_that_round_fine_never_reach_the_exact_search(monkeypatch):
    from rebalance_opt import exact_round
    from tests.conftest import base_dict

    def unexpected(*args, **kwargs):
        raise AssertionError("the exact search ran for a plan the rounding's own search could round")
    monkeypatch.setattr(exact_round, "nearest_feasible", unexpected)
    for policy in ({}, {"withdrawal": 3000.0}, {"min_trade": 500.0, "max_tax": 500.0}, {"fractional": True}):
        d = base_dict(**policy)
        plan_rebalance(account_from_dict(d))


def test_highs_prints_nothing_on_stdout_or_stderr(capfd):
    # HiGHS 1.12 prints a debug line straight to stdout when it repairs a presolved solution;
    # the exact search points stdout at the null device while it solves (``generate --json``'s
    # stdout is JSON only, and the line means nothing to a user). A print from C during the solve
    # lands nowhere, and stdout works again after it.
    import ctypes

    from rebalance_opt.exact_round import _stdout_discarded
    with _stdout_discarded():
        ctypes.CDLL(None).printf(b"from C\n")
    print("after")
    out, err = capfd.readouterr()
    assert out == "after\n" and "from C" not in err


def test_generate_json_prints_the_exact_search_plan_and_nothing_else_on_stdout(tmp_path):
    # A separate process, as a user runs it: stdout must parse as one JSON object (a stray HiGHS
    # line there would break it).
    import json

    from tests.conftest import run_cli
    account = tmp_path / "acct.json"
    account.write_text(json.dumps(ONE_LOSS_LOT_PAYS))
    done = run_cli("rebalance", "generate", str(account), "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert [(o["symbol"], o["side"], o["quantity"]) for o in plan["orders"]] == [("S0", "sell", 7.0), ("S1", "sell", 35.0)]


# --- against the oracle ------------------------------------------------------------------------
@st.composite
def withdrawal_accounts(draw):
    """2-4 funds in up to 3 classes, up to 2 lots each, a withdrawal that may need sales, min_trade
    in {0, 500, 5000}, a finite tax budget, whole shares."""
    n = draw(st.integers(2, 4))
    prices, classes, lots = {}, {}, []
    for i in range(n):
        sym = f"S{i}"
        prices[sym] = round(draw(st.floats(5.0, 400.0)), 2)
        classes[sym] = f"C{i % 3}"
        for j in range(draw(st.integers(0, 2))):
            lots.append((f"{sym}-{j}", sym, draw(st.integers(1, 80)),
                         round(prices[sym] * draw(st.floats(0.5, 1.5)), 2),
                         (AS_OF - timedelta(days=draw(st.sampled_from([100, 400, 2000])))).isoformat()))
    n_classes = len(set(classes.values()))
    raw = [draw(st.floats(0.05, 1.0)) for _ in range(n_classes)]
    targets = {f"C{k}": round(w / sum(raw) * 0.97, 4) for k, w in enumerate(raw)}
    cash = draw(st.sampled_from([0.0, 300.0, 3000.0]))
    value = cash + sum(prices[s] * q for _, s, q, _, _ in lots)
    policy = {"tax_weight": draw(st.sampled_from([0.0, 0.2, 2.0])), "band": draw(st.sampled_from([0.0, 0.05])),
              "withdrawal": round(draw(st.floats(0.01, 0.3)) * value, 2),
              "min_cash": draw(st.sampled_from([0.0, 200.0])),
              "min_trade": draw(st.sampled_from([0.0, 500.0, 5000.0])),
              "max_tax": round(draw(st.sampled_from([0.0, 0.001, 0.01])) * value, 2)}
    return account(cash, targets, classes, prices, lots, **policy)


def plan_or_none(d):
    try:
        return plan_rebalance(account_from_dict(d))
    except Infeasible:
        return None


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(withdrawal_accounts())
def test_the_cash_first_stage_has_a_plan_exactly_when_the_oracle_finds_a_whole_share_one(d):
    a = account_from_dict(d)
    if a.value <= a.policy.withdrawal:
        return
    oracle = milp_oracle.feasible_point(a, "cash_first")
    assert oracle.status != "unsure"
    buy_only = plan_or_none({**d, "policy": {**d["policy"], "allow_sells": False}})
    if a.cash < a.policy.min_cash:  # allow_sells = false: only the withdrawal sells, min_cash is not raised
        assert buy_only is None
        return
    assert (buy_only is not None) == oracle.feasible, (oracle.shares, buy_only and orders(buy_only))
    if buy_only is None:
        return
    assert buy_only.stage == "cash_first"
    if a.cash >= a.policy.withdrawal + a.policy.min_cash:  # nothing to raise: the stage sells nothing
        assert not buy_only.sells
    free = plan_rebalance(account_from_dict(copy.deepcopy(d)))  # a plan exists, so selling freely has one
    if free.stage == "full":  # only because the cash-first plan was out of band (and, if it was
        assert not buy_only.drift_after.in_band  # a candidate at all, worse)
        skipped = a.cash >= a.policy.withdrawal + a.policy.min_cash and any(
            r.status == "overweight" for r in free.drift_before.rows if r.name != "CASH")
        if not skipped:  # with a class over its band and no cash to raise, buying cannot end in band
            assert free.objective.total < buy_only.objective.total
