"""Price histories for the backtest: the bundled real-price universe, or the user's own CSV.

**Bundled data.** skfolio ships, inside its wheel, daily adjusted closes of 20 S&P 500 stocks
from 1990-01-02 to 2022-12-28 (``skfolio.datasets.load_sp500_dataset``; no download). They are
grouped by sector into three equity classes, and each class gets two funds built from its stocks:

* ``GRW``, ``VAL``, ``DEF`` (the class's fund): its stocks bought in equal dollar amounts on the
  first day of the data and held (a fixed-share index: weights drift with prices, as a market-cap
  index's do);
* ``GRW_ALT``, ``VAL_ALT``, ``DEF_ALT`` (its replacement): the same stocks bought and held with
  weights tilted ±25% (alternately, the first listed stock underweighted).

Same stocks, slightly different weights: correlated above 0.99 with a tracking error of a few
percent a year, the way an S&P 500 fund and a total-market fund are paired by robo-advisors, so
the ``_ALT`` fund is what a tax-loss harvest buys. Two bought-and-held baskets stay within a
bounded ratio of each other (their weights differ by at most 25%), unlike a rebalanced fund,
which would drift away from the primary by years of rebalancing returns. Bonds are a proxy: a
price growing at a constant ``BOND_YIELD`` a year (interest folded into the price, as an adjusted
close folds dividends). It never falls, so it never has a loss to harvest; say so when reading
results. ``single_stocks``: each of the 20 stocks is its own class instead, at an equal weight
(single-stock targets, as a direct index holds them), with no replacement to harvest into.

Limits: the 20 names are survivors that are large today (survivorship bias: large gains, few
permanent losses); adjusted closes fold dividends into prices, so the tax a real account pays on
dividends every year is not in the simulation (it would be about the same for every strategy)
unless ``with_dividends`` pays an assumed yield in cash (``--dividend-yield``); closes are
rounded to 0.001, which makes early 1990s daily returns of low-priced names coarse.

**Your own data.** ``load_prices_csv``: a wide CSV, ``date`` then one column per symbol, one row per
trading day, every cell a price > 0. ``load_universe``: a TOML file with ``[targets]`` (class or
symbol -> weight, the rest is cash) and optional ``[classes]`` (symbol -> class, the first listed
symbol of a class is the one bought, the others its replacements), the account file's keys.
"""
from __future__ import annotations

import codecs
import csv
import dataclasses
import io
import math
import tomllib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from .account import CASH, MAX_AMOUNT, TARGET_SUM_TOLERANCE
from .account_file import iso_date, parse_number
from .errors import InputError

BOND_YIELD = 0.04          # the bond proxy's constant yield, per year (compounded daily on calendar days)
BOND_SYMBOL = "BOND"
REPLACEMENT_TILT = 0.25    # the replacement funds' weight tilt (see the module docstring)

# Sector groups of the 20 bundled stocks: (class, fund prefix, stocks).
BUNDLED_GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("GROWTH", "GRW", ("AAPL", "AMD", "MSFT", "BBY", "HD")),                      # tech, consumer discretionary
    ("VALUE", "VAL", ("BAC", "JPM", "CVX", "XOM", "RRC", "GE")),                  # financials, energy, industrials
    ("DEFENSIVE", "DEF", ("JNJ", "LLY", "MRK", "PFE", "UNH", "KO", "PEP", "PG", "WMT")),  # health care, staples
)
# The least price a --prices cell may hold: below it a simulated account's share counts pass what
# a float holds to the millionth of a share (1e-300 overflowed the simulator: a review).
MIN_PRICE = 1e-6
BOND_WEIGHT = 0.40        # the bundled portfolio: 40% bonds, the rest split evenly over the equity classes


