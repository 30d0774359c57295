"""The validated account: frozen types for lots, trades, tax settings and policy (SPEC section 1).

Everything downstream (drift, tax, the model) takes an ``Account`` and may assume it is
consistent: every held or targeted symbol is priced, targets sum to at most 1, lots are
unique, and every value is within its range. Reading and checking files lives in
``account_file``; this module only owns the types and the cross-field rules.
"""
from __future__ import annotations

import dataclasses
import math
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from itertools import chain, repeat
from datetime import date, datetime
from types import MappingProxyType
from typing import Any, Iterable, Mapping

import numpy as np

from .errors import InputError

CASH = "CASH"  # the reserved class name of cash in drift maps (SPEC section 2)
TARGET_SUM_TOLERANCE = 1e-9
# Dates the engine's date arithmetic (wash-sale windows of up to 3,660 days back, one-year
# anniversaries forward) can work with, and far beyond any real lot: 0001-01-05 or the database
# sentinel 9999-12-31 is a mistake in the file, not a trade date.
FIRST_DATE, LAST_DATE = date(1800, 1, 1), date(2999, 12, 31)
MAX_WASH_SALE_DAYS = 3660
# Money and share amounts above this lose cent precision in double arithmetic (2^53 ≈ 9e15 cents
# would be the hard limit); a quadrillion covers any real account with room to spare.
MAX_AMOUNT = 1e15
# The objective weighs Σ drift² (at most 2: weights are fractions) against tax_weight × lot tax / V.
# At this weight a tax of 0.02% of the account already outweighs the largest drift a plan can
# remove (the frontier's default sweep stops at 100); a larger one would only weigh still smaller
# taxes, and max_tax caps the tax itself. (The solvers themselves held up to about 1e30.)
MAX_TAX_WEIGHT = 1e4
# A risk model's class variances replace the 1 per class of Σ drift² (SPEC section 2): returns
# as fractions, so 0.04 is a 20% volatility and 100 a 1,000% one. Far above any asset, and two
# orders of magnitude below where the solvers started to fail on synthetic households (class
# variances of about 3e4; percent² units, 10,000 times too large, land there).
MAX_VARIANCE = 100.0
# A variance worked out from a factor (GᵀG's diagonal) may land a few ulps above the entry it came
# from: an input at MAX_VARIANCE exactly must not be refused for that.
IMPLIED_SLACK = 1 + 1e-9
VARIANCE_UNITS = ("variances of returns are in fractions (0.04 is a 20% volatility, 100 a 1,000% one; "
                  "percent² is 10,000 times larger)")


_MAPS = ("targets", "prices", "classes", "bands")  # the Account fields held as read-only maps


def _frozen_map(data: Mapping | None) -> Mapping:
    """A read-only copy; a numpy scalar value (``np.int64`` from a frame) as its Python number. A map
    that is none (a list, say) is kept as it is, for ``validate`` to name."""
    if data is None:
        return MappingProxyType({})
    try:
        copy = dict(data)
        if set(map(type, copy.values())) <= {float, int, str}:  # as _python leaves them (a call per value:
            return MappingProxyType(copy)                        # ~5 us of loading a household account)
        return MappingProxyType({k: _python(v) for k, v in copy.items()})
    except (TypeError, ValueError):
        return data


def _python(value):
    """A numpy scalar other than a float (an ``np.int64``, ``np.bool_``, ``np.float32``) as its Python
    value, which JSON (the audit log, ``Plan.to_dict``) takes, and a ``Decimal`` as a float (as the
    file reader takes it); anything else as it is."""
    if isinstance(value, np.generic) and not isinstance(value, float):
        return value.item()
    return float(value) if isinstance(value, Decimal) else value


@dataclass(frozen=True)
class Lot:
    """A tax lot: shares of one symbol bought together at one cost basis per share."""

    id: str
    symbol: str
    quantity: float
    cost_basis: float
    acquired: date


@dataclass(frozen=True)
class LotsOrigin:
    """Where an account's lots were read from: a ``lots_file`` and the line of each lot, so that an
    error in a lot names that file and line, as the file's own row errors do (SPEC section 1)."""

    file: str
    lines: tuple[int, ...]  # per lot, in the account's lot order


