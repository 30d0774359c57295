"""The backtest: strategies side by side on real daily prices, with real lots and real taxes.

Every strategy starts from the same cash on the same day and gets the same deposits. On the first
trading day of each month the account is marked to market, the month's deposit arrives (or a
withdrawal is due) with any income its holdings paid (``payouts``; income is paid only when the
data says so, ``--dividend-yield``), last year's tax falls due once its wash-sale window has closed, and the
strategy trades; the ``Broker`` books every fill as lots with the SPEC rules (holding periods,
netting, wash-sale adjustments when a naive strategy buys back what it sold at a loss). Between
steps the holdings ride daily prices, which is where drift and tracking error are measured.

Measured per strategy: tax paid during the period (every settled year plus the last, still open
one), the tax a liquidation at the end would add, wealth before and after that liquidation, mean
and maximum absolute drift (every class and cash, every trading day), realized tracking error
against the target mix of the primary funds, turnover, orders, wash sales.

Comparing at equal drift (``equal_drift``): a sweep of ``tax_weight`` traces tax paid against mean
drift; the family's tax at a reference strategy's drift is read off by linear interpolation.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from .account import MAX_AMOUNT, Account, Policy, TaxSettings
from .backtest_data import Income, PriceData, Universe, bundled, default_universe
from .errors import InputError
from .pool import local_pool
from .simulate import Broker, Execution, YearEnd
from .strategies import DEFAULT_STRATEGIES, DEFAULT_TAX_WEIGHTS, Step, Strategy, make_strategies

TRADING_DAYS = 252
REFERENCES = ("quarterly-fifo", "quarterly-mintax")


# The least --initial: a cent. The planner weighs every trade as a fraction of what is invested,
# so an account of 1e-300 made one share 1e302 of it, squared past the float range (numpy's
# overflow warnings from the rounding step, run after run, exit 0); an account of under a cent
# holds no amount the reports show. Above, MAX_AMOUNT bounds it as the account file's cash.
MIN_INITIAL = 0.01


@dataclass(frozen=True)
class BacktestConfig:
    """The account and its cash flows. Deposits arrive monthly from the second step; from
    ``withdraw_from`` on (the first step, if a withdrawal is set without it) the account pays out
    ``withdrawal`` a month instead (never more than 99% of what is left after the year's tax; the
    results report what was withdrawn)."""

    start: date | None = None          # first step: the first trading day on or after (default: data start)
    years: float | None = None         # length of the run, to the month (default: to the end of the data)
    initial: float = 100_000.0
    deposit: float = 1_000.0
    withdrawal: float = 0.0
    withdraw_from: date | None = None
    short_term_rate: float = 0.37
    long_term_rate: float = 0.20

    def check(self) -> None:
        for name in ("initial", "deposit", "withdrawal"):
            x = getattr(self, name)
            if not (math.isfinite(x) and x >= 0):
                raise InputError("must be a finite amount >= 0", path=f"--{name}", value=x, has_value=True)
        for name in ("deposit", "withdrawal"):
            if getattr(self, name) > MAX_AMOUNT:
                raise InputError(f"must be at most {MAX_AMOUNT:.0e}: money is planned and reported to the cent",
                                 path=f"--{name}", value=getattr(self, name), has_value=True)
        if not MIN_INITIAL <= self.initial <= MAX_AMOUNT:
            raise InputError(f"must be from {MIN_INITIAL} (a cent) to {MAX_AMOUNT:.0e}: the account starts with it, "
                             "and money is planned and reported to the cent", path="--initial",
                             value=self.initial, has_value=True)
        if self.withdraw_from is not None and self.withdrawal == 0:  # was ignored: no withdrawal, exit 0
            raise InputError("is the first day of --withdrawal, which is not set: give --withdrawal X (a month)",
                             path="--withdraw-from", value=str(self.withdraw_from), has_value=True)
        if self.years is not None and not (math.isfinite(self.years) and self.years > 0):
            raise InputError("must be a number of years > 0", path="--years", value=self.years, has_value=True)
        for name in ("short_term_rate", "long_term_rate"):
            x = getattr(self, name)
            if not (0 <= x <= 1):
                raise InputError("must be between 0 and 1", path=f"--{name.replace('_', '-')}", value=x,
                                 has_value=True)


@dataclass(frozen=True)
class Metrics:
    """One strategy's results (money in the account currency, drift in weight fractions)."""

    strategy: str
    label: str
    family: str
    tax_weight: float | None
    band: float | None                # the engine's band (optimizer and harvest)
    tax_paid: float                  # every year's tax on gains realized in the period (and on income)
    liquidation_tax: float           # what selling everything at the end would add (< 0: its losses
                                     # would lower the last year's bill)
    final_value: float               # account value at the end, before either
    wealth_after_tax: float          # final value − the last year's tax not yet paid
    wealth_after_liquidation: float  # ... − the liquidation tax
    mean_abs_drift: float            # mean over days of the mean |weight − target| over classes and cash
    max_abs_drift: float             # largest |weight − target| of any class on any day
    tracking_error: float            # annualized std of daily return − target-mix return
    turnover: float                  # sells per year / mean account value
    trades: int                      # orders
    wash_sales: int
    disallowed_losses: float
    losses_realized: float           # losses realized and allowed (after wash sales)
    deposits: float
    withdrawals: float
    engine_failures: int             # steps where the engine gave no plan (cash flow traded instead)
    seconds: float
    tax_from_outside: float = 0.0    # tax paid (and in tax_paid) that the account could not cover:
                                     # money put in from outside, taken off both wealths
    days_empty: int = 0              # days withdrawals had emptied the account (left out of drift
                                     # and tracking error)
    income: float = 0.0              # dividends and interest paid to the account in cash
    income_tax: float = 0.0          # the tax on that income (part of tax_paid)

    @property
    def tax_on_sales(self) -> float:
        """Tax paid on the gains the strategy's sales realized: what its decisions cost (the tax on
        income is the same for a strategy whatever it sells, up to what it holds)."""
        return self.tax_paid - self.income_tax

    @property
    def sweep(self) -> str | None:
        """The tax_weight sweep this run belongs to: family and band."""
        return f"{self.family} ±{self.band * 100:g}pt" if self.family in ("optimizer", "harvest") else None

    def to_dict(self) -> dict:
        return {**asdict(self), "tax_on_sales": self.tax_on_sales}


