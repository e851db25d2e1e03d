"""The rollup job: folds new ledger entries into the hourly rollup tables, seconds behind.

Why a job and not the writer's transaction: a rollup row per organisation and hour is one
row every writer of that organisation would UPDATE, so every ingesting transaction would
queue on its lock until the one before commits; ingest throughput would collapse to one
transaction at a time per organisation. The job costs the writer nothing but the ``txid``
column default (and a BRIN index entry), and P&L stays exact because queries add the
not-yet-rolled-up tail from the ledger (:mod:`costgraph.billing.pnl_repository`).

Why a snapshot and not an id or time high-water mark: entries become visible in commit
order, not in ``id``, ``recorded_at`` or ``txid`` order, so "everything below N" misses a
transaction that started before N and commits after the job ran. The mark is the job's own
``txid_current_snapshot()``: an entry is rolled up iff its ``txid`` is visible in it. A run,
in one REPEATABLE READ transaction whose snapshot is the new mark ``S``, folds every entry
not visible in the previous mark ``P`` (``txid >= xmin(P)`` and not visible in ``P``; all it
sees is visible in ``S``) and stores ``S`` — rollups and mark commit together, so every entry
is counted exactly once. Runs are serialised by a session advisory lock taken *before* the
transaction starts (so its snapshot sees the previous run's commit); a concurrent caller
simply skips.

Also here: creating the coming months' ledger partitions, and keeping the BRIN index of
``txid`` summarised so the tail is found among the newest pages.
"""

# SQL text here is assembled from constant names only; every value is a bind parameter.
# ruff: noqa: S608

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from costgraph.billing.pnl_measures import MEASURES
from costgraph.billing.pnl_repository import STATE_NAME, snapshot_xmin
from costgraph.models.rollups import NIL_UUID

WORK_MEM = "256MB"

#: pg advisory lock key of the job ("rollups" in hex-ish).
LOCK_KEY = 0x726F6C6C757073
_NIL = f"'{NIL_UUID}'::uuid"

#: (column, SQL over the ledger entry ``e``) of the finest grain every table is cut from.
_GRAIN: tuple[tuple[str, str], ...] = (
    ("organization_id", "e.organization_id"),
    ("bucket", "date_trunc('hour', e.occurred_at, 'UTC')"),
    ("currency", "e.currency"),
    ("account_id", f"coalesce(e.account_id, {_NIL})"),
    ("customer_id", f"coalesce(e.customer_id, {_NIL})"),
    ("provider", "coalesce(e.provider, '')"),
    ("model", "coalesce(e.model, '')"),
    ("agent", "coalesce(e.agent, '')"),
    ("user_id", f"coalesce(e.user_id, {_NIL})"),
    ("department_id", f"coalesce(e.department_id, {_NIL})"),
    ("feature", "coalesce(e.feature, '')"),
)
#: The same, for :mod:`costgraph.billing.verify_repository` (which recomputes every table).
GRAIN = _GRAIN

#: table -> (its key after the organisation, extra columns carried along).
TABLE_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "rollup_org_hourly": (("bucket", "currency"), ()),
    "rollup_account_hourly": (("account_id", "bucket", "currency"), ("customer_id",)),
    "rollup_model_hourly": (("bucket", "currency", "provider", "model"), ()),
    "rollup_agent_hourly": (("bucket", "currency", "agent", "provider", "model"), ()),
    "rollup_user_hourly": (("bucket", "currency", "user_id", "department_id"), ()),
    "rollup_feature_hourly": (("bucket", "currency", "feature"), ()),
}


def _fold_sql() -> str:
    grain = ", ".join(f"{sql} AS {name}" for name, sql in _GRAIN)
    measures = ", ".join(f"sum({sql}) AS {name}" for name, sql in MEASURES)
    positions = ", ".join(str(i) for i in range(1, len(_GRAIN) + 1))
    parts = [
        "WITH n AS MATERIALIZED ("
        f"SELECT {grain}, {measures}, max(e.occurred_at) AS last_at "
        "FROM ledger_entries e LEFT JOIN accounts a "
        "ON a.organization_id = e.organization_id AND a.id = e.account_id "
        "WHERE e.txid >= $1 AND NOT txid_visible_in_snapshot(e.txid, $2::text::txid_snapshot) "
        f"GROUP BY {positions})"
    ]
    names = [name for name, _ in MEASURES]
    for index, (table, (key, extra)) in enumerate(TABLE_KEYS.items()):
        columns = ["organization_id", *key, *extra]
        conflict = ", ".join(["organization_id", *key])
        updates = ", ".join(
            [
                *(f"{m} = {table}.{m} + excluded.{m}" for m in names),
                f"last_at = greatest({table}.last_at, excluded.last_at)",
            ]
        )
        grouped = ", ".join(["organization_id", *key])
        carried = [f"min({c}::text)::uuid" for c in extra]  # functionally dependent on the key
        parts.append(
            f"r{index} AS (INSERT INTO {table} ({', '.join([*columns, *names, 'last_at'])}) "
            f"SELECT {', '.join(['organization_id', *key, *carried])}, "
            f"{', '.join(f'sum({m})' for m in names)}, max(last_at) FROM n "
            f"GROUP BY {grouped} ORDER BY {grouped} "
            f"ON CONFLICT ({conflict}) DO UPDATE SET {updates} RETURNING 1)"
        )
    counts = " + ".join(f"(SELECT count(*) FROM r{i})" for i in range(len(TABLE_KEYS)))
    return ", ".join(parts) + f" SELECT coalesce((SELECT sum(entries) FROM n), 0), {counts}"


FOLD_SQL = _fold_sql()


@dataclass(frozen=True, slots=True)
class CatchUp:
    entries: int  # entries folded in by this run
    rows: int  # rollup rows inserted or updated
    snapshot: str  # the new mark


async def catch_up(connection: Any) -> CatchUp | None:
    """One run on an asyncpg connection (not inside a transaction). ``None``: another runs."""
    if not await connection.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
        return None
    try:
        async with connection.transaction(isolation="repeatable_read"):
            # A run's aggregates fit in memory rather than spilling in batches to disk.
            await connection.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")
            previous: str = await connection.fetchval(
                "SELECT snapshot FROM rollup_state WHERE name = $1", STATE_NAME
            )
            current: str = await connection.fetchval("SELECT txid_current_snapshot()::text")
            folded, rows = await connection.fetchrow(FOLD_SQL, snapshot_xmin(previous), previous)
            await connection.execute(
                "UPDATE rollup_state SET snapshot = $2, txid = txid_current(), runs = runs + 1, "
                "rolled_up = rolled_up + $3, updated_at = now() WHERE name = $1",
                STATE_NAME,
                current,
                int(folded),
            )
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    return CatchUp(int(folded), int(rows), current)


async def ensure_partitions(connection: Any, now: datetime, months_ahead: int) -> int:
    """Create the ledger's monthly partitions from this month to ``months_ahead`` later."""
    async with connection.transaction():
        await connection.execute("SET LOCAL lock_timeout = '2s'")
        created: int = await connection.fetchval(
            "SELECT ledger_ensure_partitions($1, $2)",
            now,
            now + timedelta(days=31 * months_ahead),
        )
    return created


async def summarize_brin(connection: Any) -> int:
    """Summarise new page ranges of every partition's ``txid`` BRIN index."""
    total: int = await connection.fetchval(
        """SELECT coalesce(sum(brin_summarize_new_values(i.inhrelid::regclass)), 0)
           FROM pg_inherits i
           WHERE i.inhparent = 'ix_ledger_entries_txid'::regclass"""
    )
    return total