@dataclass(frozen=True)
class Universe:
    """What the portfolio holds: target weight per class, and each class's funds in buy order
    (the first is the one bought; the others are replacements a tax-loss harvest may buy)."""

    targets: Mapping[str, float]
    funds: Mapping[str, tuple[str, ...]]

    def __post_init__(self) -> None:
        # plain dicts (copied), so a universe pickles to worker processes
        object.__setattr__(self, "targets", {k: float(v) for k, v in self.targets.items()})
        object.__setattr__(self, "funds", {k: tuple(v) for k, v in self.funds.items()})

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.targets)

    def primary(self, cls: str) -> str:
        return self.funds[cls][0]

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(s for cls in self.classes for s in self.funds[cls])

    def class_map(self, replacements: bool) -> dict[str, str]:
        """symbol -> class for the account's ``[classes]``: primaries only, or every fund."""
        return {s: cls for cls in self.classes for s in (self.funds[cls] if replacements else self.funds[cls][:1])}


INCOME_KINDS = ("dividend", "interest")


@dataclass(frozen=True)
class Income:
    """Part of a symbol's total return paid out in cash: ``annual_yield`` of its value a year.
    A ``dividend`` is taxed as a qualified dividend, at the long-term rate (IRC §1(h)(11)); an
    ``interest`` payment as ordinary income, at the short-term rate. Neither nets against capital
    gains or losses (the $3,000 of a net capital loss that may offset ordinary income, IRC
    §1211(b), is not modelled, as SPEC's tax leaves it out)."""

    annual_yield: float
    kind: str = "dividend"

    def __post_init__(self) -> None:
        if self.kind not in INCOME_KINDS:
            raise ValueError(f"income kind must be one of {INCOME_KINDS}, got {self.kind!r}")
        if not is_annual_yield(self.annual_yield):
            raise ValueError(f"an annual yield must be in 0..1, got {self.annual_yield!r}")


@dataclass(frozen=True)
class PriceData:
    """Daily total-return prices (DatetimeIndex ascending, one column per symbol, every value > 0)
    and where they come from. ``income``: the symbols whose return is partly paid in cash (the
    simulation takes it out of the price on each monthly step and pays it to the account); every
    other symbol's return stays in its price, as an adjusted close's dividends do."""

    prices: pd.DataFrame
    source: str
    notes: tuple[str, ...] = field(default=())
    file: str | None = None  # the --prices file they were read from (None: the bundled data)
    income: Mapping[str, Income] = field(default_factory=dict)

    @property
    def first(self) -> date:
        return self.prices.index[0].date()

    @property
    def last(self) -> date:
        return self.prices.index[-1].date()


# --- the bundled universe ------------------------------------------------------------------------
def bundled(bond_weight: float = BOND_WEIGHT, bond_yield: float = BOND_YIELD,
            single_stocks: bool = False, dividend_yield: float | None = None) -> tuple[PriceData, Universe]:
    """The skfolio S&P 500 sample as three sector classes with two funds each (or, with
    ``single_stocks``, each stock its own class), plus the bond proxy at ``bond_weight`` (0:
    equities only); the equity classes share the rest equally. ``dividend_yield`` (None: every
    return stays in the prices) pays income in cash: every equity fund that yield a year as
    dividends, and the bond proxy its yield as interest (``with_dividends``)."""
    if not (0 <= bond_weight < 1):
        raise InputError("must be a weight in 0..1 (below 1: some equity)", path="--bonds", value=bond_weight,
                         has_value=True)
    if dividend_yield is not None:
        check_dividend_yield(dividend_yield)
    try:
        from skfolio.datasets import load_sp500_dataset
    except ImportError:  # pragma: no cover - depends on the environment
        raise InputError("the bundled prices need the skfolio package (pip install 'rebalance-opt[backtest]'), "
                         "or pass your own prices with --prices CSV", path="--prices") from None
    stocks = load_sp500_dataset().sort_index()
    stocks.index = pd.DatetimeIndex(stocks.index).normalize()
    data, universe = _bundled_from(stocks, bond_weight, bond_yield, single_stocks)
    return (data if dividend_yield is None else with_dividends(data, dividend_yield, bond_yield)), universe


