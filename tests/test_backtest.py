"""The backtest: strategies' class arithmetic, runs on hand-made prices checked by hand, a short run
on the bundled real prices, equal-drift reading, the report and the command line."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rebalance_opt import Account, InputError, Lot, Policy, TaxSettings
from rebalance_opt.backtest import (BacktestConfig, EqualDrift, Metrics, StrategyRun, equal_drift, run_backtest,
                                    step_positions)
from rebalance_opt.backtest_data import (BUNDLED_GROUPS, Universe, _bundled_from, buy_and_hold_index,
                                         constant_yield_index, load_prices_csv, load_universe, tilted_weights)
from rebalance_opt.backtest_report import write_report
from rebalance_opt.strategies import (DEFAULT_STRATEGIES, DEFAULT_TAX_WEIGHTS, CalendarReset, ClassView,
                                      EnginePolicy, ToleranceBand, band_values, cash_flow_values, make_strategies,
                                      make_strategy, trade_to, water_fill)
from tests.conftest import cli, run_cli


# --- class arithmetic ---------------------------------------------------------------------------------------
def test_water_fill_buys_the_most_underweight_first_and_sells_the_most_overweight_first():
    values, targets = np.array([10.0, 20.0, 30.0]), np.array([20.0, 20.0, 20.0])
    # buying 15: the first class rises 10 to meet the second, then both rise 2.5
    assert water_fill(values, targets, 15.0) == pytest.approx([22.5, 22.5, 30.0])
    # selling 15: the third falls 10 to meet the second, then both fall 2.5
    assert water_fill(values, targets, -15.0) == pytest.approx([10.0, 17.5, 17.5])
    # only eligible classes move
    assert water_fill(values, targets, 6.0, eligible=np.array([False, True, True])) == pytest.approx([10, 26, 30])
    # never below zero: selling 25 from (5, 40) with targets (0, 0) takes 25 from the larger
    assert water_fill(np.array([5.0, 40.0]), np.array([0.0, 0.0]), -25.0) == pytest.approx([5.0, 15.0])


def _account(lots, prices, cash=0.0, targets=None, as_of=date(2023, 6, 1)) -> Account:
    return Account(id="t", as_of=as_of, cash=cash, tax=TaxSettings(0.37, 0.20),
                   targets=targets or {"A": 0.5, "B": 0.5}, prices=prices, lots=tuple(lots),
                   policy=Policy(fractional=True))


def test_band_resets_only_classes_outside_the_band_and_spreads_the_rest_over_the_others():
    # A 60%, B 25%, C 15% against 40/30/30, band 5: A and C are out, B is in.
    a = _account([Lot("a", "A", 60, 1.0, date(2020, 1, 2)), Lot("b", "B", 25, 1.0, date(2020, 1, 2)),
                  Lot("c", "C", 15, 1.0, date(2020, 1, 2))], {"A": 1.0, "B": 1.0, "C": 1.0},
                 targets={"A": 0.4, "B": 0.3, "C": 0.3})
    desired, broke = band_values(ClassView.of(a, 0.0), 0.05)
    assert broke
    # A to 40, C to 30; the 5 left go to B (in band, the only other class)
    assert desired == pytest.approx([40.0, 30.0, 30.0])
    # A 43, B 29, C 30, cash 5 (V 107; targets 42.8, 32.1, 32.1): all in band, so cash flow: the 5 lift
    # B by 1 to C's shortfall, then B and C by 2 each; A, already above target, gets nothing
    a2 = _account([Lot("a", "A", 43, 1.0, date(2020, 1, 2)), Lot("b", "B", 29, 1.0, date(2020, 1, 2)),
                   Lot("c", "C", 30, 1.0, date(2020, 1, 2))], {"A": 1.0, "B": 1.0, "C": 1.0}, cash=5.0,
                  targets={"A": 0.4, "B": 0.3, "C": 0.3})
    desired, broke = band_values(ClassView.of(a2, 0.0), 0.05)
    assert not broke
    assert desired == pytest.approx([43.0, 32.0, 32.0])


def test_a_withdrawal_under_the_dust_threshold_is_still_raised():
    # No cash, a withdrawal of 0.96: every class's share of it is under DUST, so nothing was sold
    # and the books refused the negative cash ("unexpected error: ValueError").
    a = _account([Lot("a", "A", 10, 1.0, date(2020, 1, 2)), Lot("b", "B", 5, 1.0, date(2020, 1, 2))],
                 {"A": 10.0, "B": 10.0})  # A 100, B 50: A the further above its target
    view = ClassView.of(a, 0.96)
    fills = trade_to(a, view, cash_flow_values(view), "fifo", 0.96)
    assert [(f.symbol, f.side) for f in fills] == [("A", "sell")]
    assert 0.96 <= fills[0].notional < 0.96 + 10.0 * 1e-6 + 1e-9  # to the millionth of a share


def test_fifo_sells_the_oldest_lot_and_mintax_the_cheapest():
    lots = [Lot("old", "A", 10, 10.0, date(2015, 1, 2)), Lot("new", "A", 10, 28.0, date(2023, 1, 3)),
            Lot("mid", "A", 10, 25.0, date(2020, 1, 2)), Lot("b", "B", 10, 20.0, date(2020, 1, 2))]
    a = _account(lots, {"A": 30.0, "B": 20.0})          # A 900 of 1,100: sell 350 of A
    view = ClassView.of(a, 0.0)
    desired = view.targets
    fifo = trade_to(a, view, desired, "fifo", 0.0)
    sell = next(f for f in fifo if f.side == "sell")
    assert sell.lots == (("old", 10.0), ("mid", pytest.approx(350 / 30 - 10)))
    cheap = next(f for f in trade_to(a, view, desired, "mintax", 0.0) if f.side == "sell")
    # tax per share: new 0.37 × 2 = 0.74, mid 0.20 × 5 = 1.00, old 0.20 × 20 = 4.00
    assert [lot for lot, _ in cheap.lots] == ["new", "mid"]
    buy = next(f for f in fifo if f.side == "buy")
    assert buy.symbol == "B" and buy.quantity == pytest.approx(350 / 20, abs=1e-6)


def test_strategy_names():
    names = [s.name for s in make_strategies(["quarterly-fifo", "annual-mintax", "band-fifo@0.03", "cash-flow",
                                              "optimizer", "harvest@2/0.02"], tax_weights=(0.1, 1))]
    assert names == ["quarterly-fifo", "annual-mintax", "band-fifo@0.03", "cash-flow", "optimizer@0.1",
                     "optimizer@1", "harvest@2/0.02"]
    (h,) = make_strategy("harvest@2/0.02")
    assert isinstance(h, EnginePolicy) and (h.tax_weight, h.band, h.replacements) == (2.0, 0.02, True)
    (q,) = make_strategy("quarterly-mintax")
    assert isinstance(q, CalendarReset) and (q.months, q.lot_order) == (3, "mintax")
    assert isinstance(make_strategy("band-mintax")[0], ToleranceBand)
    for bad in ("quarterly", "weekly-fifo", "optimizer@x", "harvest@-1", "band-fifo@2", "cash-flow@1"):
        with pytest.raises(InputError) as err:
            make_strategy(bad)
        assert err.value.path == "--strategies" and bad in str(err.value)



def test_the_strategies_the_readme_lists_are_the_names_accepted():
    # the README listed six names; --help sends users there for the rest (calendars, band-mintax, bands)
    import re
    section = (Path(__file__).parents[1] / "README.md").read_text().split("## Backtest", 1)[1]
    default = re.search(r"The\s+default:\s+`([^`]+)`", section)[1]
    assert tuple(default.split(",")) == DEFAULT_STRATEGIES and DEFAULT_TAX_WEIGHTS == (0.03, 0.1, 0.3, 1.0, 3.0)
    assert [(s.months, s.lot_order) for n in ("monthly-fifo", "semiannual-mintax", "annual-fifo")
            for s in make_strategy(n)] == [(1, "fifo"), (6, "mintax"), (12, "fifo")]
    assert [(s.band, s.lot_order) for n in ("band-mintax", "band-fifo@0.03") for s in make_strategy(n)] == [
        (0.05, "mintax"), (0.03, "fifo")]
    (cash,) = make_strategy("cash-flow")
    assert cash.allow_sells is False
    assert [(s.tax_weight, s.band, s.replacements) for n in ("optimizer@0.3", "optimizer@0.3/0", "harvest@1")
            for s in make_strategy(n)] == [(0.3, 0.01, False), (0.3, 0.0, False), (1.0, 0.01, True)]


def test_a_negative_zero_tax_weight_is_named_at_0():
    # --tax-weights -0 (or -0.0) named a strategy optimizer@-0, beside optimizer@0 for 0
    from rebalance_opt.cli.common import parse_numbers
    weights = parse_numbers("-0,0,-0.0", "--tax-weights", "numbers >= 0")
    assert weights == [0.0] * 3 and all(str(w) == "0.0" for w in weights)
    for specs, tax_weights in ((["optimizer", "harvest"], weights), (["optimizer", "harvest"], (-0.0, 0.0)),
                               (["optimizer@-0", "optimizer@0", "harvest@-0.0/-0"], (1.0,))):
        strategies = make_strategies(specs, tax_weights)
        assert all("-0" not in s.name and "-0" not in s.label for s in strategies), [s.name for s in strategies]
        assert all(str(s.tax_weight) == "0.0" for s in strategies)
    assert [s.name for s in make_strategies(["optimizer", "harvest"], weights)] == ["optimizer@0", "harvest@0"]
    assert [s.name for s in make_strategies(["optimizer@-0", "optimizer@0"])] == ["optimizer@0"]
    assert make_strategy("harvest@-0/-0")[0].name == "harvest@0/0"
    assert make_strategy("band-fifo@-0")[0].name == ToleranceBand(-0.0).name == "band-fifo@0"

# --- runs on hand-made prices -----------------------------------------------------------------------------------
def _write_prices(path: Path, days: pd.DatetimeIndex, a: list[float], b: list[float]) -> Path:
    lines = ["date,A,B"] + [f"{d.date()},{x},{y}" for d, x, y in zip(days, a, b)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def doubling(tmp_path) -> tuple[Path, pd.DatetimeIndex]:
    """A at 10 in January, 20 from 1 February; B at 10 throughout; weekdays of H1 2023."""
    days = pd.bdate_range("2023-01-02", "2023-06-30")
    a = [10.0 if d < pd.Timestamp("2023-02-01") else 20.0 for d in days]
    return _write_prices(tmp_path / "doubling.csv", days, a, [10.0] * len(days)), days


def _run(csv: Path, strategies, **config) -> dict[str, Metrics]:
    data = load_prices_csv(csv)
    universe = Universe({"A": 0.5, "B": 0.5}, {"A": ("A",), "B": ("B",)})
    cfg = BacktestConfig(initial=1_000.0, deposit=0.0, **config)
    result = run_backtest(strategies, cfg, data, universe, tax_weights=(0.3,))
    return {r.metrics.strategy: r.metrics for r in result.runs}


def test_a_quarterly_reset_realizes_the_gain_at_the_quarter_and_a_band_at_once(doubling):
    csv, days = doubling
    m = _run(csv, ["quarterly-fifo", "quarterly-mintax", "band-fifo", "cash-flow"])
    # 2 January: 50 A and 50 B. A doubles on 1 February: A 1,000, B 500 (weights 2/3, 1/3).
    # The quarterly reset waits for 3 April: sells 250 of A = 12.5 shares, gain 12.5 × 10 = 125 short-term.
    q = m["quarterly-fifo"]
    assert q.tax_paid == pytest.approx(125 * 0.37)
    # left: 37.5 A with a 375 gain; liquidating adds it: (125 + 375) × 0.37 in all
    assert q.liquidation_tax == pytest.approx(375 * 0.37)
    assert q.final_value == pytest.approx(1_500.0)
    assert q.wealth_after_tax == pytest.approx(1_500 - 125 * 0.37)
    assert q.wealth_after_liquidation == pytest.approx(1_500 - 500 * 0.37)
    # drift: |A − ½| = |B − ½| = 1/6 and cash 0 from 1 February to 31 March, 0 otherwise
    drifting = ((days >= "2023-02-01") & (days <= "2023-03-31")).sum()
    assert q.mean_abs_drift == pytest.approx(drifting / len(days) * (1 / 6 + 1 / 6) / 3)
    assert q.max_abs_drift == pytest.approx(1 / 6)
    assert q.trades == 4 and q.wash_sales == 0
    years = (days[-1] - days[0]).days / 365.25
    mean_value = np.mean([1_000.0 if d < pd.Timestamp("2023-02-01") else 1_500.0 for d in days])
    assert q.turnover == pytest.approx(250 / years / mean_value)
    assert q.tracking_error == pytest.approx(0.0, abs=1e-12)   # at target on the only day prices move
    assert m["quarterly-mintax"].tax_paid == pytest.approx(q.tax_paid)   # one lot: nothing to choose
    # the band resets on 1 February itself: the same gain, no drift left
    band = m["band-fifo"]
    assert band.tax_paid == pytest.approx(125 * 0.37) and band.mean_abs_drift == pytest.approx(0.0, abs=1e-9)
    # cash flow never sells: no tax until liquidation, drift from February to the end
    flow = m["cash-flow"]
    assert flow.tax_paid == 0 and flow.liquidation_tax == pytest.approx(500 * 0.37)
    assert flow.mean_abs_drift == pytest.approx((days >= "2023-02-01").sum() / len(days) / 9)


def test_a_naive_reset_that_buys_back_within_30_days_has_its_losses_washed(tmp_path):
    days = pd.bdate_range("2023-01-02", "2023-03-31")
    a = [10.0 if d < pd.Timestamp("2023-02-01") else 8.0 if d < pd.Timestamp("2023-03-01") else 4.0 for d in days]
    b = [10.0 if d < pd.Timestamp("2023-02-01") else 2.0 if d < pd.Timestamp("2023-03-01") else 4.0 for d in days]
    csv = _write_prices(tmp_path / "whipsaw.csv", days, a, b)
    m = _run(csv, ["band-fifo", "optimizer@0.3"])
    band = m["band-fifo"]
    # 1 Feb (A 8, B 2; A is 80%): sell 18.75 A at a loss of 2 each (37.50), buy 75 B at 2.
    # 1 Mar (both 4; B is 80%): sell 46.875 of the January B lot at a loss of 6 each (281.25): washed by
    # the 75 B bought on 1 Feb (28 days before); buy 46.875 A, of which 18.75 replace the February A sale.
    assert band.wash_sales == 2
    assert band.disallowed_losses == pytest.approx(37.5 + 281.25)
    assert band.losses_realized == pytest.approx(0.0, abs=1e-6)
    assert band.tax_paid == 0
    # liquidation at 4: A 31.25 @10 (−187.5), 18.75 @6 (−37.5), 28.125 @4; B 3.125 @10 (−18.75),
    # 46.875 @8 (−187.5), 28.125 @2 (+56.25): a net loss, no tax
    assert band.liquidation_tax == 0
    assert m["optimizer@0.3"].wash_sales == 0   # the engine never buys back what it sold at a loss


# --- a short run on the bundled real prices ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def short_run():
    pytest.importorskip("skfolio", reason="the bundled prices ship in skfolio (the backtest extra)")
    cfg = BacktestConfig(start=date(2008, 1, 1), years=1.5, initial=100_000.0, deposit=1_000.0)
    return run_backtest(["quarterly-fifo", "quarterly-mintax", "cash-flow", "optimizer@0.3", "harvest@0.3"], cfg)


def test_a_short_bundled_run_keeps_its_books_straight(short_run):
    result = short_run
    assert result.first == date(2008, 1, 2) and result.last == date(2009, 6, 30)
    m = {r.metrics.strategy: r.metrics for r in result.runs}
    assert len({x.deposits for x in m.values()}) == 1 and m["cash-flow"].deposits == 17 * 1_000.0
    for x in m.values():
        assert x.wealth_after_liquidation == pytest.approx(x.wealth_after_tax - x.liquidation_tax)
        assert x.tax_paid >= 0 and x.max_abs_drift >= x.mean_abs_drift >= 0
        assert x.engine_failures == 0
    assert m["cash-flow"].turnover == 0 and m["cash-flow"].tax_paid == 0
    assert m["optimizer@0.3"].wash_sales == 0 and m["harvest@0.3"].wash_sales == 0
    # the same class trades, different lots: FIFO pays at least what the cheapest lots pay
    assert m["quarterly-fifo"].tax_paid >= m["quarterly-mintax"].tax_paid - 1e-6
    # harvesting in 2008 realizes losses through the replacement funds
    assert m["harvest@0.3"].losses_realized > m["optimizer@0.3"].losses_realized
    run = result.run("harvest@0.3")
    assert len(run.monthly) == 18 and run.daily_drift.index[0] == pd.Timestamp("2008-01-02")
    assert list(run.yearly["year"]) == [2008, 2009]


def test_strategies_run_in_worker_processes_as_in_one_process():
    """``workers`` > 1 sends each strategy, its engine's Planner and model cache included, to a
    process of its own (a cache with a lock in it once could not be sent: the full run failed)."""
    pytest.importorskip("skfolio", reason="the bundled prices ship in skfolio (the backtest extra)")
    cfg = BacktestConfig(start=date(2008, 9, 1), years=0.5)
    names = ["optimizer@0.3", "harvest@0.3"]
    alone = {r.metrics.strategy: r.metrics.to_dict() for r in run_backtest(names, cfg).runs}
    pooled = {r.metrics.strategy: r.metrics.to_dict() for r in run_backtest(names, cfg, workers=2).runs}
    for name in names:
        a, b = ({k: v for k, v in m[name].items() if k != "seconds"} for m in (alone, pooled))
        assert a == b


def test_the_report_writes_tables_plots_and_summary(short_run, tmp_path):
    pytest.importorskip("matplotlib", reason="plots need matplotlib (the backtest extra)")
    files = write_report(short_run, tmp_path / "report")
    names = {f.name for f in files}
    assert names == {"summary.csv", "equal_drift.csv", "frontier.csv", "monthly.csv", "yearly.csv", "drift.png",
                     "cumulative_tax.png", "frontier.png", "summary.md"}
    table = pd.read_csv(tmp_path / "report" / "summary.csv")
    assert list(table["strategy"]) == [r.metrics.strategy for r in short_run.runs]
    text = (tmp_path / "report" / "summary.md").read_text()
    assert "deferral is not a saving" in text and "never loses" in text and "Survivors" in text
    assert (tmp_path / "report" / "frontier.png").stat().st_size > 10_000


def test_a_report_without_plots_removes_the_plots_of_an_earlier_run(short_run, tmp_path):
    pytest.importorskip("matplotlib", reason="plots need matplotlib (the backtest extra)")
    out = tmp_path / "report"
    write_report(short_run, out)
    (out / "notes.txt").write_text("mine")  # not a report file: kept
    files = write_report(short_run, out, plots=False)
    assert not any(f.suffix == ".png" for f in files)
    assert sorted(p.name for p in out.iterdir()) == sorted([f.name for f in files] + ["notes.txt"])


def test_the_report_csvs_hold_money_in_full_not_rounded_to_six_digits(short_run, tmp_path):
    # float_format="%.6g" wrote 1,316,386.29 as 1.31639e+06 (a review): money off by dollars
    write_report(short_run, tmp_path / "report", plots=False)
    table = pd.read_csv(tmp_path / "report" / "summary.csv")
    for r, row in zip(short_run.runs, table.itertuples()):
        assert row.final_value == r.metrics.final_value and row.tax_paid == r.metrics.tax_paid
        assert row.wealth_after_liquidation == r.metrics.wealth_after_liquidation
    monthly = pd.read_csv(tmp_path / "report" / "monthly.csv")
    first = short_run.runs[0]
    assert list(monthly[monthly["strategy"] == first.metrics.strategy]["value"]) == list(first.monthly["value"])
    assert "e+" not in (tmp_path / "report" / "summary.csv").read_text()


def test_yearly_csv_has_every_year_of_the_run_even_one_that_realized_nothing(tmp_path):
    # cash-flow never sells: yearly.csv had only the first year's row, and carryforwards read -0
    prices = tmp_path / "p.csv"
    prices.write_text("date,A,B\n2023-01-03,10,10\n2023-06-01,20,10\n2024-01-02,20,10\n2024-02-01,20,10\n"
                      "2024-03-01,20,10\n")
    for strategy in ("cash-flow", "quarterly-fifo"):
        out = tmp_path / strategy
        r = run_cli("backtest", "--prices", str(prices), "--strategies", strategy, "--initial", "100", "--deposit", "0",
                    "--no-plots", "--out", str(out))
        assert r.returncode == 0, r.stderr
        yearly = pd.read_csv(out / "yearly.csv")
        assert list(yearly["year"]) == [2023, 2024]
        assert ",-0" not in (out / "yearly.csv").read_text()


def test_years_beyond_the_prices_say_the_run_was_cut_short(tmp_path):
    prices = tmp_path / "p.csv"
    prices.write_text("date,A,B\n2023-01-03,10,10\n2023-06-01,20,10\n2024-01-02,20,10\n2024-02-01,20,10\n")
    args = ("backtest", "--prices", str(prices), "--strategies", "cash-flow", "--no-plots", "--out", str(tmp_path / "o"))
    r = run_cli(*args, "--years", "100")
    assert r.returncode == 0 and "note: the prices end on 2024-02-01: the run covers 1.1 of the 100 years" in r.stderr
    assert "note: the prices end" not in run_cli(*args, "--years", "1").stderr


def test_a_year_without_sales_owes_nothing_and_carries_the_losses_before_it():
    from rebalance_opt.backtest import every_year
    from rebalance_opt.simulate import YearEnd
    ends = [YearEnd(2020, 0.0, 300.0, 50.0, realized_short_term=-300.0), YearEnd(2023, 37.0, 0.0, 0.0)]
    rows = every_year(ends, 2020, 2024)
    assert [(e.year, e.tax_paid, e.carryforward_short_term, e.carryforward_long_term) for e in rows] == [
        (2020, 0.0, 300.0, 50.0), (2021, 0.0, 300.0, 50.0), (2022, 0.0, 300.0, 50.0), (2023, 37.0, 0.0, 0.0),
        (2024, 0.0, 0.0, 0.0)]


def test_a_report_that_fails_part_way_leaves_the_earlier_report_as_it_was(short_run, tmp_path, monkeypatch):
    import rebalance_opt.backtest_report as report
    out = tmp_path / "report"
    write_report(short_run, out, plots=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(out / "summary.md"))
    monkeypatch.setattr(report, "summary_markdown", disk_full)  # after every CSV is written
    with pytest.raises(OSError):
        write_report(short_run, out, plots=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no new CSV, no staging folder left


@pytest.mark.parametrize("fails", ["moving yearly.csv aside", "placing summary.md"])
def test_a_report_whose_files_cannot_all_be_replaced_leaves_every_earlier_file(short_run, tmp_path, monkeypatch, fails):
    # one file that could not be replaced (chattr +i) left this run's CSVs beside the earlier summary
    out = tmp_path / "report"
    write_report(short_run, out, plots=False)
    (out / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    replace, refusals = os.replace, []

    def refused(src, dst):  # the first such move fails (an immutable file, a full directory)
        src, dst = Path(src), Path(dst)
        if not refusals and ((fails == "moving yearly.csv aside" and src == out / "yearly.csv") or
                             (fails == "placing summary.md" and dst == out / "summary.md")):
            refusals.append(src)
            raise PermissionError(1, "Operation not permitted", str(src))
        return replace(src, dst)
    monkeypatch.setattr(os, "replace", refused)
    shorter = dataclasses.replace(short_run, runs=short_run.runs[:2])  # a different report
    with pytest.raises(PermissionError):
        write_report(shorter, out, plots=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_cli_a_report_that_cannot_be_written_exits_2_naming_out_and_writes_nothing(doubling, tmp_path, monkeypatch,
                                                                                     capsys):
    import rebalance_opt.backtest_report as report
    csv, _ = doubling
    out = tmp_path / "o"

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(out / "summary.md"))
    monkeypatch.setattr(report, "summary_markdown", disk_full)
    code, _, err = cli(capsys, "backtest", "--prices", str(csv), "--strategies", "quarterly-fifo", "--no-plots",
                       "--out", str(out))
    assert code == 2 and "--out" in err and "No space left on device" in err and "Traceback" not in err
    assert not out.exists()  # the folder this run made is gone with it


# --- equal drift --------------------------------------------------------------------------------------------------
def _metrics(name, family, tw, drift, tax, liq=0.0, wealth=100.0) -> StrategyRun:
    m = Metrics(strategy=name, label=name, family=family, tax_weight=tw, band=0.01 if tw is not None else None,
                tax_paid=tax, liquidation_tax=liq, final_value=wealth, wealth_after_tax=wealth,
                wealth_after_liquidation=wealth, mean_abs_drift=drift, max_abs_drift=drift, tracking_error=0.0,
                turnover=0.0, trades=0, wash_sales=0, disallowed_losses=0.0, losses_realized=0.0, deposits=0.0,
                withdrawals=0.0, engine_failures=0, seconds=0.0)
    return StrategyRun(m, pd.DataFrame(), pd.DataFrame(), pd.Series(dtype=float))


def test_equal_drift_interpolates_the_sweep_at_the_references_drift():
    runs = [_metrics("quarterly-fifo", "reset", None, 0.008, 1_000.0, wealth=90.0),
            _metrics("optimizer@0.1", "optimizer", 0.1, 0.005, 800.0, liq=100.0, wealth=95.0),
            _metrics("optimizer@1", "optimizer", 1.0, 0.010, 400.0, liq=300.0, wealth=105.0),
            _metrics("optimizer@10", "optimizer", 10.0, 0.030, 100.0)]
    e = equal_drift(runs, "optimizer ±1pt", "quarterly-fifo")
    # 0.008 is 3/5 of the way from 0.005 to 0.010: 800 + 0.6 × (400 − 800) = 560
    assert e.tax_paid == pytest.approx(560.0) and e.tax_ratio == pytest.approx(0.56)
    assert e.total_tax == pytest.approx(560.0 + 100 + 0.6 * 200)
    assert e.wealth_gain == pytest.approx(95 + 0.6 * 10 - 90)
    assert e.between == ("optimizer@0.1", "optimizer@1")
    far = equal_drift(runs[1:] + [_metrics("quarterly-fifo", "reset", None, 0.05, 1.0)], "optimizer ±1pt",
                      "quarterly-fifo")
    assert isinstance(far, EqualDrift) and far.tax_paid is None and far.tax_ratio is None
    assert equal_drift(runs, "harvest ±1pt", "quarterly-fifo") is None


def test_the_summary_splits_realized_gains_by_term_and_says_when_long_term_tax_alone_misses_the_goal():
    from rebalance_opt.backtest import BacktestConfig, BacktestResult, equal_drift_all
    from rebalance_opt.backtest_report import _sources_note

    def with_gains(run, short, long_):
        yearly = pd.DataFrame({"realized_short_term": [short / 2, short / 2], "realized_long_term": [long_, 0.0]})
        return StrategyRun(run.metrics, run.monthly, yearly, run.daily_drift)
    runs = [with_gains(_metrics("quarterly-mintax", "reset", None, 0.008, 1_000.0), 1_000.0, 4_000.0),
            with_gains(_metrics("optimizer@0.1", "optimizer", 0.1, 0.005, 900.0), 600.0, 4_400.0),
            with_gains(_metrics("optimizer@1", "optimizer", 1.0, 0.010, 800.0), 100.0, 3_900.0),
            with_gains(_metrics("optimizer@10", "optimizer", 10.0, 0.030, 700.0), -50.0, 3_500.0)]
    result = BacktestResult(BacktestConfig(), None, None, None, None, tuple(runs), tuple(equal_drift_all(runs)))
    note = _sources_note(result)
    # at drift 0.008, 3/5 of the way from optimizer@0.1 to optimizer@1: long-term 4,400 − 0.6 × 500 = 4,100,
    # short-term 600 − 0.6 × 500 = 300; 20% of 4,100 = 820, 0.82× the reset's 1,000: above the 0.75× goal
    assert "quarterly-mintax realized 4,000 of long-term and 1,000 of short-term gains" in note
    assert "4,100 and 300" in note and "820, 0.82×" in note and "above the 0.75× goal" in note
    assert "optimizer@10 (mean drift 3.00 points), still realized 3,500" in note
    runs[0] = with_gains(_metrics("quarterly-mintax", "reset", None, 0.008, 2_000.0), 1_000.0, 4_000.0)
    result = BacktestResult(BacktestConfig(), None, None, None, None, tuple(runs), tuple(equal_drift_all(runs)))
    assert "0.41×" in _sources_note(result) and "within the 0.75× goal" in _sources_note(result)


def test_the_summary_says_how_far_the_long_term_gains_fell_when_they_did():
    from rebalance_opt.backtest import BacktestConfig, BacktestResult, equal_drift_all
    from rebalance_opt.backtest_report import _sources_note

    def with_gains(run, short, long_):
        yearly = pd.DataFrame({"realized_short_term": [short], "realized_long_term": [long_]})
        return StrategyRun(run.metrics, run.monthly, yearly, run.daily_drift)
    # the reset realizes 4,000 long-term and 1,000 short-term; the sweep at its drift (3/5 of the way from
    # optimizer@0.1 to optimizer@1) 3,000 + 0.6 × (2,500 − 3,000) = 2,700 and 0 + 0.6 × 500 = 300
    runs = [with_gains(_metrics("quarterly-mintax", "reset", None, 0.008, 1_000.0), 1_000.0, 4_000.0),
            with_gains(_metrics("optimizer@0.1", "optimizer", 0.1, 0.005, 900.0), 0.0, 3_000.0),
            with_gains(_metrics("optimizer@1", "optimizer", 1.0, 0.010, 800.0), 500.0, 2_500.0)]
    note = _sources_note(BacktestResult(BacktestConfig(), None, None, None, None, tuple(runs),
                                        tuple(equal_drift_all(runs))))
    assert "barely move" not in note
    assert "are 0.68× quarterly-mintax's, the short-term ones 0.30× its" in note   # 2,700 / 4,000, 300 / 1,000
    assert "the long-term gains alone come to 540, 0.54×" in note                   # 20% of 2,700, over 1,000


# --- data ------------------------------------------------------------------------------------------------------------
def test_fund_and_bond_proxy_constructions():
    idx = pd.to_datetime(["2020-01-01", "2020-07-01", "2021-01-01"])
    stocks = pd.DataFrame({"X": [1.0, 2.0, 4.0], "Y": [10.0, 10.0, 5.0]}, index=idx)
    assert list(buy_and_hold_index(stocks)) == pytest.approx([100.0, 150.0, 225.0])   # ½·4 + ½·0.5 = 2.25
    w = tilted_weights(2, 0.25)
    assert w == pytest.approx([0.375, 0.625])
    assert buy_and_hold_index(stocks, w).iloc[-1] == pytest.approx(100 * (0.375 * 4 + 0.625 * 0.5))
    bond = constant_yield_index(idx, 0.04)
    assert bond.iloc[-1] == pytest.approx(100 * 1.04 ** (366 / 365.25))


def test_single_stock_targets_make_each_stock_its_own_class():
    names = [n for _, _, group in BUNDLED_GROUPS for n in group]
    idx = pd.to_datetime(["2020-01-01", "2021-01-01"])
    stocks = pd.DataFrame({n: [10.0 + i, 20.0 + i] for i, n in enumerate(names)}, index=idx)
    data, universe = _bundled_from(stocks, 0.4, 0.04, single_stocks=True)
    assert len(names) == 20 and universe.classes == (*names, "BONDS")
    assert all(universe.funds[n] == (n,) for n in names)                    # no replacement
    assert universe.targets["XOM"] == pytest.approx(0.6 / 20) and sum(universe.targets.values()) == pytest.approx(1.0)
    assert list(data.prices["XOM"]) == list(stocks["XOM"])                  # the stock itself, not an index
    assert any("single-stock" in n for n in data.notes)
    grouped = _bundled_from(stocks, 0.0, 0.04)[1]
    assert grouped.classes == ("GROWTH", "VALUE", "DEFENSIVE") and grouped.funds["VALUE"] == ("VAL", "VAL_ALT")


def test_cli_backtests_single_stock_targets_on_the_bundled_prices(tmp_path):
    pytest.importorskip("skfolio", reason="the bundled prices ship in skfolio (the backtest extra)")
    r = run_cli("backtest", "--single-stocks", "--start", "2008-01-01", "--years", "1", "--strategies",
                "quarterly-mintax,optimizer@0.3", "--out", str(tmp_path / "o"), "--no-plots", "--json")
    assert r.returncode == 0, r.stderr
    runs = {s["strategy"]: s for s in json.loads(r.stdout)["strategies"]}
    assert runs["optimizer@0.3"]["engine_failures"] == 0 and runs["optimizer@0.3"]["trades"] > 20
    assert "XOM" in (tmp_path / "o" / "summary.md").read_text()
    mixed = run_cli("backtest", "--single-stocks", "--prices", str(tmp_path / "p.csv"), "--out", str(tmp_path / "m"))
    assert mixed.returncode == 2 and "--single-stocks" in mixed.stderr and "Traceback" not in mixed.stderr


def test_bonds_with_own_prices_is_an_input_error(doubling, tmp_path, capsys):
    # --bonds is the bundled data's bond proxy: with --prices it was ignored (no bond in the run, exit 0)
    csv, _ = doubling
    code, _, err = cli(capsys, "backtest", "--prices", str(csv), "--bonds", "0.2", "--out", str(tmp_path / "o"))
    assert code == 2 and "--bonds" in err and "--universe" in err and "(got 0.2)" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("strategies", ["quarterly-fifo", "optimizer@0.3,harvest@1/0"])
def test_tax_weights_without_a_strategy_that_sweeps_them_is_an_input_error(doubling, tmp_path, capsys, strategies):
    # only a bare optimizer or harvest takes one strategy per --tax-weights value; otherwise the
    # weights were ignored (exit 0), as `tax --tax-weights` without --frontier once was
    csv, _ = doubling
    code, _, err = cli(capsys, "backtest", "--prices", str(csv), "--strategies", strategies, "--tax-weights", "0.1,1",
                       "--out", str(tmp_path / "o"))
    assert code == 2 and "--tax-weights" in err and "(got '0.1,1')" in err
    assert not (tmp_path / "o").exists()
    code, stdout, err = cli(capsys, "backtest", "--prices", str(csv), "--strategies", "quarterly-fifo,Harvest",
                            "--tax-weights", "0.1,1", "--out", str(tmp_path / "o"), "--no-plots", "--json")
    assert code == 0, err
    assert [s["strategy"] for s in json.loads(stdout)["strategies"]] == ["quarterly-fifo", "harvest@0.1", "harvest@1"]


def test_steps_are_the_first_trading_day_of_each_month():
    days = pd.to_datetime(["2023-01-30", "2023-01-31", "2023-02-01", "2023-02-02", "2023-03-01"])
    assert list(step_positions(pd.DatetimeIndex(days))) == [0, 2, 4]


def test_bad_price_files_name_the_file_line_column_and_value(tmp_path):
    cases = {
        "date,A\n2023-01-02,10\n2023-01-03,abc\n": ("line 3, A", "'abc'"),
        "day,A\n2023-01-02,10\n": ("line 1", "'day'"),
        "date,A\n2023-01-02,10\n2023-01-02,11\n": ("line 3, date", "dates must increase"),
        "date,A\n2023-01-02,10\n2023-13-03,11\n": ("line 3, date", "YYYY-MM-DD"),
        "date,A\n2023-01-02,10\n2023-01-03,0\n": ("line 3, A", "price > 0"),
        "date,A,A\n2023-01-02,10,1\n": ("line 1", "twice"),
        "date,A\n2023-01-02,10,3\n": ("line 2", "fields"),
        # dates as in account files: YYYY-MM-DD from 1800 to 2999 (year 9999 and 0001 were exit 1
        # in the date arithmetic; 20230103 and 2023-W01-2 were read as dates)
        "date,A\n2023-01-02,10\n9999-01-03,11\n": ("line 3, date", "from 1800-01-01 to 2999-12-31"),
        "date,A\n0001-01-02,10\n2023-01-03,11\n": ("line 2, date", "from 1800-01-01 to 2999-12-31"),
        "date,A\n2023-01-02,10\n20230103,11\n": ("line 3, date", "YYYY-MM-DD"),
        "date,A\n2023-01-02,10\n2023-W01-2,11\n": ("line 3, date", "YYYY-MM-DD"),
    }
    for i, (text, (where, what)) in enumerate(cases.items()):
        path = tmp_path / f"bad{i}.csv"
        path.write_text(text)
        with pytest.raises(InputError) as err:
            load_prices_csv(path)
        assert str(path) in str(err.value) and where in str(err.value) and what in str(err.value), text
    with pytest.raises(InputError, match="cannot be read"):
        load_prices_csv(tmp_path / "missing.csv")


def test_universe_files_are_checked_against_the_prices(tmp_path, doubling):
    data = load_prices_csv(doubling[0])
    good = tmp_path / "u.toml"
    good.write_text('[targets]\nSTOCK = 0.6\nB = 0.4\n[classes]\nA = "STOCK"\n')
    u = load_universe(good, data)
    assert u.targets == {"STOCK": 0.6, "B": 0.4} and u.funds == {"STOCK": ("A",), "B": ("B",)}
    for text, where in (('[targets]\nC = 1.0\n', "targets.C"), ('[targets]\nA = 1.5\n', "targets.A"),
                        ('[targets]\nA = 0.5\n[classes]\nZ = "X"\n', "classes.Z"),
                        ('[targets]\nA = 0.7\nB = 0.7\n', "targets"), ('[target]\nA = 1\n', "target"),
                        ('[targets]\nA = 0.5\nB = 0.5\n[classes]\nA = "A"\nB = "A"\n', "targets.B")):
        good.write_text(text)
        with pytest.raises(InputError) as err:
            load_universe(good, data)
        assert err.value.path == where and str(good) in str(err.value)
        if where == "targets.B":  # B is a price column: the message says [classes] put it in class A
            assert "puts in class 'A'" in str(err.value)


# --- the command line ---------------------------------------------------------------------------------------------
def test_cli_runs_a_backtest_on_your_prices_and_writes_the_report(doubling, tmp_path):
    csv, _ = doubling
    out = tmp_path / "out"
    r = run_cli("backtest", "--prices", str(csv), "--strategies", "quarterly-fifo,band-fifo", "--initial", "1000",
                "--deposit", "0", "--out", str(out), "--no-plots", "--json")
    assert r.returncode == 0, r.stderr
    payload = json.loads(r.stdout)
    assert [s["strategy"] for s in payload["strategies"]] == ["quarterly-fifo", "band-fifo"]
    assert payload["strategies"][0]["tax_paid"] == pytest.approx(125 * 0.37)
    assert (out / "summary.md").exists() and (out / "summary.csv").exists() and not (out / "drift.png").exists()


@pytest.mark.parametrize("args, where, value", [
    (["--strategies", "quarterly-fifo,yearly-lifo"], "--strategies", "yearly-lifo"),
    (["--tax-weights", "0.1,lots"], "--tax-weights", "lots"),
    (["--start", "2001-02-30"], "--start", "2001-02-30"),
    (["--deposit", "1e16"], "--deposit", "1e+16"),
    (["--withdrawal", "2e15"], "--withdrawal", "2000000000000000.0"),
])
def test_cli_bad_options_exit_2_with_a_clear_message(args, where, value, tmp_path):
    r = run_cli("backtest", *args, "--out", str(tmp_path / "o"))
    assert r.returncode == 2
    assert where in r.stderr and value in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("cell", ["1e308", "2e15", "1e-300", "0.0000009"])
def test_a_price_too_large_or_too_small_to_simulate_is_refused_naming_its_cell(tmp_path, cell):
    # 1e308 was refused as "prices.AAA" (an account file's key) with no file; 1e-300 overflowed the simulator
    bad = tmp_path / "prices.csv"
    bad.write_text(f"date,AAA\n2020-01-01,1\n2020-01-02,{cell}\n2020-03-02,1\n")
    with pytest.raises(InputError) as err:
        load_prices_csv(bad)
    assert err.value.file == str(bad) and err.value.path == "line 3, AAA" and cell in str(err.value)
    for fine in ("0.000001", "1e15"):
        bad.write_text(f"date,AAA\n2020-01-01,1\n2020-01-02,{fine}\n")
        assert load_prices_csv(bad).prices["AAA"].iloc[1] == float(fine)


def test_cli_bad_prices_file_exits_2_naming_file_line_and_value(tmp_path):
    bad = tmp_path / "prices.csv"
    bad.write_text("date,VTI,BND\n2023-01-02,200,70\n2023-01-03,201,n/a\n")
    r = run_cli("backtest", "--prices", str(bad), "--json", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    err = json.loads(r.stdout)["error"]
    assert err["file"] == str(bad) and err["path"] == "line 3, BND" and "'n/a'" in err["message"]
    missing = run_cli("backtest", "--prices", str(tmp_path / "none.csv"), "--out", str(tmp_path / "o"))
    assert missing.returncode == 2 and "none.csv" in missing.stderr and "cannot be read" in missing.stderr



def test_cli_never_writes_the_report_over_the_prices_it_reads(doubling, tmp_path, capsys):
    # --prices data/monthly.csv --out data: the report's monthly.csv replaced the prices
    csv, _ = doubling
    prices = tmp_path / "monthly.csv"
    prices.write_bytes(csv.read_bytes())
    for out in (tmp_path, tmp_path / ".." / tmp_path.name):
        code, _, err = cli(capsys, "backtest", "--prices", str(prices), "--strategies", "band-fifo", "--out", str(out),
                           "--no-plots")
        assert code == 2 and "--out" in err and "would overwrite" in err
    assert prices.read_bytes() == csv.read_bytes() and not (tmp_path / "summary.md").exists()


def test_cli_an_out_folder_that_cannot_be_written_is_an_input_error_before_simulating(doubling, tmp_path, capsys):
    # a file on --out's path, or a report name taken by a folder: "unexpected error" (exit 1) after
    # the whole simulation, with part of the report written
    csv, _ = doubling
    (tmp_path / "a-file").write_text("x")
    taken = tmp_path / "taken"
    (taken / "summary.csv").mkdir(parents=True)
    for out, says in ((tmp_path / "a-file" / "sub", "is not a folder"), (taken, "not a file")):
        code, _, err = cli(capsys, "backtest", "--prices", str(csv), "--out", str(out), "--no-plots")
        assert code == 2 and "--out" in err and says in err and "unexpected" not in err
    assert sorted(p.name for p in taken.iterdir()) == ["summary.csv"]


def test_cli_an_out_folder_where_nothing_can_be_created_is_an_input_error_before_simulating(
        doubling, tmp_path, capsys, monkeypatch):
    # permission bits pass (as root, even /proc), the folder refuses files: it was "unexpected
    # error: FileNotFoundError" (exit 1) after the whole simulation
    import errno

    from rebalance_opt import exports
    csv, _ = doubling

    def refuse(**kwargs):
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(exports.tempfile, "mkstemp", refuse)
    code, _, err = cli(capsys, "backtest", "--prices", str(csv), "--out", str(tmp_path / "report"), "--no-plots")
    assert code == 2 and "--out" in err and "nothing can be created in" in err and "Read-only file system" in err
    assert list(tmp_path.iterdir()) == [csv]  # no report folder


@pytest.mark.parametrize("body, says", [
    (b"date,A\n2023-01-02,1\n2023-01-03,\xff\n", "line 3: not UTF-8 text (byte 31)"),
    (b"date,A\n2023-01-02," + b"1" * 200_000 + b"\n", "field larger than field limit"),
])
def test_cli_a_prices_or_universe_file_not_readable_as_text_is_an_input_error(tmp_path, capsys, body, says):
    # was "unexpected error: UnicodeDecodeError" / "Error: field larger than field limit" (exit 1)
    prices = tmp_path / "prices.csv"
    prices.write_bytes(body)
    code, _, err = cli(capsys, "backtest", "--prices", str(prices), "--out", str(tmp_path / "o"))
    assert code == 2 and str(prices) in err and says in err and "unexpected" not in err
    prices.write_text("date,A\n2023-01-02,1\n2023-01-03,1\n")
    universe = tmp_path / "universe.toml"
    universe.write_bytes(b"[targets]\nA = 1 # \xff\n")
    code, _, err = cli(capsys, "backtest", "--prices", str(prices), "--universe", str(universe),
                       "--out", str(tmp_path / "o"))
    assert code == 2 and str(universe) in err and "not UTF-8" in err and not (tmp_path / "o").exists()


@pytest.mark.parametrize("years", ["1e18", "1e308"])
def test_cli_more_years_than_the_prices_run_to_their_end(doubling, tmp_path, capsys, years):
    # the run's end date overflowed pandas' date arithmetic: "unexpected error: OverflowError" (exit 1)
    csv, days = doubling
    code, stdout, err = cli(capsys, "backtest", "--prices", str(csv), "--strategies", "band-fifo", "--years", years,
                            "--out", str(tmp_path / "o"), "--no-plots", "--json")
    assert code == 0, err
    assert json.loads(stdout)["last"] == str(days[-1].date())


@pytest.mark.parametrize("cell", ["1_000", "١٢", "１２", "\u00a070", "0x10"])
def test_a_price_is_a_plain_ascii_decimal(tmp_path, cell):
    # float() read 1_000 as 1000 and Arabic-Indic or fullwidth digits as 12
    bad = tmp_path / "prices.csv"
    bad.write_text(f"date,VTI,BND\n2023-01-02,200,70\n2023-01-03,201,{cell}\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        load_prices_csv(bad)
    assert err.value.file == str(bad) and err.value.path == "line 3, BND" and f"(got {cell!r})" in str(err.value)
    bad.write_text("date,VTI,BND\n2023-01-02,200,70\n2023-01-03, 201 ,+7e1\n")  # as before
    assert load_prices_csv(bad).prices.iloc[-1].tolist() == [201.0, 70.0]

def test_withdrawals_stop_deposits_and_are_raised_by_selling(doubling):
    csv, _ = doubling
    m = _run(csv, ["cash-flow", "quarterly-fifo"], withdrawal=100.0, withdraw_from=date(2023, 2, 1))
    for x in m.values():
        assert x.withdrawals == pytest.approx(5 * 100.0) and x.deposits == 0
    # prices stand still after 1 February, so whatever is sold when, the account ends at 1,500 − 500, and
    # the tax paid plus the liquidation tax is the tax on A's whole gain, 50 × 10, all short-term
    for x in m.values():
        assert x.final_value == pytest.approx(1_500 - 500)
        assert x.tax_paid + x.liquidation_tax == pytest.approx(500 * 0.37)
    assert m["cash-flow"].tax_paid > 0          # cash flow sold to raise the withdrawals
    assert m["cash-flow"].turnover > 0


def test_withdrawals_leave_the_tax_the_year_already_owes_in_the_account(tmp_path):
    # A doubles on 1 February 2023; from March, 300 a month is withdrawn from an account of 1,500,
    # raised by selling A at a short-term gain. The 2023 bill falls due in February 2024. Each
    # withdrawal was capped at 99% of the account less the tax due that day only, so by then the
    # account was drained while owing the year's tax, and the run stopped with "unexpected error:
    # ValueError: cash after the fills ... is -...". The tax the open year owes is now kept back.
    days = pd.bdate_range("2023-01-02", "2024-03-29")
    a = [10.0 if d < pd.Timestamp("2023-02-01") else 20.0 for d in days]
    csv = _write_prices(tmp_path / "p.csv", days, a, [10.0] * len(days))
    # A withdrawal is capped to leave the open years' tax and the short-term tax on what it raises;
    # all a drained account cannot pay is the last 1% (the sale paying the bill keeps 1% back, as
    # every sale does, and adds a little tax of its own): that comes from outside the account.
    m = _run(csv, ["cash-flow", "quarterly-fifo"], withdrawal=300.0, withdraw_from=date(2023, 3, 1))
    for x in m.values():
        assert x.tax_paid > 0 and x.withdrawals < 1_500  # capped: the account never had more
        assert 0 <= x.tax_from_outside <= 0.011 * x.tax_paid
        assert x.final_value >= 0 and x.wealth_after_tax <= x.final_value - x.tax_from_outside


def test_an_account_withdrawals_empty_has_its_drift_over_the_days_it_held_money(tmp_path):
    # Flat prices, 1,000 invested, 500 asked for every month: each withdrawal takes 99%/1.37 of
    # what is left, and within a year less than half a cent remains. Its weights were 0/0 on
    # those days: drift and tracking error came out NaN (and numpy warned on the terminal).
    import warnings
    days = pd.bdate_range("2023-01-02", "2024-12-31")
    csv = _write_prices(tmp_path / "p.csv", days, [10.0] * len(days), [10.0] * len(days))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        m = _run(csv, ["cash-flow", "quarterly-fifo"], withdrawal=500.0, withdraw_from=date(2023, 2, 1))
    for x in m.values():
        assert x.days_empty > 0
        assert math.isfinite(x.mean_abs_drift) and math.isfinite(x.max_abs_drift) and math.isfinite(x.tracking_error)
        assert x.withdrawals == pytest.approx(1_000.0, abs=0.01)  # all of it, in the end
        assert x.tax_paid == 0 and x.tax_from_outside == 0       # no gains at flat prices


def test_withdraw_from_without_a_withdrawal_is_an_input_error(doubling, tmp_path, capsys):
    # was ignored: deposits all along, exit 0, as if no withdrawal had been asked for
    csv, _ = doubling
    code, _, err = cli(capsys, "backtest", "--prices", str(csv), "--withdraw-from", "2023-03-01",
                       "--out", str(tmp_path / "o"))
    assert code == 2 and "--withdraw-from" in err and "--withdrawal" in err and "2023-03-01" in err
    assert not (tmp_path / "o").exists()


def test_withdraw_from_after_the_last_monthly_step_is_an_input_error(doubling):
    # the steps are the first trading day of each month: the last is 1 June 2023 (the prices end 30 June),
    # so from 2 June no withdrawal was ever made, silently
    csv, _ = doubling
    with pytest.raises(InputError) as err:
        _run(csv, ["cash-flow"], withdrawal=100.0, withdraw_from=date(2023, 6, 2))
    assert err.value.path == "--withdraw-from" and "2023-06-01" in str(err.value)
    assert _run(csv, ["cash-flow"], withdrawal=100.0, withdraw_from=date(2023, 6, 1))["cash-flow"].withdrawals == 100.0


def test_the_summary_sets_the_band_against_a_plain_monthly_optimizer_at_equal_drift():
    from types import SimpleNamespace

    from rebalance_opt.backtest import EqualDrift
    from rebalance_opt.backtest_report import _band_note

    def at(sweep, tax, reference="quarterly-fifo"):
        return EqualDrift(sweep, reference, 0.0076, tax, tax + 1.0, 1.0, 1000.0, 1001.0, 1.0, ("a", "b"))

    result = SimpleNamespace(equal_drift=[at("optimizer ±1pt", 462.0), at("optimizer ±0pt", 440.0),
                                          at("optimizer ±0pt", 1.0, reference="quarterly-mintax"),
                                          at("harvest ±1pt", 500.0)])
    note = _band_note(result)
    # 462 / 440 − 1 = +5.0%, computed by hand; the mintax reading and the harvest sweep stay out.
    assert "plain monthly optimizer" in note and "pays 440" in note
    assert "optimizer ±1pt 462 (+5.0%)" in note and "harvest" not in note
    assert _band_note(SimpleNamespace(equal_drift=[at("optimizer ±1pt", 462.0)])) is None


def test_an_account_that_outgrows_the_engine_mid_run_names_the_run_the_day_and_what_to_change(doubling, tmp_path):
    # it was reported as "account.cash: is too large", a field of no file the user gave
    csv, _ = doubling
    out = tmp_path / "o"
    r = run_cli("backtest", "--prices", str(csv), "--strategies", "cash-flow", "--initial", "1e15",
                "--deposit", "1e15", "--out", str(out), "--no-plots")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "cash-flow's simulated account on 2023-02-01" in r.stderr and "--initial, --deposit" in r.stderr
    assert not out.exists()


def test_cli_equal_drift_lines_say_which_side_of_the_reference_the_wealth_is(tmp_path):
    # "wealth after liquidation -119" read as a wealth of -119; it is 119 below the reference's
    pytest.importorskip("skfolio", reason="the bundled prices ship in skfolio (the backtest extra)")
    r = run_cli("backtest", "--years", "2", "--strategies", "quarterly-fifo,optimizer", "--tax-weights", "0.03,3",
                "--no-plots", "--out", str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if "at quarterly-fifo's drift" in line]
    assert lines, r.stdout
    for line in lines:
        assert re.search(r"wealth after liquidation [0-9,]+ (above|below) the reference's$", line.rstrip()), line


def test_the_readme_synopsis_of_backtest_lists_every_option_the_command_takes():
    import typer.main

    from rebalance_opt.cli import app
    command = typer.main.get_command(app).commands["backtest"]
    options = {name for p in command.params for name in p.opts if name.startswith("--") and name != "--help"}
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    synopsis = re.search(r"```text\n(python cli\.py backtest .*?)```", readme, re.S).group(1)
    assert options and not sorted(o for o in options if o not in synopsis)
