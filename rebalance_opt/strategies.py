"""Rebalancing strategies for the backtest: the ones people use today, and the engine's policies.

Every strategy sees the account on each monthly step (after the month's deposit) and returns the
fills to execute; the cash a step must raise (a withdrawal, last year's tax) is part of the step.

* **Calendar reset** (``quarterly-fifo``, ``quarterly-mintax``, ``annual-fifo``, ...): on the first
  step of each period every class is traded back to target; sells relieve lots oldest first (FIFO,
  the broker default) or cheapest first (``mintax``: the minimum-tax order, losses first). In the
  other months deposits buy what is most underweight (water-filling) and a withdrawal sells what is
  most overweight. Naive about wash sales, like the tools it stands for: it buys back a fund it sold
  at a loss days ago, and the simulator disallows the loss.
* **Tolerance band** (``band-fifo``, ``band-mintax``; ``band-fifo@0.03`` for another band): each
  month, classes outside ±band of target are traded back to target; the cash that frees (or needs)
  is spread over the classes in band by water-filling; otherwise it trades like cash flow.
* **Cash flow** (``cash-flow``): the engine with ``allow_sells = false``: deposits buy what is
  underweight, nothing is sold except to raise a withdrawal.
* **Optimizer** (``optimizer@W``): the engine at ``tax_weight = W``, cash first and band-gated, lots
  in minimum-tax order, one fund per class.
* **Harvest** (``harvest@W``): the same with each class's replacement fund listed after its primary,
  so the engine harvests losses and keeps the class invested through the replacement, never buying
  back within the wash-sale window.

Naive strategies trade in fractional shares to the millionth, like the engine's fractional plans.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
import datetime as dt
from typing import Protocol, Sequence

import numpy as np

from .account import MAX_TAX_WEIGHT, Account, Lot
from .account_file import parse_number
from .backtest_data import Universe
from .book import Book
from .errors import InputError, RebalanceError
from .simulate import Fill, fills_from_plan
from .solve import Planner
from .tax import min_tax_order

STEP = 1e-6            # share step of the naive strategies (fractional, like the engine's)
DUST = 1.0             # class trades below this many currency units are not worth an order
LOT_ORDERS = ("fifo", "mintax")
CALENDARS = {"monthly": 1, "quarterly": 3, "semiannual": 6, "annual": 12}
DEFAULT_OPTIMIZER_BAND = 0.01


@dataclass(frozen=True)
class Step:
    """One rebalancing date: its number (0 invests the initial cash) and the cash it must raise."""

    date: dt.date
    index: int
    withdrawal: float = 0.0


@dataclass(frozen=True)
class Decision:
    fills: tuple[Fill, ...]
    note: str | None = None


class Strategy(Protocol):
    name: str

    @property
    def label(self) -> str: ...

    @property
    def family(self) -> str: ...

    def configure(self, account: Account, universe: Universe) -> Account: ...

    def decide(self, account: Account, step: Step) -> Decision: ...


# --- class-level arithmetic shared by the naive strategies --------------------------------------
def water_fill(values: np.ndarray, targets: np.ndarray, amount: float,
               eligible: np.ndarray | None = None) -> np.ndarray:
    """New class values after putting ``amount`` in (> 0: buying the most underweight first) or
    taking it out (< 0: selling the most overweight first), among ``eligible`` classes: the
    trade that minimizes Σ (value − target)², never selling a class below zero."""
    values = np.asarray(values, float)
    targets = np.asarray(targets, float)
    ok = np.ones(len(values), bool) if eligible is None else np.asarray(eligible, bool)
    if abs(amount) <= 0 or not ok.any():
        return values.copy()
    gap = values - targets

    def moved(level: float) -> np.ndarray:
        if amount > 0:
            return np.where(ok, np.maximum(level - gap, 0.0), 0.0)
        return np.where(ok, np.minimum(np.maximum(gap - level, 0.0), values), 0.0)

    lo, hi = float(gap.min() - abs(amount) - 1.0), float(gap.max() + abs(amount) + 1.0)
    for _ in range(200):  # bisection on the common level the traded classes reach
        mid = (lo + hi) / 2
        if (moved(mid).sum() > abs(amount)) == (amount > 0):
            hi = mid
        else:
            lo = mid
    step = moved(lo if amount > 0 else hi)
    total = step.sum()
    if total > 0:
        step *= min(abs(amount), total) / total
    return values + step if amount > 0 else values - step


@dataclass(frozen=True)
class ClassView:
    """The account by class: values now, target weights, and V' = V − withdrawal, the value that
    stays invested (SPEC section 2)."""

    classes: tuple[str, ...]
    values: np.ndarray
    weights: np.ndarray        # target weight per class
    invested: float            # V'
    value: float               # V, before the withdrawal

    @staticmethod
    def of(account: Account, withdrawal: float) -> "ClassView":
        book = Book(account)
        return ClassView(book.classes, book.class_value.copy(),
                         np.array([account.target(c) for c in book.classes]), book.value - withdrawal, book.value)

    @property
    def targets(self) -> np.ndarray:
        """Target values: weight × V'."""
        return self.weights * self.invested

    @property
    def spare(self) -> float:
        """Cash the classes may absorb, beyond the cash target (< 0: cash they must give up)."""
        return float(self.targets.sum() - self.values.sum())


