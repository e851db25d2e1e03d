"""Payments that arrive from Stripe, recorded as top-up deposits exactly once.

Handled events: ``checkout.session.completed`` (when ``payment_status`` is ``paid``) and
``payment_intent.succeeded``. Every other event type is acknowledged and ignored.

Which organisation and account: from the metadata of the Stripe object, set by whoever
created the Checkout Session or PaymentIntent: ``costgraph_organization_id`` and
``costgraph_account_id`` (CostGraph ids). An object without them is not CostGraph's (the
Stripe account may sell other things) and is ignored; an object with them that does not
resolve (unknown organisation or account, currency other than the account's) is refused,
so Stripe shows the failure and retries.

Idempotency: the deposit's key is ``stripe:<payment id>``, the payment id being the
PaymentIntent id (``pi_…``; for a Checkout Session its ``payment_intent``, else the
session id), so the two events Stripe sends for one checkout record one deposit. The payment
id is kept in the entry's metadata (``stripe_payment_id``) for reconciliation. Amounts are
Stripe's integers in the currency's minor unit, scaled by its ISO 4217 exponent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import ledger, ledger_repository
from costgraph.billing.commands import Limits, Payment
from costgraph.billing.directory import OrgContext
from costgraph.billing.entries import Entry
from costgraph.kernel.errors import IdempotencyConflict, ValidationFailed
from costgraph.kernel.money import is_currency, minor_unit

HANDLED = frozenset({"checkout.session.completed", "payment_intent.succeeded"})
ORGANIZATION_KEY = "costgraph_organization_id"
ACCOUNT_KEY = "costgraph_account_id"


@dataclass(frozen=True, slots=True)
class StripePayment:
    event_id: str
    event_type: str
    payment_id: str
    organization_id: uuid.UUID
    account_id: uuid.UUID
    amount: Decimal
    currency: str
    occurred_at: datetime


def _uuid(value: object, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise ValidationFailed(f"metadata.{name} is not a CostGraph id", name) from None


def payment_of(event: dict[str, Any]) -> StripePayment | None:
    """The payment an event reports, or None when CostGraph has nothing to record."""
    event_type = event.get("type")
    if event_type not in HANDLED:
        return None
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise ValidationFailed("the event has no data.object", "data.object")
    metadata = obj.get("metadata") or {}
    if not isinstance(metadata, dict) or ACCOUNT_KEY not in metadata:
        return None
    if event_type == "checkout.session.completed":
        if obj.get("payment_status") != "paid":
            return None  # an asynchronous payment method: its payment_intent event follows
        payment_id = obj.get("payment_intent") or obj.get("id")
        minor = obj.get("amount_total")
    else:
        payment_id = obj.get("id")
        minor = obj.get("amount_received", obj.get("amount"))
    if not isinstance(payment_id, str) or not payment_id:
        raise ValidationFailed("the payment has no id", "data.object.id")
    currency = str(obj.get("currency", "")).upper()
    if not is_currency(currency):
        raise ValidationFailed("the payment has no ISO 4217 currency", "data.object.currency")
    if not isinstance(minor, int) or isinstance(minor, bool) or minor <= 0:
        raise ValidationFailed("the payment has no positive amount", "data.object.amount")
    created = event.get("created")
    occurred_at = (
        datetime.fromtimestamp(created, UTC)
        if isinstance(created, int) and not isinstance(created, bool)
        else datetime.now(UTC)
    )
    return StripePayment(
        event_id=str(event.get("id", "")),
        event_type=str(event_type),
        payment_id=payment_id,
        organization_id=_uuid(metadata.get(ORGANIZATION_KEY), ORGANIZATION_KEY),
        account_id=_uuid(metadata[ACCOUNT_KEY], ACCOUNT_KEY),
        amount=Decimal(minor).scaleb(-minor_unit(currency)),
        currency=currency,
        occurred_at=occurred_at,
    )


async def record_stripe_payment(
    session: AsyncSession, org: OrgContext, payment: StripePayment, limits: Limits
) -> Entry:
    """The deposit for this payment: written now, or the one written for it before."""
    key = f"stripe:{payment.payment_id}"
    request = Payment(
        idempotency_key=key,
        account_id=payment.account_id,
        amount=payment.amount,
        currency=payment.currency,
        occurred_at=payment.occurred_at,
        metadata={"source": "stripe", "stripe_payment_id": payment.payment_id},
    )
    try:
        return await ledger.deposit(session, org, request, limits)
    except IdempotencyConflict:
        # The same payment reported by another event (a session and its payment intent):
        # the first one recorded it.
        existing = (await ledger_repository.find_by_keys(session, [key]))[key]
        return existing.as_replay()