@dataclass(frozen=True)
class Trade:
    """A past trade, kept for the wash-sale rules (SPEC section 2)."""

    symbol: str
    side: str  # "buy" | "sell"
    quantity: float
    price: float
    date: date
    realized_gain: float | None = None


@dataclass(frozen=True)
class TaxSettings:
    """Rates and this year's realized amounts; carryforwards are losses (>= 0)."""

    short_term_rate: float
    long_term_rate: float
    realized_short_term: float = 0.0
    realized_long_term: float = 0.0
    carryforward_short_term: float = 0.0
    carryforward_long_term: float = 0.0


@dataclass(frozen=True)
class Policy:
    """The rebalancing knobs of SPEC section 1 ``[policy]``, with its defaults."""

    band: float = 0.05
    tax_weight: float = 0.1
    max_tax: float = math.inf
    allow_sells: bool = True
    withdrawal: float = 0.0
    min_cash: float = 0.0
    fractional: bool = False
    min_trade: float = 0.0
    trade_cost_bps: float = 0.0
    no_buy: frozenset[str] = frozenset()
    no_sell: frozenset[str] = frozenset()
    wash_sale_days: int = 30
    milp_rounding: bool = False  # README key: every rounding also tries the exact (MILP) search

    def hard_rules(self, *keys: str) -> tuple[str, ...]:
        """Of ``keys`` (``policy.withdrawal``, ``policy.min_cash``, ``policy.max_tax``,
        ``policy.min_trade``, ``policy.fractional``, ``policy.allow_sells``, ``policy.no_sell``),
        those whose rule this policy sets: a withdrawal, min_cash, min_trade or no_sell that is not
        zero or empty, a finite max_tax, whole shares (fractional false), allow_sells false. An
        ``Infeasible`` names them as the rules that could not all be met."""
        active = {"policy.withdrawal": self.withdrawal > 0, "policy.min_cash": self.min_cash > 0,
                  "policy.max_tax": math.isfinite(self.max_tax), "policy.min_trade": self.min_trade > 0,
                  "policy.fractional": not self.fractional, "policy.allow_sells": not self.allow_sells,
                  "policy.no_sell": bool(self.no_sell)}
        return tuple(k for k in keys if active[k])


# The hard rules a rounding or a stage may fail together (``Policy.hard_rules``).
PLAN_RULES = ("policy.withdrawal", "policy.min_cash", "policy.max_tax", "policy.min_trade", "policy.fractional")


@dataclass(frozen=True)
class RiskModel:
    """Ex-ante covariance of class returns, held as a factor ``G`` with covariance = Gᵀ G.

    A full covariance and a factor model (loadings, factor covariance, specific variance)
    both reduce to this form, so the model's tracking term is always ‖G (w − target)‖².
    """

    classes: tuple[str, ...]
    factor: tuple[tuple[float, ...], ...]  # rows of G; columns follow ``classes``

    def matrix(self) -> np.ndarray:
        return np.asarray(self.factor, dtype=float).reshape(-1, len(self.classes))

    @cached_property  # validated on every Account.replace; a direct index's G is 510 × 500
    def variances(self) -> np.ndarray:
        """Each class's variance: the covariance's diagonal, Σ over G's rows of its column squared
        (inf where that overflows)."""
        with np.errstate(over="ignore", invalid="ignore"):
            out = np.square(self.matrix()).sum(axis=0)
        out.setflags(write=False)
        return out

    @staticmethod
    def from_covariance(classes: Iterable[str], cov: np.ndarray) -> "RiskModel":
        classes = tuple(classes)
        cov = np.asarray(cov, dtype=float)
        vals, vecs = np.linalg.eigh((cov + cov.T) / 2)
        vals = np.clip(vals, 0.0, None)
        g = (vecs * np.sqrt(vals)).T  # G = diag(√λ) Vᵀ  ⇒  GᵀG = V Λ Vᵀ = cov
        return RiskModel(classes, tuple(map(tuple, g)))

    @staticmethod
    def from_factors(classes: Iterable[str], loadings: np.ndarray, factor_cov: np.ndarray,
                     specific_var: np.ndarray) -> "RiskModel":
        classes = tuple(classes)
        f = RiskModel.from_covariance(range(factor_cov.shape[0]), factor_cov).matrix()
        g = np.vstack([f @ np.asarray(loadings, float).T, np.diag(np.sqrt(specific_var))])
        return RiskModel(classes, tuple(map(tuple, g)))


