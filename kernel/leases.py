"""The leased-outbox protocol, as SQL for any table that follows it.

Alert deliveries and scheduled report runs are both rows that workers in any number of
processes claim and settle: ``state`` (PENDING, DELIVERED, DEAD), ``attempts``,
``next_attempt_at``, ``claim_token`` and ``last_error``, keyed by ``(organization_id, id)``.

- :func:`sweep` marks DEAD the due rows whose attempts ran out while claimed (their worker
  died mid-attempt, again and again);
- :func:`claim` takes up to ``:limit`` due rows with ``FOR UPDATE SKIP LOCKED``, counts the
  attempt and leases them for ``:lease`` seconds under ``:token``;
- :func:`settle` ends an attempt: DELIVERED, DEAD (``:error``) or PENDING again after
  ``:wait`` seconds (``:error``); it matches only while ``:token`` still holds the lease, so a
  zero row count means another worker took the row over.

Table names are the callers' constants, never input.
"""

# ruff: noqa: S608

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Literal

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

State = Literal["DELIVERED", "DEAD", "PENDING"]


def sweep(table: str) -> TextClause:
    return text(
        f"""UPDATE {table}
       SET state = 'DEAD', claim_token = NULL,
           last_error = coalesce(last_error, '') || ' (attempts exhausted)'
       WHERE state = 'PENDING' AND next_attempt_at <= now() AND attempts >= :max_attempts"""
    )


def claim(table: str, returning: str) -> TextClause:
    """``returning``: the columns to return, qualified with the alias ``q``."""
    return text(
        f"""WITH due AS (
         SELECT organization_id, id FROM {table}
         WHERE state = 'PENDING' AND next_attempt_at <= now() AND attempts < :max_attempts
         ORDER BY next_attempt_at
         LIMIT :limit
         FOR UPDATE SKIP LOCKED
       )
       UPDATE {table} AS q
       SET attempts = q.attempts + 1,
           next_attempt_at = now() + make_interval(secs => :lease),
           claim_token = :token
       FROM due
       WHERE q.organization_id = due.organization_id AND q.id = due.id
       RETURNING {returning}"""
    )


_SETTLED: dict[State, str] = {
    "DELIVERED": "state = 'DELIVERED', delivered_at = now(), claim_token = NULL, last_error = NULL",
    "DEAD": "state = 'DEAD', claim_token = NULL, last_error = :error",
    "PENDING": "next_attempt_at = now() + make_interval(secs => :wait), claim_token = NULL, "
    "last_error = :error",
}


def settle(table: str, state: State) -> TextClause:
    return text(
        f"UPDATE {table} SET {_SETTLED[state]} "
        "WHERE organization_id = :org AND id = :id AND claim_token = :token"
    )


async def take(
    session: AsyncSession,
    swept: TextClause,
    claimed: TextClause,
    *,
    limit: int,
    lease: float,
    max_attempts: int,
) -> tuple[uuid.UUID, Sequence[Any]]:
    """Sweep, then claim (both in the caller's unit of work, which commits the lease): the
    lease token and the claimed rows."""
    token = uuid.uuid4()
    await session.execute(swept, {"max_attempts": max_attempts})
    params = {"max_attempts": max_attempts, "limit": limit, "lease": lease, "token": token}
    return token, (await session.execute(claimed, params)).all()
