"""SQL of reprice runs: the usage a run looks at, the corrections already made, the audit row."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing.entries import Entry
from costgraph.billing.ledger_repository import to_entry
from costgraph.models.ledger import EntryType, LedgerEntry
from costgraph.models.pricing import RepriceRun

#: ``metadata.kind`` of the ADJUSTMENT entries a reprice writes.
REPRICE_KIND = "reprice"


async def lock_organization(session: AsyncSession, organization_id: uuid.UUID) -> None:
    """One reprice per organisation at a time, so two runs never correct the same entry."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"reprice:{organization_id}"},
    )


async def catalog_priced_usage(
    session: AsyncSession,
    start: datetime,
    end: datetime,
    account_id: uuid.UUID | None,
    provider: str | None,
    model: str | None,
    limit: int,
) -> list[Entry]:
    conditions = [
        LedgerEntry.type == EntryType.USAGE_CHARGE.value,
        LedgerEntry.caller_priced.is_(False),
        LedgerEntry.occurred_at >= start,
        LedgerEntry.occurred_at < end,
    ]
    if account_id is not None:
        conditions.append(LedgerEntry.account_id == account_id)
    if provider is not None:
        conditions.append(LedgerEntry.provider == provider)
    if model is not None:
        conditions.append(LedgerEntry.model == model)
    rows = await session.scalars(
        select(LedgerEntry).where(*conditions).order_by(LedgerEntry.occurred_at).limit(limit)
    )
    return [to_entry(row) for row in rows]


async def corrections_of(session: AsyncSession, entry_ids: Sequence[uuid.UUID]) -> list[Entry]:
    """Reprice adjustments already written against these entries, oldest first."""
    if not entry_ids:
        return []
    rows = await session.scalars(
        select(LedgerEntry)
        .where(
            LedgerEntry.type == EntryType.ADJUSTMENT.value,
            LedgerEntry.related_entry_id.in_(list(entry_ids)),
            LedgerEntry.metadata_["kind"].astext == REPRICE_KIND,
        )
        .order_by(LedgerEntry.recorded_at, LedgerEntry.id)
    )
    return [to_entry(row) for row in rows]


async def add_run(session: AsyncSession, run: RepriceRun) -> RepriceRun:
    session.add(run)
    await session.flush()
    await session.refresh(run, ["created_at"])
    return run
