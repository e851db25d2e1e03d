"""Failures a client can act on, each with a stable code (docs/architecture.md, Errors)."""

from __future__ import annotations

import enum
from decimal import Decimal


class ErrorCode(enum.StrEnum):
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    VALIDATION_FAILED = "VALIDATION_FAILED"
    BUDGET_LIMIT_REACHED = "BUDGET_LIMIT_REACHED"
    ALLOWANCE_EXHAUSTED = "ALLOWANCE_EXHAUSTED"
    IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"
    CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
    RATE_MISSING = "RATE_MISSING"
    PRICE_MISSING = "PRICE_MISSING"
    RATE_LIMITED = "RATE_LIMITED"
    #: A GraphQL document over a limit (depth, aliases, tokens, cost, list size).
    QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"
    #: A request body (or websocket message) over ``COSTGRAPH_MAX_REQUEST_BYTES``: HTTP 413.
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"
    #: An entry dated in a month whose books are closed (``monthlyCloses``): nothing written.
    PERIOD_CLOSED = "PERIOD_CLOSED"
    #: A settlement beyond its hold by more than a hard cap's tolerance: nothing written.
    OVERAGE_LIMIT = "OVERAGE_LIMIT"
    #: A withdrawal of more than the account's prepaid balance: nothing written.
    INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"
    #: A tier rule of the plan refused (e.g. Creator's single account per customer).
    PLAN_LIMIT = "PLAN_LIMIT"


def _money(value: Decimal, currency: str | None) -> str:
    """An amount as messages show it (:func:`costgraph.kernel.money.format_money`)."""
    from costgraph.kernel.money import format_money  # money imports this module

    return format_money(value, currency) if currency else format(value, "f")


class DomainError(Exception):
    """Base of every expected failure. The message is safe to show to a client."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Forbidden(DomainError):
    code = ErrorCode.FORBIDDEN


class Unauthenticated(DomainError):
    code = ErrorCode.UNAUTHENTICATED


class Unavailable(DomainError):
    """The database failed the request (down, busy, or conflicting writes beyond the retries).

    Retryable: the client waits ``retry_after_seconds`` and sends the same request again, with
    the same idempotency key (see :mod:`costgraph.kernel.retry`).
    """

    code = ErrorCode.UNAVAILABLE

    def __init__(self, message: str, *, reason: str, retry_after_seconds: int = 1) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after_seconds = retry_after_seconds


class ValidationFailed(DomainError):
    """Bad input. ``field`` is the input path, e.g. ``input.3.inputTokens``."""

    code = ErrorCode.VALIDATION_FAILED

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFound(DomainError):
    """Missing — or another tenant's, which must answer exactly the same."""

    code = ErrorCode.NOT_FOUND

    def __init__(self, kind: str, ident: object, field: str | None = None) -> None:
        super().__init__(f"{kind} {ident} not found")
        self.kind = kind
        self.ident = str(ident)
        self.field = field


class IdempotencyConflict(DomainError):
    code = ErrorCode.IDEMPOTENCY_CONFLICT

    def __init__(self, key: str, field: str | None = None) -> None:
        super().__init__(f"idempotency key {key!r} was already used with a different request body")
        self.key = key
        self.field = field


class CurrencyMismatch(DomainError):
    code = ErrorCode.CURRENCY_MISMATCH

    def __init__(self, expected: str, got: str, field: str | None = None) -> None:
        super().__init__(f"currency {got} does not match the account's currency {expected}")
        self.expected = expected
        self.got = got
        self.field = field


class RateMissing(DomainError):
    code = ErrorCode.RATE_MISSING

    def __init__(self, base: str, quote: str, at: str, field: str | None = None) -> None:
        super().__init__(f"no exchange rate {base}->{quote} in force at {at}")
        self.base = base
        self.quote = quote
        self.field = field


class PriceMissing(DomainError):
    code = ErrorCode.PRICE_MISSING

    def __init__(self, provider: str, model: str, at: str, field: str | None = None) -> None:
        super().__init__(f"no price for {provider}/{model} in force at {at}")
        self.provider = provider
        self.model = model
        self.field = field


class BudgetLimitReached(DomainError):
    """A hard-capped budget would be exceeded: nothing was written."""

    code = ErrorCode.BUDGET_LIMIT_REACHED

    def __init__(
        self, budget_id: str, limit: Decimal, currency: str, spent: Decimal, resets_at: str
    ) -> None:
        super().__init__(
            f"budget limit reached: budget {budget_id} allows {_money(limit, currency)}, "
            f"{_money(spent, currency)} is spent or held; it resets at {resets_at}"
        )
        self.budget_id = budget_id
        self.limit = limit
        self.currency = currency
        self.spent = spent
        self.resets_at = resets_at


