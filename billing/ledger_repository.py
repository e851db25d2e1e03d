"""SQL of the ledger. Inserts go through asyncpg directly (the hot path); reads use the ORM,
whose statements the tenant filter in :mod:`costgraph.models.scoping` confines."""

from __future__ import annotations

import dataclasses
import json
import operator
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing.balance_repository import SubscriptionTerm
from costgraph.billing.budget_repository import budget_of_row
from costgraph.billing.commands import LedgerFilter
from costgraph.billing.entries import Entry
from costgraph.billing.raw_connection import driver_connection as driver_connection
from costgraph.billing.raw_connection import plain_uuid
from costgraph.kernel.pagination import decode_cursor
from costgraph.models.budget import Budget
from costgraph.models.ledger import EntryType, LedgerEntry
from costgraph.models.scoping import TenantNotBound, bound_tenant

#: (column, postgres array type) in insertion order; jsonb travels as text.
_INSERT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("organization_id", "uuid"),
    ("id", "uuid"),
    ("type", "text"),
    ("account_id", "uuid"),
    ("customer_id", "uuid"),
    ("occurred_at", "timestamptz"),
    ("currency", "text"),
    ("amount", "numeric"),
    ("balance_delta", "numeric"),
    ("ai_cost", "numeric"),
    ("provider_cost", "numeric"),
    ("provider_currency", "text"),
    ("fx_rate", "numeric"),
    ("price_version_id", "uuid"),
    ("caller_priced", "bool"),
    ("provider", "text"),
    ("model", "text"),
    ("input_tokens", "int8"),
    ("output_tokens", "int8"),
    ("cached_input_tokens", "int8"),
    ("reasoning_tokens", "int8"),
    ("cache_write_tokens", "int8"),
    ("markup_percent", "numeric"),
    ("allowance_weight", "numeric"),
    ("budgeted_tokens", "int8"),
    ("units", "text"),
    ("user_id", "uuid"),
    ("department_id", "uuid"),
    ("feature", "text"),
    ("agent", "text"),
    ("request_id", "text"),
    ("related_entry_id", "uuid"),
    ("description", "text"),
    ("metadata", "text"),
    ("idempotency_key", "text"),
    ("request_hash", "bytea"),
)
_JSON_COLUMNS = {"units", "metadata"}
#: Column types sent as text and cast by the server: asyncpg's binary ``numeric`` encoder
#: costs about 1 µs a value in this process, ``str(Decimal)`` plus the server's parse about
#: a third of that (the same exact value either way; jsonb travels as text for the same
#: reason). Measured ~0.5 ms per 1,000-row column saved, six money columns.
_SENT_AS_TEXT = {"numeric"}


def _wire_type(kind: str) -> str:
    return "text" if kind in _SENT_AS_TEXT else kind


def _insert_sql() -> str:
    """One statement: claim the keys in ``ledger_keys``, insert the entries whose key was won.

    The ledger is partitioned by ``occurred_at``, so it cannot hold a unique key on
    ``(organization_id, idempotency_key)`` alone; ``ledger_keys`` does. A key another
    transaction holds uncommitted makes this one wait (as the unique index did before) and
    then skip it if that one commits.
    """
    names = ", ".join(name for name, _ in _INSERT_COLUMNS)
    arrays = ", ".join(
        f"${i}::{_wire_type(kind)}[]" for i, (_, kind) in enumerate(_INSERT_COLUMNS, 1)
    )
    selected = ", ".join(
        f"{name}::jsonb AS {name}"
        if name in _JSON_COLUMNS
        else f"{name}::{kind} AS {name}"
        if kind in _SENT_AS_TEXT
        else name
        for name, kind in _INSERT_COLUMNS
    )
    # Built once from the constant column list above; no caller input reaches the text.
    return (
        f"WITH t AS MATERIALIZED (SELECT {selected} FROM unnest({arrays}) AS t({names})), "  # noqa: S608
        "k AS (INSERT INTO ledger_keys (organization_id, idempotency_key, entry_id, occurred_at) "
        "SELECT organization_id, idempotency_key, id, occurred_at FROM t "
        "ON CONFLICT (organization_id, idempotency_key) DO NOTHING RETURNING entry_id) "
        f"INSERT INTO ledger_entries ({names}) SELECT t.* FROM t JOIN k ON k.entry_id = t.id "
        "RETURNING idempotency_key, recorded_at"
    )


