"""Request fingerprints: the same key with the same body replays, with another body conflicts."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from costgraph.billing.entries import Entry
from costgraph.billing.errors import IdempotencyConflict


def _canonical(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value != 0 else "0"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def request_hash(operation: str, request: object) -> bytes:
    """SHA-256 over the operation name and the normalised request (``1.50`` equals ``1.5``)."""
    payload = orjson.dumps(
        {"op": operation, "request": _canonical(request)}, option=orjson.OPT_SORT_KEYS
    )
    return hashlib.sha256(payload).digest()


def replay_or_conflict(existing: Entry, fingerprint: bytes, field: str | None = None) -> Entry:
    if existing.request_hash != fingerprint:
        raise IdempotencyConflict(existing.idempotency_key, field)
    return existing.as_replay()