@dataclass(frozen=True)
class Account:
    """A validated account: holdings, prices, targets, tax settings and policy.

    ``classes`` maps every known symbol to its asset class (an unmapped symbol is its own
    class); ``symbols`` lists them in the order buys prefer within a class.
    """

    id: str
    as_of: date
    cash: float
    tax: TaxSettings
    targets: Mapping[str, float]
    prices: Mapping[str, float]
    lots: tuple[Lot, ...] = ()
    classes: Mapping[str, str] = field(default_factory=dict)
    trades: tuple[Trade, ...] = ()
    bands: Mapping[str, float] = field(default_factory=dict)
    policy: Policy = Policy()
    currency: str = "USD"
    risk: RiskModel | None = None
    source: str | None = field(default=None, compare=False)  # the file it came from, for errors
    lots_origin: LotsOrigin | None = field(default=None, compare=False)  # its lots_file, for errors

    def __post_init__(self) -> None:
        for name in _MAPS:
            object.__setattr__(self, name, _frozen_map(getattr(self, name)))
        for name in ("lots", "trades"):  # as tuples; what is not iterable is left for ``validate`` to name
            try:
                object.__setattr__(self, name, tuple(getattr(self, name)))
            except TypeError:
                pass

    # ``==`` and the hash compare the fields that make the plan (not ``source``, ``lots_origin``),
    # each read-only map as the set of its items, except ``classes``, whose order is each class's
    # buy order (SPEC section 2): two accounts listing a class's funds in another order may buy
    # another fund, so they differ (compared as dicts they were equal, and one could key the
    # other's plan). The hash dataclasses make hashed the maps themselves: "unhashable type:
    # 'mappingproxy'".
    def _key(self) -> tuple:
        def part(name: str, value: Any) -> Any:
            if name == "classes":
                return tuple(value.items())  # in order: the buy order
            return frozenset(value.items()) if name in _MAPS else value
        return tuple(part(f.name, getattr(self, f.name)) for f in dataclasses.fields(self) if f.compare)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    # A MappingProxyType does not pickle (nor deepcopy): an account sent to a process pool or a
    # Dask worker goes as its fields with the maps as dicts, frozen again on arrival; the derived
    # views (cached properties) are recomputed there.
    def __getstate__(self) -> dict:
        return {f.name: dict(v) if f.name in _MAPS else v
                for f in dataclasses.fields(self) for v in (getattr(self, f.name),)}

    def __setstate__(self, state: dict) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)
        self.__post_init__()

    # --- derived views -------------------------------------------------------------
    @cached_property
    def symbols(self) -> tuple[str, ...]:
        """Every priced or held symbol: those listed in ``classes`` first, in that order."""
        listed = [s for s in self.classes if s in self.prices]
        # dict.fromkeys keeps each at its first place (a loop of setdefault per lot: ~10 us an account)
        return tuple(dict.fromkeys(chain(listed, self.prices, [lot.symbol for lot in self.lots])))

    def class_of(self, symbol: str) -> str:
        """The asset class of ``symbol`` (an unmapped symbol is its own class)."""
        return self.classes.get(symbol, symbol)

    @cached_property
    def class_names(self) -> tuple[str, ...]:
        """Targeted classes in target order, then held classes without a target."""
        held = dict.fromkeys([lot.symbol for lot in self.lots])  # each once, in lot order (~100 lots to ~20)
        return tuple(dict.fromkeys(chain(self.targets, map(self.class_of, held))))

    def members(self, cls: str) -> tuple[str, ...]:
        """The priced symbols of a class, in buy-preference order."""
        return self._members.get(cls, ())

    @cached_property
    def _members(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, list[str]] = {}
        for s in self.symbols:
            out.setdefault(self.class_of(s), []).append(s)
        return {c: tuple(v) for c, v in out.items()}

    @property
    def cash_target(self) -> float:
        return max(0.0, 1.0 - sum(self.targets.values()))

    def target(self, cls: str) -> float:
        """The target weight of class ``cls`` (``CASH``: what the targets leave over); 0 if unlisted."""
        return self.cash_target if cls == CASH else self.targets.get(cls, 0.0)

    def band(self, cls: str) -> float:
        """The tolerance band of class ``cls``: its own from ``[bands]``, else ``policy.band``."""
        return self.bands.get(cls, self.policy.band)

    def shares(self) -> dict[str, float]:
        """Shares held per symbol (every symbol, zero where nothing is held)."""
        out = dict.fromkeys(self.symbols, 0.0)
        for lot in self.lots:
            out[lot.symbol] += lot.quantity
        return out

    @cached_property
    def invested_value(self) -> float:
        return math.fsum(self.prices[lot.symbol] * lot.quantity for lot in self.lots)

    @property
    def value(self) -> float:
        """Account value V = cash + Σ price × quantity (SPEC section 2)."""
        return self.cash + self.invested_value

    def replace(self, **changes) -> "Account":
        """A copy with some fields changed, validated again (for notebooks and simulations)."""
        _known(changes, dataclasses.fields(self), "")
        as_of = changes.get("as_of")
        if isinstance(as_of, str) and len(as_of) == 10 and as_of[4] == as_of[7] == "-" and as_of.replace("-", "").isdigit():
            try:  # YYYY-MM-DD, as account files and frames take it ("must be a date" otherwise)
                changes["as_of"] = date.fromisoformat(as_of)
            except ValueError:  # 2026-02-30: validation names it
                pass
        if "lots" in changes:  # other lots than the lots_file's: their lines no longer apply
            changes.setdefault("lots_origin", None)
        new = dataclasses.replace(self, **{k: _python(v) for k, v in changes.items()})
        try:
            validate(new)
        except InputError as exc:
            raise _changed_in_python(exc) from None
        return new

    def with_policy(self, **changes) -> "Account":
        """A copy with some policy keys changed (``tax_weight=0.3``, ``withdrawal=5000``), validated
        again; an unknown key is an error naming it."""
        _known(changes, dataclasses.fields(Policy), "policy.")
        for name in ("no_buy", "no_sell"):  # a list or set of symbols, held as a frozenset
            value = changes.get(name)
            if isinstance(value, (list, tuple, set)) and all(isinstance(s, str) for s in value):
                changes[name] = frozenset(value)
        return self.replace(policy=dataclasses.replace(self.policy, **{k: _python(v) for k, v in changes.items()}))


