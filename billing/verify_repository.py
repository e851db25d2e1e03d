"""SQL of ``costgraph verify``: every stored number derived from the ledger, beside the same
number recomputed from the ledger, in the verifier's one read-only snapshot.

A :class:`Comparison` is a statement yielding one row per stored row or recomputed row (a
FULL JOIN of the two): ``organization_id``, its key columns, and per measure ``s_<m>`` (what is
stored; NULL when no row is stored) and ``r_<m>`` (what the ledger says; NULL when the ledger
has nothing there, i.e. 0). It is run twice at most: once to count the rows and the drifting
ones (a streaming aggregate, however many rows), and — only when something drifts — once more
for the drifting rows themselves, bounded. ``$1`` is the organisation (NULL: every one); with
an organisation the statement names it (``= $1``) so its indexes are used.

Every value is a bind parameter; the SQL is assembled from constant names only.
"""

# ruff: noqa: S608

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from costgraph.billing.pnl_measures import COUNTS, MEASURE_NAMES, MEASURES, MONEY, USAGE_SQL
from costgraph.billing.pnl_repository import MARK_SQL
from costgraph.billing.rollups import GRAIN, TABLE_KEYS
from costgraph.billing.weights import BUDGETED_SQL


def org_condition(alias: str, filtered: bool) -> str:
    """``$1`` is the organisation: named when given, else every organisation."""
    return f"{alias}.organization_id = $1" if filtered else "$1::uuid IS NULL"


def instant(sql: str) -> str:
    """An instant as :func:`~costgraph.kernel.clock.format_rfc3339` writes it (microseconds
    only when there are some); the verifier's transaction runs in UTC."""
    return (
        f"to_char({sql}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN date_trunc('second', {sql}) "
        f"= {sql} THEN '' ELSE to_char({sql}, '.US') END || 'Z'"
    )


@dataclass(frozen=True, slots=True)
class Comparison:
    """One kind of derived number: stored rows against the ledger (see the module doc)."""

    what: str
    #: The FULL JOIN, by filtered (an organisation named) or not.
    sql: dict[bool, str]
    measures: tuple[str, ...]
    #: SQL over the row ``c``: where the number lives, for a person to read.
    scope: str
    #: Parameters after ``$1`` (the organisation) that ``sql`` takes.
    extra_params: int = 0

    def _drift(self) -> str:
        return " OR ".join(f"coalesce(c.s_{m}, 0) <> coalesce(c.r_{m}, 0)" for m in self.measures)

    def count_sql(self, filtered: bool) -> str:
        return (
            f"SELECT count(*), count(*) FILTER (WHERE {self._drift()}) "
            f"FROM ({self.sql[filtered]}) c"
        )

    def rows_sql(self, filtered: bool) -> str:
        stored = ", ".join(f"c.s_{m}::numeric" for m in self.measures)
        recomputed = ", ".join(f"c.r_{m}::numeric" for m in self.measures)
        limit = f"${self.extra_params + 2}"
        return (
            f"SELECT c.organization_id, {self.scope}, ARRAY[{stored}], ARRAY[{recomputed}] "
            f"FROM ({self.sql[filtered]}) c WHERE {self._drift()} "
            f"ORDER BY 1, 2 LIMIT {limit}"
        )


@dataclass(frozen=True, slots=True)
class Compared:
    """What a comparison found: rows compared, rows drifting, and up to a bound of them."""

    compared: int
    drifting: int
    #: (organisation, scope, stored per measure, recomputed per measure)
    rows: list[tuple[uuid.UUID, str, list[Decimal | None], list[Decimal | None]]]


async def compare(
    connection: Any,
    comparison: Comparison,
    organization_id: uuid.UUID | None,
    max_rows: int,
    *extra: Any,
) -> Compared:
    filtered = organization_id is not None
    compared, drifting = await connection.fetchrow(
        comparison.count_sql(filtered), organization_id, *extra
    )
    rows = []
    if drifting:
        found = await connection.fetch(
            comparison.rows_sql(filtered), organization_id, *extra, max_rows
        )
        rows = [(r[0], r[1], list(r[2]), list(r[3])) for r in found]
    return Compared(int(compared), int(drifting), rows)