def cash_flow_values(view: ClassView) -> np.ndarray:
    """Deposits buy the most underweight classes; a withdrawal sells the most overweight."""
    return water_fill(view.values, view.targets, view.spare)


def reset_values(view: ClassView) -> np.ndarray:
    return view.targets


def band_values(view: ClassView, band: float) -> tuple[np.ndarray, bool]:
    """Classes outside ±band (weights before trading) go to target; the cash that frees or needs is
    spread over the others by water-filling. Returns the values and whether any class broke out."""
    weights = view.values / view.value if view.value > 0 else np.zeros_like(view.values)
    out = np.abs(weights - view.weights) > band + 1e-9
    if not out.any():
        return cash_flow_values(view), False
    desired = np.where(out, view.targets, view.values)
    rest = float(view.targets.sum() - desired.sum())
    return np.where(out, desired, water_fill(desired, view.targets, rest, eligible=~out)), True


def lots_in_order(account: Account, lots: Sequence[Lot], order: str) -> list[Lot]:
    if order == "fifo":
        return sorted(lots, key=lambda l: (l.acquired, l.id))
    return min_tax_order(account, lots)


def trade_to(account: Account, view: ClassView, desired: np.ndarray, order: str, withdrawal: float
             ) -> tuple[Fill, ...]:
    """Fills taking every class to ``desired``: sells relieve the class's lots in ``order``; buys go
    to the class's first listed fund (wash sales ignored, as naive tools do); buys shrink if cash
    (after sells and the withdrawal) runs short."""
    selling: dict[int, float] = {}             # class -> value to sell
    buys: list[tuple[str, float, float]] = []  # symbol, price, value wanted
    dust = max(DUST, 1e-7 * view.value)
    for k, (cls, have, want) in enumerate(zip(view.classes, view.values, desired)):
        delta = float(want - have)
        if delta < -dust:
            selling[k] = -delta
        elif delta > dust and account.target(cls) > 0:
            sym = account.members(cls)[0]
            buys.append((sym, account.prices[sym], delta))

    def sells_for(amounts: dict[int, float]) -> tuple[list[Fill], float]:
        fills = [f for k, v in amounts.items() for f in _sell_class(account, view.classes[k], v, order)]
        return fills, account.cash + math.fsum(f.notional for f in fills) - withdrawal

    sells, cash = sells_for(selling)
    # A withdrawal is owed in full: what the dust threshold left unsold (a class's share of it
    # under $1) comes from the classes furthest above where they should be. An account drained
    # to $1.44 was asked for $0.68, sold $0.55, and the run stopped on a negative cash balance.
    for k in sorted(range(len(view.classes)), key=lambda j: float(view.values[j] - desired[j]), reverse=True):
        if cash >= 0:
            break
        room = float(view.values[k]) - selling.get(k, 0.0)
        if room > 0:
            selling[k] = selling.get(k, 0.0) + min(-cash, room)
            sells, cash = sells_for(selling)
    want_total = math.fsum(v for _, _, v in buys)
    scale = min(1.0, max(cash, 0.0) / want_total) if want_total > 0 else 0.0
    out_buys = []
    for sym, price, value in buys:
        q = math.floor(value * scale / price / STEP) * STEP
        if q > 0:
            out_buys.append(Fill(sym, "buy", q, price))
    return tuple(sells) + tuple(out_buys)


