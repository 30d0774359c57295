"""Account sets: many accounts in one CSV or Parquet table of lots, plus one shared template.

A firm keeps its books as one table with a row per lot, not as thousands of account files. An
account set is that table (``.csv`` or ``.parquet``): an ``account`` column naming each row's
account, the lot columns of a ``lots_file`` (``id, symbol, quantity, cost_basis, acquired``), a
``cash`` column, and optional per-account override columns named like the file keys
(``account.as_of``, ``account.currency``, ``tax.<key>``, ``policy.<key>``). What every account
shares (as_of, targets, classes, prices, tax rates, policy, bands, risk) comes from a template:
an ordinary account file whose ``account.id`` and ``account.cash`` are ignored and which must
not hold lots or trades.

Two kinds of error, as for a folder of files:

* The whole input is wrong (exit 2, nothing planned or written): the table cannot be read, a
  required column is missing, a column is unknown (it would apply to every account), a row
  names no account (its lot would silently go missing from some account), a Parquet account
  column is neither text nor integers, or the template is not a valid account file. ``read_account_set`` raises these.
* One account is wrong: a bad value, a per-account value that differs between its rows, or a
  rule of SPEC section 1 broken (duplicate lot id, a lot of an unpriced symbol, ...). Only that
  account fails, with an ``InputError`` naming the set file, the row (``row N``: the Nth data
  row, header not counted) and the column, and the value. ``SetChunk.accounts`` raises these
  per account, in the worker that plans it.

The parent reads the table once, groups its rows by account (in order of first appearance) and
cuts it into ``SetChunk``s of whole accounts: each chunk carries only its own rows (a compact
slice of the frame) and the template, so a worker never reads the table. Values are validated
by ``account_from_dict``, exactly as an account file's; a text cell (every CSV cell) is first
parsed into the type its key takes.
"""
from __future__ import annotations

import csv
import math
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .account import Account
from .account_file import (LAST_DATE, PLAIN_INTEGER, SPACE, PolicySection, TaxSection, account_from_dict,
                           parse_number, read_account_data)
from .errors import InputError

SET_SUFFIXES = (".csv", ".parquet")
LOT_COLUMNS = ("id", "symbol", "quantity", "cost_basis", "acquired")
REQUIRED_COLUMNS = ("account", "cash", *LOT_COLUMNS)
LIST_SEPARATOR = ";"  # a CSV cell of policy.no_buy / policy.no_sell: "VTI;BND"
TEMPLATE_PLACEHOLDER_ID = "template"
_LOT_KINDS = {"id": "text", "symbol": "text", "quantity": "number", "cost_basis": "number", "acquired": "date"}


# --- the columns --------------------------------------------------------------------------------
@dataclass(frozen=True)
class AccountColumn:
    """A per-account column: the account-file key it sets and how a text cell is parsed."""

    name: str      # the column's name in the table
    section: str   # "account" | "tax" | "policy"
    key: str       # the key within that section
    kind: str      # "number" | "int" | "bool" | "list" | "date" | "text"


def _kind_of_default(default: Any) -> str:
    """The cell kind of a policy key, read off its default value in ``PolicySection``."""
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, list):
        return "list"
    return "number"


def account_columns() -> dict[str, AccountColumn]:
    """Every per-account column a set may have: ``cash``, ``account.as_of``, ``account.currency``,
    ``tax.<key>`` and ``policy.<key>`` for every key of those sections of an account file."""
    cols = [AccountColumn("cash", "account", "cash", "number"),
            AccountColumn("account.as_of", "account", "as_of", "date"),
            AccountColumn("account.currency", "account", "currency", "text")]
    cols += [AccountColumn(f"tax.{k}", "tax", k, "number") for k in TaxSection.model_fields]
    cols += [AccountColumn(f"policy.{k}", "policy", k, _kind_of_default(f.default))
             for k, f in PolicySection.model_fields.items()]
    return {c.name: c for c in cols}


ACCOUNT_COLUMNS = account_columns()
KNOWN_COLUMNS = ("account", *LOT_COLUMNS, *ACCOUNT_COLUMNS)