@dataclass(frozen=True)
class StrategyRun:
    metrics: Metrics
    monthly: pd.DataFrame            # per step: value, cumulative tax paid, drift over the month, trading
    yearly: pd.DataFrame             # per tax year: realized short- and long-term gains, tax, carryforwards
    daily_drift: pd.Series           # mean |drift| per trading day
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class EqualDrift:
    """A tax_weight sweep (one family at one band) read at a reference strategy's mean drift."""

    sweep: str
    reference: str
    drift: float
    tax_paid: float | None                  # None: the sweep's drifts do not bracket the reference's
    total_tax: float | None                 # tax paid + liquidation tax
    wealth_after_liquidation: float | None
    reference_tax_paid: float
    reference_total_tax: float
    reference_wealth: float
    between: tuple[str, str] | None         # the two sweep points interpolated
    position: float | None = None           # where between them: 0 at the first, 1 at the second
    income_tax: float | None = None         # the part of tax_paid on income (dividends, interest)
    reference_income_tax: float = 0.0

    @property
    def tax_ratio(self) -> float | None:
        """All tax paid, income's included, against the reference's."""
        return None if self.tax_paid is None or self.reference_tax_paid <= 0 else self.tax_paid / self.reference_tax_paid

    @property
    def tax_on_sales(self) -> float | None:
        """The sweep's tax paid at the reference's drift less its tax on income."""
        return None if self.tax_paid is None else self.tax_paid - (self.income_tax or 0.0)

    @property
    def reference_tax_on_sales(self) -> float:
        return self.reference_tax_paid - self.reference_income_tax

    @property
    def sales_tax_ratio(self) -> float | None:
        """Tax on the gains sales realized against the reference's: the goal's ratio. The same as
        ``tax_ratio`` when no income is paid in cash (every return inside the prices)."""
        if self.tax_on_sales is None or self.reference_tax_on_sales <= 0:
            return None
        return self.tax_on_sales / self.reference_tax_on_sales

    @property
    def total_tax_ratio(self) -> float | None:
        return (None if self.total_tax is None or self.reference_total_tax <= 0
                else self.total_tax / self.reference_total_tax)

    @property
    def wealth_gain(self) -> float | None:
        return None if self.wealth_after_liquidation is None else self.wealth_after_liquidation - self.reference_wealth

    def to_dict(self) -> dict:
        return {"sweep": self.sweep, "reference": self.reference, "drift": self.drift,
                "tax_paid": self.tax_paid, "reference_tax_paid": self.reference_tax_paid,
                "tax_ratio": self.tax_ratio, "income_tax": self.income_tax,
                "reference_income_tax": self.reference_income_tax, "sales_tax_ratio": self.sales_tax_ratio,
                "total_tax": self.total_tax,
                "reference_total_tax": self.reference_total_tax, "total_tax_ratio": self.total_tax_ratio,
                "wealth_after_liquidation": self.wealth_after_liquidation,
                "reference_wealth_after_liquidation": self.reference_wealth, "wealth_gain": self.wealth_gain,
                "between": " and ".join(self.between) if self.between else None}