def _sell_class(account: Account, cls: str, value: float, order: str) -> list[Fill]:
    lots = [l for l in account.lots if account.class_of(l.symbol) == cls]
    relieved: dict[str, list[tuple[str, float]]] = {}
    left = value
    for lot in lots_in_order(account, lots, order):
        if left <= 1e-9:
            break
        price = account.prices[lot.symbol]
        q = min(lot.quantity, math.ceil(left / price / STEP - 1e-9) * STEP)
        relieved.setdefault(lot.symbol, []).append((lot.id, q))
        left -= q * price
    return [Fill(sym, "sell", math.fsum(q for _, q in pairs), account.prices[sym], tuple(pairs))
            for sym, pairs in relieved.items()]


# --- the strategies -------------------------------------------------------------------------------
def _naive_account(account: Account, universe: Universe) -> Account:
    return account.replace(classes=universe.class_map(replacements=False))


@dataclass
class CalendarReset:
    """Reset to target on the first step of every ``months`` (calendar months 1, 1 + months, ...)."""

    months: int = 3
    lot_order: str = "fifo"
    name: str = ""

    def __post_init__(self) -> None:
        period = {v: k for k, v in CALENDARS.items()}.get(self.months, f"every-{self.months}-months")
        self.name = self.name or f"{period}-{self.lot_order}"

    @property
    def label(self) -> str:
        period = {v: k for k, v in CALENDARS.items()}.get(self.months, f"every {self.months} months")
        lots = "FIFO lots" if self.lot_order == "fifo" else "cheapest lots"
        return f"{period} reset, {lots}"

    @property
    def family(self) -> str:
        return "reset"

    def configure(self, account: Account, universe: Universe) -> Account:
        return _naive_account(account, universe)

    def due(self, step: Step) -> bool:
        return step.index == 0 or (step.date.month - 1) % self.months == 0

    def decide(self, account: Account, step: Step) -> Decision:
        view = ClassView.of(account, step.withdrawal)
        desired = reset_values(view) if self.due(step) else cash_flow_values(view)
        return Decision(trade_to(account, view, desired, self.lot_order, step.withdrawal))


@dataclass
class ToleranceBand:
    """Each month, classes outside ±band go back to target (see ``band_values``)."""

    band: float = 0.05
    lot_order: str = "fifo"
    name: str = ""

    def __post_init__(self) -> None:
        self.band += 0.0  # a band of -0.0 is named @0
        self.name = self.name or (f"band-{self.lot_order}" if self.band == 0.05
                                  else f"band-{self.lot_order}@{self.band:g}")

    @property
    def label(self) -> str:
        lots = "FIFO lots" if self.lot_order == "fifo" else "cheapest lots"
        return f"±{self.band * 100:g}-point band, {lots}"

    @property
    def family(self) -> str:
        return "band"

    def configure(self, account: Account, universe: Universe) -> Account:
        return _naive_account(account, universe)

    def decide(self, account: Account, step: Step) -> Decision:
        view = ClassView.of(account, step.withdrawal)
        desired, _ = band_values(view, self.band)
        return Decision(trade_to(account, view, desired, self.lot_order, step.withdrawal))


@dataclass
class EnginePolicy:
    """The engine (``Planner``) with one policy: cash flow, the optimizer, or harvesting."""

    name: str
    tax_weight: float = 0.1
    band: float = DEFAULT_OPTIMIZER_BAND
    allow_sells: bool = True
    replacements: bool = False
    planner: Planner = field(default_factory=Planner, repr=False)

    @property
    def label(self) -> str:
        if not self.allow_sells:
            return "cash flow only (engine, no sells)"
        what = "optimizer + harvesting" if self.replacements else "optimizer"
        return f"{what}, tax_weight {self.tax_weight:g}, band ±{self.band * 100:g}"

    @property
    def family(self) -> str:
        return "cash-flow" if not self.allow_sells else ("harvest" if self.replacements else "optimizer")

    def configure(self, account: Account, universe: Universe) -> Account:
        a = account.replace(classes=universe.class_map(replacements=self.replacements))
        return a.with_policy(tax_weight=self.tax_weight, band=self.band, allow_sells=self.allow_sells,
                             fractional=True)

    def decide(self, account: Account, step: Step) -> Decision:
        try:
            plan = self.planner.plan(account.with_policy(withdrawal=step.withdrawal))
        except RebalanceError as exc:  # keep the simulation going; the report lists these
            view = ClassView.of(account, step.withdrawal)
            fills = trade_to(account, view, cash_flow_values(view), "mintax", step.withdrawal)
            return Decision(fills, f"{step.date}: engine gave no plan ({exc}); traded cash flow instead")
        return Decision(fills_from_plan(plan))


