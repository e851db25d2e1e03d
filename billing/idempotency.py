"""Request fingerprints: the same key with the same body replays, with another body conflicts."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import operator
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from costgraph.billing.entries import Entry
from costgraph.kernel.errors import IdempotencyConflict


@functools.cache
def _field_names(kind: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(kind))


#: Per dataclass type: its field names and one C-level getter of all their values.
_READERS: dict[type, tuple[tuple[str, ...], Any]] = {}


def _canonical(value: Any) -> Any:
    """What orjson does not write itself: dataclasses as sorted dicts, decimals normalised."""
    reader = _READERS.get(type(value))
    if reader is None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = _field_names(type(value))
        getter = operator.attrgetter(*names)
        # attrgetter of one name returns the value itself, not a 1-tuple
        reader = _READERS[type(value)] = (
            names,
            getter if len(names) > 1 else lambda item: (getter(item),),
        )
    if reader is not None:
        names, values = reader
        return dict(zip(names, values(value), strict=True))
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value != 0 else "0"
    if isinstance(value, uuid.UUID):  # asyncpg's UUID subclass is not native to orjson
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} cannot be fingerprinted")


def request_hash(operation: str, request: object) -> bytes:
    """SHA-256 over the operation name and the normalised request (``1.50`` equals ``1.5``).

    orjson walks the request natively (UUIDs, datetimes, tuples, dicts) and calls back only
    for dataclasses and decimals; keys are sorted, so field order never matters.
    """
    payload = orjson.dumps(
        {"op": operation, "request": request},
        default=_canonical,
        option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS,
    )
    return hashlib.sha256(payload).digest()


def replay_or_conflict(existing: Entry, fingerprint: bytes, field: str | None = None) -> Entry:
    if existing.request_hash != fingerprint:
        raise IdempotencyConflict(existing.idempotency_key, field)
    return existing.as_replay()
