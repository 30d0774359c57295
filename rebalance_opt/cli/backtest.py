"""``backtest``: strategies side by side through history, with the report written to a folder."""
from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Optional

import typer

from ..account_file import iso_date
from ..errors import InputError
from ..exports import cannot_create_in
from .common import JsonOpt, app, number_option, out_path, parse_numbers, run, to_json, whole_number_option

@app.command("backtest", short_help="Simulate strategies through history: tax, wealth, drift.")
def backtest(
    years: Optional[float] = typer.Option(None, "--years", parser=number_option, help="Years to simulate, to the "
                                          "month (default: to the end of the prices)."),
    start: Optional[str] = typer.Option(None, "--start", help="First day, YYYY-MM-DD (default: the first day of "
                                                               "the prices)."),
    strategies: Optional[str] = typer.Option(None, "--strategies", help="Comma-separated: quarterly-fifo, "
                                             "quarterly-mintax, band-fifo, cash-flow, optimizer, harvest, ... "
                                             "(see the README; default: those six)."),
    tax_weights: Optional[str] = typer.Option(None, "--tax-weights", help="Comma-separated tax_weight values "
                                              "that optimizer and harvest sweep (default: 0.03,0.1,0.3,1,3)."),
    out_text: str = typer.Option("backtest-output", "--out", metavar="PATH",
                                 help="Folder for the CSVs, plots and summary.md."),
    prices: Optional[Path] = typer.Option(None, "--prices", help="Your own daily prices: CSV with date, then one "
                                                                  "column per symbol (default: the bundled data)."),
    universe: Optional[Path] = typer.Option(None, "--universe", help="TOML with \\[targets] and \\[classes] for "
                                            "--prices (default: every column its own class, equal weights)."),
    bonds: Optional[float] = typer.Option(None, "--bonds", parser=number_option, help="Bundled data: weight of the "
                                          "bond proxy (0: equities only; default: 0.4)."),
    single_stocks: bool = typer.Option(False, "--single-stocks", help="Bundled data: each of the 20 stocks its own "
                                       "class at an equal weight, instead of three sector funds."),
    dividend_yield: Optional[float] = typer.Option(None, "--dividend-yield", parser=number_option, help="Pay income "
                                                   "in cash: every stock yields this a year as dividends, taken out "
                                                   "of its adjusted close (0.02 for 2%), and the bundled bond proxy "
                                                   "pays its 4% as interest (default: income stays in the prices)."),
    # numbers through number_option: plain ASCII decimals (typer's float took 1_000)
    initial: float = typer.Option(100_000.0, "--initial", parser=number_option,
                                  help="Cash invested on the first day."),
    deposit: float = typer.Option(1_000.0, "--deposit", parser=number_option, help="Deposited every month."),
    withdrawal: float = typer.Option(0.0, "--withdrawal", parser=number_option,
                                     help="Withdrawn every month (deposits stop then)."),
    withdraw_from: Optional[str] = typer.Option(None, "--withdraw-from", help="First withdrawal, YYYY-MM-DD "
                                                                               "(default: from the start)."),
    short_term_rate: float = typer.Option(0.37, "--short-term-rate", parser=number_option,
                                          help="Tax rate on short-term gains."),
    long_term_rate: float = typer.Option(0.20, "--long-term-rate", parser=number_option,
                                         help="Tax rate on long-term gains."),
    workers: int = typer.Option(1, "--workers", parser=whole_number_option(1), help="Strategies simulated in parallel processes."),
    no_plots: bool = typer.Option(False, "--no-plots", help="Write the CSVs and summary only."),
    as_json: bool = JsonOpt,
):
    """Simulate rebalancing strategies through history: tax paid, wealth, drift, turnover."""
    def body():
        from ..backtest import BacktestConfig, run_backtest
        from ..backtest_data import (BOND_WEIGHT, bundled, check_dividend_yield, default_universe, load_prices_csv,
                                     load_universe, with_dividends)
        from ..backtest_report import write_report
        from ..strategies import DEFAULT_STRATEGIES, DEFAULT_TAX_WEIGHTS, make_strategies, sweeps_tax_weights

        out = out_path(out_text, "the report's folder, or leave out --out for ./backtest-output")
        check_out(out, [(p, o) for p, o in ((prices, "--prices"), (universe, "--universe")) if p is not None])
        if single_stocks and prices is not None:
            raise InputError("is for the bundled data; with --prices, say the classes in --universe",
                             path="--single-stocks")
        if bonds is not None and prices is not None:  # was ignored: the run had no bond proxy, exit 0
            raise InputError("is for the bundled data; with --prices, give the weights in --universe",
                             path="--bonds", value=bonds, has_value=True)
        if universe is not None and prices is None:
            raise InputError("describes your own prices; give them with --prices", path="--universe",
                             value=str(universe), has_value=True)
        weights = (parse_numbers(tax_weights, "--tax-weights", "numbers >= 0") if tax_weights is not None
                   else DEFAULT_TAX_WEIGHTS)  # at most 10,000: make_strategies says so
        names = _names(strategies) if strategies is not None else DEFAULT_STRATEGIES
        chosen = make_strategies(names, weights)   # unknown names fail here, before any data is read
        if tax_weights is not None and not any(sweeps_tax_weights(n) for n in names):  # were ignored, exit 0
            raise InputError("are swept by optimizer and harvest (without @W), and --strategies names neither: "
                             "add one, or leave out --tax-weights", path="--tax-weights", value=tax_weights,
                             has_value=True)
        config = BacktestConfig(start=_date(start, "--start"), years=years, initial=initial, deposit=deposit,
                                withdrawal=withdrawal, withdraw_from=_date(withdraw_from, "--withdraw-from"),
                                short_term_rate=short_term_rate, long_term_rate=long_term_rate)
        config.check()
        if dividend_yield is not None:
            check_dividend_yield(dividend_yield)  # before the prices are read
        if prices is not None:
            data = load_prices_csv(prices)
            uni = load_universe(universe, data) if universe is not None else default_universe(data)
            if dividend_yield is not None:
                data = with_dividends(data, dividend_yield)
        else:
            data, uni = bundled(bond_weight=BOND_WEIGHT if bonds is None else bonds, single_stocks=single_stocks,
                                dividend_yield=dividend_yield)

        from ..render import console
        err = console(stderr=True)
        err.print(f"backtest: {len(chosen)} strategies on {data.source}")

        def progress(m):
            err.print(f"  {m.strategy:<24} tax paid {m.tax_paid:>14,.0f}   drift {m.mean_abs_drift * 100:5.2f} pts"
                      f"   {m.seconds:6.1f} s")
        try:
            result = run_backtest(chosen, config, data, uni, workers=workers, progress=progress)
            covered = (result.last - result.first).days / 365.25
            if years is not None and covered < years - 1 / 12:  # was cut to the data without a word
                err.print(f"note: the prices end on {result.last}: the run covers {covered:.1f} of the "
                          f"{years:g} years asked for")
            files = write_report(result, out, plots=not no_plots)
        except OSError as exc:  # written to a hidden folder first: nothing of this run is left in --out
            why = f"{exc.strerror}: {exc.filename}" if exc.strerror and exc.filename else str(exc)
            raise InputError(f"cannot be written ({why}); the folder is left as it was",
                             path="--out", value=str(out), has_value=True) from None
        except KeyboardInterrupt:
            typer.echo(f"interrupted: no report written ({out} left as it was)", err=True)
            raise
        if as_json:
            typer.echo(to_json({**result.to_dict(), "files": [str(f) for f in files]}))
        else:
            c = console()
            if not c.is_terminal:  # a file or a pipe: wide enough for the table, not rich's 80 columns
                c = console(width=120)
            c.print(_table(result))
            for e in result.equal_drift:
                if e.tax_ratio is not None:
                    gain = e.wealth_gain or 0.0  # a difference from the reference's wealth: say which side
                    tax = (f"tax paid {e.tax_ratio:.2f}×" if not (e.income_tax or e.reference_income_tax) else
                           f"tax on sales {_times(e.sales_tax_ratio)} (all tax paid, income's too, {e.tax_ratio:.2f}×)")
                    c.print(f"{e.sweep} at {e.reference}'s drift ({e.drift * 100:.2f} pts): {tax} the reference's, "
                            f"wealth after liquidation {abs(gain):,.0f} {'above' if gain >= 0 else 'below'} the "
                            "reference's", soft_wrap=True)
            c.print(f"report: {out / 'summary.md'} ({len(files)} files in {out})")
    run(as_json, body, sigterm=True)  # a SIGTERM while the data is read is exit 143 too, not -15


