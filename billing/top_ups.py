"""Auto-top-up: an account asks its integrator for money before its prepaid balance runs dry.

A per-account setting (``setAutoTopUp``): ``enabled``, a ``threshold`` and an ``amount`` in
the account's currency. The threshold is on the **prepaid balance** (the money top-ups put
in and usage beyond the allowance draws from; the allowance itself is consumed first): when
the balance is below the threshold, one top-up of ``amount`` is requested. Why the balance
and not the allowance: the request is for money, the deposit that answers it lands in that
balance, and the rule then means the same for accounts with and without a plan.

**Once per crossing.** The setting is armed until a request is raised, then disarmed until
the balance is back at or above the threshold (the deposit arrived: re-armed). It is
evaluated, under the balance's row lock, after every write that moved the account's
balance (usage charged beyond the allowance, deposits, refunds, withdrawals, adjustments)
and when the setting is made (an account already below its threshold requests at once), so
concurrent writers in any number of processes raise it exactly once. The balance row carries
whether a setting is on (``account_balances.auto_top_up``, set here under that row's lock,
migration 0021): a write whose insert moved the balance and found it off skips the
evaluation's statement, as it would have found nothing (alerts/top_up_requests.py).

**The request** is an alert of kind ``TOP_UP_REQUESTED`` (alerts/top_up_requests.py):
delivered by the alert outbox to the organisation's channels (a webhook ``account.
top_up_requested``, signed like every other) and announced on the ``topUpRequested``
subscription. The integrator charges its payment rail; the money arrives through the usual
paths (the Stripe webhook or ``deposit``) and re-arms the setting.

With auto-top-up on, the allowance banner does not prompt ``BUY_MORE``
(:func:`costgraph.billing.allowances.banner`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import events
from costgraph.billing import top_ups_repository as repo
from costgraph.billing.directory import OrgContext, get_many
from costgraph.kernel.clock import utcnow
from costgraph.kernel.errors import NotFound, ValidationFailed
from costgraph.kernel.money import decimal_places, minor_unit, require_input_range
from costgraph.kernel.unit_of_work import emit
from costgraph.models import Account
from costgraph.models.top_ups import AutoTopUp


@dataclass(frozen=True, slots=True)
class AutoTopUpSpec:
    account_id: uuid.UUID
    enabled: bool
    threshold: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True)
class TopUpRequest:
    """One crossing: the account's balance fell below its threshold; ``amount`` is asked."""

    organization_id: uuid.UUID
    account_id: uuid.UUID
    #: The account's n-th request (once per crossing: the alert's subject).
    number: int
    amount: Decimal
    currency: str
    balance: Decimal
    threshold: Decimal
    requested_at: datetime


def _require_amount(value: Decimal, currency: str, field: str, *, positive: bool) -> Decimal:
    if not value.is_finite():
        raise ValidationFailed("must be a finite decimal", field)
    require_input_range(value, field)
    if value < 0 or (positive and value == 0):
        raise ValidationFailed(
            "must be greater than zero" if positive else "must be zero or more", field
        )
    places = minor_unit(currency)
    if decimal_places(value.normalize()) > places:
        raise ValidationFailed(f"{currency} amounts have at most {places} decimal places", field)
    return value


async def set_auto_top_up(session: AsyncSession, org: OrgContext, spec: AutoTopUpSpec) -> AutoTopUp:
    """Create or change the account's setting (in its currency), then evaluate it at once."""
    account = (await get_many(session, Account, [spec.account_id])).get(spec.account_id)
    if account is None:
        raise NotFound("account", spec.account_id, "input.accountId")
    _require_amount(spec.threshold, account.currency, "input.threshold", positive=False)
    _require_amount(spec.amount, account.currency, "input.amount", positive=True)
    await repo.lock_balance(session, org.id, account.id, spec.enabled)
    now = utcnow()
    row = await repo.upsert(
        session,
        {
            "organization_id": org.id,
            "account_id": account.id,
            "enabled": spec.enabled,
            "threshold": spec.threshold,
            "amount": spec.amount,
            "currency": account.currency,
            "updated_at": now,
        },
    )
    # The banner changes with the setting; the evaluation runs before commit with the rest.
    emit(session, events.AllowanceChanged(org.id, (account.id,)))
    emit(session, events.AutoTopUpSet(org.id, account.id))
    return row


async def require_account(session: AsyncSession, account_id: uuid.UUID, field: str) -> None:
    """NOT_FOUND unless the account is the tenant's."""
    if not (await get_many(session, Account, [account_id])):
        raise NotFound("account", account_id, field)


async def auto_top_up(session: AsyncSession, account_id: uuid.UUID) -> AutoTopUp | None:
    return await repo.get(session, account_id)


async def auto_top_up_enabled(session: AsyncSession, account_id: uuid.UUID) -> bool:
    return await repo.enabled_for(session, account_id)


async def evaluate(
    session: AsyncSession, organization_id: uuid.UUID, account_ids: set[uuid.UUID]
) -> list[TopUpRequest]:
    """The requests the accounts' current balances raise now (each once per crossing); the
    settings whose balance is back at or above the threshold are re-armed."""
    if not account_ids:
        return []
    now = utcnow()
    flips = await repo.evaluate(session, organization_id, sorted(account_ids), now)
    return [
        TopUpRequest(organization_id, account, number, amount, currency, balance, threshold, now)
        for account, balance, threshold, amount, currency, number, requested in flips
        if requested
    ]
