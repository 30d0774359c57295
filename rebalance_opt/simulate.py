"""Carrying an account through time: execute a plan, move to a new date, pay tax at year end.

Two levels:

* ``apply_plan`` / ``advance`` / ``close_year``: quick helpers for notebooks. Every buy becomes a
  new lot, every sell relieves the lots its order names, realized gains accumulate in ``[tax]``
  until the year ends, when the year's tax (after netting, SPEC section 2) is paid from cash and
  a net loss carries forward. Trades are kept in the account's history so the wash-sale rules
  see them.
* ``Broker``: the books a broker and a tax return keep, for any strategy's fills (the engine's or
  a naive one that ignores the wash-sale rule): wash-sale adjustments, real purchase dates,
  tax years that settle once their wash-sale window has closed, the liquidation tax. The
  backtest (``rebalance_opt.backtest``) runs on it.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Mapping

from .account import Account, Lot, TaxSettings, Trade
from .plan import Plan
from .tax import term, year_tax


def apply_plan(account: Account, plan: Plan) -> Account:
    """The account after executing ``plan`` at its prices (the withdrawal leaves the account)."""
    relieved: dict[str, float] = {}
    trades = list(account.trades)
    new_lots = []
    st = lt = 0.0
    for o in plan.orders:
        if o.side == "sell":
            gain = 0.0
            for s in o.lots:
                relieved[s.lot] = relieved.get(s.lot, 0.0) + s.quantity
                gain += s.gain
                if s.term == "short":
                    st += s.gain
                else:
                    lt += s.gain
            trades.append(Trade(o.symbol, "sell", o.quantity, o.price, account.as_of, gain))
        else:
            n = sum(1 for l in account.lots if l.symbol == o.symbol) + len(new_lots)
            new_lots.append(Lot(f"{o.symbol}-{account.as_of.isoformat()}-{n}", o.symbol, o.quantity, o.price,
                                account.as_of))
            trades.append(Trade(o.symbol, "buy", o.quantity, o.price, account.as_of))
    lots = []
    for lot in account.lots:
        left = lot.quantity - relieved.get(lot.id, 0.0)
        if left > 1e-9:
            lots.append(dataclasses.replace(lot, quantity=left) if left != lot.quantity else lot)
    tax = dataclasses.replace(account.tax, realized_short_term=account.tax.realized_short_term + st,
                              realized_long_term=account.tax.realized_long_term + lt)
    cash = max(plan.cash_after - plan.withdrawal, 0.0)
    policy = dataclasses.replace(account.policy, withdrawal=0.0)
    return account.replace(cash=cash, lots=tuple(lots) + tuple(new_lots), trades=tuple(trades), tax=tax,
                           policy=policy)


@dataclass(frozen=True)
class YearEnd:
    """Tax paid when a tax year closed, and the losses carried into the next."""

    year: int
    tax_paid: float
    carryforward_short_term: float
    carryforward_long_term: float
    realized_short_term: float = 0.0   # the year's own net realized gains, before carryforwards
    realized_long_term: float = 0.0
    dividends: float = 0.0             # income received in the year (``TaxLedger.book_income``)
    interest: float = 0.0
    income_tax: float = 0.0            # the tax on that income, part of ``tax_paid``


def close_year(settings: TaxSettings) -> tuple[TaxSettings, float]:
    """Net the year's realized gains with its carryforwards; return the new year's settings and
    the tax due. A net loss carries forward in its own term (IRC §1212(b))."""
    st = settings.realized_short_term - settings.carryforward_short_term
    lt = settings.realized_long_term - settings.carryforward_long_term
    due = year_tax(st, lt, settings).tax
    # after cross-term netting, what is left negative carries forward in its term
    if st < 0 < lt:
        st, lt = min(st + lt, 0.0), 0.0
    elif lt < 0 < st:
        lt, st = min(st + lt, 0.0), 0.0
    new = dataclasses.replace(settings, realized_short_term=0.0, realized_long_term=0.0,
                              carryforward_short_term=max(0.0, -st), carryforward_long_term=max(0.0, -lt))  # 0.0, never -0.0
    return new, due


def advance(account: Account, as_of: date, prices: Mapping[str, float], deposit: float = 0.0
            ) -> tuple[Account, YearEnd | None]:
    """Move the account to ``as_of`` with new prices and a deposit. If a tax year ends on the
    way, its tax is paid from cash (cash may go no lower than zero; any shortfall is reported as
    paid all the same, as if from outside the account)."""
    year_end = None
    tax = account.tax
    cash = account.cash + deposit
    if as_of.year != account.as_of.year:
        tax, due = close_year(tax)
        year_end = YearEnd(account.as_of.year, due, tax.carryforward_short_term, tax.carryforward_long_term)
        cash = max(cash - due, 0.0)
    keep_after = as_of - timedelta(days=max(account.policy.wash_sale_days, 0) + 1)
    trades = tuple(t for t in account.trades if t.date >= keep_after)
    return account.replace(as_of=as_of, prices={**account.prices, **prices}, cash=cash, tax=tax,
                           trades=trades), year_end


# --- a broker's books over time: fills, lots, wash sales, tax years --------------------------------
#
# ``apply_plan`` / ``advance`` above are the quick helpers for notebooks. ``Broker`` below keeps the
# books the way a broker and a tax return would over many years, for any strategy (the engine's
# plans, or naive ones that ignore the wash-sale rule):
#
# * a buy opens a lot; a sell relieves exactly the lots it names, at the fill price;
# * a loss sale is a wash sale to the extent the same symbol is bought within ``wash_sale_days``
#   before or after it (IRC §1091, Pub 550): replacement shares are matched in the order they were
#   bought, one share per share sold; the loss on matched shares is disallowed and added to the
#   basis of the replacement shares, whose holding period includes the sold shares' (a replacement
#   lot larger than the shares it replaces is split, so the adjustment sits on the matched shares
#   only); a replacement share absorbs the loss of one sold share at most; the loss on unmatched
#   shares stays deductible. Shares of the lot being sold are never its own replacement (Rev. Rul. 56-602: the
#   rest of one purchase does not replace the part sold), as in the engine's rule;
# * realized gains are booked in the tax year of the sale; a year is settled once no purchase can
#   wash one of its sales any more (``wash_sale_days`` after 31 December), when its tax after
#   netting (SPEC section 2) falls due and a net loss carries forward in its term;
# * income paid in cash (a backtest's dividends and interest) is booked in the year received and
#   taxed with it at the rate of its kind, netting with no gain or loss.

EPS_SHARES = 1e-9
EPS_MONEY = 1e-6


@dataclass(frozen=True)
class Fill:
    """One executed order. A sell names the lots it relieves: ``(lot id, shares)`` pairs."""

    symbol: str
    side: str          # "buy" | "sell"
    quantity: float
    price: float
    lots: tuple[tuple[str, float], ...] = ()

    @property
    def notional(self) -> float:
        return self.quantity * self.price


def fills_from_plan(plan: Plan) -> tuple[Fill, ...]:
    """The engine's orders as fills (sells relieve the lots the plan names)."""
    return tuple(Fill(o.symbol, o.side, o.quantity, o.price, tuple((s.lot, s.quantity) for s in o.lots))
                 for o in plan.orders)


