"""Seeded synthetic books: household accounts and direct-indexing accounts, as account-file dicts.

Every generator returns a plain dict in the file structure of SPEC section 1 (what
``account_from_dict`` reads and what ``write_accounts`` writes as ``.json``/``.toml`` files), and
is a pure function of its seed: the same seed gives the same book on any machine.

What makes the books realistic rather than random:

* prices follow one simulated geometric Brownian path per symbol over the last ~12 years, and
  every lot's cost basis is that path's price on the lot's acquisition date, so gains and losses,
  short- and long-term lots, and their tax all come out of one consistent history;
* households hold 2-3 funds per asset class (a primary and alternates, as advisors do for
  tax-loss harvesting), a few legacy single stocks without a target, lots bought by
  dollar-cost averaging, cash from a deposit, and drift that puts some classes out of band;
* a share of accounts carries the awkward parts of the policy: withdrawals, a tax budget,
  ``min_trade``, trading costs, ``no_sell`` positions, and recent trades that trigger the
  wash-sale rules;
* direct-indexing accounts target every stock separately (each symbol its own class), with
  cap-weighted targets and a k-factor risk model (loadings, factor covariance, specific variance).
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np

AS_OF = date(2026, 11, 24)
HISTORY_DAYS = 12 * 365

# Asset classes and the funds an advisor would hold for each, primary first.
FUND_UNIVERSE: dict[str, tuple[str, ...]] = {
    "US_LARGE": ("VOO", "IVV", "SPLG"),
    "US_TOTAL": ("VTI", "ITOT", "SCHB"),
    "US_SMALL": ("VB", "IJR", "SCHA"),
    "US_VALUE": ("VTV", "IWD", "SCHV"),
    "INTL_DEV": ("VEA", "IEFA", "SCHF"),
    "INTL_TOTAL": ("VXUS", "IXUS"),
    "EMERGING": ("VWO", "IEMG", "SCHE"),
    "US_BOND": ("BND", "AGG", "SCHZ"),
    "TREASURY": ("GOVT", "VGIT", "SCHR"),
    "TIPS": ("SCHP", "VTIP", "TIP"),
    "MUNI": ("MUB", "VTEB"),
    "REIT": ("VNQ", "SCHH", "USRT"),
    "INTL_BOND": ("BNDX", "IAGG"),
}
LEGACY_STOCKS = ("AAPL", "MSFT", "JNJ", "KO", "XOM", "PG", "IBM", "GE", "T", "PFE", "INTC", "WMT")
BOND_CLASSES = {"US_BOND", "TREASURY", "TIPS", "MUNI", "INTL_BOND"}


@dataclass(frozen=True)
class PricePath:
    """One simulated daily price path ending at ``AS_OF``; ``at(d)`` is the price on day ``d``."""

    prices: np.ndarray  # index 0 = AS_OF - HISTORY_DAYS, last = AS_OF

    def at(self, d: date) -> float:
        return float(self.prices[HISTORY_DAYS - (AS_OF - d).days])

    @property
    def last(self) -> float:
        return float(self.prices[-1])


def price_path(rng: np.random.Generator, start: float, drift: float, vol: float) -> PricePath:
    """Geometric Brownian motion with annual ``drift`` and ``vol``, daily steps."""
    dt = 1 / 365
    steps = rng.normal((drift - vol ** 2 / 2) * dt, vol * math.sqrt(dt), HISTORY_DAYS)
    return PricePath(np.round(start * np.exp(np.concatenate([[0.0], np.cumsum(steps)])), 2).clip(0.5))


def _acquisition_dates(rng: np.random.Generator, n: int) -> list[date]:
    """Dollar-cost averaging over the account's life, with more recent buys a bit likelier; one
    lot in ~25 bought in the last 45 days (short-term, and a wash-sale trigger for loss lots)."""
    start = int(rng.integers(2 * 365, HISTORY_DAYS))
    ages = np.sort(rng.uniform(0, 1, n) ** 1.3 * start)[::-1]
    recent = rng.random(n) < 0.04
    ages[recent] = rng.integers(0, 45, int(recent.sum()))
    return [AS_OF - timedelta(days=int(a)) for a in ages]


def _lots(rng: np.random.Generator, symbol: str, path: PricePath, value: float, n_lots: int,
          prefix: str) -> list[dict[str, Any]]:
    """Lots of one symbol worth about ``value`` today, bought on DCA dates at the path's prices."""
    dates = _acquisition_dates(rng, n_lots)
    weights = rng.lognormal(0.0, 0.6, n_lots)
    shares = weights / weights.sum() * value / path.last
    whole = rng.random() < 0.9  # most positions are whole shares, some have DRIP fractions
    out = []
    for j, (d, q) in enumerate(zip(dates, shares)):
        qty = max(1.0, float(round(q))) if whole else max(0.001, round(float(q), 3))
        out.append({"id": f"{prefix}{symbol}-{j + 1}", "symbol": symbol, "quantity": qty,
                    "cost_basis": path.at(d), "acquired": d.isoformat()})
    return out


