"""Faster versions of hot-path pieces, measured by :mod:`bench.profile_ingest` and
:mod:`bench.tuning` before anyone changes the app. Each is meant as a drop-in for the
function it names, with the same results; none of them is used by the app itself.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import operator
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing.entries import Entry
from costgraph.billing.ledger_repository import driver_connection
from costgraph.models.ledger import EntryType
from costgraph.models.scoping import bound_tenant

# --- billing.idempotency.request_hash ---


@functools.cache
def _field_names(kind: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(kind))


def _canonical_default(value: Any) -> Any:
    """What orjson does not write itself, exactly as ``idempotency._canonical`` writes it."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # As a dict, so that OPT_SORT_KEYS orders it (orjson keeps dataclass field order).
        return {name: getattr(value, name) for name in _field_names(type(value))}
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value != 0 else "0"
    if isinstance(value, uuid.UUID):  # asyncpg's UUID subclass is not native to orjson
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not canonical JSON")


def fast_request_hash(operation: str, request: object) -> bytes:
    """``idempotency.request_hash`` with the same bytes hashed, but orjson walks the values
    (UUIDs, datetimes, tuples, dicts natively, in Rust) instead of ``_canonical`` rebuilding
    every one in Python; ``default`` turns a dataclass into a dict of its fields (one dict
    comprehension) and a Decimal into the normalised fixed-point string ``_canonical`` makes.
    """
    payload = orjson.dumps(
        {"op": operation, "request": request},
        default=_canonical_default,
        option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS,
    )
    return hashlib.sha256(payload).digest()


# --- billing.ledger_repository.find_by_keys ---

_ENTRY_FIELDS = tuple(f.name for f in dataclasses.fields(Entry) if f.name != "replayed")
_SELECTED = ", ".join(f"e.{name}" for name in _ENTRY_FIELDS)
_JSON_FIELDS = frozenset({"units", "metadata"})


def _entry_of(row: Any) -> Entry:
    values = dict(zip(_ENTRY_FIELDS, row, strict=True))
    values["type"] = EntryType(values["type"])
    for name in _JSON_FIELDS:
        if isinstance(values[name], str):
            values[name] = orjson.loads(values[name])
    return Entry(**values)


async def find_by_keys_raw(session: AsyncSession, keys: Iterable[str]) -> dict[str, Entry]:
    """``ledger_repository.find_by_keys`` in raw asyncpg on the session's own connection and
    transaction, instead of an ORM select building ``LedgerEntry`` objects. The tenant comes
    from the session, as the ORM filter takes it. With the partitioned ledger (``ledger_keys``
    owns the keys) it takes the same two steps as the repository: the owners by key, then
    the entries by id within the span of their times (partition pruning)."""
    wanted = list(set(keys))
    if not wanted:
        return {}
    tenant = bound_tenant(session.sync_session)
    if tenant is None:
        raise RuntimeError("find_by_keys_raw needs a tenant-bound session")
    connection = await driver_connection(session)
    columns = _SELECTED
    # ``JOIN unnest($n)`` rather than ``= ANY($n)``: asyncpg prepares and caches the
    # statement, PostgreSQL switches to a generic plan after five runs, and a generic plan
    # cannot hash a parameter array, so ``= ANY`` became a linear search per scanned row —
    # ~200 ms for 1,000 keys in a tenant of ~10,000 rows, against ~2 ms as a join.
    if await connection.fetchval("SELECT to_regclass('ledger_keys') IS NULL"):
        rows = await connection.fetch(
            f"SELECT {columns} FROM unnest($2::text[]) AS w(key) "
            "JOIN ledger_entries e ON e.organization_id = $1 AND e.idempotency_key = w.key",
            tenant,
            wanted,
        )
    else:
        owners = await connection.fetch(
            "SELECT k.entry_id, k.occurred_at FROM unnest($2::text[]) AS w(key) "
            "JOIN ledger_keys k ON k.organization_id = $1 AND k.idempotency_key = w.key",
            tenant,
            wanted,
        )
        if not owners:
            return {}
        times = [row[1] for row in owners]
        rows = await connection.fetch(
            f"SELECT {columns} FROM unnest($2::uuid[]) AS w(id) "
            "JOIN ledger_entries e ON e.organization_id = $1 AND e.id = w.id "
            "AND e.occurred_at >= $3 AND e.occurred_at <= $4",
            tenant,
            [row[0] for row in owners],
            min(times),
            max(times),
        )
    return {row["idempotency_key"]: _entry_of(row) for row in rows}


