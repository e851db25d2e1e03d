"""SQL of alerts and channels, in a tenant-bound session (the tenant filter applies).

Raising is ``INSERT … ON CONFLICT DO NOTHING`` on ``(organization_id, budget_id, kind,
stage, period_start, terms_version)``: of any number of concurrent writers crossing the same
stage, in any number of processes, exactly one inserts the row — only that one enqueues
deliveries and announces it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.alerts.records import (
    AlertFilter,
    AlertRecord,
    AlertState,
    AttemptRecord,
    ChannelKind,
    DeliveryRecord,
    DeliveryState,
)
from costgraph.alerts.rules import AlertKind
from costgraph.kernel.clock import utcnow
from costgraph.kernel.pagination import decode_cursor
from costgraph.models.alerts import Alert, AlertDelivery, DeliveryAttempt, NotificationChannel
from costgraph.models.budget import Budget, BudgetCounter


async def insert_alerts(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> list[AlertRecord]:
    """Insert the alerts not raised before; return only those this call inserted. They are
    raised now by the business clock (as their periods are), unless a row says when."""
    if not rows:
        return []
    now = utcnow()
    statement = (
        insert(Alert)
        .values([{"raised_at": now, **row} for row in rows])
        .on_conflict_do_nothing(
            index_elements=[
                "organization_id",
                "budget_id",
                "kind",
                "stage",
                "period_start",
                "terms_version",
            ]
        )
        .returning(Alert)
    )
    inserted = (await session.scalars(statement)).all()
    return sorted(
        (AlertRecord.of(row) for row in inserted), key=lambda a: (a.budget_id, a.kind, a.stage)
    )


async def insert_subject_alerts(
    session: AsyncSession, rows: Sequence[dict[str, Any]]
) -> list[AlertRecord]:
    """Insert alerts about something else than a budget (each row has a ``subject``), once
    per subject; return those this call inserted."""
    if not rows:
        return []
    statement = (
        insert(Alert)
        .values(list(rows))
        .on_conflict_do_nothing(
            index_elements=["organization_id", "subject"],
            index_where=Alert.subject.is_not(None),
        )
        .returning(Alert)
    )
    inserted = (await session.scalars(statement)).all()
    return sorted((AlertRecord.of(row) for row in inserted), key=lambda a: a.raised_at)


async def enabled_channels(session: AsyncSession) -> Sequence[NotificationChannel]:
    statement = select(NotificationChannel).where(NotificationChannel.enabled.is_(True))
    return (await session.scalars(statement.order_by(NotificationChannel.id))).all()


async def insert_deliveries(
    session: AsyncSession, organization_id: uuid.UUID, pairs: Sequence[tuple[uuid.UUID, uuid.UUID]]
) -> int:
    """One outbox row per (alert, channel), due now."""
    if not pairs:
        return 0
    statement = (
        insert(AlertDelivery)
        .values(
            [
                {
                    "organization_id": organization_id,
                    "id": uuid.uuid4(),
                    "alert_id": alert_id,
                    "channel_id": channel_id,
                }
                for alert_id, channel_id in pairs
            ]
        )
        .on_conflict_do_nothing(index_elements=["organization_id", "alert_id", "channel_id"])
        .returning(AlertDelivery.id)
    )
    return len((await session.scalars(statement)).all())


async def get_alert(session: AsyncSession, alert_id: uuid.UUID) -> AlertRecord | None:
    row = await session.scalar(select(Alert).where(Alert.id == alert_id))
    return None if row is None else AlertRecord.of(row)


async def acknowledge(
    session: AsyncSession, alert_id: uuid.UUID, who: str, now: datetime
) -> AlertRecord | None:
    """Acknowledge once: the first acknowledgement (who and when) is kept."""
    statement = (
        update(Alert)
        .where(Alert.id == alert_id, Alert.acknowledged_at.is_(None))
        .values(acknowledged_at=now, acknowledged_by=who)
        .returning(Alert)
        .execution_options(synchronize_session=False)
    )
    row = await session.scalar(statement)
    if row is not None:
        return AlertRecord.of(row)
    return await get_alert(session, alert_id)


async def list_alerts(
    session: AsyncSession, where: AlertFilter, size: int, after: str | None
) -> tuple[list[AlertRecord], bool]:
    """Newest first, keyset-paginated on ``(raised_at, id)``."""
    statement = select(Alert)
    if where.scope_kind is not None:
        statement = statement.where(
            Alert.scope_kind == where.scope_kind, Alert.scope_id == where.scope_id
        )
    if where.budget_id is not None:
        statement = statement.where(Alert.budget_id == where.budget_id)
    if where.stage is not None:
        statement = statement.where(Alert.stage == where.stage)
    if where.kind is not None:
        statement = statement.where(Alert.kind == where.kind.value)
    if where.state is AlertState.OPEN:
        statement = statement.where(Alert.acknowledged_at.is_(None))
    elif where.state is AlertState.ACKNOWLEDGED:
        statement = statement.where(Alert.acknowledged_at.is_not(None))
    if where.start is not None:
        statement = statement.where(Alert.raised_at >= where.start)
    if where.end is not None:
        statement = statement.where(Alert.raised_at < where.end)
    if after is not None:
        at, ident = decode_cursor(after)
        statement = statement.where(
            or_(Alert.raised_at < at, and_(Alert.raised_at == at, Alert.id < ident))
        )
    statement = statement.order_by(Alert.raised_at.desc(), Alert.id.desc()).limit(size + 1)
    rows = (await session.scalars(statement)).all()
    return [AlertRecord.of(r) for r in rows[:size]], len(rows) > size


# --- channels ---


async def add_channel(session: AsyncSession, channel: NotificationChannel) -> NotificationChannel:
    session.add(channel)
    await session.flush()
    await session.refresh(channel)
    return channel


async def get_channel(
    session: AsyncSession, channel_id: uuid.UUID, *, lock: bool = False
) -> NotificationChannel | None:
    statement = select(NotificationChannel).where(NotificationChannel.id == channel_id)
    if lock:
        statement = statement.with_for_update()
    return await session.scalar(statement)


async def list_channels(session: AsyncSession) -> Sequence[NotificationChannel]:
    statement = select(NotificationChannel).order_by(
        NotificationChannel.created_at, NotificationChannel.id
    )
    return (await session.scalars(statement)).all()


# --- deliveries, as their organisation sees them ---


async def deliveries_of(session: AsyncSession, alert_id: uuid.UUID) -> list[DeliveryRecord]:
    rows = (
        await session.execute(
            select(AlertDelivery, NotificationChannel.kind)
            .join(
                NotificationChannel,
                and_(
                    NotificationChannel.organization_id == AlertDelivery.organization_id,
                    NotificationChannel.id == AlertDelivery.channel_id,
                ),
            )
            .where(AlertDelivery.alert_id == alert_id)
            .order_by(AlertDelivery.created_at, AlertDelivery.id)
        )
    ).all()
    if not rows:
        return []
    attempts = (
        await session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id.in_([d.id for d, _ in rows]))
            .order_by(DeliveryAttempt.delivery_id, DeliveryAttempt.attempt)
        )
    ).all()
    history: dict[uuid.UUID, list[AttemptRecord]] = {}
    for attempt in attempts:
        history.setdefault(attempt.delivery_id, []).append(
            AttemptRecord(
                attempt=attempt.attempt,
                started_at=attempt.started_at,
                duration_ms=attempt.duration_ms,
                outcome=attempt.outcome,
                status_code=attempt.status_code,
                error=attempt.error,
            )
        )
    return [
        DeliveryRecord(
            id=delivery.id,
            alert_id=delivery.alert_id,
            channel_id=delivery.channel_id,
            channel_kind=ChannelKind(kind),
            state=DeliveryState(delivery.state),
            attempts=delivery.attempts,
            next_attempt_at=delivery.next_attempt_at,
            last_error=delivery.last_error,
            delivered_at=delivery.delivered_at,
            history=tuple(history.get(delivery.id, ())),
        )
        for delivery, kind in rows
    ]


# --- forecast alerts (platform work: across organisations) ---


@dataclass(frozen=True, slots=True)
class ForecastCandidate:
    """A budget's current period with spend and no FORECAST alert under its current terms."""

    organization_id: uuid.UUID
    budget_id: uuid.UUID
    period_start: datetime
    terms_version: int
    spent: Decimal


