"""Basket files: the orders of one or more plans, ready for a person, a spreadsheet or a broker.

Every writer takes a *list* of plans (one per account), so a batch of accounts makes one basket.
Three formats (``generate --out FILE [--format csv|json|fix]``; the format comes from ``--format``,
else from FILE's extension ``.csv``, ``.json`` or ``.fix``):

* **csv** — one row per order, columns ``symbol, side, quantity, order_type, est_price,
  est_notional, asset_class, lots, account, currency``; ``lots`` lists the lots a sell relieves as
  ``id:qty;id:qty``. Every text field that a spreadsheet would read as a formula (leading ``=``,
  ``+``, ``-``, ``@``, tab or carriage return) is prefixed with ``'``; numbers stay numbers.
* **json** — one object: ``{"basket", "version", "created", "order_count", "accounts": [{"account",
  "as_of", "currency", "reason", "orders": [...]}]}``, each order as in SPEC section 3 plus
  ``asset_class`` and ``order_type``.
* **fix** — one FIX 4.4 NewOrderList (35=E) message for the whole basket (every account), built
  with ``simplefix``: ListID(66) (``list_id``: unique to the basket), BidType(394)=3 (no bidding process), TotNoOrders(68), and a
  NoOrders(73) group of ClOrdID(11), ListSeqNo(67), Account(1), Symbol(55), Side(54),
  TransactTime(60) (the basket's time), OrderQty(38), OrdType(40)=1 (market) and Currency(15). One message rather than one per account
  because FIX 4.4 carries Account per order, so a single list executes the basket in one go.

In every format sells come before buys (their proceeds fund the buys), money is rounded to the
cent, and share quantities are written exactly as planned (whole shares, or every digit of a
fractional quantity; never in exponent notation). An empty plan writes a valid empty basket:
a csv with only its header, a json with no orders, and a fix file with no message (a
NewOrderList must carry at least one order). Writes are atomic: the basket goes to a temporary
file in the target directory that replaces FILE only once complete (for a symbolic link FILE, the
file it points to, in that file's directory: the link stays).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import secrets
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Iterable, Sequence

from .account import lot_error
from .errors import InputError
from .plan import Order, Plan

FORMATS = ("csv", "json", "fix")
EXTENSIONS = {".csv": "csv", ".json": "json", ".fix": "fix"}
CSV_COLUMNS = ("symbol", "side", "quantity", "order_type", "est_price", "est_notional", "asset_class",
               "lots", "account", "currency")
FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")
FIX_SENDER = "REBALANCE-OPT"
FIX_TARGET = "BROKER"
FIX_SIDE = {"buy": "1", "sell": "2"}
FIX_MARKET = "1"            # OrdType(40) = Market
FIX_BID_NO_BIDDING = "3"    # BidType(394) = No bidding process
TMP_NAME_CHARS = 40          # of the basket's name in its temporary file's (4-byte characters: 160 bytes)


# --- where the basket may go -------------------------------------------------------------------------
def refuse_overwrite(out: Path, inputs: Iterable[tuple[Path, str]], folders: Iterable[Path] = ()) -> None:
    """Fail before any work if the basket ``out`` would replace a file the command reads or logs
    to (``(path, what it is)``), or land inside an account folder it plans (where it would be
    read as an account, or replace a lots file, next time). In the library too: ``run_batch``
    wrote a basket over its own audit log when asked to (a review)."""
    target = _resolved(out)
    if target is None:  # an unresolvable path is no file the basket could replace
        return
    for folder in folders:
        if _resolved(folder) in target.parents:
            raise InputError(f"is inside the account folder {folder}; write the basket elsewhere", path="--out",
                             value=str(out), has_value=True)
    for path, what in inputs:
        if _resolved(path) == target:
            raise InputError(f"is {what}; the basket would overwrite it", path="--out", value=str(out),
                             has_value=True)


def _resolved(path: Path) -> Path | None:
    """``path`` resolved, or None where it cannot be: a symbolic link that loops (a RuntimeError
    before Python 3.13: a `lots_file` that loops was "unexpected error" with --out, where the
    reader names it), a name too long. Such a path is no file the basket could replace."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):
        return None


