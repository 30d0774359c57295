"""Reading account files (TOML, JSON, a lots CSV) into a validated ``Account``.

The file's shape is checked by pydantic models with unknown keys forbidden, so a typo is an
error rather than a silently ignored setting; every error is turned into one ``InputError``
that names the file, the key path (``lots[3].quantity``, or file and line for a lots CSV)
and the offending value.
"""
from __future__ import annotations

import codecs
import csv
import difflib
import io
import json
import math
import operator
import os
import re
import stat
import tomllib
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Mapping

import numpy as np
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, StrictBool,
                      StrictInt, StrictStr, ValidationError)

from .account import (FIRST_DATE, IMPLIED_SLACK, LAST_DATE, MAX_VARIANCE, MAX_WASH_SALE_DAYS, VARIANCE_UNITS, Account,
                      Lot, LotsOrigin, Policy, RiskModel, TaxSettings, Trade, validate)
from .errors import InputError

if TYPE_CHECKING:
    import pandas as pd



_YMD = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)


def iso_date(v: Any) -> date:
    """Dates are ISO ``YYYY-MM-DD``: a TOML date or a JSON string, never a datetime or number;
    from FIRST_DATE to LAST_DATE."""
    parsed = None
    if isinstance(v, date) and not hasattr(v, "hour"):
        parsed = v
    elif isinstance(v, str) and _YMD.fullmatch(v):  # not ISO's other forms: 20230103, 2023-W01-2
        try:
            parsed = date.fromisoformat(v)
        except ValueError as exc:  # written right, but no such day ("must be written YYYY-MM-DD" misled)
            raise ValueError(f"is written YYYY-MM-DD but is no day of the calendar ({exc})") from None
    if parsed is None:
        raise ValueError("must be a date written YYYY-MM-DD")
    if not FIRST_DATE <= parsed <= LAST_DATE:
        raise ValueError(f"must be a date from {FIRST_DATE.isoformat()} to {LAST_DATE.isoformat()}")
    return parsed


Date = Annotated[date, BeforeValidator(iso_date)]
# Numbers are checked by pydantic-core itself (no Python call per value: an account's lots are
# most of its numbers): strict, so an int or float passes and a bool or string is an error.
AnyNum = Annotated[float, Field(strict=True)]  # inf allowed (max_tax)
Num = Annotated[float, Field(strict=True, allow_inf_nan=False)]
NonNeg = Annotated[Num, Field(ge=0)]
Positive = Annotated[Num, Field(gt=0)]
Fraction = Annotated[Num, Field(ge=0, le=1)]
Name = Annotated[StrictStr, Field(min_length=1)]


def _numpy_scalar(v: Any) -> Any:
    """An ``np.int64`` or ``np.bool_`` (a value from a pandas frame) as its Python value: the strict
    int and bool fields refused them ("input should be a valid integer (got np.int64(30))"), where
    number fields take numpy's numbers."""
    return v.item() if isinstance(v, (np.integer, np.bool_)) else v


