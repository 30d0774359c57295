"""The command line (SPEC section 3): thin typer commands over the library.

Each command parses, calls one library function and prints: rich views for people, one JSON
object on stdout for machines (``--json``). Typed errors map to exit codes: 2 input error,
3 no feasible plan, 1 anything unexpected; a user's mistake never shows a traceback.
"""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer

try:  # recent typer vendors click; older releases use click itself
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover
    from click.exceptions import UsageError

from .errors import InputError, RebalanceError

app = typer.Typer(help="rebalance-opt: tax-aware portfolio rebalancing.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
rebalance = typer.Typer(help="Drift, plans and the audit log of one account.", no_args_is_help=True)
app.add_typer(rebalance, name="rebalance")

JsonOpt = typer.Option(False, "--json", help="Print one JSON object on stdout and nothing else there.")


def to_json(obj: Any) -> str:
    """JSON with non-finite numbers written as strings ("inf"), so the output stays valid JSON."""
    def clean(x):
        if isinstance(x, float) and not math.isfinite(x):
            return str(x)
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x
    return json.dumps(clean(obj), indent=2, allow_nan=False)


def run(as_json: bool, action: Callable[[], None]) -> None:
    """Run a command body, turning typed errors into their exit codes and messages."""
    try:
        action()
    except RebalanceError as exc:
        fail(exc, as_json)
    except (KeyboardInterrupt, BrokenPipeError):
        raise typer.Exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: exit 1, no traceback
        if os.environ.get("REBALANCE_OPT_DEBUG"):
            raise
        err = RebalanceError(f"unexpected error: {type(exc).__name__}: {exc} "
                             "(set REBALANCE_OPT_DEBUG=1 for a traceback)")
        fail(err, as_json)


def fail(exc: RebalanceError, as_json: bool) -> None:
    kind = {2: "input error", 3: "no feasible plan"}.get(exc.exit_code, "error")
    typer.echo(f"{kind}: {exc}", err=True)
    if as_json:
        typer.echo(to_json({"error": exc.to_dict()}))
    raise typer.Exit(exc.exit_code)


@rebalance.command("check")
def check(account: Path = typer.Argument(..., help="Account file (.toml or .json)."), as_json: bool = JsonOpt):
    """Drift of every asset class and cash against its band."""
    def body():
        from .account_file import load_account
        from .drift import drift_report
        report = drift_report(load_account(account))
        if as_json:
            typer.echo(to_json(report.to_dict()))
        else:
            from .render import console, drift_table
            console().print(drift_table(report))
    run(as_json, body)


@rebalance.command("generate")
def generate(
    account: Path = typer.Argument(..., help="Account file (.toml or .json)."),
    reason: Optional[str] = typer.Option(None, "--reason", help="Why this rebalance (default: inferred)."),
    as_json: bool = JsonOpt,
    out: Optional[Path] = typer.Option(None, "--out", help="Write the basket to this file."),
    fmt: Optional[str] = typer.Option(None, "--format", help="Basket format: csv, json or fix "
                                                                "(default: from --out's extension)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Record nothing in the audit log."),
    log: Optional[Path] = typer.Option(None, "--log", help="Audit log path (default: $REBALANCE_OPT_LOG)."),
):
    """Solve for a tax-aware rebalance and print the plan (orders, per-lot tax, drift before/after)."""
    def body():
        from .account_file import load_account
        from .solve import plan_rebalance
        if reason is not None and not reason.strip():
            raise InputError("must not be empty", path="--reason", value=reason, has_value=True)
        acct = load_account(account)
        plan = plan_rebalance(acct, reason=reason.strip() if reason else None)
        if as_json:
            typer.echo(to_json(plan.to_dict()))
        else:
            from .render import console, plan_view
            console().print(plan_view(plan))
    run(as_json, body)


@app.command("serve")
def serve(
    accounts: list[Path] = typer.Argument(None, help="Account files the web app may read."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback unless a token is set)."),
    port: int = typer.Option(8765, "--port", help="Port to listen on."),
    token: Optional[str] = typer.Option(None, "--token", envvar="REBALANCE_OPT_TOKEN",
                                        help="Bearer token required on a non-loopback address."),
):
    """Serve the drift page and its JSON API on http://HOST:PORT."""
    def body():
        from .server import run as run_server
        run_server(list(accounts or []), host=host, port=port, token=token)
    run(False, body)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python cli.py`` and the ``rebalance-opt`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        code = app(args=argv, prog_name="rebalance-opt", standalone_mode=False)
    except UsageError as exc:  # wrong or missing arguments: an input error, exit 2
        if "--json" in argv:
            typer.echo(to_json({"error": {"message": exc.format_message(), "path": None, "file": None}}))
        exc.show(file=sys.stderr)
        code = 2
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        code = 130
    sys.exit(code if isinstance(code, int) else 0)
