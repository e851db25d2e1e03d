"""Withdrawals, auto-top-up and allowance weights: inputs, results and types."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Annotated

import strawberry

from costgraph.billing.weights import Dimension
from costgraph.models.top_ups import AllowanceWeight as WeightRow
from costgraph.models.top_ups import AutoTopUp as AutoTopUpRow
from costgraph.schema.results import (
    CurrencyMismatch,
    IdempotencyConflict,
    LedgerEntryRecorded,
    NotFound,
    PeriodClosed,
    UserError,
    ValidationFailed,
)
from costgraph.schema.scalars import JSON, CurrencyCode
from costgraph.subscriptions.events import AlertNotice

strawberry.enum(
    Dimension,
    name="AllowanceWeightDimension",
    description="MODEL: a multiplier on a model's tokens (default 1); FEATURE: a multiplier on "
    "all an event of the feature consumes (default 1); UNIT: budgeted tokens per unit of a "
    "unit kind (default 0: units draw nothing from the allowance).",
)
AllowanceWeightDimension = Dimension


@strawberry.input(description="Money paid back out of an account's prepaid balance.")
class WithdrawalInput:
    idempotency_key: str = strawberry.field(
        description="Per organisation, like a deposit's: a retry with the same body replays."
    )
    account_id: strawberry.ID
    amount: decimal.Decimal = strawberry.field(
        description="Greater than zero, at most the currency's minor-unit precision, at most "
        "the prepaid balance (else INSUFFICIENT_BALANCE)."
    )
    currency: CurrencyCode
    occurred_at: dt.datetime | None = None
    metadata: JSON | None = strawberry.field(
        default=None, description="E.g. the payout's id for reconciliation."
    )


@strawberry.type(
    description="Refused: the withdrawal is more than the account's prepaid balance. "
    "Nothing was written."
)
class InsufficientBalance(UserError):
    account_id: strawberry.ID
    requested: decimal.Decimal
    balance: decimal.Decimal = strawberry.field(description="The prepaid balance now.")
    currency: CurrencyCode


WithdrawResult = Annotated[
    LedgerEntryRecorded
    | InsufficientBalance
    | ValidationFailed
    | NotFound
    | IdempotencyConflict
    | CurrencyMismatch
    | PeriodClosed,
    strawberry.union("WithdrawResult"),
]


@strawberry.input(description="An account's auto-top-up, in the account's currency.")
class AutoTopUpInput:
    account_id: strawberry.ID
    enabled: bool
    threshold: decimal.Decimal = strawberry.field(
        description="When the prepaid balance is below it, a top-up is requested (once per "
        "crossing: again only after the balance is back at or above it). Zero or more."
    )
    amount: decimal.Decimal = strawberry.field(description="The top-up to request; > 0.")


@strawberry.type(description="An account's auto-top-up setting.")
class AutoTopUp:
    account_id: strawberry.ID
    enabled: bool
    threshold: decimal.Decimal
    amount: decimal.Decimal
    currency: CurrencyCode
    requested_at: dt.datetime | None = strawberry.field(
        description="When the outstanding request was raised; null: none outstanding (armed)."
    )
    requests: int = strawberry.field(description="Requests raised so far.")

    @classmethod
    def of(cls, row: AutoTopUpRow) -> AutoTopUp:
        return cls(
            account_id=strawberry.ID(str(row.account_id)),
            enabled=row.enabled,
            threshold=row.threshold,
            amount=row.amount,
            currency=CurrencyCode(row.currency),
            requested_at=row.requested_at,
            requests=row.requests,
        )


AutoTopUpResult = Annotated[
    AutoTopUp | ValidationFailed | NotFound,
    strawberry.union("AutoTopUpResult"),
]


@strawberry.type(
    description="A top-up requested by an account's auto-top-up: charge `amount` on the "
    "payment rail, then record it (deposit or the Stripe webhook)."
)
class TopUpRequest:
    alert_id: strawberry.ID = strawberry.field(description="The TOP_UP_REQUESTED alert.")
    account_id: strawberry.ID
    amount: decimal.Decimal
    currency: CurrencyCode
    balance: decimal.Decimal = strawberry.field(description="The balance that crossed.")
    threshold: decimal.Decimal
    message: str
    requested_at: dt.datetime

    @classmethod
    def of(cls, notice: AlertNotice) -> TopUpRequest:
        zero = decimal.Decimal(0)
        return cls(
            alert_id=strawberry.ID(str(notice.id)),
            account_id=strawberry.ID(str(notice.scope_id)),
            amount=notice.requested_amount if notice.requested_amount is not None else zero,
            currency=CurrencyCode(notice.currency or ""),
            balance=notice.spent if notice.spent is not None else zero,
            threshold=notice.limit if notice.limit is not None else zero,
            message=notice.message,
            requested_at=notice.raised_at,
        )


@strawberry.input(description="One weight of the organisation's allowance catalog.")
class AllowanceWeightInput:
    dimension: AllowanceWeightDimension
    name: str = strawberry.field(
        description="The model (or * for every model of the provider), the feature tag, or "
        "the unit kind (IMAGE, AUDIO_SECOND, VIDEO_SECOND, REQUEST, CHARACTER)."
    )
    weight: decimal.Decimal = strawberry.field(
        description="Zero or more, at most 6 decimal places: a multiplier (MODEL, FEATURE; at "
        "most 1000000) or budgeted tokens per unit (UNIT; at most 1000000000)."
    )
    provider: str | None = strawberry.field(default=None, description="MODEL only.")


@strawberry.type(
    description="One weight of the allowance catalog; usage written from its change on is "
    "weighed with it (ledger entries keep their weight and budgeted tokens)."
)
class AllowanceWeight:
    dimension: AllowanceWeightDimension
    provider: str | None
    name: str
    weight: decimal.Decimal
    updated_at: dt.datetime

    @classmethod
    def of(cls, row: WeightRow) -> AllowanceWeight:
        return cls(
            dimension=Dimension(row.dimension),
            provider=row.provider or None,
            name=row.name,
            weight=row.weight,
            updated_at=row.updated_at,
        )


AllowanceWeightResult = Annotated[
    AllowanceWeight | ValidationFailed,
    strawberry.union("AllowanceWeightResult"),
]