Flag = Annotated[StrictBool, BeforeValidator(_numpy_scalar)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AccountSection(_Strict):
    id: Name
    cash: NonNeg
    as_of: Date
    currency: Name = "USD"


class TaxSection(_Strict):
    short_term_rate: Fraction
    long_term_rate: Fraction
    realized_short_term: Num = 0.0
    realized_long_term: Num = 0.0
    carryforward_short_term: NonNeg = 0.0
    carryforward_long_term: NonNeg = 0.0


class LotRow(_Strict):
    id: Name
    symbol: Name
    quantity: Positive
    cost_basis: NonNeg
    acquired: Date


class TradeRow(_Strict):
    symbol: Name
    side: Literal["buy", "sell"]
    quantity: Positive
    price: Positive
    date: Date
    realized_gain: Num | None = None


class PolicySection(_Strict):
    band: Fraction = 0.05
    tax_weight: NonNeg = 0.1
    max_tax: Annotated[AnyNum, Field(ge=0)] = math.inf
    allow_sells: Flag = True
    withdrawal: NonNeg = 0.0
    min_cash: NonNeg = 0.0
    fractional: Flag = False
    min_trade: NonNeg = 0.0
    trade_cost_bps: Annotated[Num, Field(ge=0, lt=10_000)] = 0.0
    no_buy: list[Name] = []
    no_sell: list[Name] = []
    wash_sale_days: Annotated[StrictInt, BeforeValidator(_numpy_scalar), Field(ge=0, le=MAX_WASH_SALE_DAYS)] = 30
    milp_rounding: Flag = False


class RiskSection(_Strict):
    """Optional ex-ante risk over asset classes: a full covariance or a factor model."""

    classes: list[Name]
    covariance: list[list[Num]] | None = None
    loadings: list[list[Num]] | None = None
    factor_covariance: list[list[Num]] | None = None
    specific_variance: list[NonNeg] | None = None


class AccountFile(_Strict):
    account: AccountSection
    tax: TaxSection
    targets: dict[Name, Num]
    classes: dict[Name, Name] = {}
    prices: dict[Name, Num]
    lots: list[LotRow] = []
    lots_file: Name | None = None
    trades: list[TradeRow] = []
    bands: dict[Name, Num] = {}
    policy: PolicySection = PolicySection()
    risk: RiskSection | None = None


# ------------------------------------------------------------------------------------------
def load_account(path: str | Path) -> Account:
    """Read and validate an account file (``.toml`` or ``.json``)."""
    path = Path(path)
    return account_from_dict(read_account_data(path), source=str(path), base_dir=path.parent)


def read_account_data(path: str | Path) -> Any:
    """The parsed contents of an account file (``.toml`` or ``.json``), not yet validated: what
    ``account_from_dict`` takes. Errors reading or parsing it are ``InputError``s naming the file."""
    path = Path(path)
    name = str(path)
    try:
        mode = path.stat().st_mode
    except OSError:  # missing, a broken link, a loop: the read below says which
        mode = None
    if mode is not None and not stat.S_ISREG(mode):  # listed in a batch, not skipped; a FIFO's read would block
        raise InputError("is a folder, not an account file" if stat.S_ISDIR(mode) else
                         "is not a regular file (a pipe, socket or device), not an account file", file=name)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if path.is_symlink():
            raise InputError("account file not found: a broken symbolic link", file=name,
                             value=os.readlink(path), has_value=True) from None
        raise InputError("account file not found", file=name) from None
    except OSError as exc:
        raise InputError(f"cannot read account file: {exc.strerror}", file=name) from None
    try:
        text = raw.decode("utf-8-sig")  # a leading byte-order mark (Excel, Notepad) is not content
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", file=name) from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text, parse_constant=_json_constant, object_pairs_hook=json_object)
        except json.JSONDecodeError as exc:
            raise InputError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                             file=name) from None
        except RecursionError:
            raise InputError("invalid JSON: nested too deeply", file=name) from None
        except DuplicateJSONKey as exc:
            raise InputError("invalid JSON: a key is given twice", file=name, value=str(exc), has_value=True) from None
    elif path.suffix.lower() == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"invalid TOML: {exc}", file=name) from None
        except RecursionError:
            raise InputError("invalid TOML: nested too deeply", file=name) from None
    else:
        raise InputError("account files end in .toml or .json", file=name, value=path.suffix, has_value=True)
    return data


class DuplicateJSONKey(ValueError):
    """A key given twice in a JSON object; the key is ``str(exc)``."""