# --- dataclasses.replace on Entry (ledger._as_stored, drawdown.draw) ---


def fast_replace(obj: Any, /, **changes: Any) -> Any:
    """``dataclasses.replace`` for a frozen, slotted dataclass without ``__post_init__``
    (``Entry``): copy the slots directly instead of a keyword ``__init__`` call built from
    ``fields()`` each time. Anything else falls back to ``dataclasses.replace``."""
    kind = type(obj)
    names = _slot_fields(kind)
    if names is None:
        return dataclasses.replace(obj, **changes)
    unknown = changes.keys() - set(names)
    if unknown:
        raise TypeError(f"{kind.__name__} has no field(s) {sorted(unknown)}")
    copy = object.__new__(kind)
    for name in names:
        object.__setattr__(copy, name, changes[name] if name in changes else getattr(obj, name))
    return copy


_SLOT_FIELDS: dict[type, tuple[str, ...] | None] = {}


def _slot_fields(kind: type) -> tuple[str, ...] | None:
    if kind not in _SLOT_FIELDS:
        plain = (
            dataclasses.is_dataclass(kind)
            and hasattr(kind, "__slots__")
            and not hasattr(kind, "__post_init__")
            and all(f.init for f in dataclasses.fields(kind))
        )
        _SLOT_FIELDS[kind] = _field_names(kind) if plain else None
    return _SLOT_FIELDS[kind]


# --- ledger_repository._column_arrays ---


@functools.cache
def _array_plan(columns: tuple[tuple[str, str], ...]) -> tuple[Any, int, tuple[int, ...]]:
    names = [name for name, _ in columns]
    json_columns = tuple(i for i, name in enumerate(names) if name in _JSON_FIELDS)
    return operator.attrgetter(*names), names.index("type"), json_columns


def fast_column_arrays(entries: Sequence[Entry]) -> list[list[Any]]:
    """``ledger_repository._column_arrays`` (identical arrays): one C-level ``attrgetter``
    per entry and a transpose, instead of a Python loop over every column of every entry."""
    from costgraph.billing.ledger_repository import _INSERT_COLUMNS, _TEXT_INDEXES

    getter, type_index, json_indexes = _array_plan(tuple(_INSERT_COLUMNS))
    columns = [list(column) for column in zip(*map(getter, entries), strict=True)]
    columns[type_index] = [kind.value for kind in columns[type_index]]
    for index in json_indexes:
        columns[index] = [None if v is None else orjson.dumps(v).decode() for v in columns[index]]
    for index in _TEXT_INDEXES:  # numerics travel as text (see ledger_repository)
        columns[index] = [None if v is None else str(v) for v in columns[index]]
    return columns


# --- resolvers.context.Context.org ---


class OrgCache:
    """Organisations by id for ``ttl`` seconds: ``Context.org`` otherwise opens a session
    (pool checkout, pre-ping, BEGIN, SELECT, ROLLBACK) on every request to read a row that
    changes perhaps once a year. A renamed organisation shows within ``ttl`` seconds."""

    def __init__(self, ttl: float = 30.0, maxsize: int = 10_000) -> None:
        self.ttl = ttl
        self.maxsize = maxsize
        self._entries: dict[uuid.UUID, tuple[Any, float]] = {}

    def get(self, org_id: uuid.UUID) -> Any | None:
        hit = self._entries.get(org_id)
        if hit is None or time.monotonic() >= hit[1]:
            return None
        return hit[0]

    def put(self, org_id: uuid.UUID, org: Any) -> None:
        if len(self._entries) >= self.maxsize:
            self._entries.clear()
        self._entries[org_id] = (org, time.monotonic() + self.ttl)
