"""Withdrawals, auto-top-up and the allowance catalog (weights): thin fields over the domain."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator

import strawberry

from costgraph.auth.permissions import Right
from costgraph.billing import allowance_weights, ledger, top_ups
from costgraph.billing.weights import WeightSpec
from costgraph.resolvers.access import needs, reads_account
from costgraph.resolvers.errors import result_of
from costgraph.resolvers.ids import decode_id
from costgraph.resolvers.ledger import _payment, write_entry
from costgraph.schema import top_ups as types
from costgraph.schema.context import Context
from costgraph.schema.types import Info
from costgraph.subscriptions.top_ups import top_up_feed


@strawberry.type
class TopUpQuery:
    @strawberry.field(
        description="An account's auto-top-up setting (null: none set). A member reads its "
        "own account's.",
        extensions=[reads_account()],
    )
    async def auto_top_up(self, info: Info, account_id: strawberry.ID) -> types.AutoTopUp | None:
        ident = decode_id(account_id, "account", "accountId")
        async with info.context.reading() as session:
            row = await top_ups.auto_top_up(session, ident)
        return None if row is None else types.AutoTopUp.of(row)

    @strawberry.field(
        description="The organisation's allowance catalog: the weights that turn usage into "
        "budgeted tokens (unlisted: MODEL and FEATURE 1, UNIT 0).",
        extensions=[needs(Right.READ_USAGE)],
    )
    async def allowance_weights(self, info: Info) -> list[types.AllowanceWeight]:
        async with info.context.reading() as session:
            rows = await allowance_weights.list_weights(session)
        return [types.AllowanceWeight.of(row) for row in rows]


@strawberry.type
class TopUpMutation:
    @strawberry.mutation(
        description="Money paid back out of an account's prepaid balance; never more than the "
        "balance (INSUFFICIENT_BALANCE). In the P&L: revenueBySource.withdrawals, subtracted "
        "from revenue like a refund.",
        extensions=[needs(Right.WRITE_BILLING)],
    )
    async def withdraw(self, info: Info, input: types.WithdrawalInput) -> types.WithdrawResult:
        return await write_entry(info.context, lambda: _payment(input), ledger.withdraw)

    @strawberry.mutation(
        description="Set an account's auto-top-up (threshold and amount on its prepaid "
        "balance). Evaluated at once: an account already below its threshold requests a "
        "top-up now (topUpRequested).",
        extensions=[needs(Right.WRITE_BILLING)],
    )
    async def set_auto_top_up(
        self, info: Info, input: types.AutoTopUpInput
    ) -> types.AutoTopUpResult:
        context = info.context

        async def run() -> types.AutoTopUp:
            spec = top_ups.AutoTopUpSpec(
                account_id=decode_id(input.account_id, "account", "input.accountId"),
                enabled=input.enabled,
                threshold=input.threshold,
                amount=input.amount,
            )
            await context.write(lambda uow: top_ups.set_auto_top_up(uow.session, uow.org, spec))
            async with context.reading() as session:  # as evaluated before the commit
                row = await top_ups.auto_top_up(session, spec.account_id)
            assert row is not None
            return types.AutoTopUp.of(row)

        return await result_of(run)

    @strawberry.mutation(
        description="Set one weight of the allowance catalog (usage written from now on).",
        extensions=[needs(Right.MANAGE_ORGANIZATION)],
    )
    async def set_allowance_weight(
        self, info: Info, input: types.AllowanceWeightInput
    ) -> types.AllowanceWeightResult:
        context = info.context
        spec = WeightSpec(
            dimension=input.dimension,
            name=input.name,
            weight=input.weight,
            provider=input.provider,
        )

        async def run() -> types.AllowanceWeight:
            row = await context.write(
                lambda uow: allowance_weights.set_weight(uow.session, uow.org, spec)
            )
            return types.AllowanceWeight.of(row)

        return await result_of(run)


async def _requests(
    context: Context, account_id: uuid.UUID
) -> AsyncGenerator[types.TopUpRequest, None]:
    org = await context.org()
    async for notice in top_up_feed(context.app.bus, org.id, account_id):
        yield types.TopUpRequest.of(notice)


@strawberry.type
class TopUpSubscription:
    @strawberry.subscription(
        description="Top-ups an account's auto-top-up requests, as they are raised (once per "
        "crossing of its threshold), for the integrator's payment rail.",
        extensions=[reads_account()],
    )
    async def top_up_requested(
        self, info: Info, account_id: strawberry.ID
    ) -> AsyncGenerator[types.TopUpRequest, None]:
        context = info.context
        ident = decode_id(account_id, "account", "accountId")
        async with context.reading() as session:  # NOT_FOUND: unknown or another tenant's
            await top_ups.require_account(session, ident, "accountId")
        return _requests(context, ident)
