"""The usage events every bench sends: deterministic, realistic, and pricing-agnostic.

Events are *caller-priced* by default (``providerCost`` in the account's currency), so no
catalog or exchange rate is needed and the workload keeps working whatever
the catalog holds. ``Pricing.CATALOG`` leaves the cost out so the
catalog prices the event; it needs :func:`seed_catalog` to be wired to the catalog API once
that lands (one place to change).

Duplicates are *retries*: an exact copy of an event sent in an earlier batch (same key, same
body), which the ledger answers as a replay. The ceiling sees the very same rows, so its
``ON CONFLICT DO NOTHING`` skips the same keys.
"""

from __future__ import annotations

import enum
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from bench.db import BenchTenant
from costgraph.billing.commands import UsageEvent
from costgraph.kernel.clock import utcnow

#: (provider, model, USD per million input tokens, per million output tokens).
MODELS = (
    ("openai", "gpt-4o-mini", Decimal("0.15"), Decimal("0.60")),
    ("openai", "gpt-4o", Decimal("2.50"), Decimal("10.00")),
    ("anthropic", "claude-3-5-haiku", Decimal("0.80"), Decimal("4.00")),
    ("anthropic", "claude-sonnet-4", Decimal("3.00"), Decimal("15.00")),
    ("google", "gemini-2.0-flash", Decimal("0.10"), Decimal("0.40")),
)
FEATURES = ("chat", "summarise", "search", "draft-reply")
AGENTS = ("triage-bot", "writer", "researcher")
_MILLION = Decimal(1_000_000)
_COST_QUANTUM = Decimal("0.000000000001")


class Pricing(enum.StrEnum):
    CALLER = "caller"
    CATALOG = "catalog"


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One usage event as a client holds it, before any API shape."""

    idempotency_key: str
    account_id: uuid.UUID
    occurred_at: datetime
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    user_id: uuid.UUID
    feature: str
    agent: str
    request_id: str
    metadata: dict[str, Any]
    #: The list-price cost, always known to the bench (the ceiling writes it either way).
    cost: Decimal
    currency: str
    #: Sent as ``providerCost``/``providerCurrency``; else the catalog prices the event.
    caller_priced: bool

    @property
    def provider_cost(self) -> Decimal | None:
        return self.cost if self.caller_priced else None

    @property
    def provider_currency(self) -> str | None:
        return self.currency if self.caller_priced else None


class EventFactory:
    """Makes fresh events and retries of earlier ones, reproducibly from a seed."""

    def __init__(
        self, tenant: BenchTenant, pricing: Pricing = Pricing.CALLER, seed: int = 7
    ) -> None:
        self.tenant = tenant
        self.pricing = pricing
        self.random = random.Random(seed)
        self.run = uuid.uuid4().hex[:8]  # keys unique across runs on one database
        self.count = 0
        self.sent: list[EventSpec] = []
        #: How many events of the last batch were retries.
        self.last_retries = 0
        self.start = utcnow().replace(microsecond=0) - timedelta(days=1)

    def fresh(self) -> EventSpec:
        rnd = self.random
        self.count += 1
        provider, model, per_input, per_output = rnd.choice(MODELS)
        input_tokens = rnd.randint(50, 20_000)
        output_tokens = rnd.randint(10, 4_000)
        cost = (input_tokens * per_input + output_tokens * per_output) / _MILLION
        spec = EventSpec(
            idempotency_key=f"evt-{self.run}-{self.count:08d}",
            account_id=rnd.choice(self.tenant.account_ids),
            occurred_at=self.start + timedelta(seconds=self.count),
            provider=provider,
            model=model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_input_tokens=rnd.choice((0, 0, input_tokens // 2)),
            user_id=rnd.choice(self.tenant.user_ids),
            feature=rnd.choice(FEATURES),
            agent=rnd.choice(AGENTS),
            request_id=f"req-{self.run}-{self.count}",
            metadata={"trace": f"{rnd.getrandbits(64):016x}", "region": "eu-west-1"},
            cost=cost.quantize(_COST_QUANTUM),
            currency=self.tenant.currency,
            caller_priced=self.pricing is Pricing.CALLER,
        )
        self.sent.append(spec)
        return spec

    def batch(self, size: int, duplicate_fraction: float) -> list[EventSpec]:
        """``size`` events of which ``duplicate_fraction`` are retries of earlier events."""
        retries = min(round(size * duplicate_fraction), len(self.sent))
        chosen = self.random.sample(self.sent, retries)
        self.last_retries = retries
        events = [self.fresh() for _ in range(size - retries)] + chosen
        self.random.shuffle(events)
        return events


def to_usage_event(spec: EventSpec) -> UsageEvent:
    """What a resolver hands the domain (``resolvers.ledger.usage_event``)."""
    return UsageEvent(
        idempotency_key=spec.idempotency_key,
        account_id=spec.account_id,
        occurred_at=spec.occurred_at,
        provider=spec.provider,
        model=spec.model,
        input_tokens=spec.input_tokens,
        output_tokens=spec.output_tokens,
        cached_input_tokens=spec.cached_input_tokens,
        user_id=spec.user_id,
        feature=spec.feature,
        agent=spec.agent,
        request_id=spec.request_id,
        metadata=spec.metadata,
        provider_cost=spec.provider_cost,
        provider_currency=spec.provider_currency,
    )


def to_graphql_input(spec: EventSpec) -> dict[str, Any]:
    """A ``UsageEventInput`` as JSON variables."""
    value: dict[str, Any] = {
        "idempotencyKey": spec.idempotency_key,
        "accountId": str(spec.account_id),
        "occurredAt": spec.occurred_at.isoformat().replace("+00:00", "Z"),
        "provider": spec.provider,
        "model": spec.model,
        "inputTokens": spec.input_tokens,
        "outputTokens": spec.output_tokens,
        "cachedInputTokens": spec.cached_input_tokens,
        "userId": str(spec.user_id),
        "feature": spec.feature,
        "agent": spec.agent,
        "requestId": spec.request_id,
        "metadata": spec.metadata,
    }
    if spec.provider_cost is not None:
        value["providerCost"] = format(spec.provider_cost, "f")
        value["providerCurrency"] = spec.provider_currency
    return value


async def seed_catalog(database_url: str, tenant: BenchTenant) -> None:
    """Prices for every model in :data:`MODELS`, for ``Pricing.CATALOG`` runs: the tenant's
    own versions (which win over any platform version), in force since 2024, through the
    catalog's domain function as ``setModelPrice`` would add them."""
    from costgraph.app.database import create_engine, create_sessionmaker
    from costgraph.app.settings import Settings
    from costgraph.billing import catalog
    from costgraph.models.scoping import bind_tenant

    settings = Settings(database_url=database_url)
    engine = create_engine(database_url, settings)
    try:
        sessions = create_sessionmaker(engine)
        async with sessions() as session, session.begin():
            bind_tenant(session.sync_session, tenant.org.id)
            for provider, model, per_input, per_output in MODELS:
                await catalog.set_model_price(
                    session,
                    tenant.org.id,
                    catalog.NewPriceVersion(
                        provider=provider,
                        model=model,
                        currency=tenant.currency,
                        effective_from=datetime(2024, 1, 1, tzinfo=UTC),
                        input_per_million=per_input,
                        output_per_million=per_output,
                    ),
                    actor="bench",
                )
    finally:
        await engine.dispose()
