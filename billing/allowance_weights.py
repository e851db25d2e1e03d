"""Setting and listing an organisation's allowance weights (see :mod:`.weights`)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import weights_repository as repo
from costgraph.billing.directory import OrgContext
from costgraph.billing.weights import WeightSpec, validate
from costgraph.models.top_ups import AllowanceWeight


async def set_weight(session: AsyncSession, org: OrgContext, spec: WeightSpec) -> AllowanceWeight:
    """Create or change one weight; usage written from now on is weighed with it."""
    return await repo.upsert_weight(session, org.id, validate(spec))


async def list_weights(session: AsyncSession) -> list[AllowanceWeight]:
    return await repo.list_weights(session)
