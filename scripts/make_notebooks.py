"""Writes notebooks/*.ipynb (without outputs) from the cells below: edit here, run, commit both."""
import nbformat as nbf

one = [
"@@# Drift, the tax/tracking frontier, and a basket\n\nStart here to tune `tax_weight` on an account: load it, look at its drift, sweep `tax_weight` (the same compiled problem is re-solved, only a parameter changes), plot tax paid against tracking error after the trade, pick a point and look at its basket and the lots it sells.",
"""from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from rebalance_opt import ModelCache, Planner, drift_report, load_account
from rebalance_opt.impact import frontier, tax_impact

ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
account = load_account(ROOT / "examples" / "household.toml")
print(f"{account.id}: value {account.value:,.2f} {account.currency}, {len(account.lots)} lots")""",
"@@## Drift per class\nRed bars are overweight, green underweight; the grey band is each class's tolerance.",
"""drift = pd.DataFrame([r.to_dict() for r in drift_report(account).rows]).set_index("name")
drift[["current_weight", "target_weight", "drift", "band", "status"]].style.format(
    {"current_weight": "{:.1%}", "target_weight": "{:.1%}", "drift": "{:+.1%}", "band": "±{:.1%}"})""",
"""fig, ax = plt.subplots(figsize=(7, 3.5))
y = range(len(drift))
ax.barh(list(y), [2 * b * 100 for b in drift.band], left=[-b * 100 for b in drift.band], color="0.9", label="band")
ax.barh(list(y), drift.drift * 100, color=["tab:red" if d > 0 else "tab:green" for d in drift.drift])
ax.axvline(0, color="black", lw=0.8)
ax.set_yticks(list(y), drift.index)
ax.invert_yaxis()
ax.set_xlabel("drift (points)")
ax.set_title("Drift from target")
plt.show()""",
"@@## Sweep `tax_weight`\nWith `tax_weight = 1`, tax of 1% of the account weighs as much as a 10-point drift in one class. One `Planner` keeps the compiled model, so the sweep re-solves without recompiling.",
"""planner = Planner(cache=ModelCache())  # its own cache (Planner() shares the process-wide one)
weights = [0.0, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0]
points = frontier(account, weights, planner)
curve = pd.DataFrame([p.to_dict() for p in points]).set_index("tax_weight")
curve["tracking_error_pts"] = curve.tracking_error * 100
curve[["lot_tax", "estimated_tax", "tracking_error_pts", "turnover", "stage"]]""",
"""# on these weights more tax_weight never pays more tax, never tracks closer (with fractional
# shares and no trading cost that holds on any sweep: with a cost, tracking plus trading cost
# never falls but tracking alone may, a little; whole shares can break it by under a share: README)
assert (curve.lot_tax.diff().dropna() <= 1e-6 * account.value).all()
assert (curve.tracking_error.diff().dropna() >= -1e-6).all()
assert len(planner.cache) == 1  # one compiled model served the whole sweep""",
"""fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(curve.tracking_error_pts, curve.lot_tax, marker="o")
for w, row in curve.iterrows():
    ax.annotate(f"{w:g}", (row.tracking_error_pts, row.lot_tax), textcoords="offset points", xytext=(5, 5))
ax.set_xlabel("tracking error after the trade (points)")
ax.set_ylabel("lot-level tax of the plan ($)")
ax.set_title("Tax against tracking error, by tax_weight")
plt.show()""",
"@@## Pick a point: its basket, lots and tax\nThe sells list the lots they relieve (minimum tax first); the tax impact puts each sell's tax next to the drift it removes.",
"""chosen = next(p for p in points if p.tax_weight == 1.0).plan
basket = pd.DataFrame([{k: v for k, v in o.to_dict().items() if k != "lots"} for o in chosen.orders])
basket""",
"""lots = pd.DataFrame([{"symbol": o.symbol, **l.to_dict()} for o in chosen.sells for l in o.lots])
lots""",
"""impact = tax_impact(account.with_policy(tax_weight=1.0), planner)
for s in impact.sells:
    print(s.sentence)
print(f"estimated tax {chosen.tax.estimated_tax:,.2f}; alternatives:")
pd.DataFrame([a.to_dict() for a in impact.alternatives]).set_index("name")[["estimated_tax", "tracking_error", "turnover"]]""",
]