def is_annual_yield(value: float) -> bool:
    """A yield a year that income can be paid at: finite, in 0..1 (``Income``'s rule)."""
    return math.isfinite(value) and 0 <= value < 1


def check_dividend_yield(dividend_yield: float) -> None:
    """``--dividend-yield`` as ``Income`` takes it, else an input error naming the option."""
    if not is_annual_yield(dividend_yield):
        raise InputError("must be a yield a year in 0..1 (0.02 for 2%)", path="--dividend-yield",
                         value=dividend_yield, has_value=True)


def with_dividends(data: PriceData, dividend_yield: float, bond_yield: float = BOND_YIELD) -> PriceData:
    """``data`` with income paid in cash: every column pays ``dividend_yield`` a year of its value
    as dividends out of its total return, except the bundled bond proxy, which pays ``bond_yield``
    as interest (its price then accrues through the month and drops back by what it pays on each
    step, the same on every step: a bond fund paying out its coupons). The yield is an
    assumption, the same for every stock: adjusted closes say how much a stock returned, not how
    much of it was paid out."""
    check_dividend_yield(dividend_yield)
    income = {s: (Income(bond_yield, "interest") if s == BOND_SYMBOL and data.file is None
                  else Income(dividend_yield, "dividend")) for s in data.prices.columns}
    notes = [n for n in data.notes if "dividends folded into adjusted closes" not in n]
    if data.file is None:
        notes.append("survivors (today's large caps), closes rounded to 0.001")
    notes.append(f"income paid in cash on each monthly step: an assumed {dividend_yield:.2%} a year of every stock "
                 "fund's value as dividends (taxed at the long-term rate, as qualified dividends), taken out of its "
                 "adjusted close" + (f"; {BOND_SYMBOL}'s {bond_yield:.1%} as interest (taxed at the short-term rate, "
                                      "as ordinary income), its price the same on every step" if BOND_SYMBOL in income
                                      and data.file is None else ""))
    return dataclasses.replace(data, notes=tuple(notes), income=income)


def _bundled_from(stocks: pd.DataFrame, bond_weight: float, bond_yield: float,
                  single_stocks: bool = False) -> tuple[PriceData, Universe]:
    columns: dict[str, pd.Series] = {}
    funds: dict[str, tuple[str, ...]] = {}
    if single_stocks:  # each stock its own class, named after it; no replacement to harvest into
        for name in (n for _, _, names in BUNDLED_GROUPS for n in names):
            columns[name] = stocks[name]
            funds[name] = (name,)
        grouping = [f"single-stock targets: each of the {len(funds)} stocks its own class at an equal weight, "
                    "no replacement (harvesting has nothing to buy instead: harvest@W trades as optimizer@W)"]
    else:
        for cls, prefix, names in BUNDLED_GROUPS:
            members = stocks[list(names)]
            columns[prefix] = buy_and_hold_index(members)
            columns[f"{prefix}_ALT"] = buy_and_hold_index(members, tilted_weights(len(names), REPLACEMENT_TILT))
            funds[cls] = (prefix, f"{prefix}_ALT")
        grouping = ["; ".join(f"{cls} = {prefix}: {', '.join(names)}" for cls, prefix, names in BUNDLED_GROUPS),
                    "funds: equal dollars in each stock on the first day, then buy and hold; replacements (_ALT): "
                    f"the same stocks, weights tilted ±{REPLACEMENT_TILT:.0%} alternately (first stock underweighted)"]
    targets = {cls: (1.0 - bond_weight) / len(funds) for cls in funds}
    columns[BOND_SYMBOL] = constant_yield_index(stocks.index, bond_yield)
    if bond_weight > 0:
        funds["BONDS"] = (BOND_SYMBOL,)
        targets["BONDS"] = bond_weight
    prices = pd.DataFrame(columns)
    notes = (
        "skfolio load_sp500_dataset(): daily adjusted closes of 20 S&P 500 stocks, "
        f"{stocks.index[0].date()} to {stocks.index[-1].date()}, shipped inside the skfolio wheel",
        *grouping,
        f"{BOND_SYMBOL}: a constant {bond_yield:.1%} a year, never a loss (a proxy, not market data)",
        "survivors (today's large caps), dividends folded into adjusted closes, closes rounded to 0.001",
    )
    return PriceData(prices, "skfolio S&P 500 sample (bundled)", notes), Universe(targets, funds)


