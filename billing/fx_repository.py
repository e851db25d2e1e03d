"""SQL of exchange rates. Reads filter their owner through
:func:`costgraph.billing.catalog_scope.visible_to`."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from costgraph.billing.catalog_scope import visible_to
from costgraph.kernel.errors import ValidationFailed
from costgraph.models.pricing import ExchangeRate

RateRow = tuple[uuid.UUID | None, str, str, datetime, Decimal]


async def insert_rate(session: AsyncSession, row: ExchangeRate) -> ExchangeRate:
    session.add(row)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise ValidationFailed(
            f"a {row.base}->{row.quote} rate already starts at that instant; rates are never "
            "replaced, add one at a later instant",
            "input.effectiveFrom",
        ) from exc
    await session.refresh(row, ["created_at"])
    return row


async def rates_between(
    session: AsyncSession,
    organization_id: uuid.UUID | None,
    pairs: Iterable[tuple[str, str]],
    start: datetime,
    end: datetime,
) -> list[RateRow]:
    """For each visible owner and pair: the rate in force at ``start`` and every later one
    up to ``end``. One query."""
    wanted = list(set(pairs))
    if not wanted:
        return []
    earlier = aliased(ExchangeRate)
    in_force_at_start = (
        select(func.max(earlier.effective_from))
        .where(
            earlier.base == ExchangeRate.base,
            earlier.quote == ExchangeRate.quote,
            earlier.organization_id.is_not_distinct_from(ExchangeRate.organization_id),
            earlier.effective_from <= start,
        )
        .scalar_subquery()
    )
    rows = await session.execute(
        select(
            ExchangeRate.organization_id,
            ExchangeRate.base,
            ExchangeRate.quote,
            ExchangeRate.effective_from,
            ExchangeRate.rate,
        ).where(
            visible_to(ExchangeRate.organization_id, organization_id),
            tuple_(ExchangeRate.base, ExchangeRate.quote).in_(wanted),
            ExchangeRate.effective_from <= end,
            ExchangeRate.effective_from >= func.coalesce(in_force_at_start, start),
        )
    )
    return [tuple(row) for row in rows.all()]  # type: ignore[misc]


async def rates_at(
    session: AsyncSession, organization_id: uuid.UUID | None, at: datetime
) -> Sequence[ExchangeRate]:
    """Every visible rate in force at ``at`` (one per owner and pair)."""
    latest = (
        select(
            ExchangeRate.id,
            func.row_number()
            .over(
                partition_by=(
                    ExchangeRate.organization_id,
                    ExchangeRate.base,
                    ExchangeRate.quote,
                ),
                order_by=ExchangeRate.effective_from.desc(),
            )
            .label("n"),
        )
        .where(
            visible_to(ExchangeRate.organization_id, organization_id),
            ExchangeRate.effective_from <= at,
        )
        .subquery()
    )
    rows = await session.scalars(
        select(ExchangeRate)
        .join(latest, latest.c.id == ExchangeRate.id)
        .where(latest.c.n == 1)
        .order_by(ExchangeRate.base, ExchangeRate.quote, ExchangeRate.organization_id.is_not(None))
    )
    return rows.all()


async def platform_rates_at(
    session: AsyncSession, keys: Iterable[tuple[str, str, datetime]]
) -> dict[tuple[str, str, datetime], Decimal]:
    """The platform's rates of these ``(base, quote, effective_from)``, where they exist."""
    wanted = list(set(keys))
    if not wanted:
        return {}
    rows = await session.execute(
        select(
            ExchangeRate.base, ExchangeRate.quote, ExchangeRate.effective_from, ExchangeRate.rate
        ).where(
            ExchangeRate.organization_id.is_(None),
            tuple_(ExchangeRate.base, ExchangeRate.quote, ExchangeRate.effective_from).in_(wanted),
        )
    )
    return {(b.strip(), q.strip(), at): rate for b, q, at, rate in rows.all()}


async def add_platform_rate(
    session: AsyncSession,
    base: str,
    quote: str,
    rate: Decimal,
    effective_from: datetime,
    source: str,
    actor: str,
) -> bool:
    """Add a platform rate unless one of the pair starts at that instant; True if added."""
    added = await session.execute(
        insert(ExchangeRate)
        .values(
            organization_id=None,
            base=base,
            quote=quote,
            rate=rate,
            effective_from=effective_from,
            source=source,
            created_by=actor,
        )
        .on_conflict_do_nothing()
        .returning(ExchangeRate.id)
    )
    return added.first() is not None
