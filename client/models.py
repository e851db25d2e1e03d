"""Typed results: what the client's reads and writes answer.

Each class is a selection of the GraphQL type named in ``TYPENAME`` (see ``shapes.py``);
enums arrive as their names (``str``), money as ``Decimal``, times as aware ``datetime``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class CurrencyPair:
    TYPENAME: ClassVar[str] = "CurrencyPair"
    base: str
    quote: str


@dataclass(frozen=True, slots=True)
class Account:
    TYPENAME: ClassVar[str] = "Account"
    id: str
    customer_id: str
    name: str
    currency: str
    postpaid: bool


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    TYPENAME: ClassVar[str] = "LedgerEntry"
    id: str
    type: str
    account_id: str | None
    occurred_at: dt.datetime
    currency: str
    amount: Decimal
    balance_delta: Decimal
    ai_cost: Decimal
    provider: str | None
    model: str | None
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    feature: str | None
    agent: str | None
    request_id: str | None
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class UsageRecorded:
    """One event written (or replayed: ``replayed`` is true and nothing new was written)."""

    TYPENAME: ClassVar[str] = "UsageRecorded"
    entry: LedgerEntry
    replayed: bool
    priority_class: str


@dataclass(frozen=True, slots=True)
class UsageBatchRecorded:
    TYPENAME: ClassVar[str] = "UsageBatchRecorded"
    recorded: int
    replayed: int
    entries: list[LedgerEntry]


@dataclass(frozen=True, slots=True)
class Reservation:
    TYPENAME: ClassVar[str] = "Reservation"
    id: str
    idempotency_key: str
    account_id: str
    state: str
    ai_cost: Decimal
    billed: Decimal
    currency: str
    expires_at: dt.datetime
    settled_entry_id: str | None


@dataclass(frozen=True, slots=True)
class UsageAuthorized:
    TYPENAME: ClassVar[str] = "UsageAuthorized"
    reservation: Reservation
    replayed: bool
    priority_class: str


@dataclass(frozen=True, slots=True)
class TokenTotals:
    TYPENAME: ClassVar[str] = "TokenTotals"
    input: int
    output: int
    cached_input: int
    cache_write: int
    reasoning: int
    total: int


@dataclass(frozen=True, slots=True)
class RevenueBySource:
    TYPENAME: ClassVar[str] = "RevenueBySource"
    subscriptions: Decimal
    top_ups: Decimal
    billed_usage: Decimal
    refunds: Decimal
    withdrawals: Decimal


@dataclass(frozen=True, slots=True)
class PnL:
    """Profit and loss over ``[start, end)`` in ``currency``."""

    TYPENAME: ClassVar[str] = "PnL"
    currency: str
    start: dt.datetime
    end: dt.datetime
    revenue: Decimal
    revenue_by_source: RevenueBySource
    ai_cost: Decimal
    billed_usage: Decimal
    markup_earned: Decimal
    allowance_usage: Decimal
    platform_fees: Decimal
    balance_adjustments: Decimal
    margin: Decimal
    margin_percent: Decimal | None
    net_impact: Decimal
    event_count: int
    tokens: TokenTotals
    missing_rates: list[CurrencyPair] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Usage of one group (and time bucket) in ``currency``."""

    TYPENAME: ClassVar[str] = "UsageRow"
    bucket: dt.datetime | None
    provider: str | None
    model: str | None
    customer_id: str | None
    account_id: str | None
    department_id: str | None
    user_id: str | None
    feature: str | None
    agent: str | None
    currency: str
    events: int
    tokens: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    ai_cost: Decimal
    billed_usage: Decimal


@dataclass(frozen=True, slots=True)
class BudgetScope:
    TYPENAME: ClassVar[str] = "BudgetScope"
    kind: str
    id: str


@dataclass(frozen=True, slots=True)
class Budget:
    TYPENAME: ClassVar[str] = "Budget"
    id: str
    scope: BudgetScope
    period: str
    limit: Decimal
    currency: str
    basis: str
    hard_cap: bool
    thresholds: list[int]


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    TYPENAME: ClassVar[str] = "BudgetStatus"
    budget: Budget
    period_start: dt.datetime
    resets_at: dt.datetime
    spent: Decimal
    reserved: Decimal
    remaining: Decimal
    percent_used: Decimal
    stages_reached: list[int]
    can_evaluate: bool


@dataclass(frozen=True, slots=True)
class Allowance:
    TYPENAME: ClassVar[str] = "Allowance"
    account_id: str
    plan_code: str | None
    included: int
    used: int
    remaining: int
    top_up_balance: Decimal
    currency: str
    postpaid: bool
    cycle_start: dt.datetime | None
    resets_at: dt.datetime | None
    banner: str
    pooled: bool
    seats: int


@dataclass(frozen=True, slots=True)
class EstimateInterval:
    TYPENAME: ClassVar[str] = "EstimateInterval"
    level: int
    low: Decimal
    high: Decimal


@dataclass(frozen=True, slots=True)
class Forecast:
    """Where a scope's spend will stand at the end of its period (estimates but ``spent``)."""

    TYPENAME: ClassVar[str] = "Forecast"
    scope: BudgetScope
    basis: str
    currency: str
    period: str
    period_start: dt.datetime
    period_end: dt.datetime
    budget_id: str | None
    limit: Decimal | None
    as_of: dt.datetime
    spent: Decimal
    projected_total: Decimal
    interval80: EstimateInterval | None
    interval95: EstimateInterval | None
    limit_crossed_on: dt.date | None
    limit_reached: bool
    probability_over_limit: Decimal | None
    method: str
    note: str
    history_days: int


@dataclass(frozen=True, slots=True)
class UsageTotals:
    TYPENAME: ClassVar[str] = "UsageTotals"
    currency: str
    events: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    total_tokens: int
    ai_cost: Decimal
    billed_usage: Decimal


@dataclass(frozen=True, slots=True)
class UsageChange:
    TYPENAME: ClassVar[str] = "UsageChange"
    entry_id: str
    account_id: str | None
    currency: str
    events: int
    total_tokens: int
    ai_cost: Decimal
    billed_usage: Decimal
    occurred_at: dt.datetime


@dataclass(frozen=True, slots=True)
class UsageUpdate:
    """A live total: SNAPSHOT on (re)connecting, then EVENT per write (see ``live.py``)."""

    TYPENAME: ClassVar[str] = "UsageUpdate"
    kind: str
    scope_kind: str
    scope_id: str
    period_start: dt.datetime
    period_end: dt.datetime
    totals: list[UsageTotals]
    event: UsageChange | None
    events_included: int


#: Every result dataclass, for the SDL check.
RESULTS: tuple[type, ...] = (
    CurrencyPair,
    Account,
    LedgerEntry,
    UsageRecorded,
    UsageBatchRecorded,
    Reservation,
    UsageAuthorized,
    TokenTotals,
    RevenueBySource,
    PnL,
    UsageRow,
    BudgetScope,
    Budget,
    BudgetStatus,
    Allowance,
    EstimateInterval,
    Forecast,
    UsageTotals,
    UsageChange,
    UsageUpdate,
)
