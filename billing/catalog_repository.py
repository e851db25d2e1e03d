"""SQL of the model price catalog. Every read filters its owner through
:func:`costgraph.billing.catalog_scope.visible_to`; writes name their owner explicitly."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select, text, tuple_, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import tenant_cache
from costgraph.billing.catalog_scope import visible_to
from costgraph.billing.cost_formula import PriceSheet
from costgraph.kernel.errors import ValidationFailed
from costgraph.models.pricing import UNIT_PRICE_COLUMNS, ModelAlias, ModelPrice

#: SQLSTATE of an exclusion violation, raised by the overlap trigger.
EXCLUSION_VIOLATION = "23P01"


def sheet_of(row: ModelPrice) -> PriceSheet:
    units = {
        kind: price
        for kind, column in UNIT_PRICE_COLUMNS.items()
        if (price := getattr(row, column)) is not None
    }
    return PriceSheet(
        input_per_million=row.input_per_million,
        output_per_million=row.output_per_million,
        cached_input_per_million=row.cached_input_per_million,
        cache_write_per_million=row.cache_write_per_million,
        reasoning_per_million=row.reasoning_per_million,
        long_context_threshold=row.long_context_threshold,
        input_per_million_above_threshold=row.input_per_million_above_threshold,
        output_per_million_above_threshold=row.output_per_million_above_threshold,
        unit_prices=units,
    )


async def lock_series(
    session: AsyncSession, owner: uuid.UUID | None, provider: str, model: str
) -> None:
    """The same advisory lock the overlap trigger takes: one writer per series at a time."""
    await session.execute(
        text(
            "SELECT pg_advisory_xact_lock(hashtextextended("
            "concat_ws('|', 'model_prices', CAST(:owner AS text), CAST(:provider AS text), "
            "CAST(:model AS text)), 0))"
        ),
        {"owner": None if owner is None else str(owner), "provider": provider, "model": model},
    )


def _same_owner(column: Any, owner: uuid.UUID | None) -> Any:
    return column.is_(None) if owner is None else column == owner


async def series(
    session: AsyncSession, owner: uuid.UUID | None, provider: str, model: str
) -> Sequence[ModelPrice]:
    """Every version of one provider/model of one owner, oldest first."""
    rows = await session.scalars(
        select(ModelPrice)
        .where(
            _same_owner(ModelPrice.organization_id, owner),
            ModelPrice.provider == provider,
            ModelPrice.model == model,
        )
        .order_by(ModelPrice.effective_from)
    )
    return rows.all()


def _catalog_changed(session: AsyncSession) -> None:
    """Every write to prices or aliases drops this process's cached catalog (now and again
    at commit): a version or alias set here prices this process's next event."""
    tenant_cache.after_commit(session, tenant_cache.CATALOG.clear)


async def close_version(session: AsyncSession, version_id: uuid.UUID, at: datetime) -> None:
    _catalog_changed(session)
    await session.execute(
        update(ModelPrice)
        .where(ModelPrice.id == version_id, ModelPrice.effective_to.is_(None))
        .values(effective_to=at)
    )


async def insert_version(session: AsyncSession, values: dict[str, Any]) -> ModelPrice:
    _catalog_changed(session)
    row = ModelPrice(**values)
    session.add(row)
    try:
        await session.flush()
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == EXCLUSION_VIOLATION:
            raise ValidationFailed(
                "this version overlaps another version of the same model",
                "input.effectiveFrom",
            ) from exc
        raise
    await session.refresh(row, ["created_at"])
    return row


async def alias_targets(
    session: AsyncSession, owner: uuid.UUID | None, provider: str, names: Iterable[str]
) -> dict[str, str]:
    """Of ``names``, those that are aliases of this owner: alias -> model."""
    wanted = list(set(names))
    if not wanted:
        return {}
    rows = await session.execute(
        select(ModelAlias.alias, ModelAlias.model).where(
            _same_owner(ModelAlias.organization_id, owner),
            ModelAlias.provider == provider,
            ModelAlias.alias.in_(wanted),
        )
    )
    return {alias: model for alias, model in rows.all()}