# --- cells --------------------------------------------------------------------------------------
def is_empty(value: Any) -> bool:
    """An empty cell: missing (None, NaN, NA, NaT) or text of nothing but spaces."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, float):
        return math.isnan(value)
    return False


def as_written(value: Any) -> Any:
    """A cell as an error shows it: a Parquet null (None, NaN, NaT) is the empty cell ``''`` a CSV
    would hold there, not ``nan``; any other cell as it is."""
    return "" if not isinstance(value, str) and is_empty(value) else value


def parse_cell(value: Any, kind: str) -> Any:
    """A non-empty cell as the type its key takes. Text (every CSV cell) is parsed; a typed
    Parquet value is kept, normalized where the meaning is unambiguous (a whole float for an int,
    a midnight timestamp for a date, an integer lot id as text). What cannot be parsed is
    returned unchanged, so the account file's validation reports it with its value."""
    if isinstance(value, str):
        return _parse_text(value, kind)
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if kind == "int" and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind == "date" and isinstance(value, datetime) and value.time() == datetime.min.time() \
            and value.tzinfo is None:
        return value.date()
    if kind == "text" and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if kind == "list" and isinstance(value, tuple):
        return list(value)
    return value


def _parse_text(text: str, kind: str) -> Any:
    """A text cell: a number, a whole number, true/false, a ``;``-separated list, or as is."""
    if kind == "number":
        return _text_number(text)
    if kind == "int":  # plain ASCII digits, as a number (parse_number); "30.0" is 30
        body = text.strip(SPACE)
        if PLAIN_INTEGER.fullmatch(body):
            return int(body)  # exactly, however long (validation names its range)
        try:
            number = parse_number(text)
        except ValueError:
            return text
        return int(number) if number.is_integer() else number
    if kind == "bool":
        return {"true": True, "false": False}.get(text.strip().lower(), text)
    if kind == "list":
        return [part.strip() for part in text.split(LIST_SEPARATOR) if part.strip()]
    return text.strip(SPACE)  # text and dates: ASCII whitespace around a cell is not part of it


# --- reading the set (the parent) ---------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class AccountSet:
    """A validated table, its rows grouped by account (in order of first appearance), and the
    template. ``len()`` is the number of accounts; ``chunks`` cuts it into tasks for workers."""

    file: str
    template_file: str
    template: dict[str, Any]     # the template's sections; no account.id, account.cash or lots
    frame: pd.DataFrame          # the table's rows grouped by account, without the account column
    rows: np.ndarray             # 1-based data row number of each frame row
    ids: tuple[str, ...]         # account ids, in order of first appearance
    offsets: np.ndarray          # account k's rows are frame rows offsets[k]:offsets[k + 1]

    def __len__(self) -> int:
        return len(self.ids)

    def chunks(self, size: int) -> list[SetChunk]:
        """Tasks of ``size`` whole accounts each, carrying only their own rows."""
        out = []
        for first in range(0, len(self.ids), size):
            last = min(first + size, len(self.ids))
            a, b = int(self.offsets[first]), int(self.offsets[last])
            out.append(SetChunk(self.file, self.template_file, self.template, first, self.ids[first:last],
                                self.offsets[first:last + 1] - a, self.rows[a:b], self.frame.iloc[a:b]))
        return out


def set_source(file: str, account_id: str) -> str:
    """How an account of a set is named where a file's path would be: ``FILE#account=ID``."""
    return f"{file}#account={account_id}"


def is_account_set(path: Path) -> bool:
    """Whether ``path`` names an account set (by its extension) rather than a folder."""
    return path.suffix.lower() in SET_SUFFIXES


