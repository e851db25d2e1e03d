"""Database faults: which are worth re-running a transaction for, and what a client is told.

A write transaction that PostgreSQL aborted because of a concurrent one — a serialization
failure (SQLSTATE 40001) or a deadlock (40P01) — did not happen at all, so
:func:`in_transaction` runs the *whole* action again, from a fresh session, a bounded number of
times with jittered exponential backoff. Idempotency keys make a re-run safe even where the
first outcome is unknown.

Everything else that is the database's fault rather than the request's is not re-run here; it
becomes :class:`~costgraph.kernel.errors.Unavailable` (code ``UNAVAILABLE``, with a retry
hint) instead of an opaque ``INTERNAL``:

- *busy*: ``lock_not_available`` (55P03, ``lock_timeout``), ``query_canceled`` (57014,
  ``statement_timeout``), an idle transaction cut off (25P03). These already waited for as
  long as the operator allows; waiting again inside the same request would only stretch it
  past the client's own timeout, so the client backs off and retries instead.
- *unavailable*: the connection is gone or cannot be made (class 08, 57P01-57P03 shutdown and
  crash, 53300 too many connections, a refused or timed-out connect, a pool checkout timeout).
  Whether a COMMIT in flight took effect is then unknown: the client retries with the same
  idempotency key and gets either the recorded entry (``replayed``) or a fresh write.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import exc as sa_exc
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from costgraph.kernel.errors import DomainError, Unavailable

logger = logging.getLogger("costgraph.retry")

T = TypeVar("T")


class Fault(enum.StrEnum):
    CONFLICT = "conflict"  # aborted by a concurrent transaction: re-run it
    BUSY = "busy"  # a lock or statement timeout: nothing written, back off
    UNAVAILABLE = "unavailable"  # no usable connection: back off, retry with the same key


_CONFLICT_STATES = frozenset({"40001", "40P01"})
_BUSY_STATES = frozenset({"55P03", "57014", "25P03"})
_UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03", "53300", "53000"})
_CLOSED_MESSAGES = ("connection is closed", "connection was closed", "underlying connection")


def _sqlstate(error: BaseException) -> str | None:
    for attribute in ("sqlstate", "pgcode"):
        value = getattr(error, attribute, None)
        if isinstance(value, str) and len(value) == 5:
            return value
    return None


def _chain(error: BaseException) -> list[BaseException]:
    """The error, what SQLAlchemy wrapped (``orig``), and their causes."""
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or any(current is s for s in seen) or len(seen) > 16:
            continue
        seen.append(current)
        orig = getattr(current, "orig", None)
        pending.extend([orig if isinstance(orig, BaseException) else None, current.__cause__])
    return seen


def _is_asyncpg(error: BaseException, name: str) -> bool:
    """One of asyncpg's client-side errors (they carry no SQLSTATE)."""
    return any(
        cls.__name__ == name and cls.__module__.startswith("asyncpg") for cls in type(error).__mro__
    )


def _classify_one(error: BaseException) -> Fault | None:
    state = _sqlstate(error)
    if state is not None:
        if state in _CONFLICT_STATES:
            return Fault.CONFLICT
        if state in _BUSY_STATES:
            return Fault.BUSY
        if state in _UNAVAILABLE_STATES or state.startswith("08"):
            return Fault.UNAVAILABLE
        return None
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return Fault.UNAVAILABLE
    if isinstance(error, sa_exc.TimeoutError):  # no pooled connection came free in time
        return Fault.UNAVAILABLE
    if isinstance(error, ConnectionError | TimeoutError):  # refused, reset, connect timeout
        return Fault.UNAVAILABLE
    if isinstance(error, sa_exc.InterfaceError) or _is_asyncpg(error, "InterfaceError"):
        text = str(error).lower()
        if any(message in text for message in _CLOSED_MESSAGES):
            return Fault.UNAVAILABLE
    if _is_asyncpg(error, "InternalClientError"):
        # The driver's protocol state is broken: typically the server's FATAL (shutdown,
        # terminated backend) arrived on the connection between two statements.
        return Fault.UNAVAILABLE
    return None


