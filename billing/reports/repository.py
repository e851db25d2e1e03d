"""SQL of report templates (tenant-scoped ORM) and of their monthly runs (platform work)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import delete, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.kernel import leases
from costgraph.kernel.errors import ValidationFailed
from costgraph.models.reports import ReportTemplate

MAX_ERROR_LENGTH = 1000


# --- templates (a tenant-bound session) ---


async def get_template(session: AsyncSession, template_id: uuid.UUID) -> ReportTemplate | None:
    return await session.scalar(select(ReportTemplate).where(ReportTemplate.id == template_id))


async def list_templates(session: AsyncSession) -> Sequence[ReportTemplate]:
    statement = select(ReportTemplate).order_by(ReportTemplate.name, ReportTemplate.id)
    return (await session.scalars(statement)).all()


async def save_template(session: AsyncSession, row: ReportTemplate) -> ReportTemplate:
    """Insert or update; a name already taken in the organisation is a validation error."""
    session.add(row)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise ValidationFailed(
            f"a report template named {row.name!r} exists", "input.name"
        ) from exc
    await session.refresh(row)
    return row


async def delete_template(session: AsyncSession, template_id: uuid.UUID) -> bool:
    result = await session.execute(
        delete(ReportTemplate)
        .where(ReportTemplate.id == template_id)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


# --- runs: created by the schedule, claimed by any number of schedulers ---

_ENQUEUE = text(
    """INSERT INTO report_runs (organization_id, template_id, month, channel_id)
       SELECT t.organization_id, t.id, :month, t.channel_id
       FROM report_templates t
       WHERE t.channel_id IS NOT NULL AND t.created_at < :month_end
       ON CONFLICT (organization_id, template_id, month) DO NOTHING"""
)

_SWEEP = leases.sweep("report_runs")
_CLAIM = leases.claim(
    "report_runs", "q.organization_id, q.id, q.template_id, q.month, q.channel_id, q.attempts"
)


@dataclass(frozen=True, slots=True)
class RunClaim:
    organization_id: uuid.UUID
    run_id: uuid.UUID
    template_id: uuid.UUID
    month: date
    channel_id: uuid.UUID
    attempt: int
    token: uuid.UUID


async def enqueue_month(session: AsyncSession, month: date, month_end: datetime) -> int:
    """One run per scheduled template for ``month`` (templates saved before the month ended);
    a run that exists already is left alone — the unique key makes this idempotent. In the
    caller's unit of work, as are :func:`claim_runs` and :func:`finish_run`."""
    result = await session.execute(_ENQUEUE, {"month": month, "month_end": month_end})
    return int(getattr(result, "rowcount", 0) or 0)


async def claim_runs(
    session: AsyncSession, limit: int, lease: float, max_attempts: int
) -> list[RunClaim]:
    token, rows = await leases.take(
        session, _SWEEP, _CLAIM, limit=limit, lease=lease, max_attempts=max_attempts
    )
    return [RunClaim(r[0], r[1], r[2], r[3], r[4], r[5], token) for r in rows]


async def finish_run(
    session: AsyncSession,
    claim: RunClaim,
    *,
    delivered: bool,
    error: str | None,
    dead: bool,
    backoff: timedelta,
) -> str:
    """Settle a claimed run: DELIVERED, DEAD, or PENDING again after ``backoff``; LOST when
    the claim expired and another scheduler holds the row."""
    params: dict[str, object] = {
        "org": claim.organization_id,
        "id": claim.run_id,
        "token": claim.token,
        "error": None if error is None else error[:MAX_ERROR_LENGTH],
    }
    state: leases.State
    if delivered:
        state = "DELIVERED"
        del params["error"]
    elif dead:
        state = "DEAD"
    else:
        state = "PENDING"
        params["wait"] = backoff.total_seconds()
    result = await session.execute(leases.settle("report_runs", state), params)
    return state if getattr(result, "rowcount", 0) else "LOST"
