"""``costgraph verify``: every number derived from the ledger, recomputed from the ledger and
compared with what is stored. Read-only, and safe on a live database.

All checks run in one REPEATABLE READ, READ ONLY transaction: one snapshot of the ledger and
of every derived table, so a writer committing meanwhile is either wholly in it or wholly
out of it and never shows as drift; nothing is written. What is checked (each a small
function below, with the definition it holds the stored number to):

- **account balances**: ``account_balances.balance`` = SUM(``balance_delta``) of the
  account's entries (every writer moves the balance with the entries it writes);
- **auto-top-up flags**: ``account_balances.auto_top_up`` is set exactly for the accounts
  with an enabled auto-top-up (a usage write skips the top-up evaluation where it is off);
- **allowance cycles**: ``allowance_counters.used_tokens`` = min(the counter's included
  tokens, as the cycle opened with (a later plan change does not move them), budgeted tokens
  of the cycle's usage that drew on it, each recomputed from the weights the entry stores,
  :data:`~costgraph.billing.weights.BUDGETED_SQL`) — the cycle as
  :func:`~costgraph.billing.allowances.cycle_window` places each entry under the
  subscription in force when it occurred; an entry charged in full
  (``balance_delta = -amount``) drew nothing;
- **pooled allowance cycles**: ``pool_allowance_counters.used_tokens`` = min(the cycle's
  capacity, as it opened with, tokens of the usage of all the pool's accounts that drew on
  it while the team subscription was in force), cycles anchored at the team subscription's
  start (:mod:`~costgraph.billing.pools`);
- **budgeted tokens**: each usage entry's ``budgeted_tokens`` = the same recomputation;
- **budget counters**: ``spent`` (and ``uncounted``, the spend it could not convert for want
  of a rate) = :func:`~costgraph.billing.budget_ledger.ledger_count` of its period: the usage
  (usage charges and reprice corrections) in the budget's scope and period, in its basis,
  each entry converted to its currency as the write path converts it — the whole period's
  spend, whenever the budget was set; and every period from the one the budget was set in
  that holds usage in its scope has a counter;
- **budget holds**: a counter's ``reserved`` = the sum of the holds of the reservations
  still HELD on it. A hold past its expiry counts until it is swept (the next authorisation
  of the organisation expires it and gives it back in the same statement), so it is counted
  here too: readers discount expired holds, the counter does not;
- **live holds**: a HELD reservation's hold on a budget of its own currency is its
  estimate in the budget's basis; **settled reservations** name the usage entry their
  settlement wrote;
- **rollup rows**: every row of the six hourly rollup tables = the plain SUMs over the
  entries the rollup job has folded in (those visible in its high-water snapshot);
- **month-close rows**: each closed month's rows = the ledger of that month, per account,
  customer and organisation and currency (closed months are immutable);
- **recognised subscription months**: each month of a billed subscription cycle that has
  begun recognised exactly its share of the cycle's fees net of credits
  (:mod:`costgraph.billing.fee_verify`).

Live totals (:mod:`costgraph.subscriptions.totals`) add a check of their own from their
layer (:mod:`costgraph.subscriptions.totals_check`). A drift row says what, where, the stored
figure, the recomputed one and the difference.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from costgraph.billing import budget_ledger, budgets, fee_verify
from costgraph.billing import verify_repository as repo
from costgraph.billing.allowances import cycle_window
from costgraph.billing.budget_repository import budget_of_row
from costgraph.kernel.clock import format_rfc3339, utcnow
from costgraph.kernel.errors import NotFound
from costgraph.models.budget import Budget
from costgraph.models.scoping import TenantSession, bind_platform

#: Drifting rows listed per check (the rest are counted).
MAX_ROWS = 1_000
#: Missing budget counters looked for, one period per budget per round.
MISSING_ROUNDS = 24
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Drift:
    """A stored number that is not what the ledger says."""

    what: str
    organization_id: uuid.UUID
    scope: str
    #: None: nothing is stored (a missing row).
    stored: Decimal | None
    #: None: it cannot be recomputed (e.g. no exchange rate into the budget's currency).
    recomputed: Decimal | None

    @property
    def difference(self) -> Decimal | None:
        if self.recomputed is None:
            return None
        return self.recomputed - (self.stored or ZERO)


@dataclass(frozen=True, slots=True)
class Outcome:
    checked: int
    drift: list[Drift] = field(default_factory=list)
    #: Drifting rows found beyond those listed.
    unlisted: int = 0


@dataclass(frozen=True, slots=True)
class VerifyContext:
    #: asyncpg, inside the verifier's read-only transaction.
    connection: Any
    #: On the same connection and transaction, bound to the platform.
    session: AsyncSession
    organization_id: uuid.UUID | None
    zone: ZoneInfo
    #: The business clock's now (which month is live, for live totals).
    now: datetime
    max_rows: int


Check = Callable[[VerifyContext], Awaitable[Outcome]]


@dataclass(frozen=True, slots=True)
class NamedCheck:
    #: What it counts, in the plural ("account balances").
    name: str
    run: Check


@dataclass(frozen=True, slots=True)
class Report:
    #: Per check, how many stored numbers (or rows of them) it compared.
    checked: dict[str, int]
    drift: list[Drift]
    unlisted: int
    #: The snapshot's time (the database's clock).
    as_of: datetime

    @property
    def clean(self) -> bool:
        return not self.drift and not self.unlisted


def _drift_rows(comparison: repo.Comparison, compared: repo.Compared) -> Outcome:
    found: list[Drift] = []
    single = len(comparison.measures) == 1
    for organization_id, scope, stored, recomputed in compared.rows:
        for index, measure in enumerate(comparison.measures):
            value = stored[index]
            expected = recomputed[index] if recomputed[index] is not None else ZERO
            if (value or ZERO) != expected:
                what = comparison.what if single else f"{comparison.what}.{measure}"
                found.append(Drift(what, organization_id, scope, value, expected))
    return Outcome(compared.compared, found, compared.drifting - len(compared.rows))


async def _compare(ctx: VerifyContext, comparison: repo.Comparison, *extra: Any) -> Outcome:
    compared = await repo.compare(
        ctx.connection, comparison, ctx.organization_id, ctx.max_rows, *extra
    )
    return _drift_rows(comparison, compared)


# --- the checks ---


async def check_balances(ctx: VerifyContext) -> Outcome:
    return await _compare(ctx, repo.BALANCES)


def _cycle_columns(spans: Sequence[repo.UsageSpan]) -> list[list[Any]]:
    """Every cycle from each span's first drawing usage to its last, as unnest columns."""
    cycles: list[tuple[uuid.UUID, uuid.UUID, datetime, datetime, datetime, int]] = []
    for span in spans:
        start, end = cycle_window(span.sub_start, span.first)
        while start <= span.last:
            cycles.append(
                (span.organization_id, span.account_id, span.sub_start, start, end, span.included)
            )
            start, end = cycle_window(span.sub_start, end)
    return [[cycle[i] for cycle in cycles] for i in range(6)]