def household(seed: int, *, symbols: tuple[int, int] = (10, 30), max_lots: int = 300) -> dict[str, Any]:
    """A household account: 10-30 symbols (funds in 5-11 classes and a few legacy stocks), up to
    ``max_lots`` lots, random but realistic policy, tax position and recent trades."""
    rng = np.random.default_rng([seed, 1])
    n_symbols = int(rng.integers(symbols[0], symbols[1] + 1))
    n_legacy = int(rng.integers(0, 4)) if n_symbols >= 12 else 0
    classes: list[str] = []
    funds: dict[str, list[str]] = {}
    universe = list(FUND_UNIVERSE)
    order = rng.permutation(len(universe))
    remaining = n_symbols - n_legacy
    for k in order:  # take classes with 1-3 funds each until the symbol count is reached
        if remaining <= 0:
            break
        cls = universe[k]
        take = min(remaining, int(rng.integers(1, len(FUND_UNIVERSE[cls]) + 1)))
        classes.append(cls)
        funds[cls] = list(FUND_UNIVERSE[cls][:take])
        remaining -= take
    legacy = list(rng.choice(LEGACY_STOCKS, size=n_legacy, replace=False)) if n_legacy else []

    # Targets: a Dirichlet draw over the classes, a little cash.
    cash_target = float(rng.choice([0.0, 0.01, 0.02]))
    w = rng.dirichlet(np.full(len(classes), 2.0)) * (1 - cash_target)
    targets = {c: math.floor(float(x) * 1e4) / 1e4 for c, x in zip(classes, w)}  # sum stays <= 1

    value = float(np.exp(rng.uniform(math.log(50_000), math.log(5_000_000))))
    paths = {}
    prices: dict[str, float] = {}
    for cls in classes:
        bond = cls in BOND_CLASSES
        for s in funds[cls]:
            paths[s] = price_path(rng, float(rng.uniform(20, 300)), 0.02 if bond else 0.07, 0.06 if bond else 0.18)
    for s in legacy:
        paths[s] = price_path(rng, float(rng.uniform(10, 200)), 0.06, 0.30)
    prices = {s: p.last for s, p in paths.items()}

    # Holdings drift from target: a class is over- or underweight by a few points.
    invested = value * float(rng.uniform(0.85, 0.99))
    legacy_share = 0.1 * rng.random() if legacy else 0.0
    drifted = np.clip(w * rng.lognormal(0.0, 0.35, len(classes)), 1e-4, None)
    drifted = drifted / drifted.sum() * (1 - legacy_share)
    n_lots_total = int(min(max_lots, max(n_symbols, round(math.exp(rng.uniform(math.log(20), math.log(max_lots)))))))
    held = [s for cls in classes for s in funds[cls]] + legacy
    lot_split = rng.multinomial(n_lots_total - len(held), rng.dirichlet(np.ones(len(held)))) + 1
    lots: list[dict[str, Any]] = []
    for i, s in enumerate(held):
        if s in legacy:
            sym_value = invested * legacy_share / len(legacy)
        else:
            cls = next(c for c in classes if s in funds[c])
            sym_value = invested * drifted[classes.index(cls)] * rng.dirichlet(np.ones(len(funds[cls])))[funds[cls].index(s)]
        if sym_value * 1.0 < prices[s]:
            continue
        lots.extend(_lots(rng, s, paths[s], sym_value, int(lot_split[i]), prefix=""))
    cash = round(value - invested, 2)

    policy: dict[str, Any] = {"band": float(rng.choice([0.03, 0.05])),
                              "tax_weight": float(rng.choice([0.05, 0.1, 0.3, 1.0]))}
    roll = rng.random(6)
    policy.update(_policy_options(rng, value, roll[:5], withdrawal=True, no_sell=legacy[0] if legacy else None))
    trades = _recent_trades(rng, held, prices)
    tax = {"short_term_rate": float(rng.choice([0.24, 0.32, 0.35, 0.37])),
           "long_term_rate": float(rng.choice([0.15, 0.20, 0.238]))}
    if roll[5] < 0.3:
        tax["realized_short_term"] = round(float(rng.normal(0, value * 0.005)), 2)
        tax["carryforward_long_term"] = round(float(abs(rng.normal(0, value * 0.003))), 2)
    bands = {"CASH": 0.02} if rng.random() < 0.3 else {}
    return {
        "account": {"id": f"hh-{seed:06d}", "cash": cash, "as_of": AS_OF.isoformat()},
        "tax": tax,
        "targets": targets,
        "classes": {s: cls for cls in classes for s in funds[cls]},
        "prices": prices,
        "lots": lots,
        "trades": trades,
        "bands": bands,
        "policy": policy,
    }


