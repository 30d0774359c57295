"""The library as a notebook or another tool embeds it (README "The library"): the README's own
example, accounts and plans sent to other processes, and inputs of Python's, numpy's and pandas'
types through the public functions."""
from __future__ import annotations

import copy
import dataclasses
import json
import pickle
import re
from concurrent.futures import ProcessPoolExecutor
from datetime import date, datetime
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

import rebalance_opt.impact
import rebalance_opt.solve
from rebalance_opt import (Book, InputError, Planner, Trade, account_to_dict, load_account,
                           plan_rebalance)

from .conftest import ROOT


def _comparable(plan) -> dict:
    """A plan's JSON object without its timings (which differ between any two runs)."""
    d = plan.to_dict()
    d["solver"] = {k: v for k, v in d["solver"].items() if "seconds" not in k}
    return d


def test_the_readmes_library_example_runs_as_written(monkeypatch, capsys):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## The library\n", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(ROOT)  # its paths are relative to the repository
    exec(compile(code, "README.md (The library)", "exec"), {})
    out = capsys.readouterr().out
    assert "household-1" in out and "sell" in out


def test_the_readmes_batch_and_backtest_example_runs_as_written(monkeypatch, capsys, tmp_path):
    pytest.importorskip("skfolio", reason="the bundled prices ship in skfolio (the backtest extra)")
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## The library\n", 1)[1].split("\n## ", 1)[0]
    code = re.findall(r"```python\n(.*?)```", section, re.S)[1].replace("/tmp/", f"{tmp_path}/")
    monkeypatch.chdir(ROOT)
    exec(compile(code, "README.md (The library: batches and backtests)", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "4 []" and lines[1].isdigit() and "quarterly-fifo" in lines[2]
    assert (tmp_path / "basket.csv").exists() and (tmp_path / "report" / "summary.md").exists()


def _plan_in_worker(account):
    return _comparable(plan_rebalance(account, planner=Planner()))


def test_an_account_pickles_and_deep_copies_equal():
    """Its maps are read-only views (MappingProxyType), which pickle and deepcopy refused: a
    process pool or Dask could not take an account."""
    account = load_account(ROOT / "examples" / "household.toml")
    account.symbols, account.invested_value  # cached views are not sent along, but rebuilt
    for other in (pickle.loads(pickle.dumps(account)), copy.deepcopy(account)):
        assert other == account and account_to_dict(other) == account_to_dict(account)
        assert other.source == account.source and other.symbols == account.symbols
        with pytest.raises(TypeError):
            other.prices["VTI"] = 1.0  # still read-only
    assert pickle.loads(pickle.dumps(Book(account))).account == account


def test_equal_accounts_hash_equal_and_key_a_dict():
    """``hash(account)`` was "TypeError: unhashable type: 'mappingproxy'" (a frozen dataclass's
    hash over its read-only maps)."""
    account = load_account(ROOT / "examples" / "household.toml")
    same = [load_account(ROOT / "examples" / "household.toml"), pickle.loads(pickle.dumps(account)),
            copy.deepcopy(account), dataclasses.replace(account, source="elsewhere.toml"),  # source is not compared
            account.replace(prices=dict(reversed(list(account.prices.items()))))]        # nor the maps' order
    for other in same:
        assert other == account and hash(other) == hash(account)
    assert len({account, *same}) == 1
    repriced = account.replace(prices={**account.prices, "VTI": account.prices["VTI"] + 1})
    plans = {account: "first", repriced: "second"}
    assert repriced != account and len(plans) == 2 and plans[same[0]] == "first"


def test_accounts_whose_classes_list_funds_in_another_order_differ():
    # the order of [classes] is each class's buy order: cash_flow.toml buys BND, with AGG listed
    # first it buys AGG; the two compared (and hashed) equal, so one could key the other's plan
    account = load_account(ROOT / "examples" / "cash_flow.toml")
    swapped = account.replace(classes=dict(reversed(list(account.classes.items()))))
    bought = [{o.symbol for o in plan_rebalance(a).orders if o.side == "buy"} for a in (account, swapped)]
    assert bought[0] != bought[1]
    assert swapped != account and len({account, swapped}) == 2
    assert swapped.replace(classes=dict(account.classes)) == account


def test_accounts_planned_in_a_process_pool_plan_as_in_this_process():
    accounts = [load_account(ROOT / "examples" / f"{name}.toml") for name in ("household", "wash_sale")]
    expected = [_comparable(Planner().plan(a)) for a in accounts]
    with ProcessPoolExecutor(2) as pool:
        assert list(pool.map(_plan_in_worker, accounts)) == expected


@pytest.mark.parametrize("not_an_account", [None, {"account": {"id": "a"}}, "examples/household.toml"])
def test_plan_rebalance_of_anything_but_an_account_is_a_type_error_naming_account(not_an_account):
    for plan in (plan_rebalance, rebalance_opt.solve.plan_rebalance, Planner().plan):
        with pytest.raises(TypeError, match=r"expects an Account .* got (NoneType|dict|str)$"):
            plan(not_an_account)  # None was an AttributeError: 'NoneType' object has no attribute 'policy'


@pytest.mark.parametrize("call", [
    lambda a: rebalance_opt.drift_report(a),
    lambda a: rebalance_opt.impact.frontier(a, [0.1]),
    lambda a: rebalance_opt.impact.tax_impact(a),
    lambda a: rebalance_opt.impact.what_if_sell(a, "VTI"),
])
def test_the_library_entry_points_name_what_they_expect_when_given_no_account(call):
    with pytest.raises(TypeError, match=r"expects an Account .* got NoneType$"):
        call(None)  # each was an AttributeError from deep inside


def test_frontier_given_one_number_asks_for_a_list():
    account = load_account(ROOT / "examples" / "household.toml")
    with pytest.raises(TypeError, match=r"a list of numbers \(\[0.1\], not 0.1\)"):
        rebalance_opt.impact.frontier(account, 0.1)  # was "'float' object is not iterable"


def test_account_replace_takes_as_of_as_yyyy_mm_dd_text_as_files_and_frames_do():
    account = load_account(ROOT / "examples" / "household.toml")
    assert account.replace(as_of="2026-12-01").as_of == date(2026, 12, 1)


def test_two_plans_of_one_account_are_equal_whatever_their_solve_times():
    account = load_account(ROOT / "examples" / "household.toml")
    planner = Planner()
    first, second = planner.plan(account), planner.plan(account)
    assert first == second  # the solver's timings differed, and made them unequal


# --- Account.replace and with_policy: values of other types ----------------------------------
def _lot0(account, **changes):
    return account.replace(lots=[dataclasses.replace(account.lots[0], **changes), *account.lots[1:]])


@pytest.mark.parametrize("change, path", [
    (lambda a: a.replace(as_of="2026-02-30"), "account.as_of"),                   # no such day
    (lambda a: a.replace(as_of="12/01/2026"), "account.as_of"),                   # not YYYY-MM-DD
    (lambda a: a.replace(as_of=datetime(2026, 12, 1)), "account.as_of"),          # was TypeError
    (lambda a: a.replace(as_of=pd.Timestamp("2026-12-01")), "account.as_of"),     # was TypeError
    (lambda a: a.replace(as_of=date(1, 1, 2), lots=(), trades=()), "account.as_of"),  # OverflowError planning
    (lambda a: a.replace(id=5), "account.id"),                                    # was AttributeError
    (lambda a: a.replace(currency=None), "account.currency"),                     # was taken, null in the plan
    (lambda a: a.replace(cash="100"), "account.cash"),
    (lambda a: a.replace(prices=[1.0]), "prices"),                                # was TypeError
    (lambda a: a.replace(prices={**a.prices, 5: 1.0}), "prices"),
    (lambda a: a.replace(lots=None), "lots"),                                     # was TypeError
    (lambda a: a.replace(lots=[{"id": "x", "symbol": "VTI", "quantity": 1.0, "cost_basis": 1.0,
                                "acquired": date(2020, 1, 2)}]), "lots[0]"),      # was AttributeError
    (lambda a: _lot0(a, acquired="2020-01-02"), "lots[0].acquired"),              # was TypeError
    (lambda a: _lot0(a, id=5), "lots[0].id"),                                     # was taken
    (lambda a: a.replace(trades=[{"symbol": "VTI"}]), "trades[0]"),               # was AttributeError
    (lambda a: a.replace(trades=[Trade("VTI", "buy", 1.0, 1.0, "2026-01-02")]), "trades[0].date"),
    (lambda a: a.replace(tax={"short_term_rate": 0.3, "long_term_rate": 0.2}), "tax"),  # AttributeError
    (lambda a: a.replace(tax=dataclasses.replace(a.tax, short_term_rate="0.3")), "tax.short_term_rate"),
    (lambda a: a.replace(policy={"band": 0.1}), "policy"),                        # was AttributeError
    (lambda a: a.replace(foo=1), "foo"),                                          # was TypeError
    (lambda a: a.with_policy(band="0.1"), "policy.band"),                         # was TypeError
    (lambda a: a.with_policy(max_tax=None), "policy.max_tax"),                    # was TypeError
    (lambda a: a.with_policy(no_buy=None), "policy.no_buy"),                      # was TypeError
    (lambda a: a.with_policy(no_buy="VTI"), "policy.no_buy"),                     # was read as V, T, I
    (lambda a: a.with_policy(allow_sells="no"), "policy.allow_sells"),            # was taken: sells allowed
    (lambda a: a.with_policy(fractional=1), "policy.fractional"),
    (lambda a: a.with_policy(milp_rounding="yes"), "policy.milp_rounding"),
    (lambda a: a.with_policy(wash_sale_days=True), "policy.wash_sale_days"),
    (lambda a: a.with_policy(wash_sale_days=10**9), "policy.wash_sale_days"),     # OverflowError planning
    (lambda a: a.with_policy(tax_weigth=1.0), "policy.tax_weigth"),               # was TypeError
])
def test_an_account_changed_with_a_value_of_another_type_is_an_input_error_naming_it(change, path):
    account = load_account(ROOT / "examples" / "household.toml")
    with pytest.raises(InputError) as err:
        plan_rebalance(change(account))
    assert err.value.path == path


def test_an_error_in_a_change_made_in_python_names_no_file_but_says_where_the_account_came_from():
    # "examples/household.toml, policy.band: must be between 0 and 1" sent people to a valid file
    account = load_account(ROOT / "examples" / "household.toml")
    with pytest.raises(InputError) as err:
        account.with_policy(band=2)
    assert err.value.file is None and err.value.path == "policy.band" and err.value.value == 2
    assert str(err.value).startswith("policy.band: must be between 0 and 1 (in a change made in Python")
    assert account.source in str(err.value)
    with pytest.raises(InputError) as err:  # an account of no file: the error as validate raises it
        account.replace(source=None).replace(cash=-1.0)
    assert str(err.value) == "account.cash: must be a finite number >= 0 (got -1.0)"


def test_numpy_scalars_decimals_and_series_given_to_replace_are_taken_as_python_numbers():
    """As ``account_from_dict`` takes them: an ``np.int64`` price or cash was refused ("must be a
    finite price > 0 (got np.int64(300))"), a Series of prices was a ValueError, and an
    ``np.int64`` band was taken as it was, failing JSON (the audit log's inputs) afterwards."""
    account = load_account(ROOT / "examples" / "household.toml")
    prices = {**account.prices, "VTI": 300}
    plain = account.replace(cash=20_000, prices=prices).with_policy(band=0, wash_sale_days=31, allow_sells=True)
    series = pd.Series(prices, dtype=object)
    series["VTI"] = np.int64(300)
    given = account.replace(cash=np.int64(20_000), prices=series).with_policy(
        band=np.int64(0), wash_sale_days=np.int64(31), allow_sells=np.bool_(True))
    assert given == plain and account.replace(cash=Decimal("20000")).cash == 20_000.0
    assert json.dumps(account_to_dict(given)) == json.dumps(account_to_dict(plain))
    assert _comparable(plan_rebalance(given)) == _comparable(plan_rebalance(plain))
    assert account.with_policy(no_buy=["VTI"]).policy.no_buy == frozenset({"VTI"})


def test_what_if_and_frontier_take_numpy_numbers_and_name_anything_else():
    # what_if_sell(..., "10") was a TypeError, True one share, np.int64(10) a result JSON refused;
    # frontier(account, ["x"]) a ValueError
    from rebalance_opt.impact import frontier, what_if_sell
    account = load_account(ROOT / "examples" / "household.toml")
    symbol = account.lots[0].symbol
    assert what_if_sell(account, symbol, np.int64(1)) == what_if_sell(account, symbol, 1.0)
    json.dumps(what_if_sell(account, symbol, np.int64(1)).to_dict())
    for bad in ("10", True, float("nan"), [1]):
        with pytest.raises(InputError) as e:
            what_if_sell(account, symbol, bad)
        assert e.value.path == "quantity"
    with pytest.raises(InputError) as e:
        frontier(account, [0.1, "x"])
    assert e.value.path == "tax_weights"
    assert [p.tax_weight for p in frontier(account, [np.float64(0.3), np.int64(1)])] == [0.3, 1.0]


@pytest.mark.parametrize("reason, message", [("", "must not be empty"), ("   ", "must not be empty"),
                                             (5, "must be text"), ("x" * 501, "at most 500 characters")])
def test_the_library_checks_a_reason_as_the_command_line_does(reason, message):
    # plan_rebalance(account, reason="") silently used the inferred reason; reason=5 was stored as 5
    account = load_account(ROOT / "examples" / "household.toml")
    with pytest.raises(InputError, match=message) as e:
        plan_rebalance(account, reason=reason)
    assert e.value.path == "reason"
    assert plan_rebalance(account, reason="  Quarterly Reset ").reason == "Quarterly Reset"


def test_a_plans_orders_and_lot_sales_come_as_frames():
    plan = plan_rebalance(load_account(ROOT / "examples" / "household.toml"))
    orders, lots = plan.orders_frame(), plan.lot_sales_frame()
    assert list(orders.symbol) == [o.symbol for o in plan.orders] and list(orders.side[:len(plan.sells)]) == ["sell"] * len(plan.sells)
    assert list(orders.quantity) == [o.quantity for o in plan.orders]
    assert orders.notional.sum() == pytest.approx(plan.turnover)
    assert len(lots) == sum(len(o.lots) for o in plan.sells) and set(lots.term) <= {"short", "long"}
    assert lots.tax.sum() == pytest.approx(plan.lot_tax) == pytest.approx(orders.lot_tax.sum())
    by_symbol = lots.groupby("symbol").quantity.sum()
    assert all(by_symbol[o.symbol] == o.quantity for o in plan.sells)  # a sell's lots add up to it
    empty = plan_rebalance(load_account(ROOT / "examples" / "cash_flow.toml")).lot_sales_frame()
    assert empty.empty and list(empty.columns)[:2] == ["symbol", "lot"]


def test_importing_the_package_leaves_the_solver_stack_unimported_until_a_plan_needs_it():
    # `rebalance check` and `--help` paid the 1.5 s import of cvxpy, Clarabel and SciPy they never use.
    import subprocess
    import sys
    code = ("import sys, rebalance_opt, rebalance_opt.cli\n"
            "from rebalance_opt import load_account, drift_report, Account\n"
            "assert 'cvxpy' not in sys.modules and 'rebalance_opt.solve' not in sys.modules, 'eager'\n"
            "from rebalance_opt import Planner, plan_rebalance\n"
            "assert 'cvxpy' in sys.modules and Planner is rebalance_opt.solve.Planner\n"
            "assert set(rebalance_opt.__all__) <= set(dir(rebalance_opt))\n"
            "try:\n    rebalance_opt.nothing_here\nexcept AttributeError as e:\n    assert 'nothing_here' in str(e)\n"
            "else:\n    raise SystemExit('no AttributeError')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr


def test_every_name_the_package_exports_is_reachable_by_star_import():
    namespace: dict = {}
    exec("from rebalance_opt import *", namespace)
    assert set(rebalance_opt.__all__) <= set(namespace)