async def forecast_candidates(
    session: AsyncSession, now: datetime, limit: int, organization_id: uuid.UUID | None = None
) -> list[ForecastCandidate]:
    """The periods in force at ``now`` that a FORECAST alert could still be raised for (a
    platform-bound session; one row per budget counter, a handful per organisation), of
    every organisation or of one."""
    counter, budget = BudgetCounter, Budget
    raised = (
        select(Alert.id)
        .where(
            Alert.organization_id == counter.organization_id,
            Alert.budget_id == counter.budget_id,
            Alert.kind == AlertKind.FORECAST.value,
            Alert.period_start == counter.period_start,
            Alert.terms_version == budget.terms_version,
        )
        .exists()
    )
    statement = (
        select(
            counter.organization_id,
            counter.budget_id,
            counter.period_start,
            budget.terms_version,
            counter.spent,
        )
        .join(
            budget,
            and_(budget.organization_id == counter.organization_id, budget.id == counter.budget_id),
        )
        .where(
            counter.period_start <= now,
            counter.period_end > now,
            counter.spent > 0,
            ~raised,
        )
        .order_by(counter.organization_id, counter.budget_id)
        .limit(limit)
    )
    if organization_id is not None:
        statement = statement.where(counter.organization_id == organization_id)
    return [ForecastCandidate(*row) for row in await session.execute(statement)]
