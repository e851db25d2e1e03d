"""What ``ledgerDrift`` answers: the drift ``costgraph verify`` finds, for operators."""

from __future__ import annotations

import datetime as dt
import decimal

import strawberry

from costgraph.billing import verify


@strawberry.type(description="A stored number that is not what the ledger says.")
class LedgerDrift:
    what: str = strawberry.field(
        description="Which derived number, e.g. `balance`, `budget.spent`, "
        "`rollup_account_hourly.ai_cost`, `month_close.top_ups`, `live_totals.billed`."
    )
    organization_id: strawberry.ID
    scope: str = strawberry.field(description="Where it is stored (account, budget, hour, …).")
    stored: decimal.Decimal | None = strawberry.field(description="Null: no row is stored.")
    recomputed: decimal.Decimal | None = strawberry.field(
        description="From the ledger; null when it cannot be (no exchange rate)."
    )
    difference: decimal.Decimal | None = strawberry.field(description="recomputed - stored.")

    @classmethod
    def of(cls, row: verify.Drift) -> LedgerDrift:
        return cls(
            what=row.what,
            organization_id=strawberry.ID(str(row.organization_id)),
            scope=row.scope,
            stored=row.stored,
            recomputed=row.recomputed,
            difference=row.difference,
        )


@strawberry.type(description="How many derived numbers (or rows of them) one check compared.")
class LedgerCheckCount:
    check: str
    compared: int


@strawberry.type(description="Every derived number recomputed from one snapshot of the ledger.")
class LedgerVerification:
    as_of: dt.datetime = strawberry.field(description="The snapshot's time.")
    clean: bool
    drift: list[LedgerDrift]
    unlisted: int = strawberry.field(description="Drifting numbers found beyond those listed.")
    checked: list[LedgerCheckCount]

    @classmethod
    def of(cls, report: verify.Report) -> LedgerVerification:
        return cls(
            as_of=report.as_of,
            clean=report.clean,
            drift=[LedgerDrift.of(row) for row in report.drift],
            unlisted=report.unlisted,
            checked=[LedgerCheckCount(check=k, compared=v) for k, v in report.checked.items()],
        )
