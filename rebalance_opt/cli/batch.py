"""``rebalance batch``: plans for a folder of accounts or one account set (a CSV or Parquet
table of lots with a template), one basket, one audit entry per account."""
from __future__ import annotations

from pathlib import Path

import typer

from ..errors import InputError
from .common import (JsonOpt, audit_log_files, basket_and_log, rebalance, refuse_overwrite, run, sigterm_interrupts,
                     to_json, whole_number_option)

PARTIAL_EXIT = 5  # some accounts failed (each in the summary); the others were planned and logged


@rebalance.command("batch", short_help="Plan many accounts: one basket, one log entry each.")
def batch(
    accounts: Path = typer.Argument(..., help="Folder of account files (.toml or .json), or one account set: "
                                              "a .csv or .parquet table of lots with an account column."),
    template: Path | None = typer.Option(None, "--template", help="For an account set: the account file "
                                         "(.toml or .json) of what every account shares (targets, prices, "
                                         "classes, tax, policy), without lots."),
    engine: str = typer.Option("local", "--engine", help="local (a process pool on this machine) or dask."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="Dask scheduler address (default: a "
                                                                       "LocalCluster of --workers processes)."),
    workers: int | None = typer.Option(None, "--workers", parser=whole_number_option(1), help="Processes (default: the CPUs "
                                                                          "this process may use)."),
    chunk: int | None = typer.Option(None, "--chunk", parser=whole_number_option(1), help="Accounts per task (default: automatic)."),
    reason: str | None = typer.Option(None, "--reason", help="Why this rebalance (default: inferred per account)."),
    out_text: str | None = typer.Option(None, "--out", metavar="PATH",
                                        help="Write one basket of every plan to this file."),
    fmt: str | None = typer.Option(None, "--format", help="Basket format: csv, json or fix "
                                                                "(default: from --out's extension)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Record nothing in the audit log."),
    resume: bool = typer.Option(False, "--resume", help="Finish an interrupted batch: accounts whose exact "
                                "inputs the audit log already holds are not logged again."),
    log: str | None = typer.Option(None, "--log", help="Audit log file (default: $REBALANCE_OPT_LOG, else "
                                                            "~/.local/share/rebalance-opt/audit.sqlite)."),
    as_json: bool = JsonOpt,
):
    """Plan every account in a folder or set: a summary, one combined basket, one log entry per account."""
    failed: list[int] = []

    def body():
        from ..batch import check_engine, run_batch
        out, basket_format, why, where = basket_and_log(out_text, fmt, reason, dry_run, log)
        check_engine(engine, scheduler, workers)
        work = batch_input(accounts, template)
        if out is not None:
            inputs = [(accounts, "the account set")] + ([(template, "the template")] if template else []) \
                + audit_log_files(where, log)
            refuse_overwrite(out, inputs, folder=accounts if accounts.is_dir() else None)

        from ..render import console
        err = console(stderr=True)
        try:
            with sigterm_interrupts():
                outcome = _with_progress(err, len(work), lambda progress: run_batch(
                    work, engine=engine, workers=workers, scheduler=scheduler, log=where, out=out,
                    basket_format=basket_format, reason=why, chunk=chunk,
                    progress=progress, resume=resume))
        except KeyboardInterrupt as exc:
            typer.echo(_interrupted(exc, len(work), where, out), err=True)
            raise typer.Exit(getattr(exc, "exit_code", 130)) from None
        if as_json:
            typer.echo(to_json(outcome.to_dict()))
        else:
            console().print(_summary_table(outcome))
            if outcome.failures:
                console().print(_failures_table(outcome))
        for line in _notes(outcome, out):
            typer.echo(line, err=as_json)
        if outcome.failures:
            failed.append(len(outcome.failures))

    run(as_json, body)
    if failed:
        raise typer.Exit(PARTIAL_EXIT)


def _interrupted(exc: KeyboardInterrupt, total: int, where, out) -> str:
    """What an interrupted batch leaves behind, for the operator deciding what to re-run."""
    planned, logged = getattr(exc, "planned", 0), getattr(exc, "logged", 0)
    text = f"interrupted: {planned:,} of {total:,} accounts planned"
    if getattr(exc, "finished", False):
        written = [f"{logged:,} entries logged to {where.path}"] if where is not None else []
        written += [f"the basket written to {out}"] if out is not None else []
        return text + (f"; the batch had finished: {' and '.join(written)}" if written else "")
    if where is None:
        return text + "; dry run: nothing recorded in the audit log"
    if out is not None:
        return text + "; nothing logged and no basket written (with --out the log and basket are written together at the end)"
    before = getattr(exc, "already_logged", 0)
    earlier = f", {before:,} accounts found already logged by an earlier run" if before else ""
    return (text + f"; {logged:,} entries logged to {where.path} (each chunk is committed as it finishes)"
            f"{earlier}. To finish the rest, run the same command again with --resume: accounts already "
            "logged with the same inputs are not logged again")


