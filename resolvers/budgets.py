"""Budgets, their status, and the reserve → settle / release flow of an AI call."""

from __future__ import annotations

import uuid

import strawberry

from costgraph.auth.permissions import Right
from costgraph.billing import budget_repository, budgets, reservations
from costgraph.billing.allowance_status import allowance_status
from costgraph.billing.scopes import Scope, ScopeKind
from costgraph.kernel.clock import utcnow
from costgraph.kernel.errors import ValidationFailed
from costgraph.resolvers import counting
from costgraph.resolvers.access import needs, reads_account
from costgraph.resolvers.errors import result_of
from costgraph.resolvers.ids import decode_id
from costgraph.resolvers.ledger import usage_event
from costgraph.schema import budgets as types
from costgraph.schema import results
from costgraph.schema.allowances import Allowance
from costgraph.schema.scopes import BudgetScopeInput
from costgraph.schema.types import Info, LedgerEntry


def decode_scope(value: BudgetScopeInput, organization_id: uuid.UUID, field: str) -> Scope:
    if value.kind is ScopeKind.ORGANIZATION:
        return Scope(ScopeKind.ORGANIZATION, organization_id)
    if value.id is None:
        raise ValidationFailed(f"a {value.kind.value} scope needs its id", f"{field}.id")
    return Scope(value.kind, decode_id(value.id, value.kind.value.lower(), f"{field}.id"))


@strawberry.type
class BudgetQuery:
    @strawberry.field(extensions=[needs(Right.READ_USAGE)])
    async def budgets(
        self, info: Info, scope: BudgetScopeInput | None = None
    ) -> list[types.Budget]:
        org = await info.context.org()
        wanted = None if scope is None else decode_scope(scope, org.id, "scope")
        async with info.context.reading() as session:
            rows = await budget_repository.list_budgets(session, wanted)
        return [types.Budget.of(row) for row in rows]

    @strawberry.field(extensions=[needs(Right.READ_USAGE)])
    async def budget_status(self, info: Info, budget_id: strawberry.ID) -> types.BudgetStatus:
        ident = decode_id(budget_id, "budget", "budgetId")
        zone = info.context.app.limits.zone
        async with info.context.reading() as session:
            status = await budgets.status(session, ident, utcnow(), zone)
        return types.BudgetStatus.of(status)

    @strawberry.field(
        description="An account's allowance, prepaid balance and banner. A member reads its "
        "own account's (one its token names).",
        extensions=[reads_account()],
    )
    async def allowance(self, info: Info, account_id: strawberry.ID) -> Allowance:
        ident = decode_id(account_id, "account", "accountId")
        async with info.context.reading() as session:
            status = await allowance_status(session, ident, utcnow())
        return Allowance.of(status)


@strawberry.type
class BudgetMutation:
    @strawberry.mutation(extensions=[needs(Right.MANAGE_ORGANIZATION)])
    async def set_budget(self, info: Info, input: types.BudgetInput) -> types.Budget:
        org = await info.context.org()
        spec = budgets.BudgetSpec(
            scope=decode_scope(input.scope, org.id, "input.scope"),
            period=input.period,
            limit=input.limit,
            currency=input.currency,
            hard_cap=input.hard_cap,
            basis=input.basis,
            thresholds=tuple(
                budgets.DEFAULT_THRESHOLDS if input.thresholds is None else input.thresholds
            ),
            custom_start=input.custom_start,
            custom_end=input.custom_end,
        )
        zone = info.context.app.limits.zone
        row = await info.context.write(
            lambda uow: budgets.set_budget(uow.session, uow.org, spec, zone=zone)
        )
        return types.Budget.of(row)

    @strawberry.mutation(
        description="Reserve an AI call's estimated cost before making it.",
        extensions=[needs(Right.WRITE_USAGE)],
    )
    async def authorize_usage(
        self, info: Info, input: types.AuthorizeUsageInput
    ) -> types.AuthorizeUsageResult:
        context = info.context

        async def run() -> types.UsageAuthorized:
            request = reservations.EstimateRequest(
                idempotency_key=input.idempotency_key,
                account_id=decode_id(input.account_id, "account", "input.accountId"),
                user_id=None
                if input.user_id is None
                else decode_id(input.user_id, "user", "input.userId"),
                provider=input.provider,
                model=input.model,
                input_tokens=input.estimated_input_tokens or 0,
                output_tokens=input.estimated_output_tokens or 0,
                feature=input.feature,
                agent=input.agent,
                estimated_cost=input.estimated_cost,
                estimated_cost_currency=input.estimated_cost_currency,
            )
            # Lookups and the hold on the unit's one connection; the hold is a statement of
            # its own, so the budget counters stay locked only while it runs.
            held, replayed = await context.write(
                lambda uow: reservations.authorize(
                    uow.session, uow.org, request, context.app.limits, utcnow(), alone=True
                )
            )
            return types.UsageAuthorized(reservation=types.Reservation.of(held), replayed=replayed)

        result = await result_of(run)
        counting.authorization(context.app.metrics, result)
        return result

    @strawberry.mutation(
        description="Record the actual usage of a reservation and give back the rest.",
        extensions=[needs(Right.WRITE_USAGE)],
    )
    async def settle_usage(
        self, info: Info, input: types.SettleUsageInput
    ) -> results.RecordUsageResult:
        context = info.context

        async def run() -> results.UsageRecorded:
            ident = decode_id(input.reservation_id, "reservation", "input.reservationId")
            event = usage_event(input.usage, "input.usage")
            entry = await context.write(
                lambda uow: reservations.settle(
                    uow.session, uow.org, ident, event, context.app.limits, utcnow()
                )
            )
            return results.UsageRecorded(entry=LedgerEntry.of(entry), replayed=entry.replayed)

        result = await result_of(run)
        counting.usage(context.app.metrics, "settleUsage", result)
        counting.settlement(context.app.metrics, result)
        return result

    @strawberry.mutation(
        description="Give a reservation's hold back unused.",
        extensions=[needs(Right.WRITE_USAGE)],
    )
    async def release_reservation(self, info: Info, id: strawberry.ID) -> types.Reservation:
        ident = decode_id(id, "reservation", "id")
        now = utcnow()
        row = await info.context.write(
            lambda uow: reservations.release(uow.session, uow.org, ident, now)
        )
        # closed by this call (not an earlier one): RELEASED, or EXPIRED when it had run out
        counting.release(info.context.app.metrics, row.state, closed_now=row.closed_at == now)
        return types.Reservation.of(row)
