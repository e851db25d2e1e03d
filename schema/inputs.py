"""Input types of the contract."""

from __future__ import annotations

import datetime as dt
import decimal
import enum

import strawberry

from costgraph.models.ledger import EntryType
from costgraph.schema import fast_inputs
from costgraph.schema.scalars import JSON, CurrencyCode


@strawberry.enum
class UnitKind(enum.Enum):
    IMAGE = "IMAGE"
    AUDIO_SECOND = "AUDIO_SECOND"
    VIDEO_SECOND = "VIDEO_SECOND"
    REQUEST = "REQUEST"
    CHARACTER = "CHARACTER"


@strawberry.input
class UnitUsageInput:
    kind: UnitKind
    quantity: decimal.Decimal


@strawberry.input(description="One AI call's usage.")
class UsageEventInput:
    idempotency_key: str = strawberry.field(
        description="Per organisation: a retry with the same key and body replays; "
        "another body is IDEMPOTENCY_CONFLICT."
    )
    account_id: strawberry.ID
    occurred_at: dt.datetime
    provider: str
    model: str
    input_tokens: int | None = 0
    output_tokens: int | None = 0
    cached_input_tokens: int | None = 0
    reasoning_tokens: int | None = 0
    cache_write_tokens: int | None = strawberry.field(
        default=0, description="Prompt tokens written to the provider's cache."
    )
    units: list[UnitUsageInput] | None = None
    user_id: strawberry.ID | None = None
    feature: str | None = None
    agent: str | None = None
    request_id: str | None = None
    metadata: JSON | None = None
    provider_cost: decimal.Decimal | None = strawberry.field(
        default=None,
        description="The caller's own provider cost, overriding the catalog (caller-priced).",
    )
    provider_currency: CurrencyCode | None = None


@strawberry.input
class OrganizationInput:
    name: str
    slug: str
    reporting_currency: CurrencyCode


@strawberry.input
class CustomerInput:
    name: str
    external_id: str | None = None


@strawberry.input
class AccountInput:
    customer_id: strawberry.ID
    name: str
    postpaid: bool = False
    currency: CurrencyCode | None = strawberry.field(
        default=None, description="Defaults to the organisation's reporting currency."
    )


@strawberry.input
class DepartmentInput:
    name: str


@strawberry.input
class UserInput:
    email: str
    name: str | None = None
    department_id: strawberry.ID | None = None


@strawberry.input(description="A top-up.")
class DepositInput:
    idempotency_key: str
    account_id: strawberry.ID
    amount: decimal.Decimal = strawberry.field(
        description="Greater than zero, at most the currency's minor-unit precision."
    )
    currency: CurrencyCode
    occurred_at: dt.datetime | None = None
    metadata: JSON | None = None


@strawberry.input(description="A plan's fee received.")
class SubscriptionPaymentInput:
    idempotency_key: str
    account_id: strawberry.ID
    amount: decimal.Decimal
    currency: CurrencyCode
    plan_id: str | None = None
    occurred_at: dt.datetime | None = None
    metadata: JSON | None = None


@strawberry.input(description="A signed correction of an account's balance.")
class AdjustmentInput:
    idempotency_key: str
    account_id: strawberry.ID
    amount: decimal.Decimal = strawberry.field(description="Signed; not zero.")
    currency: CurrencyCode
    description: str | None = None
    occurred_at: dt.datetime | None = None
    metadata: JSON | None = None


@strawberry.input(description="Money returned against a deposit or subscription payment.")
class RefundInput:
    idempotency_key: str
    entry_id: strawberry.ID
    amount: decimal.Decimal
    reason: str | None = None


@strawberry.input
class PlatformFeeInput:
    idempotency_key: str
    amount: decimal.Decimal
    currency: CurrencyCode
    account_id: strawberry.ID | None = None
    description: str | None = None
    occurred_at: dt.datetime | None = strawberry.field(
        default=None, description="Default: now; within the late-arrival window."
    )


@strawberry.input(description="Half-open: [start, end).")
class DateRange:
    start: dt.datetime
    end: dt.datetime


@strawberry.input
class LedgerFilter:
    range: DateRange | None = None
    types: list[EntryType] | None = None
    account_id: strawberry.ID | None = None
    customer_id: strawberry.ID | None = None
    user_id: strawberry.ID | None = None
    model: str | None = None
    feature: str | None = None
    agent: str | None = None


# The write path's hot input: built without strawberry's per-value conversion (same objects).
fast_inputs.install(UsageEventInput)