# --- choosing and checking the format -----------------------------------------------------------
def resolve_format(out: Path, fmt: str | None) -> str:
    """The basket format: ``fmt`` if given (csv, json or fix), else the one ``out``'s extension names."""
    if fmt is not None:
        name = fmt.strip().lower()
        if name not in FORMATS:
            raise InputError(f"unknown basket format; use one of {', '.join(FORMATS)}", path="--format",
                             value=fmt, has_value=True)
        return name
    name = EXTENSIONS.get(out.suffix.lower())
    if name is None:
        raise InputError(f"cannot tell the basket format from the extension of {str(out)!r}; name the file "
                         f"*.csv, *.json or *.fix, or give --format {'|'.join(FORMATS)}",
                         path="--format", value=out.suffix, has_value=bool(out.suffix))  # no "(got None)"
    return name


def basket_target(out: Path) -> Path:
    """The file a basket for ``out`` replaces: ``out`` itself, or, when ``out`` is a symbolic link,
    the file it points to. The basket is written through the link, as a shell's ``>`` writes: the
    new file is renamed over the target in the target's folder, so the link stays a link (renamed
    over, the link itself became a file and the file it pointed to kept the old basket)."""
    return Path(os.path.realpath(out)) if out.is_symlink() else out


def is_utf8(text: str) -> bool:
    """Whether a command-line argument is text: bytes not in the locale's encoding (``$'\\xff'``)
    reach Python as lone surrogates, which UTF-8 (SQLite, the audit log's hashes, JSON) cannot hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_destination(out: Path) -> None:
    """Fail before any work if ``out`` cannot be written: a directory, a file that is not a regular
    file (a device such as /dev/null, a FIFO: renaming the basket over it would replace it), or no
    writable directory; for a symbolic link, checked where it points, and a link pointing nowhere
    (broken, or a loop) is refused rather than followed to create a file wherever it says. A name
    the file system refuses (longer than its limit) or that is not UTF-8 text (bytes of another
    encoding: the audit log and the JSON output record the path as text) is refused too."""
    def error(problem: str) -> InputError:
        return InputError(problem, path="--out", value=str(out), has_value=True)
    if not is_utf8(str(out)):  # bytes of another encoding, which the audit log and JSON cannot record as text
        raise error("is not UTF-8 text: the basket's path is recorded as text (in the audit log, and in the "
                    "JSON output); give a name in UTF-8")
    try:
        _check_destination(out, error)
    except OSError as exc:  # a name longer than the file system allows (ENAMETOOLONG), ...
        raise error(f"cannot be used: {exc.strerror or exc}") from None


def _check_destination(out: Path, error) -> None:
    if out.is_symlink() and not out.exists():
        raise error(f"is a symbolic link to {os.readlink(out)}, which does not exist (or loops): a basket "
                    "is written through a link to its file; create that file, or give the path itself")
    dest = basket_target(out)
    where = f" (the link points to {dest})" if dest != out else ""
    if dest.is_dir():
        raise error(f"is a directory{where}; give a file name for the basket")
    if dest.exists() and not dest.is_file():  # /dev/null, a FIFO: the rename would replace it with a file
        raise error(f"is not a regular file (a device or a pipe){where}: the basket is written to a new file "
                    "renamed into place, which would replace it; give a file name for the basket")
    parent = dest.parent
    if not parent.is_dir():
        raise error("its directory does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (dest.exists() and not os.access(dest, os.W_OK)):
        raise error(f"not writable{where}")
    refused = cannot_create_in(parent)
    if refused:
        raise error(f"cannot create a file in its directory{where}: {refused}")


def cannot_create_in(folder: Path) -> str | None:
    """Why no file can be created in ``folder`` (None: one can), found by creating and removing one.
    The permission bits do not tell everything (root may write anywhere by them, yet not in /proc;
    a file system mounted read-only), so an output that cannot be written fails before the work,
    not as an unexpected error after it."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".rebalance-opt-probe.", suffix=".tmp", dir=folder)
    except OSError as exc:
        return str(exc.strerror or exc)
    os.close(fd)
    os.unlink(probe)
    return None