def require_account(value, use: str) -> None:
    """A TypeError saying what ``use`` expects when ``value`` is not an ``Account`` (the library's
    entry points: ``None`` was an AttributeError from deep inside them)."""
    if not isinstance(value, Account):
        raise TypeError(f"{use} expects an Account (from load_account, account_from_dict or "
                        f"account_from_frames), got {type(value).__name__}")


def _known(changes: dict, fields, prefix: str) -> None:
    unknown = sorted(set(changes) - {f.name for f in fields})
    if unknown:
        raise InputError("unknown field", path=prefix + unknown[0], value=changes[unknown[0]], has_value=True)


def _changed_in_python(exc: InputError) -> InputError:
    """An error of an account changed by ``replace``: the change is at fault, not the file the
    account was read from (already valid), so the error names no file, and says where the account
    came from (``examples/household.toml, policy.band: ...`` sent people to a file that was fine)."""
    if exc.file is None:
        return exc
    return InputError(f"{exc.message} (in a change made in Python to the account read from {exc.file})",
                      path=exc.path, value=exc.value, has_value=exc.has_value)


def _err(account: Account, path: str, message: str, value=None, has_value=True) -> InputError:
    return InputError(message, path=path, file=account.source, value=value, has_value=has_value)


def lot_place(account: Account, i: int) -> str:
    """Where lot ``i`` was given: ``line N`` of the account's lots_file, else ``lots[i]``."""
    origin = account.lots_origin
    return f"line {origin.lines[i]}" if origin is not None else f"lots[{i}]"


def lot_error(account: Account, i: int, key: str, message: str, value, file: str | None = None) -> InputError:
    """An error in ``key`` of lot ``i``: at ``lots[i].key`` of the account file (``file``, default
    ``account.source``) or, for a lot read from a lots_file, at its line there (the column named
    first, as for the file's row errors)."""
    origin = account.lots_origin
    if origin is not None:
        return InputError(f"{key}: {message}", path=f"line {origin.lines[i]}", file=origin.file, value=value,
                          has_value=True)
    return InputError(message, path=f"lots[{i}].{key}", file=file if file is not None else account.source,
                      value=value, has_value=True)


