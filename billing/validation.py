"""Checks of caller input that need no database: each failure names its field."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from costgraph.billing.commands import Limits, UsageEvent
from costgraph.billing.event_time import require_backfill, require_live
from costgraph.kernel.clock import utcnow
from costgraph.kernel.errors import ValidationFailed, join_path
from costgraph.kernel.money import require_currency, require_input_range

UNIT_KINDS = frozenset({"IMAGE", "AUDIO_SECOND", "VIDEO_SECOND", "REQUEST", "CHARACTER"})
TAG_MAX = 200
INT8_MAX = 2**63 - 1


def require_key(key: str, limits: Limits, path: str) -> str:
    if not key or not key.strip() or len(key) > limits.max_idempotency_key_length:
        raise ValidationFailed(
            f"idempotency key must be 1 to {limits.max_idempotency_key_length} characters",
            join_path(path, "idempotencyKey"),
        )
    return key


def require_metadata(metadata: dict[str, Any] | None, limits: Limits, path: str) -> None:
    if metadata is None:
        return
    field = join_path(path, "metadata")
    if not isinstance(metadata, dict):
        raise ValidationFailed("metadata must be a JSON object", field)
    try:
        size = len(orjson.dumps(metadata))
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise ValidationFailed("metadata must be plain JSON", field) from exc
    if size > limits.max_metadata_bytes:
        raise ValidationFailed(
            f"metadata is {size} bytes; at most {limits.max_metadata_bytes} are allowed", field
        )


def require_tag(value: str | None, path: str, name: str) -> None:
    if value is not None and not (0 < len(value) <= TAG_MAX):
        raise ValidationFailed(f"must be 1 to {TAG_MAX} characters", join_path(path, name))


def validate_usage(
    event: UsageEvent,
    limits: Limits,
    path: str,
    now: datetime | None = None,
    *,
    backfill: bool = False,
) -> None:
    """``now``: the clock the event's time is checked against (a batch reads it once);
    ``backfill``: the event is history an org_admin asked to backfill (billing/event_time.py)."""
    require_key(event.idempotency_key, limits, path)
    field, now = join_path(path, "occurredAt"), now or utcnow()
    if backfill:
        require_backfill(event.occurred_at, field, limits, now)
    else:
        require_live(event.occurred_at, field, limits, now)
    for name in ("provider", "model"):
        value = getattr(event, name)
        if not value or not value.strip():
            raise ValidationFailed("must not be empty", join_path(path, name))
        require_tag(value, path, name)
    for name, value in (
        ("inputTokens", event.input_tokens),
        ("outputTokens", event.output_tokens),
        ("cachedInputTokens", event.cached_input_tokens),
        ("reasoningTokens", event.reasoning_tokens),
        ("cacheWriteTokens", event.cache_write_tokens),
    ):
        if value < 0 or value > INT8_MAX:
            raise ValidationFailed("token counts must be zero or more", join_path(path, name))
    for index, unit in enumerate(event.units):
        unit_path = join_path(path, "units", index)
        if unit.kind not in UNIT_KINDS:
            raise ValidationFailed(f"unknown unit kind {unit.kind!r}", join_path(unit_path, "kind"))
        if unit.quantity < 0:
            raise ValidationFailed(
                "quantity must be zero or more", join_path(unit_path, "quantity")
            )
        require_input_range(unit.quantity, join_path(unit_path, "quantity"))
    require_tag(event.feature, path, "feature")
    require_tag(event.agent, path, "agent")
    require_tag(event.request_id, path, "requestId")
    require_metadata(event.metadata, limits, path)
    if (event.provider_cost is None) != (event.provider_currency is None):
        raise ValidationFailed(
            "providerCost and providerCurrency go together",
            join_path(path, "providerCost" if event.provider_cost is None else "providerCurrency"),
        )
    if event.provider_cost is not None:
        if event.provider_cost < Decimal(0):
            raise ValidationFailed(
                "provider cost must be zero or more", join_path(path, "providerCost")
            )
        require_input_range(event.provider_cost, join_path(path, "providerCost"))
        assert event.provider_currency is not None
        require_currency(event.provider_currency, join_path(path, "providerCurrency"))