def json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object (``json.loads(..., object_pairs_hook=json_object)``: account files and the web
    app's request bodies); a key given twice is an error, as in TOML (JSON keeps the last silently)."""
    out = dict(pairs)  # in C: the loop below took ~45 us of reading a household account's ~100 lots, this ~20
    if len(out) == len(pairs):
        return out
    out = {}  # a key given twice: the loop names the first key seen again
    for key, value in pairs:
        if key in out:
            raise DuplicateJSONKey(key)
        out[key] = value
    return out


def _json_constant(token: str) -> float:
    # JSON has no inf/nan; Python's parser accepts them. Keep Infinity (max_tax), refuse NaN.
    if token == "NaN":
        return math.nan
    return math.inf if token == "Infinity" else -math.inf


def account_from_dict(data: Mapping[str, Any], *, source: str | None = None,
                      base_dir: str | Path | None = None) -> Account:
    """Build an ``Account`` from the file structure of SPEC section 1, given as Python objects."""
    if not isinstance(data, Mapping):
        raise InputError("the account must be a table of sections", file=source, value=type(data).__name__,
                         has_value=True)
    lots = _plain_lots(data.get("lots"))
    try:  # lots already read are left out of the model (valid lots add no error to its first one)
        f = AccountFile.model_validate(dict(data) if lots is None else {**data, "lots": []})
    except ValidationError as exc:
        raise _input_error(exc, source) from None
    if lots is None:
        lots = [Lot(r.id, r.symbol, r.quantity, r.cost_basis, r.acquired) for r in f.lots]

    if f.lots_file and lots:
        raise InputError("give lots either as [[lots]] or as lots_file, not both", path="lots_file",
                         file=source, value=f.lots_file, has_value=True)
    origin = None
    if f.lots_file:
        lots, origin = read_lots_csv(Path(base_dir or ".") / f.lots_file)

    policy = Policy(**{**f.policy.model_dump(), "no_buy": frozenset(f.policy.no_buy),
                       "no_sell": frozenset(f.policy.no_sell)})
    account = Account(
        id=f.account.id, as_of=f.account.as_of, cash=f.account.cash, currency=f.account.currency,
        tax=TaxSettings(**f.tax.model_dump()),
        targets=f.targets, prices=f.prices, lots=tuple(lots), classes=f.classes,
        trades=tuple(Trade(**t.model_dump()) for t in f.trades),
        bands=f.bands, policy=policy, risk=_risk_model(f.risk, source), source=source, lots_origin=origin,
    )
    return validate(account)


_LOT_KEYS = tuple(LotRow.model_fields)  # id, symbol, quantity, cost_basis, acquired
_LOT_VALUES = operator.itemgetter(*_LOT_KEYS)
_SURROGATE = re.compile(r"[\ud800-\udfff]")  # from JSON's "\ud800": not Unicode text
_YMD_LINES = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:\n[0-9]{4}-[0-9]{2}-[0-9]{2})*", re.ASCII)


def _plain_lots(rows: Any) -> list[Lot] | None:
    """The lots of ``[[lots]]`` rows when all of them are plainly valid: dicts with exactly LotRow's
    keys, each value of the exact type a TOML or JSON file gives and in LotRow's range; equal to
    what validating each row as a ``LotRow`` and copying it into a ``Lot`` gives. Else None, for
    ``LotRow`` to find and name the first error. The rows are checked a column at a time, in C
    (sets of types, one regex over the dates): validating each row with pydantic and copying it into
    a ``Lot`` took ~3 us per lot, 40% of loading a household account (1,500 benchmark households,
    ~100 lots each; ``benchmarks/batch_bench.py``); this takes ~1.3 us."""
    if type(rows) is not list or not rows or set(map(type, rows)) != {dict} or set(map(len, rows)) != {5}:
        return None
    try:
        ids, symbols, quantities, costs, acquired = zip(*map(_LOT_VALUES, rows))  # 5 keys, all LotRow's
    except KeyError:
        return None
    if not (set(map(type, ids)) == set(map(type, symbols)) == {str} and all(ids) and all(symbols)
            and not _SURROGATE.search("".join(ids) + "".join(symbols))):  # pydantic refuses a lone surrogate
        return None
    quantities, costs = _plain_floats(quantities), _plain_floats(costs)
    if quantities is None or costs is None or not (min(quantities) > 0 and min(costs) >= 0):
        return None
    dates = _plain_dates(acquired)
    if dates is None:
        return None
    return list(map(Lot, ids, symbols, quantities, costs, dates))


def _plain_floats(values: tuple) -> tuple[float, ...] | None:
    """``values`` as a strict, finite ``Num`` field gives them (an int as a float) if each is a finite
    float or an int that a float holds exactly; else None."""
    kinds = set(map(type, values))
    if kinds == {float}:
        pass
    elif kinds <= {float, int} and all(type(v) is float or -2 ** 53 <= v <= 2 ** 53 for v in values):
        values = tuple(map(float, values))
    else:
        return None
    return values if all(map(math.isfinite, values)) else None