def batch_input(accounts: Path, template: Path | None):
    """The accounts to plan: a folder's files, or an account set read (once) with its template.
    Whatever makes the whole input unusable is an ``InputError`` here, before anything is written."""
    from ..account_set import is_account_set, read_account_set
    from ..batch import account_files
    if is_account_set(accounts):
        return read_account_set(accounts, template)
    if template is not None:
        raise InputError("is for an account set (ACCOUNTS a .csv or .parquet file), not a folder",
                         path="--template", value=str(template), has_value=True)
    if accounts.is_file():
        raise InputError("must be a folder of account files (.toml or .json) or an account set "
                         "(.csv or .parquet)", path="ACCOUNTS", value=str(accounts), has_value=True)
    return account_files(accounts)


def _with_progress(err, total: int, work):
    """A progress bar on stderr while ``work(progress)`` runs (refreshed by hand: no thread runs
    beside the process pool's fork)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    columns = (TextColumn("planning"), BarColumn(), MofNCompleteColumn(), TextColumn("accounts"),
               TimeElapsedColumn())
    with Progress(*columns, console=err, auto_refresh=False, transient=True,
                  disable=not err.is_terminal) as bar:
        task = bar.add_task("plan", total=total)

        def advance(n: int) -> None:
            bar.advance(task, n)
            bar.refresh()
        return work(advance)


def _summary_table(outcome):
    from rich import box
    from rich.table import Table
    s = outcome.summary()
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="Batch", title_justify="left", show_header=False)
    t.add_column("what")
    t.add_column("value", justify="right")
    rate = s["accounts_per_second"]
    resumed = (("already logged", f"{s['already_logged']:,}"),) if s["already_logged"] else ()
    for label, value in (("accounts", f"{s['accounts']:,}"), ("planned", f"{s['planned']:,}"), *resumed,
                         ("failed", f"{s['failed']:,}"), ("orders", f"{s['orders']:,}"),
                         ("estimated tax", f"{s['estimated_tax']:,.2f}"), ("lot tax", f"{s['lot_tax']:,.2f}"),
                         ("turnover", f"{s['turnover']:,.2f}"), ("seconds", f"{s['seconds']:.2f}"),
                         ("accounts/s", f"{rate:,.0f}" if rate else "")):
        t.add_row(label, value)
    return t


def _failures_table(outcome):
    from rich import box
    from rich.table import Table
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="Failures", title_justify="left")
    t.add_column("file", overflow="fold")
    t.add_column("kind", no_wrap=True)
    t.add_column("reason", overflow="fold")
    for r in outcome.failures:
        t.add_row(_short(r.source), r.kind or "", r.error or "")
    return t


def _short(source: str) -> str:
    """A source as the failures table shows it: the file's name, with ``#account=ID`` for a set."""
    file, mark, account = source.partition("#account=")
    return Path(file).name + (mark + account if mark else "")


def _notes(outcome, out: Path | None = None) -> list[str]:
    s = outcome.summary()
    n = s["workers"]  # processes of the local pool or LocalCluster; an existing cluster's threads
    unit = "Dask worker thread" if s["engine"] == "dask" else "worker"
    notes = [f"{s['planned']:,} of {s['accounts']:,} accounts planned with --engine {s['engine']} "
             f"({n} {unit}{'' if n == 1 else 's'}) in {s['seconds']:.2f} s"]
    if outcome.basket is not None:
        notes.append(f"basket: {outcome.basket['orders']:,} orders written to {outcome.basket['path']} "
                     f"({outcome.basket['format']})")
    elif out is not None:
        notes.append(f"basket: not written, every account failed ({out} left as it was)")
    notes.append(f"logged {len(outcome.log_ids):,} entries in {outcome.log}" if outcome.log is not None
                 else "dry run: nothing recorded in the audit log")
    if s["already_logged"]:
        notes.append(f"{s['already_logged']:,} accounts were already logged with the same inputs (--resume): "
                     "not logged again")
    done = "planned and logged" if outcome.log is not None else "planned"
    basket = ", and all their orders are in the basket" if outcome.basket is not None else ""
    for account, sources in s["duplicate_accounts"].items():
        notes.append(f"warning: account {account} is in {len(sources)} files ({', '.join(sources)}): each was "
                     f"{done}{basket}")
    return notes