@dataclass(frozen=True)
class TaxYear:
    year: int
    short_term: float = 0.0
    long_term: float = 0.0
    dividends: float = 0.0   # qualified dividends: taxed at the long-term rate (IRC §1(h)(11))
    interest: float = 0.0    # ordinary income: taxed at the short-term rate


@dataclass(frozen=True)
class TaxLedger:
    """Realized gains of the tax years not yet settled, and the losses carried into the earliest."""

    short_term_rate: float
    long_term_rate: float
    carryforward_short_term: float = 0.0
    carryforward_long_term: float = 0.0
    years: tuple[TaxYear, ...] = ()

    def book(self, year: int, term_: str, amount: float) -> "TaxLedger":
        """Add a realized gain (< 0: a loss) of term ``short``/``long`` to ``year``."""
        if self.years and year < self.years[0].year:
            raise ValueError(f"tax year {year} is already settled")
        years = {y.year: y for y in self.years}
        y = years.get(year, TaxYear(year))
        years[year] = (dataclasses.replace(y, short_term=y.short_term + amount) if term_ == "short"
                       else dataclasses.replace(y, long_term=y.long_term + amount))
        return dataclasses.replace(self, years=tuple(years[k] for k in sorted(years)))

    def book_income(self, year: int, dividends: float = 0.0, interest: float = 0.0) -> "TaxLedger":
        """Add income received in ``year``. It is taxed on its own, at the rate of its kind, and
        nets with no capital gain or loss (``settle_first``)."""
        if not (dividends or interest):
            return self
        if self.years and year < self.years[0].year:
            raise ValueError(f"tax year {year} is already settled")
        years = {y.year: y for y in self.years}
        y = years.get(year, TaxYear(year))
        years[year] = dataclasses.replace(y, dividends=y.dividends + dividends, interest=y.interest + interest)
        return dataclasses.replace(self, years=tuple(years[k] for k in sorted(years)))

    def _base(self) -> TaxSettings:
        return TaxSettings(self.short_term_rate, self.long_term_rate,
                           carryforward_short_term=self.carryforward_short_term,
                           carryforward_long_term=self.carryforward_long_term)

    def settings(self, year: int) -> TaxSettings:
        """The engine's ``[tax]`` for ``year``: its realized gains, and the carryforward through the
        earlier open years (provisional until they settle)."""
        s = self._base()
        for y in self.years:
            if y.year >= year:
                break
            s, _ = close_year(dataclasses.replace(s, realized_short_term=y.short_term,
                                                  realized_long_term=y.long_term))
        this = next((y for y in self.years if y.year == year), TaxYear(year))
        return dataclasses.replace(s, realized_short_term=this.short_term, realized_long_term=this.long_term)

    def settle_first(self) -> tuple["TaxLedger", YearEnd]:
        """Settle the earliest open year: its tax falls due (on its net capital gains, SPEC section
        2, plus its income at the rate of each kind), a net capital loss carries forward."""
        first = self.years[0]
        new, due = close_year(dataclasses.replace(self._base(), realized_short_term=first.short_term,
                                                  realized_long_term=first.long_term))
        income_tax = first.dividends * self.long_term_rate + first.interest * self.short_term_rate
        ledger = dataclasses.replace(self, carryforward_short_term=new.carryforward_short_term,
                                     carryforward_long_term=new.carryforward_long_term, years=self.years[1:])
        return ledger, YearEnd(first.year, due + income_tax, new.carryforward_short_term, new.carryforward_long_term,
                               first.short_term, first.long_term, first.dividends, first.interest, income_tax)

    def settle_through(self, year: int) -> tuple["TaxLedger", tuple[YearEnd, ...]]:
        """Settle every open year up to and including ``year``."""
        ledger, out = self, []
        while ledger.years and ledger.years[0].year <= year:
            ledger, end = ledger.settle_first()
            out.append(end)
        return ledger, tuple(out)

    def tax_due_if_settled(self) -> float:
        """The tax all open years would owe if they settled now, in order."""
        return sum(end.tax_paid for end in self.settle_through(10_000)[1])


