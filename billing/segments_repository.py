"""SQL of the segments (:mod:`costgraph.billing.segments`)."""

from __future__ import annotations

import uuid
from typing import Any


async def user_accounts(
    connection: Any, organization_id: uuid.UUID
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Each (user, account) pair some entry carries."""
    rows = await connection.fetch(
        "SELECT DISTINCT user_id, account_id FROM ledger_entries "
        "WHERE organization_id = $1 AND user_id IS NOT NULL AND account_id IS NOT NULL",
        organization_id,
    )
    return [(row["user_id"], row["account_id"]) for row in rows]
