"""Planning a rebalance: the cash-first stages, the buy-or-sell direction per symbol, rounding.

1. **Cash first** (SPEC section 2). Solve with buys only (and, with a withdrawal, sells capped at
   what it needs). If the rounded result leaves every class and cash in band, or sells are not
   allowed, that is the plan. With an asset class already above its band and nothing to sell for,
   buying cannot end in band, so this stage is skipped (and solved only if stage 2 finds nothing).
2. **Full.** A symbol is bought or sold in one plan, never both, and a loss may not be realized on
   a symbol the plan buys (wash sale); that either/or is not convex. Following Moehle, Kochenderfer,
   Boyd & Ang (2021), a relaxation in which every lot may be sold and each class's first buyable
   symbol bought picks a direction per symbol (net buy or net sell); then the exact problem is
   solved with directions fixed: a symbol that sells is not bought, and its class's buys go to the
   next listed buyable symbol. Where the relaxation both bought and sold a symbol, opposite
   choices are solved too, as are choices that buy each class through the fund whose harvest
   they forfeit is smallest (``direction_choices``); the rounded plan with the lowest objective
   wins (the cash-first plan competes as well, being feasible for this stage). Continuous optima
   bound their roundings from below, so solves and roundings that cannot beat the best plan so
   far are skipped; a choice not yet solved is bounded below by the relaxation and by
   ``_unbought_bound`` (per class, without solving; then with cash priced), so it is solved only
   where it could still win. Most choices need
   no solve at all: their optimum is read off the relaxation's (``_exact_from_relaxation``).

Every solve of an account with many lots goes through lot screening (``screen``): the solver sees
a prefix of each symbol's lots, and the optimum is proven to be that over every lot.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from .account import CASH, PLAN_RULES, Account, require_account
from .book import Book
from .drift import DriftReport, drift_report
from .errors import Infeasible, InputError, SolverFailed
from .orders import Trades, to_orders
from .rounding import NOISE, WHOLE_SHARE, Scorer, Tracking, round_trades, terms_of
from .plan import Objective, Order, Plan, SolverInfo, check_reason
from .problem import DEFAULT_SOLVERS, Bucket, ModelCache, ModelData, Solution, SolveFailure, Structure
from .screen import LotScreen, before_in_class, class_runs, screened
from .tax import estimate
from .verify import verify_plan

BUY_CAP = 2.0  # a buy never exceeds the account (cash constraint); any bound >= 1 is inactive
# Stage 2 may sell anything: no sell-room row at all (``Reduction`` drops a row whose bound is
# +inf). A room of 1e6 meant the same but, six orders of magnitude off the problem's scale, cost
# Clarabel half as many iterations again (household solves 20 -> 13, the 500x10 direct index 30 -> 22).
NO_SELL_LIMIT = np.inf
BOUND_SLACK = 1e-9  # objective units: how far a solver's optimum may sit above the true one
# Fraction of U: a relaxed sale below this (and below half a share) does not make its symbol a
# seller. Measured on 6,900 batch accounts: solver returns of up to 5e-7 took a class's only buy
# target away; no material sale (a tenth of a basis point of the account) is near it.
SALE_NOISE = 1e-5
DUST_LOT = 1e-9  # fraction of U: lots worth less are left out of the solve (``_base_data``)
TARGET_ROUNDS = 3  # re-solves of a plan whose buys do not follow its sales (``follow_targets``)
DEFAULT_CACHE = ModelCache()


@dataclass
class _Candidate:
    trades: Trades
    terms: Objective       # the rounded plan's objective, term by term
    stage: str
    solution: Solution
    after: DriftReport | None = None  # drift after the trades, once computed

    @property
    def objective(self) -> float:
        return self.terms.total


class Planner:
    """Plans rebalances, keeping compiled models so re-solves of a structure never recompile."""

    def __init__(self, cache: ModelCache | None = None, solvers: tuple[str, ...] = DEFAULT_SOLVERS,
                 screen_lots: bool = True):
        self.cache = cache if cache is not None else DEFAULT_CACHE
        self.solvers = solvers
        self.screen_lots = screen_lots  # solve over screened lots (``screen``); False: every lot

    def plan(self, account: Account, reason: str | None = None) -> Plan:
        """Plan a rebalance of ``account``. Anything but an ``Account`` is a TypeError saying so
        (``None`` was an AttributeError from deep in the planner). ``reason`` (None: inferred) is
        checked as ``--reason`` is: an empty one was silently replaced, a number stored as it was."""
        require_account(account, "a plan")
        if reason is not None:
            reason = check_reason(reason, "reason")
        started = time.perf_counter()
        book = Book(account)
        p = account.policy
        if book.value <= 0 and p.withdrawal == 0 and p.min_cash == 0:  # nothing to rebalance
            none = Solution(np.zeros(len(book.symbols)), np.zeros(len(book.lots)), 0.0, "optimal", "none", 0.0)
            empty = Trades(np.zeros(len(book.symbols)), np.zeros(len(book.lots)))
            scorer = Scorer(book, _tracking(book))
            nothing = _Candidate(empty, terms_of(scorer, book, empty), "cash_first", none)
            return self._finish(book, nothing, scorer, reason, {"solves": 0, "seconds": 0.0}, started,
                                drift_report(account))
        _check_feasible_at_all(book)
        before = drift_report(account)
        tracking = _tracking(book)
        model = self.cache.for_account(_structure(book, tracking), _bucket(book, tracking))
        scorer = Scorer(book, tracking)
        base = _base_data(book, tracking)
        lot_ok = book.lot_sellable
        stats = {"solves": 0, "seconds": 0.0}

        screen = LotScreen.of(book, base) if self.screen_lots else None

        def solve_once(b_max, s_max, sell_room) -> Solution | None:
            data = ModelData(**{**base.__dict__, "b_max": b_max, "s_max": s_max, "sell_room": sell_room})
            stats["solves"] += 1
            try:
                sol = model.solve(data, self.solvers)
            except SolveFailure as exc:
                if exc.infeasible:
                    return None
                raise SolverFailed(f"the solvers did not reach an accurate optimum ({exc})") from None
            stats["seconds"] += sol.solve_seconds
            return sol

        def solve(b_max, s_max, sell_room) -> Solution | None:
            return screened(lambda caps: solve_once(b_max, caps, sell_room), screen, s_max)

        def candidate(sol: Solution, lot_allowed: np.ndarray, stage: str, buys: np.ndarray,
                      sell_room: float = np.inf) -> _Candidate | None:
            """The solve's rounded plan, None when the stage has none in whole shares. ``buys``
            and ``sell_room`` (money) are the stage's rules, for the rounding's exact fallback."""
            shares = _continuous_shares(book, sol)
            try:
                trades = round_trades(book, shares, lot_allowed, scorer, buyable=buys, sell_room=sell_room)
            except Infeasible:
                return None
            return _Candidate(trades, terms_of(scorer, book, trades), stage, sol)

        no_sells = np.zeros(len(book.symbols), dtype=bool)
        first_buys = book.buy_targets(sold=no_sells)
        shortfall = max(0.0, p.withdrawal + p.min_cash - account.cash) / book.invested
        s_cap = base.s_max * lot_ok
        candidates: list[_Candidate] = []

        def cash_first() -> _Candidate | None:
            sol = solve(first_buys * BUY_CAP, s_cap if shortfall > 0 else 0 * s_cap, shortfall)
            need = shortfall * book.invested  # money the stage may raise by selling (0: none)
            return candidate(sol, lot_ok, "cash_first", first_buys, need) if sol is not None else None

        # Stage 1: cash first. Buying alone never lowers a class's weight (its value and V stay),
        # so with a class above its band and nothing to sell for, stage 1 cannot end in band:
        # it is skipped, and only solved if stage 2 finds no plan.
        futile = p.allow_sells and shortfall == 0 and _above_band(before)
        if not futile:
            first = cash_first()
            if first is not None:
                first.after = _drift_after(book, first.trades)
                if not p.allow_sells or first.after.in_band:
                    return self._finish(book, first, scorer, reason, stats, started, before)
                candidates.append(first)
            elif not p.allow_sells:
                raise Infeasible(_why(book, "plan buying with cash and selling only for the withdrawal"),
                                 constraints=p.hard_rules(*PLAN_RULES, "policy.allow_sells"))

        # Stage 2: relaxation picks directions, the exact problem is solved per direction choice.
        # A rounded plan is feasible for its stage's continuous problem, so a continuous optimum
        # is a lower bound on every rounding of it, and the relaxation's on every stage-2 plan:
        # whatever cannot beat the best rounded plan so far is neither solved nor rounded.
        def beaten(lower_bound: float) -> bool:
            return bool(candidates) and lower_bound - BOUND_SLACK >= min(c.objective for c in candidates)

        astray: list[_Candidate] = []  # plans whose buys do not follow their own sales (fallback)

        def consider(solutions: list[tuple[Solution, np.ndarray, np.ndarray]]) -> None:
            """Round each exact optimum, lowest first, unless it cannot beat the best plan so far;
            keep the plan its buys lead to (``follow_targets``)."""
            for exact, lot_allowed, buys in sorted(solutions, key=lambda e: e[0].objective):
                if not beaten(exact.objective) and (c := candidate(exact, lot_allowed, "full", buys)) is not None:
                    if (c := follow_targets(c)) is not None:
                        candidates.append(c)

        def can_win(buys: np.ndarray, lot_allowed: np.ndarray) -> bool:
            """Whether a direction choice's optimum could beat the best plan so far, by a lower
            bound on it: the relaxation's, or ``_unbought_bound`` (worked out only once there is
            a plan to beat)."""
            if not candidates:
                return True
            enough = min(c.objective for c in candidates) + BOUND_SLACK  # what ``beaten`` needs
            allowed = s_cap * lot_allowed
            bound = max(relaxed.objective, bounds(buys, allowed, enough))
            if not beaten(bound) and price > 0:  # the same bound with cash priced: often tighter
                bound = max(bound, bounds(buys, allowed, enough, price))
            return not beaten(bound)

        def choice_lots(buys: np.ndarray) -> np.ndarray:
            """The lots a direction choice may sell: sellable, and not of a symbol it buys."""
            return lot_ok & ~buys[book.lot_symbol]

        def solve_choice(buys: np.ndarray, lot_allowed: np.ndarray) -> Solution | None:
            return solve(buys * BUY_CAP, s_cap * lot_allowed, NO_SELL_LIMIT)

        def follow_targets(c: _Candidate) -> _Candidate | None:
            """SPEC section 2: a class's buys go to its first listed buyable symbol not sold in the
            plan. A choice lets some symbols sell; where its plan then sells one of them not at
            all (its optimum or the rounding kept it) and buys a later symbol of the class, the
            choice the plan itself makes is solved instead, until the two agree. A plan that
            never does (its follower cannot be rounded, or TARGET_ROUNDS run out) is kept aside,
            used only if stage 2 has no other plan (none of 6,000 synthetic households; one did
            before dust trades stopped counting, its follower too tight a tax budget to round)."""
            for _ in range(TARGET_ROUNDS):
                buys = book.buy_targets(sold=c.trades.shares < 0)
                if not (c.trades.shares > 0)[~buys].any():
                    return c
                lot_allowed = choice_lots(buys)
                if not can_win(buys, lot_allowed):
                    return None
                if (exact := solve_choice(buys, lot_allowed)) is None:
                    break
                if beaten(exact.objective):
                    return None
                if (following := candidate(exact, lot_allowed, "full", buys)) is None:
                    break
                c = following
            astray.append(c)
            return None

        relaxed = solve(first_buys * BUY_CAP, s_cap, NO_SELL_LIMIT)
        if relaxed is not None and not beaten(relaxed.objective):
            price = _cash_price(book, base, tracking, relaxed)
            bounds = _Bound(book, base, tracking)
            free, to_solve = [], []
            for sells_symbol in direction_choices(book, relaxed, bounds.lot_cost):
                buys = book.buy_targets(sold=sells_symbol)
                lot_allowed = choice_lots(buys)
                if (exact := _exact_from_relaxation(book, base, relaxed, buys, lot_allowed)) is not None:
                    free.append((exact, lot_allowed, buys))
                else:
                    to_solve.append((buys, lot_allowed))
            # A choice the relaxation solves is rounded as the relaxation gives it; any other is
            # solved only if it can still beat the best plan so far (``solve_choice``). The solved
            # ones are rounded together, lowest optimum first (``consider``): a rounding costs more
            # than a solve, and the first one rounded often shows that the rest cannot win. On
            # 1,200 household plans: the same plans, with 1.59 -> 1.16 roundings and 2.10 -> 2.61
            # solves a plan, in 13% less time than rounding each choice as it was solved.
            consider(free)
            consider([(exact, lot_allowed, buys) for buys, lot_allowed in to_solve
                      if can_win(buys, lot_allowed) and (exact := solve_choice(buys, lot_allowed)) is not None])
        if not candidates:
            candidates.extend(astray)
        if not candidates and futile and (first := cash_first()) is not None:
            candidates.append(first)
        if not candidates:
            raise Infeasible(_why(book, "plan in whole shares"), constraints=p.hard_rules(*PLAN_RULES))
        best = min(candidates, key=lambda c: c.objective)
        return self._finish(book, best, scorer, reason, stats, started, before)

    def _finish(self, book: Book, chosen: _Candidate, scorer: Scorer, reason: str | None, stats: dict,
                started: float, before: DriftReport) -> Plan:
        account = book.account
        trades = chosen.trades
        orders = to_orders(book, trades)
        after = chosen.after or _drift_after(book, trades)
        gains = {"short": 0.0, "long": 0.0}
        for o in orders:
            for sale in o.lots:
                gains[sale.term] += sale.gain
        cost = scorer.kappa * sum(o.notional for o in orders)
        plan = Plan(
            account=account.id, as_of=account.as_of.isoformat(), currency=account.currency,
            status="optimal", reason=reason or infer_reason(account, before),
            stage=chosen.stage, orders=orders,
            tax=estimate(account.tax, gains["short"], gains["long"]),
            drift_before=before, drift_after=after, value=book.value,
            cash_before=account.cash, cash_after=_cash_after(book, trades, scorer.kappa),
            withdrawal=account.policy.withdrawal, trading_cost=cost,
            lot_tax=sum(s.tax for o in orders for s in o.lots),
            objective=chosen.terms,
            solver=SolverInfo(chosen.solution.solver, chosen.solution.status, stats["solves"], stats["seconds"],
                              time.perf_counter() - started),
            notes=tuple(_notes(book, after, orders)),
        )
        verify_plan(account, plan)
        return plan


def plan_rebalance(account: Account, reason: str | None = None, planner: Planner | None = None) -> Plan:
    """Plan a tax-aware rebalance of ``account`` (see the module docstring for how)."""
    return (planner or Planner()).plan(account, reason)


def rebalance_reason(account: Account, reason: str | None = None) -> str:
    """The reason a plan of ``account`` records, known before planning: ``reason`` checked as
    ``--reason`` is, else ``infer_reason`` on the drift before trading. A resumed batch matches
    logged entries by it without planning again."""
    return check_reason(reason, "reason") if reason is not None else infer_reason(account, drift_report(account))


def infer_reason(account: Account, before: DriftReport) -> str:
    """The reason of a rebalance given no ``--reason``: the first of these rules that fires.

    1. ``Withdrawal``: the policy asks for a withdrawal.
    2. ``Drift Trigger``: an asset class is out of its band, or cash is below its band.
    3. ``Cash Flow``: every asset class is in band and cash is above its target (a deposit to
       deploy, even one that puts cash itself over its band).
    4. ``Manual``: everything is in band and there is no cash to deploy.
    """
    if account.policy.withdrawal > 0:
        return "Withdrawal"
    cash = before.row(CASH)
    if any(r.status != "in_band" for r in before.rows if r.name != CASH) or cash.status == "underweight":
        return "Drift Trigger"
    if account.cash > account.policy.min_cash and cash.drift > 0:
        return "Cash Flow"
    return "Manual"


def _above_band(report: DriftReport) -> bool:
    """Some asset class (not cash) is above its band."""
    return any(r.status == "overweight" for r in report.rows if r.name != CASH)


def _directions(book: Book, relaxed: Solution) -> tuple[np.ndarray, np.ndarray]:
    """Per symbol, from the relaxation: (sells on net, both bought and sold).

    Where lots or symbols of a class tie, the relaxation has many optima, and the solver may
    return one selling a few millionths of U of a symbol: that must not take the symbol off
    its class's buy list (a plan that does not sell it buys it, SPEC section 2). So a trade
    counts above SALE_NOISE, or above half a share where that is less (a trade that could round
    to a share); fractional accounts alike (below both, a trade is dust). A sale and a buy of
    one symbol conflict only if both count: a dust buy of a fund sold in full made its flip
    (keep the fund, stop selling it) stand in for the real alternative."""
    sold = np.bincount(book.lot_symbol, weights=relaxed.sells, minlength=len(book.symbols))
    bought = relaxed.buys
    half_share = 0.5 * WHOLE_SHARE * book.price / book.invested
    floor = np.maximum(NOISE, np.minimum(SALE_NOISE, half_share))
    sells = sold > floor
    return (sold > bought) & sells, sells & (bought > floor)


def direction_choices(book: Book, relaxed: Solution, lot_cost: np.ndarray) -> list[np.ndarray]:
    """Stage 2's direction choices from the relaxation, as the symbols each sells (no choice twice):

    1. the symbols it sells on net;
    2. with a conflict (a symbol both bought and sold), each conflicted symbol sold where its
       class has another to buy (``_flip_replaceable``), and every conflicted one sold;
    3. each class that buys doing so through its fund whose relaxed sales earn least, alone and
       with every conflicted symbol of a class that sells on net sold (``_cheapest_targets``).

    ``lot_cost`` is the objective per unit of U sold, per lot (negative for a loss)."""
    net_sell, conflict = _directions(book, relaxed)
    choices = [net_sell]
    if conflict.any():
        replaced = _flip_replaceable(book, net_sell, conflict)
        choices += ([replaced] if replaced is not None else []) + [net_sell ^ conflict]
    for sellers_sell_conflicts in (False, True):
        choice = _cheapest_targets(book, relaxed, net_sell, conflict, lot_cost, sellers_sell_conflicts)
        if not any(np.array_equal(choice, c) for c in choices):
            choices.append(choice)
    return choices


def _cheapest_targets(book: Book, relaxed: Solution, net_sell: np.ndarray, conflict: np.ndarray,
                      lot_cost: np.ndarray, sellers_sell_conflicts: bool) -> np.ndarray:
    """The choice in which each class that buys in the relaxation buys through the fund whose
    relaxed sales earn least, and the others sell as in ``net_sell``.

    A class's buy target may not sell (a loss realized on a symbol the plan buys is a wash
    sale), so choosing it forfeits the harvest the relaxation took from its lots; the first
    listed fund is no better a target than a later one whose harvest is smaller. The funds listed
    before the target are sold (SPEC section 2: buys go to the first listed fund not sold), so
    only a fund with a lot to sell can be passed over. With ``sellers_sell_conflicts``, every
    conflicted symbol of a class the relaxation sells on net is sold instead, so that the class
    harvests them all rather than buying one back (its buys, if any, go to its next unsold fund;
    with none left it buys nothing). On 600 synthetic households (each whole and fractional)
    these two choices gave 281 of 1,200 plans a lower objective (median 8%), and on 250
    loss-heavy fractional accounts they left 6 plans more than 0.3% above the best of every
    direction choice, against 74 (README, How a plan is made)."""
    n_classes = len(book.classes)
    klass, lot_class = book.class_of_symbol, book.class_of_symbol[book.lot_symbol]
    bought = np.bincount(klass, weights=relaxed.buys, minlength=n_classes)
    sold = np.bincount(lot_class, weights=relaxed.sells, minlength=n_classes)
    buying = bought > NOISE
    choice = net_sell.copy()
    if sellers_sell_conflicts:
        seller = sold > bought
        choice |= conflict & seller[klass]
        buying &= ~seller
    earned = np.maximum(np.bincount(book.lot_symbol, weights=-lot_cost * relaxed.sells,
                                    minlength=len(book.symbols)), 0.0)
    has_lot = np.bincount(book.lot_symbol, weights=book.lot_sellable.astype(float), minlength=len(book.symbols)) > 0
    for k, listed in book.buyable_in_class.items():
        if not buying[k] or len(listed) < 2:
            continue
        reach = next((listed[:j + 1] for j, i in enumerate(listed) if not has_lot[i]), listed)
        target = min(reach, key=lambda i: earned[i])  # the first listed among equals
        for i in reach[:reach.index(target)]:
            choice[i] = True
        choice[target] = False
    return choice


def _flip_replaceable(book: Book, net_sell: np.ndarray, conflict: np.ndarray) -> np.ndarray | None:
    """The direction choice that sells each conflicted symbol (one the relaxation both buys and
    sells: a loss harvested and bought straight back) whose class keeps a symbol to buy once it is
    sold, and keeps the others; None when that is one of the two choices tried anyway (all kept,
    all sold).

    Selling such a fund and buying its class's next fund instead keeps the harvest at no cost to
    any class (the relaxation's optimum, read off as for any choice), where keeping the fund drops
    the harvest and selling every conflicted fund leaves a class with no fund to buy when it has
    only the one: on 91 synthetic households planned in full, a whole-share search over every
    choice found a better plan for 41 before this choice was tried (README, How a plan is made)."""
    sold = net_sell.copy()
    klass, eligible = book.class_of_symbol, book.buy_eligible
    # per class, the symbols left to buy (``Book.buy_targets`` takes the first of them)
    left = np.bincount(klass[eligible & ~sold], minlength=len(book.classes))
    for i in np.flatnonzero(conflict & ~sold):
        if left[klass[i]] - int(eligible[i]) >= 1:
            sold[i] = True
            left[klass[i]] -= int(eligible[i])
    if np.array_equal(sold, net_sell) or np.array_equal(sold, net_sell ^ conflict):
        return None
    return sold


def _exact_from_relaxation(book: Book, base: ModelData, relaxed: Solution, buys: np.ndarray,
                           lot_allowed: np.ndarray) -> Solution | None:
    """The optimum of a direction choice's exact problem read off the relaxation's, when it can
    be; None when the choice must be solved.

    The two problems differ only in which symbols may be bought and which lots sold. A buy of
    any symbol of a class does the same to every term and row of the model (its class's weight,
    cash, the trading cost and tie-break; risk is per class), so moving a plan's buys from one
    symbol of a class to another keeps its objective. Hence the relaxation's optimum is a lower
    bound on the exact one, and where it sells nothing of the lots the choice keeps, it is an
    exact plan once each class's buys go to the choice's target: optimal for the exact problem.

    Without trading costs or a tax budget, a sale of a lot the choice keeps together with a buy of
    as much of the same symbol (a harvest bought straight back, the usual conflict) moves no
    class and no cash and meets no other row. Dropping the pair leaves every row as it was and
    takes only the lot's tax off the objective; and an exact plan better than that one, with
    the pair put back, would beat the relaxation. So that relaxation answers the choice that
    keeps the fund: the same plan, with the fund's lots unsold and as much less of it bought.
    (Under a budget, the harvested loss may be what let a gain be sold: that choice is solved.)"""
    moved = np.bincount(book.class_of_symbol[~buys], weights=relaxed.buys[~buys], minlength=len(book.classes))
    target_class = book.class_of_symbol[buys]
    if np.count_nonzero(moved > NOISE) > np.count_nonzero(moved[target_class] > NOISE):
        return None  # a class that bought in the relaxation has no target in this choice (dust aside)
    exact_buys = np.where(buys, relaxed.buys, 0.0)
    exact_buys[buys] += moved[target_class]
    kept = np.where(lot_allowed, 0.0, relaxed.sells)  # sales of lots the choice keeps
    if float(kept.sum()) <= NOISE:
        return replace(relaxed, buys=exact_buys) if moved.any() else relaxed
    if base.cost_rate != 0 or np.isfinite(base.tax_room):
        return None  # the pair costs cash, or its tax counts against a budget (either way, solve)
    bought_back = np.bincount(book.lot_symbol, weights=kept, minlength=len(book.symbols))
    if (bought_back > exact_buys + NOISE).any():
        return None  # a sale not matched by a buy of its symbol: it moves its class
    objective = relaxed.objective - base.tax_weight * base.u_over_v * float(base.lot_tax @ kept)
    return replace(relaxed, buys=np.maximum(exact_buys - bought_back, 0.0),
                   sells=np.where(lot_allowed, relaxed.sells, 0.0), objective=objective)


def _unbought_bound(book: Book, base: ModelData, tracking: Tracking, buys: np.ndarray, s_max: np.ndarray,
                    enough: float = np.inf, price: float = 0.0) -> float:
    """A lower bound on the exact problem's optimum for these buy targets, without solving it.

    Relax the cash, tax-budget and sell-room rows and the buy caps, and bound the cash row's
    tracking w_c·d_c² from below by its tangent w_c·(2t·d_c − t²): what is left splits by class.
    The cash row Σb − Σs + κT ≤ room enters with a Lagrange multiplier λ ≥ 0, so every unit
    bought costs, and every unit sold earns, the ``price`` m = λ − 2·w_c·t ≥ 0 (any such m gives a
    bound, by weak duality); the turnover T's coefficient, trading cost plus κ·m, is ≥ 0 and
    dropped. The constant −λ·room + w_c·(2t·gap_c − t²) is largest at t = max(gap_c − room,
    −m/2w_c). Class k's deviation is its gap plus its buys less its sales σ, and its tax is c(σ),
    convex and piecewise linear (its allowed lots, cheapest per unit first). A class with a buy
    target buys back below target while that pays: min_b≥0 w·(x + b)² + m·b is w·x² for
    x ≥ −m/2w and −m·x − m²/4w below; a class with none cannot gain weight: w·x². Each class's
    minimum over σ of that plus c(σ) − m·σ is over a few candidates (per lot segment the
    stationary point gap − (q − m)/2w clipped to it, and its end; and σ = 0), evaluated exactly.
    At m = 0 (the first bound tried) there is no cash term, and a looser bound of the same
    relaxation comes first. With factor risk rows the tracking term does not split by class: the
    bound is −∞ (unused). A bound of at least ``enough`` is returned as soon as one is found."""
    return _Bound(book, base, tracking)(buys, s_max, enough, price)


class _Bound:
    """``_unbought_bound`` for one plan: the lots sorted by class and tax per unit once, when a
    bound first needs them (many plans never do), so each direction choice costs a few vector
    operations (a lot a choice may not sell is a segment of length 0, which changes no minimum)."""

    def __init__(self, book: Book, base: ModelData, tracking: Tracking):
        n = len(book.classes)
        self.factor = tracking.factor is not None
        self.diagonal = tracking.diagonal(n + 1)
        self.weight, self.gap = self.diagonal[:n], base.gap[:n]
        self.base, self.book, self.klass = base, book, book.class_of_symbol
        self.lot_cost = base.tax_weight * base.u_over_v * base.lot_tax  # objective per unit of U sold

    @cached_property
    def _sorted(self) -> tuple[np.ndarray, ...]:
        """(order, tax per unit and class of the sorted lots, each class's first lot, each lot's
        class run, the class of each run)."""
        k = self.klass[self.book.lot_symbol]
        order = np.lexsort((self.lot_cost, k))
        q, k = self.lot_cost[order], k[order]
        first, segment = class_runs(k)
        return order, q, k, first, segment, k[first]

    def __call__(self, buys: np.ndarray, s_max: np.ndarray, enough: float = np.inf, price: float = 0.0) -> float:
        if self.factor:
            return -np.inf
        weight, gap = self.weight, self.gap
        n = len(gap)
        stuck = np.bincount(self.klass, weights=buys, minlength=n) == 0
        if price == 0.0:
            constant = 0.0
            # First the looser bound of the same relaxation (σ chosen separately for the two
            # terms: a stuck class's gap below target, and every allowed loss realized).
            loose = float(weight @ np.square(np.minimum(gap, 0.0) * stuck) + np.minimum(self.lot_cost, 0.0) @ s_max)
            if loose >= enough:
                return loose
        else:
            w_cash, gap_cash, room = self.diagonal[n], self.base.gap[n], self.base.cash_room
            t = max(gap_cash - room, -price / (2 * w_cash)) if w_cash > 0 else 0.0
            constant = -price * room + w_cash * (2 * t * (gap_cash - room) - t * t)
        positive = weight > 0
        kink = np.divide(-price, 2 * weight, out=np.full(n, -np.inf), where=positive)  # buys pay below
        below = np.where(positive, -price * price / np.where(positive, 4 * weight, 1.0), 0.0)

        def cost(k: np.ndarray, sigma: np.ndarray, tax: np.ndarray) -> np.ndarray:
            dev = gap[k] - sigma
            bought_back = ~stuck[k] & (dev < kink[k])
            tracked = np.where(bought_back, -price * dev + below[k], weight[k] * np.square(dev))
            return tracked + tax - price * sigma

        best = cost(np.arange(n), np.zeros(n), np.zeros(n))  # σ = 0
        if len(self.lot_cost):
            order, q, k, first, segment, classes = self._sorted
            cap = s_max[order]
            lo = before_in_class(cap, first, segment)          # σ where each segment starts
            tax_lo = before_in_class(q * cap, first, segment)  # c(σ) there
            w = weight[k]
            step = np.divide(q - price, 2 * w, out=np.zeros_like(q), where=w > 0)
            end = lo + cap
            stationary = np.clip(gap[k] - step, lo, end)
            per_lot = np.minimum(cost(k, stationary, tax_lo + q * (stationary - lo)), cost(k, end, tax_lo + q * cap))
            best[classes] = np.minimum(best[classes], np.minimum.reduceat(per_lot, first))
        return float(best.sum() + constant)


def _cash_price(book: Book, base: ModelData, tracking: Tracking, relaxed: Solution) -> float:
    """A price of cash for ``_unbought_bound``, read off the relaxation: the most any class that
    buys in it would still gain per unit bought, −2·w·d at its deviation d after the trades (at
    the relaxation's optimum that is what the cash row's multiplier pays for; any price is a
    valid one). On 300 synthetic households (600 plans, whole and fractional) it pruned more of
    the solves that could not win than the best of 37 prices on a log grid (178 of 308, against
    167), at one evaluation instead of 37."""
    n = len(book.classes)
    klass = book.class_of_symbol
    bought = np.bincount(klass, weights=relaxed.buys, minlength=n)
    sold = np.bincount(klass[book.lot_symbol], weights=relaxed.sells, minlength=n)
    buying = bought > NOISE
    if tracking.factor is not None or not buying.any():
        return 0.0
    dev = base.gap[:n] + bought - sold
    return max(0.0, float(np.max(-2 * tracking.diagonal(n + 1)[:n][buying] * dev[buying])))


# --- data for the model -----------------------------------------------------------------------
def _bucket(book: Book, tracking: Tracking) -> Bucket | None:
    """The size bucket of an account without a risk model, None when it has one or fits none."""
    if not tracking.identity:
        return None
    return Bucket.fitting(len(book.classes), len(book.symbols), len(book.lots))


def _structure(book: Book, tracking: Tracking) -> Structure:
    """The account's own structure: its incidence and the shape of its risk model."""
    return Structure(tuple(book.class_of_symbol.tolist()), tuple(book.lot_symbol.tolist()),
                     len(book.classes), 0 if tracking.factor is None else tracking.factor.shape[0],
                     tracking.specific is not None)


def _tracking(book: Book) -> Tracking:
    """The risk model's factor G over the account's classes (columns in book order, a zero
    column for cash), split into its dense rows and its one-entry rows: a factor model's
    specific variances become a diagonal σ instead of n rows of an n × n matrix."""
    risk = book.account.risk
    if risk is None:
        return Tracking()
    g = risk.matrix()
    col = {c: k for k, c in enumerate(risk.classes)}
    full = np.zeros((g.shape[0], len(book.classes) + 1))
    full[:, : len(book.classes)] = g[:, [col[c] for c in book.classes]]
    nonzeros = np.count_nonzero(full, axis=1)
    dense, single = full[nonzeros > 1], full[nonzeros == 1]
    specific = np.sqrt(np.square(single).sum(axis=0)) if len(single) else None
    if not len(dense) and specific is None:  # a model of zero risk: no tracking term, not ‖d‖²
        specific = np.zeros(full.shape[1])
    return Tracking(dense if len(dense) else None, specific)


def _base_data(book: Book, tracking: Tracking) -> ModelData:
    a, p = book.account, book.account.policy
    u, v = book.invested, book.value
    gap = np.append(book.class_value, a.cash - p.withdrawal) / u - book.targets
    price_of_lot = book.price[book.lot_symbol]
    lot_tax = book.lot_rate * (1.0 - book.lot_basis / price_of_lot)
    # A lot worth under DUST_LOT of U is no variable of the solve (cap 0): at 1e-12 of U an
    # interior point cannot resolve its bound, and it stopped short (SolverFailed) on a lot of a
    # millionth of a share; no sale that small is a trade anyway (``rounding.NOISE``, 1e-7 of U).
    # The rounding still relieves it when its symbol is sold.
    s_cap = np.where(book.lot_value >= DUST_LOT * u, book.lot_value / u, 0.0)
    # A tax budget no set of sales can reach is no row at all (+inf: ``Reduction`` drops it),
    # rather than a dense row over every lot that never binds
    most_tax = float(np.maximum(lot_tax * s_cap, 0).sum())
    tax_room = p.max_tax / u if np.isfinite(p.max_tax) and p.max_tax / u < most_tax else np.inf
    return ModelData(gap=gap, b_max=np.zeros(len(book.symbols)), s_max=s_cap, lot_tax=lot_tax,
                     tax_weight=p.tax_weight, u_over_v=u / v, cost_rate=p.trade_cost_bps * 1e-4,
                     cash_room=(a.cash - p.withdrawal - p.min_cash) / u, tax_room=tax_room,
                     sell_room=0.0, risk=tracking.factor, risk_diagonal=tracking.specific,
                     class_of_symbol=book.class_of_symbol, symbol_of_lot=book.lot_symbol)


def _continuous_shares(book: Book, sol: Solution) -> np.ndarray:
    sold = np.bincount(book.lot_symbol, weights=sol.sells, minlength=len(book.symbols))
    return (sol.buys - sold) * book.invested / book.price


# --- evaluating a rounded plan -----------------------------------------------------------------
def _cash_after(book: Book, trades: Trades, kappa: float) -> float:
    values = trades.shares * book.price
    return book.account.cash - float(values.sum()) - kappa * float(np.abs(values).sum())


def _drift_after(book: Book, trades: Trades) -> DriftReport:
    a = book.account
    shares = {s: float(book.shares[i] + trades.shares[i]) for i, s in enumerate(book.symbols)}
    kappa = a.policy.trade_cost_bps * 1e-4
    return drift_report(a, shares, _cash_after(book, trades, kappa) - a.policy.withdrawal, book.invested)


# --- explanations -------------------------------------------------------------------------------
EXACT_SHARES = 2.0 ** 53  # whole shares a float counts exactly
MIN_INVESTED = 1e-5  # the least share of the account value a withdrawal must leave invested


def _check_feasible_at_all(book: Book) -> None:
    """Catch the plainly impossible before solving, with a reason a person can act on."""
    a, p = book.account, book.account.policy
    if not np.isfinite(book.value) or not np.all(np.isfinite(book.lot_value)):
        raise InputError("amounts overflow: prices × quantities exceed floating point; check prices and lots",
                         path="prices", file=a.source, value=book.value, has_value=True)
    # Beyond 2⁵³ shares a float no longer holds every whole count (and at a price of 1e-300 the
    # count overflows): rounding could not place an order. Fractional plans past 2⁵³ millionths
    # (9e9 shares) count in the float's own spacing, still under a share (tests/test_fuzz.py).
    if len(book.symbols):
        reach = np.maximum(book.shares, book.value / book.price)  # held, or bought with everything
        worst = int(np.argmax(reach))
        if reach[worst] > EXACT_SHARES:
            raise InputError(f"{reach[worst]:.3g} shares (held, or what the account's value buys at this price) "
                             f"are more than a plan counts exactly (at most {EXACT_SHARES:.3g})",
                             path=f"prices.{book.symbols[worst]}", file=a.source,
                             value=float(book.price[worst]), has_value=True)
    if book.invested <= 0 and p.withdrawal == 0:  # an empty account asked to hold min_cash
        raise Infeasible(f"the account holds nothing (value {book.value:,.2f}), so min_cash "
                         f"{p.min_cash:,.2f} cannot be met", constraints=("policy.min_cash",))
    if book.invested <= 0:
        raise Infeasible(f"withdrawal {p.withdrawal:,.2f} is not less than the account value "
                         f"{book.value:,.2f}: nothing would stay invested",
                         constraints=p.hard_rules("policy.withdrawal", "policy.min_cash"))
    if book.invested < MIN_INVESTED * book.value:
        # Weights after the plan are measured on U (SPEC section 2): with U a ten-millionth of V
        # the holdings are 1e7 U and the solvers stop short of an accurate optimum (SolverFailed
        # on 4 of 39 households at 3e-7, none at 1e-6); 1e-5 keeps a margin.
        raise Infeasible(f"withdrawal {p.withdrawal:,.2f} leaves {book.invested:.3g} invested, less than "
                         f"{MIN_INVESTED:g} of the account value {book.value:,.2f}: too little to measure "
                         f"weights on; withdraw at most {math.floor(book.value * (1 - MIN_INVESTED) * 100) / 100:,.2f}",
                         constraints=p.hard_rules("policy.withdrawal", "policy.min_cash"))
    kappa = p.trade_cost_bps * 1e-4
    raisable = a.cash + float((book.lot_value * book.lot_sellable).sum()) * (1 - kappa)
    need = p.withdrawal + p.min_cash
    if raisable < need - 1e-9:
        blocked = sorted({book.lots[j].symbol for j in np.flatnonzero(~book.lot_sellable)})
        extra = f" (not sellable: {', '.join(blocked)})" if blocked else ""
        raise Infeasible(f"withdrawal {p.withdrawal:,.2f} plus min_cash {p.min_cash:,.2f} needs {need:,.2f}, "
                         f"but cash and sellable holdings come to {raisable:,.2f}{extra}",
                         constraints=p.hard_rules("policy.withdrawal", "policy.min_cash", "policy.no_sell"))
    if not p.allow_sells and a.cash < p.min_cash - 1e-9:
        # SPEC section 1: with allow_sells = false only a withdrawal may sell (at most what it
        # takes out), so min_cash must be met by the cash already there; the plan sold for it.
        raise Infeasible(f"allow_sells = false lets only a withdrawal sell, so min_cash {p.min_cash:,.2f} must "
                         f"come from the cash already there, {a.cash:,.2f}; allow sells, or lower min_cash",
                         constraints=("policy.min_cash", "policy.allow_sells"))
    if need > a.cash and np.isfinite(p.max_tax):
        # Without this the solvers are left to prove it: on a 1,000-lot book with max_tax = 0 they
        # stopped short of an accurate answer (SolverFailed, exit 1) instead of "infeasible".
        within = a.cash + _most_raised_within(book, p.max_tax) * (1 - kappa)
        if within < need - 1e-9:
            raise Infeasible(f"withdrawal {p.withdrawal:,.2f} plus min_cash {p.min_cash:,.2f} needs {need:,.2f}, "
                             f"but cash and what sales can raise within max_tax {p.max_tax:,.2f} come to "
                             f"{within:,.2f}", constraints=p.hard_rules("policy.withdrawal", "policy.min_cash",
                                                                     "policy.max_tax"))


def _most_raised_within(book: Book, budget: float) -> float:
    """The most that sales can raise with their lot-level tax at most ``budget``: a fractional
    knapsack (lots by tax per dollar raised, losses first, then a fraction of the first lot the
    budget cannot take whole), exact for the LP's one row."""
    ok = book.lot_sellable
    value = book.lot_value[ok]
    tax = (book.lot_tax_per_share * book.lot_quantity)[ok]
    order = np.argsort(tax / value, kind="stable")
    value, tax = value[order], tax[order]
    spent = np.cumsum(tax)  # falls over the losses, then rises: the lots within budget are a prefix
    whole = int(np.searchsorted(np.maximum.accumulate(spent > budget), True))
    raised = float(value[:whole].sum())
    if whole < len(value):
        left = budget - (spent[whole - 1] if whole else 0.0)
        raised += value[whole] * max(left, 0.0) / tax[whole]  # tax[whole] > left ≥ 0
    return raised


def _why(book: Book, how: str) -> str:
    """Why no plan was found: the plans tried (``how``) and the hard rules they could not meet."""
    p = book.account.policy
    parts = [f"no {how}"]
    if p.withdrawal:
        parts.append(f"withdrawal {p.withdrawal:,.2f}")
    if np.isfinite(p.max_tax):
        parts.append(f"tax budget max_tax {p.max_tax:,.2f}")
    if p.min_cash:
        parts.append(f"min_cash {p.min_cash:,.2f}")
    if p.min_trade:
        parts.append(f"min_trade {p.min_trade:,.2f}")
    return parts[0] + (" meets " + ", ".join(parts[1:]) if len(parts) > 1 else " exists")


def _notes(book: Book, after: DriftReport, orders: list[Order] | tuple[Order, ...] = ()) -> list[str]:
    """Why a class stays off target: none of its symbols may be bought, or it ends the plan above
    its band holding only what ``no_sell`` keeps (a plan of no trades said nothing of why); and
    why a class buys a fund listed after another (``_passed_over``)."""
    a = book.account
    notes = _passed_over(book, orders)
    buyable = np.bincount(book.class_of_symbol, weights=book.buy_eligible, minlength=len(book.classes)) > 0
    for k, cls in enumerate(book.classes):
        if a.target(cls) <= 0 or buyable[k]:
            continue
        members = np.flatnonzero(book.class_of_symbol == k)
        why = []
        for i in members:
            s = book.symbols[i]
            why.append(f"{s} is in no_buy" if s in a.policy.no_buy
                       else f"{s} was sold at a loss within {a.policy.wash_sale_days} days (wash sale)")
        notes.append(f"{cls} cannot be bought: " + "; ".join(why))
    unsellable = sorted({book.lots[j].symbol for j in np.flatnonzero(~book.lot_sellable)
                         if book.lots[j].symbol not in a.policy.no_sell})
    for s in unsellable:
        notes.append(f"{s}: loss lots not sold, {s} was bought within {a.policy.wash_sale_days} days (wash sale)")
    overweight = {r.name for r in after.rows if r.status == "overweight"} if a.policy.no_sell else ()
    if overweight:
        lot_class = book.class_of_symbol[book.lot_symbol]
        for k, cls in enumerate(book.classes):
            held = np.flatnonzero(lot_class == k)
            if cls not in overweight or book.lot_sellable[held].any():
                continue
            kept = sorted({book.lots[j].symbol for j in held if book.lots[j].symbol in a.policy.no_sell})
            if kept:
                notes.append(f"{cls} stays above its band: {', '.join(kept)} "
                             f"{'is' if len(kept) == 1 else 'are'} in no_sell")
    return notes


def _passed_over(book: Book, orders: list[Order] | tuple[Order, ...]) -> list[str]:
    """A note for each class that buys a fund listed after a buyable one: the plan sells the
    earlier fund (SPEC section 2: a class's buys go to its first listed buyable symbol not sold
    in the plan; a symbol is bought or sold, never both), usually to harvest its loss."""
    sold = {o.symbol: o for o in orders if o.side == "sell"}
    notes = []
    for o in orders:
        if o.side != "buy":
            continue
        i = book.symbol_index[o.symbol]
        funds = book.buyable_in_class.get(int(book.class_of_symbol[i]), [])
        passed = [book.symbols[j] for j in funds[:funds.index(i)] if book.symbols[j] in sold] if i in funds else []
        if not passed:
            continue
        why = []
        for s in passed:
            gain = sum(sale.gain for sale in sold[s].lots)
            why.append(f"{s} is sold in this plan" + (f" (a loss of {-gain:,.2f} harvested)" if gain < 0 else ""))
        notes.append(f"{o.asset_class} buys {o.symbol}, not {', '.join(passed)}: {'; '.join(why)}, "
                     "and a plan never buys a symbol it sells")
    return notes