async def organization_exists(connection: Any, organization_id: uuid.UUID) -> bool:
    return bool(
        await connection.fetchval("SELECT 1 FROM organizations WHERE id = $1", organization_id)
    )


def _by_filter(build: Any) -> dict[bool, str]:
    return {filtered: build(filtered) for filtered in (False, True)}


# --- account balances: SUM(balance_delta) of the account's entries ---


def _balances(filtered: bool) -> str:
    return (
        "SELECT organization_id, account_id, s.balance AS s_balance, r.balance AS r_balance "
        "FROM (SELECT organization_id, account_id, balance FROM account_balances b "
        f"WHERE {org_condition('b', filtered)}) s "
        "FULL JOIN (SELECT organization_id, account_id, sum(balance_delta) AS balance "
        "FROM ledger_entries e WHERE e.account_id IS NOT NULL "
        f"AND {org_condition('e', filtered)} GROUP BY 1, 2) r "
        "USING (organization_id, account_id)"
    )


BALANCES = Comparison("balance", _by_filter(_balances), ("balance",), "'account ' || c.account_id")


# --- auto-top-up flags: a balance row's flag = an enabled setting of its account ---


def _top_up_flags(filtered: bool) -> str:
    """1 on each side where it holds: a flagged balance row, an enabled setting. The flag is
    what lets a usage write skip the top-up evaluation (migration 0021); a setting without
    it would never be evaluated."""
    return (
        "SELECT organization_id, account_id, s.flag AS s_flag, r.flag AS r_flag "
        "FROM (SELECT organization_id, account_id, 1 AS flag FROM account_balances b "
        f"WHERE b.auto_top_up AND {org_condition('b', filtered)}) s "
        "FULL JOIN (SELECT organization_id, account_id, 1 AS flag FROM auto_top_ups t "
        f"WHERE t.enabled AND {org_condition('t', filtered)}) r "
        "USING (organization_id, account_id)"
    )


TOP_UP_FLAGS = Comparison(
    "auto_top_up flag", _by_filter(_top_up_flags), ("flag",), "'account ' || c.account_id"
)


# --- allowance counters: tokens drawn per (account, cycle) ---

#: Usage charges of subscribed accounts that drew on an allowance, with the subscription in
#: force when they occurred (the one that started last, as ``in_force`` picks it). An entry
#: drew iff it was not charged in full (``balance_delta > -amount``). An entry charged in
#: full drew nothing — the allowance was used up, the entry came too late for its cycle, or
#: it cost nothing (no cost to cover: billing/allowances.py). A subscription with no tokens
#: now still drew on a cycle opened before it moved to a plan without any (the
#: cycle keeps its allowance); where no counter opened, what it "drew" recomputes to 0.
_DRAWING_USAGE = (  # budgeted tokens recomputed from each entry's weights (billing/weights.py)
    "SELECT e.organization_id, e.account_id, s.starts_at AS sub_start, "
    "s.included_tokens AS included, s.pool_id, e.occurred_at, "
    f"{BUDGETED_SQL} AS tokens "
    "FROM (SELECT DISTINCT organization_id, account_id FROM account_subscriptions x "
    "WHERE {org_x}) sa "
    "JOIN ledger_entries e ON e.organization_id = sa.organization_id "
    "AND e.account_id = sa.account_id "
    "CROSS JOIN LATERAL (SELECT x.starts_at, x.included_tokens, x.pool_id "
    "FROM account_subscriptions x "
    "WHERE x.organization_id = e.organization_id AND x.account_id = e.account_id "
    "AND x.starts_at <= e.occurred_at AND (x.ends_at IS NULL OR e.occurred_at < x.ends_at) "
    "ORDER BY x.starts_at DESC LIMIT 1) s "
    "WHERE e.type = 'USAGE_CHARGE' "
    "AND e.balance_delta > -e.amount"
)