async def priced_models(
    session: AsyncSession, owner: uuid.UUID | None, provider: str, names: Iterable[str]
) -> set[str]:
    """Of ``names``, those that have price versions of this owner."""
    wanted = list(set(names))
    if not wanted:
        return set()
    rows = await session.scalars(
        select(ModelPrice.model)
        .distinct()
        .where(
            _same_owner(ModelPrice.organization_id, owner),
            ModelPrice.provider == provider,
            ModelPrice.model.in_(wanted),
        )
    )
    return set(rows)


async def add_aliases(
    session: AsyncSession,
    owner: uuid.UUID | None,
    provider: str,
    model: str,
    aliases: Iterable[str],
) -> None:
    _catalog_changed(session)
    for alias in aliases:
        session.add(ModelAlias(organization_id=owner, provider=provider, alias=alias, model=model))
    await session.flush()


async def aliases_of(
    session: AsyncSession, organization_id: uuid.UUID | None, keys: Iterable[tuple[str, str]]
) -> dict[tuple[uuid.UUID | None, str, str], list[str]]:
    """Aliases the caller sees, by (owner, provider, model)."""
    wanted = list(set(keys))
    if not wanted:
        return {}
    rows = await session.execute(
        select(ModelAlias.organization_id, ModelAlias.provider, ModelAlias.model, ModelAlias.alias)
        .where(
            visible_to(ModelAlias.organization_id, organization_id),
            tuple_(ModelAlias.provider, ModelAlias.model).in_(wanted),
        )
        .order_by(ModelAlias.alias)
    )
    found: dict[tuple[uuid.UUID | None, str, str], list[str]] = {}
    for owner, provider, model, alias in rows.all():
        found.setdefault((owner, provider, model), []).append(alias)
    return found


# --- the batch path: one query for aliases, one for versions ---


async def resolve_aliases(
    session: AsyncSession, organization_id: uuid.UUID | None, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """(provider, name) -> canonical model for the names that are aliases; the
    organisation's own alias wins over the platform's."""
    wanted = list(set(keys))
    if not wanted:
        return {}
    rows = await session.execute(
        select(ModelAlias.provider, ModelAlias.alias, ModelAlias.model, ModelAlias.organization_id)
        .where(
            visible_to(ModelAlias.organization_id, organization_id),
            tuple_(ModelAlias.provider, ModelAlias.alias).in_(wanted),
        )
        # platform rows first, so the organisation's own row overwrites them below
        .order_by(ModelAlias.organization_id.is_not(None))
    )
    return {(provider, alias): model for provider, alias, model, _ in rows.all()}


async def versions_between(
    session: AsyncSession,
    organization_id: uuid.UUID | None,
    keys: Iterable[tuple[str, str]],
    start: datetime | None = None,
    end: datetime | None = None,
) -> Sequence[ModelPrice]:
    """Versions of these (provider, model) in force at some instant of ``[start, end]``;
    without bounds, every version at any time."""
    wanted = list(set(keys))
    if not wanted:
        return []
    conditions: list[Any] = [
        visible_to(ModelPrice.organization_id, organization_id),
        tuple_(ModelPrice.provider, ModelPrice.model).in_(wanted),
    ]
    if end is not None:
        conditions.append(ModelPrice.effective_from <= end)
    if start is not None:
        conditions.append(or_(ModelPrice.effective_to.is_(None), ModelPrice.effective_to > start))
    rows = await session.scalars(select(ModelPrice).where(*conditions))
    return rows.all()


async def list_versions(
    session: AsyncSession,
    organization_id: uuid.UUID | None,
    provider: str | None,
    models: Sequence[str] | None,
    at: datetime | None,
    limit: int,
) -> Sequence[ModelPrice]:
    conditions: list[Any] = [visible_to(ModelPrice.organization_id, organization_id)]
    if provider is not None:
        conditions.append(ModelPrice.provider == provider)
    if models is not None:
        conditions.append(ModelPrice.model.in_(models))
    if at is not None:
        conditions.append(
            and_(
                ModelPrice.effective_from <= at,
                or_(ModelPrice.effective_to.is_(None), ModelPrice.effective_to > at),
            )
        )
    rows = await session.scalars(
        select(ModelPrice)
        .where(*conditions)
        .order_by(
            ModelPrice.provider,
            ModelPrice.model,
            ModelPrice.organization_id.is_not(None),
            ModelPrice.effective_from,
        )
        .limit(limit)
    )
    return rows.all()
