"""Stateful property test of the ledger: random sequences of deposits, subscription payments,
adjustments, refunds, usage (single, batches, the same event twice at once, two events racing
for the last of a balance or cap), reservations (authorize, two racing for the last of a
cap, settle — within its hold, or beyond it up to the overage tolerance and refused with
OVERAGE_LIMIT past it —, release, expiry), Stripe deliveries (once, repeated, twice at once,
conflicting: another amount or a key a manual deposit took) and Stripe refunds, backdated and
future-dated writes, backfills into past periods (a past day, week, allowance cycle and month,
and history before the books start), price changes with a reprice over a range (ADJUSTMENT
entries that move balances and the budget counters of the periods they correct), budgets
created, raised, lowered or made hard mid-period (a new ``terms_version``), the monthly close
(after which any write dated in the closed month is refused with PERIOD_CLOSED), and replays,
on a real PostgreSQL, against a model.

Each example is a fresh organisation (two customers, a prepaid and a postpaid account, a user
in a department, maybe a plan allowance, a markup and up to three budgets). Every operation
runs as the resolvers run it — the domain function inside one tenant-bound transaction with
the alerts evaluation before commit — and the model predicts whether it is accepted and with
which error. After every step the stored counters must equal the sums of the ledger entries
they summarise, the model's figures, and the caps:

* ``account_balances.balance`` = SUM(``balance_delta``) of the account's entries;
* ``allowance_counters.used_tokens`` = min(included, tokens of the cycle's usage that cost
  something: a call that costs nothing draws nothing);
* ``budget_counters.spent``, for every period that has a counter (the current one and every
  past one a backfill or a correction reached) = SUM of the usage and reprice corrections in
  the budget's scope and period (its basis), ``reserved`` = SUM of the holds of HELD
  reservations, neither negative; the model says which counters exist;
* a hard cap holds: spent by enforced usage + reserved <= limit, or the level the period had
  already reached when the cap was set, lowered or the counter opened (settlements and reprice
  corrections are charged past the cap by design: the usage has already happened);
* closed months are the ones the model expects, and hold what verify recomputes;
* a replay returns the first entry and writes nothing; a rejected operation writes nothing;
* ``costgraph verify``'s checker (:func:`costgraph.billing.verify.verify`) finds no drift.

The domain functions are called directly (the GraphQL layer has tests of its own; here the
speed buys steps). Each rule runs its coroutine on the machine's own event loop and engine
(hypothesis drives a synchronous state machine); ``-s`` prints how often each rule ended in
each outcome. ``COSTGRAPH_STATEFUL_EXAMPLES`` / ``COSTGRAPH_STATEFUL_STEPS``
raise the bounds for a longer hunt (the deep run: ``COSTGRAPH_STATEFUL_EXAMPLES=150
COSTGRAPH_STATEFUL_STEPS=40``); the defaults (CI's bounds) keep the test under two minutes.

The business clock is the model's: it stays on ``BASE`` (moving by seconds, or a reservation
TTL), except while the organisation is created, which happens on ``BOOKS`` so that February
is a month of its books that the close can close (January stays history).
"""

from __future__ import annotations

import asyncio
import calendar
import math
import os
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from fractions import Fraction
from typing import Any, ClassVar, TypeVar

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from costgraph.app.database import create_engine, create_sessionmaker
from costgraph.app.settings import Settings
from costgraph.app.state import AppState
from costgraph.app.subscription_biller import bill_round
from costgraph.app.units import build_units
from costgraph.billing import (
    allowance_weights,
    budgets,
    directory,
    ledger,
    markup,
    month_close,
    plans,
    reprice,
    reservations,
    subscription_billing,
    top_ups,
    verify,
)
from costgraph.billing import subscription_billing_repository as fee_repo
from costgraph.billing.allowances import cycle_window
from costgraph.billing.budgets import Basis, BudgetSpec
from costgraph.billing.catalog import NewPriceVersion, set_model_price
from costgraph.billing.commands import Limits, Payment, Refund, UsageEvent
from costgraph.billing.cost_formula import with_markup
from costgraph.billing.directory import OrgContext
from costgraph.billing.periods import Period, window
from costgraph.billing.plans import BillingCycle, PlanSpec
from costgraph.billing.scopes import Scope, ScopeKind
from costgraph.billing.stripe_payments import (
    RefundItem,
    StripeConflict,
    StripePayment,
    StripeRefunds,
    payment_key,
    record_stripe_payment,
    record_stripe_refunds,
)
from costgraph.billing.weights import Dimension, WeightSpec
from costgraph.kernel import clock
from costgraph.kernel.errors import (
    AllowanceExhausted,
    BudgetLimitReached,
    DomainError,
    IdempotencyConflict,
    InsufficientBalance,
    NotFound,
    OverageLimit,
    PeriodClosed,
    PlanLimit,
    ValidationFailed,
)
from costgraph.kernel.money import quantize_stored
from costgraph.models.scoping import bind_tenant
from costgraph.subscriptions.totals_check import LEDGER_CHECKS

#: A Wednesday morning: every day/week/month window holds the whole example (the clock moves
#: by at most a few hours), and no other test writes usage in March 2011.
BASE = datetime(2011, 3, 16, 8, 0, tzinfo=UTC)
TTL = timedelta(seconds=900)
#: When the organisation was created: its books start in February 2011, so February closes
#: once it is over (and the late-arrival window and grace have passed); January is history.
BOOKS = BASE.replace(month=BASE.month - 1, day=1, hour=9)  # the 1st of BASE's previous month
#: The plan's start: its cycles turn on the 11th at 08:00, so the cycle before BASE's is over
#: (with its allowance unused) and lies partly in February.
SUBSCRIBED = BASE - timedelta(days=33)
#: The first version of the example's own catalog price, in force before any usage.
FIRST_PRICE = BASE.replace(year=BASE.year - 1, month=12, day=1, hour=0)  # 3 months before
#: Where a backfill lands: just past the late-arrival window (a past day and week, the current
#: cycle and month), a past allowance cycle in the current month, February (closable) and
#: January (before the books start: never closed). "edge" is relative to now.
BACKFILL_AT = {
    "cycle": BASE - timedelta(days=6),
    "february": BOOKS.replace(day=20, hour=12),  # the books' first month
    "january": BOOKS.replace(month=BOOKS.month - 1, day=20, hour=12),  # before the books
}
#: Reprice ranges, by name ("recent" and "open" end an hour after now).
REPRICE_SPANS = ("recent", "month", "all", "february")
EXAMPLES = int(os.environ.get("COSTGRAPH_STATEFUL_EXAMPLES", "20"))
STEPS = int(os.environ.get("COSTGRAPH_STATEFUL_STEPS", "25"))

OK = "ok"
#: (rule, outcome) counts of the run, printed with ``-s``: the rules must reach every outcome.
OUTCOMES: Counter[tuple[str, str]] = Counter()


def work_name() -> str:
    """The rule running now (the caller of ``write`` two frames up)."""
    return sys._getframe(2).f_code.co_name


T = TypeVar("T")

costs = st.decimals(min_value=0, max_value=4, places=3)
payments = st.decimals(min_value=Decimal("0.01"), max_value=40, places=2)
tokens = st.integers(min_value=0, max_value=600)
#: Catalog input prices per million tokens: 600 tokens cost from 0.60 to 9.00.
per_million = st.sampled_from([Decimal(1000), Decimal(4000), Decimal(9000), Decimal(15000)])


@dataclass(frozen=True)
class ModelPlan:
    """A plan of the example (``setPlan``), as the model prices it."""

    monthly: Decimal
    annual: Decimal | None
    #: Tokens per cycle (pooled: per seat).
    included: int
    pooled: bool = False
    seat_fee: Decimal | None = None
    seats: int | None = None

    def spec(self, code: str) -> PlanSpec:
        return PlanSpec(
            code,
            code.title(),
            self.monthly,
            "USD",
            self.included,
            self.annual,
            seats=self.seats,
            pooled=self.pooled,
            seat_fee=self.seat_fee,
        )


#: The plans every example has (besides ``sm``, the allowance it may start with): unpooled
#: with and without tokens, and two team plans (one without an annual price).
PLANS = {
    "alt": ModelPlan(Decimal("25.00"), Decimal("240.00"), 900),
    "lite": ModelPlan(Decimal("12.50"), Decimal("125.00"), 0),
    "team": ModelPlan(Decimal("30.00"), Decimal("300.00"), 300, True, Decimal("7.00"), 4),
    "crew": ModelPlan(Decimal("20.00"), None, 200, True, Decimal("5.00"), 6),
}
#: Where a new subscription starts, from now ("soon": after the next ``time_passes``).
STARTS = {
    "now": timedelta(0),
    "hour": -timedelta(hours=1),
    "days": -timedelta(days=3),
    "weeks": -timedelta(days=40),
    "soon": timedelta(minutes=5),
}
FEE_TYPES = ("SUBSCRIPTION_FEE", "SUBSCRIPTION_CREDIT", "REVENUE_RECOGNIZED", "REVENUE_REVERSED")


def plus_months(anchor: datetime, months: int) -> datetime:
    """``anchor`` plus calendar months, the day clamped to the month's last."""
    index = anchor.month - 1 + months
    year, month = anchor.year + index // 12, index % 12 + 1
    return anchor.replace(
        year=year, month=month, day=min(anchor.day, calendar.monthrange(year, month)[1])
    )


def cents(value: Fraction) -> Decimal:
    """Rounded to the cent, half-to-even (the one rounding of billed money)."""
    return (Decimal(round(value * 100)) / 100).quantize(Decimal("0.01"))


def micros(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def piece_weights(pieces: list[tuple[datetime, datetime]], since: datetime) -> list[Fraction]:
    """The part of each monthly piece served from ``since``."""
    return [
        Fraction(1)
        if since <= start
        else Fraction(0)
        if since >= end
        else Fraction(micros(end - since), micros(end - start))
        for start, end in pieces
    ]


def shares(amount: Decimal, weights: list[Fraction]) -> list[Decimal]:
    """``amount`` over the pieces by weight, each share rounded, the last taking the rest."""
    total = sum(weights, Fraction(0))
    found = [Decimal(0)] * len(weights)
    if not total:
        return found
    last = max(i for i, w in enumerate(weights) if w)
    for i, weight in enumerate(weights):
        if weight:
            found[i] = (
                amount - sum(found) if i == last else cents(Fraction(amount) * weight / total)
            )
    return found


def month_of(at: datetime) -> datetime:
    return datetime(at.year, at.month, 1, tzinfo=UTC)


def next_month(month: datetime) -> datetime:
    return datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=UTC)


def altered(event: UsageEvent) -> UsageEvent:
    """The same key with another body."""
    if event.provider_cost is None:
        return replace(event, input_tokens=event.input_tokens + 1)
    return replace(event, provider_cost=event.provider_cost + 1)


def outcome_of(exc: BaseException | None) -> str:
    """The error class a client would see, by its stable name (RefundExceeds… is a validation)."""
    if exc is None:
        return OK
    for kind in (
        AllowanceExhausted,
        BudgetLimitReached,
        StripeConflict,  # before the IdempotencyConflict it is
        IdempotencyConflict,
        InsufficientBalance,
        NotFound,
        OverageLimit,
        PeriodClosed,
        PlanLimit,
        ValidationFailed,
    ):
        if isinstance(exc, kind):
            return kind.__name__
    raise exc  # anything else is a bug in the code under test (or in this test)


def only_sweeps(before: tuple[Any, ...], after: tuple[Any, ...]) -> None:
    """Nothing changed but overdue holds expiring (HELD -> EXPIRED, reserved going down)."""
    # ledger, keys, balances, allowances, alerts, subscriptions, pools, top-ups, weights
    for index in (0, 1, 2, 3, 6, 7, 8, 9, 10):
        assert after[index] == before[index], "a refused write left rows behind"
    counters_before = {row[:2]: row[2:] for row in before[4]}
    counters_after = {row[:2]: row[2:] for row in after[4]}
    assert counters_before.keys() == counters_after.keys(), "a refused write added counters"
    for key, (spent, reserved) in counters_before.items():
        assert counters_after[key][0] == spent, "a refused write moved spent"
        assert Decimal(counters_after[key][1]) <= Decimal(reserved)
    states_before = {row[0]: row[1:] for row in before[5]}
    states_after = {row[0]: row[1:] for row in after[5]}
    assert states_before.keys() == states_after.keys(), "a refused write added a reservation"
    for key, (state, settled) in states_before.items():
        if states_after[key] != (state, settled):
            assert (state, states_after[key][0]) == ("HELD", "EXPIRED"), (key, states_after[key])


# --- the model ---


@dataclass
class ModelEntry:
    id: uuid.UUID
    type: str
    account: str
    amount: Decimal
    balance_delta: Decimal
    #: What the same key must carry to replay (the command object as first sent).
    command: Any = None
    refunded: Decimal = Decimal(0)
    #: Its occurredAt (None: dated now, in BASE's month).
    at: datetime | None = None
    ai_cost: Decimal = Decimal(0)
    user: bool = False
    #: Counted by budgets: a usage charge, or a reprice's correction of one.
    usage: bool = False
    #: Written by a settlement (charged past a hard cap by design).
    settled: bool = False
    #: Recorded by backfillUsage (replayed through it: a plain write refuses its date).
    backfilled: bool = False
    #: Catalog-priced usage, with (ai_cost, billed, charged to the balance) as corrected so
    #: far: what a reprice fixes.
    standing: tuple[Decimal, Decimal, Decimal] | None = None
    #: The tokens the plan's allowance covered at ingestion (a reprice keeps that cover).
    covered: int = 0
    #: Its budgeted tokens (its tokens weighed with the allowance catalog when written).
    budgeted: int = 0
    #: The usage entry a reprice correction corrects.
    corrects: uuid.UUID | None = None


