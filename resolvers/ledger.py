"""Recording into and reading the ledger."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.auth.permissions import Right
from costgraph.billing import commands, ledger, ledger_repository
from costgraph.billing.directory import OrgContext
from costgraph.billing.entries import Entry
from costgraph.kernel.errors import ValidationFailed
from costgraph.kernel.pagination import page_size
from costgraph.resolvers import counting
from costgraph.resolvers.access import needs
from costgraph.resolvers.errors import result_of
from costgraph.resolvers.ids import decode_id, decode_optional
from costgraph.schema import inputs, results
from costgraph.schema.context import Context
from costgraph.schema.top_ups import WithdrawalInput
from costgraph.schema.types import Connection, Info, LedgerEntry, connection, entry_cursor


def _metadata(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValidationFailed("metadata must be a JSON object", "metadata")
    return value


Known = dict[tuple[str, str], uuid.UUID]


def _id(value: str, kind: str, field: str, known: Known | None) -> uuid.UUID:
    """``decode_id``, remembered in ``known`` by kind and text (a batch's few accounts and
    users recur; an account's id sent as a user's is still refused)."""
    if known is not None and (found := known.get((kind, value))) is not None:
        return found
    decoded = decode_id(value, kind, field)
    if known is not None:
        known[(kind, value)] = decoded
    return decoded


def usage_event(
    event: inputs.UsageEventInput, path: str, known: Known | None = None
) -> commands.UsageEvent:
    user_id = event.user_id
    return commands.UsageEvent(
        idempotency_key=event.idempotency_key,
        account_id=_id(event.account_id, "account", f"{path}.accountId", known),
        occurred_at=event.occurred_at,
        provider=event.provider,
        model=event.model,
        input_tokens=event.input_tokens or 0,
        output_tokens=event.output_tokens or 0,
        cached_input_tokens=event.cached_input_tokens or 0,
        reasoning_tokens=event.reasoning_tokens or 0,
        cache_write_tokens=event.cache_write_tokens or 0,
        units=tuple(commands.UnitUsage(u.kind.value, u.quantity) for u in event.units or ()),
        user_id=None if user_id is None else _id(user_id, "user", f"{path}.userId", known),
        feature=event.feature,
        agent=event.agent,
        request_id=event.request_id,
        metadata=_metadata(event.metadata),
        provider_cost=event.provider_cost,
        provider_currency=event.provider_currency,
    )


def _payment(
    input: inputs.DepositInput
    | inputs.SubscriptionPaymentInput
    | inputs.AdjustmentInput
    | WithdrawalInput,
) -> commands.Payment:
    return commands.Payment(
        idempotency_key=input.idempotency_key,
        account_id=decode_id(input.account_id, "account", "input.accountId"),
        amount=input.amount,
        currency=input.currency,
        occurred_at=input.occurred_at,
        metadata=_metadata(input.metadata),
        plan_code=getattr(input, "plan_id", None),
        description=getattr(input, "description", None),
    )


def _refund(input: inputs.RefundInput) -> commands.Refund:
    return commands.Refund(
        idempotency_key=input.idempotency_key,
        entry_id=decode_id(input.entry_id, "ledger entry", "input.entryId"),
        amount=input.amount,
        reason=input.reason,
    )


def _platform_fee(input: inputs.PlatformFeeInput) -> commands.PlatformFee:
    return commands.PlatformFee(
        idempotency_key=input.idempotency_key,
        amount=input.amount,
        currency=input.currency,
        account_id=decode_optional(input.account_id, "account", "input.accountId"),
        description=input.description,
        occurred_at=input.occurred_at,
    )


_Command = TypeVar("_Command")


async def write_entry(
    context: Context,
    decode: Callable[[], _Command],
    action: Callable[[AsyncSession, OrgContext, _Command, commands.Limits], Awaitable[Entry]],
) -> results.LedgerEntryRecorded | Any:
    """A mutation that writes one ledger entry (deposit, adjust, refund, withdraw, …): decode
    its input, run ``action`` as one unit, answer ``LedgerEntryRecorded`` or the failure's
    union member."""

    async def run() -> results.LedgerEntryRecorded:
        command = decode()
        entry = await context.write(
            lambda uow: action(uow.session, uow.org, command, context.app.limits)
        )
        return results.LedgerEntryRecorded(entry=LedgerEntry.of(entry), replayed=entry.replayed)

    return await result_of(run)


BatchAction = Callable[
    [AsyncSession, OrgContext, Sequence[commands.UsageEvent], commands.Limits],
    Awaitable[list[Entry]],
]


async def _usage_batch(
    context: Context, input: list[inputs.UsageEventInput], action: BatchAction, via: str
) -> results.RecordUsageBatchResult:
    """recordUsageBatch and backfillUsage: decode, write as one unit, count the outcome."""

    async def run() -> results.UsageBatchRecorded:
        limits = context.app.limits
        if len(input) > limits.max_batch_events:
            raise ValidationFailed(
                f"a batch holds at most {limits.max_batch_events} events (got {len(input)})",
                "input",
            )
        known: Known = {}
        events = [usage_event(e, f"input.{i}", known) for i, e in enumerate(input)]
        entries = await context.write(lambda uow: action(uow.session, uow.org, events, limits))
        replayed = sum(1 for e in entries if e.replayed)
        return results.UsageBatchRecorded(
            recorded_entries=entries, recorded=len(entries) - replayed, replayed=replayed
        )

    result = await result_of(run)
    counting.usage(context.app.metrics, via, result, events=len(input))
    return result


@strawberry.type
class LedgerQuery:
    @strawberry.field(
        description="Ledger entries, newest first, with a stable cursor.",
        extensions=[needs(Right.READ_LEDGER)],
    )
    async def ledger(
        self,
        info: Info,
        filter: inputs.LedgerFilter | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[LedgerEntry]:
        size = page_size(first, 50, info.context.app.limits.max_page_size)
        filters = _ledger_filter(filter)
        async with info.context.reading() as session:
            entries, more = await ledger_repository.list_entries(session, filters, size, after)
        return connection(entries, more, entry_cursor, LedgerEntry.of)


def _ledger_filter(value: inputs.LedgerFilter | None) -> commands.LedgerFilter:
    if value is None:
        return commands.LedgerFilter()
    if value.range is not None and value.range.end <= value.range.start:
        raise ValidationFailed("range end must be after its start", "filter.range")
    return commands.LedgerFilter(
        start=None if value.range is None else value.range.start,
        end=None if value.range is None else value.range.end,
        types=tuple(t.value for t in value.types or ()),
        account_id=decode_optional(value.account_id, "account", "filter.accountId"),
        customer_id=decode_optional(value.customer_id, "customer", "filter.customerId"),
        user_id=decode_optional(value.user_id, "user", "filter.userId"),
        model=value.model,
        feature=value.feature,
        agent=value.agent,
    )


@strawberry.type
class LedgerMutation:
    @strawberry.mutation(
        description="Record one AI call's usage, priced and charged exactly once.",
        extensions=[needs(Right.WRITE_USAGE)],
    )
    async def record_usage(
        self, info: Info, input: inputs.UsageEventInput
    ) -> results.RecordUsageResult:
        context = info.context

        async def run() -> results.UsageRecorded:
            event = usage_event(input, "input")
            entry = await context.write(
                lambda uow: ledger.record_usage(uow.session, uow.org, event, context.app.limits)
            )
            return results.UsageRecorded(entry=LedgerEntry.of(entry), replayed=entry.replayed)

        result = await result_of(run)
        counting.usage(context.app.metrics, "recordUsage", result)
        return result

    @strawberry.mutation(
        description="Record up to the configured maximum of events (1,000) atomically.",
        extensions=[needs(Right.WRITE_USAGE)],
    )
    async def record_usage_batch(
        self, info: Info, input: list[inputs.UsageEventInput]
    ) -> results.RecordUsageBatchResult:
        return await _usage_batch(
            info.context, input, ledger.record_usage_batch, "recordUsageBatch"
        )

    @strawberry.mutation(
        description="Record history older than the late-arrival window (an org_admin's explicit "
        "backfill, as many events as recordUsageBatch takes). Never dated in a closed month "
        "(PERIOD_CLOSED), never drawing on an allowance cycle that is over (charged in full), "
        "and held to every hard cap in the period each event lands in.",
        extensions=[needs(Right.BACKFILL_USAGE)],
    )
    async def backfill_usage(
        self, info: Info, input: list[inputs.UsageEventInput]
    ) -> results.RecordUsageBatchResult:
        return await _usage_batch(info.context, input, ledger.backfill_usage, "backfillUsage")

    @strawberry.mutation(description="A top-up.", extensions=[needs(Right.WRITE_BILLING)])
    async def deposit(self, info: Info, input: inputs.DepositInput) -> results.LedgerEntryResult:
        return await write_entry(info.context, lambda: _payment(input), ledger.deposit)

    @strawberry.mutation(extensions=[needs(Right.WRITE_BILLING)])
    async def record_subscription_payment(
        self, info: Info, input: inputs.SubscriptionPaymentInput
    ) -> results.LedgerEntryResult:
        return await write_entry(
            info.context, lambda: _payment(input), ledger.record_subscription_payment
        )

    @strawberry.mutation(extensions=[needs(Right.WRITE_BILLING)])
    async def adjust(self, info: Info, input: inputs.AdjustmentInput) -> results.LedgerEntryResult:
        return await write_entry(info.context, lambda: _payment(input), ledger.adjust)

    @strawberry.mutation(extensions=[needs(Right.WRITE_BILLING)])
    async def refund(self, info: Info, input: inputs.RefundInput) -> results.LedgerEntryResult:
        return await write_entry(info.context, lambda: _refund(input), ledger.refund)

    @strawberry.mutation(extensions=[needs(Right.WRITE_BILLING)])
    async def record_platform_fee(
        self, info: Info, input: inputs.PlatformFeeInput
    ) -> results.LedgerEntryResult:
        return await write_entry(
            info.context, lambda: _platform_fee(input), ledger.record_platform_fee
        )