INSERT_SQL = _insert_sql()


def _insert_moving_balance_sql() -> str:
    """:data:`INSERT_SQL`, and the one account's balance moved by what was inserted.

    Only for entries of a single account: one row to lock, so no lock order to keep. The
    balance moves by the sum of the non-zero ``balance_delta`` of the rows inserted (replays
    move nothing); a prepaid account (``$n+2``) may not go below zero with a negative sum.
    The account comes back in the third column when it moved, with its balance row's
    ``auto_top_up`` flag (migration 0021) in the fourth, read as the row lock left it; when
    it did not move (no balance row yet, or the floor refused) the caller moves it the slow
    way, which tells which.
    """
    organization = len(_INSERT_COLUMNS) + 1
    prepaid = organization + 1
    head, insert = INSERT_SQL.split(" INSERT INTO ledger_entries ", 1)
    # Built once from constants (the column list, parameter numbers); no caller input.
    return (
        f"{head}, e AS (INSERT INTO ledger_entries {insert}, account_id, balance_delta), "  # noqa: S608
        "d AS (SELECT account_id, sum(balance_delta) AS delta FROM e "
        "WHERE account_id IS NOT NULL AND balance_delta <> 0 GROUP BY account_id), "
        "b AS (UPDATE account_balances x SET balance = x.balance + d.delta FROM d "
        f"WHERE x.organization_id = ${organization} AND x.account_id = d.account_id "
        f"AND (d.delta >= 0 OR NOT ${prepaid} OR x.balance + d.delta >= 0) "
        "RETURNING x.account_id, x.auto_top_up) "
        "SELECT idempotency_key, recorded_at, NULL::uuid AS moved, NULL::bool AS top_up FROM e "
        "UNION ALL SELECT NULL, NULL, account_id, auto_top_up FROM b"
    )


INSERT_MOVING_BALANCE_SQL = _insert_moving_balance_sql()


def _insert_counting_sql() -> str:
    """:data:`INSERT_MOVING_BALANCE_SQL`, and the budget counters raised by what was inserted.

    The write's counters (``$n+3``..``$n+6``: budget, period start, amount, cap) move in the
    same statement as its entry and balance, only once the balance moved (so an entry was
    inserted: a replay moves nothing), each only within its cap (``spent + reserved + amount
    <= cap``; a NULL cap is no check), in (budget, period) order. Waiting for the balance's
    move first keeps every writer's lock order: the balance, then the counters. A counter
    this statement did not move (the balance did not move here — no balance row yet, the
    prepaid floor, nothing to charge —, its row missing, or refused by the cap) is not in the
    answer: the caller raises it the slow way, after the balance, which tells which. So a
    usage write takes its row locks in one round trip, the last statement before its commit
    hooks, instead of holding the balance's lock across three more.
    """
    first = len(_INSERT_COLUMNS) + 3
    budget, start, amount, cap = (f"${first + i}" for i in range(4))
    head = INSERT_MOVING_BALANCE_SQL.split(" SELECT idempotency_key, recorded_at,", 1)[0]
    # Built once from constants (the statement above, parameter numbers); no caller input.
    return (
        f"{head}, c AS (UPDATE budget_counters x SET spent = x.spent + w.amount "  # noqa: S608
        "FROM (SELECT budget_id, period_start, amount::numeric AS amount, cap::numeric AS cap "
        f"FROM unnest({budget}::uuid[], {start}::timestamptz[], {amount}::text[], "
        f"{cap}::text[]) AS u(budget_id, period_start, amount, cap) ORDER BY 1, 2) AS w "
        "WHERE x.budget_id = w.budget_id AND x.period_start = w.period_start "
        "AND (w.cap IS NULL OR x.spent + x.reserved + w.amount <= w.cap) "
        "AND EXISTS (SELECT 1 FROM b) "
        "RETURNING x.budget_id, x.period_start, x.spent, x.reserved) "
        "SELECT idempotency_key, recorded_at, NULL::uuid AS moved, NULL::bool AS top_up, "
        "NULL::uuid AS budget_id, NULL::timestamptz AS period_start, NULL::numeric AS spent, "
        "NULL::numeric AS reserved FROM e "
        "UNION ALL SELECT NULL, NULL, account_id, auto_top_up, NULL, NULL, NULL, NULL FROM b "
        "UNION ALL SELECT NULL, NULL, NULL, NULL, budget_id, period_start, spent, reserved FROM c"
    )