# --- names ------------------------------------------------------------------------------------------
STRATEGY_HELP = ("quarterly-fifo, quarterly-mintax (monthly/semiannual/annual too), band-fifo, band-mintax "
                 "(band-fifo@0.03 for a ±3-point band), cash-flow, optimizer@W, harvest@W "
                 "(optimizer or harvest alone: one per --tax-weights value; @W/B sets the band too)")
DEFAULT_STRATEGIES = ("quarterly-fifo", "quarterly-mintax", "band-fifo", "cash-flow", "optimizer", "harvest")
DEFAULT_TAX_WEIGHTS = (0.03, 0.1, 0.3, 1.0, 3.0)
_NAME = re.compile(r"^(?P<kind>[a-z-]+?)(?:@(?P<arg>[0-9.eE+-]+)(?:/(?P<band>[0-9.eE+-]+))?)?$")


def sweeps_tax_weights(spec: str) -> bool:
    """Whether ``spec`` expands to one strategy per tax weight (``optimizer`` or ``harvest`` without
    ``@W``): the names --tax-weights applies to."""
    m = _NAME.match(spec.strip().lower())
    return m is not None and m["kind"] in ("optimizer", "harvest") and m["arg"] is None


def make_strategy(spec: str, tax_weights: Sequence[float] = (0.1,), band: float = DEFAULT_OPTIMIZER_BAND
                  ) -> list[Strategy]:
    """Strategies from a name (see ``STRATEGY_HELP``); ``optimizer``/``harvest`` without ``@W``
    expand to one strategy per tax weight. Raises ``InputError`` naming the bad name."""
    m = _NAME.match(spec.strip().lower())
    bad = InputError(f"unknown strategy; known: {STRATEGY_HELP}", path="--strategies", value=spec, has_value=True)
    if not m:
        raise bad
    kind, arg, band_arg = m["kind"], m["arg"], m["band"]
    try:  # parse_number reads -0 as 0: the name says optimizer@0, not optimizer@-0
        x = parse_number(arg) if arg is not None else None
        b = parse_number(band_arg) if band_arg is not None else band + 0.0
    except ValueError:
        raise bad from None
    if (x is not None and not (math.isfinite(x) and x >= 0)) or not (0 <= b <= 1):
        raise InputError("needs a number >= 0 after @ (and a band in 0..1 after /)", path="--strategies",
                         value=spec, has_value=True)
    if kind in ("optimizer", "harvest"):
        weights = [x] if x is not None else [w + 0.0 for w in tax_weights]  # + 0.0: -0.0 is named @0
        if any(w > MAX_TAX_WEIGHT for w in weights):
            raise InputError(f"a tax_weight is at most {MAX_TAX_WEIGHT:,.0f} (the range of policy.tax_weight)",
                             path="--strategies" if x is not None else "--tax-weights",
                             value=spec if x is not None else max(weights), has_value=True)
        return [EnginePolicy(f"{kind}@{w:g}" + (f"/{b:g}" if band_arg is not None else ""), tax_weight=w, band=b,
                             replacements=kind == "harvest") for w in weights]
    if kind == "cash-flow" and x is None:
        return [EnginePolicy("cash-flow", allow_sells=False, band=b)]
    cal, _, lots = kind.rpartition("-")
    if lots in LOT_ORDERS and band_arg is None:
        if cal in CALENDARS and x is None:
            return [CalendarReset(CALENDARS[cal], lots, kind)]
        if cal == "band":
            width = 0.05 if x is None else x
            if width > 1:
                raise InputError("a band is a weight in 0..1", path="--strategies", value=spec, has_value=True)
            return [ToleranceBand(width, lots, kind if x is None else f"{kind}@{width:g}")]
    raise bad


def make_strategies(specs: Sequence[str], tax_weights: Sequence[float] = (0.1,),
                    band: float = DEFAULT_OPTIMIZER_BAND) -> list[Strategy]:
    out: list[Strategy] = []
    seen: set[str] = set()
    for spec in specs:
        for s in make_strategy(spec, tax_weights, band):
            if s.name not in seen:
                seen.add(s.name)
                out.append(s)
    return out