def validate(account: Account) -> Account:
    """Check the cross-field rules of SPEC section 1; raise ``InputError`` on the first broken one.

    Ranges of single values are checked by the file reader too, but are repeated here so an
    account built from Python objects gets the same guarantees.
    """
    _check_types(account)
    a, p, t = account, account.policy, account.tax
    checks: list[tuple[bool, str, str, object]] = [
        (bool(a.id) and _plain_name(a.id), "account.id",
         "must be a non-empty string without control characters (it names the account in baskets and the log)",
         a.id),
        (_finite(a.cash) and a.cash >= 0, "account.cash", "must be a finite number >= 0", a.cash),
        (0 <= t.short_term_rate <= 1, "tax.short_term_rate", "must be between 0 and 1", t.short_term_rate),
        (0 <= t.long_term_rate <= 1, "tax.long_term_rate", "must be between 0 and 1", t.long_term_rate),
        (_finite(t.realized_short_term), "tax.realized_short_term", "must be a finite number", t.realized_short_term),
        (_finite(t.realized_long_term), "tax.realized_long_term", "must be a finite number", t.realized_long_term),
        (_finite(t.carryforward_short_term) and t.carryforward_short_term >= 0, "tax.carryforward_short_term",
         "must be a finite number >= 0", t.carryforward_short_term),
        (_finite(t.carryforward_long_term) and t.carryforward_long_term >= 0, "tax.carryforward_long_term",
         "must be a finite number >= 0", t.carryforward_long_term),
        (0 <= p.band <= 1, "policy.band", "must be between 0 and 1", p.band),
        (_finite(p.tax_weight) and p.tax_weight >= 0, "policy.tax_weight", "must be a finite number >= 0", p.tax_weight),
        (not _finite(p.tax_weight) or p.tax_weight <= MAX_TAX_WEIGHT, "policy.tax_weight",
         f"must be at most {MAX_TAX_WEIGHT:,.0f}: at that weight a tax of 0.02% of the account already "
         "outweighs the largest drift a plan can remove (to cap the tax itself, set max_tax)", p.tax_weight),
        (not math.isnan(p.max_tax) and p.max_tax >= 0, "policy.max_tax", "must be >= 0 (inf for no budget)", p.max_tax),
        (_finite(p.withdrawal) and p.withdrawal >= 0, "policy.withdrawal", "must be a finite number >= 0", p.withdrawal),
        (_finite(p.min_cash) and p.min_cash >= 0, "policy.min_cash", "must be a finite number >= 0", p.min_cash),
        (_finite(p.min_trade) and p.min_trade >= 0, "policy.min_trade", "must be a finite number >= 0", p.min_trade),
        (_finite(p.trade_cost_bps) and 0 <= p.trade_cost_bps < 10_000, "policy.trade_cost_bps",
         "must be between 0 and 10000", p.trade_cost_bps),
        (0 <= p.wash_sale_days <= MAX_WASH_SALE_DAYS, "policy.wash_sale_days",
         f"must be a whole number of days from 0 to {MAX_WASH_SALE_DAYS}", p.wash_sale_days),
    ]
    for ok, path, message, value in checks:
        if not ok:
            raise _err(a, path, message, value)
    too_large = f"is too large (above {MAX_AMOUNT:.0e}): amounts this size lose cent precision"
    for path, value in [("account.cash", a.cash), ("tax.realized_short_term", t.realized_short_term),
                        ("tax.realized_long_term", t.realized_long_term),
                        ("tax.carryforward_short_term", t.carryforward_short_term),
                        ("tax.carryforward_long_term", t.carryforward_long_term),
                        ("policy.withdrawal", p.withdrawal), ("policy.min_cash", p.min_cash),
                        ("policy.min_trade", p.min_trade),
                        ("policy.max_tax", p.max_tax if math.isfinite(p.max_tax) else 0.0)]:
        if abs(value) > MAX_AMOUNT:
            raise _err(a, path, too_large, value)

    for sym, price in a.prices.items():
        if sym == CASH:
            raise _err(a, f"prices.{sym}", f"{CASH} is reserved for cash", sym)
        if not (_finite(price) and price > 0):
            raise _err(a, f"prices.{sym}", "must be a finite price > 0", price)
        if price > MAX_AMOUNT:
            raise _err(a, f"prices.{sym}", too_large, price)

    for sym, cls in a.classes.items():
        if CASH in (sym, cls):
            raise _err(a, f"classes.{sym}", f"{CASH} is reserved for cash", cls)
        if cls in a.prices and a.classes.get(cls, cls) != cls:
            raise _err(a, f"classes.{sym}", f"class name {cls!r} is also a symbol of class "
                                            f"{a.classes[cls]!r}", cls)

    class_names = set(a.classes.values())
    for cls, w in a.targets.items():
        path = f"targets.{cls}"
        if not (_finite(w) and 0 <= w <= 1):
            raise _err(a, path, "must be a weight between 0 and 1", w)
        if cls == CASH:
            raise _err(a, path, "the cash target is 1 minus the sum of the targets; do not list CASH", w)
        if cls in a.classes and a.classes[cls] != cls:
            raise _err(a, path, f"{cls} is a symbol of class {a.classes[cls]!r}; target the class", w)
        if cls not in class_names and cls not in a.prices:
            raise _err(a, path, "is neither an asset class of [classes] nor a priced symbol", cls)
        if w > 0 and not any(s in a.prices for s in a.members(cls)):
            raise _err(a, path, "has a target > 0 but none of its symbols has a price", w)
    total = math.fsum(a.targets.values())
    if total > 1 + TARGET_SUM_TOLERANCE:
        raise _err(a, "targets", "weights sum above 1", total)

    if a.lots_origin is not None and len(a.lots_origin.lines) != len(a.lots):
        raise ValueError(f"lots_origin gives {len(a.lots_origin.lines)} lines for {len(a.lots)} lots")
    prices = f"[prices] of {a.source}" if a.lots_origin is not None and a.source else "[prices]"
    first: dict[str, int] = {}
    for i, lot in enumerate(() if _plain_lots_valid(a) else a.lots):  # the loop finds the first error
        if not (isinstance(lot.id, str) and isinstance(lot.symbol, str) and _is_date(lot.acquired)):
            raise _lot_type_error(a, i, lot)
        if not lot.id:
            raise lot_error(a, i, "id", "must be a non-empty string", lot.id)
        if lot.id in first:
            raise lot_error(a, i, "id", f"duplicate lot id (first at {lot_place(a, first[lot.id])})", lot.id)
        first[lot.id] = i
        if lot.symbol not in a.prices:
            raise lot_error(a, i, "symbol", f"has no price in {prices}", lot.symbol)
        if not (_finite(lot.quantity) and lot.quantity > 0):
            raise lot_error(a, i, "quantity", _kind(lot.quantity, "a finite number of shares > 0"), lot.quantity)
        if not (_finite(lot.cost_basis) and lot.cost_basis >= 0):
            raise lot_error(a, i, "cost_basis", _kind(lot.cost_basis, "a finite cost per share >= 0"), lot.cost_basis)
        if lot.quantity * a.prices[lot.symbol] > MAX_AMOUNT:
            raise lot_error(a, i, "quantity", f"{too_large} (quantity × price)", lot.quantity)
        if lot.quantity * lot.cost_basis > MAX_AMOUNT:  # the lot's cost; named as the basis that makes it so
            raise lot_error(a, i, "cost_basis", f"{too_large} (quantity × cost_basis)", lot.cost_basis)
        if lot.acquired > a.as_of:
            raise lot_error(a, i, "acquired", f"is after as_of ({a.as_of.isoformat()})", lot.acquired.isoformat())
        if lot.acquired < FIRST_DATE:
            raise lot_error(a, i, "acquired", _DATE_RULE, lot.acquired.isoformat())

    for i, tr in enumerate(a.trades):
        path = f"trades[{i}]"
        if tr.side not in ("buy", "sell"):
            raise _err(a, f"{path}.side", "must be 'buy' or 'sell'", tr.side)
        if not (_finite(tr.quantity) and tr.quantity > 0):
            raise _err(a, f"{path}.quantity", "must be a finite number of shares > 0", tr.quantity)
        if not (_finite(tr.price) and tr.price > 0):
            raise _err(a, f"{path}.price", "must be a finite price > 0", tr.price)
        if tr.date > a.as_of:
            raise _err(a, f"{path}.date", f"is after as_of ({a.as_of.isoformat()})", tr.date.isoformat())
        if tr.realized_gain is not None:
            if tr.side != "sell":
                raise _err(a, f"{path}.realized_gain", "is for sells only", tr.realized_gain)
            if not _finite(tr.realized_gain):
                raise _err(a, f"{path}.realized_gain", "must be a finite number", tr.realized_gain)

    known_classes = set(a.class_names) | {CASH}
    for cls, b in a.bands.items():
        if cls not in known_classes:
            raise _err(a, f"bands.{cls}", "is not a targeted or held asset class (or CASH)", cls)
        if not (_finite(b) and 0 <= b <= 1):
            raise _err(a, f"bands.{cls}", "must be between 0 and 1", b)

    known_symbols = set(a.symbols) | set(a.classes)
    for name in ("no_buy", "no_sell"):
        for sym in sorted(getattr(p, name)):
            if sym not in known_symbols:
                raise _err(a, f"policy.{name}", "names a symbol that is not priced, held or in [classes]", sym)

    if a.risk is not None:
        twice = [c for i, c in enumerate(a.risk.classes) if c in a.risk.classes[:i]]
        if twice:  # the model would take one of its rows and columns silently
            raise _err(a, "risk.classes", "lists an asset class twice", twice[0])
        missing = [c for c in a.class_names if c not in a.risk.classes]
        if missing:
            raise _err(a, "risk.classes", "is missing asset classes of the account", missing)
        variances = a.risk.variances
        over = np.flatnonzero(~(variances <= MAX_VARIANCE * IMPLIED_SLACK))  # NaN too
        if len(over):
            k = int(over[0])
            raise _err(a, "risk", f"gives class {a.risk.classes[k]} a variance above {MAX_VARIANCE:g}: "
                                  f"{VARIANCE_UNITS}", float(variances[k]))
    return a


