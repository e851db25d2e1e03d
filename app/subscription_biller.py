"""The subscription billing loop in the API process (the rules: billing/subscription_billing.py).

Every ``subscription_billing_interval_seconds`` it lists the accounts with a subscription
running (or ended less than a year ago, whose billed fees may still have months to
recognise) and runs the catch-up of each in its own unit of work: every cycle that started
is billed and every month that began is recognised, exactly once whoever runs it (several
processes may). One account's failure is logged and does not stop the others; a failing
round is retried next time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from costgraph.billing import subscription_billing
from costgraph.billing import subscription_billing_repository as repo
from costgraph.billing.directory import OrgContext, get_organization
from costgraph.billing.entries import Entry
from costgraph.kernel.clock import utcnow
from costgraph.kernel.unit_of_work import UnitOfWork, Units
from costgraph.models.scoping import bind_platform

logger = logging.getLogger("costgraph.subscription_biller")

#: How long after its end a subscription is still looked at (an annual fee's last months).
LOOKBACK = timedelta(days=400)


async def bill_round(
    sessions: async_sessionmaker[AsyncSession],
    units: Units,
    organization_id: uuid.UUID | None = None,
) -> int:
    """One round (every organisation, or one); the entries it wrote."""
    now = utcnow()
    async with sessions() as session:
        bind_platform(session.sync_session)
        found = await repo.billable_accounts(session, now, now - LOOKBACK, organization_id)
    orgs: dict[uuid.UUID, OrgContext | None] = {}
    written = 0
    for org_id, account_id in found:
        if org_id not in orgs:
            async with sessions() as session:
                row = await get_organization(session, org_id)
            orgs[org_id] = None if row is None else OrgContext.of(row)
        org = orgs[org_id]
        if org is None:
            continue
        try:
            entries = await units.run(org, _biller_of(account_id))
        except Exception:  # one account's failure does not stop the others
            logger.exception("billing the subscriptions of account %s failed", account_id)
            continue
        written += len([e for e in entries if not e.replayed])
    return written


def _biller_of(account_id: uuid.UUID) -> Callable[[UnitOfWork], Awaitable[list[Entry]]]:
    async def bill(unit: UnitOfWork) -> list[Entry]:
        return await subscription_billing.bill_account(unit.session, unit.org, account_id)

    return bill


async def _run(sessions: async_sessionmaker[AsyncSession], units: Units, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)  # subscribing bills its first cycle itself
        try:
            written = await bill_round(sessions, units)
        except asyncio.CancelledError:
            raise
        except Exception:  # logged, retried next round
            logger.exception("subscription billing round failed")
        else:
            if written:
                logger.info("subscription billing wrote %d entr(ies)", written)


@contextlib.asynccontextmanager
async def subscription_biller_running(
    sessions: async_sessionmaker[AsyncSession], units: Units, *, interval: float
) -> AsyncIterator[None]:
    """The loop for the app's lifetime (``interval`` 0: not in this process)."""
    if interval <= 0:
        yield
        return
    task = asyncio.create_task(_run(sessions, units, interval), name="costgraph-biller")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
