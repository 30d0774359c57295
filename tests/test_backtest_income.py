"""Income paid in cash in the backtest (``--dividend-yield``): the payout arithmetic, the tax on it,
the tax-on-sales reading of the goals, the report and the command line. Expected values are worked
by hand from the definitions (a share held through a step is paid the day's drop in price)."""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rebalance_opt.backtest import BacktestConfig, EqualDrift, payouts, run_backtest
from rebalance_opt.backtest_data import (BOND_SYMBOL, BUNDLED_GROUPS, Income, PriceData, Universe, _bundled_from,
                                         with_dividends)
from rebalance_opt.backtest_report import summary_markdown
from rebalance_opt.simulate import TaxLedger
from tests.conftest import run_cli


def test_income_is_taxed_at_the_rate_of_its_kind_and_nets_with_no_capital_loss():
    # 2021: a long-term loss of 1,000, 500 of dividends, 100 of interest. The loss carries forward
    # whole (it offsets no income, SPEC's tax has no $3,000 rule); dividends at 20%, interest at 37%.
    ledger = TaxLedger(0.37, 0.20).book(2021, "long", -1000.0).book_income(2021, dividends=500.0, interest=100.0)
    ledger, end = ledger.settle_first()
    assert end.tax_paid == pytest.approx(500 * 0.20 + 100 * 0.37)
    assert end.income_tax == pytest.approx(137.0)
    assert (end.dividends, end.interest) == (500.0, 100.0)
    assert end.carryforward_long_term == pytest.approx(1000.0)
    # a year with gains: the capital tax and the income tax add
    ledger = ledger.book(2022, "short", 300.0).book_income(2022, dividends=50.0)
    with pytest.raises(ValueError):
        ledger.book_income(2021, dividends=1.0)  # a settled year takes no more income
    _, end = ledger.settle_first()
    assert end.tax_paid == pytest.approx(0.0 + 50 * 0.20)  # the 300 short-term gain nets the 1,000 carried


def test_a_share_held_through_a_step_is_paid_the_drop_in_price_and_earns_the_total_return():
    dates = [date(2021, 1, 4), date(2021, 1, 15), date(2021, 2, 1), date(2021, 2, 10)]
    total = np.array([[100.0, 50.0], [110.0, 50.0], [121.0, 50.0], [130.0, 55.0]])
    steps = np.array([0, 2])
    prices, payout = payouts(total, dates, steps, [Income(0.10), None])
    dt = 28 / 365.25                                   # 4 January to 1 February
    ex = 121.0 * 1.10 ** -dt                           # the price once the step has paid out
    assert prices[:2, 0] == pytest.approx([100.0, 110.0])   # before the first payout: the total-return price
    assert prices[2, 0] == pytest.approx(ex) and prices[3, 0] == pytest.approx(130.0 * 1.10 ** -dt)
    assert payout[0].tolist() == [0.0, 0.0]            # the first step pays nothing
    assert payout[1, 0] == pytest.approx(121.0 - ex)   # price + payout = the total-return price
    assert prices[:, 1].tolist() == total[:, 1].tolist() and payout[1, 1] == 0.0  # no income: untouched


def _flat(days: pd.DatetimeIndex, income: dict | None = None) -> tuple[PriceData, Universe]:
    frame = pd.DataFrame({"EQ": 100.0}, index=days)
    data = PriceData(frame, "flat", income=income or {})
    return data, Universe({"EQ": 1.0}, {"EQ": ("EQ",)})


def test_a_flat_total_return_with_a_yield_pays_it_in_cash_taxed_at_the_long_term_rate():
    days = pd.bdate_range("2021-01-04", "2021-02-26")   # steps on 4 January and 1 February
    data, universe = _flat(days, {"EQ": Income(0.12)})
    result = run_backtest(["cash-flow"], BacktestConfig(initial=100_000.0, deposit=0.0), data, universe)
    m = result.run("cash-flow").metrics
    # 100,000 bought 1,000 shares at 100 on 4 January; on 1 February they are paid the drop in price
    expected = 1000 * 100.0 * (1 - 1.12 ** -(28 / 365.25))
    assert m.income == pytest.approx(expected)
    assert m.income_tax == pytest.approx(0.20 * expected) and m.tax_paid == pytest.approx(m.income_tax)
    assert m.tax_on_sales == pytest.approx(0.0, abs=1e-9)
    # the cash was reinvested and the account stayed worth its total return: 100,000 less the tax due
    assert m.final_value == pytest.approx(100_000.0)
    yearly = result.run("cash-flow").yearly
    assert yearly["dividends"].sum() == pytest.approx(expected) and yearly["interest"].sum() == 0.0