@dataclass(frozen=True)
class BacktestResult:
    config: BacktestConfig
    data: PriceData
    universe: Universe
    first: date
    last: date
    runs: tuple[StrategyRun, ...]
    equal_drift: tuple[EqualDrift, ...] = field(default=())

    def run(self, name: str) -> StrategyRun:
        return next(r for r in self.runs if r.metrics.strategy == name)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([r.metrics.to_dict() for r in self.runs])

    def to_dict(self) -> dict:
        return {"first": self.first.isoformat(), "last": self.last.isoformat(), "source": self.data.source,
                "strategies": [r.metrics.to_dict() for r in self.runs],
                "equal_drift": [e.to_dict() for e in self.equal_drift], "config": _config_dict(self.config)}


# --- running ------------------------------------------------------------------------------------------
def run_backtest(strategies: Sequence[str | Strategy] = DEFAULT_STRATEGIES,
                 config: BacktestConfig = BacktestConfig(), data: PriceData | None = None,
                 universe: Universe | None = None, tax_weights: Sequence[float] = DEFAULT_TAX_WEIGHTS,
                 workers: int = 1, progress: Callable[[Metrics], None] | None = None) -> BacktestResult:
    """Simulate each strategy over the same prices and cash flows (``workers`` > 1: in parallel
    processes). Strategy names are those of ``strategies.STRATEGY_HELP``; the bundled data is used
    unless ``data`` (and its ``universe``) are given."""
    config.check()
    if data is None:
        data, bundled_universe = bundled()
        universe = universe or bundled_universe
    if universe is None:
        universe = default_universe(data)
    _check_universe(universe, data)
    chosen: list[Strategy] = []
    for s in strategies:
        for strategy in (make_strategies([s], tax_weights) if isinstance(s, str) else [s]):
            if all(c.name != strategy.name for c in chosen):
                chosen.append(strategy)
    if not chosen:
        raise InputError("no strategy to run", path="--strategies")
    window = price_window(data, config)
    _check_withdraw_from(config, window)
    runs: list[StrategyRun] = []
    if workers > 1 and len(chosen) > 1:
        with local_pool(workers) as pool:
            futures = [pool.submit(simulate, s, window, universe, config, data.income) for s in chosen]
            for f in futures:
                runs.append(f.result())
                if progress:
                    progress(runs[-1].metrics)
    else:
        for s in chosen:
            runs.append(simulate(s, window, universe, config, data.income))
            if progress:
                progress(runs[-1].metrics)
    first, last = window.index[0].date(), window.index[-1].date()
    return BacktestResult(config, data, universe, first, last, tuple(runs), tuple(equal_drift_all(runs)))