def read_account_set(path: str | Path, template: str | Path | None) -> AccountSet:
    """Read an account set and its template once; raise ``InputError`` (the whole input is
    wrong) for an unreadable table or template, missing or unknown columns, a row without an
    account, or no rows at all. Per-account values are checked later, account by account."""
    path = Path(path)
    name = str(path)
    if template is None:
        raise InputError("an account set needs --template FILE: the account file (.toml or .json) whose "
                         "targets, prices, classes, tax and policy every account shares", path="--template")
    frame = read_table(path)
    check_columns(frame, name)
    shared = load_template(Path(template), has_as_of_column="account.as_of" in frame.columns)
    if frame.empty:
        raise InputError("holds no rows, so no accounts", file=name)
    ids, codes = _account_ids(frame["account"], name)
    rows = np.arange(1, len(frame) + 1)
    frame = frame.drop(columns="account")
    if len(codes) > 1 and bool((np.diff(codes) < 0).any()):  # an account's rows are not together
        order = np.argsort(codes, kind="stable")
        frame, rows, codes = frame.take(order), rows[order], codes[order]
    offsets = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=len(ids)))])
    account_set = AccountSet(name, str(template), shared, frame.reset_index(drop=True), rows, ids, offsets)
    _release_arrow_memory()
    return account_set


def _release_arrow_memory() -> None:
    """Hand the pages Arrow freed while reading (temporary columns) back to the system: the
    parent holds the table for the whole batch, and forks its workers from this state."""
    try:
        import pyarrow as pa
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        return
    pa.default_memory_pool().release_unused()


def read_table(path: Path) -> pd.DataFrame:
    """The table as read: every CSV cell as text (so values are parsed and reported as written),
    Parquet columns with their types. Column names are stripped of surrounding spaces."""
    name = str(path)
    suffix = path.suffix.lower()
    if suffix not in SET_SUFFIXES:
        raise InputError("an account set is a .csv or .parquet file", file=name, value=path.suffix, has_value=True)
    if not path.exists():
        raise InputError("account set not found", file=name)
    if not path.is_file():
        raise InputError("an account set must be a file", file=name)
    try:
        if suffix == ".csv":
            frame = read_csv(path)
        else:
            frame = read_parquet(path)
    except InputError:
        raise
    except ImportError as exc:
        raise InputError(f"reading Parquet needs pyarrow installed ({exc})", file=name) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", file=name) from None
    except pd.errors.EmptyDataError:
        raise InputError("is empty: an account set starts with a header row", file=name) from None
    except pd.errors.ParserError as exc:
        raise InputError(f"not a readable CSV: {str(exc).strip()}", file=name) from None
    except OSError as exc:
        raise InputError(f"cannot read the account set: {exc.strerror or exc}", file=name) from None
    except Exception as exc:  # noqa: BLE001 - pyarrow's errors for a file that is not Parquet
        raise InputError(f"not a readable {suffix[1:]} file: {type(exc).__name__}: {exc}", file=name) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def read_csv(path: Path) -> pd.DataFrame:
    """A CSV table, every cell as text (a missing trailing cell is an empty one). A row with more
    cells than the header is an error naming its line (pandas would otherwise shift the row), and
    so is a column named twice (pandas would rename the second)."""
    with path.open(newline="", encoding="utf-8-sig") as fh:
        header = [c.strip() for c in next(csv.reader(fh), [])]
    twice = next((c for i, c in enumerate(header) if c in header[:i]), None)
    if twice is not None:
        raise InputError("column appears twice", file=str(path), path=f"column {twice}", value=twice, has_value=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        try:
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, index_col=False,
                               encoding="utf-8-sig")
        except (pd.errors.ParserWarning, pd.errors.ParserError) as exc:
            problem = exc
    with path.open(newline="", encoding="utf-8-sig") as fh:  # find the line, the slow way (errors only)
        reader = csv.reader(fh)
        width = len(next(reader))
        line = next((reader.line_num for row in reader if len(row) > width), None)
    if line is None:
        raise problem
    raise InputError(f"a row has more cells than the header's {width}", file=str(path), path=f"line {line}")