def test_income_paid_on_a_step_is_no_tracking_error():
    rng = np.random.default_rng(7)
    days = pd.bdate_range("2021-01-04", "2021-12-31")
    frame = pd.DataFrame({"EQ": 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, len(days))))}, index=days)
    universe = Universe({"EQ": 1.0}, {"EQ": ("EQ",)})
    for income in ({}, {"EQ": Income(0.08)}):
        run = run_backtest(["cash-flow"], BacktestConfig(initial=100_000.0, deposit=0.0),
                           PriceData(frame, "walk", income=income), universe).run("cash-flow")
        # one fund held whole, its payouts reinvested each step: the account is the benchmark
        assert run.metrics.tracking_error < 1e-4, (income, run.metrics.tracking_error)
    assert run.metrics.income > 0


def test_bond_interest_is_ordinary_income_and_the_bond_price_stays_flat_between_payouts():
    days = pd.bdate_range("2020-01-02", "2021-12-31")
    stocks = pd.DataFrame({name: 10.0 for _, _, names in BUNDLED_GROUPS for name in names}, index=days)
    data, universe = _bundled_from(stocks, 0.4, 0.04)
    data = with_dividends(data, 0.02)
    assert data.income[BOND_SYMBOL] == Income(0.04, "interest") and data.income["GRW"] == Income(0.02, "dividend")
    assert not any("dividends folded into adjusted closes" in n for n in data.notes)
    result = run_backtest(["cash-flow"], BacktestConfig(initial=100_000.0, deposit=0.0), data, universe)
    y = result.run("cash-flow").yearly.set_index("year")
    # 2020 settles in February 2021: its interest at 37%, its dividends at 20%
    assert y.loc[2020, "interest"] > 0 and y.loc[2020, "dividends"] > 0
    assert y.loc[2020, "income_tax"] == pytest.approx(0.37 * y.loc[2020, "interest"] + 0.20 * y.loc[2020, "dividends"])
    # about 40% of 100,000 at 4% a year, and 60% at 2% (the payouts are reinvested, so a little more)
    assert y.loc[2020, "interest"] == pytest.approx(1600, rel=0.1)
    assert y.loc[2020, "dividends"] == pytest.approx(1200, rel=0.1)


def test_the_goal_reads_the_tax_on_sales_and_the_ratio_of_all_tax_is_kept_beside_it():
    e = EqualDrift(sweep="optimizer ±1pt", reference="quarterly-fifo", drift=0.01, tax_paid=150.0, total_tax=150.0,
                   wealth_after_liquidation=0.0, reference_tax_paid=300.0, reference_total_tax=300.0,
                   reference_wealth=0.0, between=("a", "b"), income_tax=60.0, reference_income_tax=100.0)
    assert e.sales_tax_ratio == pytest.approx((150 - 60) / (300 - 100))   # 0.45
    assert e.tax_ratio == pytest.approx(0.5)
    plain = EqualDrift(sweep="s", reference="quarterly-fifo", drift=0.01, tax_paid=150.0, total_tax=150.0,
                       wealth_after_liquidation=0.0, reference_tax_paid=300.0, reference_total_tax=300.0,
                       reference_wealth=0.0, between=("a", "b"))
    assert plain.sales_tax_ratio == plain.tax_ratio == 0.5   # no income: one ratio


def _prices_csv(path: Path) -> Path:
    days = pd.bdate_range("2023-01-02", "2023-06-30")
    path.write_text("date,A,B\n" + "".join(f"{d.date()},{10 + i * 0.01:.2f},10\n" for i, d in enumerate(days)))
    return path