def _check_withdraw_from(config: BacktestConfig, window: pd.DataFrame) -> None:
    """InputError if the withdrawals would start after the run's last monthly step: the report would
    show deposits all along, as if no --withdrawal had been asked for."""
    last = window.index[step_positions(window.index)[-1]].date()
    if config.withdrawal > 0 and config.withdraw_from is not None and config.withdraw_from > last:
        raise InputError(f"is after the run's last monthly step ({last}): no withdrawal would be made; give an "
                         "earlier date or more --years", path="--withdraw-from", value=str(config.withdraw_from),
                         has_value=True)


def _check_universe(universe: Universe, data: PriceData) -> None:
    missing = [s for s in universe.symbols if s not in data.prices.columns]
    if missing:
        raise InputError("the universe names symbols the prices do not have", path="--universe",
                         value=missing, has_value=True)


def price_window(data: PriceData, config: BacktestConfig) -> pd.DataFrame:
    """The daily prices the run covers: from the first trading day on or after ``start``, for
    ``years`` (or to the end of the data); at least two monthly steps (the first day and one
    rebalance). When there are fewer, the error names what to change: the prices (all of them
    in one month), ``--start`` (too close to their end) or ``--years`` (ending before the next
    month's prices: a short span, or a gap in the prices)."""
    prices = data.prices
    start = pd.Timestamp(config.start or data.first)
    if start > prices.index[-1] or start < prices.index[0] - pd.Timedelta(days=31):
        raise InputError(f"is outside the prices ({data.first} to {data.last})", path="--start",
                         value=str(start.date()), has_value=True)
    if len(step_positions(prices.index)) < 2:
        raise InputError(f"hold days of one month only ({data.first} to {data.last}); a backtest needs prices "
                         "in at least two months (it starts on the first day and rebalances monthly)",
                         path="--prices", file=data.file)
    window = prices.loc[start:]
    if len(step_positions(window.index)) < 2:
        raise InputError(f"leaves less than two months of prices (they end {data.last}); give an earlier --start",
                         path="--start", value=str(start.date()), has_value=True)
    last = prices.index[-1]
    span = (last.year - start.year) * 12 + last.month - start.month + 1  # months the prices cover from start
    if config.years is not None and config.years * 12 < span:  # to the month: 1.5 years from 1 January ends on 30 June
        # (longer than the prices: to their end; --years 1e18 overflowed the date arithmetic, exit 1)
        months = max(1, round(config.years * 12))
        short = window.loc[:start + pd.DateOffset(months=months) - pd.Timedelta(days=1)]
        if len(step_positions(short.index)) < 2:
            raise _too_few_years(config.years, months, start, short, window)
        window = short
    return window


def _too_few_years(years: float, months: int, start: pd.Timestamp, short: pd.DataFrame,
                   window: pd.DataFrame) -> InputError:
    """``--years`` ends the run before the prices reach a second month: the span is short (a
    month from the 1st) or the prices have a gap. Says where the next prices are and the least
    ``--years`` that reaches them (to the month, as ``--years`` is read)."""
    following = window.index[len(short)]  # the window has a second month, so a day after ``short``
    need = months + 1
    while start + pd.DateOffset(months=need) - pd.Timedelta(days=1) < following:
        need += 1
    ends = (start + pd.DateOffset(months=months) - pd.Timedelta(days=1)).date()
    gap = (f"; the prices have no day from {(short.index[-1] + pd.Timedelta(days=1)).date()} to "
           f"{(following - pd.Timedelta(days=1)).date()}" if following - short.index[-1] > pd.Timedelta(days=7)
           else "")
    return InputError(f"is {months} month{'s' if months != 1 else ''} from {start.date()} (to {ends}), which holds "
                      f"prices of one month only{gap}: a backtest needs two monthly steps (the first day and one "
                      f"rebalance); give --years {need / 12:.2f} or more (the next prices are on {following.date()})",
                      path="--years", value=years, has_value=True)


