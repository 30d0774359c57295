"""The command line (SPEC section 3): thin typer commands over the library.

Each command parses, calls one library function and prints: rich views for people, one JSON
object on stdout for machines (``--json``). Typed errors map to exit codes: 2 input error,
3 no feasible plan, 4 an audit log that is not intact, 1 anything unexpected; a user's mistake
never shows a traceback.
One module per group of commands; importing them registers them on ``app``.
"""
from __future__ import annotations

import sys

import typer

from ..interrupts import ctrl_c_noted, ctrl_c_noting
from . import backtest as _backtest  # noqa: F401
from . import batch as _batch  # noqa: F401
from . import impact as _impact  # noqa: F401
from . import rebalance as _rebalance  # noqa: F401  (importing registers the commands)
from . import serve as _serve  # noqa: F401
from .common import UsageError, app, plain_where_unencodable, stdout_gone, to_json, unusable_stdout

__all__ = ["app", "main"]


def _bare_head(argv: list[str]) -> list[str]:
    """``log --head`` takes an optional value: a bare ``--head`` becomes ``--head=`` (print it)."""
    out = []
    for i, arg in enumerate(argv):
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        out.append("--head=" if arg == "--head" and (nxt is None or nxt.startswith("-")) else arg)
    return out


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python cli.py`` and the ``rebalance-opt`` console script."""
    argv = _bare_head(list(sys.argv[1:] if argv is None else argv))
    problem = unusable_stdout()
    if problem is not None:  # before anything runs: nothing planned, logged or written
        typer.echo(f"input error: stdout {problem}, so the command's output would be lost; "
                   "redirect it to a file (or to /dev/null to discard it)", err=True)
        sys.exit(2)
    plain_where_unencodable()
    with ctrl_c_noting():
        try:
            code = _run(argv)
            if sys.stdout is not None:
                sys.stdout.flush()  # what is still buffered: a reader gone by now is the same broken pipe
        except BrokenPipeError:  # stdout's reader went away after the command (run() handles it within)
            code = stdout_gone()
        except KeyboardInterrupt:  # Ctrl-C outside a command's body (typer building the commands): quiet, as within
            code = 130
        if ctrl_c_noted():  # a Ctrl-C whose KeyboardInterrupt CPython dropped (``interrupts._ctrl_c``)
            code = 130
    sys.exit(code)


def _run(argv: list[str]) -> int:
    try:
        code = app(args=argv, prog_name="rebalance-opt", standalone_mode=False)
    except UsageError as exc:  # wrong or missing arguments: an input error, exit 2
        exc.show(file=sys.stderr)
        if "--json" in argv:
            try:
                typer.echo(to_json({"error": {"message": exc.format_message(), "path": None, "file": None}}))
            except OSError:  # stdout failed (a closed pipe, a full disk): the message is on stderr
                pass
        code = 2
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        code = 130
    except SystemExit as exc:
        # rich ends with a bare exit 1 when stdout's reader left while it printed help text (its
        # ``on_broken_pipe``, raised while handling the BrokenPipeError, after pointing stdout at
        # /dev/null): the same quiet 141 as a command's own output meeting a closed pipe
        if exc.code == 1 and isinstance(exc.__context__, BrokenPipeError):
            return stdout_gone()
        raise
    return code if isinstance(code, int) else 0