def tilted_weights(n: int, tilt: float) -> np.ndarray:
    """Weights 1 − tilt, 1 + tilt, 1 − tilt, ... normalized to sum to 1."""
    w = np.array([1.0 - tilt if i % 2 == 0 else 1.0 + tilt for i in range(n)])
    return w / w.sum()


def buy_and_hold_index(stocks: pd.DataFrame, weights: np.ndarray | None = None, start: float = 100.0) -> pd.Series:
    """Dollars split by ``weights`` (equal by default) on the first day, then held:
    start × Σ weight × price relative."""
    w = np.full(stocks.shape[1], 1.0 / stocks.shape[1]) if weights is None else np.asarray(weights, float)
    return start * (stocks / stocks.iloc[0]).mul(w, axis=1).sum(axis=1)


def constant_yield_index(index: pd.DatetimeIndex, annual_yield: float, start: float = 100.0) -> pd.Series:
    """A price growing at ``annual_yield`` a year on calendar days."""
    days = (index - index[0]).days.to_numpy(float)
    return pd.Series(start * (1.0 + annual_yield) ** (days / 365.25), index=index)


# --- the user's prices and universe ---------------------------------------------------------------
def load_prices_csv(path: str | Path) -> PriceData:
    """A wide CSV of daily prices: ``date`` (YYYY-MM-DD) then one column per symbol; every cell a
    price from MIN_PRICE to 1e15 (an account file's largest amount), dates strictly increasing.
    Errors name the file, the line and column, and the value."""
    path = Path(path)
    name = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot be read ({exc.strerror or exc})", file=name, path="--prices") from None
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        text = data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:  # was "unexpected error" (exit 1), as a lots_file's once was
        at = bom + exc.start
        line = data.count(b"\n", 0, at) + 1
        raise InputError(f"not UTF-8 text (byte {at})", file=name, path=f"line {line}") from None
    try:
        return _prices_from_csv(io.StringIO(text, newline=""), name)
    except csv.Error as exc:  # a cell over the csv module's limit (128 KiB), say
        raise InputError(f"not a readable CSV: {exc}", file=name, path="--prices") from None