@dataclass
class ModelSub:
    """An account's subscription, and what it billed (per cycle start: its fees and
    credits, ``(amount, sign, service start)``)."""

    id: uuid.UUID
    account: str
    plan: str
    billing: str
    starts_at: datetime
    ends_at: datetime | None
    fee: Decimal
    included: int
    seats: int
    #: The team subscription whose pool it draws on (None: unpooled).
    pool: uuid.UUID | None
    cancelled: bool = False
    charges: dict[datetime, list[tuple[Decimal, int, datetime]]] = field(default_factory=dict)
    #: When its catch-up last ran (the months begun by then are recognised).
    settled_at: datetime | None = None

    @property
    def months(self) -> int:
        return 12 if self.billing == "ANNUAL" else 1

    def in_force(self, at: datetime) -> bool:
        return self.starts_at <= at and (self.ends_at is None or at < self.ends_at)

    def cycle(self, at: datetime) -> tuple[datetime, datetime, int]:
        """The billing cycle holding ``at``: (start, end, its first month's index)."""
        first = 0
        while plus_months(self.starts_at, first + self.months) <= at:
            first += self.months
        return (
            plus_months(self.starts_at, first),
            plus_months(self.starts_at, first + self.months),
            first,
        )

    def pieces(self, cycle_start: datetime) -> list[tuple[datetime, datetime]]:
        first = self.cycle(cycle_start)[2]
        return [
            (plus_months(self.starts_at, m), plus_months(self.starts_at, m + 1))
            for m in range(first, first + self.months)
        ]

    def deferred(self) -> Decimal:
        """Billed (fees less credits) and not yet recognised: the months begun when its
        catch-up last ran have earned their share of every fee and credit."""
        left = Decimal(0)
        for cycle_start, charges in self.charges.items():
            for amount, sign, since in charges:
                left += sign * amount
                pieces = self.pieces(cycle_start)
                for (start, _), share in zip(
                    pieces, shares(amount, piece_weights(pieces, since)), strict=True
                ):
                    if self.settled_at is not None and start <= self.settled_at:
                        left -= sign * share
        return left


@dataclass
class ModelTopUp:
    enabled: bool
    threshold: Decimal
    amount: Decimal
    #: A request is outstanding (disarmed until the balance is back at the threshold).
    requested: bool = False
    requests: int = 0


@dataclass
class ModelCounter:
    """One budget period's counter (``spent`` is the model's usage in it, summed on demand)."""

    window: tuple[datetime, datetime]
    reserved: Decimal = Decimal(0)
    #: Enforced spend + live holds the period had when it opened or its cap last changed: a
    #: hard cap holds the period within max(limit, high) (lowering a limit refuses what
    #: comes next; it takes nothing back).
    high: Decimal = Decimal(0)


@dataclass
class ModelBudget:
    id: uuid.UUID
    scope: tuple[str, str]  # (kind, model name of the scoped object)
    limit: Decimal
    hard: bool
    basis: str
    window: tuple[datetime, datetime]  # the current period
    period: Period = Period.MONTH
    terms_version: int = 1
    #: Its counters by period start: the current one, and the past ones writes reached.
    counters: dict[datetime, ModelCounter] = field(default_factory=dict)

    @property
    def reserved(self) -> Decimal:
        """The current period's holds (past periods hold nothing)."""
        return self.counters[self.window[0]].reserved

    @reserved.setter
    def reserved(self, value: Decimal) -> None:
        self.counters[self.window[0]].reserved = value


@dataclass
class ModelReservation:
    id: uuid.UUID
    key: str
    account: str
    user: bool
    request: reservations.EstimateRequest
    expires_at: datetime
    holds: dict[uuid.UUID, Decimal]
    state: str = "HELD"
    settled_key: str | None = None
    settle_event: UsageEvent | None = None


@dataclass(frozen=True)
class UsageSpec:
    account: str  # "P" (prepaid) or "Q" (postpaid)
    cost: Decimal
    tokens: int
    user: bool
    #: Priced by the catalog (the example's own model, by its tokens), not by the caller.
    catalog: bool = False


@dataclass
class Effects:
    """What an accepted usage write changes, computed by the model before the call."""

    entries: list[tuple[UsageEvent, Decimal, Decimal, Decimal]] = field(default_factory=list)
    balance: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    #: By allowance counter ((pooled, account name or pool id, cycle start)): tokens drawn.
    allowance: dict[tuple[bool, Any, datetime], int] = field(
        default_factory=lambda: defaultdict(int)
    )
    #: Counters the write opens, with the allowance they open with.
    opened: dict[tuple[bool, Any, datetime], int] = field(default_factory=dict)
    #: By idempotency key: the tokens the allowance covers of each new entry.
    covered: dict[str, int] = field(default_factory=dict)
    budgeted: dict[str, int] = field(default_factory=dict)
    #: By (budget, period start): every counter the write reaches, even for 0.00.
    spent: dict[tuple[uuid.UUID, datetime], Decimal] = field(
        default_factory=lambda: defaultdict(Decimal)
    )
    windows: dict[tuple[uuid.UUID, datetime], tuple[datetime, datetime]] = field(
        default_factory=dict
    )


usage_specs = st.builds(
    UsageSpec,
    account=st.sampled_from(["P", "Q"]),
    cost=costs,
    tokens=tokens,
    user=st.booleans(),
    catalog=st.booleans(),
)
budget_spec = st.tuples(
    st.sampled_from(["ORG", "CUSTOMER_P", "CUSTOMER_Q", "P", "Q", "DEPARTMENT", "USER"]),
    st.sampled_from([Period.DAY, Period.WEEK, Period.MONTH]),
    st.sampled_from([Basis.AI_COST, Basis.BILLED_USAGE]),
    st.decimals(min_value=1, max_value=15, places=2),
    st.booleans(),
)
budget_specs = st.lists(budget_spec, max_size=3, unique_by=lambda b: (b[0], b[1], b[2]))


class MachineClock:
    """The business clock of a running machine: its model's ``now``."""

    def __init__(self, machine: LedgerMachine) -> None:
        self.machine = machine

    def now(self) -> datetime:
        return self.machine.now