def _policy_options(rng: np.random.Generator, value: float, roll: np.ndarray, *, withdrawal: bool,
                    no_sell: str | None) -> dict[str, Any]:
    """The optional policy keys of a synthetic account, each switched on by one of the five
    uniform draws in ``roll``: a withdrawal (10%), a tax budget (15%), min_trade (30%), trading
    costs (30%) and a symbol that may not be sold (10%)."""
    policy: dict[str, Any] = {}
    if roll[0] < 0.1 and withdrawal:
        policy["withdrawal"] = round(float(value * rng.uniform(0.01, 0.08)), 2)
    if roll[1] < 0.15:
        policy["max_tax"] = round(float(value * rng.uniform(0.0005, 0.005)), 2)
    if roll[2] < 0.3:
        policy["min_trade"] = float(rng.choice([50.0, 100.0, 250.0]))
    if roll[3] < 0.3:
        policy["trade_cost_bps"] = float(rng.choice([1.0, 2.0, 5.0]))
    if roll[4] < 0.1 and no_sell is not None:
        policy["no_sell"] = [no_sell]
    return policy


def _recent_trades(rng: np.random.Generator, held: list[str], prices: dict[str, float]) -> list[dict[str, Any]]:
    """One account in five has traded in the last month: a loss sale or a buy (wash-sale rules)."""
    if rng.random() >= 0.2:
        return []
    out = []
    for s in rng.choice(held, size=min(len(held), int(rng.integers(1, 3))), replace=False):
        d = (AS_OF - timedelta(days=int(rng.integers(1, 40)))).isoformat()
        qty = float(rng.integers(5, 50))
        if rng.random() < 0.5:
            out.append({"symbol": str(s), "side": "sell", "quantity": qty, "price": prices[s], "date": d,
                        "realized_gain": round(-float(rng.uniform(50, 2000)), 2)})
        else:
            out.append({"symbol": str(s), "side": "buy", "quantity": qty, "price": prices[s], "date": d})
    return out


