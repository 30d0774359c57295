"""Terminal views (rich): drift bars, the plan's orders and per-lot tax.

Colour is never the only signal: every bar also carries its signed drift and a status word.
"""
from __future__ import annotations

import errno
import math
import os
import re
from decimal import Decimal, InvalidOperation

from rich import box
from rich.console import Console, Group
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from .drift import DriftReport
from .exports import cents, price_per_share, quantity_text
from .plan import Plan

BAR_WIDTH = 10  # characters on each side of the zero line


def money(x: float, currency: str = "") -> str:
    """To the cent as basket files write it (``exports.cents``: half away from zero, so 2.675 is
    2.68 here too, where float formatting showed 2.67), with a minus only where the cents show one
    (a tax of -0.001 is 0.00, not -0.00). Beyond what a Decimal cent holds (inf, 1e30), as a float."""
    try:
        text = format(cents(x), ",.2f")
    except InvalidOperation:
        text = f"{x:,.2f}"
    return text + (f" {currency}" if currency else "")


def shares(q: float) -> str:
    """A share count exactly as planned, with thousands separators: ``1,234,567`` (``.6g`` showed
    1.23457e+06) and every digit of a fraction, ``1,234.567891`` (``.6g`` showed 1,234.57)."""
    return format(Decimal(quantity_text(q)), ",f")  # the digits basket files write


def price(x: float, currency: str = "") -> str:
    """A price per share as basket files write it (``exports.price_per_share``): to the cent from
    $1 up, to $0.0001 below."""
    return f"{price_per_share(x):,}" + (f" {currency}" if currency else "")


def pct(x: float) -> str:
    """A weight as a percentage to 0.1, ``0.0%`` where it rounds to zero (never ``-0.0%``)."""
    return f"{_unsigned_zero(f'{x * 100:.1f}')}%"


def points(drift: float) -> str:
    """A drift in points to 0.1, signed (``+18.3``, ``-2.6``); one that rounds to zero is ``0.0``,
    with no sign (a drift of -0.001 points showed ``-0.0``), as on the web page."""
    return _unsigned_zero(f"{drift * 100:+.1f}")


def _unsigned_zero(text: str) -> str:
    """A number's text without its sign where it shows zero (``-0.0``, ``+0.0``)."""
    return text.lstrip("+-") if float(text) == 0 else text


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


def drift_table(report: DriftReport, title: str = "Drift") -> Group:
    """The drift view: a header line (account, date, value, bands), then the table. The header is
    its own line, wrapped at the terminal's width: as the table's title it wrapped at the table's
    (about 79 columns) in any terminal, so the example's header never printed on one line as the
    README shows it."""
    scale = max([abs(r.drift) for r in report.rows] + [r.band for r in report.rows] + [1e-9])
    own = [f"{r.name} ±{r.band * 100:.1f}" for r in report.rows if r.band != report.band]
    bands = f"band ±{report.band * 100:.1f} pts" + (f" ({', '.join(own)})" if own else "")
    header = Text(f"{title}: {report.account} on {report.as_of}, value {money(report.value, report.currency)}, "
                  f"{bands}")
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    # The bar column is left-justified with its header's '│' over the bars' zero line: centred,
    # rich trimmed each bar's trailing spaces first, so the zero line wandered from row to row.
    bar_header = f"{'under ':>{BAR_WIDTH}}│{' over':<{BAR_WIDTH}}"
    for col, justify in [("class", "left"), ("now", "right"), ("target", "right"), ("drift pts", "right"),
                         (bar_header, "left"), ("status", "left")]:
        t.add_column(col, justify=justify, no_wrap=True)
    for r in report.rows:
        status_style = {"overweight": "bold red", "underweight": "bold green"}.get(r.status, "")
        t.add_row(r.name, pct(r.current_weight), pct(r.target_weight), points(r.drift),
                  drift_bar(r.drift, r.band, scale, r.status), Text(r.status.replace("_", " "), style=status_style))
    return Group(header, t)


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
                           o.asset_class, shares(o.quantity), price(o.price), money(o.notional))
        parts.append(orders)
    sales = [(o.symbol, s) for o in plan.sells for s in o.lots]
    if sales:
        parts.append(lots_table("Lots relieved and their tax", sales))
    parts.append(tax_line(plan.tax, cur))
    parts.append(Text(f"Cash: {money(plan.cash_before, cur)} → {money(plan.cash_after, cur)}"
                      + (f" (withdrawal {money(plan.withdrawal, cur)} set aside)" if plan.withdrawal else "")
                      + (f"; trading cost {money(plan.trading_cost, cur)}" if plan.trading_cost else "")))
    parts.append(drift_table(plan.drift_before, "Drift before"))
    parts.append(drift_table(plan.drift_after, "Drift after"))
    for note in plan.notes:
        parts.append(Text(f"Note: {note}", style="yellow"))
    return Group(*parts)