def classify(error: BaseException) -> Fault | None:
    """Which database fault ``error`` is, or None when it is not one."""
    for link in _chain(error):
        fault = _classify_one(link)
        if fault is not None:
            return fault
    return None


def is_conflict(error: BaseException) -> bool:
    return classify(error) is Fault.CONFLICT


def unavailable(error: BaseException, attempts: int = 1) -> Unavailable | None:
    """The client-facing error for a database fault; None when ``error`` is not one."""
    fault = classify(error)
    if fault is None:
        return None
    if fault is Fault.CONFLICT:
        return Unavailable(
            f"the request conflicted with concurrent writes {attempts} time(s) and was not "
            "applied; retry it (with the same idempotency key)",
            reason=fault.value,
        )
    if fault is Fault.BUSY:
        return Unavailable(
            "the database was busy (a lock or statement timeout) and the request was not "
            "applied; retry it shortly (with the same idempotency key)",
            reason=fault.value,
        )
    return Unavailable(
        "the database is unavailable; retry shortly with the same idempotency key "
        "(a write that was applied answers as replayed)",
        reason=fault.value,
        retry_after_seconds=2,
    )


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a conflicting transaction is run again."""

    attempts: int = 4  # the first run and three re-runs
    first_wait: float = 0.02  # seconds; doubles per attempt, fully jittered
    max_wait: float = 0.5


DEFAULT_POLICY = RetryPolicy()


def _sqlstate_of(error: BaseException) -> str | None:
    return next(filter(None, map(_sqlstate, _chain(error))), None)


def _log_retry(state: RetryCallState) -> None:
    outcome = state.outcome
    error = None if outcome is None else outcome.exception()
    code = None if error is None else _sqlstate_of(error)
    # tenacity counts the re-runs; the first run happened before it took over.
    logger.info(
        "transaction conflicted (SQLSTATE %s) in run %d; running it again",
        code,
        state.attempt_number + 1,
    )


def _for_client(error: Exception, attempts: int) -> Unavailable | None:
    client_error = unavailable(error, attempts=attempts)
    if client_error is not None:
        logger.warning("database fault: %s (%s)", client_error.reason, type(error).__name__)
    return client_error


async def in_transaction(
    action: Callable[[], Awaitable[T]], policy: RetryPolicy = DEFAULT_POLICY
) -> T:
    """Run ``action`` — which opens, commits and closes its own transaction — re-running it on
    a serialization failure or deadlock; any database fault left becomes ``Unavailable``.

    ``action`` must hold the whole transaction (a re-run starts from a fresh session) and do
    nothing outside it that must not happen twice before the commit.
    """
    try:
        # The first run directly: the common case pays nothing for the retry machinery.
        return await action()
    except DomainError:
        raise  # the request's own failure: never re-run
    except Exception as error:
        if policy.attempts <= 1 or not is_conflict(error):
            client_error = _for_client(error, attempts=1)
            if client_error is None:
                raise
            raise client_error from error
        logger.info(
            "transaction conflicted (SQLSTATE %s) in run 1; running it again", _sqlstate_of(error)
        )
    await asyncio.sleep(random.uniform(0, policy.first_wait))  # noqa: S311  (jitter, not a secret)
    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.attempts - 1),
        wait=wait_random_exponential(multiplier=policy.first_wait * 2, max=policy.max_wait),
        retry=retry_if_exception(is_conflict),
        before_sleep=_log_retry,
        reraise=True,
    )
    try:
        return await retrying(action)
    except Exception as error:
        reruns = retrying.statistics.get("attempt_number", 1)
        client_error = _for_client(error, attempts=1 + reruns)
        if client_error is None:
            raise
        raise client_error from error