def drawing_usage(filtered: bool) -> str:
    return _DRAWING_USAGE.format(org_x=org_condition("x", filtered))


def _usage_spans(filtered: bool) -> str:
    return (
        "SELECT u.organization_id, u.account_id, u.sub_start, u.included, "
        f"min(u.occurred_at), max(u.occurred_at) FROM ({drawing_usage(filtered)}) u "
        "WHERE u.pool_id IS NULL GROUP BY 1, 2, 3, 4"
    )


USAGE_SPANS = _by_filter(_usage_spans)


@dataclass(frozen=True, slots=True)
class UsageSpan:
    """The first and last drawing usage of one account under one subscription."""

    organization_id: uuid.UUID
    account_id: uuid.UUID
    sub_start: datetime
    included: int
    first: datetime
    last: datetime


async def usage_spans(connection: Any, organization_id: uuid.UUID | None) -> list[UsageSpan]:
    rows = await connection.fetch(USAGE_SPANS[organization_id is not None], organization_id)
    return [UsageSpan(*row) for row in rows]


def _allowances(filtered: bool) -> str:
    cycles = (
        "SELECT * FROM unnest($2::uuid[], $3::uuid[], $4::timestamptz[], $5::timestamptz[], "
        "$6::timestamptz[], $7::int8[]) "
        "AS y(organization_id, account_id, sub_start, cycle_start, cycle_end, included)"
    )
    drawn = (
        "SELECT y.organization_id, y.account_id, y.cycle_start, max(y.included) AS included, "
        "sum(u.tokens) AS tokens "
        f"FROM ({cycles}) y JOIN ({drawing_usage(filtered)}) u "
        "ON u.organization_id = y.organization_id AND u.account_id = y.account_id "
        "AND u.pool_id IS NULL AND u.sub_start = y.sub_start "
        "AND u.occurred_at >= y.cycle_start AND u.occurred_at < y.cycle_end GROUP BY 1, 2, 3"
    )
    # A cycle keeps the allowance its counter opened with (billing/allowances.py): a plan
    # change later in the cycle does not move it.
    return (
        "SELECT organization_id, account_id, cycle_start, s.used_tokens AS s_used, "
        "least(coalesce(s.included_tokens, r.included), coalesce(r.tokens, 0)) AS r_used "
        "FROM (SELECT organization_id, account_id, cycle_start, used_tokens, included_tokens "
        f"FROM allowance_counters k WHERE {org_condition('k', filtered)}) s "
        f"FULL JOIN ({drawn}) r USING (organization_id, account_id, cycle_start)"
    )


ALLOWANCES = Comparison(
    "allowance.used_tokens",
    _by_filter(_allowances),
    ("used",),
    f"'account ' || c.account_id || ' cycle ' || {instant('c.cycle_start')}",
    extra_params=6,
)


# --- pooled allowance counters: tokens drawn per (pool, cycle) by all the pool's accounts ---


def _pooled_usage(filtered: bool) -> str:
    """Drawing usage of accounts on a team's pool while the pool (its team subscription) was
    in force, with the pool's anchor and its included tokens per seat."""
    return (
        "SELECT u.organization_id, u.pool_id, p.starts_at AS pool_start, "
        "p.included_tokens AS included, u.occurred_at, u.tokens "
        f"FROM ({drawing_usage(filtered)}) u JOIN account_subscriptions p "
        "ON p.organization_id = u.organization_id AND p.id = u.pool_id "
        "WHERE p.starts_at <= u.occurred_at AND (p.ends_at IS NULL OR u.occurred_at < p.ends_at)"
    )


def _pool_spans(filtered: bool) -> str:
    return (
        "SELECT u.organization_id, u.pool_id, u.pool_start, u.included, "
        f"min(u.occurred_at), max(u.occurred_at) FROM ({_pooled_usage(filtered)}) u "
        "GROUP BY 1, 2, 3, 4"
    )


POOL_SPANS = _by_filter(_pool_spans)


