"""The monthly usage summary of an organisation or one customer, as plain data.

Every figure comes from the existing domain queries — :mod:`costgraph.billing.pnl` (totals,
breakdowns, the daily timeline) and :mod:`costgraph.billing.budgets` (status) — so a summary
agrees with the P&L GraphQL fields to the last digit. Amounts stay exact here (the ledger's
12 places); the renderers round them for presentation with
:func:`costgraph.billing.reports.presentation.rounded`.

One sign convention: every amount is shown as the figure itself — a cost is a positive
amount wherever it appears; the P&L statement says which lines are subtracted (``less``)
rather than flipping their sign. The top-N tables add up to the month's totals: the rows
shown, the rest in one row, and the usage that carries no user (or model) in an
"unattributed" row. Budgets are those that existed during the month (created before its end).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import budget_repository, budgets, pnl
from costgraph.billing.directory import OrgContext, get_many, scope_labels
from costgraph.billing.fx import CurrencyPair
from costgraph.billing.pnl import Scope, ScopeKind
from costgraph.billing.pnl_measures import Figures
from costgraph.billing.pnl_ranges import ReportLimits, TimeBucket
from costgraph.billing.reports.months import format_month, month_range
from costgraph.kernel.errors import NotFound
from costgraph.models import Account, Customer, User

#: Rows of the top-models and top-users tables.
TOP_ROWS = 10


@dataclass(frozen=True, slots=True)
class SummaryRequest:
    month: date
    customer_id: uuid.UUID | None = None


class LineRole(enum.Enum):
    ADD = "+"
    SUBTRACT = "-"
    TOTAL = "="


@dataclass(frozen=True, slots=True)
class PnLLine:
    """A line of the P&L statement: ``amount`` is the figure as it is everywhere else (a cost
    is positive); ``role`` says how it enters the total below it."""

    label: str
    amount: Decimal
    role: LineRole = LineRole.ADD

    @property
    def caption(self) -> str:
        return f"less {self.label}" if self.role is LineRole.SUBTRACT else self.label

    @property
    def signed(self) -> Decimal:
        """The line's contribution to its total."""
        return -self.amount if self.role is LineRole.SUBTRACT else self.amount


@dataclass(frozen=True, slots=True)
class RankedRow:
    """A model or a user over the month (money in the summary's currency, exact)."""

    label: str
    detail: str
    events: int
    tokens: int
    ai_cost: Decimal
    billed_usage: Decimal
    #: The user's id (empty for models and the summary rows).
    ident: str = ""


@dataclass(frozen=True, slots=True)
class RankedTable:
    """Top rows, the rest, the unattributed usage and the total: ``rows`` + ``rest`` +
    ``unattributed`` add up to ``total`` (the month's figures) in every column."""

    rows: tuple[RankedRow, ...]
    #: The rows not shown, in one (None when every row is shown).
    rest: RankedRow | None
    #: Usage that carries no user (or model): None when there is none.
    unattributed: RankedRow | None
    total: RankedRow

    @property
    def all_rows(self) -> tuple[RankedRow, ...]:
        extra = tuple(r for r in (self.rest, self.unattributed) if r is not None)
        return self.rows + extra


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
    scope_id: str = ""


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
    models: RankedTable
    users: RankedTable
    budgets: tuple[BudgetLine, ...]
    daily: tuple[DailyPoint, ...]
    #: Pairs without a rate into ``currency``: those currencies are not in the figures.
    missing: tuple[CurrencyPair, ...] = ()
    #: Each entry currency's figures in its own money (the P&L's ``byCurrency``).
    by_currency: tuple[Figures, ...] = ()

    @property
    def unconverted(self) -> tuple[Figures, ...]:
        """The figures of each currency left out for want of a rate, in its own money."""
        left_out = {pair.base for pair in self.missing}
        return tuple(f for f in self.by_currency if f.currency in left_out)

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
        PnLLine("Postpaid usage beyond allowances", figures.postpaid_usage),
        PnLLine("refunds", figures.refunds, LineRole.SUBTRACT),
        PnLLine("withdrawals", figures.withdrawals, LineRole.SUBTRACT),
        PnLLine("Revenue", figures.revenue, LineRole.TOTAL),
        PnLLine("AI cost", figures.ai_cost, LineRole.SUBTRACT),
        PnLLine("platform fees", figures.platform_fees, LineRole.SUBTRACT),
        PnLLine("Margin", figures.margin, LineRole.TOTAL),
    )


