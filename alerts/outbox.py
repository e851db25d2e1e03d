"""The transactional outbox of alert deliveries: enqueued by writers, claimed by workers.

Writer side: :func:`enqueue` inserts one ``alert_deliveries`` row per alert and channel that
hears it, in the transaction that raised the alert — both commit or neither does.

Worker side (platform work, across organisations):

- :func:`claim` takes up to ``n`` due rows with ``SELECT … FOR UPDATE SKIP LOCKED`` (workers
  in any number of processes never take the same row), and in the same short transaction
  counts the attempt and moves ``next_attempt_at`` forward by the *lease*. The row stays
  ``PENDING``: if the worker dies, the row is simply due again when the lease runs out.
- :func:`finish` records the attempt and settles the row — ``DELIVERED``; or ``PENDING`` again
  after an exponential backoff; or ``DEAD`` after the configured number of attempts — only if
  the row is still under this claim (``claim_token``).

Delivery is at least once; the delivery's id travels as the message id (``webhook-id``,
PagerDuty's ``dedup_key`` is the alert id, the email's ``Message-ID``), so a receiver that
dedupes by it sees each alert once.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.alerts import repository, routing
from costgraph.alerts.records import AlertRecord, ChannelKind
from costgraph.kernel import leases
from costgraph.models import Organization
from costgraph.models.alerts import Alert, DeliveryAttempt, NotificationChannel

MAX_ERROR_LENGTH = 1000


async def enqueue(
    session: AsyncSession, organization_id: uuid.UUID, alerts: Sequence[AlertRecord]
) -> int:
    """Outbox rows for the alerts just raised (in the caller's transaction)."""
    channels = await repository.enabled_channels(session)
    pairs = await routing.route(session, organization_id, alerts, channels)
    return await repository.insert_deliveries(session, organization_id, pairs)


# --- the worker's side ---


@dataclass(frozen=True, slots=True)
class Claim:
    organization_id: uuid.UUID
    delivery_id: uuid.UUID
    alert_id: uuid.UUID
    channel_id: uuid.UUID
    #: This attempt's number (1-based).
    attempt: int
    token: uuid.UUID


@dataclass(frozen=True, slots=True)
class Job:
    """A claimed delivery with everything needed to send it."""

    claim: Claim
    alert: AlertRecord
    organization_name: str
    kind: ChannelKind
    target: str
    secrets: tuple[str, ...]
    enabled: bool


_SWEEP = leases.sweep("alert_deliveries")
_CLAIM = leases.claim(
    "alert_deliveries", "q.organization_id, q.id, q.alert_id, q.channel_id, q.attempts"
)


async def claim(session: AsyncSession, limit: int, lease: float, max_attempts: int) -> list[Claim]:
    """Claim due deliveries (in the caller's unit of work, which commits the lease). Rows
    whose attempts ran out while claimed (their worker died mid-attempt, again and again) are
    marked DEAD instead."""
    token, rows = await leases.take(
        session, _SWEEP, _CLAIM, limit=limit, lease=lease, max_attempts=max_attempts
    )
    return [Claim(row[0], row[1], row[2], row[3], row[4], token) for row in rows]


async def load(session: AsyncSession, claims: Sequence[Claim]) -> list[Job | Claim]:
    """The alert, channel and organisation of each claim; a bare Claim when they are gone."""
    if not claims:
        return []
    alert_keys = {(c.organization_id, c.alert_id) for c in claims}
    channel_keys = {(c.organization_id, c.channel_id) for c in claims}
    alerts = {
        (row.organization_id, row.id): row
        for row in await session.scalars(
            select(Alert).where(tuple_(Alert.organization_id, Alert.id).in_(alert_keys))
        )
    }
    channels = {
        (row.organization_id, row.id): row
        for row in await session.scalars(
            select(NotificationChannel).where(
                tuple_(NotificationChannel.organization_id, NotificationChannel.id).in_(
                    channel_keys
                )
            )
        )
    }
    names: dict[uuid.UUID, str] = {
        ident: name
        for ident, name in await session.execute(
            select(Organization.id, Organization.name).where(
                Organization.id.in_({c.organization_id for c in claims})
            )
        )
    }
    jobs: list[Job | Claim] = []
    for item in claims:
        alert = alerts.get((item.organization_id, item.alert_id))
        channel = channels.get((item.organization_id, item.channel_id))
        if alert is None or channel is None:
            jobs.append(item)
            continue
        jobs.append(
            Job(
                claim=item,
                alert=AlertRecord.of(alert),
                organization_name=names.get(item.organization_id, ""),
                kind=ChannelKind(channel.kind),
                target=channel.target,
                secrets=tuple(s["secret"] for s in channel.secrets),
                enabled=channel.enabled,
            )
        )
    return jobs


@dataclass(frozen=True, slots=True)
class Outcome:
    #: DELIVERED, or why not: HTTP_STATUS, TIMEOUT, CONNECT, REFUSED, REDIRECT, SMTP, ERROR.
    outcome: str
    started_at: datetime
    duration_ms: int
    status_code: int | None = None
    error: str | None = None
    #: Give up now (the channel is gone or disabled), whatever attempts are left.
    permanent: bool = False
    #: The receiver asked for this pause (Retry-After), honoured within the backoff cap.
    retry_after: float | None = None

    @property
    def delivered(self) -> bool:
        return self.outcome == "DELIVERED"


async def finish(
    session: AsyncSession,
    item: Claim,
    outcome: Outcome,
    *,
    max_attempts: int,
    backoff: timedelta,
) -> str:
    """Record the attempt and settle the row (in the caller's unit of work); returns the
    row's new state (or LOST: the claim had expired and another worker holds the row — the
    attempt is still recorded)."""
    error = None if outcome.error is None else outcome.error[:MAX_ERROR_LENGTH]
    await session.execute(
        insert(DeliveryAttempt)
        .values(
            organization_id=item.organization_id,
            delivery_id=item.delivery_id,
            attempt=item.attempt,
            started_at=outcome.started_at,
            duration_ms=outcome.duration_ms,
            outcome=outcome.outcome,
            status_code=outcome.status_code,
            error=error,
        )
        .on_conflict_do_nothing()
    )
    state: leases.State
    params: dict[str, object] = {}
    if outcome.delivered:
        state = "DELIVERED"
    elif outcome.permanent or item.attempt >= max_attempts:
        state = "DEAD"
        params = {"error": error}
    else:
        state = "PENDING"
        params = {"error": error, "wait": backoff.total_seconds()}
    statement = leases.settle("alert_deliveries", state)
    result = await session.execute(
        statement,
        {"org": item.organization_id, "id": item.delivery_id, "token": item.token, **params},
    )
    return state if getattr(result, "rowcount", 0) else "LOST"
