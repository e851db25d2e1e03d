"""SQL of markup rules (a tenant table: the session's tenant filter applies)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import tenant_cache
from costgraph.billing.raw_connection import driver_connection, plain_uuid
from costgraph.models.pricing import MarkupRule

RuleRow = tuple[uuid.UUID, uuid.UUID | None, str | None, str | None, Decimal]


async def all_rules(session: AsyncSession) -> list[RuleRow]:
    rows = await session.execute(
        select(
            MarkupRule.id,
            MarkupRule.customer_id,
            MarkupRule.provider,
            MarkupRule.model,
            MarkupRule.percent,
        )
    )
    return [tuple(row) for row in rows.all()]  # type: ignore[misc]


async def rules_of(session: AsyncSession, organization_id: uuid.UUID) -> list[RuleRow]:
    """:func:`all_rules` of one organisation, from this process's cache when it has them."""

    async def load() -> list[RuleRow]:
        connection = await driver_connection(session)
        rows = await connection.fetch(
            "SELECT id, customer_id, provider, model, percent FROM markup_rules "
            "WHERE organization_id = $1",
            organization_id,
        )
        return [(plain_uuid(r[0]), plain_uuid(r[1]), r[2], r[3], r[4]) for r in rows]

    return await tenant_cache.MARKUP_RULES.get_or_load(organization_id, load)


async def upsert_rule(
    session: AsyncSession,
    organization_id: uuid.UUID,
    customer_id: uuid.UUID | None,
    provider: str | None,
    model: str | None,
    percent: Decimal,
) -> MarkupRule:
    tenant_cache.after_commit(
        session, lambda: tenant_cache.MARKUP_RULES.invalidate(organization_id)
    )
    statement = (
        insert(MarkupRule)
        .values(
            organization_id=organization_id,
            customer_id=customer_id,
            provider=provider,
            model=model,
            percent=percent,
        )
        .on_conflict_do_update(
            index_elements=["organization_id", "customer_id", "provider", "model"],
            set_={"percent": percent, "updated_at": func.now()},
        )
        .returning(MarkupRule.id)
    )
    rule_id = (await session.execute(statement)).scalar_one()
    row = await session.get(MarkupRule, (organization_id, rule_id), populate_existing=True)
    assert row is not None
    return row


async def list_rules(session: AsyncSession) -> Sequence[MarkupRule]:
    rows = await session.scalars(
        select(MarkupRule).order_by(
            MarkupRule.customer_id.is_not(None),
            MarkupRule.provider.is_not(None),
            MarkupRule.model.is_not(None),
            MarkupRule.created_at,
        )
    )
    return rows.all()