async def pool_spans(connection: Any, organization_id: uuid.UUID | None) -> list[UsageSpan]:
    """As :func:`usage_spans`, per pool (``account_id`` holds the pool's id)."""
    rows = await connection.fetch(POOL_SPANS[organization_id is not None], organization_id)
    return [UsageSpan(*row) for row in rows]


def _pool_allowances(filtered: bool) -> str:
    """A cycle's capacity is the one its counter opened with (seats change the next cycle's),
    so the recomputed use is min(that capacity, the tokens that drew on the cycle)."""
    cycles = (
        "SELECT * FROM unnest($2::uuid[], $3::uuid[], $4::timestamptz[], $5::timestamptz[], "
        "$6::timestamptz[], $7::int8[]) "
        "AS y(organization_id, pool_id, pool_start, cycle_start, cycle_end, included)"
    )
    drawn = (
        "SELECT y.organization_id, y.pool_id, y.cycle_start, sum(u.tokens) AS tokens "
        f"FROM ({cycles}) y JOIN ({_pooled_usage(filtered)}) u "
        "ON u.organization_id = y.organization_id AND u.pool_id = y.pool_id "
        "AND u.occurred_at >= y.cycle_start AND u.occurred_at < y.cycle_end GROUP BY 1, 2, 3"
    )
    return (
        "SELECT organization_id, pool_id, cycle_start, s.used_tokens AS s_used, "
        "CASE WHEN r.tokens IS NULL THEN NULL ELSE least(s.included_tokens, r.tokens) END "
        "AS r_used FROM (SELECT organization_id, pool_id, cycle_start, used_tokens, "
        "included_tokens FROM pool_allowance_counters k "
        f"WHERE {org_condition('k', filtered)}) s "
        f"FULL JOIN ({drawn}) r USING (organization_id, pool_id, cycle_start)"
    )


POOL_ALLOWANCES = Comparison(
    "pool_allowance.used_tokens",
    _by_filter(_pool_allowances),
    ("used",),
    f"'pool ' || c.pool_id || ' cycle ' || {instant('c.cycle_start')}",
    extra_params=6,
)


# --- usage entries: the budgeted tokens each stores = recomputed from its weights ---


def _budgeted(filtered: bool) -> str:
    return (
        "SELECT e.organization_id, e.id, e.occurred_at, e.budgeted_tokens AS s_budgeted, "
        f"{BUDGETED_SQL} AS r_budgeted FROM ledger_entries e "
        f"WHERE e.type = 'USAGE_CHARGE' AND e.budgeted_tokens IS NOT NULL "
        f"AND {org_condition('e', filtered)}"
    )


BUDGETED = Comparison(
    "usage.budgeted_tokens",
    _by_filter(_budgeted),
    ("budgeted",),
    f"'entry ' || c.id || ' at ' || {instant('c.occurred_at')}",
)


# --- budgets: counters, their periods' spend, and the holds of live reservations ---


@dataclass(frozen=True, slots=True)
class StoredCounter:
    organization_id: uuid.UUID
    budget_id: uuid.UUID
    period_start: datetime
    period_end: datetime
    spent: Decimal
    #: Spend it could not count for want of a rate, per entry currency.
    uncounted: dict[str, Decimal]


async def counters(connection: Any, organization_id: uuid.UUID | None) -> list[StoredCounter]:
    rows = await connection.fetch(
        "SELECT organization_id, budget_id, period_start, period_end, spent, uncounted::text "
        f"FROM budget_counters k WHERE {org_condition('k', organization_id is not None)} "
        "ORDER BY organization_id, budget_id, period_start",
        organization_id,
    )
    return [
        StoredCounter(
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            {c: Decimal(a) for c, a in json.loads(row[5] or "{}").items()},
        )
        for row in rows
    ]


async def budget_rows(connection: Any, organization_id: uuid.UUID | None) -> list[Any]:
    return list(
        await connection.fetch(
            "SELECT organization_id, id, scope_kind, scope_id, period, custom_start, custom_end, "
            "limit_amount, currency, basis, hard_cap, thresholds, created_at FROM budgets b "
            f"WHERE {org_condition('b', organization_id is not None)} ORDER BY organization_id, id",
            organization_id,
        )
    )