def test_cli_dividend_yield_pays_every_column_of_your_prices_and_the_report_says_so(tmp_path):
    out = tmp_path / "out"
    r = run_cli("backtest", "--prices", str(_prices_csv(tmp_path / "p.csv")), "--strategies",
                "quarterly-fifo,quarterly-mintax,optimizer", "--tax-weights", "0.1,1", "--initial", "1000",
                "--deposit", "0", "--dividend-yield", "0.03", "--out", str(out), "--no-plots", "--json")
    assert r.returncode == 0, r.stderr
    strategies = json.loads(r.stdout)["strategies"]
    assert all(s["income"] > 0 and s["income_tax"] == pytest.approx(0.2 * s["income"]) for s in strategies)
    summary = (out / "summary.md").read_text()
    assert "of it on income" in summary and "tax on sales, ratio" in summary and "an assumed 3.00%" in summary
    assert "Dividends are an assumption" in summary and "Adjusted closes.** Dividends are folded" not in summary
    yearly = pd.read_csv(out / "yearly.csv")
    assert {"dividends", "interest", "income_tax"} <= set(yearly.columns)


def test_cli_without_a_dividend_yield_the_report_has_no_income_columns(tmp_path):
    out = tmp_path / "out"
    r = run_cli("backtest", "--prices", str(_prices_csv(tmp_path / "p.csv")), "--strategies", "quarterly-fifo",
                "--initial", "1000", "--deposit", "0", "--out", str(out), "--no-plots")
    assert r.returncode == 0, r.stderr
    summary = (out / "summary.md").read_text()
    assert "of it on income" not in summary and "tax on sales" not in summary
    assert "dividends inside adjusted prices" in summary


@pytest.mark.parametrize("value", ["1", "-0.01", "nan", "2%"])
def test_cli_a_bad_dividend_yield_is_an_input_error_before_anything_is_read_or_written(tmp_path, value):
    r = run_cli("backtest", "--prices", str(tmp_path / "missing.csv"), "--dividend-yield", value,
                "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "--dividend-yield" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()


def test_summary_of_a_run_with_income_states_the_yield_and_the_income_tax_of_the_references(tmp_path):
    days = pd.bdate_range("2021-01-04", "2022-06-30")
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({s: 100.0 * np.exp(np.cumsum(rng.normal(0.0004, 0.012, len(days)))) for s in "AB"},
                         index=days)
    data = with_dividends(PriceData(frame, "walk", file="walk.csv"), 0.02)
    universe = Universe({"A": 0.5, "B": 0.5}, {"A": ("A",), "B": ("B",)})
    result = run_backtest(["quarterly-fifo", "quarterly-mintax"], BacktestConfig(deposit=0.0), data, universe)
    text = summary_markdown(result, [])
    for name in ("quarterly-fifo", "quarterly-mintax"):
        m = result.run(name).metrics
        assert f"{name} received {m.income:,.0f} and paid {m.income_tax:,.0f} on it" in text


def test_a_reference_that_paid_no_tax_on_sales_gets_no_ratio_but_its_reading_is_not_called_unbracketed():
    from types import SimpleNamespace

    from rebalance_opt.backtest_report import _verdict
    # the sweep was read at the reset's drift (interpolated), but the reset's only tax was on income
    e = EqualDrift(sweep="optimizer ±1pt", reference="quarterly-fifo", drift=0.011, tax_paid=910.0,
                   total_tax=910.0, wealth_after_liquidation=0.0, reference_tax_paid=916.0,
                   reference_total_tax=916.0, reference_wealth=0.0, between=("optimizer@0.1", "optimizer@1"),
                   income_tax=900.0, reference_income_tax=916.0)
    assert e.sales_tax_ratio is None and e.tax_ratio == pytest.approx(910 / 916)
    lines = _verdict(SimpleNamespace(equal_drift=[e], data=None, runs=[]))
    assert lines[0] == ("- optimizer ±1pt at quarterly-fifo's drift: quarterly-fifo paid no tax on sales, so no ratio "
                        "can be held to the goal; the sweep paid 10 on sales there.")
    assert "do not bracket" not in lines[0]