def lots_table(title: str, sales) -> Table:
    """Lots relieved, one row each: (symbol, LotSale) pairs."""
    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("symbol", "lot", "acquired", "quantity", "term", "gain", "tax"):
        t.add_column(col, justify="right" if col in ("quantity", "gain", "tax") else "left", no_wrap=True)
    for symbol, s in sales:
        t.add_row(symbol, s.lot, s.acquired, shares(s.quantity), s.term, money(s.gain), money(s.tax))
    return t


def tax_line(tax, currency: str = "") -> Text:
    return Text.assemble(
        ("Tax: ", "bold"), f"short-term gain {money(tax.short_term_gain)}, long-term gain {money(tax.long_term_gain)}; ",
        ("estimated tax ", "bold"), (money(tax.estimated_tax, currency), "bold"),
        f"; net loss carried {money(tax.net_loss_carried)}" if tax.net_loss_carried else "")


def _simple(title: str, columns: list[tuple[str, str]]) -> Table:
    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for name, justify in columns:
        t.add_column(name, justify=justify, no_wrap=True)
    return t


def impact_view(impact) -> Group:
    """``rebalance tax``: each sell's tax next to the drift it removes, and the alternatives."""
    plan = impact.plan
    cur = plan.currency
    parts = [Text.assemble(("Pre-trade tax impact ", "bold"), f"{plan.account} as of {plan.as_of}")]
    if impact.sells:
        t = _simple("Sells and what they buy", [("symbol", "left"), ("shares", "right"), ("tax", "right"),
                                                ("pts off", "right"), ("class", "left"), ("buy-only", "right"),
                                                ("plan", "right"), ("tax/pt", "right")])
        for s in impact.sells:
            t.add_row(s.symbol, shares(s.quantity), money(s.tax), f"{s.points:.1f}", s.asset_class,
                      f"{points(s.drift_without)}%" if s.drift_without is not None else "—",
                      f"{points(s.drift_with)}%",
                      money(s.tax_per_point) if s.tax_per_point is not None else "—")
        parts.append(t)
        parts.extend(Text(f"• {s.sentence}") for s in impact.sells)
        parts.append(lots_table("Lots the sells relieve", [(o.symbol, l) for o in plan.sells for l in o.lots]))
    else:
        parts.append(Text("The plan sells nothing: cash alone does the rebalance, at no tax.", style="bold"))
    parts.append(tax_line(plan.tax, cur))
    if impact.tax_of_selling is not None:
        parts.append(Text(f"Selling adds {money(impact.tax_of_selling, cur)} to this year's tax compared with "
                          "buying only."))
    else:
        parts.append(Text(f"No buy-only plan to compare selling with: {impact.buy_only_infeasible}."))
    t = _simple("Alternatives (tracking error and max drift in points)",
                [("plan", "left"), ("est. tax", "right"), ("track.err", "right"),
                 ("max drift", "right"), ("turnover", "right"), ("orders", "right")])
    for a in impact.alternatives:
        t.add_row(a.name, f"{a.estimated_tax:,.0f}", f"{a.tracking_error * 100:.2f}",
                  f"{a.max_abs_drift * 100:.1f}", f"{a.turnover:,.0f}", str(a.trades))
    parts.append(t)
    return Group(*parts)