#: A usage entry ``e`` in the scope of budget ``b`` (the entry's organisation is the budget's).
IN_SCOPE = (
    "(b.scope_kind = 'ORGANIZATION' "
    "OR (b.scope_kind = 'CUSTOMER' AND e.customer_id = b.scope_id) "
    "OR (b.scope_kind = 'ACCOUNT' AND e.account_id = b.scope_id) "
    "OR (b.scope_kind = 'DEPARTMENT' AND e.department_id = b.scope_id) "
    "OR (b.scope_kind = 'USER' AND e.user_id = b.scope_id))"
)


@dataclass(frozen=True, slots=True)
class PeriodKey:
    organization_id: uuid.UUID
    budget_id: uuid.UUID
    period_start: datetime
    period_end: datetime


def _uncovered(filtered: bool) -> str:
    """Per budget, usage in its scope from ``$2/$3`` (the start of the period the budget was
    set in) that no counter's period holds (``$4..$6``: periods already found missing, so the
    next one is found)."""
    known = (
        "SELECT 1 FROM unnest($4::uuid[], $5::timestamptz[], $6::timestamptz[]) "
        "AS m(budget_id, period_start, period_end) WHERE m.budget_id = b.id "
        "AND e.occurred_at >= m.period_start AND e.occurred_at < m.period_end"
    )
    return (
        "SELECT b.organization_id, b.id, min(e.occurred_at), count(*) FROM budgets b "
        "JOIN unnest($2::uuid[], $3::timestamptz[]) AS f(budget_id, from_at) "
        "ON f.budget_id = b.id "
        "JOIN ledger_entries e ON e.organization_id = b.organization_id "
        f"AND {USAGE_SQL} AND {IN_SCOPE} AND e.occurred_at >= f.from_at "
        "AND e.occurred_at >= (SELECT min(x) FROM unnest($3::timestamptz[]) AS x) "
        f"WHERE {org_condition('b', filtered)} "
        "AND (b.custom_start IS NULL OR "
        "(e.occurred_at >= b.custom_start AND e.occurred_at < b.custom_end)) "
        "AND NOT EXISTS (SELECT 1 FROM budget_counters k "
        "WHERE k.organization_id = b.organization_id "
        "AND k.budget_id = b.id AND e.occurred_at >= k.period_start "
        "AND e.occurred_at < k.period_end) "
        f"AND NOT EXISTS ({known}) GROUP BY 1, 2"
    )


UNCOVERED = _by_filter(_uncovered)


async def uncovered_usage(
    connection: Any,
    organization_id: uuid.UUID | None,
    since: dict[uuid.UUID, datetime],
    known: Sequence[PeriodKey],
) -> list[tuple[uuid.UUID, uuid.UUID, datetime, int]]:
    """Per budget: the first usage since ``since[budget]`` that no counter (nor ``known``)
    holds, and how many such entries there are."""
    if not since:
        return []
    rows = await connection.fetch(
        UNCOVERED[organization_id is not None],
        organization_id,
        list(since),
        list(since.values()),
        [p.budget_id for p in known],
        [p.period_start for p in known],
        [p.period_end for p in known],
    )
    return [(row[0], row[1], row[2], int(row[3])) for row in rows]


def _reserved(filtered: bool) -> str:
    holds = (
        "SELECT r.organization_id, (h ->> 'budget_id')::uuid AS budget_id, "
        "(h ->> 'period_start')::timestamptz AS period_start, "
        "sum((h ->> 'amount')::numeric) AS reserved "
        "FROM reservations r CROSS JOIN jsonb_array_elements(r.holds) AS h "
        f"WHERE r.state = 'HELD' AND {org_condition('r', filtered)} GROUP BY 1, 2, 3"
    )
    return (
        "SELECT organization_id, budget_id, period_start, s.reserved AS s_reserved, "
        "r.reserved AS r_reserved FROM (SELECT organization_id, budget_id, period_start, reserved "
        f"FROM budget_counters k WHERE {org_condition('k', filtered)}) s "
        f"FULL JOIN ({holds}) r USING (organization_id, budget_id, period_start)"
    )