def check_exportable(fmt: str, texts: Iterable[tuple[str, str]], file: str | None = None) -> None:
    """Fail before solving if a name (``(key path, text)`` pairs) cannot be written in ``fmt``.

    FIX fields are separated by the SOH control character and hold ASCII, so a control or
    non-ASCII character in a symbol, account id or currency cannot be written there.
    """
    if fmt != "fix":
        return
    for path, text in texts:
        if any(ord(ch) < 0x20 or ord(ch) > 0x7E for ch in text):
            raise InputError("cannot be written in a FIX basket: only printable ASCII is allowed", path=path,
                             file=file, value=text, has_value=True)


def check_account_exportable(fmt: str, account, file: str | None = None) -> None:
    """Fail before solving if a name of ``account`` cannot be written in a ``fmt`` basket: a FIX
    basket's account id, currency and symbols (``check_exportable``); a csv basket's lot ids,
    whose ``lots`` column separates lots with ';' (``lots_text``: a ';' in an id would split it)."""
    names = [("account.id", account.id), ("account.currency", account.currency)]
    check_exportable(fmt, names + [(f"prices.{s}", s) for s in account.prices], file=file)
    if fmt == "csv":
        for i, lot in enumerate(account.lots):
            if ";" in lot.id:
                raise lot_error(account, i, "id", "cannot be written in a csv basket: ';' separates the lots "
                                "of an order", lot.id, file=file)


# --- formatting ----------------------------------------------------------------------------------
def cents(x: float) -> Decimal:
    """Money rounded to the cent, half away from zero on its shortest decimal form (2.675 -> 2.68);
    an amount that rounds to zero is 0.00, never -0.00 (a loss under half a cent)."""
    c = Decimal(repr(float(x))).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return c if c else Decimal("0.00")


def price_per_share(x: float) -> Decimal:
    """An estimated price per share: to the cent from $1 up, to $0.0001 below (SEC Rule 612's
    quoting increments), so a sub-dollar price is not written as 0.00 or off by half a cent."""
    step = Decimal("0.01") if abs(x) >= 1 else Decimal("0.0001")
    return Decimal(repr(float(x))).quantize(step, rounding=ROUND_HALF_UP)


def quantity_text(q: float) -> str:
    """A share quantity exactly as planned: ``28`` for whole shares, every digit of ``0.125``."""
    q = float(q)
    if q.is_integer():
        return str(int(q))
    return format(Decimal(repr(q)), "f")


def _quantity_number(q: float) -> int | float:
    return int(q) if float(q).is_integer() else float(q)


def guard_cell(text: str) -> str:
    """A text cell a spreadsheet shows as text: a leading formula character gets a ``'`` prefix."""
    return "'" + text if text.startswith(FORMULA_LEADS) else text


def basket_orders(plans: Sequence[Plan]) -> list[tuple[Plan, Order]]:
    """Every order of the basket, sells (of every account) before buys, each in plan order."""
    pairs = [(p, o) for p in plans for o in p.orders]
    return [x for x in pairs if x[1].side == "sell"] + [x for x in pairs if x[1].side != "sell"]


def lots_text(order: Order) -> str:
    return ";".join(f"{s.lot}:{quantity_text(s.quantity)}" for s in order.lots)


# --- the three formats ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CsvRows:
    """One plan's csv basket rows, sells and buys apart (a basket lists every account's sells
    first): what ``render_csv`` concatenates, so a batch's workers can render them in parallel."""

    sells: str
    buys: str


def csv_rows(plan: Plan) -> CsvRows:
    """The csv rows of one plan's orders (no header), in plan order."""
    out = {"sell": io.StringIO(), "buy": io.StringIO()}
    writers = {side: csv.writer(buf, lineterminator="\r\n") for side, buf in out.items()}
    for o in plan.orders:
        writers["sell" if o.side == "sell" else "buy"].writerow(
            [guard_cell(o.symbol), guard_cell(o.side), quantity_text(o.quantity), "market",
             str(price_per_share(o.price)), str(cents(o.notional)), guard_cell(o.asset_class),
             guard_cell(lots_text(o)), guard_cell(plan.account), guard_cell(plan.currency)])
    return CsvRows(out["sell"].getvalue(), out["buy"].getvalue())