def direct_index(seed: int, n_symbols: int = 500, lots_per_symbol: int = 10, n_factors: int = 10,
                 value: float = 5_000_000.0) -> dict[str, Any]:
    """A direct-indexing account: ``n_symbols`` stocks, each its own class with a cap-weighted
    target, ``lots_per_symbol`` lots each, and a ``n_factors``-factor risk model over the stocks."""
    rng = np.random.default_rng([seed, 2])
    symbols = [f"S{i:04d}" for i in range(n_symbols)]
    caps = np.sort(rng.pareto(1.2, n_symbols) + 1)[::-1]
    target = caps / caps.sum() * 0.99
    paths = {s: price_path(rng, float(rng.uniform(10, 400)), 0.07, float(rng.uniform(0.2, 0.45))) for s in symbols}
    prices = {s: p.last for s, p in paths.items()}
    drifted = target * rng.lognormal(0.0, 0.25, n_symbols)
    drifted = drifted / drifted.sum() * 0.985
    lots = []
    for i, s in enumerate(symbols):
        lots.extend(_lots(rng, s, paths[s], value * drifted[i], lots_per_symbol, prefix=""))
    # Factor model: market plus style/sector factors, annualized variances of equity returns.
    loadings = rng.normal(0.0, 0.3, (n_symbols, n_factors))
    loadings[:, 0] = rng.normal(1.0, 0.25, n_symbols)
    a = rng.normal(0.0, 1.0, (n_factors, n_factors))
    fvol = np.concatenate([[0.16], rng.uniform(0.03, 0.08, n_factors - 1)])
    corr = a @ a.T + n_factors * np.eye(n_factors)
    d = np.sqrt(np.diag(corr))
    fcov = corr / np.outer(d, d) * np.outer(fvol, fvol)
    specific = rng.uniform(0.15, 0.35, n_symbols) ** 2
    return {
        "account": {"id": f"di-{seed:04d}-{n_symbols}x{lots_per_symbol}", "cash": round(value * 0.015, 2),
                    "as_of": AS_OF.isoformat()},
        "tax": {"short_term_rate": 0.37, "long_term_rate": 0.20},
        "targets": {s: math.floor(float(t) * 1e8) / 1e8 for s, t in zip(symbols, target)},
        "prices": prices,
        "lots": lots,
        "policy": {"band": 0.002, "tax_weight": 1.0, "fractional": False},
        "risk": {"classes": symbols, "loadings": np.round(loadings, 6).tolist(),
                 "factor_covariance": fcov.tolist(), "specific_variance": np.round(specific, 6).tolist()},
    }