RESERVED = Comparison(
    "budget.reserved",
    _by_filter(_reserved),
    ("reserved",),
    f"'budget ' || c.budget_id || ' period ' || {instant('c.period_start')}",
)


# --- reservations: what each live hold says, and the entry each settlement wrote ---


def _hold_amounts(filtered: bool) -> str:
    """A live hold on a budget of the reservation's own currency holds the estimate in the
    budget's basis (a hold in another currency was converted at the authorisation's rate)."""
    return (
        "SELECT r.organization_id, r.id AS reservation_id, b.id AS budget_id, "
        "(h ->> 'amount')::numeric AS s_amount, "
        "CASE WHEN b.basis = 'BILLED_USAGE' THEN r.billed ELSE r.ai_cost END AS r_amount "
        "FROM reservations r CROSS JOIN jsonb_array_elements(r.holds) AS h "
        "JOIN budgets b ON b.organization_id = r.organization_id "
        "AND b.id = (h ->> 'budget_id')::uuid "
        f"WHERE r.state = 'HELD' AND b.currency = r.currency AND {org_condition('r', filtered)}"
    )


HOLD_AMOUNTS = Comparison(
    "reservation.hold",
    _by_filter(_hold_amounts),
    ("amount",),
    "'reservation ' || c.reservation_id || ' budget ' || c.budget_id",
)


def _settled_entries(filtered: bool) -> str:
    """A settled reservation names the usage entry its settlement wrote, on its account."""
    return (
        "SELECT r.organization_id, r.id AS reservation_id, 1 AS s_entries, "
        "(SELECT count(*) FROM ledger_entries e WHERE e.organization_id = r.organization_id "
        "AND e.id = r.settled_entry_id AND e.account_id = r.account_id "
        "AND e.type = 'USAGE_CHARGE') AS r_entries "
        f"FROM reservations r WHERE r.state = 'SETTLED' AND {org_condition('r', filtered)}"
    )


SETTLED_ENTRIES = Comparison(
    "reservation.settled_entry",
    _by_filter(_settled_entries),
    ("entries",),
    "'reservation ' || c.reservation_id",
)


# --- hourly rollups: every row against a plain SUM of the entries the job has folded in ---

#: ``last_at`` compared as seconds since the epoch (every value compared is a number).
_ROLLUP_VALUES = (*MEASURE_NAMES, "last_at")


def _rollup(table: str, filtered: bool) -> str:
    key, _ = TABLE_KEYS[table]
    grain = dict(GRAIN)
    columns = ["organization_id", *key]
    sums = ", ".join(f"sum({sql}) AS {name}" for name, sql in MEASURES)
    recomputed = (
        f"SELECT e.organization_id, {', '.join(f'{grain[k]} AS {k}' for k in key)}, {sums}, "
        "extract(epoch FROM max(e.occurred_at)) AS last_at "
        "FROM ledger_entries e LEFT JOIN accounts a "
        "ON a.organization_id = e.organization_id AND a.id = e.account_id "
        f"WHERE {org_condition('e', filtered)} "
        f"AND txid_visible_in_snapshot(e.txid, {MARK_SQL}) "
        f"GROUP BY {', '.join(str(i) for i in range(1, len(columns) + 1))}"
    )
    stored_values = ", ".join([*MEASURE_NAMES, "extract(epoch FROM last_at) AS last_at"])
    stored = (
        f"SELECT {', '.join(columns)}, {stored_values} FROM {table} t "
        f"WHERE {org_condition('t', filtered)}"
    )
    pairs = ", ".join(f"s.{m} AS s_{m}, r.{m} AS r_{m}" for m in _ROLLUP_VALUES)
    return (
        f"SELECT {', '.join(columns)}, {pairs} FROM ({stored}) s "
        f"FULL JOIN ({recomputed}) r USING ({', '.join(columns)})"
    )


