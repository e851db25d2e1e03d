"""Inputs and results of subscription changes: plan changes, seats, cancellation."""

from __future__ import annotations

import strawberry

from costgraph.schema.pricing import AccountSubscription, BillingCycle
from costgraph.schema.types import LedgerEntry


@strawberry.input(description="Move an account's subscription to another plan, now.")
class ChangePlanInput:
    account_id: strawberry.ID
    plan_code: str
    billing: BillingCycle | None = strawberry.field(
        default=None,
        description="Must be the subscription's own cycle if given (a plan change keeps it).",
    )


@strawberry.input(description="Set the seats of a team (pooled plan) subscription, now.")
class SetSeatsInput:
    account_id: strawberry.ID
    seats: int


@strawberry.type(
    description="A subscription after a change, and the ledger entries the change wrote: "
    "the prorated credit of the old terms and charge of the new for the time left in the "
    "cycle, and the revenue they move in the running month."
)
class SubscriptionChange:
    subscription: AccountSubscription
    entries: list[LedgerEntry]
