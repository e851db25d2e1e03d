"""SQL of P&L and usage analytics: sums over a range, exact, from rollups and the raw ledger.

A range ``[start, end)`` is answered from three parts, never overlapping:

- **whole hours** ``[ws, we)`` (``ws`` = start rounded up to the hour, ``we`` = end rounded
  down) from the smallest rollup table whose dimensions cover the query's filters and
  groups (:data:`TABLES`);
- **the raw ledger** for the partial hours at the edges, and for any hour inside which an
  exchange rate changes when figures are converted (a rollup row has one time, its hour);
- **the tail**: entries of the whole hours the rollup job has not reached yet — those a
  transaction wrote that is not visible in the job's high-water snapshot (the mark).
  ``txid >= xmin(mark)`` lets the BRIN index on ``txid`` find them among the newest pages.

All three are read in one REPEATABLE READ, read-only transaction, so the mark and the rollup
rows are one consistent picture and an entry is in exactly one part. The rollups and edges
go in one statement whose generic plan PostgreSQL can keep (its shape does not depend on the
mark); the tail in a small second one, planned for the mark at hand — and skipped when no
transaction other than the job's own can have committed since the mark was taken (the
reader's snapshot says so). On a connection already inside a transaction (the isolation
can no longer be chosen) all three parts run as one statement, which is consistent by
itself. No rollup covers the dimensions: the whole range is raw. Every statement names its
organisation(s) explicitly.
"""

# SQL text here is assembled from constant names only; every value is a bind parameter.
# ruff: noqa: S608

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from costgraph.billing.pnl_measures import MEASURE_NAMES, MEASURES
from costgraph.kernel.errors import NotFound
from costgraph.models.rollups import NIL_UUID

HOUR = timedelta(hours=1)
STATE_NAME = "ledger"
#: The rollup job's high-water snapshot, read by the statement that uses it.
MARK_SQL = f"(SELECT s.snapshot::txid_snapshot FROM rollup_state s WHERE s.name = '{STATE_NAME}')"
UNITS = {"HOUR": "hour", "DAY": "day", "WEEK": "week", "MONTH": "month"}


@dataclass(frozen=True, slots=True)
class Dimension:
    name: str
    column: str  # the same name in the ledger and in the rollups
    is_uuid: bool

    def raw(self) -> str:
        return f"e.{self.column}"

    def rolled(self) -> str:
        sentinel = f"'{NIL_UUID}'::uuid" if self.is_uuid else "''"
        return f"NULLIF(r.{self.column}, {sentinel})"


DIMENSIONS: dict[str, Dimension] = {
    d.name: d
    for d in (
        Dimension("account", "account_id", True),
        Dimension("customer", "customer_id", True),
        Dimension("provider", "provider", False),
        Dimension("model", "model", False),
        Dimension("agent", "agent", False),
        Dimension("user", "user_id", True),
        Dimension("department", "department_id", True),
        Dimension("feature", "feature", False),
    )
}


@dataclass(frozen=True, slots=True)
class RollupTable:
    name: str
    dimensions: frozenset[str]


#: Cheapest first: a query uses the first whose dimensions cover it.
TABLES: tuple[RollupTable, ...] = (
    RollupTable("rollup_org_hourly", frozenset()),
    RollupTable("rollup_feature_hourly", frozenset({"feature"})),
    RollupTable("rollup_model_hourly", frozenset({"provider", "model"})),
    RollupTable("rollup_user_hourly", frozenset({"user", "department"})),
    RollupTable("rollup_agent_hourly", frozenset({"agent", "provider", "model"})),
    RollupTable("rollup_account_hourly", frozenset({"account", "customer"})),
)


def covering_table(needed: frozenset[str]) -> RollupTable | None:
    return next((t for t in TABLES if needed <= t.dimensions), None)