INSERT_COUNTING_SQL = _insert_counting_sql()

#: A budget counter a usage write raises in its insert: (budget, period start, amount, cap).
CounterMove = tuple[uuid.UUID, datetime, Decimal, Decimal | None]
#: The counters it raised: (budget, period start) -> the new (spent, reserved).
MovedCounters = dict[tuple[uuid.UUID, datetime], tuple[Decimal, Decimal]]
#: The balances an insert moved: account -> its ``auto_top_up`` flag, read under the lock.
MovedBalances = dict[uuid.UUID, bool]


def _json_text(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


_ARRAY_GETTER = operator.attrgetter(*(name for name, _ in _INSERT_COLUMNS))
_TYPE_INDEX = [name for name, _ in _INSERT_COLUMNS].index("type")
_JSON_INDEXES = tuple(i for i, (name, _) in enumerate(_INSERT_COLUMNS) if name in _JSON_COLUMNS)
_TEXT_INDEXES = tuple(i for i, (_, kind) in enumerate(_INSERT_COLUMNS) if kind in _SENT_AS_TEXT)


def _column_arrays(entries: Sequence[Entry]) -> list[list[Any]]:
    """The insert's column arrays: one C-level getter per entry, then a transpose."""
    arrays = [list(column) for column in zip(*map(_ARRAY_GETTER, entries), strict=True)]
    arrays[_TYPE_INDEX] = [kind.value for kind in arrays[_TYPE_INDEX]]
    for index in _JSON_INDEXES:
        arrays[index] = [_json_text(value) for value in arrays[index]]
    for index in _TEXT_INDEXES:
        arrays[index] = [None if value is None else str(value) for value in arrays[index]]
    return arrays


async def insert_entries(session: AsyncSession, entries: Sequence[Entry]) -> dict[str, datetime]:
    """Insert what is new; return ``idempotency key -> recorded_at`` of the rows written.

    A key that already exists (committed, or committed meanwhile by a concurrent request,
    which PostgreSQL waits for) is skipped: the caller decides between replay and conflict.
    """
    if not entries:
        return {}
    return await insert_on(await driver_connection(session), entries)


async def insert_on(connection: Any, entries: Sequence[Entry]) -> dict[str, datetime]:
    """:func:`insert_entries` on a connection already in the session's transaction."""
    rows = await connection.fetch(INSERT_SQL, *_column_arrays(entries))
    return {row["idempotency_key"]: row["recorded_at"] for row in rows}


async def insert_entries_moving_balance(
    session: AsyncSession,
    entries: Sequence[Entry],
    organization_id: uuid.UUID,
    prepaid: bool,
    counters: Sequence[CounterMove] = (),
) -> tuple[dict[str, datetime], MovedBalances, MovedCounters]:
    """:func:`insert_entries` for entries of one account, moving its balance in the same
    statement (see :func:`_insert_moving_balance_sql`), and with ``counters`` those budget
    counters too (:func:`_insert_counting_sql`); returns the balances (with their
    ``auto_top_up`` flags) and counters moved."""
    connection = await driver_connection(session)
    arguments = [*_column_arrays(entries), organization_id, prepaid]
    if not counters:
        rows = await connection.fetch(INSERT_MOVING_BALANCE_SQL, *arguments)
        return (
            {row[0]: row[1] for row in rows if row[0] is not None},
            {plain_uuid(row[2]): row[3] for row in rows if row[2] is not None},
            {},
        )
    rows = await connection.fetch(
        INSERT_COUNTING_SQL,
        *arguments,
        [c[0] for c in counters],
        [c[1] for c in counters],
        [str(c[2]) for c in counters],
        [None if c[3] is None else str(c[3]) for c in counters],
    )
    inserted: dict[str, datetime] = {}
    moved: MovedBalances = {}
    raised: MovedCounters = {}
    for key, recorded_at, account_id, top_up, budget_id, period_start, spent, reserved in rows:
        if key is not None:
            inserted[key] = recorded_at
        elif account_id is not None:
            moved[plain_uuid(account_id)] = top_up
        else:
            raised[(plain_uuid(budget_id), period_start)] = (spent, reserved)
    return inserted, moved, raised


def to_entry(row: LedgerEntry) -> Entry:
    return Entry(
        organization_id=row.organization_id,
        id=row.id,
        type=EntryType(row.type),
        account_id=row.account_id,
        customer_id=row.customer_id,
        occurred_at=row.occurred_at,
        currency=row.currency,
        amount=row.amount,
        idempotency_key=row.idempotency_key,
        request_hash=row.request_hash,
        balance_delta=row.balance_delta,
        ai_cost=row.ai_cost,
        provider_cost=row.provider_cost,
        provider_currency=row.provider_currency,
        fx_rate=row.fx_rate,
        price_version_id=row.price_version_id,
        caller_priced=row.caller_priced,
        provider=row.provider,
        model=row.model,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        cached_input_tokens=row.cached_input_tokens,
        reasoning_tokens=row.reasoning_tokens,
        cache_write_tokens=row.cache_write_tokens,
        markup_percent=row.markup_percent,
        allowance_weight=row.allowance_weight,
        budgeted_tokens=row.budgeted_tokens,
        units=row.units,
        user_id=row.user_id,
        department_id=row.department_id,
        feature=row.feature,
        agent=row.agent,
        request_id=row.request_id,
        related_entry_id=row.related_entry_id,
        description=row.description,
        metadata=row.metadata_,
        recorded_at=row.recorded_at,
    )


_ENTRY_FIELDS = tuple(f.name for f in dataclasses.fields(Entry) if f.name != "replayed")
_ENTRY_COLUMNS = ", ".join(f"e.{name}" for name in _ENTRY_FIELDS)
# The key table says which entry owns a key and in which partition it lives; the entry is
# then found by its primary key inside that one partition (exact ``occurred_at``: the plan
# prunes the partitions per row at run time, also as the cached generic plan).
# A join against unnest, not `= ANY($2)`: once asyncpg's cached statement gets a generic
# plan, ANY searches the whole array for every index row (measured 190-300 ms for 1,000
# keys, against 2 ms for the join).
_FIND_SQL = (
    f"SELECT {_ENTRY_COLUMNS} FROM unnest($2::text[]) AS w(key) "  # noqa: S608 (constant columns)
    "JOIN ledger_keys k ON k.organization_id = $1 AND k.idempotency_key = w.key "
    # LIMIT 1 keeps the lateral a per-key probe of one partition: flattened into a join, a
    # cached generic plan hash-joined every partition of the tenant (seconds for 1,000 keys).
    "JOIN LATERAL (SELECT * FROM ledger_entries x WHERE x.organization_id = $1 "
    "AND x.id = k.entry_id AND x.occurred_at = k.occurred_at LIMIT 1) AS e ON true"
)


_UUID_FIELDS = tuple(
    name
    for name in _ENTRY_FIELDS
    if name in {"organization_id", "id", "price_version_id", "related_entry_id"}
    or name.endswith(("account_id", "customer_id", "user_id", "department_id"))
)


def _entry_of_record(record: Any) -> Entry:
    """An :class:`Entry` from an asyncpg record of :data:`_ENTRY_COLUMNS` (jsonb is text)."""
    values = dict(zip(_ENTRY_FIELDS, record, strict=True))
    values["type"] = EntryType(values["type"])
    for name in _UUID_FIELDS:
        values[name] = plain_uuid(values[name])
    for name in ("units", "metadata"):
        if isinstance(values[name], str):
            values[name] = json.loads(values[name])  # as the ORM reads jsonb (big ints stay)
    return Entry(**values)


def _tenant_of(session: AsyncSession, what: str) -> uuid.UUID:
    tenant = bound_tenant(session.sync_session)
    if tenant is None:
        raise TenantNotBound(f"{what} needs a tenant-bound session")
    return tenant


async def known_keys(session: AsyncSession, keys: Iterable[str]) -> set[str]:
    """Of ``keys``, those already recorded (committed, or written by this transaction)."""
    wanted = list(set(keys))
    if not wanted:
        return set()
    tenant = _tenant_of(session, "known_keys")
    connection = await driver_connection(session)
    rows = await connection.fetch(
        "SELECT k.idempotency_key FROM unnest($2::text[]) AS w(key) "
        "JOIN ledger_keys k ON k.organization_id = $1 AND k.idempotency_key = w.key",
        tenant,
        wanted,
    )
    return {row[0] for row in rows}


async def find_by_keys(session: AsyncSession, keys: Iterable[str]) -> dict[str, Entry]:
    """The recorded entries of these keys (raw asyncpg, the tenant named explicitly: the ORM
    spent most of this building objects to throw away)."""
    wanted = list(set(keys))
    if not wanted:
        return {}
    tenant = _tenant_of(session, "find_by_keys")
    connection = await driver_connection(session)
    rows = await connection.fetch(_FIND_SQL, tenant, wanted)
    return {row["idempotency_key"]: _entry_of_record(row) for row in rows}


async def get_entry(session: AsyncSession, entry_id: uuid.UUID) -> Entry | None:
    row = await session.scalar(select(LedgerEntry).where(LedgerEntry.id == entry_id))
    return None if row is None else to_entry(row)


async def refunded_total(
    session: AsyncSession, entry_id: uuid.UUID, key_prefix: str | None = None
) -> Decimal:
    """What was refunded of a payment (``key_prefix``: only refunds whose idempotency key
    starts with it, e.g. those recorded from Stripe)."""
    conditions = [
        LedgerEntry.type == EntryType.REFUND.value,
        LedgerEntry.related_entry_id == entry_id,
    ]
    if key_prefix is not None:
        conditions.append(LedgerEntry.idempotency_key.startswith(key_prefix, autoescape=True))
    total = await session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(*conditions)
    )
    return Decimal(total or 0)