class LedgerMachine(RuleBasedStateMachine):
    """One organisation per example; the rules are the write operations of the API."""

    database_url: ClassVar[str]
    app_settings: ClassVar[Settings]

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.engine: AsyncEngine = create_engine(self.database_url, self.app_settings)
        self.sessions: async_sessionmaker[AsyncSession] = create_sessionmaker(self.engine)
        self.units = build_units(self.sessions)  # as the app's: alerts evaluated before commit
        self.limits: Limits = AppState.limits_of(self.app_settings)
        # The shipped late-arrival window (the suite's app takes events of any age, see
        # tests/conftest.py): older usage needs backfillUsage, and a close waits for it.
        self.limits.late_arrival_window_seconds = Limits().late_arrival_window_seconds
        self.now = BASE
        # The business clock is the model's: what the domain reads as now (the period a budget
        # starts in, the late-arrival window) is the machine's ``now`` (the next test starts
        # on a fresh clock, tests/conftest.py).
        clock.install(MachineClock(self))
        self.serial = 0
        self.org: OrgContext | None = None
        self.ids: dict[str, uuid.UUID] = {}
        self.postpaid = {"P": False, "Q": True}
        self.plans: dict[str, ModelPlan] = dict(PLANS)
        self.subs: list[ModelSub] = []
        #: Allowance counters, (pooled, account name or pool id, cycle start) -> [included, used].
        self.counters: dict[tuple[bool, Any, datetime], list[int]] = {}
        self.top_ups: dict[str, ModelTopUp] = {}
        #: The allowance catalog's MODEL weights, by (provider, model or "*").
        self.weights: dict[tuple[str, str], Decimal] = {}
        self.markup = Decimal(0)
        self.balance: dict[str, Decimal] = {"P": Decimal(0), "Q": Decimal(0)}
        self.entries: dict[str, ModelEntry] = {}
        self.budgets: list[ModelBudget] = []
        self.reservations: list[ModelReservation] = []
        self.stripe: dict[str, StripePayment] = {}
        self.stripe_refunded: dict[str, Decimal] = defaultdict(Decimal)
        #: The example's own catalog model: its price versions (from, per million input).
        self.provider = f"sm{uuid.uuid4().hex[:12]}"
        self.versions: list[tuple[datetime, Decimal]] = []
        #: Closed months.
        self.closed: set[datetime] = set()

    def teardown(self) -> None:
        try:
            self.loop.run_until_complete(self.engine.dispose())
        finally:
            self.loop.close()

    # --- plumbing ---

    def run(self, coroutine: Awaitable[T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def key(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}-{self.serial}"

    def tick(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now

    async def _transaction(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """As every mutation: one unit of work (a tenant-bound transaction, alerts evaluated
        before commit, rolled back on any error)."""
        assert self.org is not None
        return await self.units.run(self.org, lambda uow: work(uow.session))

    def write(
        self, work: Callable[[AsyncSession], Awaitable[T]], expected: str, *, sweeps: bool = False
    ) -> T | None:
        """Run one write; check the model's prediction; a refusal must leave no trace.

        ``sweeps``: the operation may expire overdue holds as housekeeping, even when it
        refuses (those are then read back by :meth:`sync_expired`); nothing else may change.
        """
        # Only a refusal is compared with the rows before it (an unexpected refusal fails anyway).
        before = self.run(self.snapshot()) if expected != OK else None
        result: T | None = None
        error: BaseException | None = None
        try:
            result = self.run(self._transaction(work))
        except DomainError as exc:
            error = exc
        got = outcome_of(error)
        OUTCOMES[(work_name(), got)] += 1
        assert got == expected, f"expected {expected}, got {got}: {error!r}"
        if before is not None:
            after = self.run(self.snapshot())
            if sweeps:
                only_sweeps(before, after)
            else:
                assert after == before, "a refused write left rows behind"
        return result

    def sync_expired(self) -> None:
        """Holds the service expired (an overdue reservation, swept) stop counting."""
        states = dict(
            self.run(self.rows("SELECT id, state FROM reservations WHERE organization_id = :org"))
        )
        for reservation in self.reservations:
            if reservation.state == "HELD" and states[reservation.id] == "EXPIRED":
                assert reservation.expires_at <= self.now, "a hold expired before its time"
                reservation.state = "EXPIRED"
                for budget in self.budgets:
                    budget.reserved -= reservation.holds.get(budget.id, Decimal(0))

    # --- what the database holds ---

    async def rows(self, sql: str) -> list[Any]:
        assert self.org is not None
        async with self.engine.connect() as connection:
            result = await connection.execute(text(sql), {"org": self.org.id})
            return list(result.all())

    async def snapshot(self) -> tuple[Any, ...]:
        """Every row a write could leave behind, in a comparable form."""
        tables = (
            "SELECT id, idempotency_key, amount, balance_delta FROM ledger_entries",
            "SELECT idempotency_key, entry_id FROM ledger_keys",
            "SELECT account_id, balance FROM account_balances",
            "SELECT account_id, cycle_start, used_tokens FROM allowance_counters",
            "SELECT budget_id, period_start, spent, reserved FROM budget_counters",
            "SELECT id, state, settled_entry_id FROM reservations",
            "SELECT id FROM alerts",
            "SELECT id, plan_code, fee, included_tokens, seats, ends_at, cancelled_at "
            "FROM account_subscriptions",
            "SELECT pool_id, cycle_start, used_tokens FROM pool_allowance_counters",
            "SELECT account_id, enabled, threshold, amount, requests, requested_at "
            "FROM auto_top_ups",
            "SELECT dimension, provider, name, weight FROM allowance_weights",
        )
        found = []
        for sql in tables:
            rows = await self.rows(f"{sql} WHERE organization_id = :org")
            found.append(tuple(sorted(tuple(str(v) for v in row) for row in rows)))
        return tuple(found)

    # --- set-up: a fresh organisation per example ---

    @initialize(
        included=st.sampled_from([0, 0, 400, 1500]),
        allowance_on=st.sampled_from(["P", "Q"]),
        markup_percent=st.sampled_from([Decimal(0), Decimal(25)]),
        wanted=budget_specs,
        opening=st.sampled_from([Decimal(0), Decimal("6.00"), Decimal("30.00")]),
        price=per_million,
    )
    def organisation(
        self,
        included: int,
        allowance_on: str,
        markup_percent: Decimal,
        wanted: list[tuple[str, Period, Basis, Decimal, bool]],
        opening: Decimal,
        price: Decimal,
    ) -> None:
        self.run(self._create(included, allowance_on, markup_percent, wanted, price))
        self.absorb(self.catch_up(allowance_on))
        if opening:  # the prepaid account's first top-up, so that usage has money to draw on
            self._payment("DEPOSIT", "P", opening)

    async def _create(
        self,
        included: int,
        allowance_on: str,
        markup_percent: Decimal,
        wanted: list[tuple[str, Period, Basis, Decimal, bool]],
        price: Decimal,
    ) -> None:
        slug = f"sm-{uuid.uuid4().hex[:16]}"
        async with self.sessions() as session, session.begin():
            self.now = BOOKS  # its books start then (the only step off BASE)
            org = OrgContext.of(
                await directory.create_organization(session, f"Stateful {slug}", slug, "USD")
            )
            self.now = BASE
            bind_tenant(session.sync_session, org.id)
            first = await directory.create_customer(session, org, "Prepaid customer", None)
            second = await directory.create_customer(session, org, "Postpaid customer", None)
            prepaid = await directory.create_account(session, org, first.id, "P", False)
            postpaid = await directory.create_account(session, org, second.id, "Q", True)
            department = await directory.create_department(session, org, "Research")
            user = await directory.create_user(
                session, org, f"u@{slug}.example", "U", department.id
            )
            self.ids = {
                "ORG": org.id,
                "CUSTOMER_P": first.id,
                "CUSTOMER_Q": second.id,
                "P": prepaid.id,
                "Q": postpaid.id,
                "DEPARTMENT": department.id,
                "USER": user.id,
            }
            if markup_percent:
                await markup.set_markup(session, org, markup_percent)
            await set_model_price(
                session,
                org.id,
                NewPriceVersion(self.provider, "m1", "USD", FIRST_PRICE, input_per_million=price),
            )
            self.versions.append((FIRST_PRICE, price))
            for code, plan in PLANS.items():
                await plans.set_plan(session, org, plan.spec(code))
            if included:
                self.plans["sm"] = ModelPlan(Decimal("10.00"), None, included)
                await plans.set_plan(session, org, self.plans["sm"].spec("sm"))
                # As subscribeAccount: its cycles so far billed in the same transaction.
                row = await subscription_billing.billed(
                    session,
                    org,
                    plans.subscribe_account(
                        session, org, self.ids[allowance_on], "sm", BillingCycle.MONTHLY, SUBSCRIBED
                    ),
                )
                self.subs.append(
                    ModelSub(
                        row.id,
                        allowance_on,
                        "sm",
                        "MONTHLY",
                        SUBSCRIBED,
                        None,
                        Decimal("10.00"),
                        included,
                        1,
                        None,
                    )
                )
            self.org = org
            self.markup = markup_percent
            for name, period, basis, limit, hard in wanted:
                row = await self._set_budget(session, name, period, basis, limit, hard)
                self.budget_set(row.id, name, period, basis, limit, hard)

    async def _set_budget(
        self,
        session: AsyncSession,
        name: str,
        period: Period,
        basis: Basis,
        limit: Decimal,
        hard: bool,
    ) -> Any:
        """Set a budget (or new terms for it) as setBudget does."""
        assert self.org is not None
        kinds = {
            "ORG": ScopeKind.ORGANIZATION,
            "CUSTOMER_P": ScopeKind.CUSTOMER,
            "CUSTOMER_Q": ScopeKind.CUSTOMER,
            "P": ScopeKind.ACCOUNT,
            "Q": ScopeKind.ACCOUNT,
            "DEPARTMENT": ScopeKind.DEPARTMENT,
            "USER": ScopeKind.USER,
        }
        scope = Scope(kinds[name], self.ids[name])
        row = await budgets.set_budget(
            session, self.org, BudgetSpec(scope, period, limit, "USD", hard, basis)
        )
        assert budgets.period_of(row, self.now, self.limits.zone) == window(
            period, self.now, self.limits.zone
        )
        return row

    def budget_set(
        self,
        budget_id: uuid.UUID,
        name: str,
        period: Period,
        basis: Basis,
        limit: Decimal,
        hard: bool,
    ) -> ModelBudget:
        """The model's budget after setBudget: created with its current period's counter (the
        period's spend so far), or given new terms (a new terms_version when they differ).
        Either way every counter of it records the level it stands at: the cap holds it there
        or below its new limit."""
        found = [
            b for b in self.budgets if (b.scope[0], b.period, b.basis) == (name, period, basis)
        ]
        if found:
            (budget,) = found
            assert budget.id == budget_id
            if (budget.limit, budget.hard) != (limit, hard):
                budget.terms_version += 1
            budget.limit, budget.hard = limit, hard
        else:
            span = window(period, self.now, self.limits.zone)
            budget = ModelBudget(budget_id, (name, name), limit, hard, basis.value, span, period)
            budget.counters[span[0]] = ModelCounter(span)
            self.budgets.append(budget)
            self.budgets.sort(key=lambda b: b.id)
        for start, counter in budget.counters.items():
            live = counter.reserved - (self.overdue(budget) if start == budget.window[0] else 0)
            counter.high = max(counter.high, self.enforced(budget, counter.window) + live)
        return budget

    # --- the model's view of scopes and prices ---

    def scopes_of(self, account: str, user: bool) -> set[str]:
        found = {"ORG", account, "CUSTOMER_P" if account == "P" else "CUSTOMER_Q"}
        if user:
            found |= {"USER", "DEPARTMENT"}
        return found

    def prices(self, cost: Decimal) -> tuple[Decimal, Decimal]:
        ai_cost = quantize_stored(cost)
        return ai_cost, with_markup(ai_cost, self.markup)

    def price_at(self, at: datetime) -> Decimal:
        """The catalog's price per million input tokens of the example's model at ``at``."""
        return [price for start, price in self.versions if start <= at][-1]

    def event_prices(self, event: UsageEvent) -> tuple[Decimal, Decimal]:
        """(ai_cost, billed) of an event: the caller's cost, or its tokens at the price in
        force when it occurred."""
        if event.provider_cost is not None:
            return self.prices(event.provider_cost)
        return self.prices(event.input_tokens * self.price_at(event.occurred_at) / 1_000_000)

    def usage_event(self, spec: UsageSpec, key: str, at: datetime | None = None) -> UsageEvent:
        return UsageEvent(
            idempotency_key=key,
            account_id=self.ids[spec.account],
            occurred_at=self.tick() if at is None else at,
            provider=self.provider if spec.catalog else "openai",
            model="m1" if spec.catalog else "gpt-4o",
            input_tokens=spec.tokens,
            user_id=self.ids["USER"] if spec.user else None,
            provider_cost=None if spec.catalog else spec.cost,
            provider_currency=None if spec.catalog else "USD",
        )

    def account_of(self, event: UsageEvent) -> str:
        return "P" if event.account_id == self.ids["P"] else "Q"

    # --- the model's plans, subscriptions and allowances ---

    def budgeted(self, event: UsageEvent) -> int:
        """The event's budgeted tokens: its tokens x its model's weight (default 1)."""
        weight = self.weights.get(
            (event.provider, event.model), self.weights.get((event.provider, "*"), Decimal(1))
        )
        return math.ceil(weight * event.input_tokens)

    def in_force(self, account: str, at: datetime) -> ModelSub | None:
        """The account's subscription in force at ``at`` (the one that started last)."""
        found = [s for s in self.subs if s.account == account and s.in_force(at)]
        return max(found, key=lambda s: s.starts_at, default=None)

    def sub_of(self, ident: uuid.UUID) -> ModelSub:
        (found,) = [s for s in self.subs if s.id == ident]
        return found

    def holder(self, sub: ModelSub) -> tuple[bool, Any, datetime]:
        """Whose allowance the subscription draws on: (pooled, holder, cycle anchor)."""
        if sub.pool is None:
            return False, sub.account, sub.starts_at
        return True, sub.pool, self.sub_of(sub.pool).starts_at

    def term_at(self, account: str, at: datetime) -> tuple[tuple[bool, Any, datetime], int] | None:
        """The allowance counter usage of ``account`` dated ``at`` draws on, and what it
        opens with: the subscription's tokens, or its pool's (tokens per seat x the seats of
        the pool's subscriptions in force now) while the team subscription is in force;
        None: no allowance, or a cycle that is over. With nothing included now it draws only
        on a cycle opened before (by usage under a plan with tokens: it keeps them)."""
        sub = self.in_force(account, at)
        if sub is None:
            return None
        pooled, holder, anchor = self.holder(sub)
        included = sub.included
        if pooled:
            team = self.sub_of(sub.pool)  # type: ignore[arg-type]
            if not team.in_force(at):
                return None
            seats = sum(s.seats for s in self.subs if s.pool == team.id and s.in_force(self.now))
            included = team.included * seats
        start, end = cycle_window(anchor, at)
        if end <= self.now:
            return None
        return (pooled, holder, start), included

    def effective(self, sub: ModelSub) -> datetime:
        """When a change of plan or seats made now takes effect: at once, unless usage has
        opened the running allowance cycle (then from its end)."""
        pooled, holder, anchor = self.holder(sub)
        if self.now < anchor:
            return self.now
        start, end = cycle_window(anchor, self.now)
        return end if (pooled, holder, start) in self.counters else self.now

    def seat_part(self, sub: ModelSub, plan: ModelPlan, seats: int) -> Decimal:
        if not plan.pooled or plan.seat_fee is None:
            return Decimal(0)
        return plan.seat_fee * seats * sub.months

    def cycle_fee(self, sub: ModelSub) -> Decimal:
        return sub.fee + self.seat_part(sub, self.plans[sub.plan], sub.seats)

    def catch_up(self, account: str) -> list[tuple[str, str, Decimal]]:
        """The catch-up of the account's subscriptions (subscribing, the biller's run)."""
        return [e for sub in self.subs if sub.account == account for e in self.settle_sub(sub)]

    def settle_sub(self, sub: ModelSub) -> list[tuple[str, str, Decimal]]:
        """Every cycle begun by now (and before its end) billed once, at the cycle's fee;
        the months begun recognised. Returns the fees it writes: (type, key, amount)."""
        written = []
        first = 0
        while True:
            start = plus_months(sub.starts_at, first)
            if start > self.now or (sub.ends_at is not None and start >= sub.ends_at):
                break
            if start not in sub.charges:
                fee = self.cycle_fee(sub)
                sub.charges[start] = [(fee, 1, start)] if fee else []
                if fee:
                    key = f"subscription:{sub.id}:{start.isoformat()}:fee"
                    written.append(("SUBSCRIPTION_FEE", key, fee))
            first += sub.months
        sub.settled_at = self.now
        return written

    def prorated(
        self, sub: ModelSub, credit: Decimal, charge: Decimal, what: str
    ) -> list[tuple[str, str, Decimal]]:
        """A change's credit of the old terms and charge of the new, for the part of the
        billing cycle from when it takes effect (nothing if that is the cycle's end)."""
        start = sub.cycle(self.now)[0]
        since = max(self.now, self.effective(sub))
        pieces = sub.pieces(start)
        left = sum(piece_weights(pieces, since), Fraction(0)) / sub.months
        written = []
        for kind, label, whole, sign in (
            ("SUBSCRIPTION_CREDIT", "credit", credit, -1),
            ("SUBSCRIPTION_FEE", "charge", charge, 1),
        ):
            amount = cents(Fraction(whole) * left)
            if amount:
                stamp = f"{what}:{self.now.isoformat()}:{label}"
                key = f"subscription:{sub.id}:{start.isoformat()}:{stamp}"
                written.append((kind, key, amount))
                # Revenue the change earns (or gives back) from when it takes effect.
                sub.charges.setdefault(start, []).append((amount, sign, since))
        return written

    def absorb(self, expected: Sequence[tuple[str, str, Decimal]]) -> list[Any]:
        """The subscription entries an accepted operation wrote: its fees and credits exactly
        the ``expected`` ones, none moving a balance; revenue recognitions as written (the
        invariant holds them to deferred revenue). They join the model's ledger."""
        types = ", ".join(f"'{t}'" for t in FEE_TYPES)
        rows = self.run(
            self.rows(
                "SELECT idempotency_key, id, type, account_id, amount, balance_delta "
                f"FROM ledger_entries WHERE organization_id = :org AND type IN ({types})"
            )
        )
        new = [row for row in rows if row[0] not in self.entries]
        billed = sorted((row[2], row[0], row[4]) for row in new if row[2] in FEE_TYPES[:2])
        assert billed == sorted(expected), (billed, expected)
        names = {self.ids["P"]: "P", self.ids["Q"]: "Q"}
        for key, ident, kind, account_id, amount, delta in new:
            assert delta == 0, key
            self.entries[key] = ModelEntry(ident, kind, names[account_id], amount, delta)
        return new

    def sync_top_ups(self) -> None:
        """Auto-top-up after a step: every write that moved a balance (or made the setting)
        evaluates it, so it is in step with the balance: below the threshold and armed, a
        request (once per crossing); back at or above it, re-armed."""
        for account, setting in self.top_ups.items():
            if not setting.enabled:
                continue
            below = self.balance[account] < setting.threshold
            if below and not setting.requested:
                setting.requested = True
                setting.requests += 1
            elif not below and setting.requested:
                setting.requested = False

    def budget_of(self, budget_id: uuid.UUID) -> ModelBudget:
        (budget,) = [b for b in self.budgets if b.id == budget_id]
        return budget

    def counted(self, budget: ModelBudget, span: tuple[datetime, datetime]) -> list[ModelEntry]:
        """The model's usage (and corrections of it) in the budget's scope and period."""
        return [
            e
            for e in self.entries.values()
            if e.usage
            and budget.scope[0] in self.scopes_of(e.account, e.user)
            and span[0] <= (e.at or self.now) < span[1]
        ]

    def basis(self, budget: ModelBudget, entry: ModelEntry) -> Decimal:
        return entry.amount if budget.basis == Basis.BILLED_USAGE else entry.ai_cost

    def spent(self, budget: ModelBudget, span: tuple[datetime, datetime] | None = None) -> Decimal:
        """What the period's counter must hold (the current period by default)."""
        entries = self.counted(budget, span or budget.window)
        return sum((self.basis(budget, e) for e in entries), Decimal(0))

    def enforced(self, budget: ModelBudget, span: tuple[datetime, datetime]) -> Decimal:
        """The period's spend less what no cap refuses: settlements and corrections upward."""
        return sum(
            (
                min(Decimal(0), self.basis(budget, e)) if e.corrects else self.basis(budget, e)
                for e in self.counted(budget, span)
                if not e.settled
            ),
            Decimal(0),
        )

    def reserved_in(self, budget: ModelBudget, start: datetime) -> Decimal:
        counter = budget.counters.get(start)
        return Decimal(0) if counter is None else counter.reserved

    def plan_usage(self, events: Sequence[UsageEvent], *, enforce: bool) -> tuple[str, Effects]:
        """Predict a usage write (one event or a batch, plain or backfilled): its outcome and,
        if accepted, its effects. Order of refusals as in the code: conflicts, closed months,
        then balances, then budgets (each in the period the event lands in)."""
        effects = Effects()
        seen: dict[str, UsageEvent] = {}
        fresh: list[UsageEvent] = []
        for event in events:
            first = seen.setdefault(event.idempotency_key, event)
            recorded = self.entries.get(event.idempotency_key)
            if first != event or (recorded is not None and recorded.command != event):
                return IdempotencyConflict.__name__, effects
            if recorded is None and event.idempotency_key not in {e.idempotency_key for e in fresh}:
                fresh.append(event)
        left: dict[tuple[bool, Any, datetime], int] = {}
        for event in fresh:
            account = self.account_of(event)
            ai_cost, billed = self.event_prices(event)
            count = self.budgeted(event)
            # Only the cycle running now is drawn on: usage dated in a cycle that is over (or
            # before the plan) is charged in full. A cycle keeps the allowance it opened with.
            term = self.term_at(account, event.occurred_at)
            covered = 0
            if term is not None and (term[1] > 0 or term[0] in self.counters):
                key, included = term
                if key not in left:
                    counter = self.counters.get(key)
                    left[key] = included if counter is None else counter[0] - counter[1]
                    if counter is None:
                        effects.opened[key] = included
                # A call that costs nothing draws nothing (nothing to cover); it still
                # opens the cycle, like any usage placed in it.
                covered = 0 if billed == 0 else min(count, max(0, left[key]))
                left[key] -= covered
                effects.allowance[key] += covered
            charge = billed if count == 0 else quantize_stored(billed * (count - covered) / count)
            effects.entries.append((event, ai_cost, billed, -charge))
            effects.covered[event.idempotency_key] = covered
            effects.budgeted[event.idempotency_key] = count
            effects.balance[account] -= charge
            for budget in self.budgets:
                if budget.scope[0] in self.scopes_of(account, event.user_id is not None):
                    span = window(budget.period, event.occurred_at, self.limits.zone)
                    amount = billed if budget.basis == Basis.BILLED_USAGE else ai_cost
                    effects.spent[(budget.id, span[0])] += amount
                    effects.windows[(budget.id, span[0])] = span
        if any(self.is_closed(event.occurred_at) for event in fresh):
            return PeriodClosed.__name__, effects
        if enforce:
            for account, delta in effects.balance.items():
                if not self.postpaid[account] and delta < 0 and self.balance[account] + delta < 0:
                    return AllowanceExhausted.__name__, effects
            for (budget_id, start), amount in sorted(effects.spent.items()):
                budget = self.budget_of(budget_id)
                if not budget.hard:  # past its limit a hard cap refuses 0.00 too
                    continue
                span = effects.windows[(budget_id, start)]
                held = self.spent(budget, span) + self.reserved_in(budget, start)
                if start == budget.window[0]:
                    held -= self.overdue(budget)
                if held + amount > budget.limit:
                    return BudgetLimitReached.__name__, effects
        return OK, effects

    def overdue(self, budget: ModelBudget, but: ModelReservation | None = None) -> Decimal:
        """The budget's holds past their expiry that no authorisation has swept yet: a cap
        checked by a write leaves them out."""
        return sum(
            (
                other.holds.get(budget.id, Decimal(0))
                for other in self.reservations
                if other is not but and other.state == "HELD" and other.expires_at <= self.now
            ),
            Decimal(0),
        )

    def open_counters(
        self,
        windows: dict[tuple[uuid.UUID, datetime], tuple[datetime, datetime]],
    ) -> None:
        """Counters a write reached for the first time open at the ledger's count of their
        period (before the write's own entries are added to the model)."""
        for (budget_id, start), span in windows.items():
            budget = self.budget_of(budget_id)
            if start not in budget.counters:
                budget.counters[start] = ModelCounter(span, high=self.enforced(budget, span))

    def apply(
        self,
        effects: Effects,
        written: Sequence[Any],
        *,
        settled: bool = False,
        backfilled: bool = False,
    ) -> None:
        by_key = {e.idempotency_key: e for e in written if not e.replayed}
        assert set(by_key) == {event.idempotency_key for event, *_ in effects.entries}
        self.open_counters(effects.windows)
        for event, ai_cost, billed, delta in effects.entries:
            stored = by_key[event.idempotency_key]
            assert stored.balance_delta == delta and stored.amount == billed
            assert stored.ai_cost == ai_cost
            self.entries[event.idempotency_key] = ModelEntry(
                stored.id,
                "USAGE_CHARGE",
                self.account_of(event),
                billed,
                delta,
                event,
                at=event.occurred_at,
                ai_cost=ai_cost,
                user=event.user_id is not None,
                usage=True,
                settled=settled,
                backfilled=backfilled,
                standing=None if event.provider_cost is not None else (ai_cost, billed, -delta),
                covered=effects.covered[event.idempotency_key],
                budgeted=effects.budgeted[event.idempotency_key],
            )
        for account, delta in effects.balance.items():
            self.balance[account] += delta
        for key, included in effects.opened.items():
            self.counters[key] = [included, 0]
        for key, covered in effects.allowance.items():
            self.counters[key][1] += covered

    # --- money in and out ---

    def _payment(self, kind: str, account: str, amount: Decimal) -> None:
        payment = Payment(self.key(kind), self.ids[account], amount, "USD", self.tick())
        operation = {
            "DEPOSIT": ledger.deposit,
            "SUBSCRIPTION_PAYMENT": ledger.record_subscription_payment,
            "ADJUSTMENT": ledger.adjust,
        }[kind]
        org = self.org
        assert org is not None
        entry = self.write(lambda s: operation(s, org, payment, self.limits), OK)
        assert entry is not None and not entry.replayed
        delta = Decimal(0) if kind == "SUBSCRIPTION_PAYMENT" else amount
        self.entries[payment.idempotency_key] = ModelEntry(
            entry.id, kind, account, amount, delta, payment
        )
        self.balance[account] += delta

    @rule(
        kind=st.sampled_from(["DEPOSIT", "DEPOSIT", "SUBSCRIPTION_PAYMENT", "ADJUSTMENT"]),
        account=st.sampled_from(["P", "Q"]),
        amount=payments,
        negative=st.booleans(),
    )
    def money(self, kind: str, account: str, amount: Decimal, negative: bool) -> None:
        """A top-up, a plan's fee received, or a signed adjustment (one rule, so that money
        in takes no more of the steps than any other operation)."""
        self._payment(kind, account, -amount if kind == "ADJUSTMENT" and negative else amount)

    def refundable(self) -> list[ModelEntry]:
        return [e for e in self.entries.values() if e.type in ("DEPOSIT", "SUBSCRIPTION_PAYMENT")]

    @precondition(lambda self: self.refundable())
    @rule(pick=st.integers(min_value=0), amount=payments)
    def refund(self, pick: int, amount: Decimal) -> None:
        candidates = self.refundable()
        original = candidates[pick % len(candidates)]
        request = Refund(self.key("refund"), original.id, amount, "changed my mind")
        fits = amount <= original.amount - original.refunded
        if original.type == "DEPOSIT" and not self.postpaid[original.account]:
            fits = fits and amount <= self.balance[original.account]  # spent money is gone
        org = self.org
        assert org is not None
        entry = self.write(
            lambda s: ledger.refund(s, org, request, self.limits),
            OK if fits else ValidationFailed.__name__,
        )
        if entry is None:
            return
        delta = -amount if original.type == "DEPOSIT" else Decimal(0)
        original.refunded += amount
        self.entries[request.idempotency_key] = ModelEntry(
            entry.id, "REFUND", original.account, amount, delta, request
        )
        self.balance[original.account] += delta

    # --- Stripe deliveries (the webhook's domain functions, through the unit of work) ---

    def stripe_payment(self, payment_id: str, account: str, amount: Decimal) -> StripePayment:
        assert self.org is not None
        return StripePayment(
            event_id=f"evt_{self.key('evt')}",
            event_type="payment_intent.succeeded",
            payment_id=payment_id,
            organization_id=self.org.id,
            account_id=self.ids[account],
            amount=amount,
            currency="USD",
            occurred_at=self.tick(),
        )

    def deliver(self, payment: StripePayment) -> Callable[[AsyncSession], Awaitable[Any]]:
        org = self.org
        assert org is not None
        return lambda s: record_stripe_payment(s, org, payment, self.limits)

    def recorded_stripe(self, payment: StripePayment, entry: Any) -> None:
        """The model's DEPOSIT for a payment: its command is the request the webhook sends."""
        key = payment_key(payment.payment_id)
        command = Payment(
            key,
            payment.account_id,
            payment.amount,
            payment.currency,
            payment.occurred_at,
            metadata={"source": "stripe", "stripe_payment_id": payment.payment_id},
        )
        account = "P" if payment.account_id == self.ids["P"] else "Q"
        self.entries[key] = ModelEntry(
            entry.id, "DEPOSIT", account, payment.amount, payment.amount, command
        )
        self.balance[account] += payment.amount
        self.stripe[payment.payment_id] = payment

    @rule(
        account=st.sampled_from(["P", "Q"]),
        amount=payments,
        delivery=st.sampled_from(["once", "repeated", "concurrent", "conflicting", "taken"]),
    )
    def stripe_delivery(self, account: str, amount: Decimal, delivery: str) -> None:
        """A Stripe payment delivered once, again (another event, another time: a replay),
        twice at once (one deposit), with another amount or under a key a manual deposit
        took (a conflict: refused, nothing recorded)."""
        if delivery in ("repeated", "conflicting") and self.stripe:
            first = list(self.stripe.values())[-1]
            again = self.stripe_payment(
                first.payment_id, "P" if first.account_id == self.ids["P"] else "Q", first.amount
            )
            if delivery == "conflicting":
                again = replace(again, amount=first.amount + amount)
            entry = self.write(
                self.deliver(again), OK if delivery == "repeated" else StripeConflict.__name__
            )
            if entry is not None:
                assert entry.replayed
                assert entry.id == self.entries[payment_key(first.payment_id)].id
            return
        payment = self.stripe_payment(f"pi_{self.key('pi')}", account, amount)
        if delivery == "taken":  # a manual deposit of 0.01 took the payment's key first
            org = self.org
            assert org is not None
            manual = Payment(
                payment_key(payment.payment_id),
                self.ids[account],
                Decimal("0.01"),
                "USD",
                self.tick(),
            )
            entry = self.write(lambda s: ledger.deposit(s, org, manual, self.limits), OK)
            assert entry is not None
            self.entries[manual.idempotency_key] = ModelEntry(
                entry.id, "DEPOSIT", account, manual.amount, manual.amount, manual
            )
            self.balance[account] += manual.amount
            self.write(self.deliver(payment), StripeConflict.__name__)
            return
        if delivery != "concurrent":
            entry = self.write(self.deliver(payment), OK)
            assert entry is not None and not entry.replayed
            self.recorded_stripe(payment, entry)
            return
        org = self.org
        assert org is not None
        twin = replace(payment, event_id=f"evt_{self.key('evt')}")

        async def both() -> list[Any]:
            return list(
                await asyncio.gather(
                    *(
                        self.units.run(
                            org,
                            lambda uow, p=p: record_stripe_payment(
                                uow.session, uow.org, p, self.limits
                            ),
                        )
                        for p in (payment, twin)
                    ),
                    return_exceptions=True,
                )
            )

        results = self.run(both())
        outcomes = [outcome_of(r if isinstance(r, BaseException) else None) for r in results]
        for outcome in outcomes:
            OUTCOMES[("stripe_delivery", f"concurrent {outcome}")] += 1
        assert outcomes == [OK, OK], results
        assert sorted(r.replayed for r in results) == [False, True]
        assert results[0].id == results[1].id
        self.recorded_stripe(payment, results[0])

    @precondition(lambda self: self.stripe)
    @rule(pick=st.integers(min_value=0), amount=payments, repeat=st.booleans(), half=st.booleans())
    def stripe_refund(self, pick: int, amount: Decimal, repeat: bool, half: bool) -> None:
        """``charge.refunded`` for a Stripe payment: a REFUND linked to its deposit, as the
        refund rule predicts it; delivered again, it replays and writes nothing."""
        payment = list(self.stripe.values())[pick % len(self.stripe)]
        original = self.entries[payment_key(payment.payment_id)]
        already = self.stripe_refunded[payment.payment_id]
        if half and original.amount > original.refunded:  # a part of what is left
            amount = max(
                Decimal("0.01"),
                ((original.amount - original.refunded) / 2).quantize(Decimal("0.01")),
            )
        item = RefundItem(f"stripe:re_{self.key('re')}", amount, "requested_by_customer")
        refunds = StripeRefunds(
            event_id=f"evt_{self.key('evt')}",
            charge_id=f"ch_{payment.payment_id}",
            payment_id=payment.payment_id,
            organization_id=payment.organization_id,
            account_id=payment.account_id,
            currency="USD",
            refunded=already + amount,
            items=(item,),
        )
        fits = amount <= original.amount - original.refunded
        if not self.postpaid[original.account]:
            fits = fits and amount <= self.balance[original.account]
        org = self.org
        assert org is not None
        written = self.write(
            lambda s: record_stripe_refunds(s, org, refunds, self.limits),
            OK if fits else ValidationFailed.__name__,
        )
        if written is None:
            return
        assert len(written) == 1 and not written[0].replayed
        original.refunded += amount
        self.stripe_refunded[payment.payment_id] += amount
        request = Refund(item.key, original.id, amount, item.reason)
        self.entries[item.key] = ModelEntry(
            written[0].id, "REFUND", original.account, amount, -amount, request
        )
        self.balance[original.account] -= amount
        if repeat:
            before = self.run(self.snapshot())
            again = self.write(
                lambda s: record_stripe_refunds(
                    s, org, replace(refunds, event_id=f"evt_{self.key('evt')}"), self.limits
                ),
                OK,
            )
            assert again is not None and [e.id for e in again] == [written[0].id]
            assert again[0].replayed
            assert self.run(self.snapshot()) == before

    # --- usage ---

    @rule(spec=usage_specs)
    def record_usage(self, spec: UsageSpec) -> None:
        event = self.usage_event(spec, self.key("usage"))
        expected, effects = self.plan_usage([event], enforce=True)
        org = self.org
        assert org is not None
        entry = self.write(lambda s: ledger.record_usage(s, org, event, self.limits), expected)
        if entry is not None:
            self.apply(effects, [entry])

    @rule(
        specs=st.lists(usage_specs, min_size=1, max_size=4),
        repeat=st.sampled_from([None, "same", "changed", "recorded"]),
    )
    def record_usage_batch(self, specs: list[UsageSpec], repeat: str | None) -> None:
        events = [self.usage_event(spec, self.key("batch")) for spec in specs]
        if repeat == "same":  # the same key twice in one batch, same body: one entry
            events.append(events[0])
        elif repeat == "changed":  # same key, another body: IDEMPOTENCY_CONFLICT
            events.append(altered(events[0]))
        elif repeat == "recorded":  # a retry of an event recorded earlier rides along
            recorded = [
                e.command
                for e in self.entries.values()
                if e.type == "USAGE_CHARGE" and not e.backfilled
            ]
            if recorded:
                events.insert(0, recorded[-1])
        expected, effects = self.plan_usage(events, enforce=True)
        org = self.org
        assert org is not None
        written = self.write(
            lambda s: ledger.record_usage_batch(s, org, events, self.limits), expected
        )
        if written is not None:
            assert len(written) == len(events)
            for event, entry in zip(events, written, strict=True):
                assert entry.idempotency_key == event.idempotency_key
            self.apply(effects, written)

    @rule(
        spec=usage_specs,
        when=st.sampled_from(["late", "late", "future"]),
        payment=st.booleans(),
        amount=payments,
    )
    def backdated(self, spec: UsageSpec, when: str, payment: bool, amount: Decimal) -> None:
        """Usage or a deposit dated before the late-arrival window (or past the tolerated
        clock skew) is refused on occurredAt; nothing is written."""
        if when == "late":
            at = self.now - timedelta(seconds=self.limits.late_arrival_window_seconds + 60)
        else:
            at = self.now + timedelta(seconds=self.limits.future_skew_seconds + 60)
        org = self.org
        assert org is not None
        if payment:
            deposit = Payment(self.key("late-deposit"), self.ids[spec.account], amount, "USD", at)
            self.write(lambda s: ledger.deposit(s, org, deposit, self.limits), "ValidationFailed")
            return
        event = replace(self.usage_event(spec, self.key("late")), occurred_at=at)
        self.write(lambda s: ledger.record_usage(s, org, event, self.limits), "ValidationFailed")

    @rule(spec=usage_specs)
    def concurrent_duplicates(self, spec: UsageSpec) -> None:
        """The same event sent twice at once (a client retrying on a timeout): one entry."""
        event = self.usage_event(spec, self.key("twice"))
        expected, effects = self.plan_usage([event], enforce=True)
        org = self.org
        assert org is not None
        before = self.run(self.snapshot())

        async def both() -> list[Any]:
            return list(
                await asyncio.gather(
                    *(
                        self._transaction(lambda s: ledger.record_usage(s, org, event, self.limits))
                        for _ in range(2)
                    ),
                    return_exceptions=True,
                )
            )

        results = self.run(both())
        outcomes = [outcome_of(r if isinstance(r, BaseException) else None) for r in results]
        assert outcomes == [expected, expected], (outcomes, results)
        if expected != OK:
            assert self.run(self.snapshot()) == before
            return
        assert sorted(r.replayed for r in results) == [False, True]
        assert results[0].id == results[1].id
        self.apply(effects, [r for r in results if not r.replayed])

    # --- replays of anything recorded ---

    @precondition(lambda self: any(e.command is not None for e in self.entries.values()))
    @rule(pick=st.integers(min_value=0), changed=st.booleans())
    def resubmit(self, pick: int, changed: bool) -> None:
        """The same key again: the same body replays the first entry; another body is a
        conflict. Neither writes anything."""
        sent = [e for e in self.entries.values() if e.command is not None]  # not corrections
        entry = sent[pick % len(sent)]
        command = entry.command
        if changed:
            if isinstance(command, UsageEvent):
                command = altered(command)
            else:
                command = replace(command, amount=command.amount + Decimal("0.01"))
        org = self.org
        assert org is not None
        operation: Callable[[AsyncSession], Awaitable[Any]]
        if isinstance(command, UsageEvent) and entry.backfilled:
            event = command  # history replays through backfillUsage (even in a closed month)

            async def operation(s: AsyncSession) -> Any:
                return (await ledger.backfill_usage(s, org, [event], self.limits))[0]
        elif isinstance(command, UsageEvent):
            event = command

            def operation(s: AsyncSession) -> Awaitable[Any]:
                return ledger.record_usage(s, org, event, self.limits)
        elif isinstance(command, Refund):
            refund = command

            def operation(s: AsyncSession) -> Awaitable[Any]:
                return ledger.refund(s, org, refund, self.limits)
        else:
            payment = command
            method = {
                "DEPOSIT": ledger.deposit,
                "SUBSCRIPTION_PAYMENT": ledger.record_subscription_payment,
                "ADJUSTMENT": ledger.adjust,
                "WITHDRAWAL": ledger.withdraw,
            }[entry.type]

            def operation(s: AsyncSession) -> Awaitable[Any]:
                return method(s, org, payment, self.limits)

        before = self.run(self.snapshot())
        replayed = self.write(operation, IdempotencyConflict.__name__ if changed else OK)
        assert self.run(self.snapshot()) == before, "a replay wrote something"
        if replayed is not None:
            assert replayed.replayed and replayed.id == entry.id

    # --- reservations ---

    def estimate_request(
        self, account: str, estimate: Decimal, user: bool
    ) -> reservations.EstimateRequest:
        return reservations.EstimateRequest(
            idempotency_key=self.key("hold"),
            account_id=self.ids[account],
            provider="openai",
            model="gpt-4o",
            input_tokens=100,
            user_id=self.ids["USER"] if user else None,
            estimated_cost=estimate,
            estimated_cost_currency="USD",
        )

    def predict_hold(
        self,
        account: str,
        user: bool,
        estimate: Decimal,
        now: datetime,
        extra: dict[uuid.UUID, Decimal] | None = None,
    ) -> tuple[str, dict[uuid.UUID, Decimal]]:
        """An authorisation's outcome and holds, ``extra`` already reserved on top.

        An estimate that some hard cap could never allow is invalid input, whatever the
        counters say; else a hard cap the hold does not fit under refuses it. Overdue holds
        do not stand in the way: the service expires them when they would.
        """
        released: dict[uuid.UUID, Decimal] = defaultdict(Decimal)
        for reservation in self.reservations:
            if reservation.state == "HELD" and reservation.expires_at <= now:
                for budget_id, amount in reservation.holds.items():
                    released[budget_id] += amount
        ai_cost, billed = self.prices(estimate)
        holds: dict[uuid.UUID, Decimal] = {}
        for budget in self.budgets:
            if budget.scope[0] in self.scopes_of(account, user):
                holds[budget.id] = billed if budget.basis == Basis.BILLED_USAGE else ai_cost
        extra = extra or {}
        applicable = [b for b in self.budgets if b.id in holds and b.hard]
        if any(holds[b.id] > b.limit for b in applicable):
            return ValidationFailed.__name__, holds
        for b in applicable:
            reserved = b.reserved - released[b.id] + extra.get(b.id, Decimal(0))
            if self.spent(b) + reserved + holds[b.id] > b.limit:
                return BudgetLimitReached.__name__, holds
        return OK, holds

    def held(
        self,
        request: reservations.EstimateRequest,
        row: Any,
        account: str,
        user: bool,
        holds: dict[uuid.UUID, Decimal],
    ) -> None:
        for budget in self.budgets:
            budget.reserved += holds.get(budget.id, Decimal(0))
        self.reservations.append(
            ModelReservation(
                row.id, request.idempotency_key, account, user, request, row.expires_at, holds
            )
        )

    @rule(account=st.sampled_from(["P", "Q"]), estimate=costs, user=st.booleans())
    def authorize(self, account: str, estimate: Decimal, user: bool) -> None:
        request = self.estimate_request(account, estimate, user)
        now = self.tick()
        expected, holds = self.predict_hold(account, user, estimate, now)
        org = self.org
        assert org is not None
        result = self.write(
            lambda s: reservations.authorize(s, org, request, self.limits, now),
            expected,
            sweeps=True,
        )
        self.sync_expired()
        if result is None:
            return
        row, replayed = result
        assert not replayed
        self.held(request, row, account, user, holds)

    def room(self, account: str, user: bool, *, balance: bool) -> Decimal | None:
        """The largest provider cost that still fits every hard cap in scope (and the prepaid
        balance): ``tight`` races spend 60 % of it twice, room for one but not both."""
        factor = 1 + self.markup / 100
        rooms = []
        for budget in self.budgets:
            if budget.hard and budget.scope[0] in self.scopes_of(account, user):
                left = budget.limit - self.spent(budget) - budget.reserved
                rooms.append(left / factor if budget.basis == Basis.BILLED_USAGE else left)
        if balance and not self.postpaid[account]:
            rooms.append(self.balance[account] / factor)
        if not rooms or min(rooms) <= Decimal("0.01"):
            return None
        return (min(rooms) * Decimal("0.6")).quantize(Decimal("0.001"), rounding=ROUND_DOWN)

    @rule(
        account=st.sampled_from(["P", "Q"]),
        estimates=st.tuples(costs, costs),
        tight=st.booleans(),
    )
    def concurrent_authorizes(
        self, account: str, estimates: tuple[Decimal, Decimal], tight: bool
    ) -> None:
        """Two holds at once on the same budgets: a hard cap with room for one of them but not
        both admits exactly one — the check and the raise are one step across connections."""
        share = self.room(account, True, balance=False) if tight else None
        if share is not None:
            estimates = (share, share)
        requests = [self.estimate_request(account, e, True) for e in estimates]
        now = self.tick()
        alone = [self.predict_hold(account, True, e, now) for e in estimates]
        both_fit = all(outcome == OK for outcome, _ in alone) and (
            self.predict_hold(account, True, estimates[1], now, alone[0][1])[0] == OK
        )
        org = self.org
        assert org is not None

        async def race() -> list[Any]:
            return list(
                await asyncio.gather(
                    *(
                        self._transaction(
                            lambda s, r=r: reservations.authorize(s, org, r, self.limits, now)
                        )
                        for r in requests
                    ),
                    return_exceptions=True,
                )
            )

        results = self.run(race())
        outcomes = [outcome_of(r if isinstance(r, BaseException) else None) for r in results]
        for outcome in outcomes:
            OUTCOMES[("concurrent_authorizes", outcome)] += 1
        if both_fit:
            assert outcomes == [OK, OK], results
        else:
            for (predicted, _), outcome in zip(alone, outcomes, strict=True):
                if predicted != OK:  # could never fit: refused, with its own reason
                    assert outcome == predicted, (predicted, results)
            if all(predicted == OK for predicted, _ in alone):  # room for one, not both
                assert sorted(outcomes) == sorted([OK, BudgetLimitReached.__name__]), results
            for index in (0, 1):  # the other one refused outright takes nothing away
                if alone[index][0] == OK and alone[1 - index][0] != OK:
                    assert outcomes[index] == OK, results
        self.sync_expired()
        for request, result, (_, holds) in zip(requests, results, alone, strict=True):
            if not isinstance(result, BaseException):
                row, replayed = result
                assert not replayed
                self.held(request, row, account, True, holds)

    @rule(amounts=st.tuples(costs, costs), user=st.booleans(), tight=st.booleans())
    def concurrent_spend(self, amounts: tuple[Decimal, Decimal], user: bool, tight: bool) -> None:
        """Two different events on the prepaid account at once: a balance or hard cap with room
        for one of them but not both admits exactly one (no lost update, no overdraft)."""
        share = self.room("P", user, balance=True) if tight else None
        if share is not None:
            amounts = (share, share)
        events = [
            self.usage_event(UsageSpec("P", amount, 0, user), self.key("race"))
            for amount in amounts
        ]
        together, _ = self.plan_usage(events, enforce=True)
        alone = [self.plan_usage([event], enforce=True)[0] for event in events]
        org = self.org
        assert org is not None

        async def race() -> list[Any]:
            return list(
                await asyncio.gather(
                    *(
                        self._transaction(
                            lambda s, e=e: ledger.record_usage(s, org, e, self.limits)
                        )
                        for e in events
                    ),
                    return_exceptions=True,
                )
            )

        results = self.run(race())
        outcomes = [outcome_of(r if isinstance(r, BaseException) else None) for r in results]
        for outcome in outcomes:
            OUTCOMES[("concurrent_spend", outcome)] += 1
        accepted = [e for e, outcome in zip(events, outcomes, strict=True) if outcome == OK]
        if together == OK:
            assert outcomes == [OK, OK], results
        else:
            for index, (predicted, outcome) in enumerate(zip(alone, outcomes, strict=True)):
                if predicted != OK:
                    # Refused alone for this reason; run after the other one, which took its
                    # share of the balance, the balance (checked before the caps) may refuse
                    # it first.
                    allowed = {predicted}
                    if outcomes[1 - index] == OK:
                        allowed.add(AllowanceExhausted.__name__)
                    assert outcome in allowed, (predicted, results)
            if all(predicted == OK for predicted in alone):
                assert len(accepted) == 1, results
            for index in (0, 1):
                if alone[index] == OK and alone[1 - index] != OK:
                    assert outcomes[index] == OK, results
        if accepted:
            fits, effects = self.plan_usage(accepted, enforce=True)
            assert fits == OK
            self.apply(effects, [r for r in results if not isinstance(r, BaseException)])

    @precondition(lambda self: self.reservations)
    @rule(pick=st.integers(min_value=0), changed=st.booleans())
    def authorize_again(self, pick: int, changed: bool) -> None:
        """A retried authorize replays the reservation, whatever became of it since."""
        reservation = self.reservations[-1 - pick % len(self.reservations)]  # recent first
        request = reservation.request
        if changed:
            assert request.estimated_cost is not None
            request = replace(request, estimated_cost=request.estimated_cost + 1)
        org = self.org
        assert org is not None
        now = self.now
        result = self.write(
            lambda s: reservations.authorize(s, org, request, self.limits, now),
            IdempotencyConflict.__name__ if changed else OK,
            sweeps=True,
        )
        self.sync_expired()
        if result is not None:
            row, replayed = result
            assert replayed and row.id == reservation.id

    @precondition(lambda self: self.reservations)
    @rule(pick=st.integers(min_value=0), actual=costs, count=tokens)
    def settle(self, pick: int, actual: Decimal, count: int) -> None:
        reservation = self.reservations[-1 - pick % len(self.reservations)]  # recent first
        if reservation.state == "SETTLED":
            # A retry of the settlement replays; a second, different settlement is refused.
            assert reservation.settle_event is not None
            for event, expected in (
                (reservation.settle_event, OK),
                (
                    replace(reservation.settle_event, idempotency_key=self.key("again")),
                    ValidationFailed.__name__,
                ),
            ):
                before = self.run(self.snapshot())
                entry = self.write(self._settling(reservation.id, event), expected)
                assert self.run(self.snapshot()) == before
                if entry is not None:
                    assert entry.replayed
                    assert entry.id == self.entries[reservation.settle_event.idempotency_key].id
            return
        spec = UsageSpec(reservation.account, actual, count, reservation.user)
        event = self.usage_event(spec, self.key("settle"))
        live = reservation.state == "HELD" and reservation.expires_at > self.now
        _, effects = self.plan_usage([event], enforce=False)
        expected = self.predict_settle(reservation, effects) if live else ValidationFailed.__name__
        entry = self.write(self._settling(reservation.id, event), expected)
        self.sync_expired()
        if entry is None:
            return
        for budget in self.budgets:
            budget.reserved -= reservation.holds.get(budget.id, Decimal(0))
        self.apply(effects, [entry], settled=True)
        reservation.state = "SETTLED"
        reservation.settle_event = event

    def predict_settle(self, reservation: ModelReservation, effects: Effects) -> str:
        """Within its hold a settlement is recorded; beyond it, each hard cap it goes past its
        hold on must stay within limit + the overage tolerance (the other live holds count,
        the overdue ones do not): else OVERAGE_LIMIT, nothing written."""
        tolerance = 1 + self.limits.settle_overage_tolerance_percent / 100
        for budget in self.budgets:
            amount = effects.spent.get((budget.id, budget.window[0]), Decimal(0))
            hold = reservation.holds.get(budget.id, Decimal(0))
            if not budget.hard or not amount or amount <= hold:
                continue
            held = self.spent(budget) + budget.reserved - hold - self.overdue(budget, reservation)
            if held + amount > budget.limit * tolerance:
                return OverageLimit.__name__
        return OK

    def _settling(
        self, reservation_id: uuid.UUID, event: UsageEvent
    ) -> Callable[[AsyncSession], Awaitable[Any]]:
        org = self.org
        assert org is not None
        now = self.now
        return lambda s: reservations.settle(s, org, reservation_id, event, self.limits, now)

    @precondition(lambda self: self.reservations)
    @rule(pick=st.integers(min_value=0))
    def release(self, pick: int) -> None:
        reservation = self.reservations[-1 - pick % len(self.reservations)]  # recent first
        org = self.org
        assert org is not None
        now = self.tick()
        expected = ValidationFailed.__name__ if reservation.state == "SETTLED" else OK
        row = self.write(lambda s: reservations.release(s, org, reservation.id, now), expected)
        self.sync_expired()
        if row is None or reservation.state != "HELD":
            return
        reservation.state = "RELEASED" if reservation.expires_at > now else "EXPIRED"
        assert row.state == reservation.state
        for budget in self.budgets:
            budget.reserved -= reservation.holds.get(budget.id, Decimal(0))

    @rule()
    def time_passes(self) -> None:
        """Past the reservation TTL: held reservations expire (swept by the next authorize)."""
        self.now += TTL

    # --- history, budgets, prices and the monthly close ---

    @rule(
        specs=st.lists(usage_specs, min_size=1, max_size=3),
        into=st.sampled_from(["edge", "cycle", "february", "january"]),
    )
    def backfill(self, specs: list[UsageSpec], into: str) -> None:
        """backfillUsage: history older than the late-arrival window, held to every rule of a
        plain write in the period it lands in: a closed month refuses it (PERIOD_CLOSED), a
        cycle that is over is never drawn on (charged in full), and each hard cap is enforced
        in that past day, week or month (its counter opens at the ledger's count)."""
        if into == "edge":
            at = self.now - timedelta(seconds=self.limits.late_arrival_window_seconds + 60)
        else:
            at = BACKFILL_AT[into]
        events = [
            self.usage_event(spec, self.key("backfill"), at + timedelta(seconds=self.serial))
            for spec in specs
        ]
        expected, effects = self.plan_usage(events, enforce=True)
        org = self.org
        assert org is not None
        written = self.write(lambda s: ledger.backfill_usage(s, org, events, self.limits), expected)
        if written is not None:
            self.apply(effects, written, backfilled=True)

    @rule(
        spec=budget_spec,
        same=st.booleans(),
        # New terms for an existing budget about half the time overall (a budget must exist:
        # the first calls of an example without one create it).
        change=st.sampled_from([True, True, False]),
        pick=st.integers(min_value=0),
        how=st.sampled_from(["raise", "lower", "cap"]),
        by=st.decimals(min_value=Decimal("0.01"), max_value=10, places=2),
    )
    def set_budget(
        self,
        spec: tuple[str, Period, Basis, Decimal, bool],
        same: bool,
        change: bool,
        pick: int,
        how: str,
        by: Decimal,
    ) -> None:
        """A budget created mid-period (it counts the period's spend so far), or new terms for
        one: raised, lowered (below what is spent: what comes next is refused), made hard or
        soft. New terms are a new terms_version; the same terms again change nothing. About
        half the time (``change``) an existing budget gets new terms: ``how`` says which."""
        name, period, basis, limit, hard = spec
        if change and self.budgets:
            chosen = self.budgets[pick % len(self.budgets)]
            name, period, basis = chosen.scope[0], chosen.period, Basis(chosen.basis)
            limit, hard = chosen.limit, chosen.hard
            if how == "raise":
                limit += by
            elif how == "lower":
                limit = max(Decimal("0.01"), limit - by)
            else:
                hard = not hard
        existing = [
            b for b in self.budgets if (b.scope[0], b.period, b.basis) == (name, period, basis)
        ]
        if existing and same and not change:
            limit, hard = existing[0].limit, existing[0].hard  # the same terms again
        before = None if not existing else (existing[0].limit, existing[0].hard)
        version = None if not existing else existing[0].terms_version
        row = self.write(lambda s: self._set_budget(s, name, period, basis, limit, hard), OK)
        assert row is not None
        budget = self.budget_set(row.id, name, period, basis, limit, hard)
        if before is None:
            outcome = "created"
        elif budget.terms_version == version:
            outcome = "same terms"
        elif hard != before[1]:
            outcome = "made hard" if hard else "made soft"
        else:
            outcome = "raised" if limit > before[0] else "lowered"
        OUTCOMES[("set_budget", outcome)] += 1

    @rule(
        price=per_million,
        since=st.sampled_from(["next", "hour", "hour", "days", "weeks"]),
        span=st.sampled_from(REPRICE_SPANS),
        account=st.sampled_from([None, "P", "Q"]),
    )
    def reprice_usage(self, price: Decimal, since: str, span: str, account: str | None) -> None:
        """A new price of the example's model from some instant, then repriceUsage over a
        range: one ADJUSTMENT per catalog-priced usage entry in range whose price changed,
        dated like it, moving its account's balance (below zero too) by the balance's share
        of the entry (what ingestion at the new price would have charged with the same
        allowance cover, less what it and its corrections charged so far) and the budget
        counters of its period (never refused); none in a closed month (PERIOD_CLOSED,
        nothing)."""
        start_at = {
            "next": self.now + timedelta(seconds=1),
            "hour": self.now - timedelta(hours=1),
            "days": self.now - timedelta(days=5),
            "weeks": BASE - timedelta(days=50),
        }[since]
        start_at = max(start_at, self.versions[-1][0] + timedelta(seconds=1))
        org = self.org
        assert org is not None
        version = NewPriceVersion(self.provider, "m1", "USD", start_at, input_per_million=price)
        self.write(lambda s: set_model_price(s, org.id, version, "stateful"), OK)
        self.versions.append((start_at, price))
        end = self.now + timedelta(hours=1)
        begin = {
            "recent": self.now - timedelta(hours=2),
            "month": month_of(BASE),
            "all": FIRST_PRICE,
            "february": month_of(BOOKS),
        }[span]
        if span == "february":
            end = month_of(BASE)
        request = reprice.RepriceRequest(
            begin, end, None if account is None else self.ids[account], reason="stateful"
        )
        # The model's prediction: every catalog-priced entry in range, priced again.
        examined = [
            e
            for e in self.entries.values()
            if e.standing is not None
            and e.at is not None
            and begin <= e.at < end
            and (account is None or e.account == account)
        ]
        corrections: dict[uuid.UUID, tuple[ModelEntry, Decimal, Decimal, Decimal]] = {}
        for entry in examined:
            assert isinstance(entry.command, UsageEvent) and entry.standing is not None
            ai_cost, billed = self.event_prices(entry.command)
            ai_delta, billed_delta = ai_cost - entry.standing[0], billed - entry.standing[1]
            # The balance pays the share of the tokens the allowance did not cover at
            # ingestion, of the new price (as plan_usage charges it).
            count = entry.budgeted
            charge = (
                billed if count == 0 else quantize_stored(billed * (count - entry.covered) / count)
            )
            charge_delta = charge - entry.standing[2]
            if ai_delta or billed_delta or charge_delta:
                corrections[entry.id] = (entry, ai_delta, billed_delta, charge_delta)
        closed = any(self.is_closed(e.at or BASE) for e, *_ in corrections.values())
        outcome = self.write(
            lambda s: reprice.reprice(s, org, request, "stateful", self.limits.zone),
            PeriodClosed.__name__ if closed else OK,
        )
        if outcome is None:
            return
        assert outcome.examined == len(examined)
        assert {a.related_entry_id for a in outcome.adjustments} == set(corrections)
        windows: dict[tuple[uuid.UUID, datetime], tuple[datetime, datetime]] = {}
        for adjustment in outcome.adjustments:
            assert adjustment.related_entry_id is not None
            entry, *_ = corrections[adjustment.related_entry_id]
            assert entry.at is not None
            for budget in self.budgets:
                if budget.scope[0] in self.scopes_of(entry.account, entry.user):
                    period = window(budget.period, entry.at, self.limits.zone)
                    windows[(budget.id, period[0])] = period
        self.open_counters(windows)
        for adjustment in outcome.adjustments:
            assert adjustment.related_entry_id is not None
            entry, ai_delta, billed_delta, charge_delta = corrections[adjustment.related_entry_id]
            assert entry.standing is not None
            # The balance moves by its share only (usage the allowance covered stays covered);
            # budgets by the change of their basis, the whole of it.
            delta = -charge_delta
            assert (adjustment.type.value, adjustment.amount, adjustment.ai_cost) == (
                "ADJUSTMENT",
                billed_delta,
                ai_delta,
            )
            assert (adjustment.balance_delta, adjustment.occurred_at) == (delta, entry.at)
            self.entries[adjustment.idempotency_key] = ModelEntry(
                adjustment.id,
                "ADJUSTMENT",
                entry.account,
                billed_delta,
                delta,
                None,
                at=entry.at,
                ai_cost=ai_delta,
                user=entry.user,
                usage=True,
                corrects=entry.id,
            )
            entry.standing = (
                entry.standing[0] + ai_delta,
                entry.standing[1] + billed_delta,
                entry.standing[2] + charge_delta,
            )
            self.balance[entry.account] += delta
        OUTCOMES[("reprice_usage", f"{OK} {'adjusted' if corrections else 'nothing'}")] += 1

    def is_closed(self, at: datetime) -> bool:
        """A write dated ``at`` is PERIOD_CLOSED: its month is closed, or is a month of the
        books before the latest closed one (history before the books start never is)."""
        month = month_of(at)
        if month in self.closed:
            return True
        return bool(self.closed) and month_of(BOOKS) <= month < max(self.closed)

    @rule(then=st.sampled_from(["backfill", "reprice"]), spec=usage_specs, price=per_million)
    def close_months(self, then: str, spec: UsageSpec, price: Decimal) -> None:
        """The monthly close, as the rollup runner runs it: every month of the books from the
        books' start, whether or not anything is dated in it (an empty month closes too),
        that is over by the late-arrival window and the grace, oldest first, each once and
        without a gap. February closes, empty or not; January is before the books start and
        never closes."""
        grace = max(
            timedelta(hours=self.app_settings.month_close_grace_hours),
            timedelta(seconds=self.limits.late_arrival_window_seconds),
        )
        month = month_of(BOOKS)
        if self.closed:
            month = max(month, next_month(max(self.closed)))
        expected = []
        while next_month(month) <= self.now - grace:
            expected.append(month)
            month = next_month(month)
        org = self.org
        assert org is not None
        done = self.run(month_close.close_months(self.units, self.now, grace, only=[org.id]))
        assert [c.month for c in done] == expected
        assert all(c.organization_id == org.id for c in done)
        self.closed.update(expected)
        OUTCOMES[("close_months", f"closed {len(expected)}")] += 1
        if month_of(BOOKS) in self.closed:  # then a write dated in it: PERIOD_CLOSED
            if then == "backfill":
                self.backfill([spec], "february")
            else:
                self.reprice_usage(price, "weeks", "february", None)

    # --- withdrawals, auto-top-up and the allowance catalog ---

    @rule(
        account=st.sampled_from(["P", "P", "Q"]),
        amount=payments,
        how=st.sampled_from(["amount", "all", "beyond"]),
    )
    def withdraw(self, account: str, amount: Decimal, how: str) -> None:
        """Money paid back out of the prepaid balance: never more than it holds (a postpaid
        account's credit neither): beyond it INSUFFICIENT_BALANCE, nothing written."""
        balance = self.balance[account]
        cent = Decimal("0.01")
        if how == "all" and balance >= cent:  # all of it, to the cent
            amount = balance.quantize(cent, rounding=ROUND_DOWN)
        elif how == "beyond" and balance > 0:  # the first cent past it
            amount = balance.quantize(cent, rounding=ROUND_DOWN) + cent
        payment = Payment(self.key("withdraw"), self.ids[account], amount, "USD", self.tick())
        org = self.org
        assert org is not None
        fits = amount <= balance
        entry = self.write(
            lambda s: ledger.withdraw(s, org, payment, self.limits),
            OK if fits else InsufficientBalance.__name__,
        )
        if entry is None:
            return
        assert not entry.replayed and entry.balance_delta == -amount
        self.entries[payment.idempotency_key] = ModelEntry(
            entry.id, "WITHDRAWAL", account, amount, -amount, payment
        )
        self.balance[account] -= amount

    @rule(
        account=st.sampled_from(["P", "P", "Q"]),
        enabled=st.sampled_from([True, True, False]),
        threshold=st.sampled_from(["0", "5.00", "20.00", "balance", "above"]),
        amount=payments,
    )
    def set_auto_top_up(self, account: str, enabled: bool, threshold: str, amount: Decimal) -> None:
        """setAutoTopUp: evaluated at once (an account already below its threshold requests
        now); turning it off re-arms it. The requests that follow (TOP_UP_REQUESTED, once
        per crossing) are the invariant's to predict, after every step."""
        # At the balance (to the cent, not below it: no request) or a cent above it.
        floor = max(Decimal(0), self.balance[account]).quantize(Decimal("0.01"), ROUND_DOWN)
        level = {"balance": floor, "above": floor + Decimal("0.01")}.get(threshold)
        level = Decimal(threshold) if level is None else level
        spec = top_ups.AutoTopUpSpec(self.ids[account], enabled, level, amount)
        org = self.org
        assert org is not None
        self.write(lambda s: top_ups.set_auto_top_up(s, org, spec), OK)
        setting = self.top_ups.get(account)
        if setting is None:
            self.top_ups[account] = ModelTopUp(enabled, level, amount)
        else:
            setting.enabled, setting.threshold, setting.amount = enabled, level, amount
            setting.requested = setting.requested and enabled

    @rule(
        which=st.sampled_from(["catalog", "catalog-any", "openai"]),
        weight=st.sampled_from(
            [Decimal(0), Decimal("0.5"), Decimal(1), Decimal("2.5"), Decimal(3)]
        ),
    )
    def set_weight(self, which: str, weight: Decimal) -> None:
        """setAllowanceWeight of a model (or every model of a provider): usage written from
        now on consumes its tokens x the weight of the allowance; written usage keeps its."""
        provider, model = {
            "catalog": (self.provider, "m1"),
            "catalog-any": (self.provider, "*"),
            "openai": ("openai", "gpt-4o"),
        }[which]
        spec = WeightSpec(Dimension.MODEL, model, weight, provider)
        org = self.org
        assert org is not None
        self.write(lambda s: allowance_weights.set_weight(s, org, spec), OK)
        self.weights[(provider, model)] = weight

    # --- subscriptions: fees, plan changes, seats, cancellation, the biller ---

    def plan_codes(self) -> list[str]:
        return sorted(self.plans)

    def subscribed(self, account: str) -> str:
        """``account``, or the other one when only that one has a subscription in force (so
        that the changes mostly reach a subscription; NOT_FOUND still happens)."""
        other = "Q" if account == "P" else "P"
        if self.in_force(account, self.now) is None and self.in_force(other, self.now):
            return other
        return account

    def code_of(self, pick: int) -> str:
        """A plan code by index (``sm`` exists only with an initial allowance)."""
        return self.plan_codes()[pick % len(self.plans)]

    @rule(
        account=st.sampled_from(["P", "Q"]),
        pick=st.integers(min_value=0, max_value=4),
        billing=st.sampled_from(["MONTHLY", "MONTHLY", "ANNUAL"]),
        start=st.sampled_from(list(STARTS)),
        seats=st.sampled_from([None, None, 1, 2, 3, 5]),
    )
    def subscribe(
        self, account: str, pick: int, billing: str, start: str, seats: int | None
    ) -> None:
        """subscribeAccount (its cycles so far billed at once): ends the account's current
        subscription when the new one starts; a team plan opens the customer's pool or joins
        the one in force. Refused (nothing written): no annual price, seats on an unpooled
        plan or past the plan's (PLAN_LIMIT), a start not after the current one's, a start at
        or before usage already recorded on the account (charged under the terms then in
        force, that usage cannot move under the new subscription's allowance)."""
        code = self.code_of(pick)
        plan = self.plans[code]
        at = self.tick() + STARTS[start]
        over_usage = any(
            e.type == "USAGE_CHARGE" and e.account == account and e.at is not None and e.at >= at
            for e in self.entries.values()
        )
        fee = plan.monthly if billing == "MONTHLY" else plan.annual
        current = [s for s in self.subs if s.account == account and s.ends_at is None]
        team = None
        if plan.pooled:  # the customer's pool on the plan, in force then or later
            teams = [
                s
                for s in self.subs
                if s.account == account
                and s.plan == code
                and s.pool == s.id
                and s not in current
                and (s.ends_at is None or s.ends_at > at)
            ]
            team = min(teams, key=lambda s: s.starts_at, default=None)
        expected = OK
        if fee is None or (seats is not None and seats > 1 and not plan.pooled):
            expected = ValidationFailed.__name__
        elif seats is not None and plan.seats is not None and seats > plan.seats:
            expected = PlanLimit.__name__
        elif (
            (current and current[0].starts_at >= at)
            or (team is not None and team.starts_at > at)
            or over_usage
        ):
            expected = ValidationFailed.__name__
            if over_usage:
                OUTCOMES[("subscribe", "refused: backdated over usage")] += 1
        org = self.org
        assert org is not None
        row = self.write(
            lambda s: subscription_billing.billed(
                s,
                org,
                plans.subscribe_account(
                    s, org, self.ids[account], code, BillingCycle(billing), at, seats
                ),
            ),
            expected,
        )
        if row is None:
            return
        assert fee is not None
        if current:
            current[0].ends_at = at
        self.subs.append(
            ModelSub(
                row.id,
                account,
                code,
                billing,
                at,
                None,
                fee if team is None else Decimal(0),
                plan.included if team is None else team.included,
                1 if seats is None else seats,
                None if not plan.pooled else row.id if team is None else team.id,
            )
        )
        self.absorb(self.catch_up(account))
        OUTCOMES[("subscribe", f"{OK} {billing.lower()} {'joined' if team else code}")] += 1

    def change_refused(self, sub: ModelSub | None, code: str) -> str | None:
        """Why changePlan refuses (None: it does not), in the order the code checks."""
        if sub is None:
            return NotFound.__name__
        plan, old = self.plans[code], self.plans[sub.plan]
        fee = plan.monthly if sub.billing == "MONTHLY" else plan.annual
        if sub.cancelled or code == sub.plan or fee is None or plan.pooled != old.pooled:
            return ValidationFailed.__name__
        if plan.pooled:
            if sub.pool != sub.id:
                return ValidationFailed.__name__  # a member moves with its team only
            if any(
                s.plan == code and s.pool == s.id and (s.ends_at is None or s.ends_at > self.now)
                for s in self.subs
                if s.account == sub.account
            ):
                return ValidationFailed.__name__  # the customer has a team on it already
        if plan.seats is not None and sub.seats > plan.seats:
            return PlanLimit.__name__
        return None

    @rule(account=st.sampled_from(["P", "Q"]), pick=st.integers(min_value=0, max_value=4))
    def change_plan(self, account: str, pick: int) -> None:
        """changePlan now: the running cycle billed first; then the unused part of the old
        fee credited and the new one charged for the rest of the billing cycle from when the
        change takes effect — at once before the running allowance cycle's first usage, else
        from its end (a monthly cycle: nothing written now, the next cycle bills the new
        fee). The anchor and billing stay; the allowance changes with the same rule (a new
        subscription's terms in place; an opened counter keeps its size)."""
        code = self.code_of(pick)
        now = self.tick()
        account = self.subscribed(account)
        sub = self.in_force(account, now)
        expected = self.change_refused(sub, code)
        org = self.org
        assert org is not None
        result = self.write(
            lambda s: subscription_billing.change_plan(s, org, self.ids[account], code),
            expected or OK,
        )
        if result is None:
            return
        assert sub is not None
        plan, old = self.plans[code], self.plans[sub.plan]
        fee = plan.monthly if sub.billing == "MONTHLY" else plan.annual
        assert fee is not None
        written = self.settle_sub(sub)
        written += self.prorated(
            sub, self.cycle_fee(sub), fee + self.seat_part(sub, plan, sub.seats), "plan"
        )
        sub.plan, sub.fee, sub.included = code, fee, plan.included
        new = self.absorb(written)
        row, entries = result
        assert row.id == sub.id and {e.idempotency_key for e in entries} == {r[0] for r in new}
        at_once = self.effective(sub) == now
        OUTCOMES[("change_plan", f"{OK} {'at once' if at_once else 'next cycle'}")] += 1
        del old

    @rule(account=st.sampled_from(["P", "Q"]), seats=st.integers(min_value=1, max_value=7))
    def set_seats(self, account: str, seats: int) -> None:
        """setSeats on a team subscription: seats added charged, removed credited, at the
        seat fee for the rest of the cycle from when the pool's capacity changes (the
        effective_from rule, as a plan change); the same count again writes nothing."""
        now = self.tick()
        account = self.subscribed(account)
        sub = self.in_force(account, now)
        plan = None if sub is None else self.plans[sub.plan]
        if sub is None:
            expected = NotFound.__name__
        elif plan is None or not plan.pooled or sub.pool != sub.id or sub.cancelled:
            expected = ValidationFailed.__name__
        elif plan.seats is not None and seats > plan.seats:
            expected = PlanLimit.__name__
        else:
            expected = OK
        org = self.org
        assert org is not None
        result = self.write(
            lambda s: subscription_billing.set_seats(s, org, self.ids[account], seats), expected
        )
        if result is None:
            return
        assert sub is not None and plan is not None
        written: list[tuple[str, str, Decimal]] = []
        if seats != sub.seats:
            written = self.settle_sub(sub)
            old, new = self.seat_part(sub, plan, sub.seats), self.seat_part(sub, plan, seats)
            what = f"seats-{sub.seats}-to-{seats}"
            written += self.prorated(
                sub, max(old - new, Decimal(0)), max(new - old, Decimal(0)), what
            )
            sub.seats = seats
        self.absorb(written)
        OUTCOMES[("set_seats", f"{OK} {'same' if not written else 'changed'}")] += 1

    @rule(account=st.sampled_from(["P", "Q"]))
    def cancel(self, account: str) -> None:
        """cancelSubscription: at the period's end (endsAt the running cycle's end, or its
        end already if sooner); no later cycle is billed; the allowance stays until then."""
        now = self.tick()
        account = self.subscribed(account)
        sub = self.in_force(account, now)
        if sub is None:
            expected = NotFound.__name__
        elif sub.cancelled:
            expected = ValidationFailed.__name__
        else:
            expected = OK
        org = self.org
        assert org is not None
        row = self.write(
            lambda s: subscription_billing.cancel_subscription(s, org, self.ids[account]),
            expected,
        )
        if row is None:
            return
        assert sub is not None
        written = self.settle_sub(sub)
        end = sub.cycle(now)[1]
        sub.ends_at = end if sub.ends_at is None else min(end, sub.ends_at)
        sub.cancelled = True
        self.absorb(written)

    @rule(twice=st.booleans())
    def bill_run(self, twice: bool) -> None:
        """The biller's round (its catch-up of every account with a subscription begun):
        every cycle begun is billed once (a subscription that started since it last ran
        bills its first cycle), every month begun recognised; a second round, or two at
        once, adds nothing."""
        org = self.org
        assert org is not None
        accounts = sorted({s.account for s in self.subs if s.starts_at <= self.now})
        expected = [e for account in accounts for e in self.catch_up(account)]

        async def rounds() -> list[int]:
            runs = [bill_round(self.sessions, self.units, org.id) for _ in range(2 if twice else 1)]
            return list(await asyncio.gather(*runs))

        counts = self.run(rounds())
        new = self.absorb(expected)
        assert sum(counts) == len(new), (counts, new)
        if not twice:  # a replay of the round adds nothing
            assert self.run(bill_round(self.sessions, self.units, org.id)) == 0
        OUTCOMES[("bill_run", f"{OK} {'billed' if expected else 'nothing'}")] += 1

    # --- invariants ---

    @invariant()
    def counters_equal_the_ledger(self) -> None:
        if self.org is None:
            return
        self.sync_top_ups()
        self.run(self._check())

    async def _check(self) -> None:
        names = {self.ids["P"]: "P", self.ids["Q"]: "Q"}
        entries = await self.rows(
            "SELECT idempotency_key, id, type, account_id, amount, balance_delta, ai_cost, "
            "input_tokens + output_tokens + cached_input_tokens + reasoning_tokens, "
            "user_id, department_id, customer_id, occurred_at, related_entry_id, "
            "metadata ->> 'kind', budgeted_tokens "
            "FROM ledger_entries WHERE organization_id = :org"
        )
        # The ledger holds exactly the model's entries: no replay wrote a second one.
        assert len(entries) == len({row[0] for row in entries})
        assert {row[0] for row in entries} == set(self.entries)
        for key, entry_id, kind, account_id, amount, delta, ai_cost, *rest, _ in entries:
            expected = self.entries[key]
            assert (entry_id, kind, names[account_id], amount, delta) == (
                expected.id,
                expected.type,
                expected.account,
                expected.amount,
                expected.balance_delta,
            ), key
            if expected.usage:  # and what budgets count of it, where
                assert (ai_cost, rest[-3], rest[-2]) == (
                    expected.ai_cost,
                    expected.at,
                    expected.corrects,
                ), key
        # Balances are the SUM of the entries' balance deltas.
        sums: dict[str, Decimal] = defaultdict(Decimal)
        for row in entries:
            sums[names[row[3]]] += row[5]
        stored = dict(
            await self.rows(
                "SELECT account_id, balance FROM account_balances WHERE organization_id = :org"
            )
        )
        for account in ("P", "Q"):
            balance = stored.get(self.ids[account], Decimal(0))
            assert balance == sums[account] == self.balance[account], account
        # Allowance counters (an account's own and a team's pool): opened by the cycle's first
        # usage with the allowance then, which they keep; used = the tokens drawn (usage
        # dated in a cycle that is over drew nothing: no counter of it). Verify recomputes
        # each from the ledger's budgeted tokens.
        counters = await self.rows(
            "SELECT false, account_id, cycle_start, included_tokens, used_tokens "
            "FROM allowance_counters WHERE organization_id = :org UNION ALL "
            "SELECT true, pool_id, cycle_start, included_tokens, used_tokens "
            "FROM pool_allowance_counters WHERE organization_id = :org"
        )
        assert {
            (pooled, holder if pooled else names[holder], start): [included, used]
            for pooled, holder, start, included, used in counters
        } == self.counters
        # Each usage entry keeps the budgeted tokens it was weighed with.
        weighed = {row[0]: row[14] for row in entries if row[2] == "USAGE_CHARGE"}
        assert weighed == {
            k: e.budgeted for k, e in self.entries.items() if e.type == "USAGE_CHARGE"
        }
        await self._check_plans(entries)
        # Budgets: every counter (current or past period) holds the usage and corrections in
        # its scope and period; reserved the live holds; the model knows which exist.
        held = await self.rows(
            "SELECT state, holds, settled_entry_id FROM reservations WHERE organization_id = :org"
        )
        settled_ids = {row[2] for row in held if row[2] is not None}
        budget_rows = await self.rows(
            "SELECT budget_id, period_start, spent, reserved "
            "FROM budget_counters WHERE organization_id = :org"
        )
        assert {(row[0], row[1]) for row in budget_rows} == {
            (b.id, start) for b in self.budgets for start in b.counters
        }
        terms = await self.rows(
            "SELECT id, terms_version, limit_amount, hard_cap FROM budgets "
            "WHERE organization_id = :org"
        )
        assert {row[0]: tuple(row[1:]) for row in terms} == {
            b.id: (b.terms_version, b.limit, b.hard) for b in self.budgets
        }
        for budget_id, period_start, spent, reserved in budget_rows:
            budget = self.budget_of(budget_id)
            counter = budget.counters[period_start]
            span = counter.window
            assert period_start == span[0]
            in_scope = [
                row
                for row in entries
                if (row[2] == "USAGE_CHARGE" or (row[2] == "ADJUSTMENT" and row[13] == "reprice"))
                and span[0] <= row[11] < span[1]
                and self._in_scope(budget, row)
            ]
            value = 4 if budget.basis == Basis.BILLED_USAGE else 6
            assert spent == sum((row[value] for row in in_scope), Decimal(0))
            assert spent == self.spent(budget, span), (budget, period_start)
            holds = sum(
                (
                    Decimal(h["amount"])
                    for state, hold_list, _ in held
                    if state == "HELD"
                    for h in hold_list
                    if h["budget_id"] == str(budget.id)
                    and datetime.fromisoformat(h["period_start"]) == period_start
                ),
                Decimal(0),
            )
            assert reserved == holds == counter.reserved
            assert spent >= 0 and reserved >= 0
            if budget.hard:
                # What a cap refuses: usage, not settlements; corrections only downwards.
                enforced = sum(
                    (
                        min(Decimal(0), row[value]) if row[2] == "ADJUSTMENT" else row[value]
                        for row in in_scope
                        if row[1] not in settled_ids
                    ),
                    Decimal(0),
                )
                assert enforced == self.enforced(budget, span)
                # Overdue holds no sweep has given back yet do not count against the cap.
                live = reserved - (self.overdue(budget) if span == budget.window else 0)
                ceiling = max(budget.limit, counter.high)
                assert enforced + live <= ceiling, (budget, period_start, enforced, reserved)
        # Reservations are in the states the model expects.
        states = dict(
            await self.rows("SELECT id, state FROM reservations WHERE organization_id = :org")
        )
        assert states == {r.id: r.state for r in self.reservations}
        # Closed months are the model's.
        closed = await self.rows(
            "SELECT DISTINCT month FROM pnl_month_closes WHERE organization_id = :org"
        )
        assert {row[0] for row in closed} == self.closed
        # And `costgraph verify`'s checker finds every derived number equal to the ledger.
        report = await verify.verify(
            self.engine, self.limits.zone, organization_id=self.org.id, checks=LEDGER_CHECKS
        )
        assert report.clean, report.drift

    async def _check_plans(self, entries: Sequence[Any]) -> None:
        """Subscriptions, deferred revenue and auto-top-up settings are the model's."""
        names = {self.ids["P"]: "P", self.ids["Q"]: "Q"}
        if self.subs:
            await self._check_subscriptions(entries)
        if not self.top_ups:
            return
        # Auto-top-up: each setting as the model has it, one TOP_UP_REQUESTED alert per request.
        settings = await self.rows(
            "SELECT account_id, enabled, threshold, amount, requests, requested_at IS NOT NULL "
            "FROM auto_top_ups WHERE organization_id = :org"
        )
        assert {names[row[0]]: tuple(row[1:]) for row in settings} == {
            a: (t.enabled, t.threshold, t.amount, t.requests, t.requested)
            for a, t in self.top_ups.items()
        }
        alerts = await self.rows(
            "SELECT scope_id, count(*) FROM alerts WHERE organization_id = :org "
            "AND kind = 'TOP_UP_REQUESTED' GROUP BY scope_id"
        )
        assert {names[row[0]]: row[1] for row in alerts} == {
            a: t.requests for a, t in self.top_ups.items() if t.requests
        }

    async def _check_subscriptions(self, entries: Sequence[Any]) -> None:
        names = {self.ids["P"]: "P", self.ids["Q"]: "Q"}
        subs = await self.rows(
            "SELECT id, account_id, plan_code, billing, fee, included_tokens, seats, starts_at, "
            "ends_at, cancelled_at IS NOT NULL, pool_id FROM account_subscriptions "
            "WHERE organization_id = :org"
        )
        assert {row[0]: (names[row[1]], *row[2:]) for row in subs} == {
            s.id: (
                s.account,
                s.plan,
                s.billing,
                s.fee,
                s.included,
                s.seats,
                s.starts_at,
                s.ends_at,
                s.cancelled,
                s.pool,
            )
            for s in self.subs
        }
        # Deferred revenue: fees billed less credits, less revenue recognised (net of
        # reversals) — the months begun by each catch-up have earned their share.
        signs = dict(zip(FEE_TYPES, (1, -1, -1, 1), strict=True))
        ledger_deferred = sum(
            (signs[row[2]] * row[4] for row in entries if row[2] in signs), Decimal(0)
        )
        expected = sum((s.deferred() for s in self.subs), Decimal(0))
        assert ledger_deferred == expected, (ledger_deferred, expected)
        assert self.org is not None
        async with self.sessions() as session:
            bind_tenant(session.sync_session, self.org.id)
            shown = await fee_repo.deferred_balances(
                session, self.org.id, self.now + timedelta(seconds=1)
            )
        assert shown.get("USD", Decimal(0)) == expected, (shown, expected)

    def _in_scope(self, budget: ModelBudget, row: Sequence[Any]) -> bool:
        kind = budget.scope[0]
        ident = self.ids[kind]
        column = {
            "ORG": None,
            "P": 3,
            "Q": 3,
            "USER": 8,
            "DEPARTMENT": 9,
            "CUSTOMER_P": 10,
            "CUSTOMER_Q": 10,
        }[kind]
        return column is None or row[column] == ident


def test_ledger_state_machine(database_url: str, settings: Settings) -> None:
    LedgerMachine.database_url = database_url
    LedgerMachine.app_settings = settings
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings_for_run(),
    )
    for (rule_name, outcome), count in sorted(OUTCOMES.items()):
        print(f"{rule_name:24} {outcome:22} {count}")


def settings_for_run() -> Any:
    """Bounded for CI. Shrinking a failure replays sequences against the database and can
    take minutes, so CI reports the failing sequence as found; ``COSTGRAPH_STATEFUL_SHRINK=1``
    shrinks it to a minimal one when hunting a bug."""
    phases = [Phase.explicit, Phase.reuse, Phase.generate]
    if os.environ.get("COSTGRAPH_STATEFUL_SHRINK") == "1":
        phases.append(Phase.shrink)
    return settings(
        max_examples=EXAMPLES,
        stateful_step_count=STEPS,
        deadline=None,
        phases=phases,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


# --- regressions found by the machine (each a fixed sequence of its steps) ---


def plain_organisation(machine: LedgerMachine, included: int) -> None:
    """The fixed-sequence tests' organisation: account P on a plan with ``included`` tokens,
    no markup, no budget, 30.00 on the balance, one price for every model."""
    machine.organisation(
        included=included,
        allowance_on="P",
        markup_percent=Decimal(0),
        wanted=[],
        opening=Decimal("30.00"),
        price=Decimal(1000),
    )


def run_steps(
    database_url: str, settings: Settings, steps: Callable[[LedgerMachine], None]
) -> LedgerMachine:
    """One example, step by step, with the machine's checks after each."""
    LedgerMachine.database_url = database_url
    LedgerMachine.app_settings = settings
    machine = LedgerMachine()
    try:
        steps(machine)
    finally:
        machine.teardown()
    return machine


def test_a_cycle_keeps_its_allowance_after_a_move_to_a_plan_without_tokens(
    database_url: str, settings: Settings
) -> None:
    """A downgrade to a plan without tokens after usage opened the cycle applies from the
    next cycle: the rest of the running cycle's allowance is still drawn on (it was paid
    for: nothing was credited), and ``costgraph verify`` counts those draws (it used to
    recompute 0 for the cycle, and the write path charged the rest in full)."""

    def steps(machine: LedgerMachine) -> None:
        plain_organisation(machine, included=400)
        machine.counters_equal_the_ledger()
        machine.record_usage(UsageSpec("P", Decimal("0.300"), 300, False))  # opens the cycle
        machine.counters_equal_the_ledger()
        assert machine.plan_codes()[2] == "lite"  # no tokens
        machine.change_plan("P", 2)
        machine.counters_equal_the_ledger()
        machine.record_usage(UsageSpec("P", Decimal("0.200"), 200, False))  # 100 still covered
        machine.counters_equal_the_ledger()
        ((key, (included, used)),) = machine.counters.items()
        assert (key[0], key[1], included, used) == (False, "P", 400, 400)

    run_steps(database_url, settings, steps)


def test_an_annual_change_after_usage_earns_from_when_it_takes_effect(
    database_url: str, settings: Settings
) -> None:
    """An annual plan changed once usage opened the running month: the credit and charge
    cover the months after it, and are recognised in those months — the running month
    keeps the revenue of its old terms (no recognition is written now; deferred revenue
    moves by the net of the change)."""

    def steps(machine: LedgerMachine) -> None:
        plain_organisation(machine, included=0)
        assert machine.plan_codes()[0] == "alt" and machine.plan_codes()[2] == "lite"
        machine.subscribe("P", 0, "ANNUAL", "days", None)
        machine.counters_equal_the_ledger()
        machine.record_usage(UsageSpec("P", Decimal("0.100"), 100, False))  # opens the month
        machine.counters_equal_the_ledger()
        before = set(machine.entries)
        machine.change_plan("P", 2)
        machine.counters_equal_the_ledger()
        written = [machine.entries[k] for k in set(machine.entries) - before]
        assert sorted((e.type, e.amount) for e in written) == [
            ("SUBSCRIPTION_CREDIT", Decimal("220.00")),  # 11 months of 240.00
            ("SUBSCRIPTION_FEE", Decimal("114.58")),  # 11 months of 125.00
        ]

    run_steps(database_url, settings, steps)


def test_a_subscription_backdated_over_recorded_usage_is_refused(
    database_url: str, settings: Settings
) -> None:
    """A start at or before usage already recorded on the account is refused on startsAt,
    writing nothing — with no plan in force (the usage was charged in full) or under one
    (it drew on that plan's counter). It used to be accepted, and ``costgraph verify`` then
    placed that usage under the new subscription, whose counter was never drawn: drift. A
    start after the latest usage is accepted."""

    def steps(machine: LedgerMachine) -> None:
        plain_organisation(machine, included=0)
        assert machine.plan_codes()[0] == "alt" and machine.plan_codes()[2] == "lite"
        machine.record_usage(UsageSpec("Q", Decimal("0.100"), 100, False))  # no plan: in full
        machine.subscribe("Q", 0, "MONTHLY", "days", None)  # refused (the machine expects it)
        machine.counters_equal_the_ledger()
        assert [s.plan for s in machine.subs if s.account == "Q"] == []
        machine.subscribe("Q", 0, "MONTHLY", "now", None)
        machine.record_usage(UsageSpec("Q", Decimal("0.100"), 100, False))  # draws on alt
        machine.counters_equal_the_ledger()
        machine.subscribe("Q", 2, "MONTHLY", "hour", None)  # refused: under a plan too
        machine.counters_equal_the_ledger()
        assert [(s.plan, s.ends_at) for s in machine.subs if s.account == "Q"] == [("alt", None)]

    run_steps(database_url, settings, steps)


def test_usage_that_costs_nothing_draws_nothing_from_an_allowance(
    database_url: str, settings: Settings
) -> None:
    """A call billed 0 needs no cover, so it draws no included tokens — in the running cycle
    (it opens the cycle but uses nothing of it) or backfilled into a cycle that is over.
    The ledger then says which entries drew (those not charged in full): ``costgraph verify``
    used to count every zero-cost entry as drawing, and reported drift (+496 tokens, no
    counter) for a zero-cost backfill into an ended cycle, which the write path never draws
    on."""

    def steps(machine: LedgerMachine) -> None:
        plain_organisation(machine, included=1500)
        machine.counters_equal_the_ledger()
        # The example the machine found: zero-cost usage backfilled into an ended cycle.
        machine.backfill([UsageSpec("P", Decimal("0.000"), 496, False)], into="cycle")
        machine.counters_equal_the_ledger()
        assert machine.counters == {}
        # In the running cycle: it opens the cycle, draws nothing; paid usage then draws.
        machine.record_usage(UsageSpec("P", Decimal("0.000"), 496, False))
        machine.counters_equal_the_ledger()
        ((key, (included, used)),) = machine.counters.items()
        assert (key[0], key[1], included, used) == (False, "P", 1500, 0)
        machine.record_usage(UsageSpec("P", Decimal("0.300"), 300, False))
        machine.counters_equal_the_ledger()
        assert machine.counters[key] == [1500, 300]

    run_steps(database_url, settings, steps)