def step_positions(index: pd.DatetimeIndex) -> np.ndarray:
    """Positions of the first trading day of each month (and the first day)."""
    months = index.to_period("M")
    first = np.ones(len(index), bool)
    first[1:] = months[1:] != months[:-1]
    return np.flatnonzero(first)


def _flows(config: BacktestConfig, step: int, d: date) -> tuple[float, float]:
    """(deposit, withdrawal) of a step; step 0 only invests the initial cash."""
    if step == 0:
        return 0.0, 0.0
    withdrawing = config.withdrawal > 0 and (config.withdraw_from is None or d >= config.withdraw_from)
    return (0.0, config.withdrawal) if withdrawing else (config.deposit, 0.0)


@dataclass
class _Tally:
    """What a run adds up step by step."""

    paid: float = 0.0
    from_outside: float = 0.0
    deposits: float = 0.0
    withdrawals: float = 0.0
    sold: float = 0.0
    orders: int = 0
    wash_sales: int = 0
    disallowed: float = 0.0
    losses: float = 0.0
    income: float = 0.0
    rows: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    year_ends: list[YearEnd] = field(default_factory=list)

    def add(self, account: Account, ex: Execution, ends: tuple[YearEnd, ...], deposit: float, withdrawal: float,
            note: str | None) -> None:
        self.paid += math.fsum(e.tax_paid for e in ends)
        self.from_outside += ex.tax_from_outside
        self.year_ends.extend(ends)
        self.deposits += deposit
        self.withdrawals += withdrawal
        self.sold += ex.sold
        self.orders += len(ex.fills)
        self.wash_sales += len(ex.wash_sales)
        self.disallowed += math.fsum(w.disallowed for w in ex.wash_sales)
        # losses allowed: those realized now, less those a purchase now washes (sold earlier)
        self.losses += math.fsum(-s.gain for s in ex.sales if s.gain < 0)
        self.losses -= math.fsum(w.disallowed for w in ex.wash_sales if w.replacement_bought > w.sold)
        if note:
            self.notes.append(note)
        self.rows.append({"date": ex.date, "value": account.value, "cash": account.cash, "tax_paid": self.paid,
                          "deposits": self.deposits, "withdrawals": self.withdrawals, "bought": ex.bought,
                          "sold": ex.sold, "orders": len(ex.fills), "wash_sales": len(ex.wash_sales)})


