"""SQL of the allowance catalog (``allowance_weights``, a tenant table)."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import tenant_cache
from costgraph.billing.raw_connection import driver_connection
from costgraph.billing.weights import Weights
from costgraph.models.top_ups import AllowanceWeight


async def weights_of(session: AsyncSession, organization_id: uuid.UUID) -> Weights:
    """The organisation's catalog, from this process's cache when it has it (the write path)."""

    async def load() -> Weights:
        connection = await driver_connection(session)
        rows = await connection.fetch(
            "SELECT dimension, provider, name, weight FROM allowance_weights "
            "WHERE organization_id = $1",
            organization_id,
        )
        return Weights.of_rows([(r[0], r[1], r[2], r[3]) for r in rows])

    return await tenant_cache.WEIGHTS.get_or_load(organization_id, load)


async def list_weights(session: AsyncSession) -> list[AllowanceWeight]:
    rows = await session.scalars(
        select(AllowanceWeight).order_by(
            AllowanceWeight.dimension, AllowanceWeight.provider, AllowanceWeight.name
        )
    )
    return list(rows)


async def upsert_weight(
    session: AsyncSession,
    organization_id: uuid.UUID,
    row: tuple[str, str, str, Decimal],
) -> AllowanceWeight:
    tenant_cache.after_commit(session, lambda: tenant_cache.WEIGHTS.invalidate(organization_id))
    dimension, provider, name, weight = row
    statement = (
        insert(AllowanceWeight)
        .values(
            organization_id=organization_id,
            dimension=dimension,
            provider=provider,
            name=name,
            weight=weight,
        )
        .on_conflict_do_update(
            index_elements=["organization_id", "dimension", "provider", "name"],
            set_={"weight": weight, "updated_at": func.now()},
        )
        .returning(AllowanceWeight)
        .execution_options(populate_existing=True)
    )
    stored: AllowanceWeight = (await session.scalars(statement)).one()
    return stored
