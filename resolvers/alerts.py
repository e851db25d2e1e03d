"""Alerts: list and acknowledge them; notification channels; how deliveries went."""

from __future__ import annotations

import uuid

import strawberry

from costgraph.alerts import channels, queries
from costgraph.alerts.records import AlertFilter as FilterModel
from costgraph.alerts.records import AlertRecord
from costgraph.auth.permissions import Right
from costgraph.kernel.pagination import encode_cursor, page_size
from costgraph.resolvers.access import needs
from costgraph.resolvers.budgets import decode_scope
from costgraph.resolvers.ids import decode_id, decode_optional
from costgraph.schema import alerts as types
from costgraph.schema.types import Connection, Info, connection


def _cursor(alert: AlertRecord) -> str:
    return encode_cursor(alert.raised_at, alert.id)


def _filter(value: types.AlertFilter | None, organization_id: uuid.UUID) -> FilterModel:
    if value is None:
        return FilterModel()
    scope = (
        None if value.scope is None else decode_scope(value.scope, organization_id, "filter.scope")
    )
    return FilterModel(
        scope_kind=None if scope is None else scope.kind.value,
        scope_id=None if scope is None else scope.id,
        budget_id=decode_optional(value.budget_id, "budget", "filter.budgetId"),
        stage=value.stage,
        kind=value.kind,
        state=value.state,
        start=None if value.range is None else value.range.start,
        end=None if value.range is None else value.range.end,
    )


@strawberry.type
class AlertQuery:
    @strawberry.field(
        description="Alerts of the organisation, newest first.",
        extensions=[needs(Right.READ_USAGE)],
    )
    async def alerts(
        self,
        info: Info,
        filter: types.AlertFilter | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[types.Alert]:
        org = await info.context.org()
        size = page_size(first, 50, info.context.app.limits.max_page_size)
        where = _filter(filter, org.id)
        async with info.context.reading() as session:
            found, more = await queries.list_alerts(session, where, size, after)
        return connection(found, more, _cursor, types.Alert.of_record)

    @strawberry.field(
        description="The organisation's notification channels.",
        extensions=[needs(Right.MANAGE_ORGANIZATION)],
    )
    async def notification_channels(self, info: Info) -> list[types.NotificationChannel]:
        async with info.context.reading() as session:
            found = await channels.list_channels(session)
        return [types.NotificationChannel.of(c) for c in found]

    @strawberry.field(
        description="An alert's deliveries, one per channel, with every attempt.",
        extensions=[needs(Right.MANAGE_ORGANIZATION)],
    )
    async def alert_deliveries(
        self, info: Info, alert_id: strawberry.ID
    ) -> list[types.AlertDelivery]:
        ident = decode_id(alert_id, "alert", "alertId")
        async with info.context.reading() as session:
            found = await queries.deliveries(session, ident)
        return [types.AlertDelivery.of(d) for d in found]


@strawberry.type
class AlertMutation:
    @strawberry.mutation(
        description="Send the organisation's alerts (or one scope's, or one budget's) to a "
        "webhook, email address, Slack or Teams channel, PagerDuty service or phone.",
        extensions=[needs(Right.MANAGE_ORGANIZATION)],
    )
    async def create_notification_channel(
        self, info: Info, input: types.NotificationChannelInput
    ) -> types.NotificationChannel:
        context = info.context
        org = await context.org()
        spec = channels.ChannelSpec(
            kind=input.kind,
            target=input.target,
            secret=input.secret,
            scope=None if input.scope is None else decode_scope(input.scope, org.id, "input.scope"),
            budget_id=decode_optional(input.budget_id, "budget", "input.budgetId"),
        )
        who = context.require_principal().subject
        created = await context.write(
            lambda uow: channels.create_channel(uow.session, uow.org, spec, context.app.alerts, who)
        )
        return types.NotificationChannel.of(created)

    @strawberry.mutation(
        description="A new signing secret for a WEBHOOK channel (generated unless given), shown "
        "once; the newest `keepPrevious` secrets stay active and sign too, until receivers "
        "have the new one.",
        extensions=[needs(Right.MANAGE_ORGANIZATION)],
    )
    async def rotate_notification_channel_secret(
        self, info: Info, id: strawberry.ID, secret: str | None = None, keep_previous: int = 1
    ) -> types.NotificationChannel:
        ident = decode_id(id, "notification channel", "id")
        rotated = await info.context.write(
            lambda uow: channels.rotate_secret(uow.session, ident, secret, keep_previous)
        )
        return types.NotificationChannel.of(rotated)

    @strawberry.mutation(
        description="Pause or resume a channel (pending deliveries to a paused one are dropped).",
        extensions=[needs(Right.MANAGE_ORGANIZATION)],
    )
    async def set_notification_channel_enabled(
        self, info: Info, id: strawberry.ID, enabled: bool
    ) -> types.NotificationChannel:
        ident = decode_id(id, "notification channel", "id")
        changed = await info.context.write(
            lambda uow: channels.set_enabled(uow.session, ident, enabled)
        )
        return types.NotificationChannel.of(changed)

    @strawberry.mutation(
        description="Acknowledge an alert: who (the token's subject) and when are kept; "
        "acknowledging again changes nothing.",
        extensions=[needs(Right.MANAGE_ORGANIZATION)],
    )
    async def acknowledge_alert(self, info: Info, id: strawberry.ID) -> types.Alert:
        ident = decode_id(id, "alert", "id")
        who = info.context.require_principal().subject
        alert = await info.context.write(lambda uow: queries.acknowledge(uow.session, ident, who))
        return types.Alert.of_record(alert)