def read_parquet(path: Path) -> pd.DataFrame:
    """A Parquet table with its date columns (and timestamp columns that are all at midnight,
    without a time zone) as ISO ``YYYY-MM-DD`` text, converted by Arrow in one pass: dates then
    read exactly as a CSV's. A timestamp with a time of day stays one, and is refused as a date.
    Integer columns holding a null are text too (pandas has no integer with a missing value)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    table = pq.read_table(path)
    for f in table.schema:
        if f.name.strip() == "account" and not _is_id_type(f.type):
            # str() of a float or bool column made ids "1.0" and "True"; a float id past 2**53
            # is another number than the one meant
            raise InputError("an account id is text or a whole number (1.0 or True would be read as such): "
                             "write this column as text or integers", file=str(path),
                             path=f"column {f.name.strip()}", value=str(f.type), has_value=True)
    for i, f in enumerate(table.schema):
        column = table.column(i)
        if pa.types.is_timestamp(f.type) and f.type.tz is None:
            day = pc.cast(column, pa.date32())
            if pc.all(pc.equal(pc.cast(day, f.type), column)).as_py() in (True, None):
                column = day
        if pa.types.is_date(column.type) or (pa.types.is_integer(column.type) and column.null_count):
            # an integer column with a null (a cash-only account's empty lot cells) would become
            # floats in pandas: lot id 7 read as 7.0 and refused; as text it reads as a CSV's
            table = table.set_column(i, f.name, pc.cast(column, pa.string()))
    # column by column, freeing each Arrow column once converted (the parent's peak matters)
    return table.to_pandas(split_blocks=True, self_destruct=True)


def _is_id_type(kind: Any) -> bool:
    """An Arrow type account ids may have: text or integers (dictionary-encoded too, as pandas
    writes a categorical), or nulls only (each such row then names no account)."""
    import pyarrow as pa
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)
            or pa.types.is_null(kind) or getattr(pa.types, "is_string_view", lambda _: False)(kind))


def check_columns(frame: pd.DataFrame, name: str) -> None:
    """Every required column present, none unknown, none twice (each would affect every account)."""
    columns = list(frame.columns)
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise InputError(f"missing required column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                         f"(an account set has columns {', '.join(REQUIRED_COLUMNS)}, and optional "
                         "per-account columns: see the README)", file=name, path="header", value=columns,
                         has_value=True)
    for c in columns:
        if c not in KNOWN_COLUMNS:
            raise InputError("unknown column (an account set has columns account, cash, the lot columns "
                             f"{', '.join(LOT_COLUMNS)}, and account.as_of, account.currency, tax.<key>, "
                             "policy.<key> of an account file)", file=name, path=f"column {c}", value=c,
                             has_value=True)
    seen = set()
    for c in columns:
        if c in seen:
            raise InputError("column appears twice", file=name, path=f"column {c}", value=c, has_value=True)
        seen.add(c)


def _account_ids(column: pd.Series, name: str) -> tuple[tuple[str, ...], np.ndarray]:
    """Account ids in order of first appearance and each row's position among them; a row with
    an empty account is an error of the whole set (its lot would belong to no account).

    ASCII whitespace around an id is not part of it, as around a number: ``a``, `` a`` and
    ``a `` (a spreadsheet's stray space, a database's padded CHAR column) are one account ``a``.
    The table's distinct cells are trimmed, not every row."""
    raw_codes, raw = pd.factorize(column.astype(str), sort=False)
    trimmed = [str(u).strip(SPACE) for u in raw]
    blank = np.array([not t.strip() for t in trimmed], dtype=bool)
    missing = column.isna().to_numpy(dtype=bool) | blank[raw_codes]
    if missing.any():
        row = int(np.flatnonzero(missing)[0]) + 1
        raise InputError("names no account: every row must name the account it belongs to", file=name,
                         path=f"row {row}, column account", value=as_written(column.iloc[row - 1]), has_value=True)
    codes, uniques = pd.factorize(np.array(trimmed, dtype=object), sort=False)
    return tuple(str(u) for u in uniques), np.asarray(codes, dtype=np.int64)[raw_codes]


