"""Typed exceptions: every failure the client raises carries the server's code and message.

A mutation's typed refusal (``BudgetLimitReached``, ``ValidationFailed``, …) and a GraphQL
error's ``extensions.code`` map to the same classes, by code. ``details`` keeps the rest of
what the server said (``budgetId``, ``resetsAt``, ``retryAfter``, …). Codes the client does
not know yet still raise :class:`CostGraphError`, with that code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class CostGraphError(Exception):
    """A failure with a stable code (``BUDGET_LIMIT_REACHED``, ``UNAVAILABLE``, …)."""

    def __init__(
        self,
        code: str,
        message: str,
        field: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.field = field
        self.details: dict[str, Any] = dict(details or {})


class Refused(CostGraphError):
    """The server refused the request; retrying it unchanged will not help."""


class BudgetLimitReached(Refused):
    """A hard-capped budget would be exceeded (``details``: budgetId, limit, spent, resetsAt)."""


class AllowanceExhausted(Refused):
    """A prepaid account has neither allowance nor balance left (``details``: needed, …)."""


class IdempotencyConflict(Refused):
    pass


class ValidationFailed(Refused):
    pass


class NotFound(Refused):
    pass


class Forbidden(Refused):
    pass


class Unauthenticated(Refused):
    pass


class PriceMissing(Refused):
    pass


class RateMissing(Refused):
    pass


class PeriodClosed(Refused):
    pass


class OverageLimit(Refused):
    pass


class RateLimited(CostGraphError):
    """Over the request budget; ``retry_after`` seconds (when the server said)."""

    @property
    def retry_after(self) -> float | None:
        value = self.details.get("retryAfter")
        return float(value) if value is not None else None


class Transient(CostGraphError):
    """About the moment, not the request: the client retries these (with the same key)."""


class Unavailable(Transient):
    """The server's database was away or busy (``UNAVAILABLE``)."""


class ServerError(Transient):
    """An HTTP 5xx without a GraphQL answer (a proxy's 502, …); ``status`` is the code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__("SERVER_ERROR", message, details={"status": status})
        self.status = status


class ConnectionFailed(Transient):
    """The request or its answer was lost (refused, reset, timed out)."""

    def __init__(self, message: str) -> None:
        super().__init__("CONNECTION_FAILED", message)


class ProtocolError(CostGraphError):
    """The answer was not GraphQL (a wrong URL, a client error without a GraphQL body)."""

    def __init__(self, message: str) -> None:
        super().__init__("PROTOCOL_ERROR", message)


BY_CODE: dict[str, type[CostGraphError]] = {
    "BUDGET_LIMIT_REACHED": BudgetLimitReached,
    "ALLOWANCE_EXHAUSTED": AllowanceExhausted,
    "IDEMPOTENCY_CONFLICT": IdempotencyConflict,
    "VALIDATION_FAILED": ValidationFailed,
    "NOT_FOUND": NotFound,
    "FORBIDDEN": Forbidden,
    "UNAUTHENTICATED": Unauthenticated,
    "PRICE_MISSING": PriceMissing,
    "RATE_MISSING": RateMissing,
    "PERIOD_CLOSED": PeriodClosed,
    "OVERAGE_LIMIT": OverageLimit,
    "RATE_LIMITED": RateLimited,
    "UNAVAILABLE": Unavailable,
}


def from_code(
    code: str, message: str, field: str | None = None, details: Mapping[str, Any] | None = None
) -> CostGraphError:
    return BY_CODE.get(code, CostGraphError)(code, message, field, details)


def from_user_error(result: Mapping[str, Any]) -> CostGraphError:
    """A mutation's typed refusal (a ``UserError`` member of its union)."""
    details = {k: v for k, v in result.items() if k not in ("code", "message", "field")}
    return from_code(
        str(result.get("code") or "INTERNAL"),
        str(result.get("message") or result.get("__typename") or "refused"),
        result.get("field"),
        details,
    )


def from_graphql_errors(errors: Sequence[Mapping[str, Any]] | None) -> CostGraphError:
    """The first GraphQL error of an answer (the others are in ``details['errors']``)."""
    first: Mapping[str, Any] = errors[0] if errors else {}
    extensions: Mapping[str, Any] = first.get("extensions") or {}
    details = {**extensions, "errors": list(errors or [])}
    if path := first.get("path"):
        details["path"] = path
    return from_code(
        str(extensions.get("code") or "INTERNAL"),
        str(first.get("message") or "the server answered an error"),
        extensions.get("field"),
        details,
    )
