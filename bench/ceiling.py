"""The ceilings: the same rows written with nothing but asyncpg, into a bare copy of the table.

``ledger_ceiling`` is ``LIKE ledger_entries INCLUDING ALL``: same columns, defaults, CHECKs,
primary key, unique key and indexes, but no foreign keys and no triggers. Rows are built
column-wise straight from the event specs (ids, customer and department from in-memory maps,
the JSON as text, a SHA-256) — the minimum work that produces the same rows.
"""

from __future__ import annotations

import hashlib
import operator
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import orjson

from bench.workload import EventSpec
from costgraph.billing import ledger_repository

CEILING_TABLE = "ledger_ceiling"

#: The columns the ceiling fills itself, in the order :meth:`RowBuilder.row` returns them.
OWN_COLUMNS: tuple[tuple[str, str], ...] = (
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
#: The columns the ledger's own insert writes (so the ceiling writes as many, in its order).
#: A column the ledger gains later is written here as NULL (or 0 / false for counters and
#: flags), which keeps the comparison honest without editing this file.
COLUMNS: tuple[tuple[str, str], ...] = tuple(
    getattr(ledger_repository, "_INSERT_COLUMNS", OWN_COLUMNS)
)
_OWN_INDEX = {name: index for index, (name, _) in enumerate(OWN_COLUMNS)}
_FILLER = {"int8": 0, "bool": False}
_EXTRA = tuple(_FILLER.get(kind) for name, kind in COLUMNS if name not in _OWN_INDEX)
_REORDER = operator.itemgetter(
    *(
        _OWN_INDEX[name]
        if name in _OWN_INDEX
        else len(OWN_COLUMNS) + [n for n, _ in COLUMNS if n not in _OWN_INDEX].index(name)
        for name, _ in COLUMNS
    )
)
_IDENTITY = COLUMNS == OWN_COLUMNS
_JSON = {"units", "metadata"}
_NAMES = ", ".join(name for name, _ in COLUMNS)
_SELECTED = ", ".join(f"{n}::jsonb" if n in _JSON else n for n, _ in COLUMNS)

BATCH_SQL = (
    f"INSERT INTO {CEILING_TABLE} ({_NAMES}) "
    f"SELECT {_SELECTED} FROM unnest("
    + ", ".join(f"${i}::{kind}[]" for i, (_, kind) in enumerate(COLUMNS, 1))
    + f") AS t({_NAMES}) ON CONFLICT (organization_id, idempotency_key) DO NOTHING"
)
ROW_SQL = (
    f"INSERT INTO {CEILING_TABLE} ({_NAMES}) VALUES ("
    + ", ".join(
        f"${i}::jsonb" if name in _JSON else f"${i}" for i, (name, _) in enumerate(COLUMNS, 1)
    )
    + ") ON CONFLICT (organization_id, idempotency_key) DO NOTHING RETURNING id"
)


async def create_ceiling_table(connection: asyncpg.Connection) -> None:
    """The bare copy, plus — when the copy did not bring one — the unique index on
    ``(organization_id, idempotency_key)`` that ``ON CONFLICT`` needs.

    Since the ledger is partitioned by month (migration 0006) its key uniqueness lives in a
    separate ``ledger_keys`` table, because a partitioned table's unique keys must contain
    the partition key. The ceiling keeps the *guarantee* at its cheapest: one unique index
    on one table, written by the same one statement. The second table is part of our cost.
    """
    await connection.execute(
        f"CREATE TABLE IF NOT EXISTS {CEILING_TABLE} (LIKE ledger_entries INCLUDING ALL)"
    )
    has_key = await connection.fetchval(
        """
        SELECT EXISTS (
            SELECT 1 FROM pg_index i
            WHERE i.indrelid = $1::regclass AND i.indisunique
              AND (SELECT array_agg(a.attname::text ORDER BY k.ord)
                   FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum)
                  = ARRAY['organization_id', 'idempotency_key'])
        """,
        CEILING_TABLE,
    )
    if not has_key:
        await connection.execute(
            f"CREATE UNIQUE INDEX {CEILING_TABLE}_idempotency "
            f"ON {CEILING_TABLE} (organization_id, idempotency_key)"
        )
    # The ledger is partitioned since 0006 and its key moved to ``ledger_keys``; the bare
    # copy keeps the one unique key its ON CONFLICT needs.
    await connection.execute(
        f"CREATE UNIQUE INDEX IF NOT EXISTS {CEILING_TABLE}_key "
        f"ON {CEILING_TABLE} (organization_id, idempotency_key)"
    )


class RowBuilder:
    """Builds ``ledger_ceiling`` rows for one tenant from its in-memory directory."""

    def __init__(
        self,
        organization_id: uuid.UUID,
        customers: Mapping[uuid.UUID, uuid.UUID],
        departments: Mapping[uuid.UUID, uuid.UUID | None],
        currency: str,
    ) -> None:
        self.organization_id = organization_id
        self.customers = customers
        self.departments = departments
        self.currency = currency

    @classmethod
    async def load(
        cls, connection: asyncpg.Connection, organization_id: uuid.UUID, currency: str
    ) -> RowBuilder:
        accounts = await connection.fetch(
            "SELECT id, customer_id FROM accounts WHERE organization_id = $1", organization_id
        )
        users = await connection.fetch(
            "SELECT id, department_id FROM users WHERE organization_id = $1", organization_id
        )
        return cls(
            organization_id,
            {row["id"]: row["customer_id"] for row in accounts},
            {row["id"]: row["department_id"] for row in users},
            currency,
        )

    def row(
        self,
        key: str,
        account_id: uuid.UUID,
        occurred_at: datetime,
        provider: str,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cached_input_tokens: int,
        user_id: uuid.UUID | None,
        feature: str | None,
        agent: str | None,
        request_id: str | None,
        metadata: Any,
        cost: Decimal,
    ) -> tuple[Any, ...]:
        """One row in :data:`COLUMNS` order."""
        own = (
            self.organization_id,
            uuid.uuid4(),
            "USAGE_CHARGE",
            account_id,
            self.customers[account_id],
            occurred_at,
            self.currency,
            cost,
            -cost,
            cost,
            cost,
            self.currency,
            Decimal(1),
            None,
            True,
            provider,
            model,
            input_tokens,
            output_tokens,
            cached_input_tokens,
            0,
            None,
            user_id,
            None if user_id is None else self.departments[user_id],
            feature,
            agent,
            request_id,
            None,
            None,
            None if metadata is None else orjson.dumps(metadata).decode(),
            key,
            hashlib.sha256(key.encode()).digest(),
        )
        return own if _IDENTITY else _REORDER(own + _EXTRA)

    def spec_row(self, spec: EventSpec) -> tuple[Any, ...]:
        return self.row(
            spec.idempotency_key,
            spec.account_id,
            spec.occurred_at,
            spec.provider,
            spec.model,
            spec.input_tokens,
            spec.output_tokens,
            spec.cached_input_tokens,
            spec.user_id,
            spec.feature,
            spec.agent,
            spec.request_id,
            spec.metadata,
            spec.cost,
        )

    def arrays(self, specs: Sequence[EventSpec]) -> list[list[Any]]:
        """Column arrays for :data:`BATCH_SQL`."""
        rows = [self.spec_row(spec) for spec in specs]
        return [list(column) for column in zip(*rows, strict=True)]


async def insert_batch(
    connection: asyncpg.Connection, builder: RowBuilder, specs: Sequence[EventSpec]
) -> None:
    """The batch ceiling: build the rows, one ``INSERT … SELECT unnest … ON CONFLICT``."""
    await connection.execute(BATCH_SQL, *builder.arrays(specs))


#: Usage rows one tenant has in the ledger (its top-up deposits are not counted).
LEDGER_USAGE_ROWS_SQL = (
    "SELECT count(*) FROM ledger_entries WHERE organization_id = $1 AND type = 'USAGE_CHARGE'"
)
CEILING_ROWS_SQL = f"SELECT count(*) FROM {CEILING_TABLE} WHERE organization_id = $1"