def _plain_lots_valid(a: Account) -> bool:
    """True when every lot passes ``validate``'s per-lot rules with each field of its exact type (str,
    float, date: what the file reader gives), checked a column at a time in C; False when any lot
    fails or has a value of another type, for the per-lot loop to find and name the first error.
    The loop took ~0.9 us per lot, a sixth of loading a household account (1,500 benchmark
    households, ~100 lots each); this takes about half that. Needs ``a.prices`` checked (finite
    numbers > 0)."""
    lots = a.lots
    if not lots:
        return True
    ids, symbols = [lot.id for lot in lots], [lot.symbol for lot in lots]
    quantities, costs = [lot.quantity for lot in lots], [lot.cost_basis for lot in lots]
    acquired = [lot.acquired for lot in lots]
    return (set(map(type, ids)) == set(map(type, symbols)) == {str} and all(ids) and len(set(ids)) == len(ids)
            and set(symbols) <= a.prices.keys()
            and set(map(type, quantities)) == set(map(type, costs)) == {float}
            and math.isfinite(sum(quantities)) and math.isfinite(sum(costs))  # no inf or NaN among them
            and min(quantities) > 0 and min(costs) >= 0
            # quantity × max(price, cost basis) for each lot is at most this product of the largest ones
            and max(quantities) * max(max(a.prices.values()), max(costs)) <= MAX_AMOUNT
            and set(map(type, acquired)) == {date} and FIRST_DATE <= min(acquired) and max(acquired) <= a.as_of)


