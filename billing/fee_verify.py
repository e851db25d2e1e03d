"""``costgraph verify``'s check of subscription revenue recognition (see
billing/subscription_billing.py): for every billing cycle of every subscription, each month
that had begun when the cycle was last billed, changed or recognised has recognised exactly
its share of the cycle's fees net of credits (billing/fee_schedule.py), recomputed from the
``SUBSCRIPTION_FEE`` and ``SUBSCRIPTION_CREDIT`` entries. Months not begun then recognise
nothing yet; the catch-up recognises them when they begin."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from costgraph.billing import fee_schedule as schedule
from costgraph.billing import subscription_billing_repository as repo

FEE, CREDIT, RECOGNIZED = "SUBSCRIPTION_FEE", "SUBSCRIPTION_CREDIT", "REVENUE_RECOGNIZED"


@dataclass(frozen=True, slots=True)
class RecognitionDrift:
    organization_id: uuid.UUID
    scope: str
    stored: Decimal
    recomputed: Decimal


async def recognition_drift(
    connection: Any, organization_id: uuid.UUID | None
) -> tuple[int, list[RecognitionDrift]]:
    """(months compared, those whose recognised revenue is not their share)."""
    groups: dict[tuple[uuid.UUID, str, str], list[Any]] = defaultdict(list)
    for row in await repo.all_fee_rows(connection, organization_id):
        groups[(row["organization_id"], row["sub"], row["cycle_start"])].append(row)
    checked = 0
    drift: list[RecognitionDrift] = []
    for (org_id, sub, cycle_start), rows in groups.items():
        first = rows[0]
        anchor = datetime.fromisoformat(first["anchor"])
        cycle = schedule.cycle_at(anchor, first["billing"], datetime.fromisoformat(cycle_start))
        charges = [
            schedule.Charge(r["amount"], 1 if r["type"] == FEE else -1, _at(r["service_start"]))
            for r in rows
            if r["type"] in (FEE, CREDIT)
        ]
        recognised: dict[datetime, Decimal] = defaultdict(Decimal)
        for r in rows:
            if r["type"] not in (FEE, CREDIT):
                sign = 1 if r["type"] == RECOGNIZED else -1
                recognised[_at(r["service_start"])] += sign * r["amount"]
        written = [r["occurred_at"] for r in rows if r["type"] in (FEE, CREDIT)]
        horizon = max([*recognised, *written], default=None)
        if horizon is None:
            continue
        earned = schedule.earned_per_piece(cycle, charges, first["currency"])
        for (start, _end), owed in zip(cycle.pieces(), earned, strict=True):
            if start > horizon:
                break
            checked += 1
            if recognised.get(start, Decimal(0)) != owed:
                drift.append(
                    RecognitionDrift(
                        org_id,
                        f"subscription {sub} month from {start.isoformat()}",
                        recognised.get(start, Decimal(0)),
                        owed,
                    )
                )
    return checked, drift


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)
