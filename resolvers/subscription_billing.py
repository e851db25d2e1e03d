"""Subscription changes: ``changePlan``, ``setSeats``, ``cancelSubscription`` (thin: each calls
one action of billing/subscription_billing.py in one unit of work)."""

from __future__ import annotations

import strawberry

from costgraph.auth.permissions import Right
from costgraph.billing import subscription_billing
from costgraph.resolvers.access import needs
from costgraph.resolvers.ids import decode_id
from costgraph.schema.pricing import AccountSubscription
from costgraph.schema.subscription_billing import ChangePlanInput, SetSeatsInput, SubscriptionChange
from costgraph.schema.types import Info, LedgerEntry


@strawberry.type
class SubscriptionBillingMutation:
    @strawberry.mutation(
        description="Upgrade or downgrade now: the unused part of the old fee is credited "
        "and the new fee charged for the time left in the cycle (prorated, rounded to the "
        "minor unit half-to-even); the cycle anchor stays and later cycles bill the new fee. "
        "The running cycle keeps the allowance it opened with. The new plan's tier rules hold "
        "(PLAN_LIMIT). Between pooled plans the whole team moves: ask it on the team "
        "subscription's account. Between a pooled and an unpooled plan, subscribe again.",
        extensions=[needs(Right.WRITE_BILLING)],
    )
    async def change_plan(self, info: Info, input: ChangePlanInput) -> SubscriptionChange:
        account_id = decode_id(input.account_id, "account", "input.accountId")
        billing = None if input.billing is None else input.billing.value
        row, entries = await info.context.write(
            lambda uow: subscription_billing.change_plan(
                uow.session, uow.org, account_id, input.plan_code, billing
            )
        )
        return SubscriptionChange(
            subscription=AccountSubscription.of(row),
            entries=[LedgerEntry.of(e) for e in entries],
        )

    @strawberry.mutation(
        description="Set a team subscription's seats now: seats added are charged, seats "
        "removed credited, at the plan's seat fee for the time left in the cycle. The same "
        "count again writes nothing.",
        extensions=[needs(Right.WRITE_BILLING)],
    )
    async def set_seats(self, info: Info, input: SetSeatsInput) -> SubscriptionChange:
        account_id = decode_id(input.account_id, "account", "input.accountId")
        row, entries = await info.context.write(
            lambda uow: subscription_billing.set_seats(
                uow.session, uow.org, account_id, input.seats
            )
        )
        return SubscriptionChange(
            subscription=AccountSubscription.of(row),
            entries=[LedgerEntry.of(e) for e in entries],
        )

    @strawberry.mutation(
        description="Cancel at the period's end: endsAt becomes the running cycle's end; no "
        "later fee is billed; the allowance stays until then.",
        extensions=[needs(Right.WRITE_BILLING)],
    )
    async def cancel_subscription(
        self, info: Info, account_id: strawberry.ID
    ) -> AccountSubscription:
        ident = decode_id(account_id, "account", "accountId")
        row = await info.context.write(
            lambda uow: subscription_billing.cancel_subscription(uow.session, uow.org, ident)
        )
        return AccountSubscription.of(row)