def _plain_dates(values: tuple) -> list[date] | None:
    """``values`` as ``iso_date`` reads them if all are ``YYYY-MM-DD`` strings (JSON) or all dates
    (TOML) within FIRST_DATE to LAST_DATE; else None."""
    kinds = set(map(type, values))
    if kinds == {str}:
        if not _YMD_LINES.fullmatch("\n".join(values)):
            return None
        try:
            values = list(map(date.fromisoformat, values))
        except ValueError:  # 2023-02-30
            return None
    elif kinds != {date}:  # a datetime, a date subclass, a mix: iso_date judges those
        return None
    return list(values) if FIRST_DATE <= min(values) and max(values) <= LAST_DATE else None


def read_lots_csv(path: Path) -> tuple[list[Lot], LotsOrigin]:
    """Lots from a CSV with columns id,symbol,quantity,cost_basis,acquired, and where each lot is
    (the file and its line: errors found later, such as a duplicate id, name them too); errors in a
    row name the file and line (a row with a quoted cell over several lines: the line it starts on)."""
    name = str(path)
    try:
        data = path.read_bytes()
    except OSError:
        raise InputError("lots_file not found or unreadable", file=name, path="lots_file") from None
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0  # as account sets: not a column name
    try:
        text = data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:  # the whole file at once: the byte counts from its start
        at = bom + exc.start
        line = data.count(b"\n", 0, at) + 1
        raise InputError(f"not UTF-8 text (byte {at})", file=name, path=f"line {line}") from None
    try:
        return _lots_from_csv(io.StringIO(text, newline=""), name)
    except csv.Error as exc:
        raise InputError(f"not a readable CSV: {exc}", file=name, path="lots_file") from None


def _lots_from_csv(handle, name: str) -> tuple[list[Lot], LotsOrigin]:
    """The rows of an open lots CSV as lots (``read_lots_csv``)."""
    lots, lines = [], []
    reader = csv.reader(handle)
    expected = ["id", "symbol", "quantity", "cost_basis", "acquired"]
    header = next(reader, None)
    if header is not None:  # "id, symbol, ..." names the same columns (as an account set's header)
        header = [c.strip(SPACE) for c in header]
    if header is None or sorted(header) != sorted(expected):
        raise InputError(f"columns must be {','.join(expected)}", file=name, path="line 1",
                         value=header, has_value=True)
    width, end = len(header), reader.line_num
    for cells in reader:
        line, end = end + 1, reader.line_num  # where the row starts, and the last line it took
        if not cells:  # a blank line
            continue
        if len(cells) != width:  # never cells dropped silently, nor missing ones read as empty
            more = len(cells) > width
            raise InputError(f"has {'more' if more else 'fewer'} cells than the header's {width} "
                             f"({','.join(header)})", file=name, path=f"line {line}",
                             value=cells[width:] if more else cells, has_value=True)
        row = dict(zip(header, cells))
        try:
            # ASCII whitespace around a cell is not part of it ("L1, VTI, 10, 50, 2020-01-02"):
            # an id " L1" went into baskets as " L1", a date " 2020-01-02" was refused
            values = {k: row[k].strip(SPACE) for k in expected}
            for k in ("quantity", "cost_basis"):
                values[k] = _csv_number(values[k])
            r = LotRow.model_validate(values)
        except ValidationError as exc:
            e = exc.errors()[0]
            col = e["loc"][0] if e["loc"] else ""
            raise InputError(f"{col}: {_message(e)}", file=name, path=f"line {line}",
                             value=row.get(col), has_value=True) from None
        lots.append(Lot(r.id, r.symbol, r.quantity, r.cost_basis, r.acquired))
        lines.append(line)
    return lots, LotsOrigin(name, tuple(lines))


def _csv_number(text: str | None) -> Any:
    try:
        return parse_number(text) if text not in (None, "") else text
    except ValueError:
        return text  # validation reports it: "must be a number (got '1_000')"


