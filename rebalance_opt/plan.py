"""The plan: orders with the lots each sell relieves, its tax, drift before and after.

``Plan.to_dict`` is the one serialization of SPEC section 3's ``generate --json`` object,
used by the CLI, the web API, the audit log and the batch alike.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from .drift import DriftReport
from .errors import InputError
from .tax import TaxSummary

if TYPE_CHECKING:
    import pandas as pd


MAX_REASON_CHARS = 500  # a reason is a label ("Quarterly Reset", "Drift Trigger"), not a document


def check_reason(text: str, path: str) -> str:
    """A rebalance reason as the log records it: stripped, not empty, at most MAX_REASON_CHARS,
    and text that can be stored and shown (no NUL, no lone surrogate)."""
    if not isinstance(text, str):  # the library's reason=5 was stored as the number
        raise InputError("must be text", path=path, value=text, has_value=True)
    reason = text.strip()
    if not reason:
        raise InputError("must not be empty", path=path, value=text, has_value=True)
    if len(reason) > MAX_REASON_CHARS:
        raise InputError(f"must be at most {MAX_REASON_CHARS} characters", path=path, value=f"{len(reason)} characters",
                         has_value=True)
    if "\x00" in reason or any(0xD800 <= ord(ch) <= 0xDFFF for ch in reason):
        raise InputError("must be text without NUL characters or lone surrogates", path=path)
    return reason


@dataclass(frozen=True)
class LotSale:
    """Shares relieved from one lot by a sell, with the gain and the lot-level tax it realizes."""

    lot: str
    quantity: float
    gain: float
    term: str          # "short" | "long"
    tax: float         # rate(term) × gain; negative for a loss
    cost_basis: float
    acquired: str

    def to_dict(self) -> dict:
        return {"lot": self.lot, "quantity": self.quantity, "gain": self.gain, "term": self.term,
                "tax": self.tax, "cost_basis": self.cost_basis, "acquired": self.acquired}


@dataclass(frozen=True)
class Order:
    """One line of the basket: a buy, or a sell with the lots it relieves."""

    symbol: str
    side: str          # "buy" | "sell"
    quantity: float
    price: float
    asset_class: str
    lots: tuple[LotSale, ...] = ()

    @property
    def notional(self) -> float:
        """Quantity × estimated price, unrounded (basket files round it to the cent)."""
        return self.quantity * self.price

    def to_dict(self) -> dict:
        return {"symbol": self.symbol, "side": self.side, "quantity": self.quantity, "price": self.price,
                "notional": self.notional, "asset_class": self.asset_class,
                "lots": [lot.to_dict() for lot in self.lots]}


@dataclass(frozen=True)
class Objective:
    """The plan's objective value, term by term, in SPEC section 2's units."""

    tracking: float
    tax: float
    trading: float

    @property
    def total(self) -> float:
        return self.tracking + self.tax + self.trading

    def to_dict(self) -> dict:
        return {"tracking": self.tracking, "tax": self.tax, "trading": self.trading, "total": self.total}


@dataclass(frozen=True)
class SolverInfo:
    """Which solver produced the plan, how often the model was solved, and the time it took. The
    times are left out of ``==``: two plans of the same account compared unequal by them alone."""

    name: str
    status: str
    solves: int
    solve_seconds: float = field(compare=False)
    total_seconds: float = field(compare=False)

    def to_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "solves": self.solves,
                "solve_seconds": self.solve_seconds, "total_seconds": self.total_seconds}


@dataclass(frozen=True)
class Plan:
    """A rebalance ready to trade. Sells come before buys, so sale proceeds fund the buys."""

    account: str
    as_of: str
    currency: str
    status: str
    reason: str
    stage: str                      # "cash_first" | "full"
    orders: tuple[Order, ...]
    tax: TaxSummary
    drift_before: DriftReport
    drift_after: DriftReport
    value: float                    # V, before trading
    cash_before: float
    cash_after: float               # after the trades and their cost, before the withdrawal is paid out
    withdrawal: float               # set aside from cash_after (what stays: cash_after − withdrawal)
    trading_cost: float
    lot_tax: float                  # Σ rate(term) × gain over lots sold (the model's tax term)
    objective: Objective
    solver: SolverInfo
    notes: tuple[str, ...] = ()
    log_id: int | None = None
    inputs: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def buys(self) -> tuple[Order, ...]:
        """The buy orders, in basket order."""
        return tuple(o for o in self.orders if o.side == "buy")

    @property
    def sells(self) -> tuple[Order, ...]:
        """The sell orders, each with the lots it relieves."""
        return tuple(o for o in self.orders if o.side == "sell")

    @property
    def turnover(self) -> float:
        """Σ notional over all orders (money traded, both sides)."""
        return sum(o.notional for o in self.orders)

    def with_log_id(self, log_id: int | None) -> "Plan":
        """This plan with the audit log entry that recorded it."""
        return replace(self, log_id=log_id)

    def orders_frame(self) -> "pd.DataFrame":
        """The orders as a pandas frame, one row per order in basket order (sells first): symbol,
        side, quantity, price, notional, asset_class, and for a sell its lot tax and gain."""
        import pandas as pd
        rows = [{"symbol": o.symbol, "side": o.side, "quantity": o.quantity, "price": o.price,
                 "notional": o.notional, "asset_class": o.asset_class,
                 "gain": sum(s.gain for s in o.lots), "lot_tax": sum(s.tax for s in o.lots)} for o in self.orders]
        return pd.DataFrame(rows, columns=["symbol", "side", "quantity", "price", "notional", "asset_class",
                                           "gain", "lot_tax"])

    def lot_sales_frame(self) -> "pd.DataFrame":
        """Every lot the sells relieve, one row each: symbol and the ``LotSale`` fields."""
        import pandas as pd
        columns = ["symbol", "lot", "quantity", "gain", "term", "tax", "cost_basis", "acquired"]
        return pd.DataFrame([{"symbol": o.symbol, **s.to_dict()} for o in self.sells for s in o.lots], columns=columns)

    def to_dict(self) -> dict:
        """SPEC section 3's ``generate --json`` object (plus documented extra keys)."""
        return {
            "account": self.account, "as_of": self.as_of, "currency": self.currency,
            "status": self.status, "reason": self.reason, "stage": self.stage,
            "orders": [o.to_dict() for o in self.orders],
            "tax": {**self.tax.to_dict(), "lot_tax": self.lot_tax},
            "drift_before": self.drift_before.drift_map(), "drift_after": self.drift_after.drift_map(),
            "value": self.value, "cash_before": self.cash_before, "cash_after": self.cash_after,
            "withdrawal": self.withdrawal, "trading_cost": self.trading_cost, "turnover": self.turnover,
            "objective": self.objective.to_dict(), "solver": self.solver.to_dict(),
            "notes": list(self.notes), "log_id": self.log_id,
        }