def what_if_view(w, currency: str = "") -> Group:
    parts = [Text.assemble(("What if you sell ", "bold"), f"{shares(w.quantity)} {w.symbol}?")]
    for pick in (w.minimum_tax, w.fifo):
        parts.append(lots_table(f"{pick.method} lots: lot tax {money(pick.lot_tax)}, estimated tax "
                                f"{money(pick.tax.estimated_tax, currency)}",
                                [(w.symbol, l) for l in pick.lots]))
    if w.saving >= 0:
        parts.append(Text(f"Choosing the lots saves {money(w.saving, currency)} against FIFO.", style="bold"))
    else:  # the engine ranks lots at their term's rate (SPEC); this year's netting can rank them otherwise
        parts.append(Text(f"FIFO lots cost {money(-w.saving, currency)} less here: the engine ranks lots by the "
                          "tax per share at their term's rate, and this year's realized gains, losses and "
                          "carryforwards tax this sale at other rates.", style="bold"))
    return Group(*parts)


def frontier_table(points) -> Table:
    t = _simple("Frontier: tax against tracking error as tax_weight grows",
                [("tax_weight", "right"), ("lot tax", "right"), ("est. tax", "right"),
                 ("tracking err", "right"), ("turnover", "right"), ("stage", "left")])
    for p in points:
        t.add_row(f"{p.tax_weight:g}", money(p.lot_tax), money(p.estimated_tax), f"{p.tracking_error * 100:.2f} pts",
                  money(p.plan.turnover), p.plan.stage.replace("_", "-"))
    return t


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 and C1 controls, but tab and newline


def visible(text: str) -> str:
    """``text`` with control characters written as escapes (ESC as ``\\x1b``): a name from a
    user's file reaches the terminal as the characters it holds, never as terminal commands."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class _Console(Console):
    def render_str(self, text: str, **kwargs) -> Text:
        return super().render_str(visible(text), **kwargs)

    def print(self, *objects, **kwargs) -> None:
        """As ``Console.print``, except that a table is never cut: one wider than the terminal (or
        than 80 columns, rich's width for a pipe) is printed whole, in lines the terminal wraps,
        where rich would shorten its cells (a tax per point of 101.88 showed as ``101.…``, a lot
        id ``VTI-2026`` as ``VTI-202…``). A group is printed part by part."""
        if len(objects) == 1 and isinstance(objects[0], Group) and not kwargs:
            for part in objects[0].renderables:
                self.print(part)
            return
        if len(objects) == 1 and isinstance(objects[0], Table) and not kwargs:
            need = Measurement.get(self, self.options.update_width(10 ** 6), objects[0])
            if need.maximum > self.width:
                width = self.width
                self.width = need.maximum
                try:
                    super().print(objects[0], crop=False)
                finally:
                    self.width = width
                return
        super().print(*objects, **kwargs)

    def on_broken_pipe(self) -> None:
        """Hand a closed pipe to the command line (``cli.common.run``), which tells whether it was
        stdout's reader that went away and exits as documented; rich's own handling exits 1 on the
        spot, whichever stream broke. Later writes to this console are dropped."""
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


def console(stderr: bool = False, width: int | None = None) -> Console:
    """A console that prints strings as they are: account ids, symbols, file names and error
    values come from users, so no rich markup (``[/x]`` raised MarkupError, ``[bold]`` vanished)
    and no emoji codes (``:joy:``); styles are given as ``Text`` styles."""
    return _Console(stderr=stderr, highlight=False, soft_wrap=False, width=width, markup=False, emoji=False)
