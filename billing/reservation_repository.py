"""SQL of authorisations: the lookups before a hold, and the hold itself in one statement.

Everything here talks to asyncpg directly, so that a session that has run nothing yet stays
out of any transaction: the hold (``reserve_budget_holds``, migration 0009) of an
authorisation alone is a statement of its own, on a pooled connection of its own, and the
budget counters it locks are released the moment it ends — not one client round trip later.

What is kept per process:

- accounts (customer and currency) and users (department): never changed once created;
- an organisation's budgets with their row versions (``xmin``). This copy is never trusted
  on its own: the hold compares it with the table in the same statement and refuses a stale
  one (:class:`BudgetsChanged`), after which the caller reloads it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from costgraph.billing.budget_repository import budget_of_row
from costgraph.billing.raw_connection import pooled
from costgraph.billing.scopes import Scope
from costgraph.billing.tenant_cache import TtlCache
from costgraph.models.budget import Budget

#: Held reservations one authorisation expires at most, on top of its own work.
SWEEP_LIMIT = 500

RESERVE_SQL = (
    "SELECT o_id, o_replayed, o_request_hash, o_created_at, o_expired FROM reserve_budget_holds("
    "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::text::jsonb, $14, $15, $16, $17,"
    " $18, $19, $20, $21, $22)"
)
ACCOUNT_SQL = "SELECT customer_id, currency FROM accounts WHERE organization_id = $1 AND id = $2"
USER_SQL = "SELECT department_id FROM users WHERE organization_id = $1 AND id = $2"
BUDGETS_SQL = (
    "SELECT id, scope_kind, scope_id, period, custom_start, custom_end, limit_amount, currency,"
    " basis, hard_cap, thresholds, created_at, xmin::text AS version"
    " FROM budgets WHERE organization_id = $1 ORDER BY id"
)

STALE_BUDGETS = "CGR01"
LIMIT_REACHED = "CGR02"
KEY_TAKEN = "CGR03"


@dataclass(frozen=True, slots=True)
class AccountTerms:
    customer_id: uuid.UUID
    currency: str


@dataclass(frozen=True, slots=True)
class UserTerms:
    department_id: uuid.UUID | None


@dataclass(frozen=True, slots=True)
class VersionedBudget:
    """A budget as read (a detached row: read its terms, never add it to a session)."""

    budget: Budget
    #: ``id@xmin``: changes whenever the row does.
    version: str
    #: ``(scope_kind, scope_id)``, read once (the ORM's instrumented attributes cost more).
    scope: tuple[str, uuid.UUID]


#: (organisation, account) -> terms. Immutable after creation, so kept long.
ACCOUNTS: TtlCache[tuple[uuid.UUID, uuid.UUID], AccountTerms] = TtlCache(
    "reservation_accounts", ttl=3_600.0
)
#: (organisation, user) -> terms. Immutable after creation, so kept long.
USERS: TtlCache[tuple[uuid.UUID, uuid.UUID], UserTerms] = TtlCache("reservation_users", ttl=3_600.0)
#: organisation -> every budget, in id order; verified by the hold before it counts.
BUDGETS: TtlCache[uuid.UUID, tuple[VersionedBudget, ...]] = TtlCache(
    "reservation_budgets", ttl=300.0
)


class BudgetsChanged(Exception):
    """The budgets the hold was computed for are no longer the table's: reload, recompute."""


class KeyTaken(Exception):
    """A concurrent authorisation with the same idempotency key committed first."""


class CapRefused(Exception):
    """A hard cap refused the hold (nothing was written)."""

    def __init__(self, budget_id: uuid.UUID, held: Decimal) -> None:
        super().__init__(f"budget {budget_id} refused the hold ({held} spent or held)")
        self.budget_id = budget_id
        self.held = held


@dataclass(frozen=True, slots=True)
class CounterHold:
    budget_id: uuid.UUID
    period_start: datetime
    period_end: datetime
    amount: Decimal
    #: The hard cap; None for a soft budget (held, never refused).
    cap: Decimal | None


