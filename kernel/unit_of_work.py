"""The unit of work: the one way anything is written, whoever the writer is.

A GraphQL mutation, the Stripe webhook, a reprice, the month close, the demo seeder and the
workers all write through :meth:`Units.run`::

    entry = await units.run(org, lambda uow: ledger.deposit(uow.session, uow.org, ...))

One run is one transaction on a session bound to the tenant
(:func:`costgraph.models.scoping.bind_tenant`):

1. the action runs, and the domain code it calls records what happened as typed
   :class:`DomainEvent` s on the unit (:func:`emit`): usage recorded, balances changed, budget
   counters raised, alerts raised…;
2. the *before-commit* hooks run in the same transaction (alert evaluation: the counters the
   action raised become alerts and outbox rows, committed with the spend or not at all);
3. the transaction commits (a session that began none, having run and added nothing, is
   neither committed nor closed: there is nothing to);
4. only then are the events handed to the *after-commit* hooks (the bus publisher, metrics,
   the local alert worker's wakeup). They never fail the committed write: an exception there
   is logged and swallowed.

A serialization failure or deadlock re-runs the whole attempt from a fresh session with an
empty event list (:func:`costgraph.kernel.retry.in_transaction`); events of an attempt that
rolled back are never published. A domain error rolls back and propagates as it is.

The kernel knows no domain: the hooks are registered when the app is wired
(``costgraph.app.units``), so billing, alerts and subscriptions plug in from above.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from costgraph.kernel.retry import DEFAULT_POLICY, RetryPolicy, in_transaction
from costgraph.kernel.tenancy import OrgContext
from costgraph.models.scoping import TenantNotBound, bind_platform, bind_tenant

logger = logging.getLogger("costgraph.unit_of_work")

T = TypeVar("T")
E = TypeVar("E", bound="DomainEvent")

#: ``session.info`` key of the unit a session belongs to (set by :meth:`Units.run` only).
_UNIT_KEY: Final = "costgraph.unit_of_work"


class DomainEvent:
    """Something a unit of work did, for the hooks. Domains subclass it with frozen
    dataclasses (``billing.events``, ``alerts.events``)."""

    __slots__ = ()


@dataclass(eq=False, slots=True)
class UnitOfWork:
    """One attempt of a write: its session, its tenant and what it did so far."""

    session: AsyncSession
    tenant: OrgContext | None
    events: list[DomainEvent] = field(default_factory=list)

    @property
    def org(self) -> OrgContext:
        """The organisation written for (a platform unit has none)."""
        if self.tenant is None:
            raise TenantNotBound("this unit of work is not bound to an organisation")
        return self.tenant

    def emit(self, event: DomainEvent) -> None:
        self.events.append(event)

    def emitted(self, kind: type[E]) -> list[E]:
        """The events of this kind emitted so far, in order."""
        return [event for event in self.events if isinstance(event, kind)]


def current(session: AsyncSession) -> UnitOfWork | None:
    """The unit of work ``session`` belongs to (None: a session opened outside one)."""
    unit = session.info.get(_UNIT_KEY)
    return unit if isinstance(unit, UnitOfWork) else None


def emit(session: AsyncSession, event: DomainEvent) -> None:
    """Record ``event`` on the unit of work of ``session``.

    Domain functions take a session, not a unit; this is how they report what they did. A
    session opened outside a unit of work (a test driving the domain directly) has nobody
    listening, and the event is dropped.
    """
    unit = current(session)
    if unit is not None:
        unit.events.append(event)


def _touched(session: AsyncSession) -> bool:
    """Whether the session began a transaction or holds objects. One that did neither (an
    action whose statements ran on a pooled connection of their own, like an authorisation's
    hold) has nothing to commit, roll back or detach: skipping its commit and close saves
    their round of greenlet and pool bookkeeping, not any work (SQLAlchemy autobegins on
    every statement and on ``add``, so an untouched session has run and added nothing)."""
    return session.in_transaction() or bool(session.identity_map)


BeforeCommit = Callable[[UnitOfWork], Awaitable[None]]
AfterCommit = Callable[[Sequence[DomainEvent]], None]


class Units:
    """Runs units of work; owned by the app (created once, in its lifespan), and by each
    command-line job that writes. Hooks are registered once, when it is wired."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        policy: RetryPolicy = DEFAULT_POLICY,
    ) -> None:
        self.sessions = sessions
        self.policy = policy
        self._before_commit: list[BeforeCommit] = []
        self._after_commit: list[AfterCommit] = []

    def before_commit(self, hook: BeforeCommit) -> None:
        """Run ``hook`` in every unit's transaction, after its action, before its commit."""
        self._before_commit.append(hook)

    def after_commit(self, hook: AfterCommit) -> None:
        """Hand every committed unit's events to ``hook`` (which should not raise)."""
        self._after_commit.append(hook)

    async def run(
        self,
        org: OrgContext | None,
        action: Callable[[UnitOfWork], Awaitable[T]],
        *,
        platform: bool = False,
    ) -> T:
        """Run ``action`` as one transaction for ``org`` (retried on conflicts), then publish.

        ``org=None``: a session bound to no tenant, which refuses tenant tables (creating an
        organisation, the platform catalog); ``platform=True`` instead lets it see every
        tenant (workers whose queue spans organisations).
        """

        async def attempt() -> tuple[T, list[DomainEvent]]:
            session = self.sessions()
            try:
                if org is not None:
                    bind_tenant(session.sync_session, org.id)
                elif platform:
                    bind_platform(session.sync_session)
                unit = UnitOfWork(session, org)
                session.info[_UNIT_KEY] = unit
                result = await action(unit)
                for hook in self._before_commit:
                    await hook(unit)
                if session.in_transaction():
                    await session.commit()
                return result, unit.events
            finally:
                if _touched(session):
                    await session.close()  # rolls back whatever did not commit
                # The unit and its session refer to each other: unlinked, both are freed
                # as soon as the attempt ends, not by the cycle collector later.
                session.info.pop(_UNIT_KEY, None)

        result, events = await in_transaction(attempt, self.policy)
        if events:
            self.publish(events)
        return result

    def publish(self, events: Sequence[DomainEvent]) -> None:
        """Hand committed events to the after-commit hooks; never raises."""
        for hook in self._after_commit:
            try:
                hook(events)
            except Exception:  # a committed write must not fail for its announcement
                logger.exception("an after-commit hook failed")
