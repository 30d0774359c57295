"""Shared pieces of the command line: the typer apps, JSON output, error-to-exit-code mapping."""
from __future__ import annotations

import codecs
import json
import math
import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import typer

try:  # recent typer vendors click; older releases use click itself
    from typer._click.exceptions import UsageError  # noqa: F401  (re-exported for main)
except ImportError:  # pragma: no cover
    from click.exceptions import UsageError  # noqa: F401

from ..account_file import PLAIN_INTEGER, SPACE, parse_number
from ..errors import InputError, RebalanceError
from ..render import visible

app = typer.Typer(help="rebalance-opt: tax-aware portfolio rebalancing.", no_args_is_help=True, rich_markup_mode=None,
                  add_completion=False, pretty_exceptions_enable=False)
rebalance = typer.Typer(help="Drift, plans and the audit log of one account.", no_args_is_help=True,
                        rich_markup_mode=None)
app.add_typer(rebalance, name="rebalance")

JsonOpt = typer.Option(False, "--json", help="Print one JSON object on stdout and nothing else there.")


# What the terminal views print that a legacy encoding (latin-1, ascii, cp1252) may not hold, in
# plain characters; anything else it cannot encode is written as a Python escape (\u2588).
_PLAIN = {"█": "#", "│": "|", "─": "-", "—": "-", "–": "-", "→": "->", "•": "*", "±": "+/-", "×": "x",
          "…": "...", "≤": "<=", "≥": ">=", "−": "-", "≈": "~", "·": "."}


def _plain(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    text = exc.object[exc.start:exc.end]
    return "".join(_PLAIN.get(ch) or ch.encode("ascii", "backslashreplace").decode("ascii") for ch in text), exc.end


codecs.register_error("rebalance-opt-plain", _plain)


def plain_where_unencodable() -> None:
    """Let stdout and stderr write what their encoding cannot hold as plain characters (``#`` for a
    bar, ``->`` for an arrow) instead of failing: on a latin-1 or ascii stdout every view ended in
    "unexpected error: UnicodeEncodeError" (exit 1), ``generate`` after logging its plan. JSON
    output is ASCII already (``to_json``)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="rebalance-opt-plain")
        except (AttributeError, ValueError, OSError):  # no stream, or not a text file we own
            pass


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


# 128 + SIGPIPE: how a shell reports a command its pipe's reader left (`cat big | head`), so
# `... | head` reads the same for this command line as for the tools beside it.
STDOUT_GONE_EXIT = 141


def unusable_stdout() -> str | None:
    """Why stdout cannot take the command's output, or None: closed (``>&-``; Python then sets
    ``sys.stdout`` to None and click and rich drop every line silently, exit 0) or open for
    reading only (``1<FILE``: every write fails). Refused before any work, so an automation
    that lost its output learns it and nothing is logged; a closed descriptor 1 would also be
    reused by the next file opened (the audit log, the basket), where stray writes to it land."""
    if sys.stdout is None:
        return "is closed"
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):  # a stream in memory (tests, a program embedding main)
        return None
    try:
        os.fstat(fd)
    except OSError:
        return "is closed"
    try:
        import fcntl
        readable_only = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
    except (ImportError, OSError):  # pragma: no cover - Windows
        return None
    return "is open for reading only" if readable_only else None


def stdout_reader_gone() -> bool:
    """Whether stdout is a pipe or socket whose reading end is closed (``... | head`` after head
    exited): what a ``BrokenPipeError`` means when it is stdout's, not one from elsewhere (a
    worker's pipe), which stays an unexpected error. Polled, so nothing is written to find out."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):  # no stdout, or one in memory: it cannot break
        return False
    try:
        import select
        poll = select.poll()
        poll.register(fd, select.POLLOUT)
        events = poll.poll(0)
    except (AttributeError, OSError):  # pragma: no cover - no poll() (Windows): trust the error
        return True
    return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in events)