@dataclass(frozen=True, slots=True)
class HoldRequest:
    """Everything the hold statement writes and checks."""

    organization_id: uuid.UUID
    now: datetime
    idempotency_key: str
    request_hash: bytes
    account_id: uuid.UUID
    user_id: uuid.UUID | None
    provider: str
    model: str
    currency: str
    ai_cost: Decimal
    billed: Decimal
    expires_at: datetime
    scopes: Sequence[Scope]
    #: Versions of every budget on ``scopes`` (applicable now or not), in id order.
    budget_versions: Sequence[str]
    #: In budget-id order.
    holds: Sequence[CounterHold]
    #: :meth:`holds_json`, worked out once: the statement writes it, the answer carries it.
    holds_document: list[dict[str, str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        document = [
            {
                "budget_id": str(h.budget_id),
                "period_start": h.period_start.isoformat(),
                "amount": str(h.amount),
            }
            for h in self.holds
        ]
        object.__setattr__(self, "holds_document", document)

    def holds_json(self) -> list[dict[str, str]]:
        """The reservation's ``holds`` column, as settle and release read it back (a new
        list of new dicts each call: the caller may keep or change it)."""
        return [dict(hold) for hold in self.holds_document]


@dataclass(frozen=True, slots=True)
class HoldOutcome:
    reservation_id: uuid.UUID
    replayed: bool
    request_hash: bytes
    created_at: datetime
    #: Expired reservations this statement swept.
    expired: int


async def driver(session: AsyncSession) -> Any:
    """The asyncpg connection under the session (no BEGIN is sent by asking for it)."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    return raw.driver_connection


async def account_terms(
    session: AsyncSession, organization_id: uuid.UUID, account_id: uuid.UUID
) -> AccountTerms | None:
    key = (organization_id, account_id)
    cached = ACCOUNTS.get(key)
    if cached is not None:
        return cached
    row = await (await driver(session)).fetchrow(ACCOUNT_SQL, organization_id, account_id)
    if row is None:
        return None
    terms = AccountTerms(row["customer_id"], row["currency"])
    ACCOUNTS.put(key, terms)
    return terms


async def user_terms(
    session: AsyncSession, organization_id: uuid.UUID, user_id: uuid.UUID
) -> UserTerms | None:
    key = (organization_id, user_id)
    cached = USERS.get(key)
    if cached is not None:
        return cached
    row = await (await driver(session)).fetchrow(USER_SQL, organization_id, user_id)
    if row is None:
        return None
    terms = UserTerms(row["department_id"])
    USERS.put(key, terms)
    return terms


def _budget_of(organization_id: uuid.UUID, row: Any) -> VersionedBudget:
    return VersionedBudget(
        budget_of_row(row, organization_id),
        f"{row['id']}@{row['version']}",
        (row["scope_kind"], row["scope_id"]),
    )


async def organization_budgets(
    session: AsyncSession, organization_id: uuid.UUID, *, fresh: bool = False
) -> tuple[VersionedBudget, ...]:
    """Every budget of the organisation (a handful), in id order; ``fresh`` skips the copy."""
    if not fresh:
        cached = BUDGETS.get(organization_id)
        if cached is not None:
            return cached
    generation = BUDGETS.generation
    rows = await (await driver(session)).fetch(BUDGETS_SQL, organization_id)
    loaded = tuple(_budget_of(organization_id, row) for row in rows)
    BUDGETS.put(organization_id, loaded, generation=generation)
    return loaded


def forget_budgets(organization_id: uuid.UUID) -> None:
    """Drop this process's copy (after a budget was set here)."""
    BUDGETS.invalidate(organization_id)


def _arguments(hold: HoldRequest) -> tuple[object, ...]:
    return (
        hold.organization_id,
        hold.now,
        hold.idempotency_key,
        hold.request_hash,
        hold.account_id,
        hold.user_id,
        hold.provider,
        hold.model,
        hold.currency,
        hold.ai_cost,
        hold.billed,
        hold.expires_at,
        orjson.dumps(hold.holds_document).decode(),
        [s.kind.value for s in hold.scopes],
        [s.id for s in hold.scopes],
        list(hold.budget_versions),
        [h.budget_id for h in hold.holds],
        [h.period_start for h in hold.holds],
        [h.period_end for h in hold.holds],
        [h.amount for h in hold.holds],
        [h.cap for h in hold.holds],
        SWEEP_LIMIT,
    )


def _refusal(error: Any) -> CapRefused:
    budget_id, _, held = str(error.detail or "").partition(" ")
    return CapRefused(uuid.UUID(budget_id), Decimal(held or "0"))


async def _run_hold(connection: Any, arguments: tuple[object, ...]) -> Any:
    """The hold statement; under a savepoint when a transaction is already open."""
    if connection.is_in_transaction():
        async with connection.transaction():
            return await connection.fetchrow(RESERVE_SQL, *arguments)
    return await connection.fetchrow(RESERVE_SQL, *arguments)


async def reserve(session: AsyncSession, hold: HoldRequest, *, alone: bool = False) -> HoldOutcome:
    """Run the hold statement: a replay of the key, or every counter raised and the row in.

    ``alone``: as a transaction of its own, on a pooled connection of its own (the session
    must not have begun a transaction, so it holds no connection meanwhile: one connection
    per authorisation at any time), so the counter locks last exactly as long as the
    statement and the unit has nothing left to commit. Otherwise on the session's connection,
    inside the caller's transaction when one is open (under a savepoint, so a refusal leaves
    that transaction usable).
    """
    arguments = _arguments(hold)
    if alone:
        if session.in_transaction():
            raise RuntimeError("a hold alone needs a session that has not begun a transaction")
        engine = session.bind
        assert isinstance(engine, AsyncEngine)
        async with pooled(engine) as connection:
            return await _hold(connection, arguments)
    return await _hold(await driver(session), arguments)


async def _hold(connection: Any, arguments: tuple[object, ...]) -> HoldOutcome:
    try:
        row = await _run_hold(connection, arguments)
    except asyncpg.PostgresError as error:
        state = getattr(error, "sqlstate", None)
        if state == STALE_BUDGETS:
            raise BudgetsChanged() from error
        if state == LIMIT_REACHED:
            raise _refusal(error) from error
        if state == KEY_TAKEN:
            raise KeyTaken() from error
        raise
    return HoldOutcome(row[0], row[1], bytes(row[2]), row[3], row[4])
