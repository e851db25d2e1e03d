"""Markup: a percentage over AI cost; billed usage = AI cost * (1 + percent / 100).

Rules are per organisation, optionally narrowed to a customer, a provider and a model. The
most specific rule that matches an event applies, by model first and customer second:

1. customer + model, 2. model, 3. customer + provider, 4. provider, 5. customer,
6. the organisation default; no rule at all is 0 %. (Between two model rules of the same
customer level, the one that also names the provider wins.)

A model rule matches the catalog's canonical name (after aliases) or the name the event
carried. The percent used is stored on each entry, so changing a rule never changes an
entry already written (a reprice keeps the entry's own percent).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import markup_repository as repo
from costgraph.billing.catalog import lookup_provider
from costgraph.billing.directory import OrgContext
from costgraph.kernel.errors import NotFound, ValidationFailed
from costgraph.models import Customer
from costgraph.models.pricing import MarkupRule

FLOOR = Decimal(-100)
CEILING = Decimal(1_000_000)
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Markup:
    id: uuid.UUID
    customer_id: uuid.UUID | None
    provider: str | None
    model: str | None
    percent: Decimal
    updated_at: datetime | None = None

    @classmethod
    def of(cls, row: MarkupRule) -> Markup:
        return cls(row.id, row.customer_id, row.provider, row.model, row.percent, row.updated_at)


def _rank(
    customer: uuid.UUID | None, provider: str | None, model: str | None
) -> tuple[int, int, int]:
    """Model level first, customer second; a provider beside a model breaks the last tie."""
    level = 2 if model is not None else 1 if provider is not None else 0
    return (level, int(customer is not None), int(provider is not None))


@dataclass(slots=True)
class MarkupBook:
    rules: list[repo.RuleRow]

    def percent_for(
        self,
        customer_id: uuid.UUID | None,
        provider: str,
        models: Iterable[str],
    ) -> Decimal:
        names = set(models)
        best: tuple[tuple[int, int, int], Decimal] | None = None
        for _, rule_customer, rule_provider, rule_model, percent in self.rules:
            if rule_customer is not None and rule_customer != customer_id:
                continue
            if rule_provider is not None and rule_provider != provider:
                continue
            if rule_model is not None and rule_model not in names:
                continue
            rank = _rank(rule_customer, rule_provider, rule_model)
            if best is None or rank > best[0]:
                best = (rank, percent)
        return ZERO if best is None else best[1]


async def load_book(session: AsyncSession) -> MarkupBook:
    return MarkupBook(await repo.all_rules(session))


def require_percent(percent: Decimal, field: str = "input.percent") -> Decimal:
    if not percent.is_finite() or percent < FLOOR:
        raise ValidationFailed("a markup is at least -100 percent", field)
    if percent > CEILING:
        raise ValidationFailed("a markup is at most 1,000,000 percent", field)
    return percent


async def set_markup(
    session: AsyncSession,
    org: OrgContext,
    percent: Decimal,
    customer_id: uuid.UUID | None = None,
    provider: str | None = None,
    model: str | None = None,
) -> Markup:
    """Set (or replace) the rule for this customer/provider/model combination."""
    require_percent(percent)
    if customer_id is not None and await session.get(Customer, (org.id, customer_id)) is None:
        raise NotFound("customer", customer_id, "input.customerId")
    if provider is not None:
        provider = lookup_provider(provider)
        if not provider or len(provider) > 100:
            raise ValidationFailed("must be 1 to 100 characters", "input.provider")
    if model is not None:
        model = model.strip()
        if not model or len(model) > 200:
            raise ValidationFailed("must be 1 to 200 characters", "input.model")
    row = await repo.upsert_rule(session, org.id, customer_id, provider, model, percent)
    return Markup.of(row)


async def markup_rules(session: AsyncSession) -> list[Markup]:
    return [Markup.of(row) for row in await repo.list_rules(session)]
