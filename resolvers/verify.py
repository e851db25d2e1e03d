"""``ledgerDrift``: ``costgraph verify`` for operators (platform_admin)."""

from __future__ import annotations

import strawberry

from costgraph.auth.permissions import Right
from costgraph.billing import verify
from costgraph.resolvers.access import needs
from costgraph.resolvers.ids import decode_optional
from costgraph.schema.types import Info
from costgraph.schema.verify import LedgerVerification
from costgraph.subscriptions.totals_check import LEDGER_CHECKS


@strawberry.type
class VerifyQuery:
    @strawberry.field(
        description="Every number derived from the ledger (balances, allowance use, budget "
        "counters, holds, rollups, live totals, month closes) recomputed from it in one "
        "read-only snapshot, and where they differ (platform_admin). With `organizationId`, "
        "that organisation only.",
        extensions=[needs(Right.PLATFORM)],
    )
    async def ledger_drift(
        self, info: Info, organization_id: strawberry.ID | None = None
    ) -> LedgerVerification:
        organization = decode_optional(organization_id, "organization", "organizationId")
        app = info.context.app
        report = await verify.verify(
            app.engine, app.limits.zone, organization_id=organization, checks=LEDGER_CHECKS
        )
        return LedgerVerification.of(report)