def load_template(path: Path, has_as_of_column: bool = False) -> dict[str, Any]:
    """The template's sections, checked once: an account file that, with no lots, is valid.

    Its ``account.id`` and ``account.cash`` may be given (an ordinary account file can serve) but
    are not used: ids and cash come from the set. Lots (``[[lots]]`` or ``lots_file``) and
    ``[[trades]]`` are refused: lots come from the set, and trades are one account's history.
    Without ``account.as_of`` every account must have it in an ``account.as_of`` column."""
    name = str(path)
    try:
        data = read_account_data(path)
    except InputError as exc:
        raise InputError(exc.message.replace("account file", "template"), file=name, path="--template",
                         value=exc.value, has_value=exc.has_value) from None
    if not isinstance(data, Mapping):
        raise InputError("the template must be a table of sections", file=name, value=type(data).__name__,
                         has_value=True)
    for key, why in (("lots", "lots come from the account set"), ("lots_file", "lots come from the account set"),
                     ("trades", "trades are one account's history, and an account set has none")):
        if data.get(key):
            raise InputError(f"a template must not have {key}: {why}; remove it", file=name, path=key)
    account = data.get("account", {})
    if not isinstance(account, Mapping):
        raise InputError("must be a table", file=name, path="account", value=account, has_value=True)
    shared = {k: v for k, v in data.items() if k not in ("lots", "lots_file", "trades")}
    shared["account"] = {k: v for k, v in account.items() if k not in ("id", "cash")}
    check = {**shared, "account": {**shared["account"], "id": TEMPLATE_PLACEHOLDER_ID, "cash": 0.0}}
    if "as_of" not in account:
        if not has_as_of_column:
            raise InputError("is missing: give it in the template's [account], or per account in an "
                             "account.as_of column of the account set", file=name, path="account.as_of")
        check["account"]["as_of"] = LAST_DATE  # a placeholder: each row's own as_of is checked later
    account_from_dict(check, source=name)
    return shared


# --- building accounts (the workers) ------------------------------------------------------------
@dataclass(frozen=True)
class AccountRows:
    """One account's rows of a set as Python values, with what its chunk worked out in bulk."""

    rows: list[int]                    # 1-based data row numbers in the set file
    cells: dict[str, list[Any]]        # column -> the account's cells (lot columns parsed, others as read)
    empty: dict[str, list[bool]]       # column -> which of those cells are empty
    uniform: dict[str, bool]           # per-account column -> every row holds the very same cell
    complete: bool = False             # no lot cell is empty (every row is a whole lot)

    @classmethod
    def of(cls, rows: Sequence[int], cells: Mapping[str, Sequence[Any]]) -> AccountRows:
        """From plain cells (one account's rows, as read), working cell by cell."""
        cells = {c: [parse_cell(x, _LOT_KINDS[c]) for x in v] if c in _LOT_KINDS else list(v)
                 for c, v in cells.items()}
        return cls(list(rows), cells, {c: [is_empty(x) for x in v] for c, v in cells.items()},
                   dict.fromkeys((c for c in cells if c in ACCOUNT_COLUMNS), False))


@dataclass(frozen=True, eq=False)
class SetChunk:
    """Whole accounts of a set, with their rows only: one task for a worker."""

    file: str
    template_file: str
    template: dict[str, Any]
    first: int                   # the batch index of the chunk's first account
    ids: tuple[str, ...]
    offsets: np.ndarray          # account k's rows are rows offsets[k]:offsets[k + 1] of ``frame``
    rows: np.ndarray             # 1-based data row numbers in the set file
    frame: pd.DataFrame

    def __len__(self) -> int:
        return len(self.ids)

    def accounts(self) -> Iterator[tuple[int, str, str, Callable[[], Account]]]:
        """``(batch index, source, account id, build)`` per account; ``build()`` validates and
        returns the account or raises ``InputError`` naming its row and column.

        The chunk's cells become Python values once, and which cells are empty and which
        per-account columns hold one cell on all of an account's rows are found with whole-column
        operations, so building an account touches each lot cell about once."""
        starts = np.asarray(self.offsets[:-1], dtype=np.int64)
        cells, empty, uniform = {}, {}, {}
        lot_gaps = np.zeros(len(self.frame), dtype=bool)
        for c in self.frame.columns:
            column = self.frame[c]
            mask = empty_mask(column)
            cells[c], empty[c] = column.tolist(), mask.tolist()
            if c in ACCOUNT_COLUMNS:
                uniform[c] = same_within(column, mask, self.offsets).tolist()
            else:
                lot_gaps |= mask
                parse = column_parser(column, _LOT_KINDS[c])
                if parse is not None:
                    cells[c] = [parse(v) for v in cells[c]]
        complete = (~np.logical_or.reduceat(lot_gaps, starts)).tolist() if len(starts) else []
        rows = self.rows.tolist()
        for k, account_id in enumerate(self.ids):
            a, b = int(starts[k]), int(self.offsets[k + 1])
            own = AccountRows(rows[a:b], {c: v[a:b] for c, v in cells.items()},
                              {c: v[a:b] for c, v in empty.items()}, {c: v[k] for c, v in uniform.items()},
                              complete[k])
            build = partial(build_account, self.file, self.template_file, self.template, account_id, own)
            yield self.first + k, set_source(self.file, account_id), account_id, build