class AllowanceExhausted(DomainError):
    """A prepaid account has neither allowance nor balance left for this usage."""

    code = ErrorCode.ALLOWANCE_EXHAUSTED

    def __init__(
        self,
        account_id: str,
        needed: Decimal,
        balance: Decimal,
        currency: str | None = None,
        tokens_left: int | None = None,
    ) -> None:
        """``tokens_left``: what the account's allowance had left before this usage (None:
        no allowance in this cycle)."""
        if tokens_left is None:
            allowance = "no plan allowance to draw on"
        elif tokens_left > 0:
            allowance = (
                f"its allowance has {tokens_left:,} budgeted tokens left, fewer than this "
                "usage consumes"
            )
        else:
            allowance = "no tokens left in its allowance"
        super().__init__(
            f"allowance exhausted: account {account_id} needs {_money(needed, currency)} of "
            f"prepaid balance but has {_money(balance, currency)}, and {allowance}; top up to "
            "continue"
        )
        self.account_id = account_id
        self.needed = needed
        self.balance = balance
        self.currency = currency
        self.tokens_left = tokens_left

    def with_allowance(self, tokens_left: int | None) -> AllowanceExhausted:
        """The same refusal, saying what the allowance had left."""
        return AllowanceExhausted(
            self.account_id, self.needed, self.balance, self.currency, tokens_left
        )


class RefundExceedsPayment(ValidationFailed):
    def __init__(self, refundable: Decimal, currency: str) -> None:
        super().__init__(
            f"refund exceeds what is left to refund ({_money(refundable, currency)})",
            "input.amount",
        )


class PeriodClosed(DomainError):
    """An entry dated in a closed month: closed months are immutable, nothing was written."""

    code = ErrorCode.PERIOD_CLOSED

    def __init__(self, month: str, field: str | None = None) -> None:
        super().__init__(
            f"the books of the month starting {month} are closed: nothing can be dated in it; "
            "record the entry dated in an open month (e.g. now) and name the date it belongs "
            "to in its metadata"
        )
        self.month = month
        self.field = field


class OverageLimit(DomainError):
    """A settlement would take a hard-capped period beyond its limit plus the tolerance for
    settlements (``COSTGRAPH_SETTLE_OVERAGE_TOLERANCE_PERCENT``): nothing was written.
    ``room``: the most this settlement may record on the budget (its hold included)."""

    code = ErrorCode.OVERAGE_LIMIT

    def __init__(
        self,
        budget_id: str,
        limit: Decimal,
        currency: str,
        tolerance_percent: Decimal,
        hold: Decimal,
        room: Decimal,
        field: str | None = "input.usage",
    ) -> None:
        super().__init__(
            f"overage limit: budget {budget_id} allows {_money(limit, currency)} and "
            f"{tolerance_percent}% more for settlements beyond their holds; this one held "
            f"{_money(hold, currency)} and may record at most {_money(room, currency)} on it"
        )
        self.budget_id = budget_id
        self.limit = limit
        self.currency = currency
        self.tolerance_percent = tolerance_percent
        self.hold = hold
        self.room = room
        self.field = field


class PlanLimit(DomainError):
    """A tier rule of a plan refused the change: nothing was written. ``rule`` names the
    plan's field (``maxAccountsPerCustomer``, ``seats``), ``limit`` its value."""

    code = ErrorCode.PLAN_LIMIT

    def __init__(
        self, plan_code: str, rule: str, limit: int, message: str, field: str | None = None
    ) -> None:
        super().__init__(f"plan limit: plan {plan_code!r} {message}")
        self.plan_code = plan_code
        self.rule = rule
        self.limit = limit
        self.field = field


class RefundExceedsBalance(ValidationFailed):
    """A refund of prepaid money (a deposit) beyond what is left of the account's balance:
    the rest was already spent."""

    def __init__(self, balance: Decimal, currency: str) -> None:
        super().__init__(
            "refund exceeds the account's remaining prepaid balance "
            f"({_money(balance, currency)}); "
            "money already spent cannot be refunded",
            "input.amount",
        )
        self.balance = balance


class InsufficientBalance(DomainError):
    """A withdrawal of more than the account's prepaid balance: nothing was written."""

    code = ErrorCode.INSUFFICIENT_BALANCE

    def __init__(self, account_id: str, requested: Decimal, balance: Decimal, currency: str):
        super().__init__(
            f"insufficient balance: account {account_id} has {_money(balance, currency)} of "
            f"prepaid balance, less than the {_money(requested, currency)} asked to withdraw"
        )
        self.account_id = account_id
        self.requested = requested
        self.balance = balance
        self.currency = currency
        self.field = "input.amount"


def join_path(*parts: str | int | None) -> str:
    return ".".join(str(p) for p in parts if p is not None)
