"""Terminal views (rich): drift bars, the plan's orders and per-lot tax.

Colour is never the only signal: every bar also carries its signed drift and a status word.
"""
from __future__ import annotations

import math

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from .drift import DriftReport
from .plan import Plan

BAR_WIDTH = 10  # characters on each side of the zero line


def money(x: float, currency: str = "") -> str:
    sign = "-" if x < 0 else ""
    return f"{sign}{abs(x):,.2f}" + (f" {currency}" if currency else "")


def pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def drift_bar(drift: float, band: float, scale: float, status: str) -> Text:
    """A diverging bar: overweight grows right in red, underweight left in green, around '│'."""
    # a drift of at least 0.05 points always shows one block, however small beside the largest
    n = min(BAR_WIDTH, math.ceil(abs(drift) / scale * BAR_WIDTH)) if abs(drift) >= 5e-4 else 0
    colour = {"overweight": "red", "underweight": "green"}.get(status, "red" if drift > 0 else "green")
    style = colour if status != "in_band" else f"dim {colour}"
    left = Text(" " * BAR_WIDTH)
    right = Text(" " * BAR_WIDTH)
    if drift < 0:
        left = Text(" " * (BAR_WIDTH - n)) + Text("█" * n, style=style)
    elif drift > 0:
        right = Text("█" * n, style=style) + Text(" " * (BAR_WIDTH - n))
    return left + Text("│") + right


def drift_table(report: DriftReport, title: str = "Drift") -> Table:
    scale = max([abs(r.drift) for r in report.rows] + [r.band for r in report.rows] + [1e-9])
    own = [f"{r.name} ±{r.band * 100:.1f}" for r in report.rows if r.band != report.band]
    bands = f"band ±{report.band * 100:.1f} pts" + (f" ({', '.join(own)})" if own else "")
    t = Table(title=f"{title}: {report.account} on {report.as_of}, value {money(report.value, report.currency)}, "
                    f"{bands}", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for col, justify in [("class", "left"), ("now", "right"), ("target", "right"), ("drift pts", "right"),
                         ("under │ over", "center"), ("status", "left")]:
        t.add_column(col, justify=justify, no_wrap=True)
    for r in report.rows:
        status_style = {"overweight": "bold red", "underweight": "bold green"}.get(r.status, "")
        t.add_row(r.name, pct(r.current_weight), pct(r.target_weight), f"{r.drift * 100:+.1f}",
                  drift_bar(r.drift, r.band, scale, r.status), Text(r.status.replace("_", " "), style=status_style))
    return t


def plan_view(plan: Plan) -> Group:
    cur = plan.currency
    parts = []
    head = Text.assemble(("Plan ", "bold"), f"{plan.account} as of {plan.as_of} — reason: {plan.reason}; ",
                         f"stage: {plan.stage.replace('_', '-')}; solver {plan.solver.name} ({plan.solver.status})")
    parts.append(head)
    if not plan.orders:
        parts.append(Text("No trades: the account stays as it is.", style="bold"))
    else:
        orders = Table(title="Orders (sells first: their proceeds fund the buys)", title_justify="left",
                       box=box.SIMPLE_HEAD, pad_edge=False)
        for col in ("side", "symbol", "class", "quantity", "price", "notional"):
            orders.add_column(col, justify="right" if col in ("quantity", "price", "notional") else "left")
        for o in plan.orders:
            orders.add_row(Text(o.side.upper(), style="red" if o.side == "sell" else "green"), o.symbol,
                           o.asset_class, f"{o.quantity:,.6g}", money(o.price), money(o.notional))
        parts.append(orders)
    sales = [(o, s) for o in plan.sells for s in o.lots]
    if sales:
        lots = Table(title="Lots relieved and their tax", title_justify="left", box=box.SIMPLE_HEAD,
                     pad_edge=False)
        for col in ("symbol", "lot", "acquired", "quantity", "term", "gain", "tax"):
            lots.add_column(col, justify="right" if col in ("quantity", "gain", "tax") else "left", no_wrap=True)
        for o, s in sales:
            lots.add_row(o.symbol, s.lot, s.acquired, f"{s.quantity:,.6g}", s.term, money(s.gain), money(s.tax))
        parts.append(lots)
    tax = plan.tax
    parts.append(Text.assemble(
        ("Tax: ", "bold"), f"short-term gain {money(tax.short_term_gain)}, long-term gain {money(tax.long_term_gain)}; ",
        ("estimated tax ", "bold"), (money(tax.estimated_tax, cur), "bold"),
        f"; net loss carried {money(tax.net_loss_carried)}" if tax.net_loss_carried else ""))
    parts.append(Text(f"Cash: {money(plan.cash_before, cur)} → {money(plan.cash_after, cur)}"
                      + (f" (withdrawal {money(plan.withdrawal, cur)} set aside)" if plan.withdrawal else "")
                      + (f"; trading cost {money(plan.trading_cost, cur)}" if plan.trading_cost else "")))
    parts.append(drift_table(plan.drift_before, "Drift before"))
    parts.append(drift_table(plan.drift_after, "Drift after"))
    for note in plan.notes:
        parts.append(Text(f"Note: {note}", style="yellow"))
    return Group(*parts)


def console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False, soft_wrap=False)
