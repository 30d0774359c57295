"""``rebalance check``, ``rebalance generate`` and ``rebalance log`` (SPEC sections 3 and 4)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import InputError
from .common import JsonOpt, audit_log_files, basket_and_log, rebalance, refuse_overwrite, run, to_json, whole_number_option

@rebalance.command("check")
def check(account: Path = typer.Argument(..., help="Account file (.toml or .json)."), as_json: bool = JsonOpt):
    """Drift of every asset class and cash against its band."""
    def body():
        from ..account_file import load_account
        from ..drift import drift_report
        report = drift_report(load_account(account))
        if as_json:
            typer.echo(to_json(report.to_dict()))
        else:
            from ..render import console, drift_table
            console().print(drift_table(report))
    run(as_json, body)


@rebalance.command("generate", short_help="Plan a tax-aware rebalance: orders, basket, log entry.")
def generate(
    account: Path = typer.Argument(..., help="Account file (.toml or .json)."),
    reason: Optional[str] = typer.Option(None, "--reason", help="Why this rebalance (default: inferred)."),
    as_json: bool = JsonOpt,
    out_text: Optional[str] = typer.Option(None, "--out", metavar="PATH",
                                           help="Write the basket to this file (also with --dry-run)."),
    fmt: Optional[str] = typer.Option(None, "--format", help="Basket format: csv, json or fix "
                                                                "(default: from --out's extension)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Record nothing in the audit log."),
    log: Optional[str] = typer.Option(None, "--log", help="Audit log file (default: $REBALANCE_OPT_LOG, else "
                                                            "~/.local/share/rebalance-opt/audit.sqlite)."),
):
    """Solve for a tax-aware rebalance, print the plan, write the basket and log the rebalance."""
    def body():
        from ..account_file import account_from_dict, account_to_dict, read_account_data
        from ..audit import AuditLog
        from ..exports import check_account_exportable, stage_basket
        from ..interrupts import signals_held
        from ..solve import plan_rebalance
        # Every option is checked before solving, so an input error writes nothing anywhere.
        out, basket_format, why, where = basket_and_log(out_text, fmt, reason, dry_run, log)
        data = read_account_data(account)  # read once: for its lots_file here, then validated
        if out is not None:
            refuse_overwrite(out, [(account, "the account file")] + _lots_file(account, data)
                             + audit_log_files(where, log))
        acct = account_from_dict(data, source=str(account), base_dir=account.parent)
        if basket_format is not None:
            check_account_exportable(basket_format, acct, file=str(account))
        plan = plan_rebalance(acct, reason=why)

        # Stage the basket, commit the log entry, then put the basket in place: no half states.
        staged = stage_basket([plan], out, basket_format) if out is not None and basket_format else None
        try:
            with signals_held():  # Ctrl-C waits until both are in place
                if where is not None:
                    entry = AuditLog(where).append(plan.to_dict(), account_to_dict(acct),
                                                   staged.to_dict() if staged else None)
                    plan = plan.with_log_id(entry.id)
                if staged is not None:
                    staged.commit()
        finally:
            if staged is not None:
                staged.discard()

        notes = [staged.summary()] if staged is not None else []
        notes.append(f"logged as entry {plan.log_id} in {where.path}" if where is not None
                     else "dry run: nothing recorded in the audit log")
        if as_json:
            typer.echo(to_json({**plan.to_dict(), "basket": staged.to_dict() if staged else None}))
            for line in notes:
                typer.echo(line, err=True)
        else:
            from ..render import console, plan_view
            console().print(plan_view(plan))
            for line in notes:
                typer.echo(line)
    run(as_json, body)


def _log_table(rows: list[dict]):
    """The listing of ``rebalance log``: one row per entry, money to the cent."""
    from rich import box
    from rich.table import Table

    from ..render import money
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("id", "time (UTC)", "account", "reason", "orders", "est. tax"):
        t.add_column(col, justify="right" if col in ("id", "orders", "est. tax") else "left",
                     no_wrap=col not in ("account", "reason"), overflow="fold",
                     min_width={"account": 12, "reason": 15}.get(col))
    for r in rows:
        tax = r["estimated_tax"]
        t.add_row(str(r["id"]), str(r["time"])[:16].replace("T", " "), str(r["account"]), str(r["reason"]),
                  "" if r["orders"] is None else str(r["orders"]),
                  money(tax) if isinstance(tax, (int, float)) else "")
    return t


def _lots_file(account: Path, data) -> list[tuple[Path, str]]:
    """The account's own lots CSV (``lots_file`` in its parsed ``data``), if it names one: the
    basket must not replace it."""
    name = data.get("lots_file") if isinstance(data, dict) else None
    return [(account.parent / name, "the account's lots_file")] if isinstance(name, str) else []


@rebalance.command("log", short_help="List, show or verify the audit log.")
def log_command(
    account: Optional[str] = typer.Option(None, "--account", help="List only this account's entries."),
    since: Optional[str] = typer.Option(None, "--since", help="List entries at or after this date "
                                                               "(YYYY-MM-DD, UTC) or ISO date-time."),
    show: Optional[int] = typer.Option(None, "--show", parser=whole_number_option(), help="Print entry ID whole."),
    verify: bool = typer.Option(False, "--verify", help="Check the hash chain; exit 4 naming the first "
                                                         "altered or missing entry."),
    head: Optional[str] = typer.Option(None, "--head", help="Alone: print the head (ID:HASH) to keep elsewhere. "
                                                             "With --verify and a kept ID:HASH: check the log still "
                                                             "holds it."),
    as_json: bool = JsonOpt,
    log: Optional[str] = typer.Option(None, "--log", help="Audit log file (default: $REBALANCE_OPT_LOG, else "
                                                            "~/.local/share/rebalance-opt/audit.sqlite)."),
):
    """List audit log entries, show one, print the head (ID:HASH), or verify the chain."""
    def body():
        from ..audit import AuditLog, parse_since, resolve_log
        from ..exports import is_utf8
        where = resolve_log(log)
        audit = AuditLog(where)
        modes = [name for name, on in (("--show", show is not None), ("--verify", verify),
                                       ("--head", head is not None and not verify)) if on]
        if len(modes) > 1:
            raise InputError(f"give one of {', '.join(modes)}", path=modes[1])
        filters = [name for name, v in (("--account", account), ("--since", since)) if v is not None]
        if modes and filters:
            raise InputError(f"filters only the listing, not {modes[0]}", path=filters[0])
        if account is not None and not is_utf8(account):  # bytes of another encoding (was UnicodeEncodeError)
            raise InputError("is not UTF-8 text (bytes of another encoding), so it names no account",
                             path="--account", value=account, has_value=True)
        if verify:
            if head is not None and not head.strip():  # `--head "$KEPT"` with KEPT empty must not pass unchecked
                raise InputError("with --verify, give the ID:HASH `log --head` printed (or leave out --head)",
                                 path="--head", value=head, has_value=True)
            result = audit.verify(head)
            if as_json:
                typer.echo(to_json(result.to_dict()))
            if not result.ok:
                typer.echo(f"audit log verify failed: {result.message}", err=True)
                failed.append(result)
            else:
                typer.echo(result.message, err=as_json)
                for warning in result.warnings:
                    typer.echo(f"warning: {warning}", err=True)
        elif head is not None:
            if head:
                raise InputError("a head is checked with --verify --head ID:HASH; --head alone prints it",
                                 path="--head", value=head, has_value=True)
            entry_id, digest = audit.head()
            if as_json:
                typer.echo(to_json({"log": str(where.path), "id": entry_id, "hash": digest}))
            else:
                # ID:HASH, the form --verify --head checks most strictly (that entry, with that
                # hash), so `KEPT=$(rebalance-opt rebalance log --head)` keeps what to check
                typer.echo(f"{entry_id}:{digest}")
                typer.echo(f"head of {where.path}: entry {entry_id}; keep it elsewhere and check with "
                           f"`rebalance-opt rebalance log --verify --head {entry_id}:{digest}`", err=True)
        elif show is not None:
            entry = audit.get(show)
            if entry is None:
                raise InputError(f"no entry {show} in {where.path}", path="--show", value=show, has_value=True)
            typer.echo(to_json(entry.to_dict()))
        else:
            entries = audit.entries(account=account, since=parse_since(since) if since is not None else None)
            if as_json:
                typer.echo(to_json({"log": str(where.path), "entries": [e.summary() for e in entries]}))
            else:
                if entries:
                    from ..render import console
                    console().print(_log_table([e.summary() for e in entries]))
                exists = "" if where.path.exists() else " (no log there yet)"
                typer.echo(f"{len(entries)} {'entry' if len(entries) == 1 else 'entries'} in {where.path}{exists}")
    failed: list = []
    run(as_json, body)
    if failed:
        raise typer.Exit(4)