@dataclass(frozen=True, slots=True)
class MeasureQuery:
    """Sums over ``[start, end)`` of the given organisations' entries."""

    organizations: tuple[uuid.UUID, ...]
    start: datetime
    end: datetime
    #: ``(dimension, value)``: entries whose dimension equals the value.
    filters: tuple[tuple[str, Any], ...] = ()
    #: Only entries in this currency (a per-currency panel of a report).
    currency: str | None = None
    #: With a ``customer`` filter: that customer's accounts (the raw parts use their index).
    customer_accounts: tuple[uuid.UUID, ...] = ()
    group_by: tuple[str, ...] = ()
    by_organization: bool = False
    #: ``HOUR``/``DAY``/``WEEK``/``MONTH``: also group by that UTC bucket.
    bucket: str | None = None
    #: Rate changes (ascending, inside the range): also group by the segment between them.
    instants: tuple[datetime, ...] = ()
    #: ``(kind, id, field)``: the account or customer the query is scoped to must be the
    #: (first) organisation's, else ``NOT_FOUND`` naming ``field``; checked in the read's
    #: first round trip, where a customer's accounts are also looked up.
    verify: tuple[str, uuid.UUID, str] | None = None


@dataclass(frozen=True, slots=True)
class MeasureRow:
    organization_id: uuid.UUID | None
    currency: str
    key: tuple[Any, ...]
    bucket: datetime | None
    segment: int
    values: tuple[Any, ...]  # MEASURE_NAMES order, then last_at


def floor_hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def ceil_hour(at: datetime) -> datetime:
    floor = floor_hour(at)
    return floor if floor == at else floor + HOUR


@dataclass(slots=True)
class _Params:
    values: list[Any] = field(default_factory=list)

    def __call__(self, value: Any, cast: str = "") -> str:
        self.values.append(value)
        return f"${len(self.values)}{cast}"


@dataclass(frozen=True, slots=True)
class Plan:
    """How one query splits its range."""

    table: RollupTable | None
    whole: tuple[datetime, datetime] | None  # [ws, we) from the rollup (+ tail)
    split_hours: tuple[datetime, ...]  # hours inside ``whole`` answered raw
    raw: tuple[tuple[datetime, datetime], ...]  # raw intervals, disjoint, ascending


def plan(query: MeasureQuery) -> Plan:
    needed = frozenset(name for name, _ in query.filters) | frozenset(query.group_by)
    table = covering_table(needed)
    ws, we = ceil_hour(query.start), floor_hour(query.end)
    if table is None or ws >= we:
        return Plan(None, None, (), ((query.start, query.end),))
    split = sorted(
        {floor_hour(t) for t in query.instants if t != floor_hour(t) and ws <= floor_hour(t) < we}
    )
    pieces = [(query.start, ws), *((h, h + HOUR) for h in split), (we, query.end)]
    raw: list[tuple[datetime, datetime]] = []
    for lower, upper in pieces:
        if lower >= upper:
            continue
        if raw and raw[-1][1] == lower:
            raw[-1] = (raw[-1][0], upper)
        else:
            raw.append((lower, upper))
    return Plan(table, (ws, we), tuple(split), tuple(raw))


def _org_condition(alias: str, query: MeasureQuery, p: _Params) -> str:
    if len(query.organizations) == 1:
        return f"{alias}.organization_id = {p(query.organizations[0])}"
    return f"{alias}.organization_id = ANY({p(list(query.organizations), '::uuid[]')})"


def _raw_filters(query: MeasureQuery, p: _Params) -> list[str]:
    conditions = []
    for name, value in query.filters:
        dimension = DIMENSIONS[name]
        conditions.append(f"{dimension.raw()} = {p(value)}")
        if name == "customer":
            conditions.append(f"e.account_id = ANY({p(list(query.customer_accounts), '::uuid[]')})")
    if query.currency is not None:
        conditions.append(f"e.currency = {p(query.currency)}")
    return conditions