def _prices_from_csv(handle, name: str) -> PriceData:
    """The rows of an open prices CSV (``load_prices_csv``)."""
    reader = csv.reader(handle)
    header = next(reader, None)
    if not header or header[0].strip().lower() != "date":
        raise InputError("the first column must be 'date'", file=name, path="line 1",
                         value=header[0] if header else None, has_value=True)
    symbols = [h.strip() for h in header[1:]]
    if not symbols:
        raise InputError("needs at least one price column after 'date'", file=name, path="line 1")
    for s in symbols:
        if not s or s == CASH:
            raise InputError(f"a column must be named by a symbol (not empty, not {CASH})", file=name,
                             path="line 1", value=s, has_value=True)
    dupes = sorted({s for s in symbols if symbols.count(s) > 1})
    if dupes:
        raise InputError("names a symbol twice", file=name, path="line 1", value=dupes[0], has_value=True)
    dates: list[date] = []
    rows: list[list[float]] = []
    for row in reader:
        line = reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise InputError(f"has {len(row)} fields, the header has {len(header)}", file=name,
                             path=f"line {line}")
        try:
            d = iso_date(row[0].strip())  # YYYY-MM-DD, 1800 to 2999, as an account file's dates
        except ValueError as exc:
            raise InputError(str(exc), file=name, path=f"line {line}, date", value=row[0], has_value=True) from None
        if dates and d <= dates[-1]:
            raise InputError(f"dates must increase (the line before has {dates[-1].isoformat()})", file=name,
                             path=f"line {line}, date", value=row[0], has_value=True)
        values = []
        for sym, cell in zip(symbols, row[1:]):
            try:
                x = parse_number(cell)  # a plain ASCII decimal: not 1_000, nor ١٢ (float() takes them)
            except ValueError:
                x = math.nan
            if not (math.isfinite(x) and x > 0):
                raise InputError("must be a price > 0", file=name, path=f"line {line}, {sym}",
                                 value=cell, has_value=True)
            if not MIN_PRICE <= x <= MAX_AMOUNT:
                raise InputError(f"must be a price from {MIN_PRICE:g} to {MAX_AMOUNT:.0e} (share counts or amounts "
                                 "beyond those lose precision)", file=name, path=f"line {line}, {sym}",
                                 value=cell, has_value=True)
            values.append(x)
        dates.append(d)
        rows.append(values)
    if len(dates) < 2:
        raise InputError("needs at least two days of prices", file=name, path="--prices")
    frame = pd.DataFrame(rows, index=pd.DatetimeIndex(pd.to_datetime(dates)), columns=symbols)
    return PriceData(frame, f"prices from {name}", (f"{len(symbols)} symbols, {len(dates)} days from {name}",),
                     file=name)


def load_universe(path: str | Path, prices: PriceData) -> Universe:
    """``[targets]`` and optional ``[classes]`` from a TOML file, checked against the price columns."""
    path = Path(path)
    name = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot be read ({exc.strerror or exc})", file=name, path="--universe") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", file=name, path="--universe") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"invalid TOML: {exc}", file=name) from None
    unknown = sorted(set(data) - {"targets", "classes"})
    if unknown:
        raise InputError("unknown key (a universe has [targets] and [classes])", file=name, path=unknown[0])
    targets, classes = data.get("targets"), data.get("classes", {})
    if not isinstance(targets, dict) or not targets:
        raise InputError("must list at least one class or symbol with its weight", file=name, path="targets")
    if not isinstance(classes, dict):
        raise InputError("must map symbols to classes", file=name, path="classes")
    columns = set(prices.prices.columns)
    for sym, cls in classes.items():
        if sym not in columns:
            raise InputError("is not a column of the prices", file=name, path=f"classes.{sym}", value=sym,
                             has_value=True)
        if not isinstance(cls, str) or not cls or cls == CASH:
            raise InputError(f"must name a class (not {CASH})", file=name, path=f"classes.{sym}", value=cls,
                             has_value=True)
    funds: dict[str, tuple[str, ...]] = {}
    for cls, w in targets.items():
        where = f"targets.{cls}"
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not (0 <= w <= 1):
            raise InputError("must be a weight between 0 and 1", file=name, path=where, value=w, has_value=True)
        members = tuple(s for s, c in classes.items() if c == cls)
        if not members and cls in columns and cls not in classes:
            members = (cls,)
        if not members and cls in classes:  # a price column, but [classes] puts it in a class
            raise InputError(f"is a price column that [classes] puts in class {classes[cls]!r}; target that "
                             "class, or map it to a class of its own", file=name, path=where, value=cls,
                             has_value=True)
        if not members:
            raise InputError("is neither a class in [classes] nor a price column", file=name, path=where,
                             value=cls, has_value=True)
        funds[cls] = members
    if sum(targets.values()) > 1 + TARGET_SUM_TOLERANCE:
        raise InputError("weights sum above 1", file=name, path="targets", value=sum(targets.values()),
                         has_value=True)
    return Universe({k: float(v) for k, v in targets.items()}, funds)


def default_universe(prices: PriceData) -> Universe:
    """Every price column its own class, at equal weights (no replacements)."""
    cols = list(prices.prices.columns)
    return Universe({c: 1.0 / len(cols) for c in cols}, {c: (c,) for c in cols})