def simulate(strategy: Strategy, window: pd.DataFrame, universe: Universe, config: BacktestConfig,
             income: Mapping[str, Income] | None = None) -> StrategyRun:
    """One strategy over the price window: monthly steps, daily marking, the metrics. ``income``:
    symbols whose return is partly paid in cash (``payouts``)."""
    started = time.perf_counter()
    symbols = list(universe.symbols)
    total_return = window[symbols].to_numpy(float)
    dates = [t.date() for t in window.index]
    steps = step_positions(window.index)
    paying = [(income or {}).get(s) for s in symbols]
    prices, payout = payouts(total_return, dates, steps, paying)
    is_interest = np.array([p is not None and p.kind == "interest" for p in paying])

    def quote(pos: int) -> dict[str, float]:
        return dict(zip(symbols, prices[pos].tolist()))

    base = Account(id=f"backtest-{strategy.name}", as_of=dates[0], cash=config.initial,
                   tax=TaxSettings(config.short_term_rate, config.long_term_rate), targets=universe.targets,
                   prices=quote(0), policy=Policy(fractional=True))
    broker = Broker.open(strategy.configure(base, universe))
    holdings = np.zeros((len(steps), len(symbols)))
    cash = np.zeros(len(steps))
    tally = _Tally()
    for i, pos in enumerate(steps):
        d = dates[pos]
        deposit, withdrawal = _flows(config, i, d)
        ends: tuple[YearEnd, ...] = ()
        try:
            if i > 0:
                held = broker.account.shares()  # held since the last step: this step's income
                paid = np.array([held.get(s, 0.0) for s in symbols]) * payout[i]
                dividends, interest = float(paid[~is_interest].sum()), float(paid[is_interest].sum())
                broker, ends = broker.move_to(d, quote(pos), deposit, dividends, interest)
                tally.income += dividends + interest
            due = math.fsum(e.tax_paid for e in ends)
            # Never the whole account, nor the tax the open years already owe (it falls due later),
            # nor the tax the sales for it may add (at most the short-term rate on what is raised):
            # withdrawals once drained an account that then could not pay last year's bill.
            value, rate = broker.account.value, max(config.short_term_rate, config.long_term_rate)
            if withdrawal > 0:  # the open years' tax is worked out only when there is one to cap
                withdrawal = min(withdrawal, max(value - due - broker.tax_due(), 0.0) * 0.99 / (1 + rate))
            # The strategy raises the tax too, up to 99% of what is left; any rest of the bill is
            # paid from outside the account (``Execution.tax_from_outside``).
            decision = strategy.decide(broker.account, Step(d, i, withdrawal + min(due, (value - withdrawal) * 0.99)))
            broker, ex = broker.execute(decision.fills, withdrawal, due)
        except InputError as exc:  # the simulated account, not a file: say which run, when, and what to change
            raise InputError(f"{strategy.name}'s simulated account on {d} is beyond what the engine takes "
                             f"({exc}); start from less (--initial, --deposit) or a shorter run") from None
        tally.add(broker.account, ex, ends, deposit, withdrawal, decision.note)
        held = broker.account.shares()
        holdings[i] = [held.get(s, 0.0) for s in symbols]
        cash[i] = broker.account.cash

    end, ends = broker.move_to(dates[-1], quote(len(dates) - 1))
    _, still_open = end.ledger.settle_through(dates[-1].year)
    tally.year_ends.extend(ends + still_open)
    last_due = math.fsum(e.tax_paid for e in ends + still_open)
    liquidation = end.liquidation_tax()
    final_value = end.account.value

    daily = _daily(prices, holdings, cash, steps, universe, symbols, total_return, payout)
    monthly = pd.DataFrame(tally.rows)
    month_of_day = np.searchsorted(steps, np.arange(len(dates)), side="right") - 1
    monthly["drift"] = pd.Series(daily["mean_abs"]).groupby(month_of_day).mean().to_numpy()
    years = max((dates[-1] - dates[0]).days / 365.25, 1e-9)
    engine = strategy.family in ("optimizer", "harvest")
    metrics = Metrics(
        strategy=strategy.name, label=strategy.label, family=strategy.family,
        tax_weight=getattr(strategy, "tax_weight", None) if engine else None,
        band=getattr(strategy, "band", None) if engine else None,
        tax_paid=tally.paid + last_due, liquidation_tax=liquidation, final_value=final_value,
        wealth_after_tax=final_value - last_due - tally.from_outside,
        wealth_after_liquidation=final_value - last_due - liquidation - tally.from_outside,
        mean_abs_drift=_over_held(np.nanmean, daily["mean_abs"]), max_abs_drift=_over_held(np.nanmax, daily["max_abs"]),
        tracking_error=daily["tracking_error"], turnover=tally.sold / years / float(daily["value"].mean()),
        trades=tally.orders, wash_sales=tally.wash_sales, disallowed_losses=tally.disallowed,
        losses_realized=tally.losses, deposits=tally.deposits, withdrawals=tally.withdrawals,
        engine_failures=len(tally.notes), tax_from_outside=tally.from_outside, days_empty=daily["days_empty"],
        seconds=time.perf_counter() - started, income=tally.income,
        income_tax=math.fsum(e.income_tax for e in tally.year_ends))
    drift = pd.Series(daily["mean_abs"], index=pd.DatetimeIndex(window.index), name=strategy.name)
    yearly = pd.DataFrame([asdict(e) for e in every_year(tally.year_ends, dates[0].year, dates[-1].year)],
                          columns=["year", "tax_paid", "carryforward_short_term", "carryforward_long_term",
                                   "realized_short_term", "realized_long_term", "dividends", "interest",
                                   "income_tax"])
    return StrategyRun(metrics, monthly, yearly, drift, tuple(tally.notes))


