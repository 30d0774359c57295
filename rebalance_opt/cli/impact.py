"""``rebalance tax``: the plan's tax next to the drift it removes, what-if sales, the frontier."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer

from ..account import MAX_TAX_WEIGHT
from ..account_file import parse_number
from ..errors import InputError
from .common import JsonOpt, parse_numbers, rebalance, run, to_json


def parse_sell(text: str) -> tuple[str, float | None]:
    """``SYMBOL`` or ``SYMBOL:QTY``."""
    symbol, colon, qty = text.partition(":")
    if not symbol.strip() or (colon and not qty.strip()):  # "VTI:" is a quantity left out, not "all of it"
        raise InputError("give SYMBOL or SYMBOL:QTY", path="--sell", value=text, has_value=True)
    if not colon:
        return symbol.strip(), None
    try:
        quantity = parse_number(qty)
    except ValueError:
        raise InputError("quantity after ':' must be a number", path="--sell", value=text, has_value=True) from None
    if not math.isfinite(quantity):  # nan, inf, 1e400: named as the option, not the library's argument
        raise InputError("quantity after ':' must be a finite number of shares", path="--sell", value=text,
                         has_value=True)
    return symbol.strip(), quantity


def parse_weights(text: str) -> list[float]:
    """``--tax-weights``: as ``backtest``'s (``parse_numbers``), in the range of policy.tax_weight."""
    return parse_numbers(text, "--tax-weights", f"numbers from 0 to {MAX_TAX_WEIGHT:,.0f} (the range of "
                         "policy.tax_weight)", at_most=MAX_TAX_WEIGHT)


@rebalance.command("tax", short_help="A rebalance's tax before trading; is each sell worth it?")
def tax_command(
    account: Path = typer.Argument(..., help="Account file (.toml or .json)."),
    as_json: bool = JsonOpt,
    sell: Optional[str] = typer.Option(None, "--sell", help="What if I sell SYMBOL[:QTY]? Minimum-tax lots "
                                                             "against FIFO."),
    show_frontier: bool = typer.Option(False, "--frontier", help="Sweep tax_weight: tax against tracking error."),
    tax_weights: Optional[str] = typer.Option(None, "--tax-weights", help="Comma-separated tax_weight values for "
                                                                          "--frontier."),
):
    """Estimate the tax of the rebalance before trading, and whether each sell is worth it."""
    def body():
        from ..account_file import load_account
        from ..impact import DEFAULT_TAX_WEIGHTS, frontier, tax_impact, what_if_sell
        from ..solve import Planner
        what = parse_sell(sell) if sell is not None else None
        if tax_weights is not None and not show_frontier:  # as --format without --out: not ignored silently
            raise InputError("needs --frontier: the tax weights are the ones the frontier sweeps",
                             path="--tax-weights", value=tax_weights, has_value=True)
        weights = parse_weights(tax_weights) if tax_weights is not None else list(DEFAULT_TAX_WEIGHTS)
        acct = load_account(account)
        what_if = what_if_sell(acct, *what) if what else None  # a bad --sell is exit 2 before any solve
        planner = Planner()
        impact = tax_impact(acct, planner)
        points = frontier(acct, weights, planner) if show_frontier else None
        if as_json:
            out = impact.to_dict()
            if what_if is not None:
                out["what_if"] = what_if.to_dict()
            if points is not None:
                out["frontier"] = [p.to_dict() for p in points]
            typer.echo(to_json(out))
            return
        from ..render import console, frontier_table, impact_view, what_if_view
        con = console()
        con.print(impact_view(impact))
        if what_if is not None:
            con.print(what_if_view(what_if, acct.currency))
        if points is not None:
            con.print(frontier_table(points))
    run(as_json, body)
