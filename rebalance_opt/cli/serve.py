"""``serve``: the drift page and its JSON API."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import app, run, whole_number_option


@app.command("serve", short_help="Serve the drift page and its JSON API.")
def serve(
    accounts: list[Path] = typer.Argument(None, help="Account files the web app may read (at least one)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback unless a token is set)."),
    port: int = typer.Option(8765, "--port", parser=whole_number_option(1, 65535), help="Port to listen on."),
    token: Optional[str] = typer.Option(None, "--token", envvar="REBALANCE_OPT_TOKEN",
                                        help="Bearer token required on a non-loopback address."),
    log: Optional[str] = typer.Option(None, "--log", help="Audit log to show (default: $REBALANCE_OPT_LOG)."),
):
    """Serve the drift page and its JSON API on http://HOST:PORT."""
    def body():
        from ..interrupts import ctrl_c_unnoted
        from ..server import run as run_server
        with ctrl_c_unnoted():  # Ctrl-C stops the server gracefully: exit 0
            run_server(list(accounts or []), host=host, port=port, token=token, audit_path=log)
    run(False, body)

