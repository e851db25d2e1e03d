"""Reading and acknowledging alerts, and seeing how their deliveries went (tenant-bound)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.alerts import repository
from costgraph.alerts.records import AlertFilter, AlertRecord, DeliveryRecord
from costgraph.kernel.clock import utcnow
from costgraph.kernel.errors import NotFound, ValidationFailed


async def list_alerts(
    session: AsyncSession, where: AlertFilter, size: int, after: str | None
) -> tuple[list[AlertRecord], bool]:
    if where.start is not None and where.end is not None and where.end <= where.start:
        raise ValidationFailed("range end must be after its start", "filter.range")
    if where.stage is not None and not 0 <= where.stage <= 100:
        raise ValidationFailed("stage is a percentage from 1 to 100", "filter.stage")
    return await repository.list_alerts(session, where, size, after)


async def acknowledge(
    session: AsyncSession, alert_id: uuid.UUID, who: str, now: datetime | None = None
) -> AlertRecord:
    """Record who acknowledged the alert and when; acknowledging again changes nothing."""
    found = await repository.acknowledge(session, alert_id, who[:255], now or utcnow())
    if found is None:
        raise NotFound("alert", alert_id, "id")
    return found


async def deliveries(session: AsyncSession, alert_id: uuid.UUID) -> list[DeliveryRecord]:
    if await repository.get_alert(session, alert_id) is None:
        raise NotFound("alert", alert_id, "alertId")
    return await repository.deliveries_of(session, alert_id)