def stdout_gone() -> int:
    """Stop quietly once stdout's reader went away, as Python's documentation recommends (Note on
    SIGPIPE, in the ``signal`` module): stdout's descriptor becomes /dev/null, so flushing what is
    still buffered at exit cannot fail again (a second BrokenPipeError, "Exception ignored")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    except (AttributeError, ValueError, OSError):  # pragma: no cover - nothing left to protect
        pass
    return STDOUT_GONE_EXIT


class Terminated(KeyboardInterrupt):
    """SIGTERM during a long command (``batch``, ``backtest``): handled as Ctrl-C is (what was
    staged discarded, a word on how far it got), exit 143 as a process ended by SIGTERM."""

    exit_code = 143


@contextmanager
def sigterm_interrupts():
    """SIGTERM raises ``Terminated`` in the main thread while the block runs (it ended the process
    silently: a batch said nothing of what it had logged, a backtest left its staged report
    behind); the previous handler is restored."""
    def terminated(signum, frame):
        raise Terminated()
    try:
        previous = signal.signal(signal.SIGTERM, terminated)
    except ValueError:  # not the main thread (a library caller's): leave SIGTERM as it is
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(as_json: bool, action: Callable[[], None], sigterm: bool = False) -> None:
    """Run a command body, turning typed errors into their exit codes and messages; with
    ``sigterm``, SIGTERM is handled as Ctrl-C is for the whole body (``sigterm_interrupts``)."""
    try:
        if sigterm:
            with sigterm_interrupts():
                action()
        else:
            action()
    except RebalanceError as exc:
        fail(exc, as_json)
    except KeyboardInterrupt as exc:
        raise typer.Exit(getattr(exc, "exit_code", 130))
    except typer.Exit:  # a command's own exit code (click's Exit is a RuntimeError: not "unexpected")
        raise
    except BrokenPipeError as exc:
        if stdout_reader_gone():  # `... | head`: nothing to say, and nowhere to say it on stdout
            raise typer.Exit(stdout_gone()) from None
        unexpected(exc, as_json)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: exit 1, no traceback
        unexpected(exc, as_json)


def unexpected(exc: BaseException, as_json: bool = False) -> None:
    """Exit 1 with one line naming the exception (re-raised with REBALANCE_OPT_DEBUG set)."""
    if os.environ.get("REBALANCE_OPT_DEBUG"):
        raise exc
    err = RebalanceError(f"unexpected error: {type(exc).__name__}: {exc} "
                         "(set REBALANCE_OPT_DEBUG=1 for a traceback)")
    fail(err, as_json)


def fail(exc: RebalanceError, as_json: bool) -> None:
    kind = {2: "input error", 3: "no feasible plan"}.get(exc.exit_code, "error")
    typer.echo(visible(f"{kind}: {exc}"), err=True)  # names from files may hold control characters
    if as_json:
        try:
            typer.echo(to_json({"error": exc.to_dict()}))
        except OSError:  # stdout itself failed (a full disk, /dev/full): the message is on stderr
            pass
    raise typer.Exit(exc.exit_code)



def out_path(text: str | None, what: str) -> Path | None:
    """The path an ``--out`` option names (None if left out). An empty one (``--out "$OUT"`` with
    the variable unset) is an input error, as an empty ``--log`` is: as a path it reads as ".",
    which was reported as "is a directory (got '.')", or, for ``backtest``, took the current folder.
    A leading ``~`` is the home folder, as for ``--log`` (``--out=~/b.csv`` reaches us unexpanded:
    the shell expands a ``~`` only at the start of a word)."""
    if text is None:
        return None
    if text == "":
        raise InputError(f"is empty: give {what}", path="--out", value=text, has_value=True)
    return Path(text).expanduser()


def basket_and_log(out_text: str | None, fmt: str | None, reason: str | None, dry_run: bool, log: str | None):
    """The options ``generate`` and ``batch`` share, checked before any work so an input error
    writes nothing: ``(out, basket format, reason, log location)``, each None where not asked for
    (the log with ``--dry-run``)."""
    from ..audit import check_writable, resolve_log
    from ..plan import check_reason
    from ..exports import check_destination, resolve_format
    out = out_path(out_text, "the basket's file path, or leave out --out to write no basket")
    why = check_reason(reason, "--reason") if reason is not None else None
    if out is None and fmt is not None:
        raise InputError("needs --out FILE to write the basket to", path="--format", value=fmt, has_value=True)
    basket_format = None
    if out is not None:
        check_destination(out)
        basket_format = resolve_format(out, fmt)
    where = None
    if not dry_run:
        where = resolve_log(log)
        check_writable(where)
    return out, basket_format, why, where


def refuse_overwrite(out: Path, inputs: list[tuple[Path, str]], folder: Path | None = None) -> None:
    """``exports.refuse_overwrite`` with the account folder the command plans, if any."""
    from ..exports import refuse_overwrite as refuse
    refuse(out, inputs, [folder] if folder is not None else [])


def audit_log_files(where, log: str | None) -> list[tuple[Path, str]]:
    """The audit log's files (``LogLocation.files``) as ``refuse_overwrite`` inputs. ``where`` is
    the log the command appends to; a dry run (None) appends nothing, but the log ``--log`` or the
    environment names is protected all the same (a ``--log`` that names no usable log protects
    nothing, and is no error in a dry run)."""
    from ..audit import resolve_log
    if where is None:
        try:
            where = resolve_log(log)
        except InputError:
            return []
    return where.files()


def number_option(value: Any) -> float:
    """The ``parser`` of a number option (``--deposit``, ``--years``, ...): a plain ASCII decimal
    (``parse_number``; typer's own float took ``1_000``), else exit 2 naming the option and the
    value. inf and nan are let through to the command's range checks, which name them."""
    if not isinstance(value, str):  # the option's default
        return float(value)
    try:
        return parse_number(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a number (ASCII digits, with an optional sign, fraction "
                                 "and exponent)") from None


def whole_number_option(least: int | None = None, most: int | None = None) -> Callable[[Any], int]:
    """The ``parser`` of a whole-number option (``--workers``, ``--chunk``, ``--show``, ``--port``):
    ASCII digits with an optional sign and spaces around (typer's own int took ``1_0`` as 10, so
    ``--show 1_0`` showed entry 10), within [least, most], else exit 2 naming the option."""
    def parse(value: Any) -> int:
        if not isinstance(value, str):  # the option's default
            return int(value)
        body = value.strip(SPACE)
        if not PLAIN_INTEGER.fullmatch(body):
            raise typer.BadParameter(f"{value!r} is not a whole number (ASCII digits)")
        number = int(body)
        if (least is not None and number < least) or (most is not None and number > most):
            bounds = f"from {least} to {most}" if least is not None and most is not None else (
                f"at least {least}" if least is not None else f"at most {most}")
            raise typer.BadParameter(f"{number} is out of range: {bounds}")
        return number
    return parse


def parse_numbers(text: str, option: str, what: str, *, at_most: float = math.inf) -> list[float]:
    """Comma-separated numbers of an option (``--tax-weights`` of ``backtest`` and of
    ``rebalance tax``): every item a plain ASCII decimal (``parse_number``; spaces around it
    allowed), none empty (``1,,2`` and ``1,2,`` are refused, not read as ``1,2``), each finite,
    >= 0 and at most ``at_most``. ``what`` says the rule in the error, which names the option,
    the item and the whole value. A negative zero reads as 0."""
    items = text.split(",")
    out = []
    for i, raw in enumerate(items, 1):
        item = raw.strip(SPACE)
        try:
            x = parse_number(item) if item else None
        except ValueError:
            x = None
        if x is not None and math.isfinite(x) and 0 <= x <= at_most:
            out.append(x)
            continue
        problem = ("is empty" if not item else f"({item!r}) is not a number" if x is None else
                   f"({item!r}) is not finite" if not math.isfinite(x) else f"({item!r}) is out of range")
        raise InputError(f"must be comma-separated {what}: item {i} {problem}", path=option, value=text,
                         has_value=True)
    return out