def _check_types(a: Account) -> None:
    """Every field of the type the rules compare it as (what the file reader's schema ensures for a
    file): an account built or changed in Python (``Account.replace``, ``with_policy``) with a
    value of another type is an ``InputError`` naming it, never a ``TypeError`` from a comparison
    nor a string taken for a flag (``allow_sells="no"`` allowed sells)."""
    def need(ok: bool, path: str, what: str, value) -> None:
        if not ok:
            raise _err(a, path, f"must be {what}", value)

    def maps(name: str, value_ok, what: str, plain) -> None:
        m = getattr(a, name)
        need(isinstance(m, Mapping), name, "a mapping (a dict)", m)
        if set(map(type, m)) <= {str} and all(m) and plain(m.values()):  # in C: a call per item took
            return                                                       # ~10 us an account (~60 items)
        for k, v in m.items():
            need(isinstance(k, str) and bool(k), name, "keyed by non-empty strings", k)
            need(value_ok(v), f"{name}.{k}", what, v)

    for name, kind in (("lots", Lot), ("trades", Trade)):  # before anything reads a lot's symbol
        items = getattr(a, name)
        need(isinstance(items, tuple), name, f"a sequence of {kind.__name__}", items)
        if not all(map(isinstance, items, repeat(kind))):
            i = next(i for i, item in enumerate(items) if not isinstance(item, kind))
            need(False, f"{name}[{i}]", f"a {kind.__name__}", items[i])
    need(isinstance(a.id, str), "account.id", "a string", a.id)
    need(isinstance(a.currency, str) and bool(a.currency), "account.currency", "a non-empty string", a.currency)
    _check_date(a, a.as_of, "account.as_of")
    need(_number(a.cash), "account.cash", "a number", a.cash)
    need(isinstance(a.tax, TaxSettings), "tax", "a TaxSettings", a.tax)
    for f in dataclasses.fields(TaxSettings):
        need(_number(getattr(a.tax, f.name)), f"tax.{f.name}", "a number", getattr(a.tax, f.name))
    p = a.policy
    need(isinstance(p, Policy), "policy", "a Policy", p)
    for f in dataclasses.fields(Policy):
        value, path = getattr(p, f.name), f"policy.{f.name}"
        if f.name in ("allow_sells", "fractional", "milp_rounding"):
            need(isinstance(value, bool), path, "True or False", value)
        elif f.name in ("no_buy", "no_sell"):
            need(isinstance(value, (set, frozenset)) and all(isinstance(s, str) for s in value), path,
                 "a set of symbols", value)
        elif f.name == "wash_sale_days":
            need(isinstance(value, int) and not isinstance(value, bool), path, "a whole number of days", value)
        else:
            need(_number(value), path, "a number", value)
    def numbers(values) -> bool:  # each a float or int (what _number takes, but for their subclasses)
        return set(map(type, values)) <= {float, int}

    def names(values) -> bool:
        return set(map(type, values)) <= {str} and all(values)

    maps("targets", _number, "a number", numbers)
    maps("prices", _number, "a number", numbers)
    maps("bands", _number, "a number", numbers)
    maps("classes", lambda c: isinstance(c, str) and bool(c), "a non-empty string", names)
    for i, tr in enumerate(a.trades):
        need(isinstance(tr.symbol, str), f"trades[{i}].symbol", "a string", tr.symbol)
        for key in ("quantity", "price"):
            need(_number(getattr(tr, key)), f"trades[{i}].{key}", "a number", getattr(tr, key))
        need(tr.realized_gain is None or _number(tr.realized_gain), f"trades[{i}].realized_gain",
             "a number or None", tr.realized_gain)
        _check_date(a, tr.date, f"trades[{i}].date")
    need(a.risk is None or isinstance(a.risk, RiskModel), "risk", "a RiskModel or None", a.risk)