async def lock_for_refund(
    session: AsyncSession, organization_id: uuid.UUID, entry_id: uuid.UUID
) -> None:
    """Serialise refunds of one payment (entries are never updated, so no row lock)."""
    connection = await driver_connection(session)
    await connection.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        f"refund:{organization_id}:{entry_id}",
    )


# --- listing with a stable keyset cursor over (occurred_at DESC, id DESC) ---


async def list_entries(
    session: AsyncSession, filters: LedgerFilter, first: int, after: str | None
) -> tuple[list[Entry], bool]:
    conditions = []
    if filters.start is not None:
        conditions.append(LedgerEntry.occurred_at >= filters.start)
    if filters.end is not None:
        conditions.append(LedgerEntry.occurred_at < filters.end)
    if filters.types:
        conditions.append(LedgerEntry.type.in_(filters.types))
    for column, value in (
        (LedgerEntry.account_id, filters.account_id),
        (LedgerEntry.customer_id, filters.customer_id),
        (LedgerEntry.user_id, filters.user_id),
        (LedgerEntry.model, filters.model),
        (LedgerEntry.feature, filters.feature),
        (LedgerEntry.agent, filters.agent),
    ):
        if value is not None:
            conditions.append(column == value)
    if after is not None:
        occurred, ident = decode_cursor(after)
        conditions.append(
            or_(
                LedgerEntry.occurred_at < occurred,
                and_(LedgerEntry.occurred_at == occurred, LedgerEntry.id < ident),
            )
        )
    statement = (
        select(LedgerEntry)
        .where(*conditions)
        .order_by(LedgerEntry.occurred_at.desc(), LedgerEntry.id.desc())
        .limit(first + 1)
    )
    rows = [to_entry(row) for row in await session.scalars(statement)]
    return rows[:first], len(rows) > first