# A number written as text (a cell of a lots_file, an account set or a --prices file, a number in
# a command-line option) is a plain ASCII decimal: an optional sign, digits with an optional
# fraction, an optional exponent. Python's float() takes more: 1_000, Arabic-Indic or fullwidth
# digits, any Unicode space around. The inf/nan spellings are let through to the range checks,
# which refuse them with a clearer message ("must be a finite number") except where inf means
# something (policy.max_tax). TOML and JSON files have their own number grammars and are not
# read with this.
_PLAIN_NUMBER = re.compile(r"[+-]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf(?:inity)?|nan)",
                           re.ASCII | re.IGNORECASE)
PLAIN_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
SPACE = " \t\n\r\f\v"  # ASCII whitespace, tolerated around a number (float() took it, "A, VTI, 10")


def parse_number(text: str) -> float:
    """``text`` as a float if it is a plain ASCII decimal number (see ``_PLAIN_NUMBER``), with
    ASCII whitespace around it allowed; else ``ValueError``. A negative zero reads as 0, so that
    ``-0`` never shows as "-0" (``optimizer@-0``)."""
    body = text.strip(SPACE)
    if not _PLAIN_NUMBER.fullmatch(body):
        raise ValueError(f"not a plain decimal number: {text!r}")
    return float(body) + 0.0


def _risk_model(r: RiskSection | None, source: str | None) -> RiskModel | None:
    if r is None:
        return None
    n = len(r.classes)
    if n == 0:  # numpy reads an empty matrix as 1-D: "unexpected error: LinAlgError"
        raise InputError("must list the asset classes the model covers", path="risk.classes", file=source,
                         value=[], has_value=True)

    def matrix(name: str, rows: list[list[float]], shape: tuple[int, int]) -> np.ndarray:
        if len(rows) != shape[0] or any(len(row) != shape[1] for row in rows):  # ragged rows too
            raise InputError(f"must be a {shape[0]}x{shape[1]} matrix", path=f"risk.{name}", file=source,
                             value=[len(row) for row in rows], has_value=True)
        return np.asarray(rows, dtype=float)

    def bounded(name: str, m: np.ndarray) -> np.ndarray:
        """Entries within ±MAX_VARIANCE: the solvers stay well-conditioned (``account.MAX_VARIANCE``)."""
        over = np.argwhere(~(np.abs(m) <= MAX_VARIANCE))
        if len(over):
            at = tuple(int(i) for i in over[0])
            raise InputError(f"must be at most {MAX_VARIANCE:g} in absolute value: {VARIANCE_UNITS}",
                             path=f"risk.{name}" + "".join(f"[{i}]" for i in at), file=source,
                             value=float(m[at]), has_value=True)
        return m

    def psd(name: str, m: np.ndarray) -> np.ndarray:
        if not np.allclose(m, m.T, atol=1e-12) or np.linalg.eigvalsh(m).min() < -1e-10 * max(1.0, abs(m).max()):
            raise InputError("must be symmetric positive semidefinite", path=f"risk.{name}", file=source)
        return m

    if r.covariance is not None:
        if r.loadings is not None or r.factor_covariance is not None:
            raise InputError("give either covariance or a factor model, not both", path="risk", file=source)
        cov = bounded("covariance", matrix("covariance", r.covariance, (n, n)))
        return RiskModel.from_covariance(r.classes, psd("covariance", cov))
    if r.loadings is None or r.factor_covariance is None:
        raise InputError("needs covariance, or loadings with factor_covariance", path="risk", file=source)
    k = len(r.factor_covariance)
    if k == 0:
        raise InputError("needs at least one factor (for specific variances alone, give them as a diagonal "
                         "covariance)", path="risk.factor_covariance", file=source, value=[], has_value=True)
    loadings = matrix("loadings", r.loadings, (n, k))
    fcov = psd("factor_covariance", bounded("factor_covariance",
                                            matrix("factor_covariance", r.factor_covariance, (k, k))))
    spec = np.asarray(r.specific_variance if r.specific_variance is not None else [0.0] * n, dtype=float)
    if spec.shape != (n,):
        raise InputError(f"must list {n} variances, one per class", path="risk.specific_variance", file=source)
    with np.errstate(over="ignore", invalid="ignore"):  # huge loadings overflow to inf: refused below
        model = RiskModel.from_factors(r.classes, loadings, fcov, bounded("specific_variance", spec))
    over = np.flatnonzero(~(model.variances <= MAX_VARIANCE * IMPLIED_SLACK))
    if len(over):
        i = int(over[0])
        raise InputError(f"gives class {r.classes[i]} a variance above {MAX_VARIANCE:g} (with factor_covariance "
                         f"and specific_variance): {VARIANCE_UNITS}", path=f"risk.loadings[{i}]", file=source,
                         value=r.loadings[i], has_value=True)
    return model


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or str(part).startswith(("function-", "constrained-")):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