def _raw_select(query: MeasureQuery) -> str:
    dims = [DIMENSIONS[d].raw() for d in query.group_by]
    measures = [sql for _, sql in MEASURES]
    return ", ".join(
        [
            "e.organization_id AS org",
            "e.currency",
            *(f"{expr} AS d{i}" for i, expr in enumerate(dims)),
            "e.occurred_at AS at",
            *(f"{sql} AS {name}" for (name, _), sql in zip(MEASURES, measures, strict=True)),
            "e.occurred_at AS last_at",
        ]
    )


_FROM_LEDGER = (
    "FROM ledger_entries e LEFT JOIN accounts a "
    "ON a.organization_id = e.organization_id AND a.id = e.account_id"
)


#: What the measures and dimensions read of an entry (not the wide JSON columns).
_TAIL_COLUMNS = ", ".join(
    [
        "organization_id",
        "occurred_at",
        "currency",
        "type",
        "related_entry_id",
        "amount",
        "balance_delta",
        "ai_cost",
        "input_tokens",
        "output_tokens",
        "cached_input_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
        "txid",
        *sorted({d.column for d in DIMENSIONS.values()}),
    ]
)


def _tail_branch(
    query: MeasureQuery, shape: Plan, p: _Params, xmin: int, snapshot: str | None
) -> str:
    """Entries of the whole hours not visible in the mark (``snapshot`` None: read the mark
    from ``rollup_state`` in the same statement).

    The inner query holds only the time range and ``txid >= xmin``, behind ``OFFSET 0`` so
    the organisation's and the scope's conditions stay outside: its one index is the BRIN on
    ``txid``, and a generic plan cannot pick the scope's btree and walk the whole range.
    """
    assert shape.whole is not None
    ws, we = shape.whole
    mark = f"{p(snapshot)}::text::txid_snapshot" if snapshot is not None else MARK_SQL
    inner = (
        f"SELECT {_TAIL_COLUMNS} FROM ledger_entries WHERE occurred_at >= {p(ws)} "
        f"AND occurred_at < {p(we)} AND txid >= {p(xmin)} OFFSET 0"
    )
    where = [
        _org_condition("e", query, p),
        f"NOT txid_visible_in_snapshot(e.txid, {mark})",
        *_raw_filters(query, p),
    ]
    if shape.split_hours:
        split = p(list(shape.split_hours), "::timestamptz[]")
        where.append(f"date_trunc('hour', e.occurred_at, 'UTC') <> ALL({split})")
    return (
        f"SELECT {_raw_select(query)} FROM ({inner}) e LEFT JOIN accounts a "
        "ON a.organization_id = e.organization_id AND a.id = e.account_id "
        f"WHERE {' AND '.join(where)}"
    )


def _grouped(query: MeasureQuery, branches: list[str], p: _Params) -> str:
    keys = [*(["u.org"] if query.by_organization else []), "u.currency"]
    keys += [f"u.d{i}" for i in range(len(query.group_by))]
    if query.bucket is not None:
        keys.append(f"date_trunc('{UNITS[query.bucket]}', u.at, 'UTC')")
    if query.instants:
        keys.append(f"width_bucket(u.at, {p(list(query.instants), '::timestamptz[]')})")
    sums = [f"sum(u.{name})" for name in MEASURE_NAMES]
    union = " UNION ALL ".join(branches)
    return (
        f"SELECT {', '.join([*keys, *sums, 'max(u.last_at)'])} "
        f"FROM ({union}) u GROUP BY {', '.join(str(i) for i in range(1, len(keys) + 1))}"
    )


