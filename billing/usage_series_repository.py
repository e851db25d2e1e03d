"""SQL of forecasts and usage patterns: usage sums per local day or hour, per feature and week,
per model and feature — each scoped to the caller's tenant twice over (the tenant-bound
session adds it, and every statement names ``organization_id`` itself).

Usage is what P&L calls usage: ``USAGE_CHARGE`` entries and the corrections written against
them (``ADJUSTMENT`` with ``related_entry_id``, e.g. a reprice). Payments, refunds and manual
balance adjustments are not usage. Requests count ``USAGE_CHARGE`` entries only.

Buckets are cut in a time zone with ``date_trunc(unit, occurred_at, zone)``: a local midnight
or local hour start, returned as the UTC instant it is (so the repeated hour of a DST change
is two buckets, not one). Sums that are converted may also be split at exchange rate changes
(``instants``; ``segment`` 0 before the first, see :class:`costgraph.billing.fx.RatePlan`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import (
    DateTime,
    Integer,
    and_,
    case,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from costgraph.billing.scopes import Scope, ScopeKind
from costgraph.models.ledger import EntryType, LedgerEntry

Unit = Literal["hour", "day", "week"]

_E = LedgerEntry
_SCOPE_COLUMNS = {
    ScopeKind.CUSTOMER: _E.customer_id,
    ScopeKind.ACCOUNT: _E.account_id,
    ScopeKind.DEPARTMENT: _E.department_id,
    ScopeKind.USER: _E.user_id,
}


@dataclass(frozen=True, slots=True)
class BucketSum:
    """Usage of one local day or hour in one currency (the entries' own)."""

    bucket: datetime
    currency: str
    ai_cost: Decimal
    billed: Decimal
    requests: int
    #: The part of the bucket between two exchange rate changes (0 unless split).
    segment: int = 0


@dataclass(frozen=True, slots=True)
class AdoptionRow:
    """One feature in one local week (Monday start)."""

    week: datetime
    feature: str | None
    users: int
    new_users: int
    requests: int


@dataclass(frozen=True, slots=True)
class ModelFeatureSum:
    """Usage of one provider/model/feature on one local day in one currency."""

    day: datetime
    provider: str | None
    model: str | None
    feature: str | None
    currency: str
    ai_cost: Decimal
    billed: Decimal
    requests: int
    input_tokens: int
    output_tokens: int
    segment: int = 0


def _usage() -> ColumnElement[bool]:
    return or_(
        _E.type == EntryType.USAGE_CHARGE.value,
        and_(_E.type == EntryType.ADJUSTMENT.value, _E.related_entry_id.is_not(None)),
    )


def _where(
    organization_id: uuid.UUID, scope: Scope, start: datetime, end: datetime
) -> list[ColumnElement[bool]]:
    conditions = [
        _E.organization_id == organization_id,
        _E.occurred_at >= start,
        _E.occurred_at < end,
        _usage(),
    ]
    column = _SCOPE_COLUMNS.get(scope.kind)
    if column is not None:
        conditions.append(column == scope.id)
    return conditions


def usage_conditions(
    organization_id: uuid.UUID, scope: Scope, start: datetime, end: datetime
) -> list[ColumnElement[bool]]:
    """The scope's usage over ``[start, end)``, as forecasts and budget counters count it."""
    return _where(organization_id, scope, start, end)


def _truncate(unit: Unit, zone: str) -> Any:
    return func.date_trunc(unit, _E.occurred_at, zone, type_=DateTime(timezone=True))


def _requests() -> Any:
    return func.sum(case((_E.type == EntryType.USAGE_CHARGE.value, 1), else_=0), type_=Integer)


def _segments(instants: Sequence[datetime]) -> list[Any]:
    """Which part between the rate changes ``instants`` an entry falls in (0: before all),
    as a column to select and group by; none when there are no changes."""
    if not instants:
        return []
    bounds = literal(list(instants), ARRAY(DateTime(timezone=True)))
    return [func.width_bucket(_E.occurred_at, bounds, type_=Integer).label("segment")]


def _segment_of(row: Any, index: int) -> int:
    return int(row[index]) if len(row) > index else 0


async def bucket_sums(
    session: AsyncSession,
    organization_id: uuid.UUID,
    scope: Scope,
    start: datetime,
    end: datetime,
    unit: Unit,
    zone: str,
    instants: Sequence[datetime] = (),
) -> list[BucketSum]:
    """Usage per local ``unit`` and currency (and part between ``instants``) over
    ``[start, end)``, oldest first."""
    bucket = _truncate(unit, zone).label("bucket")
    segments = _segments(instants)
    statement = (
        select(
            bucket,
            _E.currency,
            func.sum(_E.ai_cost),
            func.sum(_E.amount),
            _requests(),
            *segments,
        )
        .where(*_where(organization_id, scope, start, end))
        .group_by(bucket, _E.currency, *segments)
        .order_by(bucket, _E.currency, *segments)
    )
    rows = (await session.execute(statement)).all()
    return [
        BucketSum(row[0], row[1].strip(), row[2], row[3], int(row[4] or 0), _segment_of(row, 5))
        for row in rows
    ]


async def feature_adoption(
    session: AsyncSession,
    organization_id: uuid.UUID,
    scope: Scope,
    start: datetime,
    end: datetime,
    zone: str,
    limit: int,
) -> list[AdoptionRow]:
    """Distinct users, users new to the feature (first seen in the range) and requests, per
    feature and local week. At most ``limit`` rows, the busiest first within a week."""
    week = _truncate("week", zone).label("week")
    per_user = (
        select(
            week,
            _E.feature.label("feature"),
            _E.user_id.label("user_id"),
            _requests().label("requests"),
        )
        .where(*_where(organization_id, scope, start, end))
        .group_by(week, _E.feature, _E.user_id)
        .cte("per_user")
    )
    firsts = (
        select(
            per_user.c.feature,
            per_user.c.user_id,
            func.min(per_user.c.week).label("first_week"),
        )
        .where(per_user.c.user_id.is_not(None))
        .group_by(per_user.c.feature, per_user.c.user_id)
        .cte("firsts")
    )
    requests = func.sum(per_user.c.requests)
    statement = (
        select(
            per_user.c.week,
            per_user.c.feature,
            func.count(per_user.c.user_id),
            func.count(firsts.c.user_id).filter(firsts.c.first_week == per_user.c.week),
            requests,
        )
        .select_from(
            per_user.outerjoin(
                firsts,
                and_(
                    firsts.c.feature.is_not_distinct_from(per_user.c.feature),
                    firsts.c.user_id == per_user.c.user_id,
                ),
            )
        )
        .group_by(per_user.c.week, per_user.c.feature)
        .order_by(per_user.c.week, requests.desc(), per_user.c.feature)
        .limit(limit)
    )
    rows = (await session.execute(statement)).all()
    return [AdoptionRow(r[0], r[1], int(r[2]), int(r[3]), int(r[4] or 0)) for r in rows]


async def model_feature_sums(
    session: AsyncSession,
    organization_id: uuid.UUID,
    scope: Scope,
    start: datetime,
    end: datetime,
    zone: str,
    limit: int,
    instants: Sequence[datetime] = (),
) -> list[ModelFeatureSum]:
    """Usage per provider, model, feature, local day and currency (and part between the rate
    changes ``instants``). At most ``limit`` rows."""
    day = _truncate("day", zone).label("day")
    segments = _segments(instants)
    statement = (
        select(
            day,
            _E.provider,
            _E.model,
            _E.feature,
            _E.currency,
            func.sum(_E.ai_cost),
            func.sum(_E.amount),
            _requests(),
            func.sum(_E.input_tokens),
            func.sum(_E.output_tokens),
            *segments,
        )
        .where(*_where(organization_id, scope, start, end))
        .group_by(day, _E.provider, _E.model, _E.feature, _E.currency, *segments)
        .order_by(day, _E.provider, _E.model, _E.feature, _E.currency, *segments)
        .limit(limit)
    )
    rows = (await session.execute(statement)).all()
    return [
        ModelFeatureSum(
            r[0],
            r[1],
            r[2],
            r[3],
            r[4].strip(),
            r[5],
            r[6],
            int(r[7] or 0),
            int(r[8] or 0),
            int(r[9] or 0),
            _segment_of(r, 10),
        )
        for r in rows
    ]