_MESSAGES = {"float_type": "must be a number", "finite_number": "must be a finite number"}


def _message(e: dict) -> str:
    kind = e["type"]
    if kind == "extra_forbidden":
        return "unknown key (see the README for the keys an account file accepts)"
    if kind == "missing":
        return "required key is missing"
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    msg = e["msg"]
    return msg.removeprefix("Value error, ")[0].lower() + msg.removeprefix("Value error, ")[1:]


def _clean_loc(loc: tuple) -> tuple:
    return tuple(p for p in loc if not (isinstance(p, str) and p.startswith(("function-", "constrained-"))))


def _typo_hint(exc: ValidationError, e: dict) -> str:
    """For a missing key, the unknown key beside it that looks like its typo (``short_term_rat``),
    if any: the typo is the error to fix, the missing key only its consequence."""
    if e["type"] != "missing":
        return ""
    loc = _clean_loc(e["loc"])
    unknown = [str(x["loc"][-1]) for x in exc.errors()
               if x["type"] == "extra_forbidden" and _clean_loc(x["loc"])[:-1] == loc[:-1]]
    close = difflib.get_close_matches(str(loc[-1]), unknown, n=1)
    if close:
        return f"; is the unknown key {close[0]!r} beside it a typo of it?"
    return f"; beside it is the unknown key {unknown[0]!r}" if unknown else ""


def _input_error(exc: ValidationError, source: str | None) -> InputError:
    e = exc.errors()[0]
    loc = _clean_loc(e["loc"])
    has_value = e["type"] != "missing"
    message = _message(e) + _typo_hint(exc, e)
    if loc[-1:] == ("[key]",):  # pydantic's (table, key, "[key]"): the table's key itself is wrong
        loc, message = loc[:-2], f"a key {message.removeprefix('input ').removeprefix('string ')}"
    return InputError(message, path=_path(loc), file=source, value=e.get("input"), has_value=has_value)


def account_to_dict(account: Account) -> dict[str, Any]:
    """The account in the file structure of SPEC section 1, lots inline: the canonical inputs.

    ``account_from_dict(account_to_dict(a))`` rebuilds an equal account, with its maps in the same
    order (``[classes]`` order is each class's buy order); the audit log stores this (in that order,
    ``audit.inputs_json``) and its sha256 digest. An infinite ``max_tax`` is left out (the
    default), so the result is plain JSON.
    """
    p, t, r = account.policy, account.tax, account.risk
    policy = {"band": p.band, "tax_weight": p.tax_weight, "allow_sells": p.allow_sells,
              "withdrawal": p.withdrawal, "min_cash": p.min_cash, "fractional": p.fractional,
              "min_trade": p.min_trade, "trade_cost_bps": p.trade_cost_bps, "no_buy": sorted(p.no_buy),
              "no_sell": sorted(p.no_sell), "wash_sale_days": p.wash_sale_days}
    if math.isfinite(p.max_tax):
        policy["max_tax"] = p.max_tax
    if p.milp_rounding:  # a README key: left out at its default, so earlier inputs read the same
        policy["milp_rounding"] = True
    out: dict[str, Any] = {
        "account": {"id": account.id, "cash": account.cash, "as_of": account.as_of.isoformat(),
                    "currency": account.currency},
        "tax": {"short_term_rate": t.short_term_rate, "long_term_rate": t.long_term_rate,
                "realized_short_term": t.realized_short_term, "realized_long_term": t.realized_long_term,
                "carryforward_short_term": t.carryforward_short_term,
                "carryforward_long_term": t.carryforward_long_term},
        "targets": dict(account.targets), "classes": dict(account.classes), "prices": dict(account.prices),
        "lots": [{"id": l.id, "symbol": l.symbol, "quantity": l.quantity, "cost_basis": l.cost_basis,
                  "acquired": l.acquired.isoformat()} for l in account.lots],
        "trades": [{k: v for k, v in {"symbol": x.symbol, "side": x.side, "quantity": x.quantity, "price": x.price,
                                      "date": x.date.isoformat(), "realized_gain": x.realized_gain}.items()
                    if v is not None} for x in account.trades],
        "bands": dict(account.bands), "policy": policy,
    }
    if r is not None:  # the factor form G (covariance = GᵀG) is exact for either input form
        g = r.matrix()
        out["risk"] = {"classes": list(r.classes), "covariance": (g.T @ g).tolist()}
    return out