def lots_account(seed: int, n_lots: int, n_symbols: int = 20) -> dict[str, Any]:
    """A household-shaped account with exactly ``n_lots`` lots over ``n_symbols`` funds (for the
    lots sweep: only the lot count grows)."""
    rng = np.random.default_rng([seed, 3])
    classes = list(FUND_UNIVERSE)[: max(2, n_symbols // 2)]
    funds = {c: list(FUND_UNIVERSE[c][:2]) for c in classes}
    held = [s for c in classes for s in funds[c]][:n_symbols]
    w = rng.dirichlet(np.full(len(classes), 3.0)) * 0.98
    value = 1_000.0 * n_lots
    paths = {s: price_path(rng, float(rng.uniform(20, 300)), 0.07, 0.18) for s in held}
    per_symbol = np.full(len(held), n_lots // len(held))
    per_symbol[: n_lots % len(held)] += 1
    drifted = w * rng.lognormal(0.0, 0.6, len(classes))  # well out of band: the plan must sell
    drifted /= drifted.sum()
    lots = []
    for i, s in enumerate(held):
        cls = next(c for c in classes if s in funds[c])
        lots.extend(_lots(rng, s, paths[s], value * 0.995 * drifted[classes.index(cls)] / len(funds[cls]),
                          int(per_symbol[i]), prefix=""))
    return {
        "account": {"id": f"lots-{n_lots}", "cash": round(value * 0.005, 2), "as_of": AS_OF.isoformat()},
        "tax": {"short_term_rate": 0.37, "long_term_rate": 0.20},
        "targets": {c: math.floor(float(x) * 1e6) / 1e6 for c, x in zip(classes, w)},
        "classes": {s: c for c in classes for s in funds[c] if s in held},
        "prices": {s: paths[s].last for s in held},
        "lots": lots,
        "policy": {"band": 0.03, "tax_weight": 0.3},
    }


def households(n: int, seed: int = 0, **kw: Any) -> Iterator[dict[str, Any]]:
    """``n`` distinct household accounts from one seed (account ids are distinct)."""
    for i in range(n):
        yield household(seed * 1_000_000 + i, **kw)


def write_accounts(folder: str | Path, books: Iterator[dict[str, Any]] | list[dict[str, Any]],
                   fmt: str = "json") -> list[Path]:
    """Write each book as ``<account id>.json`` (or ``.toml``) into ``folder``; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for book in books:
        path = folder / f"{book['account']['id']}.{fmt}"
        if fmt == "json":
            path.write_text(json.dumps(book, separators=(",", ":")))
        elif fmt == "toml":
            import tomli_w
            path.write_text(tomli_w.dumps({k: v for k, v in book.items() if v != [] and v != {}}))
        else:
            raise ValueError(f"unknown account file format {fmt!r}")
        paths.append(path)
    return paths


def sized_household(seed: int, n_symbols: int, lots_per_symbol: int) -> dict[str, Any]:
    """A household-shaped account of exactly ``n_symbols`` funds (two per asset class) with
    ``lots_per_symbol`` lots each: the fixed sizes of the engine benchmark."""
    rng = np.random.default_rng([seed, 4])
    n_classes = max(1, n_symbols // 2)
    classes = [f"CLASS{k:02d}" for k in range(n_classes)]
    symbols = [f"F{i:03d}" for i in range(n_symbols)]
    class_of = {s: classes[min(i // 2, n_classes - 1)] for i, s in enumerate(symbols)}
    w = rng.dirichlet(np.full(n_classes, 3.0)) * 0.98
    value = 2_000_000.0
    paths = {s: price_path(rng, float(rng.uniform(20, 300)), 0.07, 0.2) for s in symbols}
    drifted = w * rng.lognormal(0.0, 0.35, n_classes)
    drifted /= drifted.sum()
    members = {c: [s for s in symbols if class_of[s] == c] for c in classes}
    lots = []
    for s in symbols:
        c = class_of[s]
        lots.extend(_lots(rng, s, paths[s], value * 0.97 * drifted[classes.index(c)] / len(members[c]),
                          lots_per_symbol, prefix=""))
    return {
        "account": {"id": f"hh-{n_symbols}x{lots_per_symbol}", "cash": round(value * 0.03, 2),
                    "as_of": AS_OF.isoformat()},
        "tax": {"short_term_rate": 0.37, "long_term_rate": 0.20},
        "targets": {c: math.floor(float(x) * 1e6) / 1e6 for c, x in zip(classes, w)},
        "classes": class_of,
        "prices": {s: paths[s].last for s in symbols},
        "lots": lots,
        "policy": {"band": 0.02, "tax_weight": 0.3},
    }


def perturbed(book: dict[str, Any], seed: int, scale: float = 0.01) -> dict[str, Any]:
    """The same account with every price moved by a seeded ~1% (a re-plan's new data)."""
    rng = np.random.default_rng([seed, 5])
    prices = {s: round(p * float(np.exp(rng.normal(0.0, scale))), 2) for s, p in book["prices"].items()}
    return {**book, "prices": prices}


# --- a firm's book: many accounts on one model portfolio, as one account set -------------------
@dataclass(frozen=True)
class FirmBook:
    """Household accounts that share one market and model portfolio (targets, classes, prices),
    as an account set sees them: ``template`` is what they share, ``accounts`` are the complete
    account-file dicts (template plus each account's lots, cash, tax and policy), so the same
    books can be written as a folder (``write_accounts``) and as a set (``write_account_set``)."""

    template: dict[str, Any]
    accounts: list[dict[str, Any]]


def firm_book(n: int, seed: int = 0, *, max_lots: int = 300, cash_only: float = 0.01) -> FirmBook:
    """``n`` households of one advisory firm: every account targets the firm's model over 7 asset
    classes (2-3 funds each, priced on one simulated market with 12 legacy stocks), holds its
    own subset of those funds in up to ``max_lots`` DCA lots, and has its own cash, tax rates,
    realized gains and policy (band, tax weight, and for some a withdrawal, a tax budget,
    ``min_trade``, trading costs, a ``no_sell`` legacy stock). A share ``cash_only`` of the
    accounts hold only cash (a new account). A pure function of ``n`` and ``seed``."""
    rng = np.random.default_rng([seed, 6])
    universe = list(FUND_UNIVERSE)
    classes = [universe[k] for k in sorted(rng.choice(len(universe), size=7, replace=False))]
    funds = {c: list(FUND_UNIVERSE[c]) for c in classes}
    paths = {s: price_path(rng, float(rng.uniform(20, 300)), 0.02 if c in BOND_CLASSES else 0.07,
                           0.06 if c in BOND_CLASSES else 0.18) for c in classes for s in funds[c]}
    paths.update({s: price_path(rng, float(rng.uniform(10, 200)), 0.06, 0.30) for s in LEGACY_STOCKS})
    w = rng.dirichlet(np.full(len(classes), 2.0)) * 0.98
    template: dict[str, Any] = {
        "account": {"as_of": AS_OF.isoformat()},
        "tax": {"short_term_rate": 0.37, "long_term_rate": 0.20},
        "targets": {c: math.floor(float(x) * 1e4) / 1e4 for c, x in zip(classes, w)},
        "classes": {s: c for c in classes for s in funds[c]},
        "prices": {s: p.last for s, p in paths.items()},
        "bands": {"CASH": 0.02},
        "policy": {"band": 0.05, "tax_weight": 0.1},
    }
    accounts = [_firm_account(template, paths, classes, funds, w, seed, i, max_lots, cash_only) for i in range(n)]
    return FirmBook(template, accounts)


def _firm_account(template: dict[str, Any], paths: dict[str, PricePath], classes: list[str],
                  funds: dict[str, list[str]], w: np.ndarray, seed: int, i: int, max_lots: int,
                  cash_only: float) -> dict[str, Any]:
    """Account ``i`` of a firm's book: the template plus its own holdings, cash, tax and policy."""
    rng = np.random.default_rng([seed, i, 7])
    value = float(np.exp(rng.uniform(math.log(50_000), math.log(5_000_000))))
    lots: list[dict[str, Any]] = []
    invested = 0.0
    if rng.random() >= cash_only:
        invested = value * float(rng.uniform(0.85, 0.99))
        held = {c: list(rng.choice(funds[c], size=int(rng.integers(1, len(funds[c]) + 1)), replace=False))
                for c in classes}
        legacy = list(rng.choice(LEGACY_STOCKS, size=int(rng.integers(0, 4)), replace=False))
        legacy_share = 0.1 * rng.random() if legacy else 0.0
        drifted = np.clip(w * rng.lognormal(0.0, 0.35, len(classes)), 1e-4, None)
        drifted = drifted / drifted.sum() * (1 - legacy_share)
        symbols = [s for c in classes for s in held[c]] + legacy
        n_lots = int(min(max_lots, max(len(symbols), round(math.exp(rng.uniform(math.log(20), math.log(max_lots)))))))
        split = rng.multinomial(n_lots - len(symbols), rng.dirichlet(np.ones(len(symbols)))) + 1
        for k, s in enumerate(symbols):
            if s in legacy:
                sym_value = invested * legacy_share / len(legacy)
            else:
                c = next(c for c in classes if s in held[c])
                sym_value = invested * drifted[classes.index(c)] / len(held[c])
            if sym_value >= paths[s].last:
                lots.extend(_lots(rng, s, paths[s], sym_value, int(split[k]), prefix=""))
        legacy_held = [s for s in legacy if any(lot["symbol"] == s for lot in lots)]
    else:
        legacy_held = []
    tax = {"short_term_rate": float(rng.choice([0.24, 0.32, 0.35, 0.37])),
           "long_term_rate": float(rng.choice([0.15, 0.20, 0.238]))}
    roll = rng.random(7)
    if roll[0] < 0.3:
        tax["realized_short_term"] = round(float(rng.normal(0, value * 0.005)), 2)
        tax["carryforward_long_term"] = round(float(abs(rng.normal(0, value * 0.003))), 2)
    policy: dict[str, Any] = {"band": float(rng.choice([0.03, 0.05])),
                              "tax_weight": float(rng.choice([0.05, 0.1, 0.3, 1.0]))}
    policy.update(_policy_options(rng, value, roll[1:6], withdrawal=bool(lots),
                                  no_sell=legacy_held[0] if legacy_held else None))
    return {**template,
            "account": {**template["account"], "id": f"acct-{seed}-{i:06d}", "cash": round(value - invested, 2)},
            "tax": {**template["tax"], **tax}, "policy": {**template["policy"], **policy}, "lots": lots}


def set_rows(book: FirmBook) -> tuple[list[str], list[dict[str, Any]]]:
    """The book as an account set's rows (one per lot, one empty-lot row for an account without
    lots) and its columns: ``account``, ``cash``, a ``tax.<key>`` / ``policy.<key>`` column for
    every value where some account differs from the template (empty where it does not), and the
    lot columns."""
    overrides = []
    for acc in book.accounts:
        own = {f"{section}.{k}": v for section in ("tax", "policy") for k, v in acc[section].items()
               if book.template[section].get(k) != v}
        overrides.append(own)
    extra = sorted({k for own in overrides for k in own})
    lot_columns = ["id", "symbol", "quantity", "cost_basis", "acquired"]
    rows = []
    for acc, own in zip(book.accounts, overrides):
        shared = {"account": acc["account"]["id"], "cash": acc["account"]["cash"], **{k: own.get(k) for k in extra}}
        for lot in acc["lots"] or [dict.fromkeys(lot_columns)]:
            rows.append({**shared, **{c: lot[c] for c in lot_columns}})
    return ["account", "cash", *extra, *lot_columns], rows


def write_account_set(folder: str | Path, book: FirmBook, fmt: str = "csv") -> tuple[Path, Path]:
    """Write the book as one account set ``lots.csv`` or ``lots.parquet`` and its template
    ``template.json`` in ``folder``; returns (set, template). CSV cells are text (numbers as
    Python writes them, so they read back exactly; lists joined with ``;``); Parquet columns
    are typed (floats, dates, lists of strings), with nulls where a cell is empty."""
    import csv
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    template = folder / "template.json"
    template.write_text(json.dumps(book.template, indent=1))
    columns, rows = set_rows(book)
    if fmt == "csv":
        path = folder / "lots.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(columns)
            for row in rows:
                writer.writerow([_csv_cell(row[c]) for c in columns])
    elif fmt == "parquet":
        import pandas as pd
        path = folder / "lots.parquet"
        frame = pd.DataFrame(rows, columns=columns)
        frame["acquired"] = pd.Series([date.fromisoformat(r["acquired"]) if r["acquired"] else None for r in rows],
                                      dtype=object)
        frame.to_parquet(path, index=False)
    else:
        raise ValueError(f"unknown account set format {fmt!r}")
    return path, template


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ";".join(value)
    return str(value)
