"""Domain failures to the typed members of mutation result unions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import strawberry

from costgraph.app.observability.context import note_error_code
from costgraph.kernel import errors as domain
from costgraph.kernel.clock import parse_rfc3339
from costgraph.kernel.retry import in_transaction
from costgraph.schema import results
from costgraph.schema.scalars import CurrencyCode

T = TypeVar("T")


def as_user_error(exc: domain.DomainError) -> Any:
    if isinstance(exc, domain.ValidationFailed):
        return results.ValidationFailed(code=exc.code, message=exc.message, field=exc.field)
    if isinstance(exc, domain.NotFound):
        return results.NotFound(code=exc.code, message=exc.message, field=exc.field)
    if isinstance(exc, domain.IdempotencyConflict):
        return results.IdempotencyConflict(
            code=exc.code, message=exc.message, field=exc.field, key=exc.key
        )
    if isinstance(exc, domain.CurrencyMismatch):
        return results.CurrencyMismatch(
            code=exc.code, message=exc.message, field=exc.field, expected=exc.expected, got=exc.got
        )
    if isinstance(exc, domain.RateMissing):
        return results.RateMissing(
            code=exc.code, message=exc.message, base=exc.base, quote=exc.quote
        )
    if isinstance(exc, domain.PriceMissing):
        return results.PriceMissing(
            code=exc.code,
            message=exc.message,
            field=exc.field,
            provider=exc.provider,
            model=exc.model,
        )
    if isinstance(exc, domain.BudgetLimitReached):
        return results.BudgetLimitReached(
            code=exc.code,
            message=exc.message,
            budget_id=strawberry.ID(exc.budget_id),
            limit=exc.limit,
            currency=CurrencyCode(exc.currency),
            spent=exc.spent,
            resets_at=parse_rfc3339(exc.resets_at),
        )
    if isinstance(exc, domain.AllowanceExhausted):
        return results.AllowanceExhausted(
            code=exc.code,
            message=exc.message,
            account_id=strawberry.ID(exc.account_id),
            needed=exc.needed,
            balance=exc.balance,
        )
    raise exc  # not an expected member: a GraphQL error with extensions.code


async def result_of(action: Callable[[], Awaitable[T]]) -> T | Any:
    """Run a mutation's action; an expected failure becomes its union member.

    The action holds one write transaction: it runs again on a serialization failure or a
    deadlock, and a database fault ends as ``UNAVAILABLE`` (see :mod:`costgraph.kernel.retry`).
    """
    try:
        return await in_transaction(action)
    except (domain.Forbidden, domain.Unauthenticated):
        raise
    except domain.DomainError as exc:
        answer = as_user_error(exc)
        note_error_code(exc.code.value)  # the operation's outcome: rejected, with this code
        return answer