# --- what a usage write reads about its accounts and users (raw: the hot path) ---


@dataclass(frozen=True, slots=True)
class UsageAccount:
    id: uuid.UUID
    customer_id: uuid.UUID
    currency: str
    postpaid: bool


@dataclass(frozen=True, slots=True)
class UsageParties:
    """What a usage write reads before it writes, in one round trip: the tenant's accounts
    and users the batch names, those accounts' subscriptions, whether the tenant has any
    budget, and the transaction's ``now()`` (what ``recorded_at`` defaults to for every row
    this transaction writes)."""

    now: datetime
    accounts: dict[uuid.UUID, UsageAccount]
    departments: dict[uuid.UUID, uuid.UUID | None]
    #: Per account, oldest first (as ``balance_repository.subscriptions_of`` orders them).
    subscriptions: dict[uuid.UUID, list[SubscriptionTerm]]
    #: Every budget of the tenant, read under the writer's share of the budget guard.
    budgets: list[Budget]

    @property
    def has_budgets(self) -> bool:
        return bool(self.budgets)


_PARTIES_SQL = (
    "SELECT now(), 'a', id, customer_id, currency, postpaid, NULL::timestamptz, "
    "NULL::timestamptz, NULL::int8, NULL::budgets[] "
    "FROM accounts WHERE organization_id = $1 AND id = ANY($2::uuid[]) "
    "UNION ALL SELECT now(), 'u', id, department_id, NULL, NULL, NULL, NULL, NULL, NULL "
    "FROM users WHERE organization_id = $1 AND id = ANY($3::uuid[]) "
    # (a subscription's pool, if any, in the second column: its uuid slot). Read under the
    # writer's share of the same guard (migration 0020): a subscription committed meanwhile
    # is seen, or waits for this write to commit.
    "UNION ALL SELECT now(), 's', account_id, pool_id, NULL, NULL, starts_at, ends_at, "
    "included_tokens, NULL FROM subscriptions_for_writer($1, $2::uuid[]) "
    # The tenant's budgets, read under the writer's share of the budget guard (migration
    # 0011: the function takes it, then reads with a fresh snapshot): a budget set meanwhile
    # either counted this write's entries or is seen. No ORM statement of its own.
    "UNION ALL SELECT now(), 'b', NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
    "(SELECT array_agg(w ORDER BY w.id) FROM budgets_for_writer($1) AS w)"
)


