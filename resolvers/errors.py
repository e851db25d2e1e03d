"""Domain failures to the typed members of mutation result unions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import strawberry

from costgraph.kernel import errors as domain
from costgraph.kernel.clock import parse_rfc3339
from costgraph.kernel.outcomes import note_error_code
from costgraph.schema import results, top_ups
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
            code=exc.code, message=exc.message, field=exc.field, base=exc.base, quote=exc.quote
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
            tokens_left=exc.tokens_left,
        )
    if isinstance(exc, domain.InsufficientBalance):
        return top_ups.InsufficientBalance(
            code=exc.code,
            message=exc.message,
            field=exc.field,
            account_id=strawberry.ID(exc.account_id),
            requested=exc.requested,
            balance=exc.balance,
            currency=CurrencyCode(exc.currency),
        )
    if isinstance(exc, domain.PeriodClosed):
        return results.PeriodClosed(
            code=exc.code, message=exc.message, field=exc.field, month=parse_rfc3339(exc.month)
        )
    if isinstance(exc, domain.OverageLimit):
        return results.OverageLimit(
            code=exc.code,
            message=exc.message,
            field=exc.field,
            budget_id=strawberry.ID(exc.budget_id),
            limit=exc.limit,
            currency=CurrencyCode(exc.currency),
            tolerance_percent=exc.tolerance_percent,
            hold=exc.hold,
            room=exc.room,
        )
    if isinstance(exc, domain.PlanLimit):
        return results.PlanLimit(
            code=exc.code,
            message=exc.message,
            field=exc.field,
            plan_code=exc.plan_code,
            rule=exc.rule,
            limit=exc.limit,
        )
    raise exc  # not an expected member: a GraphQL error with extensions.code


async def result_of(action: Callable[[], Awaitable[T]]) -> T | Any:
    """Run a mutation's action (decoding, then its unit of work); an expected failure becomes
    its union member. Transactions and their retries are the unit of work's business."""
    try:
        return await action()
    except (domain.Forbidden, domain.Unauthenticated):
        raise
    except domain.DomainError as exc:
        answer = as_user_error(exc)
        note_error_code(exc.code.value)  # the operation's outcome: rejected, with this code
        return answer
