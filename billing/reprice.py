"""Reprice: correct usage already recorded when the catalog (or a rate) was wrong.

A later price change never rewrites a past entry: entries are priced once, at ingestion,
and the ledger refuses updates. When a price turns out to have been wrong, an operator adds
the right version (or rate) and runs a reprice over a range. For every catalog-priced usage
entry in the range (caller-priced ones are the caller's word and are left alone), the run
prices the entry again as ingestion would today — same occurredAt, same account currency,
and the entry's own markup percent — and compares with what the entry and the corrections
already written against it add up to. Each difference becomes one ``ADJUSTMENT`` entry:

- ``amount``: the change of billed usage (signed);
- ``balance_delta``: the change of what the balance pays (signed): the account is charged
  what ingestion at the new price would have charged with the same cover by the plan's
  allowance (billing/correction_charge.py) — usage the allowance covered stays covered, a
  partly covered entry is charged the uncovered tokens' share, prepaid or postpaid alike —
  less what the entry and its corrections charged so far. So a correction of a correction
  lands on the same figure as one reprice straight to the last price, and the revenue
  attributed to the usage (``charged_usage``, ``-balance_delta``) moves with the balance.
  (An entry whose earlier corrections moved the balance by the whole billed change, as
  corrections did before this rule, gets a correction of its charge alone: ``amount`` 0.)
- ``ai_cost``: the change of AI cost (signed);
- ``provider_cost``, ``provider_currency``, ``fx_rate``, ``price_version_id``,
  ``markup_percent``: the new pricing in full;
- ``related_entry_id``: the usage entry corrected; ``occurred_at``: that entry's, so the
  correction lands in the period it corrects; no token counts (they were counted once);
- ``metadata``: ``{"kind": "reprice", "run_id", "previous": {...}}``.

A run whose corrections would land in a closed month is refused whole with ``PERIOD_CLOSED``
(closed months are immutable, billing/closed_months.py): reprice a range of open months.

The adjustments move money like any other entry, through the ledger's shared append path
(:func:`costgraph.billing.ledger.record_corrections`), in the run's transaction: each
account's balance moves by ``balance_delta`` (a prepaid balance drops by its share of the
billed delta and may go below zero — the usage happened; the account's next prepaid usage
is then refused until it is topped up), and the budget counters of the corrected entry's
period move by the cost delta in each budget's basis, without refusing (as a settlement:
the spend is real).
Allowance counters count tokens, and a reprice changes no token count, so they do not move.

Every run leaves an audit row (``reprice_runs``: who, why, range, filters, counts). Running
the same reprice twice writes nothing the second time: there is no difference left.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import closed_months, correction_charge, ledger
from costgraph.billing import reprice_repository as repo
from costgraph.billing.commands import UnitUsage, UsageEvent
from costgraph.billing.directory import OrgContext, get_many
from costgraph.billing.entries import Entry
from costgraph.billing.idempotency import request_hash
from costgraph.billing.pricing import PricingRequest, price_events
from costgraph.kernel.errors import NotFound, ValidationFailed
from costgraph.kernel.money import format_decimal
from costgraph.models import Account
from costgraph.models.ledger import EntryType
from costgraph.models.pricing import RepriceRun

MAX_ENTRIES = 20_000


@dataclass(frozen=True, slots=True)
class RepriceRequest:
    start: datetime
    end: datetime
    account_id: uuid.UUID | None = None
    provider: str | None = None
    model: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class RepriceOutcome:
    run_id: uuid.UUID
    examined: int
    adjustments: list[Entry]
    created_at: datetime | None


@dataclass(slots=True)
class _Standing:
    """What an entry adds up to with its corrections so far."""

    ai_cost: Decimal
    billed: Decimal
    #: What the balance paid for it (``-balance_delta``).
    charged: Decimal
    price_version_id: uuid.UUID | None


def _as_event(entry: Entry) -> UsageEvent:
    assert entry.account_id is not None and entry.provider is not None and entry.model is not None
    return UsageEvent(
        idempotency_key=entry.idempotency_key,
        account_id=entry.account_id,
        occurred_at=entry.occurred_at,
        provider=entry.provider,
        model=entry.model,
        input_tokens=entry.input_tokens,
        output_tokens=entry.output_tokens,
        cached_input_tokens=entry.cached_input_tokens,
        cache_write_tokens=entry.cache_write_tokens,
        reasoning_tokens=entry.reasoning_tokens,
        units=tuple(UnitUsage(u["kind"], Decimal(u["quantity"])) for u in entry.units or ()),
    )


def _previous(standing: _Standing) -> dict[str, Any]:
    return {
        "price_version_id": None
        if standing.price_version_id is None
        else str(standing.price_version_id),
        "ai_cost": format_decimal(standing.ai_cost),
        "amount": format_decimal(standing.billed),
        "charged": format_decimal(standing.charged),
    }


async def reprice(
    session: AsyncSession,
    org: OrgContext,
    request: RepriceRequest,
    actor: str,
    zone: ZoneInfo,
) -> RepriceOutcome:
    """Run a reprice (``zone``: where budget periods reset, as :attr:`Limits.zone`)."""
    if request.end <= request.start:
        raise ValidationFailed("range end must be after its start", "input.range")
    if request.reason is not None and len(request.reason) > 2_000:
        raise ValidationFailed("reason is limited to 2000 characters", "input.reason")
    if request.account_id is not None and request.account_id not in await get_many(
        session, Account, [request.account_id]
    ):
        raise NotFound("account", request.account_id, "input.accountId")
    await repo.lock_organization(session, org.id)
    entries = await repo.catalog_priced_usage(
        session,
        request.start,
        request.end,
        request.account_id,
        request.provider,
        request.model,
        MAX_ENTRIES + 1,
    )
    if len(entries) > MAX_ENTRIES:
        raise ValidationFailed(
            f"more than {MAX_ENTRIES} entries in range: reprice a narrower range", "input.range"
        )
    standing = {
        e.id: _Standing(e.ai_cost, e.amount, -e.balance_delta, e.price_version_id) for e in entries
    }
    for correction in await repo.corrections_of(session, list(standing)):
        assert correction.related_entry_id is not None
        state = standing[correction.related_entry_id]
        state.ai_cost += correction.ai_cost
        state.billed += correction.amount
        state.charged -= correction.balance_delta
        state.price_version_id = correction.price_version_id
    priced = await price_events(
        session,
        org.id,
        [
            PricingRequest(
                _as_event(e),
                e.currency,
                e.customer_id,
                markup_percent=e.markup_percent if e.markup_percent is not None else Decimal(0),
            )
            for e in entries
        ],
        fresh=True,
    )
    run_id = uuid.uuid4()
    adjustments: list[Entry] = []
    for entry, now in zip(entries, priced, strict=True):
        before = standing[entry.id]
        ai_delta = now.ai_cost - before.ai_cost
        billed_delta = now.billed - before.billed
        # The balance's share of the new price, as ingestion would charge it (same cover).
        charge_delta = correction_charge.charge_at(entry, now.billed) - before.charged
        if ai_delta == 0 and billed_delta == 0 and charge_delta == 0:
            continue
        metadata = {"kind": repo.REPRICE_KIND, "run_id": str(run_id), "previous": _previous(before)}
        key = f"reprice:{run_id}:{entry.id}"
        adjustments.append(
            Entry(
                organization_id=org.id,
                id=uuid.uuid4(),
                type=EntryType.ADJUSTMENT,
                account_id=entry.account_id,
                customer_id=entry.customer_id,
                occurred_at=entry.occurred_at,
                currency=entry.currency,
                amount=billed_delta,
                balance_delta=-charge_delta,
                ai_cost=ai_delta,
                provider_cost=now.provider_cost,
                provider_currency=now.provider_currency,
                fx_rate=now.fx_rate,
                price_version_id=now.price_version_id,
                markup_percent=now.markup_percent,
                provider=entry.provider,
                model=entry.model,
                user_id=entry.user_id,
                department_id=entry.department_id,
                feature=entry.feature,
                agent=entry.agent,
                related_entry_id=entry.id,
                description=request.reason or "reprice",
                metadata=metadata,
                idempotency_key=key,
                request_hash=request_hash("reprice", {"key": key, "metadata": metadata}),
            )
        )
    # A correction lands in the period it corrects: never in a closed month (PERIOD_CLOSED).
    await closed_months.require_open(
        session, org.id, [(a.occurred_at, "input.range") for a in adjustments]
    )
    written = await ledger.record_corrections(session, org, adjustments, zone)
    run = await repo.add_run(
        session,
        RepriceRun(
            organization_id=org.id,
            id=run_id,
            requested_by=actor[:255],
            reason=request.reason,
            range_start=request.start,
            range_end=request.end,
            filters={
                "account_id": None if request.account_id is None else str(request.account_id),
                "provider": request.provider,
                "model": request.model,
            },
            examined=len(entries),
            adjusted=len(adjustments),
        ),
    )
    return RepriceOutcome(run.id, len(entries), written, run.created_at)