def build(
    query: MeasureQuery, xmin: int, *, tail: bool = True, snapshot: str | None = None
) -> tuple[str, list[Any]] | None:
    """The statement over the rollups and the raw edges, and with ``tail`` the tail: not
    visible in ``snapshot`` (the mark, read earlier in the same transaction), or without it
    in the mark read by the statement itself (``xmin`` is then a lower bound of its xmin).
    ``None``: nothing to read."""
    shape = plan(query)
    p = _Params()
    branches: list[str] = []
    raw_select = _raw_select(query)
    if shape.table is not None and shape.whole is not None:
        ws, we = shape.whole
        table = shape.table
        rolled = [
            "r.organization_id AS org",
            "r.currency",
            *(f"{DIMENSIONS[d].rolled()} AS d{i}" for i, d in enumerate(query.group_by)),
            "r.bucket AS at",
            *(f"r.{name}" for name in MEASURE_NAMES),
            "r.last_at",
        ]
        where = [
            _org_condition("r", query, p),
            f"r.bucket >= {p(ws)}",
            f"r.bucket < {p(we)}",
        ]
        if shape.split_hours:
            where.append(f"r.bucket <> ALL({p(list(shape.split_hours), '::timestamptz[]')})")
        for name, value in query.filters:
            where.append(f"r.{DIMENSIONS[name].column} = {p(value)}")
        if query.currency is not None:
            where.append(f"r.currency = {p(query.currency)}")
        branches.append(
            f"SELECT {', '.join(rolled)} FROM {table.name} r WHERE {' AND '.join(where)}"
        )
        if tail:
            branches.append(_tail_branch(query, shape, p, xmin, snapshot))
    if shape.raw:
        ranges = " OR ".join(
            f"(e.occurred_at >= {p(lower)} AND e.occurred_at < {p(upper)})"
            for lower, upper in shape.raw
        )
        where = [_org_condition("e", query, p), f"({ranges})", *_raw_filters(query, p)]
        branches.append(f"SELECT {raw_select} {_FROM_LEDGER} WHERE {' AND '.join(where)}")
    if not branches:
        return None
    return _grouped(query, branches, p), p.values


def _rows(query: MeasureQuery, records: Sequence[Any]) -> list[MeasureRow]:
    """Rows of one or more statements, groups that appear twice added together."""
    dims = len(query.group_by)
    merged: dict[tuple[Any, ...], list[Any]] = {}
    for record in records:
        values = tuple(record)
        index = 0
        organization = None
        if query.by_organization:
            organization = values[0]
            index = 1
        currency = values[index].strip()
        key = tuple(values[index + 1 : index + 1 + dims])
        index += 1 + dims
        bucket = None
        if query.bucket is not None:
            bucket = values[index]
            index += 1
        segment = 0
        if query.instants:
            segment = int(values[index])
            index += 1
        slot = (organization, currency, key, bucket, segment)
        sums = list(values[index:])
        found = merged.get(slot)
        if found is None:
            merged[slot] = sums
            continue
        for position in range(len(MEASURE_NAMES)):
            found[position] = (found[position] or 0) + (sums[position] or 0)
        last = sums[-1]
        if last is not None and (found[-1] is None or last > found[-1]):
            found[-1] = last
    return [
        MeasureRow(organization, currency, key, bucket, segment, tuple(sums))
        for (organization, currency, key, bucket, segment), sums in merged.items()
    ]


def _parse(snapshot: str) -> tuple[int, int, set[int]]:
    xmin, xmax, xip = snapshot.split(":")
    return int(xmin), int(xmax), {int(t) for t in xip.split(",") if t}


def snapshot_xmin(snapshot: str) -> int:
    return _parse(snapshot)[0]


#: Beyond this many transactions since the mark, the tail is simply read.
_TAIL_CHECK_LIMIT = 256


def tail_possible(mark: str, job_txid: int, reader: str) -> bool:
    """Can an entry visible to the ``reader`` snapshot be invisible in ``mark``? Only if some
    transaction the mark did not see (in progress then, or begun since) is visible now; the
    job's own transaction writes no entries."""
    _, m_xmax, m_xip = _parse(mark)
    r_xmin, r_xmax, r_xip = _parse(reader)
    if r_xmax - m_xmax > _TAIL_CHECK_LIMIT:
        return True
    unseen = m_xip | set(range(m_xmax, r_xmax))
    unseen.discard(job_txid)
    return any(t < r_xmin or (t < r_xmax and t not in r_xip) for t in unseen)


