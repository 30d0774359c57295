"""Weights, drift and band status per asset class and cash (SPEC section 2)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from .account import CASH, Account, require_account

BAND_TOLERANCE = 1e-9  # a drift within this of its band counts as on the band, i.e. in band


def status(drift: float, band: float) -> str:
    """``overweight`` (drift > band), ``underweight`` (drift < −band) or ``in_band``."""
    if drift > band + BAND_TOLERANCE:
        return "overweight"
    if drift < -band - BAND_TOLERANCE:
        return "underweight"
    return "in_band"


@dataclass(frozen=True)
class DriftRow:
    """One class (or ``CASH``): its weight, target, drift = weight − target, band and status."""

    name: str
    value: float
    current_weight: float
    target_weight: float
    drift: float
    band: float
    status: str

    def to_dict(self) -> dict:
        return {"name": self.name, "current_weight": self.current_weight, "target_weight": self.target_weight,
                "drift": self.drift, "status": self.status, "band": self.band, "value": self.value}


@dataclass(frozen=True)
class DriftReport:
    """Drift of every class, cash last; ``value`` is the denominator the weights are measured on."""

    account: str
    as_of: str
    currency: str
    value: float
    band: float
    rows: tuple[DriftRow, ...]

    @property
    def cash_weight(self) -> float:
        return self.row(CASH).current_weight

    def row(self, name: str) -> DriftRow:
        """The row of class ``name`` (or ``CASH``)."""
        return next(r for r in self.rows if r.name == name)

    def drift_map(self) -> dict[str, float]:
        """Drift (weight − target, a fraction) per class and cash."""
        return {r.name: r.drift for r in self.rows}

    @property
    def in_band(self) -> bool:
        """Whether every class and cash is within its band."""
        return all(r.status == "in_band" for r in self.rows)

    @property
    def squared_error(self) -> float:
        """Σ drift² over classes and cash (the tracking term without a risk model)."""
        return math.fsum(r.drift ** 2 for r in self.rows)

    def to_dict(self) -> dict:
        """The ``check --json`` object of SPEC section 3 (``CASH`` is the last row of classes)."""
        return {"account": self.account, "as_of": self.as_of, "currency": self.currency, "value": self.value,
                "band": self.band, "classes": [r.to_dict() for r in self.rows], "cash_weight": self.cash_weight,
                "in_band": self.in_band}


def class_values(account: Account, shares: Mapping[str, float]) -> dict[str, float]:
    """Market value per class (every class of the account, zero where nothing is held)."""
    values = dict.fromkeys(account.class_names, 0.0)
    for sym, qty in shares.items():
        if qty:
            cls = account.class_of(sym)
            values[cls] = values.get(cls, 0.0) + qty * account.prices[sym]
    return values


def drift_report(account: Account, shares: Mapping[str, float] | None = None, cash: float | None = None,
                 denominator: float | None = None) -> DriftReport:
    """Drift of the account as it is, or of given holdings and cash measured on ``denominator``.

    After a plan, SPEC section 2 measures weights on V' = V − withdrawal and the cash weight as
    (cash_after − withdrawal) / V'; callers pass ``cash = cash_after − withdrawal`` and
    ``denominator = V'``. With no arguments it is the pre-trade report on V.
    """
    require_account(account, "drift_report")
    shares = account.shares() if shares is None else shares
    cash = account.cash if cash is None else cash
    values = class_values(account, shares)
    denom = denominator if denominator is not None else math.fsum(values.values()) + cash
    rows = []
    for name, value in [*values.items(), (CASH, cash)]:
        weight = value / denom if denom > 0 else 0.0
        target = account.target(name)
        band = account.band(name)
        rows.append(DriftRow(name, value, weight, target, weight - target, band, status(weight - target, band)))
    return DriftReport(account.id, account.as_of.isoformat(), account.currency, denom, account.policy.band,
                       tuple(rows))