def _times(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:.2f}×"


def check_out(out: Path, inputs: list[tuple[Path, str]]) -> None:
    """Fail before simulating if the report cannot be written to ``out`` (a file on its path, a
    report name taken by a folder, a folder that cannot be made or written), or would replace
    one of the files read (``--prices prices/monthly.csv --out prices`` overwrote the prices).
    Creates nothing: an input error found later leaves no folder behind."""
    import os

    from ..backtest_report import REPORT_FILES

    def error(problem: str) -> InputError:
        return InputError(problem, path="--out", value=str(out), has_value=True)
    if out.exists() and not out.is_dir():
        raise error("is a file; --out takes a folder")
    for path, option in inputs:
        if path.name in REPORT_FILES and path.exists() and out.exists() and path.resolve().parent == out.resolve():
            raise error(f"holds {option} {path}, which the report's {path.name} would overwrite; write the "
                        "report to another folder")
    taken = [name for name in REPORT_FILES if (out / name).exists() and not (out / name).is_file()]
    if taken:
        raise error(f"holds {out / taken[0]}, which is not a file; the report writes a file of that name")
    existing = out
    while not existing.exists():  # the nearest folder that exists: the report's folders are made in it
        if existing.is_symlink() or existing.parent == existing:
            raise error("cannot be made: a broken symbolic link on its path")
        existing = existing.parent
    if not existing.is_dir():
        raise error(f"cannot be made: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise error(f"cannot be written: {existing} is not writable")
    refused = cannot_create_in(existing)  # (the probe is removed: nothing is left behind)
    if refused:
        raise error(f"cannot be written: nothing can be created in {existing} ({refused})")


def _names(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise InputError("must name at least one strategy", path="--strategies", value=text, has_value=True)
    return names


def _date(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return iso_date(text)  # YYYY-MM-DD, 1800 to 2999, as an account file's dates
    except ValueError as exc:
        raise InputError(str(exc), path=option, value=text, has_value=True) from None


def _table(result):
    from rich import box
    from rich.table import Table
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, title=f"Backtest {result.first} to {result.last}")
    income = any(r.metrics.income for r in result.runs)  # a column only when income is paid in cash
    for col in ("strategy", "tax paid", *(("of it on income",) if income else ()), "liq. tax", "wealth after liq.",
                "drift pts", "TE", "turnover", "orders", "wash"):
        t.add_column(col, justify="left" if col == "strategy" else "right", no_wrap=True)
    for r in result.runs:
        m = r.metrics
        t.add_row(m.strategy, f"{m.tax_paid:,.0f}", *((f"{m.income_tax:,.0f}",) if income else ()),
                  f"{m.liquidation_tax:,.0f}", f"{m.wealth_after_liquidation:,.0f}",
                  f"{m.mean_abs_drift * 100:.2f}", f"{m.tracking_error * 100:.2f}%", f"{m.turnover * 100:.1f}%",
                  str(m.trades), str(m.wash_sales))
    return t