@dataclass(frozen=True)
class PendingLoss:
    """Shares sold at a loss whose loss a purchase in the next ``wash_sale_days`` would still wash."""

    symbol: str
    lot: str               # the lot sold
    sold: date
    term: str              # the term the loss was booked in
    shares: float          # shares not yet matched with a replacement
    loss_per_share: float  # > 0
    acquired: date         # the sold shares' holding period start (tacked onto replacements)


@dataclass(frozen=True)
class LotSaleRecord:
    """One lot relieved by a sell: the gain as realized then (a loss already washed by shares bought
    before the sale is added back in ``disallowed``)."""

    lot: str
    symbol: str
    sold: date
    shares: float
    price: float
    cost_basis: float
    term: str
    gain: float            # (price − basis) × shares + disallowed
    disallowed: float


@dataclass(frozen=True)
class WashSale:
    """A disallowed loss, moved onto replacement shares."""

    symbol: str
    sold: date
    replacement_bought: date
    shares: float
    disallowed: float
    replacement_lot: str


@dataclass(frozen=True)
class Execution:
    """What executing one step's fills did."""

    date: date
    fills: tuple[Fill, ...]
    sales: tuple[LotSaleRecord, ...]
    wash_sales: tuple[WashSale, ...]
    withdrawn: float
    tax_from_outside: float = 0.0  # tax due this step that the account's cash could not cover

    @property
    def bought(self) -> float:
        return math.fsum(f.notional for f in self.fills if f.side == "buy")

    @property
    def sold(self) -> float:
        return math.fsum(f.notional for f in self.fills if f.side == "sell")


