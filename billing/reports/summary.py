"""The monthly usage summary of an organisation or one customer, as plain data.

Every figure comes from the existing domain queries — :mod:`costgraph.billing.pnl` (totals,
breakdowns, the daily timeline) and :mod:`costgraph.billing.budgets` (status) — so a summary
agrees with the P&L GraphQL fields to the last digit. Amounts stay exact here (the ledger's
12 places); the renderers round them for presentation with
:func:`costgraph.billing.reports.presentation.rounded`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import budget_repository, budgets, pnl
from costgraph.billing.directory import OrgContext, get_many
from costgraph.billing.pnl import Scope, ScopeKind
from costgraph.billing.pnl_measures import Figures
from costgraph.billing.pnl_ranges import ReportLimits, TimeBucket
from costgraph.billing.reports.months import format_month, month_range
from costgraph.kernel.errors import NotFound
from costgraph.models import Account, Budget, Customer, Department, User

#: Rows of the top-models and top-users tables.
TOP_ROWS = 10


@dataclass(frozen=True, slots=True)
class SummaryRequest:
    month: date
    customer_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class PnLLine:
    label: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class RankedRow:
    """A model or a user over the month (money in the summary's currency, exact)."""

    label: str
    detail: str
    events: int
    tokens: int
    ai_cost: Decimal
    billed_usage: Decimal


@dataclass(frozen=True, slots=True)
class BudgetLine:
    scope: str
    period: str
    basis: str
    hard_cap: bool
    currency: str
    limit: Decimal
    spent: Decimal
    percent_used: Decimal
    stages_reached: tuple[int, ...]
    period_start: datetime
    period_end: datetime


@dataclass(frozen=True, slots=True)
class DailyPoint:
    day: date
    ai_cost: Decimal
    billed_usage: Decimal


@dataclass(frozen=True, slots=True)
class MonthlySummary:
    organization: OrgContext
    #: None: the whole organisation.
    customer: str | None
    month: date
    start: datetime
    end: datetime
    currency: str
    generated_at: datetime
    figures: Figures
    pnl: tuple[PnLLine, ...]
    models: tuple[RankedRow, ...]
    #: Every model's AI cost and billed usage (the tables show the top rows only).
    models_total: tuple[Decimal, Decimal]
    users: tuple[RankedRow, ...]
    users_total: tuple[Decimal, Decimal]
    budgets: tuple[BudgetLine, ...]
    daily: tuple[DailyPoint, ...]

    @property
    def title(self) -> str:
        who = self.organization.name
        if self.customer is not None:
            who = f"{who} / {self.customer}"
        return f"{who}: usage summary {format_month(self.month)}"

    @property
    def subject(self) -> str:
        return self.organization.name if self.customer is None else self.customer

    def filename(self, extension: str) -> str:
        who = self.organization.slug
        if self.customer is not None:
            who = f"{who}-customer"
        return f"summary-{who}-{format_month(self.month)}.{extension}"


def _pnl_lines(figures: Figures) -> tuple[PnLLine, ...]:
    return (
        PnLLine("Subscriptions", figures.subscriptions),
        PnLLine("Top-ups", figures.top_ups),
        PnLLine("Postpaid usage", figures.postpaid_usage),
        PnLLine("Refunds", -figures.refunds),
        PnLLine("Withdrawals", -figures.withdrawals),
        PnLLine("Revenue", figures.revenue),
        PnLLine("AI cost", -figures.ai_cost),
        PnLLine("Platform fees", -figures.platform_fees),
        PnLLine("Margin", figures.margin),
        PnLLine("Billed usage", figures.billed_usage),
        PnLLine("Markup earned", figures.markup),
    )


def _ranked(label: str, detail: str, figures: Figures) -> RankedRow:
    return RankedRow(
        label, detail, figures.events, figures.tokens, figures.ai_cost, figures.billed_usage
    )


def _sums(rows: list[pnl.BreakdownRow]) -> tuple[Decimal, Decimal]:
    return (
        sum((r.figures.ai_cost for r in rows), Decimal(0)),
        sum((r.figures.billed_usage for r in rows), Decimal(0)),
    )


async def _users(
    session: AsyncSession, report: pnl.Report
) -> tuple[tuple[RankedRow, ...], tuple[Decimal, Decimal]]:
    rows = await pnl.breakdown(session, report, ("user",), pnl.Order.COST)
    shown = rows[:TOP_ROWS]
    found = await get_many(session, User, [r.key["user"] for r in shown])
    ranked = []
    for row in shown:
        user = found.get(row.key["user"])
        email = "" if user is None else user.email
        name = "" if user is None or user.name is None else user.name
        ranked.append(_ranked(email or str(row.key["user"]), name, row.figures))
    return tuple(ranked), _sums(rows)


async def _models(
    session: AsyncSession, report: pnl.Report
) -> tuple[tuple[RankedRow, ...], tuple[Decimal, Decimal]]:
    rows = await pnl.breakdown(session, report, ("provider", "model"), pnl.Order.COST)
    ranked = tuple(
        _ranked(str(r.key["model"] or ""), str(r.key["provider"] or ""), r.figures)
        for r in rows[:TOP_ROWS]
    )
    return ranked, _sums(rows)


async def _scope_names(
    session: AsyncSession, org: OrgContext, wanted: list[Budget]
) -> dict[tuple[str, uuid.UUID], str]:
    ids: dict[str, list[uuid.UUID]] = {}
    for budget in wanted:
        ids.setdefault(budget.scope_kind, []).append(budget.scope_id)
    names: dict[tuple[str, uuid.UUID], str] = {}
    for ident, customer in (await get_many(session, Customer, ids.get("CUSTOMER", []))).items():
        names["CUSTOMER", ident] = customer.name
    for ident, account in (await get_many(session, Account, ids.get("ACCOUNT", []))).items():
        names["ACCOUNT", ident] = account.name
    for ident, dept in (await get_many(session, Department, ids.get("DEPARTMENT", []))).items():
        names["DEPARTMENT", ident] = dept.name
    for ident, user in (await get_many(session, User, ids.get("USER", []))).items():
        names["USER", ident] = user.email
    names["ORGANIZATION", org.id] = org.name
    return names


async def _budgets(
    session: AsyncSession,
    org: OrgContext,
    customer_id: uuid.UUID | None,
    at: datetime,
    zone: ZoneInfo,
) -> tuple[BudgetLine, ...]:
    """Each budget's status in the period holding ``at`` (the month's last instant, or now).

    A customer's summary shows the budgets of the customer and of its accounts."""
    every = list(await budget_repository.list_budgets(session, None))
    if customer_id is not None:
        accounts = set(
            await session.scalars(select(Account.id).where(Account.customer_id == customer_id))
        )
        every = [
            b
            for b in every
            if (b.scope_kind == "CUSTOMER" and b.scope_id == customer_id)
            or (b.scope_kind == "ACCOUNT" and b.scope_id in accounts)
        ]
    names = await _scope_names(session, org, every)
    lines = []
    for budget in every:
        status = await budgets.status_of(session, budget, at, zone)
        lines.append(
            BudgetLine(
                scope=f"{budget.scope_kind.lower()} "
                f"{names.get((budget.scope_kind, budget.scope_id), str(budget.scope_id))}",
                period=budget.period,
                basis=budget.basis,
                hard_cap=budget.hard_cap,
                currency=budget.currency.strip(),
                limit=budget.limit_amount,
                spent=status.spent,
                percent_used=status.percent_used,
                stages_reached=tuple(status.stages_reached),
                period_start=status.period_start,
                period_end=status.period_end,
            )
        )
    return tuple(lines)


async def build_summary(
    session: AsyncSession,
    org: OrgContext,
    request: SummaryRequest,
    limits: ReportLimits,
    *,
    now: datetime,
    zone: ZoneInfo,
    customer_field: str = "customerId",
) -> MonthlySummary:
    """The summary of ``request.month`` (a tenant-bound session). Another tenant's customer
    answers as a missing one: ``NOT_FOUND`` on ``customer_field``."""
    start, end = month_range(request.month)
    customer_name = None
    if request.customer_id is None:
        scope = Scope(ScopeKind.ORGANIZATION)
    else:
        scope = Scope(ScopeKind.CUSTOMER, request.customer_id)
        found = await get_many(session, Customer, [request.customer_id])
        if request.customer_id not in found:
            raise NotFound("customer", request.customer_id, customer_field)
        customer_name = found[request.customer_id].name
    report = await pnl.open_report(
        session, org, scope, start, end, None, limits, scope_field=customer_field
    )
    figures = await pnl.totals(session, report)
    models, models_total = await _models(session, report)
    users, users_total = await _users(session, report)
    points = await pnl.timeline(session, report, TimeBucket.DAY, limits)
    at = min(now, end - timedelta(microseconds=1))
    return MonthlySummary(
        organization=org,
        customer=customer_name,
        month=request.month,
        start=start,
        end=end,
        currency=report.currency,
        generated_at=now,
        figures=figures,
        pnl=_pnl_lines(figures),
        models=models,
        models_total=models_total,
        users=users,
        users_total=users_total,
        budgets=await _budgets(session, org, request.customer_id, at, zone),
        daily=tuple(
            DailyPoint(p.start.date(), p.figures.ai_cost, p.figures.billed_usage) for p in points
        ),
    )