def column_parser(column: pd.Series, kind: str) -> Callable[[Any], Any] | None:
    """``parse_cell`` for every cell of a column, specialized by the column's type: None where
    the cells already are their values (float columns of numbers), ``float`` with a fallback
    for text numbers, a trim for a string column of text or dates (``_parse_text``)."""
    if pd.api.types.is_string_dtype(column.dtype) and column.dtype != object:
        return _text_number if kind == "number" else _trimmed if kind in ("text", "date") else partial(parse_cell, kind=kind)
    if kind == "number" and pd.api.types.is_float_dtype(column.dtype):
        return None
    return partial(parse_cell, kind=kind)


def _trimmed(text: Any) -> Any:
    """A cell of a string column of text or dates as ``_parse_text`` reads one (a null, an empty
    cell, as it is)."""
    return _parse_text(text, "text") if isinstance(text, str) else text


def _text_number(text: str) -> Any:
    """A text cell of a number column: the number (a plain ASCII decimal, ``parse_number``), or
    the text as is (validation reports it). A null of a Parquet text column is left as it is (an
    empty cell: it crashed the whole batch)."""
    if not isinstance(text, str):
        return text
    try:
        return parse_number(text)
    except ValueError:
        return text


def empty_mask(column: pd.Series) -> np.ndarray:
    """Which cells of a column are empty (``is_empty``), computed for the whole column."""
    mask = np.array(column.isna().to_numpy(dtype=bool), dtype=bool)  # None, NaN, NA, NaT
    if column.dtype == object:  # lists, dates, mixed values: only blank text is left to find
        mask |= np.fromiter((type(v) is str and not v.strip() for v in column.tolist()), dtype=bool,
                            count=len(column))
    elif pd.api.types.is_string_dtype(column.dtype):
        mask |= (column.str.strip() == "").to_numpy(dtype=bool, na_value=False)
    return mask


