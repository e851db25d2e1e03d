"""Opaque keyset cursors over ``(timestamp, id)``: stable while rows are added."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime

from costgraph.kernel.errors import ValidationFailed


def encode_cursor(at: datetime, ident: uuid.UUID) -> str:
    raw = f"{at.isoformat()}|{ident}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, ident = base64.urlsafe_b64decode(padded).decode().split("|")
        parsed = datetime.fromisoformat(at)
        if parsed.tzinfo is None:
            raise ValueError("naive cursor")
        return parsed, uuid.UUID(ident)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed("the pagination cursor is not valid", "after") from exc


def page_size(first: int | None, default: int, maximum: int) -> int:
    if first is None:
        return min(default, maximum)
    if first < 1 or first > maximum:
        raise ValidationFailed(f"first must be between 1 and {maximum}", "first")
    return first
