"""The backtest's report: CSV tables, PNG plots and a markdown summary that reads them honestly.

Files written to the output folder:

* ``summary.csv`` — one row per strategy (``Metrics``);
* ``equal_drift.csv`` — each tax_weight sweep read at the quarterly resets' mean drift;
* ``frontier.csv`` — the sweeps' points: tax paid, liquidation tax and wealth against drift;
* ``monthly.csv`` — per strategy and month: value, cumulative tax paid, drift, trading;
* ``yearly.csv`` — per strategy and tax year: realized short- and long-term gains, income and its
  tax (when income is paid in cash), tax, carryforwards;
* ``drift.png``, ``cumulative_tax.png``, ``frontier.png`` — the same as plots;
* ``summary.md`` — what was run, the table, the equal-drift reading, and the caveats.
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from .backtest import REFERENCES, BacktestResult, EqualDrift, Metrics, StrategyRun

GOALS = {"quarterly-fifo": 0.5, "quarterly-mintax": 0.75}   # the targets for the tax ratio
REPORT_FILES = ("summary.csv", "equal_drift.csv", "frontier.csv", "monthly.csv", "yearly.csv", "drift.png",
                "cumulative_tax.png", "frontier.png", "summary.md")  # every name write_report may write


def write_report(result: BacktestResult, out: str | Path, plots: bool = True, appendix: str = "",
                 extra_files: tuple[str, ...] = ()) -> list[Path]:
    """Write the CSVs, the plots (``plots``) and ``summary.md`` to ``out``; returns the paths.
    ``appendix`` (markdown) goes into the summary before its list of files, which names
    ``extra_files`` too (files the caller writes to the same folder). A report file of an earlier
    run that this one does not write (its plots, after ``--no-plots``) is removed: it would show
    another run's numbers beside this run's tables.

    Every file is written to a hidden folder inside ``out`` first and moved into place only once
    all are written: a failure part way (a full disk, a name taken by a broken link) leaves the
    folder as it was, never this run's CSVs beside an earlier run's summary. Numbers are written
    in full (Python's shortest exact form): money is never rounded in the CSVs."""
    out = Path(out)
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".report-", dir=out))
    try:
        names = _write_files(result, staging, plots, appendix, extra_files)
        _put_in_place(names, staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if made:
            shutil.rmtree(out, ignore_errors=True)  # the folder this run made, and only ours in it
        raise
    shutil.rmtree(staging, ignore_errors=True)
    for name in set(REPORT_FILES) - set(names) - set(extra_files):
        try:
            (out / name).unlink(missing_ok=True)
        except OSError:  # a folder of that name, or no permission: not this run's to clear
            pass
    return [out / name for name in names]


def _put_in_place(names: list[str], staging: Path, out: Path) -> None:
    """Move the staged files into ``out``, all or none: the earlier run's files of those names are
    moved aside first, and put back if any move fails (one file that could not be replaced left
    this run's CSVs beside the earlier run's summary: a review)."""
    aside = staging / ".earlier"
    aside.mkdir()
    moved_aside: list[str] = []
    placed: list[str] = []
    try:
        for name in names:
            if os.path.lexists(out / name):
                os.replace(out / name, aside / name)
                moved_aside.append(name)
        for name in names:
            os.replace(staging / name, out / name)
            placed.append(name)
    except BaseException:
        for name in placed:
            try:
                os.unlink(out / name)
            except OSError:
                pass
        for name in moved_aside:
            try:
                os.replace(aside / name, out / name)
            except OSError:
                pass
        raise


def _write_files(result: BacktestResult, folder: Path, plots: bool, appendix: str,
                 extra_files: tuple[str, ...]) -> list[str]:
    """Every report file of ``result`` in ``folder``; returns their names."""
    written = []

    def save(frame: pd.DataFrame, name: str) -> None:
        frame.to_csv(folder / name, index=False)
        written.append(name)

    save(result.table(), "summary.csv")
    save(pd.DataFrame([e.to_dict() for e in result.equal_drift]), "equal_drift.csv")
    save(frontier_frame(result), "frontier.csv")
    save(monthly_frame(result), "monthly.csv")
    save(pd.concat([r.yearly.assign(strategy=r.metrics.strategy) for r in result.runs], ignore_index=True)
         [["strategy", "year", "realized_short_term", "realized_long_term", "dividends", "interest", "income_tax",
           "tax_paid", "carryforward_short_term", "carryforward_long_term"]], "yearly.csv")
    if plots:
        written += [p.name for p in plot_all(result, folder)]
    (folder / "summary.md").write_text(summary_markdown(result, written + list(extra_files), appendix),
                                       encoding="utf-8")
    return written + ["summary.md"]


def frontier_frame(result: BacktestResult) -> pd.DataFrame:
    cols = ["sweep", "strategy", "tax_weight", "mean_abs_drift", "tracking_error", "tax_paid", "income_tax",
            "tax_on_sales", "liquidation_tax", "wealth_after_liquidation"]
    rows = [{c: getattr(r.metrics, c) for c in cols} for r in result.runs if r.metrics.sweep]
    return pd.DataFrame(rows, columns=cols)


MONTHLY_COLUMNS = ["strategy", "date", "value", "tax_paid", "drift", "bought", "sold", "orders", "wash_sales"]


def monthly_frame(result: BacktestResult) -> pd.DataFrame:
    """Per strategy and step: value after trading, cumulative tax paid, mean |drift| over the month
    that follows, money bought and sold, orders and wash sales (deposits are the same for all)."""
    frames = [r.monthly.assign(strategy=r.metrics.strategy) for r in result.runs]
    return pd.concat(frames, ignore_index=True)[MONTHLY_COLUMNS]


# --- choosing what to draw --------------------------------------------------------------------------------
def highlighted(result: BacktestResult) -> list[StrategyRun]:
    """Every strategy outside the sweeps, and from each sweep the run whose drift is nearest the
    quarterly FIFO reset's (the comparison point), so the time plots stay readable."""
    runs = [r for r in result.runs if not r.metrics.sweep]
    ref = next((r.metrics.mean_abs_drift for r in result.runs if r.metrics.strategy == REFERENCES[0]), None)
    for sweep in dict.fromkeys(r.metrics.sweep for r in result.runs if r.metrics.sweep):
        members = [r for r in result.runs if r.metrics.sweep == sweep]
        if ref is None:
            runs.append(members[len(members) // 2])
        else:
            runs.append(min(members, key=lambda r: abs(r.metrics.mean_abs_drift - ref)))
    return runs


def plot_all(result: BacktestResult, out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    shown = highlighted(result)
    title = f"{result.first} to {result.last}"

    fig, ax = plt.subplots(figsize=(11, 5))
    floor = math.inf
    for r in shown:
        series = r.daily_drift.rolling(63, min_periods=1).mean() * 100
        ax.plot(series.index, series.to_numpy(), lw=1.1, label=r.metrics.strategy)
        positive = series[series > 0]
        if len(positive):
            floor = min(floor, float(positive.quantile(0.01)))
    ax.set_yscale("log")
    if math.isfinite(floor):  # the first days start at zero drift: keep them from stretching the axis
        ax.set_ylim(bottom=floor / 2)
    ax.set_ylabel("mean |drift|, points (63-day average, log scale)")
    ax.set_title(f"Drift over time, {title}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    paths.append(_save(fig, out / "drift.png"))

    fig, ax = plt.subplots(figsize=(11, 5))
    for r in shown:
        m = r.monthly
        cum = np.append(m["tax_paid"].to_numpy(), r.metrics.tax_paid)
        dates = list(pd.to_datetime(m["date"])) + [pd.Timestamp(result.last)]
        ax.step(dates, cum / 1e3, where="post", lw=1.2, label=r.metrics.strategy)
    ax.set_ylabel("tax paid, cumulative (thousands)")
    ax.set_title(f"Cumulative tax paid, {title} (the last point adds the final year's tax due)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    paths.append(_save(fig, out / "cumulative_tax.png"))

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    for sweep in dict.fromkeys(r.metrics.sweep for r in result.runs if r.metrics.sweep):
        pts = sorted((r.metrics for r in result.runs if r.metrics.sweep == sweep), key=lambda m: m.tax_weight)
        x = [m.mean_abs_drift * 100 for m in pts]
        for ax, ys in ((left, [m.tax_paid / 1e3 for m in pts]),
                       (right, [m.wealth_after_liquidation / 1e3 for m in pts])):
            line, = ax.plot(x, ys, "o-", ms=4, label=f"{sweep} (tax_weight sweep)")
            for m, xi, yi in zip(pts, x, ys):
                ax.annotate(f"{m.tax_weight:g}", (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points",
                            color=line.get_color())
    for r in result.runs:
        if r.metrics.sweep:
            continue
        m = r.metrics
        left.plot(m.mean_abs_drift * 100, m.tax_paid / 1e3, "s", ms=7, label=m.strategy)
        right.plot(m.mean_abs_drift * 100, m.wealth_after_liquidation / 1e3, "s", ms=7, label=m.strategy)
    ref = next((r.metrics for r in result.runs if r.metrics.strategy == REFERENCES[0]), None)
    for ax in (left, right):
        if ref is not None:
            ax.axvline(ref.mean_abs_drift * 100, color="grey", ls="--", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("mean |drift|, points (log scale)")
        ax.grid(alpha=0.3, which="both")
    left.set_ylabel("tax paid in the period (thousands)")
    right.set_ylabel("wealth after liquidation (thousands)")
    left.set_title("Tax paid against drift")
    right.set_title("Wealth after liquidation against drift")
    left.legend(fontsize=7)
    fig.suptitle(f"Frontier, {title}; dashed: the quarterly FIFO reset's drift")
    paths.append(_save(fig, out / "frontier.png"))
    return paths


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt
    plt.close(fig)
    return path


# --- the summary ---------------------------------------------------------------------------------------------
def _money(x: float | None) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:,.0f}"


def _pts(x: float) -> str:
    return f"{x * 100:.2f}"


def _ratio(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}×"


def with_income(result: BacktestResult) -> bool:
    """Whether the run paid income in cash (``--dividend-yield``): then tax paid includes the tax
    on it, and the goals read the tax on sales."""
    data = getattr(result, "data", None)
    return (data is not None and bool(data.income)) or any(r.metrics.income for r in result.runs)


def results_table(runs: list[StrategyRun], income: bool = False) -> str:
    head = ("| strategy | tax paid |" + (" of it on income |" if income else "") + " liquidation tax | wealth after "
            "tax | wealth after liquidation | mean abs drift (pts) | max drift (pts) | tracking error | turnover / yr "
            "| orders | wash sales |")
    rows = [head, "|" + "---|" * (12 if income else 11)]
    for r in runs:
        m = r.metrics
        rows.append(f"| {m.strategy} | {_money(m.tax_paid)} |" + (f" {_money(m.income_tax)} |" if income else "")
                    + f" {_money(m.liquidation_tax)} | {_money(m.wealth_after_tax)} "
                    f"| {_money(m.wealth_after_liquidation)} | {_pts(m.mean_abs_drift)} | {_pts(m.max_abs_drift)} "
                    f"| {m.tracking_error * 100:.2f}% | {m.turnover * 100:.1f}% | {m.trades} | {m.wash_sales} |")
    return "\n".join(rows)


def equal_drift_table(items: tuple[EqualDrift, ...], income: bool = False) -> str:
    """The sweeps at the references' drift. With income paid in cash, the goal reads the tax on
    sales (``EqualDrift.sales_tax_ratio``), shown beside the ratio of all tax paid."""
    rows = ["| sweep | at the drift of | drift (pts) | tax paid | reference's | ratio |"
            + (" tax on sales, ratio |" if income else "") + " goal | tax incl. liquidation, ratio "
            "| wealth after liquidation − reference's | interpolated between |", "|" + "---|" * (11 if income else 10)]
    for e in items:
        goal = GOALS.get(e.reference)
        ratio = e.sales_tax_ratio
        verdict = "—" if goal is None or ratio is None else f"≤ {goal:.2f}× {'met' if ratio <= goal else 'not met'}"
        rows.append(f"| {e.sweep} | {e.reference} | {_pts(e.drift)} | {_money(e.tax_paid)} | {_money(e.reference_tax_paid)} "
                    f"| {_ratio(e.tax_ratio)} |" + (f" {_ratio(ratio)} |" if income else "")
                    + f" {verdict} | {_ratio(e.total_tax_ratio)} | {_money(e.wealth_gain)} "
                    f"| {' and '.join(e.between) if e.between else 'outside the sweep'} |")
    return "\n".join(rows)


def pair_stats(result: BacktestResult) -> list[str]:
    """Each class's replacement against its primary over the run: tracking error and return gap."""
    prices = result.data.prices.loc[pd.Timestamp(result.first):pd.Timestamp(result.last)]
    years = max((result.last - result.first).days / 365.25, 1e-9)
    lines = []
    for cls in result.universe.classes:
        funds = result.universe.funds[cls]
        if len(funds) < 2:
            continue
        a, b = prices[funds[0]], prices[funds[1]]
        te = float((a.pct_change() - b.pct_change()).dropna().std() * math.sqrt(252))
        gap = (b.iloc[-1] / b.iloc[0]) ** (1 / years) - (a.iloc[-1] / a.iloc[0]) ** (1 / years)
        corr = float(a.pct_change().corr(b.pct_change()))
        lines.append(f"{cls}: {funds[1]} against {funds[0]}: correlation {corr:.3f}, tracking error {te:.1%} a year, "
                     f"return {gap * 100:+.2f} points a year")
    return lines


def _find(result: BacktestResult, name: str) -> Metrics | None:
    return next((r.metrics for r in result.runs if r.metrics.strategy == name), None)


def summary_markdown(result: BacktestResult, files: list[str], appendix: str = "") -> str:
    c = result.config
    years = (result.last - result.first).days / 365.25
    u = result.universe
    mix = ", ".join(f"{cls} {w:.0%} ({' → '.join(u.funds[cls])})" for cls, w in u.targets.items())
    income = with_income(result)
    flows = f"{c.initial:,.0f} invested on the first day, {c.deposit:,.0f} deposited every month"
    if c.withdrawal > 0:
        flows += f", {c.withdrawal:,.0f} withdrawn every month from {c.withdraw_from or result.first}"
    out = [
        "# Backtest: tax-aware rebalancing against the usual methods",
        "",
        f"{result.first} to {result.last} ({years:.1f} years), monthly steps on the first trading day of each "
        f"month. {flows}. Tax rates {c.short_term_rate:.0%} short-term, {c.long_term_rate:.0%} long-term; each "
        "year's tax is paid from the account once its wash-sale window has closed (early February), by the "
        "strategy selling what it chooses. Fractional shares, no trading costs, "
        + ("income paid in cash on each monthly step (see Data) and taxed with the year's bill, at the rate of its "
           "kind, netted with no gain or loss." if income else "dividends inside adjusted prices."),
        "",
        f"**Data:** {result.data.source}.",
        *[f"- {n}" for n in result.data.notes],
        "",
        f"**Portfolio:** {mix} (the first fund of a class is the one bought; the second is the replacement "
        "only the harvesting strategies use).",
        "",
        "## Results",
        "",
        results_table(list(result.runs), income),
        "",
        "Tax paid: every tax year's bill on gains realized in the period, the last year included"
        + (", and on the income received (of it on income)" if income else "") + ". Liquidation tax: "
        "what selling everything on the last day would add. Drift: |weight − target| averaged over the classes and "
        "cash and over every trading day; max drift is the largest of any class on any day. Tracking error: "
        "annualized standard deviation of the daily return minus the return of the target mix of each class's "
        "first fund. Turnover: sales per year over the mean account value.",
        "",
        "## At equal drift",
        "",
        "Final wealth mostly measures how much equity a strategy held, so strategies are compared at the same "
        "drift: each tax_weight sweep of the engine is read at the quarterly resets' mean drift, interpolating "
        "linearly between the two sweep points around it. The issue's goal: tax paid at most 0.5× the quarterly "
        "FIFO reset's and 0.75× the quarterly cheapest-lots reset's, with wealth after liquidation at least theirs."
        + (" With income paid in cash, the goal reads the tax on sales: the tax on the gains a strategy's own sales "
           "realize. Every strategy owes tax on the dividends and interest its holdings receive whatever it sells, "
           "so that tax (about the same for all) is left out of this ratio and kept in the ratio of all tax paid, "
           "shown beside it." if income else ""),
        "",
        equal_drift_table(result.equal_drift, income),
        "",
        *_verdict(result),
        "## Reading the numbers honestly",
        "",
        *_caveats(result),
        "",
        *([appendix, ""] if appendix else []),
        "## Files",
        "",
        *[f"- `{f}`" for f in files + ["summary.md"]],
        "",
    ]
    return "\n".join(out)


def _harvest_note(result: BacktestResult) -> str | None:
    """What harvesting did, against the optimizer at the same tax_weight and band nearest the
    quarterly FIFO reset's drift: losses realized, tax paid, and short-term gains taxed."""
    ref = _find(result, REFERENCES[0])
    harvest = [r for r in result.runs if r.metrics.family == "harvest"]
    if ref is None or not harvest:
        return None
    h = min(harvest, key=lambda r: abs(r.metrics.mean_abs_drift - ref.mean_abs_drift))
    o = next((r for r in result.runs if r.metrics.family == "optimizer" and r.metrics.band == h.metrics.band
              and r.metrics.tax_weight == h.metrics.tax_weight), None)
    if o is None:
        return None
    hm, om = h.metrics, o.metrics

    def short_term_taxed(run: StrategyRun) -> float:   # net short-term gains of the years that had them
        return float(run.yearly["realized_short_term"].clip(lower=0).sum()) if len(run.yearly) else 0.0
    text = (f"- **Harvesting.** {hm.strategy} realized {_money(hm.losses_realized)} of losses (after wash sales) "
            f"against {om.strategy}'s {_money(om.losses_realized)}, and paid {_money(hm.tax_on_sales)} against "
            f"{_money(om.tax_on_sales)}{' of tax on sales' if with_income(result) else ''}. A harvested loss lowers the basis of what replaces it, so the tax returns when "
            "that is sold.")
    hs, os_ = short_term_taxed(h), short_term_taxed(o)
    if hs > os_:
        text += (f" Here it often returns sooner and dearer: years with net short-term gains (taxed at "
                 f"{result.config.short_term_rate:.0%}) add up to {_money(hs)} against {_money(os_)}, while a "
                 "harvested short-term loss in a year of long-term gains offsets them at "
                 f"{result.config.long_term_rate:.0%}. The engine prices a sale at today's rate for its term and "
                 "gives no value to waiting until a lot turns long-term.")
    return text


def _band_note(result: BacktestResult) -> str | None:
    """The engine's band against no band (a plain monthly optimizer), both read at the quarterly
    FIFO reset's drift."""
    at = {e.sweep: e for e in result.equal_drift if e.reference == REFERENCES[0] and e.tax_paid is not None}
    plain = at.get("optimizer ±0pt")
    banded = [e for name, e in sorted(at.items()) if name.startswith("optimizer ±") and e is not plain]
    if plain is None or not banded:
        return None
    parts = ", ".join(f"{e.sweep} {_money(e.tax_on_sales)} ({e.tax_on_sales / plain.tax_on_sales - 1:+.1%})"
                      for e in banded)
    return (f"- **The band.** At {REFERENCES[0]}'s drift the plain monthly optimizer (no band, minimum-tax lots) "
            f"pays {_money(plain.tax_on_sales)}{' of tax on sales' if plain.income_tax else ''}; with a band: "
            f"{parts}. A band makes the engine trade less often, but the "
            "tax here is the forced selling of appreciated equity, which a band delays and does not avoid.")


def _gains(run: StrategyRun) -> tuple[float, float]:
    """(short-term, long-term) gains realized over the period: each year's net, summed."""
    if not len(run.yearly):
        return 0.0, 0.0
    return float(run.yearly["realized_short_term"].sum()), float(run.yearly["realized_long_term"].sum())


def _sources_note(result: BacktestResult) -> str | None:
    """Short- and long-term gains realized by the cheapest-lots reset and by the first optimizer
    sweep read at its drift (interpolated as the tax is), and what the long-term gains alone cost
    against the goal: whether the goal is within reach of better lot choice and short-term
    avoidance, or needs fewer long-term gains realized at the same drift."""
    reference = REFERENCES[1]
    e = next((e for e in result.equal_drift if e.reference == reference and e.between
              and e.sweep.startswith("optimizer")), None)
    runs = {r.metrics.strategy: r for r in result.runs}
    ref_tax = e.reference_tax_on_sales if e is not None else 0.0
    if e is None or reference not in runs or ref_tax <= 0:
        return None
    a, b, t = runs[e.between[0]], runs[e.between[1]], e.position  # interpolated as the tax is
    (sa, la), (sb, lb) = _gains(a), _gains(b)
    short, long_ = (1 - t) * sa + t * sb, (1 - t) * la + t * lb
    ref_short, ref_long = _gains(runs[reference])
    c = result.config
    floor = c.long_term_rate * long_
    goal = GOALS[reference]
    text = (f"- **Where the tax comes from.** {reference} realized {_money(ref_long)} of long-term and "
            f"{_money(ref_short)} of short-term gains (each year's net, summed); {e.sweep} at its drift "
            f"({e.between[0]} and {e.between[1]}, interpolated) {_money(long_)} and {_money(short)}. "
            + (f"Its saving is in the short-term gains, taxed at {c.short_term_rate:.0%}; the long-term ones, the "
               "forced selling of appreciated holdings, barely move. " if ref_long <= 0 or abs(long_ / ref_long - 1) < 0.05
               else f"The long-term ones, the forced selling of appreciated holdings, are {long_ / ref_long:.2f}× "
                    f"{reference}'s, the short-term ones {_ratio_of(short, ref_short)}. ")
            + f"At {c.long_term_rate:.0%} the long-term gains alone come to {_money(floor)}, "
            f"{floor / ref_tax:.2f}× {reference}'s tax {'on sales' if with_income(result) else 'paid'}")
    if floor / ref_tax > goal:
        loose = max((r for r in result.runs if r.metrics.sweep == e.sweep), key=lambda r: r.metrics.mean_abs_drift)
        text += (f": above the {goal:.2f}× goal before any short-term gain, so no short-term "
                 "avoidance reaches it (the engine already sells each fund's highest-basis lots first); it would "
                 "take fewer long-term gains realized at the same drift, or more losses to net them against "
                 "(harvesting's lever), and the "
                 f"loosest point of the sweep, {loose.metrics.strategy} (mean drift {_pts(loose.metrics.mean_abs_drift)}"
                 f" points), still realized {_money(_gains(loose)[1])} of them.")
    else:
        text += f", within the {goal:.2f}× goal."
    return text


def _income_tax_line(result: BacktestResult) -> str:
    """The income received and its tax, per reference strategy."""
    parts = [f"{r.metrics.strategy} received {_money(r.metrics.income)} and paid {_money(r.metrics.income_tax)} on it"
             for r in result.runs if r.metrics.strategy in REFERENCES]
    return "; ".join(parts) if parts else "in the table's \"of it on income\""


def _ratio_of(x: float, reference: float) -> str:
    return f"{x / reference:.2f}× its" if reference > 0 else f"{_money(x)} against its {_money(reference)}"


def _verdict(result: BacktestResult) -> list[str]:
    lines = []
    income = with_income(result) or any(e.reference_income_tax or e.income_tax for e in result.equal_drift)
    for e in result.equal_drift:
        goal = GOALS.get(e.reference)
        if goal is None:
            continue
        ratio = e.sales_tax_ratio
        if e.tax_paid is None:
            lines.append(f"- {e.sweep}: its drifts do not bracket {e.reference}'s; no equal-drift reading.")
            continue
        if ratio is None:  # read at its drift, but the reference paid nothing on sales to compare with
            on_sales = " on sales" if income else ""
            lines.append(f"- {e.sweep} at {e.reference}'s drift: {e.reference} paid no tax{on_sales}, so no ratio "
                         f"can be held to the goal; the sweep paid {_money(e.tax_on_sales)}"
                         f"{on_sales} there.")
            continue
        wealth = ("at least" if (e.wealth_gain or 0) >= 0 else "below")
        paid = (f"tax on sales {ratio:.2f}× (goal ≤ {goal:.2f}×: {'met' if ratio <= goal else 'not met'}; all tax "
                f"paid, income's too, {e.tax_ratio:.2f}×)" if income else
                f"tax paid {ratio:.2f}× (goal ≤ {goal:.2f}×: {'met' if ratio <= goal else 'not met'})")
        lines.append(f"- {e.sweep} at {e.reference}'s drift: {paid}; wealth after liquidation {wealth} the "
                     f"reference's ({_money(e.wealth_gain)}); tax including liquidation {_ratio(e.total_tax_ratio)}.")
    return lines + [""] if lines else []


def _caveats(result: BacktestResult) -> list[str]:
    out = []
    fifo, cheap = _find(result, "quarterly-fifo"), _find(result, "quarterly-mintax")
    if fifo and cheap:
        out.append(
            f"- **A deferral is not a saving.** The cheapest-lots reset paid {_money(cheap.tax_paid)} against FIFO's "
            f"{_money(fifo.tax_paid)} during the period, but would owe {_money(cheap.liquidation_tax)} against "
            f"{_money(fifo.liquidation_tax)} on liquidation: selling the high-basis lots leaves the low-basis ones "
            "for later. What it keeps is the growth on the tax not yet paid: wealth after liquidation "
            f"{_money(cheap.wealth_after_liquidation)} against {_money(fifo.wealth_after_liquidation)}. Tax paid, "
            "tax due on liquidation and wealth after both are reported for that reason; a harvested loss mostly "
            "defers tax too (the replacement is bought at the lower price).")
    flow = _find(result, "cash-flow")
    if flow and fifo:
        out.append(
            f"- **Final wealth rewards drift here.** Cash flow only never sells, drifts to a mean "
            f"{_pts(flow.mean_abs_drift)} points (max {_pts(flow.max_abs_drift)}) off target, overweight the "
            f"equities that beat the bond proxy, and ends with {_money(flow.wealth_after_liquidation)} after "
            f"liquidation against the quarterly reset's {_money(fifo.wealth_after_liquidation)}. That is the "
            "equity premium of this sample, not tax skill; hence the comparison at equal drift.")
    out.append(
        "- **Survivors.** The 20 stocks are large companies in 2022, chosen with hindsight: few of their lots sit "
        "at a loss for long, so there is less to harvest than in a real market, and gains are larger than a "
        "random 1990 portfolio's would have been.")
    if with_income(result):
        out.append(
            "- **Dividends are an assumption.** Adjusted closes say what a stock returned, not how much of it was "
            "paid out, so every stock is assumed to pay the same yield, taken out of its price on each monthly "
            "step and paid in cash (real yields differ by stock and year, and are paid quarterly), and taxed as "
            "qualified dividends however briefly the shares were held (a real dividend is qualified only on "
            "shares held more than 60 days around its ex-date, so a strategy that trades often would pay more "
            "on it; this moves all tax paid and wealth, not the tax on sales). That cash, and "
            "the bond proxy's interest, is what cash-first rebalancing buys the underweight classes with, so a "
            "higher yield lets the engine sell less; the quarterly resets get the same cash and still sell back to "
            f"target. Tax on income: {_income_tax_line(result)}.")
    else:
        out.append(
            "- **Adjusted closes.** Dividends are folded into prices, so the tax a real account pays every year on "
            "dividends (about the same for every strategy) is missing, and gains on sale are larger than they would "
            "be; `--dividend-yield` pays an assumed yield in cash instead.")
    if "BONDS" in result.universe.targets and with_income(result):
        out.append(
            "- **The bond proxy never loses.** It pays its yield as interest (its price, the same on every step, "
            "only accrues it between steps), taxed every "
            "year as ordinary income, so bonds never have a loss to harvest and never cushion a crash by rising. "
            "Every strategy still moves money from equities into it; what income does not cover is sold.")
    elif "BONDS" in result.universe.targets:
        out.append(
            "- **The bond proxy never loses.** It grows at a constant yield, so bonds never have a loss to harvest, "
            "never cushion a crash by rising, and their interest is taxed only as a gain on sale (real bond interest "
            "is ordinary income every year). Every strategy pays to move money from equities into it; that forced "
            "selling of appreciated equity is most of the tax any strategy pays here.")
    for note in (_sources_note(result), _band_note(result), _harvest_note(result)):
        if note:
            out.append(note)
    pairs = pair_stats(result)
    if pairs:
        out.append("- **Replacement funds** are not free of tracking: " + "; ".join(pairs) + ". The harvesting "
                   "strategies hold some of them, so part of their wealth difference is the funds', not tax.")
    outside = [(r.metrics.strategy, r.metrics.tax_from_outside) for r in result.runs
               if r.metrics.tax_from_outside >= 0.01]
    if outside:
        out.append("- **Tax paid from outside the account.** When a year's tax fell due, these accounts held too "
                   "little to pay all of it (withdrawals, or a fall in prices after the gains were realized): "
                   + ", ".join(f"{name} {_money(x)}" for name, x in outside) + ". It counts in tax paid, and "
                   "as money put in, it is taken off both wealth columns.")
    emptied = [(r.metrics.strategy, r.metrics.days_empty) for r in result.runs if r.metrics.days_empty]
    if emptied:
        out.append("- **Emptied accounts.** Withdrawals emptied these accounts before the end (trading days with "
                   "nothing left): " + ", ".join(f"{name} {days:,}" for name, days in emptied) + ". Their drift and "
                   "tracking error are over the days they held money.")
    failures = [(r.metrics.strategy, r.metrics.engine_failures) for r in result.runs if r.metrics.engine_failures]
    if failures:
        out.append("- **Engine failures.** On some steps the engine returned no plan (the solvers did not reach an "
                   "accurate optimum, or no feasible plan); the step then traded cash flow only: "
                   + ", ".join(f"{name} {n}" for name, n in failures) + " of "
                   f"{len(result.runs[0].monthly)} steps.")
    return out