EMPTY_ACCOUNT = 0.005  # an account worth less (half a cent) has been emptied: no weights, no returns


def _over_held(reduce, values: np.ndarray) -> float:
    """``reduce`` (nanmean, nanmax) over the days the account held money; 0 if it never did."""
    return float(reduce(values)) if np.isfinite(values).any() else 0.0


def payouts(total_return: np.ndarray, dates: list[date], steps: np.ndarray,
            income: Sequence[Income | None]) -> tuple[np.ndarray, np.ndarray]:
    """Prices with income taken out, and the cash each share pays on each step.

    A symbol paying ``y`` a year goes ex-income on every monthly step: its price is the
    total-return price deflated by (1 + y)^(years from the first step to the latest step so far),
    and a share held from one step to the next is paid price × ((1 + y)^(years between them) − 1)
    on the second, the drop in price that day. So a holding plus its payout earns exactly the
    total return, between steps it rides the total-return price (drift and tracking error see
    no jump), and the first step pays nothing. Rows: days (prices), steps (payouts)."""
    prices = total_return.copy()
    payout = np.zeros((len(steps), total_return.shape[1]))
    years = np.array([(d - dates[0]).days for d in dates], float) / 365.25
    at = np.searchsorted(steps, np.arange(len(dates)), side="right") - 1   # the step in force each day
    since = years[steps[at]]
    between = np.diff(years[steps], prepend=0.0)
    for k, inc in enumerate(income):
        if inc is None or inc.annual_yield == 0:
            continue
        g = 1.0 + inc.annual_yield
        prices[:, k] = total_return[:, k] * g ** -since
        payout[:, k] = prices[steps, k] * (g ** between - 1.0)
    return prices, payout


def every_year(ends: list[YearEnd], first: int, last: int) -> list[YearEnd]:
    """One row per calendar year of the run: a year that realized nothing (the ledger opens a tax
    year only with a sale or income) owes nothing and carries the losses of the year before."""
    by_year = {e.year: e for e in ends}
    out, carried = [], (0.0, 0.0)
    for year in range(first, max(last, *by_year, first) + 1):
        end = by_year.get(year) or YearEnd(year, 0.0, *carried)
        out.append(end)
        carried = (end.carryforward_short_term, end.carryforward_long_term)
    return out


def _daily(prices: np.ndarray, holdings: np.ndarray, cash: np.ndarray, steps: np.ndarray, universe: Universe,
           symbols: list[str], total_return: np.ndarray | None = None, payout: np.ndarray | None = None) -> dict:
    """Daily values and drift from the holdings after each step (held until the next one), and the
    tracking error of daily returns against the target mix of each class's primary fund. With
    income paid in cash, the account's return on a step day counts the ``payout`` its holdings
    received, and the benchmark is the primaries' ``total_return`` prices."""
    at = np.searchsorted(steps, np.arange(len(prices)), side="right") - 1   # the step in force at each close
    h, c = holdings[at], cash[at]
    classes = universe.classes
    member = np.array([[universe.funds[k].count(s) > 0 for k in classes] for s in symbols], float)
    class_values = (h * prices) @ member
    value = class_values.sum(axis=1) + c
    # An account withdrawals have emptied has no weights: its days are NaN here, and the run's
    # drift and tracking error are over the days it held money (``days_empty`` counts the rest).
    held = value > EMPTY_ACCOUNT
    weights = np.full((len(value), len(classes) + 1), np.nan)
    weights[held] = np.column_stack([class_values, c])[held] / value[held, None]
    targets = np.array([universe.targets[k] for k in classes] + [max(0.0, 1 - sum(universe.targets.values()))])
    drift = np.abs(weights - targets)
    # day t's return comes from the holdings in force at the close of day t − 1
    held_before = value[:-1]
    held_after = (h[:-1] * prices[1:]).sum(axis=1) + c[:-1]
    if payout is not None and len(steps) > 1:  # a step's income, paid to the holdings of the step before
        held_after[steps[1:] - 1] += (holdings[:-1] * payout[1:]).sum(axis=1)
    live = held[:-1]
    portfolio = held_after[live] / held_before[live] - 1.0
    primary = [symbols.index(universe.primary(k)) for k in classes]
    bench = prices if total_return is None else total_return
    class_returns = bench[1:, primary][live] / bench[:-1, primary][live] - 1.0
    benchmark = class_returns @ targets[:-1]
    active = portfolio - benchmark
    te = float(np.std(active, ddof=1) * math.sqrt(TRADING_DAYS)) if len(active) > 1 else 0.0
    return {"value": value, "mean_abs": drift.mean(axis=1), "max_abs": drift[:, :-1].max(axis=1),
            "tracking_error": te, "days_empty": int((~held).sum())}