def _rollup_scope(table: str) -> str:
    key, _ = TABLE_KEYS[table]
    parts = [
        f"'{k} ' || c.{k}" if k != "bucket" else f"'hour ' || {instant('c.bucket')}" for k in key
    ]
    return " || ' ' || ".join(parts)


ROLLUPS: tuple[Comparison, ...] = tuple(
    Comparison(
        table,
        {filtered: _rollup(table, filtered) for filtered in (False, True)},
        _ROLLUP_VALUES,
        _rollup_scope(table),
    )
    for table in TABLE_KEYS
)


# --- month closes: each closed (organisation, month) against the ledger of that month ---

_CLOSE_COUNTS = ("entries", "events")
_TOKEN_NAMES = tuple(name for name, _ in COUNTS if name.endswith("_tokens"))
#: The money columns of ``pnl_month_closes`` (each the P&L measure of the same name).
_CLOSE_MONEY = (
    "ai_cost",
    "billed_usage",
    "postpaid_usage",
    "subscriptions",
    "top_ups",
    "refunds",
    "withdrawals",
    "platform_fees",
    "balance_adjustments",
)
CLOSE_MEASURES: tuple[str, ...] = (*_CLOSE_COUNTS, "tokens", *_CLOSE_MONEY)


def _month_closes(filtered: bool) -> str:
    counts, money = dict(COUNTS), dict(MONEY)
    sums = [f"sum({counts[name]}) AS {name}" for name in _CLOSE_COUNTS]
    sums.append("sum(" + " + ".join(f"e.{t}" for t in _TOKEN_NAMES) + ") AS tokens")
    sums += [f"sum({money[name]}) AS {name}" for name in _CLOSE_MONEY]
    account_set = "GROUPING(e.account_id) = 0"
    customer_set = "GROUPING(e.customer_id) = 0"
    recomputed = (
        "SELECT m.organization_id, m.month, "
        f"CASE WHEN {account_set} THEN 'ACCOUNT' WHEN {customer_set} THEN 'CUSTOMER' "
        "ELSE 'ORGANIZATION' END AS scope_kind, "
        f"CASE WHEN {account_set} THEN e.account_id WHEN {customer_set} THEN e.customer_id "
        "ELSE m.organization_id END AS scope_id, "
        f"e.currency, {', '.join(sums)} "
        "FROM (SELECT DISTINCT organization_id, month FROM pnl_month_closes c "
        f"WHERE {org_condition('c', filtered)}) m "
        "JOIN ledger_entries e ON e.organization_id = m.organization_id "
        "AND e.occurred_at >= m.month AND e.occurred_at < m.month + interval '1 month' "
        "LEFT JOIN accounts a ON a.organization_id = e.organization_id AND a.id = e.account_id "
        "GROUP BY GROUPING SETS ((m.organization_id, m.month, e.currency, e.account_id), "
        "(m.organization_id, m.month, e.currency, e.customer_id), "
        "(m.organization_id, m.month, e.currency)) "
        f"HAVING NOT (({account_set} AND e.account_id IS NULL) "
        f"OR ({customer_set} AND e.customer_id IS NULL))"
    )
    columns = ("organization_id", "month", "scope_kind", "scope_id", "currency")
    stored = (
        f"SELECT {', '.join(columns)}, {', '.join(CLOSE_MEASURES)} FROM pnl_month_closes c "
        f"WHERE {org_condition('c', filtered)}"
    )
    pairs = ", ".join(f"s.{m} AS s_{m}, r.{m} AS r_{m}" for m in CLOSE_MEASURES)
    return (
        f"SELECT {', '.join(columns)}, {pairs} FROM ({stored}) s "
        f"FULL JOIN ({recomputed}) r USING ({', '.join(columns)})"
    )


MONTH_CLOSES = Comparison(
    "month_close",
    _by_filter(_month_closes),
    CLOSE_MEASURES,
    "to_char(c.month, 'YYYY-MM') || ' ' || c.scope_kind || ' ' || c.scope_id || ' ' || c.currency",
)