async def check_allowances(ctx: VerifyContext) -> Outcome:
    """Cycles are placed in Python by the domain's own ``cycle_window``, then summed in SQL."""
    spans = await repo.usage_spans(ctx.connection, ctx.organization_id)
    return await _compare(ctx, repo.ALLOWANCES, *_cycle_columns(spans))


async def check_pool_allowances(ctx: VerifyContext) -> Outcome:
    """A pool's cycles, anchored at its team subscription, over all its accounts' usage."""
    spans = await repo.pool_spans(ctx.connection, ctx.organization_id)
    return await _compare(ctx, repo.POOL_ALLOWANCES, *_cycle_columns(spans))


async def check_budgeted(ctx: VerifyContext) -> Outcome:
    return await _compare(ctx, repo.BUDGETED)


def _budget_scope(budget: Budget, period_start: datetime) -> str:
    return (
        f"budget {budget.id} ({budget.scope_kind} {budget.scope_id}, {budget.period}, "
        f"{budget.basis}, {budget.currency}) period {format_rfc3339(period_start)}"
    )


def _set_in(budget: Budget, zone: ZoneInfo) -> datetime:
    """The start of the period the budget was set in (its counter was counted then; every
    later period holding usage has had a write since, which opened its counter)."""
    span = budgets.period_of(budget, budget.created_at, zone)
    if span is None:  # a custom window over or not begun when set: the window itself
        assert budget.custom_start is not None
        return budget.custom_start
    return span[0]


async def _missing_periods(
    ctx: VerifyContext, by_id: dict[uuid.UUID, Budget]
) -> list[repo.PeriodKey]:
    """Periods from the one each budget was set in, holding usage in its scope, with no
    counter: one more per budget and round, from the earliest such entry (by the domain's
    ``period_of``)."""
    since = {budget_id: _set_in(budget, ctx.zone) for budget_id, budget in by_id.items()}
    missing: list[repo.PeriodKey] = []
    for _ in range(MISSING_ROUNDS):
        found = await repo.uncovered_usage(ctx.connection, ctx.organization_id, since, missing)
        if not found:
            break
        for organization_id, budget_id, first, _count in found:
            span = budgets.period_of(by_id[budget_id], first, ctx.zone)
            if span is None:  # outside a custom window: the SQL leaves those out
                since.pop(budget_id, None)
                continue
            missing.append(repo.PeriodKey(organization_id, budget_id, span[0], span[1]))
    return missing