def _mark_sql(verify: tuple[str, uuid.UUID, str] | None) -> str:
    found, accounts = "true", "NULL::uuid[]"
    if verify is not None:
        table = _OWNED[verify[0]]
        found = f"EXISTS (SELECT 1 FROM {table} WHERE organization_id = $2 AND id = $3)"
        if verify[0] == "customer":
            accounts = (
                "ARRAY(SELECT id FROM accounts WHERE organization_id = $2 "
                "AND customer_id = $3 ORDER BY id)"
            )
    return (
        f"SELECT snapshot, txid, txid_current_snapshot()::text, {found}, {accounts} "
        "FROM rollup_state WHERE name = $1"
    )


def _verified(query: MeasureQuery, found: bool, accounts: Any) -> MeasureQuery:
    if query.verify is None:
        return query
    kind, ident, field = query.verify
    if not found:
        raise NotFound(kind, ident, field)
    if kind == "customer":
        return replace(query, customer_accounts=tuple(accounts))
    return query


#: One round trip: the read's transaction, and generic plans (the statements above are
#: shaped so that the generic plan is the right one; re-planning per call would cost more
#: than the read itself), without parallel workers (a generic plan guesses the tail at a
#: third of the rows and would start workers to read what is nearly always nothing),
#: without JIT (its estimate-driven compilation costs tens of milliseconds per call here),
#: and hashing rather than sorting the groups (a generic plan cannot know how few there are).
_BEGIN = (
    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; "
    "SET LOCAL plan_cache_mode = force_generic_plan; "
    "SET LOCAL max_parallel_workers_per_gather = 0; "
    "SET LOCAL jit = off; "
    "SET LOCAL enable_sort = off"
)


async def measure(connection: Any, query: MeasureQuery) -> list[MeasureRow]:
    """Run one query on an asyncpg connection (see the module's docstring)."""
    check = [] if query.verify is None else [query.organizations[0], query.verify[1]]
    if connection.is_in_transaction():
        row = await connection.fetchrow(_mark_sql(query.verify), STATE_NAME, *check)
        query = _verified(query, row[3], row[4])
        built = build(query, snapshot_xmin(row[0]))
        return [] if built is None else _rows(query, await connection.fetch(*_flat(built)))
    records: list[Any] = []
    await connection.execute(_BEGIN)
    done = False
    try:
        mark, job_txid, reader, found, accounts = await connection.fetchrow(
            _mark_sql(query.verify), STATE_NAME, *check
        )
        query = _verified(query, found, accounts)
        tail = tail_possible(mark, job_txid, reader)
        built = build(query, snapshot_xmin(mark), tail=tail, snapshot=mark)
        if built is not None:
            records.extend(await connection.fetch(*_flat(built)))
        done = True
    finally:
        if connection.is_in_transaction():
            await connection.execute("COMMIT" if done else "ROLLBACK")
    return _rows(query, records)


def _flat(built: tuple[str, list[Any]]) -> list[Any]:
    return [built[0], *built[1]]


#: What a report may be scoped to, by table.
_OWNED = {
    "account": "accounts",
    "customer": "customers",
    "user": "users",
    "department": "departments",
}


async def owned(connection: Any, kind: str, organization_id: uuid.UUID, ident: uuid.UUID) -> bool:
    """Is ``ident`` a ``kind`` (account, customer, user, department) of this organisation?"""
    found: bool = await connection.fetchval(
        f"SELECT EXISTS (SELECT 1 FROM {_OWNED[kind]} WHERE organization_id = $1 AND id = $2)",
        organization_id,
        ident,
    )
    return found


async def accounts_of(
    connection: Any, organization_id: uuid.UUID, customer_id: uuid.UUID
) -> tuple[uuid.UUID, ...]:
    rows = await connection.fetch(
        "SELECT id FROM accounts WHERE organization_id = $1 AND customer_id = $2 ORDER BY id",
        organization_id,
        customer_id,
    )
    return tuple(row["id"] for row in rows)