# --- comparing at equal drift --------------------------------------------------------------------------
def equal_drift(runs: Sequence[StrategyRun], sweep: str, reference: str) -> EqualDrift | None:
    """The ``sweep``'s runs (in tax_weight order) read at ``reference``'s mean drift, by linear
    interpolation between consecutive runs whose drifts bracket it (the lowest tax on sales where
    several pairs do). None when the sweep or the reference did not run."""
    ref = next((r.metrics for r in runs if r.metrics.strategy == reference), None)
    points = sorted((r.metrics for r in runs if r.metrics.sweep == sweep), key=lambda m: m.tax_weight or 0.0)
    if ref is None or not points:
        return None
    x = ref.mean_abs_drift
    best: tuple[float, float, float, tuple[str, str], float, float] | None = None
    for a, b in zip(points, points[1:] if len(points) > 1 else points):
        lo, hi = sorted((a.mean_abs_drift, b.mean_abs_drift))
        if not (lo - 1e-12 <= x <= hi + 1e-12):
            continue
        t = 0.0 if hi - lo < 1e-15 else (x - a.mean_abs_drift) / (b.mean_abs_drift - a.mean_abs_drift)
        tax, liquidation, wealth, income_tax = (_lerp(a, b, t, attr) for attr in (
            "tax_paid", "liquidation_tax", "wealth_after_liquidation", "income_tax"))
        point = (tax, tax + liquidation, wealth, (a.strategy, b.strategy), t, income_tax)
        if best is None or point[0] - point[5] < best[0] - best[5]:
            best = point
    common = dict(sweep=sweep, reference=reference, drift=x, reference_tax_paid=ref.tax_paid,
                  reference_total_tax=ref.tax_paid + ref.liquidation_tax,
                  reference_wealth=ref.wealth_after_liquidation, reference_income_tax=ref.income_tax)
    if best is None:
        return EqualDrift(tax_paid=None, total_tax=None, wealth_after_liquidation=None, between=None, **common)
    return EqualDrift(tax_paid=best[0], total_tax=best[1], wealth_after_liquidation=best[2], between=best[3],
                      position=best[4], income_tax=best[5], **common)


def _lerp(a: Metrics, b: Metrics, t: float, attr: str) -> float:
    return (1 - t) * getattr(a, attr) + t * getattr(b, attr)


def equal_drift_all(runs: Sequence[StrategyRun]) -> list[EqualDrift]:
    """Every sweep read at each reference that ran (quarterly FIFO and cheapest-lots resets)."""
    sweeps = list(dict.fromkeys(r.metrics.sweep for r in runs if r.metrics.sweep))
    out = []
    for sweep in sweeps:
        for reference in REFERENCES:
            e = equal_drift(runs, sweep, reference)
            if e is not None:
                out.append(e)
    return out


def _config_dict(config: BacktestConfig) -> dict:
    return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in asdict(config).items()}