#: Detached budgets by the whole row they were built from: building an ORM object costs
#: ~40 µs and every usage write reads all of its tenant's budgets, which change rarely. Any
#: change of the row (terms, version) is another key; the objects are only read.
_BUDGETS: dict[tuple[Any, ...], Budget] = {}
_BUDGETS_KEPT = 10_000


def _budget_of_record(record: Any, organization_id: uuid.UUID) -> Budget:
    """A detached :class:`Budget` of a ``budgets`` row as asyncpg decodes it (plain uuids),
    shared by every write that reads the same row."""
    key = tuple(tuple(v) if isinstance(v, list) else v for v in record.values())
    budget = _BUDGETS.get(key)
    if budget is None:
        row = dict(record.items())
        row["id"], row["scope_id"] = plain_uuid(row["id"]), plain_uuid(row["scope_id"])
        budget = budget_of_row(row, organization_id)
        budget.terms_version = row["terms_version"]
        if len(_BUDGETS) >= _BUDGETS_KEPT:
            _BUDGETS.clear()
        _BUDGETS[key] = budget
    return budget


async def usage_parties(
    session: AsyncSession, account_ids: Iterable[uuid.UUID], user_ids: Iterable[uuid.UUID]
) -> UsageParties:
    """One round trip for everything a usage batch reads of its tenant before writing."""
    tenant = _tenant_of(session, "usage_parties")
    connection = await driver_connection(session)
    wanted_accounts = list(set(account_ids))
    rows = await connection.fetch(_PARTIES_SQL, tenant, wanted_accounts, list(set(user_ids)))
    accounts: dict[uuid.UUID, UsageAccount] = {}
    departments: dict[uuid.UUID, uuid.UUID | None] = {}
    terms: list[SubscriptionTerm] = []
    budgets: list[Budget] = []
    for _, kind, ident, other, currency, flag, starts_at, ends_at, included, found in rows:
        if kind == "a":
            account_id = plain_uuid(ident)
            accounts[account_id] = UsageAccount(account_id, plain_uuid(other), currency, flag)
        elif kind == "u":
            departments[plain_uuid(ident)] = plain_uuid(other)
        elif kind == "s":
            terms.append(
                SubscriptionTerm(plain_uuid(ident), starts_at, ends_at, included, plain_uuid(other))
            )
        else:
            budgets = [_budget_of_record(record, tenant) for record in found or ()]
    subscriptions: dict[uuid.UUID, list[SubscriptionTerm]] = {a: [] for a in wanted_accounts}
    for term in sorted(terms, key=lambda t: t.starts_at):
        subscriptions[term.account_id].append(term)
    return UsageParties(rows[0][0], accounts, departments, subscriptions, budgets)