async def check_budget_spent(ctx: VerifyContext) -> Outcome:
    """Each counter's ``spent`` (and the spend it could not count for want of a rate) against
    :func:`~costgraph.billing.budget_ledger.ledger_count`, the domain's count of a period."""
    rows = await repo.budget_rows(ctx.connection, ctx.organization_id)
    by_id = {row["id"]: budget_of_row(row) for row in rows}
    stored = {
        (c.budget_id, c.period_start): c
        for c in await repo.counters(ctx.connection, ctx.organization_id)
    }
    periods = [
        repo.PeriodKey(c.organization_id, c.budget_id, c.period_start, c.period_end)
        for c in stored.values()
    ]
    periods += await _missing_periods(ctx, by_id)
    found: list[Drift] = []
    for period in periods:
        budget = by_id[period.budget_id]
        window = (period.period_start, period.period_end)
        count = await budget_ledger.ledger_count(
            ctx.session, period.organization_id, budget, window
        )
        counter = stored.get((period.budget_id, period.period_start))
        scope = _budget_scope(budget, period.period_start)
        spent = None if counter is None else counter.spent
        if spent is None or spent != count.spent:
            found.append(Drift("budget.spent", period.organization_id, scope, spent, count.spent))
        kept = {} if counter is None else counter.uncounted
        gaps = dict(count.uncounted)
        for currency in sorted(kept.keys() | gaps.keys()):
            value, expected = kept.get(currency), gaps.get(currency, ZERO)
            if (value or ZERO) != expected:
                found.append(
                    Drift(
                        "budget.uncounted",
                        period.organization_id,
                        f"{scope} in {currency}",
                        value,
                        expected,
                    )
                )
    return Outcome(len(periods), found[: ctx.max_rows], max(0, len(found) - ctx.max_rows))


async def check_budget_reserved(ctx: VerifyContext) -> Outcome:
    return await _compare(ctx, repo.RESERVED)


async def check_top_up_flags(ctx: VerifyContext) -> Outcome:
    return await _compare(ctx, repo.TOP_UP_FLAGS)


async def check_hold_amounts(ctx: VerifyContext) -> Outcome:
    return await _compare(ctx, repo.HOLD_AMOUNTS)


async def check_settled(ctx: VerifyContext) -> Outcome:
    return await _compare(ctx, repo.SETTLED_ENTRIES)


async def check_rollups(ctx: VerifyContext) -> Outcome:
    checked, unlisted = 0, 0
    found: list[Drift] = []
    for comparison in repo.ROLLUPS:
        outcome = await _compare(ctx, comparison)
        checked += outcome.checked
        found += outcome.drift
        unlisted += outcome.unlisted
    return Outcome(checked, found, unlisted)


async def check_month_closes(ctx: VerifyContext) -> Outcome:
    return await _compare(ctx, repo.MONTH_CLOSES)


async def check_fee_recognition(ctx: VerifyContext) -> Outcome:
    checked, found = await fee_verify.recognition_drift(ctx.connection, ctx.organization_id)
    drift = [
        Drift("recognised subscription revenue", d.organization_id, d.scope, d.stored, d.recomputed)
        for d in found
    ]
    return Outcome(checked, drift[: ctx.max_rows], max(0, len(drift) - ctx.max_rows))


CHECKS: tuple[NamedCheck, ...] = (
    NamedCheck("account balances", check_balances),
    NamedCheck("auto-top-up flags", check_top_up_flags),
    NamedCheck("allowance cycles", check_allowances),
    NamedCheck("pooled allowance cycles", check_pool_allowances),
    NamedCheck("budgeted tokens", check_budgeted),
    NamedCheck("budget counters", check_budget_spent),
    NamedCheck("budget holds", check_budget_reserved),
    NamedCheck("live holds", check_hold_amounts),
    NamedCheck("settled reservations", check_settled),
    NamedCheck("rollup rows", check_rollups),
    NamedCheck("month-close rows", check_month_closes),
    NamedCheck("recognised subscription months", check_fee_recognition),
)


async def verify(
    engine: AsyncEngine,
    zone: ZoneInfo,
    *,
    organization_id: uuid.UUID | None = None,
    checks: Sequence[NamedCheck] = CHECKS,
    max_rows: int = MAX_ROWS,
    statement_timeout_ms: int | None = None,
) -> Report:
    """Run ``checks`` in one read-only snapshot (of one organisation, or of all).

    ``statement_timeout_ms``: 0 lifts the server's bound for this transaction (the command
    line over a large ledger); None keeps the connection's own.
    """
    async with engine.connect() as connection:
        await connection.execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )
        async with connection.begin():
            await connection.exec_driver_sql("SET LOCAL TimeZone = 'UTC'")
            await connection.exec_driver_sql("SET LOCAL work_mem = '256MB'")
            if statement_timeout_ms is not None:
                await connection.exec_driver_sql(
                    f"SET LOCAL statement_timeout = {int(statement_timeout_ms)}"
                )
            raw: Any = (await connection.get_raw_connection()).driver_connection
            as_of: datetime = await raw.fetchval("SELECT now()")
            if organization_id is not None and not await repo.organization_exists(
                raw, organization_id
            ):
                raise NotFound("organization", organization_id, "organizationId")
            session = AsyncSession(bind=connection, sync_session_class=TenantSession)
            bind_platform(session.sync_session)
            ctx = VerifyContext(raw, session, organization_id, zone, utcnow(), max_rows)
            checked: dict[str, int] = {}
            drift: list[Drift] = []
            unlisted = 0
            try:
                for check in checks:
                    outcome = await check.run(ctx)
                    checked[check.name] = checked.get(check.name, 0) + outcome.checked
                    drift += outcome.drift
                    unlisted += outcome.unlisted
            finally:
                await session.close()
    drift.sort(key=lambda d: (str(d.organization_id), d.what, d.scope))
    return Report(checked, drift, unlisted, as_of)