def _lot_type_error(a: Account, i: int, lot) -> InputError:
    """The error of a lot with a field of another type than a Lot's."""
    for key in ("id", "symbol"):
        value = getattr(lot, key)
        if not isinstance(value, str):
            return lot_error(a, i, key, "must be a string", value)
    return lot_error(a, i, "acquired", _DATE_RULE, lot.acquired)


def _kind(value, what: str) -> str:
    """``must be <what>``, or ``must be a number`` for a value of another type (``np.int64``)."""
    return f"must be {what}" if _number(value) else "must be a number"


_DATE_RULE = (f"must be a date (datetime.date, not a datetime) from {FIRST_DATE.isoformat()} "
              f"to {LAST_DATE.isoformat()}")


def _is_date(d) -> bool:
    return isinstance(d, date) and not isinstance(d, datetime)


def _check_date(a: Account, d, path: str) -> None:
    if not _is_date(d) or not FIRST_DATE <= d <= LAST_DATE:
        raise _err(a, path, _DATE_RULE, d)


def _number(x) -> bool:
    """An int or float, not a bool (NaN and inf included: the range checks name those)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _plain_name(text: str) -> bool:
    """Not blank and without control characters (NUL, newline, ...): what a broker's file and a
    log line can carry as a name."""
    return bool(text.strip()) and not any(unicodedata.category(ch) == "Cc" for ch in text)


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