def same_within(column: pd.Series, empty: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per account (rows ``offsets[k]:offsets[k + 1]``): does every row hold the same cell as the
    account's first row (both empty counts as the same)? False only means "check cell by cell"
    (``"0.2"`` and ``"0.20"`` differ as cells but not as values); object columns always say so."""
    counts = np.diff(offsets)
    starts = np.asarray(offsets[:-1], dtype=np.int64)
    if column.dtype == object or len(column) == 0:
        return np.zeros(len(counts), dtype=bool)
    values = column.to_numpy()
    first = np.repeat(values[starts], counts)
    first_empty = np.repeat(empty[starts], counts)
    same = np.asarray(values == first, dtype=bool) & ~empty & ~first_empty | (empty & first_empty)
    return np.logical_and.reduceat(same, starts)


def build_account(file: str, template_file: str, template: Mapping[str, Any], account_id: str,
                  own: AccountRows) -> Account:
    """One account of a set: the template, its per-account values and its lots, validated by
    ``account_from_dict``; an error names the set file, the row and the column."""
    if account_id != account_id.strip():  # ASCII spaces are trimmed when the set is read
        raise InputError("begins or ends with a space that is not an ASCII space (a no-break space, say): "
                         "the id would name another account than the one without it", file=file,
                         path=f"row {own.rows[0]}, column account", value=account_id, has_value=True)
    values = _account_values(file, own)
    lots, lot_rows = _lots(own)
    data = {**template, "lots": lots,
            "account": {**template.get("account", {}), "id": account_id},
            "tax": dict(template.get("tax", {})), "policy": dict(template.get("policy", {}))}
    for column, value in values.items():
        spec = ACCOUNT_COLUMNS[column]
        data[spec.section][spec.key] = value
    try:
        return account_from_dict(data, source=set_source(file, account_id))
    except InputError as exc:
        raise _locate(exc, file, template_file, account_id, own.rows, lot_rows, values) from None


def _account_values(file: str, own: AccountRows) -> dict[str, Any]:
    """The account's value in each per-account column that it fills: the same on every one of
    its rows (an empty cell is no value, so it must be empty on every row too)."""
    out: dict[str, Any] = {}
    for column, spec in ACCOUNT_COLUMNS.items():
        if column not in own.cells:
            continue
        cells, empty = own.cells[column], own.empty[column]
        first = None if empty[0] else parse_cell(cells[0], spec.kind)
        if not own.uniform[column]:
            for j in range(1, len(cells)):
                value = None if empty[j] else parse_cell(cells[j], spec.kind)
                if value != first:
                    said = "is empty" if first is None else f"has {cells[0]!r}"
                    raise InputError(f"differs between the account's rows (its row {own.rows[0]} {said}); a "
                                     "per-account column holds one value per account", file=file,
                                     path=f"row {own.rows[j]}, column {column}", value=as_written(cells[j]),
                                     has_value=True)
        if first is not None:
            out[column] = first
    return out


def _lots(own: AccountRows) -> tuple[list[dict[str, Any]], list[int]]:
    """The account's lots (a row whose lot columns are all empty holds none: it declares the
    account, e.g. one holding only cash) and each lot's row number. An empty cell in a lot row
    is left out, so validation reports it as missing."""
    if own.complete:  # every row a whole lot (the usual case): build them column-wise
        return [dict(zip(LOT_COLUMNS, t)) for t in zip(*(own.cells[c] for c in LOT_COLUMNS))], own.rows
    lots, lot_rows = [], []
    columns = [(c, own.cells[c], own.empty[c]) for c in LOT_COLUMNS]
    for j, row in enumerate(own.rows):
        lot = {c: cells[j] for c, cells, empty in columns if not empty[j]}
        if lot:
            lots.append(lot)
            lot_rows.append(row)
    return lots, lot_rows


_LOT_PATH = re.compile(r"^lots\[(\d+)\](?:\.(\w+))?")
_LOT_REF = re.compile(r"\blots\[(\d+)\]")


def _locate(exc: InputError, file: str, template_file: str, account_id: str, rows: Sequence[int],
            lot_rows: Sequence[int], values: Mapping[str, Any]) -> InputError:
    """An account's validation error, pointed at the set's row and column where it has one;
    otherwise at the key (which then came from the template)."""
    message = "is empty" if exc.message == "required key is missing" else exc.message
    message = _LOT_REF.sub(lambda m: f"row {lot_rows[int(m.group(1))]}", message)  # "first at lots[0]"
    path = exc.path or ""
    lot = _LOT_PATH.match(path)
    if lot:
        column = lot.group(2)
        where = f"row {lot_rows[int(lot.group(1))]}" + (f", column {column}" if column else "")
        return InputError(message, file=file, path=where, value=exc.value, has_value=exc.has_value)
    column = {"account.cash": "cash", "account.id": "account"}.get(path, path)
    if column in values or column in ("cash", "account"):
        return InputError(message, file=file, path=f"row {rows[0]}, column {column}", value=exc.value,
                          has_value=exc.has_value)
    if path == "account.as_of" and not exc.has_value:
        return InputError("is empty, and the template has no account.as_of", file=file,
                          path=f"row {rows[0]}, column account.as_of")
    return InputError(f"{message} (with the template {template_file})", file=file,
                      path=f"account {account_id}, {path}" if path else f"account {account_id}",
                      value=exc.value, has_value=exc.has_value)