def render_csv(plans: Sequence[Plan], rows: Sequence[CsvRows] | None = None) -> bytes:
    """The csv basket of ``plans``; ``rows`` (``csv_rows`` of each plan, in order) if already
    rendered."""
    header = io.StringIO()
    csv.writer(header, lineterminator="\r\n").writerow(CSV_COLUMNS)
    rows = [csv_rows(p) for p in plans] if rows is None else rows
    text = header.getvalue() + "".join(r.sells for r in rows) + "".join(r.buys for r in rows)
    return text.encode("utf-8")


def _order_json(o: Order) -> dict:
    return {"symbol": o.symbol, "side": o.side, "quantity": _quantity_number(o.quantity),
            "order_type": "market", "price": float(price_per_share(o.price)), "notional": float(cents(o.notional)),
            "asset_class": o.asset_class,
            "lots": [{"lot": s.lot, "quantity": _quantity_number(s.quantity), "gain": float(cents(s.gain)),
                      "term": s.term, "tax": float(cents(s.tax))} for s in o.lots]}


def render_json(plans: Sequence[Plan], created: datetime) -> bytes:
    accounts = []
    for p in plans:
        ordered = [o for o in p.orders if o.side == "sell"] + [o for o in p.orders if o.side != "sell"]
        accounts.append({"account": p.account, "as_of": p.as_of, "currency": p.currency, "reason": p.reason,
                         "orders": [_order_json(o) for o in ordered]})
    doc = {"basket": "rebalance-opt", "version": 1, "created": _utc_text(created),
           "order_count": sum(len(p.orders) for p in plans), "accounts": accounts}
    return (json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def list_id(plans: Sequence[Plan], created: datetime) -> str:
    """A ListID unique to this basket: ``RB``, its time to the second, a digest of its orders
    (10 hex digits of their sha256) and a nonce of 8 random hex digits. The time and
    the digest alone were the same for two baskets of the same orders written within one second
    (a dry run, then the run; the same plan generated twice), and a broker refuses or merges a
    repeated ListID or ClOrdID; the nonce tells them apart (a clash needs the same orders, the
    same second and one chance in 4 billion)."""
    digest = hashlib.sha256(json.dumps([[p.account, [o.to_dict() for o in p.orders]] for p in plans],
                                       sort_keys=True, default=str).encode()).hexdigest()[:10].upper()
    return f"RB{created:%Y%m%d%H%M%S}-{digest}-{secrets.token_hex(4).upper()}"


def render_fix(plans: Sequence[Plan], created: datetime, sender: str = FIX_SENDER,
               target: str = FIX_TARGET) -> bytes:
    import simplefix

    orders = basket_orders(plans)
    if not orders:
        return b""
    lid = list_id(plans, created)
    msg = simplefix.FixMessage()
    msg.append_pair(8, "FIX.4.4", header=True)
    msg.append_pair(35, "E", header=True)
    msg.append_pair(49, sender, header=True)
    msg.append_pair(56, target, header=True)
    msg.append_pair(34, 1, header=True)
    msg.append_utc_timestamp(52, created, precision=3, header=True)
    msg.append_pair(66, lid)
    msg.append_pair(394, FIX_BID_NO_BIDDING)
    msg.append_pair(68, len(orders))
    msg.append_pair(73, len(orders))
    for seq, (plan, o) in enumerate(orders, start=1):
        msg.append_pair(11, f"{lid}-{seq}")
        msg.append_pair(67, seq)
        msg.append_pair(1, plan.account)
        msg.append_pair(55, o.symbol)
        msg.append_pair(54, FIX_SIDE[o.side])
        # TransactTime: optional in a 4.4 list order but required in a NewOrderSingle, so an
        # importer that splits the list into single orders finds it
        msg.append_utc_timestamp(60, created, precision=3)
        msg.append_pair(38, quantity_text(o.quantity))
        msg.append_pair(40, FIX_MARKET)
        msg.append_pair(15, plan.currency)
    return msg.encode()


def render_basket(plans: Sequence[Plan], fmt: str, created: datetime | None = None, *,
                  fix_sender: str = FIX_SENDER, fix_target: str = FIX_TARGET,
                  rows: Sequence[CsvRows] | None = None) -> bytes:
    """The basket of ``plans`` as bytes in ``fmt`` (csv, json or fix); for csv, ``rows`` are the
    plans' rows if already rendered (``csv_rows``)."""
    created = created or datetime.now(timezone.utc)
    if fmt == "csv":
        return render_csv(plans, rows)
    if fmt == "json":
        return render_json(plans, created)
    if fmt == "fix":
        return render_fix(plans, created, fix_sender, fix_target)
    raise InputError(f"unknown basket format; use one of {', '.join(FORMATS)}", path="--format", value=fmt,
                     has_value=True)


def _utc_text(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


# --- atomic writing ------------------------------------------------------------------------------
@dataclass
class StagedBasket:
    """A basket written to a temporary file beside its destination, not yet in place.

    ``commit()`` renames it over the destination (atomic on POSIX and Windows); ``discard()``
    removes it. The CLI stages the basket, appends the audit entry, then commits, so a failure
    at any step leaves neither a half-written basket nor an unlogged one.
    """

    path: Path
    fmt: str
    order_count: int
    sha256: str
    size: int
    _tmp: Path | None = field(default=None, repr=False)
    _target: Path | None = field(default=None, repr=False)  # what the rename replaces: basket_target(path)

    @property
    def empty(self) -> bool:
        return self.order_count == 0

    def commit(self) -> None:
        if self._tmp is None:
            return
        target = self._target or self.path
        os.replace(self._tmp, target)
        self._tmp = None
        _fsync_dir(target.parent)

    def discard(self) -> None:
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None

    def summary(self) -> str:
        if self.empty:
            return (f"empty basket: the plan has no orders; wrote a valid empty {self.fmt} basket to {self.path}"
                    + (" (no FIX message)" if self.fmt == "fix" else ""))
        noun = "order" if self.order_count == 1 else "orders"
        return f"basket: {self.order_count} {noun} written to {self.path} ({self.fmt})"

    def to_dict(self) -> dict:
        return {"path": str(self.path.resolve()), "format": self.fmt, "orders": self.order_count, "sha256": self.sha256}


def stage_basket(plans: Sequence[Plan], out: Path, fmt: str, created: datetime | None = None,
                 rows: Sequence[CsvRows] | None = None, **fix_ids: str) -> StagedBasket:
    """Render the basket and write it to a temporary file beside ``out`` (see ``StagedBasket``);
    ``rows`` as for ``render_basket``."""
    data = render_basket(plans, fmt, created, rows=rows, **fix_ids)
    target = basket_target(out)
    # the temporary name is the basket's, shortened: a name near the file system's limit (255 bytes)
    # plus ".", 8 random characters and ".tmp" would be too long (ENAMETOOLONG, after the solve)
    fd, name = tempfile.mkstemp(prefix=f".{target.name[:TMP_NAME_CHARS]}.", suffix=".tmp", dir=target.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _file_mode(target))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return StagedBasket(out, fmt, sum(len(p.orders) for p in plans), hashlib.sha256(data).hexdigest(),
                        len(data), tmp, target)


def write_basket(plans: Sequence[Plan], out: Path, fmt: str, created: datetime | None = None,
                 **fix_ids: str) -> StagedBasket:
    """Write the basket of ``plans`` to ``out`` atomically; returns what was written."""
    staged = stage_basket(plans, out, fmt, created, **fix_ids)
    try:
        staged.commit()
    finally:
        staged.discard()
    return staged


def _file_mode(out: Path) -> int:
    """Keep an existing file's permissions; a new file gets the usual 0666 minus the umask."""
    try:
        return out.stat().st_mode & 0o777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