def _ranked(label: str, detail: str, figures: Figures) -> RankedRow:
    return RankedRow(
        label, detail, figures.events, figures.tokens, figures.ai_cost, figures.billed_usage
    )


def _row_sum(label: str, rows: Sequence[RankedRow]) -> RankedRow:
    return RankedRow(
        label,
        "",
        sum(r.events for r in rows),
        sum(r.tokens for r in rows),
        sum((r.ai_cost for r in rows), Decimal(0)),
        sum((r.billed_usage for r in rows), Decimal(0)),
    )


def _table(
    shown: list[RankedRow], rest: list[RankedRow], whole: Figures, noun: str, missing: str
) -> RankedTable:
    """``shown`` and ``rest`` (every attributed row), and the difference to the month's
    figures: the usage carrying no ``noun``."""
    total = _ranked("Total", "", whole)
    attributed = _row_sum("", [*shown, *rest])
    unattributed = RankedRow(
        f"Unattributed ({missing})",
        "",
        total.events - attributed.events,
        total.tokens - attributed.tokens,
        total.ai_cost - attributed.ai_cost,
        total.billed_usage - attributed.billed_usage,
    )
    none = (
        unattributed.events == 0
        and unattributed.tokens == 0
        and unattributed.ai_cost == 0
        and unattributed.billed_usage == 0
    )
    others = _row_sum(f"{len(rest)} other {noun}{'' if len(rest) == 1 else 's'}", rest)
    return RankedTable(
        tuple(shown), others if rest else None, None if none else unattributed, total
    )


async def _users(session: AsyncSession, report: pnl.Report, whole: Figures) -> RankedTable:
    rows = await pnl.breakdown(session, report, ("user",), pnl.Order.COST)
    found = await get_many(session, User, [r.key["user"] for r in rows[:TOP_ROWS]])
    ranked = []
    for row in rows[:TOP_ROWS]:
        user = found.get(row.key["user"])
        email = "" if user is None else user.email
        name = "" if user is None or user.name is None else user.name
        label = _ranked(email or str(row.key["user"]), name, row.figures)
        ranked.append(replace(label, ident=str(row.key["user"])))
    rest = [_ranked("", "", r.figures) for r in rows[TOP_ROWS:]]
    return _table(ranked, rest, whole, "user", "no user")


async def _models(session: AsyncSession, report: pnl.Report, whole: Figures) -> RankedTable:
    rows = await pnl.breakdown(session, report, ("provider", "model"), pnl.Order.COST)
    ranked = [
        _ranked(str(r.key["model"] or ""), str(r.key["provider"] or ""), r.figures)
        for r in rows[:TOP_ROWS]
    ]
    rest = [_ranked("", "", r.figures) for r in rows[TOP_ROWS:]]
    return _table(ranked, rest, whole, "model", "no model")


async def _budgets(
    session: AsyncSession,
    org: OrgContext,
    customer_id: uuid.UUID | None,
    at: datetime,
    zone: ZoneInfo,
) -> tuple[BudgetLine, ...]:
    """Each budget's status in the period holding ``at`` (the month's last instant, or now),
    for the budgets that existed by then (created before ``at``).

    A customer's summary shows the budgets of the customer and of its accounts."""
    every = [b for b in await budget_repository.list_budgets(session, None) if b.created_at <= at]
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
    names = await scope_labels(session, org, [(b.scope_kind, b.scope_id) for b in every])
    lines = []
    for budget in every:
        status = await budgets.status_of(session, budget, at, zone)
        lines.append(
            BudgetLine(
                scope=f"{budget.scope_kind.lower()} "
                f"{names.get((budget.scope_kind, budget.scope_id), str(budget.scope_id))}",
                scope_id=str(budget.scope_id),
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
    totaled = await pnl.summarize(session, report)
    figures = totaled.figures
    models = await _models(session, report, figures)
    users = await _users(session, report, figures)
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
        users=users,
        budgets=await _budgets(session, org, request.customer_id, at, zone),
        daily=tuple(
            DailyPoint(p.start.date(), p.figures.ai_cost, p.figures.billed_usage) for p in points
        ),
        missing=totaled.missing,
        by_currency=totaled.by_currency,
    )