@dataclass(frozen=True)
class Broker:
    """An account's books through time: lots with their (wash-adjusted) basis and holding period,
    the real purchase date of every lot, losses a purchase could still wash, and the tax ledger.

    ``account`` is the engine's view: ``account.tax`` always holds this year's realized gains and
    the carryforward into it, so a plan's tax estimate sees the year so far."""

    account: Account
    ledger: TaxLedger
    purchased: Mapping[str, date]     # lot id -> trade date (``acquired`` may be tacked)
    washed: frozenset[str] = frozenset()  # lots whose shares already carry a disallowed loss
    pending: tuple[PendingLoss, ...] = ()
    serial: int = 0

    @staticmethod
    def open(account: Account) -> "Broker":
        """Start the books from an account as it stands (its lots count as bought on ``acquired``)."""
        t = account.tax
        ledger = TaxLedger(t.short_term_rate, t.long_term_rate, t.carryforward_short_term,
                           t.carryforward_long_term, (TaxYear(account.as_of.year, t.realized_short_term,
                                                              t.realized_long_term),))
        return Broker(account, ledger, {lot.id: lot.acquired for lot in account.lots})

    @property
    def window(self) -> timedelta:
        return timedelta(days=self.account.policy.wash_sale_days)

    def move_to(self, as_of: date, prices: Mapping[str, float], deposit: float = 0.0, dividends: float = 0.0,
                interest: float = 0.0) -> tuple["Broker", tuple[YearEnd, ...]]:
        """Go to ``as_of`` with new prices, a deposit, and income received (cash, taxed in
        ``as_of``'s year). Every tax year that no purchase can wash any more (``wash_sale_days``
        after its 31 December have passed) settles; the tax due is returned, for the caller to
        withdraw (``execute(..., withdrawal=...)``)."""
        a = self.account
        if as_of < a.as_of:
            raise ValueError(f"cannot move back in time from {a.as_of} to {as_of}")
        ledger, ends = self.ledger, []
        while ledger.years and as_of > date(ledger.years[0].year, 12, 31) + self.window:
            ledger, end = ledger.settle_first()
            ends.append(end)
        ledger = ledger.book_income(as_of.year, dividends, interest)
        earliest = as_of - self.window
        pending = tuple(p for p in self.pending if p.sold >= earliest)
        keep_after = as_of - self.window - timedelta(days=1)
        trades = tuple(t for t in a.trades if t.date >= keep_after)
        account = a.replace(as_of=as_of, prices={**a.prices, **prices}, cash=a.cash + deposit + dividends + interest,
                            tax=ledger.settings(as_of.year), trades=trades)
        return dataclasses.replace(self, account=account, ledger=ledger, pending=pending), tuple(ends)

    def execute(self, fills: tuple[Fill, ...], withdrawal: float = 0.0, tax: float = 0.0
                ) -> tuple["Broker", Execution]:
        """Execute ``fills`` on ``account.as_of`` (sells first, their proceeds fund the buys), then
        take ``withdrawal`` out of cash, then ``tax`` (a year's tax falling due): what cash cannot
        cover of the tax is paid from outside the account (``Execution.tax_from_outside``), as a
        tax bill is owed whatever the account holds. Raises ``ValueError`` for a fill the books
        cannot take (an unknown lot, more shares than held, cash going negative)."""
        a, d = self.account, self.account.as_of
        lots: dict[str, Lot] = {lot.id: lot for lot in a.lots}
        purchased = dict(self.purchased)
        washed = set(self.washed)
        pending = list(self.pending)
        ledger = self.ledger
        serial = self.serial
        cash = a.cash
        trades = list(a.trades)
        sales: list[LotSaleRecord] = []
        washes: list[WashSale] = []

        def new_id(symbol: str) -> str:
            nonlocal serial
            serial += 1
            return f"{symbol}-{d.isoformat()}-{serial}"

        # 1. Sells relieve the lots they name.
        losses: list[tuple[int, PendingLoss]] = []   # (index in ``sales``, the loss)
        for f in (f for f in fills if f.side == "sell"):
            _check_fill(f)
            if abs(sum(q for _, q in f.lots) - f.quantity) > EPS_SHARES * max(1.0, f.quantity):
                raise ValueError(f"sell of {f.quantity} {f.symbol} relieves {sum(q for _, q in f.lots)} shares")
            for lot_id, q in f.lots:
                lot = lots.get(lot_id)
                if lot is None or lot.symbol != f.symbol:
                    raise ValueError(f"sell of {f.symbol} names lot {lot_id!r}, which holds no {f.symbol}")
                if q <= 0 or q > lot.quantity + EPS_SHARES:
                    raise ValueError(f"sell relieves {q} shares of lot {lot_id}, which holds {lot.quantity}")
                left = lot.quantity - q
                if left > EPS_SHARES:
                    lots[lot_id] = dataclasses.replace(lot, quantity=left)
                else:
                    del lots[lot_id]
                t = term(lot.acquired, d)
                gain = (f.price - lot.cost_basis) * q
                ledger = ledger.book(d.year, t, gain)
                if gain < 0:
                    losses.append((len(sales), PendingLoss(f.symbol, lot_id, d, t, q, -gain / q, lot.acquired)))
                sales.append(LotSaleRecord(lot_id, f.symbol, d, q, f.price, lot.cost_basis, t, gain, 0.0))
            cash += f.notional

        # 2. A loss is washed first by shares bought in the window before the sale (still held).
        for index, loss in losses:
            replacements = sorted((l for l in lots.values()
                                   if l.symbol == loss.symbol and l.id != loss.lot and l.id not in washed
                                   and d - self.window <= purchased[l.id] <= d),
                                  key=lambda l: (purchased[l.id], l.id))
            left = loss.shares
            for lot in replacements:
                if left <= EPS_SHARES:
                    break
                m = min(left, lot.quantity)
                adjusted = _wash(lot, loss, m, purchased[lot.id])
                if m < lot.quantity - EPS_SHARES:  # split: only the matched shares carry the loss
                    lots[lot.id] = dataclasses.replace(lot, quantity=lot.quantity - m)
                    adjusted = dataclasses.replace(adjusted, id=new_id(lot.symbol))
                    purchased[adjusted.id] = purchased[lot.id]
                lots[adjusted.id] = adjusted
                washed.add(adjusted.id)
                disallowed = loss.loss_per_share * m
                ledger = ledger.book(d.year, loss.term, disallowed)
                washes.append(WashSale(loss.symbol, d, purchased[lot.id], m, disallowed, adjusted.id))
                left -= m
            if left < loss.shares:
                sale = sales[index]
                dis = loss.loss_per_share * (loss.shares - left)
                sales[index] = dataclasses.replace(sale, gain=sale.gain + dis, disallowed=dis)
            if left > EPS_SHARES:
                pending.append(dataclasses.replace(loss, shares=left))
        # The history the engine's wash rules read: one sell per lot relieved, with its own gain, so
        # a loss on one lot is seen even when the order's gains on other lots outweigh it.
        trades.extend(Trade(s.symbol, "sell", s.shares, s.price, d, s.gain) for s in sales)

        # 3. Buys open lots; shares bought within the window after a loss sale replace its shares.
        for f in (f for f in fills if f.side == "buy"):
            _check_fill(f)
            left = f.quantity
            for k, loss in enumerate(pending):
                if left <= EPS_SHARES:
                    break
                if loss.symbol != f.symbol or loss.shares <= EPS_SHARES or not (d - self.window <= loss.sold <= d):
                    continue
                m = min(left, loss.shares)
                piece = _wash(Lot(new_id(f.symbol), f.symbol, m, f.price, d), loss, m, d)
                lots[piece.id] = piece
                purchased[piece.id] = d
                washed.add(piece.id)
                disallowed = loss.loss_per_share * m
                ledger = ledger.book(loss.sold.year, loss.term, disallowed)
                washes.append(WashSale(f.symbol, loss.sold, d, m, disallowed, piece.id))
                pending[k] = dataclasses.replace(loss, shares=loss.shares - m)
                left -= m
            if left > EPS_SHARES:
                lot = Lot(new_id(f.symbol), f.symbol, left, f.price, d)
                lots[lot.id] = lot
                purchased[lot.id] = d
            cash -= f.notional
            trades.append(Trade(f.symbol, "buy", f.quantity, f.price, d))

        cash -= withdrawal
        if cash < -EPS_MONEY * max(1.0, a.value):
            raise ValueError(f"cash after the fills and a withdrawal of {withdrawal:,.2f} is {cash:,.2f} on {d}")
        from_cash = min(tax, max(cash, 0.0))
        if tax - from_cash <= EPS_MONEY * max(1.0, a.value):  # float dust: the account paid it all
            from_cash = tax
        cash -= from_cash
        purchased = {k: v for k, v in purchased.items() if k in lots}
        account = a.replace(cash=max(cash, 0.0), lots=tuple(lots.values()), trades=tuple(trades),
                            tax=ledger.settings(d.year))
        broker = Broker(account, ledger, purchased, frozenset(w for w in washed if w in lots),
                        tuple(p for p in pending if p.shares > EPS_SHARES), serial)
        return broker, Execution(d, tuple(fills), tuple(sales), tuple(washes), withdrawal, tax - from_cash)

    # --- the end ---------------------------------------------------------------------------------
    def tax_due(self) -> float:
        """Tax the open years owe on what has been realized so far (not yet paid)."""
        return self.ledger.tax_due_if_settled()

    def liquidation_tax(self) -> float:
        """The extra tax of selling every lot at today's prices, netted with the open years."""
        d = self.account.as_of
        ledger = self.ledger
        for lot in self.account.lots:
            ledger = ledger.book(d.year, term(lot.acquired, d),
                                 (self.account.prices[lot.symbol] - lot.cost_basis) * lot.quantity)
        return ledger.tax_due_if_settled() - self.tax_due()


def _check_fill(f: Fill) -> None:
    if f.side not in ("buy", "sell"):
        raise ValueError(f"fill side must be buy or sell, got {f.side!r}")
    if not (math.isfinite(f.quantity) and f.quantity > 0 and math.isfinite(f.price) and f.price > 0):
        raise ValueError(f"fill of {f.symbol} needs a quantity > 0 and a price > 0, got {f.quantity} @ {f.price}")


def _wash(lot: Lot, loss: PendingLoss, shares: float, bought: date) -> Lot:
    """``shares`` of ``lot`` as replacement shares: the disallowed loss per share added to their
    basis, their holding period extended by the sold shares' (acquired moved back by it)."""
    held = loss.sold - loss.acquired
    return dataclasses.replace(lot, quantity=shares, cost_basis=lot.cost_basis + loss.loss_per_share,
                               acquired=bought - held)
