"""Liability estimates: an agent's expected exposure from a decision it took (a promised refund,
a commitment it made), recorded by the caller. They are not money that moved, so they never
enter the ledger or the P&L: the organisation P&L reports their sum beside itself, per agent,
converted like everything else at the rate in force at each estimate's time; a currency
without a rate is left out of the sums and named (``missing``), never a failure of the P&L.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import fx
from costgraph.billing.commands import Limits
from costgraph.billing.cost_formula import EXACT
from costgraph.billing.directory import OrgContext
from costgraph.billing.event_time import PAYMENT_HINT, require_live
from costgraph.billing.fx import CurrencyPair
from costgraph.billing.idempotency import request_hash
from costgraph.billing.pnl_measures import reported
from costgraph.billing.pnl_ranges import TimeBucket, truncate
from costgraph.billing.validation import require_key
from costgraph.kernel.clock import utcnow
from costgraph.kernel.errors import IdempotencyConflict, ValidationFailed
from costgraph.kernel.money import decimal_places, require_currency
from costgraph.models.rollups import LiabilityEstimate


@dataclass(frozen=True, slots=True)
class NewEstimate:
    idempotency_key: str
    agent: str
    amount: Decimal
    currency: str
    occurred_at: datetime | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class AgentLiability:
    agent: str
    amount: Decimal
    estimates: int


@dataclass(frozen=True, slots=True)
class LiabilitySummary:
    currency: str
    total: Decimal
    by_agent: list[AgentLiability]
    #: Pairs without a rate: estimates in those currencies are not in the sums.
    missing: tuple[CurrencyPair, ...] = ()


async def record(
    session: AsyncSession, org: OrgContext, estimate: NewEstimate, limits: Limits
) -> tuple[LiabilityEstimate, bool]:
    """Record once per idempotency key; ``(row, replayed)``."""
    require_key(estimate.idempotency_key, limits, "input")
    if not 0 < len(estimate.agent) <= 200:
        raise ValidationFailed("agent must be 1 to 200 characters", "input.agent")
    if not estimate.amount.is_finite() or estimate.amount <= 0:
        raise ValidationFailed("an estimate is greater than zero", "input.amount")
    if decimal_places(estimate.amount.normalize()) > 12:
        raise ValidationFailed("at most 12 decimal places", "input.amount")
    require_currency(estimate.currency, "input.currency")
    if estimate.description is not None and len(estimate.description) > 2_000:
        raise ValidationFailed("description is limited to 2000 characters", "input.description")
    occurred_at = (
        utcnow()
        if estimate.occurred_at is None
        else require_live(estimate.occurred_at, "input.occurredAt", limits, utcnow(), PAYMENT_HINT)
    )
    fingerprint = request_hash("LIABILITY_ESTIMATE", estimate)
    inserted = await session.scalar(
        insert(LiabilityEstimate)
        .values(
            organization_id=org.id,
            idempotency_key=estimate.idempotency_key,
            request_hash=fingerprint,
            agent=estimate.agent,
            amount=estimate.amount,
            currency=estimate.currency,
            occurred_at=occurred_at,
            description=estimate.description,
        )
        .on_conflict_do_nothing(index_elements=["organization_id", "idempotency_key"])
        .returning(LiabilityEstimate.id)
    )
    row = await session.scalar(
        select(LiabilityEstimate).where(
            LiabilityEstimate.idempotency_key == estimate.idempotency_key
        )
    )
    assert row is not None
    if inserted is None and row.request_hash != fingerprint:
        raise IdempotencyConflict(estimate.idempotency_key, "input.idempotencyKey")
    return row, inserted is None


async def _converted(
    session: AsyncSession,
    org: OrgContext,
    start: datetime,
    end: datetime,
    currency: str,
    agent: str | None,
) -> tuple[list[tuple[str, datetime, Decimal]], tuple[CurrencyPair, ...]]:
    """``(agent, occurred_at, amount in currency)`` of the estimates in ``[start, end)``, each
    converted at the rate in force at its own time; and the pairs without a rate (estimates
    in those currencies are left out)."""
    statement = select(
        LiabilityEstimate.agent,
        LiabilityEstimate.currency,
        LiabilityEstimate.occurred_at,
        LiabilityEstimate.amount,
    ).where(LiabilityEstimate.occurred_at >= start, LiabilityEstimate.occurred_at < end)
    if agent is not None:
        statement = statement.where(LiabilityEstimate.agent == agent)
    rows = [(a, c.strip(), at, amount) for a, c, at, amount in (await session.execute(statement))]
    plan = await fx.load_plan(session, org.id, {c for _, c, _, _ in rows}, currency, start, end)
    rates = [plan.book.find(c, currency, at) for _, c, at, _ in rows]
    missing = {c for (_, c, _, _), rate in zip(rows, rates, strict=True) if rate is None}
    converted = [
        (name, at, EXACT.multiply(amount, rate))
        for (name, c, at, amount), rate in zip(rows, rates, strict=True)
        if rate is not None and c not in missing
    ]
    return converted, tuple(CurrencyPair(c, currency) for c in sorted(missing))


async def summary(
    session: AsyncSession,
    org: OrgContext,
    start: datetime,
    end: datetime,
    currency: str,
    agent: str | None = None,
) -> LiabilitySummary:
    per_agent: dict[str, Decimal] = defaultdict(Decimal)
    counts: dict[str, int] = defaultdict(int)
    converted, missing = await _converted(session, org, start, end, currency, agent)
    for name, _, amount in converted:
        per_agent[name] = EXACT.add(per_agent[name], amount)
        counts[name] += 1
    total = sum(per_agent.values(), Decimal(0))
    by_agent = [AgentLiability(a, reported(v), counts[a]) for a, v in per_agent.items()]
    by_agent.sort(key=lambda item: (-item.amount, item.agent))
    return LiabilitySummary(currency, reported(total), by_agent, missing)


async def per_bucket(
    session: AsyncSession,
    org: OrgContext,
    start: datetime,
    end: datetime,
    currency: str,
    bucket: TimeBucket,
    agent: str | None = None,
) -> dict[datetime, Decimal]:
    """The estimates' sum per UTC bucket (keyed by the bucket's start), as :func:`summary`
    converts them; a bucket without estimates is absent."""
    sums: dict[datetime, Decimal] = defaultdict(Decimal)
    converted, _ = await _converted(session, org, start, end, currency, agent)
    for _, at, amount in converted:
        lower = truncate(at, bucket)
        sums[lower] = EXACT.add(sums[lower], amount)
    return {lower: reported(value) for lower, value in sums.items()}
