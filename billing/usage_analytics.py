"""Usage analytics: tokens, events, AI cost and billed usage grouped by any of model,
provider, customer, account, department, user, feature and agent, optionally bucketed by
hour, day, week or month (UTC), in a reporting currency.

Usage is what :mod:`costgraph.billing.pnl_measures` calls usage: usage charges and the
corrections reprice writes against them. Groups with no usage (payments only) are left out.
The same engine as P&L answers it, so a usage figure and a P&L figure over the same range
agree to the last digit.

A currency without a rate to the requested one is not converted: its groups come as rows of
their own, in that currency, naming the missing pair (``UsageRow.missing``); the other rows
are in the requested currency, as always.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import pnl_conversion as conversion
from costgraph.billing import pnl_repository as repo
from costgraph.billing.directory import OrgContext
from costgraph.billing.fx import CurrencyPair
from costgraph.billing.ledger_repository import driver_connection
from costgraph.billing.pnl import Scope, ScopeKind, require_report_currency, scope_filters
from costgraph.billing.pnl_measures import Figures
from costgraph.billing.pnl_ranges import ReportLimits, TimeBucket, require_points, require_range
from costgraph.billing.validation import TAG_MAX
from costgraph.kernel.errors import NotFound, ValidationFailed


class UsageDimension(enum.StrEnum):
    MODEL = "MODEL"
    PROVIDER = "PROVIDER"
    CUSTOMER = "CUSTOMER"
    ACCOUNT = "ACCOUNT"
    DEPARTMENT = "DEPARTMENT"
    USER = "USER"
    FEATURE = "FEATURE"
    AGENT = "AGENT"

    @property
    def dimension(self) -> str:
        return self.value.lower()


@dataclass(frozen=True, slots=True)
class UsageFilter:
    account_id: uuid.UUID | None = None
    customer_id: uuid.UUID | None = None
    department_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    provider: str | None = None
    model: str | None = None
    feature: str | None = None
    agent: str | None = None


@dataclass(frozen=True, slots=True)
class UsageRow:
    key: dict[str, Any]
    bucket: datetime | None
    figures: Figures
    #: Set on a row left in its own currency: the pair that had no rate.
    missing: tuple[CurrencyPair, ...] = ()


async def _filters(
    session: AsyncSession, org: OrgContext, value: UsageFilter
) -> tuple[tuple[tuple[str, Any], ...], tuple[uuid.UUID, ...]]:
    filters: list[tuple[str, Any]] = []
    accounts: tuple[uuid.UUID, ...] = ()
    if value.account_id is not None:
        scope = Scope(ScopeKind.ACCOUNT, value.account_id)
        found, _ = await scope_filters(session, org.id, scope, "filter.accountId")
        filters.extend(found)
    if value.customer_id is not None:
        scope = Scope(ScopeKind.CUSTOMER, value.customer_id)
        found, accounts = await scope_filters(session, org.id, scope, "filter.customerId")
        filters.extend(found)
    connection = await driver_connection(session)
    for kind, ident in (("user", value.user_id), ("department", value.department_id)):
        if ident is None:
            continue
        if not await repo.owned(connection, kind, org.id, ident):
            raise NotFound(kind, ident, f"filter.{kind}Id")
        filters.append((kind, ident))
    for name in ("provider", "model", "feature", "agent"):
        tag = getattr(value, name)
        if tag is None:
            continue
        if not 0 < len(tag) <= TAG_MAX:
            raise ValidationFailed(f"must be 1 to {TAG_MAX} characters", f"filter.{name}")
        filters.append((name, tag))
    return tuple(filters), accounts


async def usage(
    session: AsyncSession,
    org: OrgContext,
    start: datetime,
    end: datetime,
    group_by: list[UsageDimension],
    bucket: TimeBucket | None,
    filter: UsageFilter | None,
    currency: str | None,
    limits: ReportLimits,
) -> list[UsageRow]:
    start, end = require_range(start, end, limits)
    if bucket is not None:
        require_points(start, end, bucket, limits, "bucket")
    target = require_report_currency(currency, org.reporting_currency, "currency")
    dimensions = tuple(dict.fromkeys(d.dimension for d in group_by))
    filters, accounts = await _filters(session, org, filter or UsageFilter())
    query = repo.MeasureQuery(
        organizations=(org.id,),
        start=start,
        end=end,
        filters=filters,
        customer_accounts=accounts,
        group_by=dimensions,
        bucket=None if bucket is None else bucket.value,
    )
    connection = await driver_connection(session)
    converted = await conversion.convert_one(session, connection, org.id, query, target)
    result = [
        UsageRow(
            dict(zip(dimensions, row.key, strict=True)), row.bucket, Figures.of(row.totals, target)
        )
        for row in converted.rows
        if row.totals.has_usage()
    ]
    for pair in converted.missing:
        result.extend(
            UsageRow(
                dict(zip(dimensions, row.key, strict=True)),
                row.bucket,
                Figures.of(row.totals, pair.base),
                (pair,),
            )
            for row in converted.by_currency.get(pair.base, [])
            if row.totals.has_usage()
        )
    if len(result) > limits.max_usage_rows:
        raise ValidationFailed(
            f"the grouping makes {len(result)} rows; at most {limits.max_usage_rows} are "
            "returned: filter, group by fewer dimensions or use a larger bucket",
            "groupBy",
        )
    result.sort(
        key=lambda r: (
            r.bucket or start,
            *("" if v is None else str(v) for v in r.key.values()),
            bool(r.missing),
            r.figures.currency,
        )
    )
    return result
