"""Decoding ids from arguments: a malformed id answers exactly as an unknown one."""

from __future__ import annotations

import uuid

from costgraph.kernel.errors import NotFound


def decode_id(value: str, kind: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise NotFound(kind, value[:64], field) from None


def decode_optional(value: str | None, kind: str, field: str) -> uuid.UUID | None:
    return None if value is None else decode_id(value, kind, field)