def account_from_frames(*, id: str, as_of: date | str, cash: float, lots: "pd.DataFrame",
                        prices: Mapping[str, float], targets: Mapping[str, float],
                        tax: Mapping[str, float], classes: Mapping[str, str] | None = None,
                        policy: Mapping[str, Any] | None = None, trades: "pd.DataFrame | None" = None,
                        bands: Mapping[str, float] | None = None, currency: str = "USD",
                        risk: Mapping[str, Any] | None = None) -> Account:
    """Build an account from pandas objects (notebooks, other tools), validated like a file.

    ``lots`` has columns id, symbol, quantity, cost_basis, acquired (dates, timestamps or ISO
    strings); ``prices``, ``targets`` and ``classes`` may be dicts or Series indexed by symbol /
    class; ``trades`` (optional) has the columns of ``[[trades]]``. Errors name ``lots[i].field``
    with i the row position.
    """
    def records(name: str, frame) -> Any:
        if frame is None:
            return []
        if not callable(getattr(frame, "to_dict", None)):  # a list of dicts, say (was an AttributeError)
            raise InputError("must be a pandas DataFrame", path=name, file="<frames>",
                             value=type(frame).__name__, has_value=True)
        out = []
        for row in frame.to_dict(orient="records"):
            clean = {}
            for k, v in row.items():
                if hasattr(v, "date") and callable(v.date):  # pandas Timestamp / datetime
                    v = v.date()
                elif hasattr(v, "item"):  # numpy scalar
                    v = v.item()
                if isinstance(v, float) and math.isnan(v) and k == "realized_gain":
                    continue
                clean[str(k)] = v
            out.append(clean)
        return out

    def scalar(v: Any) -> Any:
        """A numpy scalar as its Python value; anything else as it is, for validation to judge
        (``float()`` here turned "abc" into a bare ValueError and "1_000" into 1000)."""
        return v.item() if isinstance(v, np.generic) else v

    def table(v: Any, keys=lambda k: k, values=scalar) -> Any:
        """A dict or Series (``bool(series)`` is an error, ``dict(...)`` of a list a TypeError) as a
        dict; anything else as it is, for validation to name ("prices: input should be a valid
        dictionary")."""
        if not callable(getattr(v, "items", None)):
            return v
        return {keys(k): values(x) for k, x in v.items()}

    if hasattr(as_of, "date") and callable(as_of.date):  # a Timestamp or datetime: its day, as for lots
        as_of = as_of.date()
    data: dict[str, Any] = {
        "account": {"id": id, "cash": scalar(cash), "as_of": as_of if isinstance(as_of, date) else str(as_of),
                    "currency": currency},
        "tax": table(tax), "targets": table(targets, str),
        "classes": table(classes if classes is not None else {}, str, str),
        "prices": table(prices, str),
        "lots": records("lots", lots), "trades": records("trades", trades),
        "bands": table(bands if bands is not None else {}), "policy": table(policy if policy is not None else {}),
    }
    if risk is not None:
        data["risk"] = dict(risk)
    return account_from_dict(data, source="<frames>")