two = [
"@@# Tuning the penalty over a simulated history\n\nTwo years of monthly rebalancing on the household account, with monthly deposits and prices that drift (a seeded random walk, so the run is reproducible). For a few `tax_weight` values the same engine plans every month; executed plans become lots, and each year's tax is paid at year end. The table and plot show taxes paid against the tracking error held, over time.",
"""from datetime import date
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from rebalance_opt import Planner, drift_report, load_account
from rebalance_opt.simulate import advance, apply_plan
from rebalance_opt.tax import year_tax

ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
start = load_account(ROOT / "examples" / "household.toml")
MONTHS, DEPOSIT = 24, 2_000.0
rng = np.random.default_rng(7)
symbols = sorted(start.prices)
drift_per_month = {s: (0.002 if start.classes.get(s) in ("US_BOND", "TIPS") else 0.007) for s in symbols}  # bonds calmer
shocks = rng.normal(0, 0.035, size=(MONTHS, len(symbols)))
price_path = [start.prices]
for m in range(MONTHS):
    prev = price_path[-1]
    price_path.append({s: round(prev[s] * float(np.exp(drift_per_month[s] + shocks[m, i])), 2)
                       for i, s in enumerate(symbols)})
dates = [date(2026 + (11 + m) // 12, (11 + m) % 12 + 1, 24) for m in range(MONTHS + 1)]""",
"""def accrued(t) -> float:
    # this year's tax so far, if the year ended now (netting with carryforwards)
    return year_tax(t.realized_short_term - t.carryforward_short_term,
                    t.realized_long_term - t.carryforward_long_term, t).tax


def run(tax_weight: float) -> pd.DataFrame:
    planner = Planner()
    account = start.with_policy(tax_weight=tax_weight)
    rows, paid = [], 0.0
    for m in range(MONTHS):
        if m:
            account, year_end = advance(account, dates[m], price_path[m], deposit=DEPOSIT)
            paid += year_end.tax_paid if year_end else 0.0
        plan = planner.plan(account)
        account = apply_plan(account, plan)
        rows.append({"month": m, "date": dates[m], "tax_paid": paid,
                     "accrued": accrued(account.tax),
                     "tracking_error": np.sqrt(plan.drift_after.squared_error),
                     "turnover": plan.turnover, "value": account.value})
    return pd.DataFrame(rows)

runs = {w: run(w) for w in (0.0, 1.0, 10.0)}
summary = pd.DataFrame({w: {"tax paid": r.tax_paid.iloc[-1],
                            "tax accrued, not yet due": r.accrued.iloc[-1],
                            "mean tracking error (pts)": r.tracking_error.mean() * 100,
                            "turnover": r.turnover.sum()} for w, r in runs.items()}).T
summary.index.name = "tax_weight"
summary""",
"""# more weight on tax: less tax realized, more drift held
total_tax = summary["tax paid"] + summary["tax accrued, not yet due"]
assert total_tax.iloc[-1] <= total_tax.iloc[0] + 1e-6
assert summary["mean tracking error (pts)"].iloc[-1] >= summary["mean tracking error (pts)"].iloc[0] - 1e-6""",
"""fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
for w, r in runs.items():
    a.plot(r.date, r.tracking_error * 100, label=f"tax_weight {w:g}")
    b.plot(r.date, r.tax_paid + r.accrued, label=f"tax_weight {w:g}")
a.set_title("tracking error after each month's plan (points)")
b.set_title("tax paid + tax accrued this year ($)")
a.legend(); b.legend()
fig.autofmt_xdate()
plt.show()""",
]

def build(cells, name):
    """The notebook of ``cells``; cell ids are ``name-N`` (nbformat's own are random, so every
    regeneration rewrote every id and the diff showed each cell changed)."""
    n = nbf.v4.new_notebook()
    n.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    out = []
    for i, c in enumerate(cells):
        cell = nbf.v4.new_markdown_cell(c[2:]) if c.startswith("@@") else nbf.v4.new_code_cell(c)
        cell.id = f"{name}-{i}"
        out.append(cell)
    n.cells = out
    return n


NOTEBOOKS = {"notebooks/01_drift_and_frontier.ipynb": (one, "drift-frontier"),
             "notebooks/02_tuning_over_time.ipynb": (two, "tuning-over-time")}

if __name__ == "__main__":
    for path, (cells, name) in NOTEBOOKS.items():
        nbf.write(build(cells, name), path)
