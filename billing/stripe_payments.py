"""Payments that arrive from Stripe, recorded as top-up deposits exactly once, and their
refunds.

Handled events: ``checkout.session.completed`` (when ``payment_status`` is ``paid``) and
``payment_intent.succeeded`` (a deposit), ``charge.refunded`` (refunds). Every other event
type is acknowledged and ignored.

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

A key already taken is a replay only when it holds *this* payment: a Stripe deposit of the
same payment id, account, amount and currency (the other event of the same checkout).
Anything else under that key — a manual deposit someone made with ``stripe:<payment id>``,
or the same payment re-sent with another amount — is a :class:`StripeConflict`: nothing is
recorded, and the webhook answers so that Stripe retries, and tells the admins.

Refunds: ``charge.refunded`` carries the Charge, whose metadata Stripe copied from its
PaymentIntent. Each refund becomes a ``REFUND`` entry linked to the deposit of the charge's
PaymentIntent (key ``stripe:<payment id>``), through the same path as the ``refund``
mutation (bounded by what is left to refund), under the key ``stripe:<refund id>`` — one
entry per Stripe refund, a redelivery replays. When the event does not list the refunds
(API versions from 2022-11-15 leave ``refunds`` out unless expanded), the charge's
cumulative ``amount_refunded`` is what counts: what it exceeds the Stripe refunds already
recorded for that deposit is recorded under ``stripe:<charge id>:refunded:<amount>``. In
both cases the Stripe refunds recorded for a deposit never exceed ``amount_refunded``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import ledger, ledger_repository
from costgraph.billing.commands import Limits, Payment, Refund
from costgraph.billing.directory import OrgContext
from costgraph.billing.entries import Entry
from costgraph.billing.idempotency import request_hash
from costgraph.kernel.clock import utcnow
from costgraph.kernel.errors import IdempotencyConflict, NotFound, ValidationFailed
from costgraph.kernel.money import is_currency, minor_unit
from costgraph.models.ledger import EntryType

HANDLED = frozenset({"checkout.session.completed", "payment_intent.succeeded"})
REFUNDED = "charge.refunded"
KEY_PREFIX = "stripe:"
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
    return StripePayment(
        event_id=str(event.get("id", "")),
        event_type=str(event_type),
        payment_id=payment_id,
        organization_id=_uuid(metadata.get(ORGANIZATION_KEY), ORGANIZATION_KEY),
        account_id=_uuid(metadata[ACCOUNT_KEY], ACCOUNT_KEY),
        amount=Decimal(minor).scaleb(-minor_unit(currency)),
        currency=currency,
        occurred_at=_created_at(event.get("created")),
    )


def _created_at(created: object) -> datetime:
    """The event's ``created`` (Unix seconds) as a UTC time; now when it is absent. One that
    no calendar holds (past year 9999) is a bad body, not a server error."""
    if not isinstance(created, int) or isinstance(created, bool):
        return utcnow()
    try:
        return datetime.fromtimestamp(created, UTC)
    except (ValueError, OverflowError, OSError):
        raise ValidationFailed("the event's created is not a time", "created") from None


def payment_key(payment_id: str) -> str:
    """The idempotency key of a Stripe payment's deposit."""
    return f"{KEY_PREFIX}{payment_id}"


class StripeConflict(IdempotencyConflict):
    """A Stripe payment's key holds another request (a manual deposit under that key, or the
    same payment with another amount): not a replay, and nothing was recorded."""

    def __init__(
        self, key: str, offered: bytes, existing: Entry, amount: Decimal, currency: str
    ) -> None:
        super().__init__(key, "data.object.id")
        self.message = (
            f"idempotency key {key!r} already holds a {existing.type.value} of "
            f"{existing.amount} {existing.currency} (entry {existing.id}) made by another "
            f"request; this payment of {amount} {currency} was not recorded"
        )
        self.args = (self.message,)
        self.existing = existing
        self.existing_fingerprint = existing.request_hash.hex()
        self.offered_fingerprint = offered.hex()
        self.amount = amount
        self.currency = currency


def _same_payment(existing: Entry, payment: StripePayment) -> bool:
    """Whether the entry under the payment's key is this payment, recorded from Stripe."""
    metadata = existing.metadata or {}
    return (
        existing.type is EntryType.DEPOSIT
        and metadata.get("source") == "stripe"
        and metadata.get("stripe_payment_id") == payment.payment_id
        and existing.account_id == payment.account_id
        and existing.currency == payment.currency
        and existing.amount == payment.amount
    )


async def record_stripe_payment(
    session: AsyncSession, org: OrgContext, payment: StripePayment, limits: Limits
) -> Entry:
    """The deposit for this payment: written now, or the one written for it before.
    Raises :class:`StripeConflict` when its key holds anything else."""
    key = payment_key(payment.payment_id)
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
        existing = (await ledger_repository.find_by_keys(session, [key]))[key]
        if _same_payment(existing, payment):
            # The same payment reported by another event (a session and its payment
            # intent, each with its own time): the first one recorded it.
            return existing.as_replay()
        # The payment, not the event: a retried delivery carries another time, same body.
        offered = request_hash(EntryType.DEPOSIT.value, replace(request, occurred_at=None))
        raise StripeConflict(key, offered, existing, payment.amount, payment.currency) from None


# --- refunds ---


@dataclass(frozen=True, slots=True)
class RefundItem:
    key: str
    #: The refund's amount; None for the cumulative form (whatever is left to record).
    amount: Decimal | None
    reason: str


@dataclass(frozen=True, slots=True)
class StripeRefunds:
    """The refunds a ``charge.refunded`` event reports for one payment."""

    event_id: str
    charge_id: str
    payment_id: str
    organization_id: uuid.UUID
    account_id: uuid.UUID
    currency: str
    #: The charge's cumulative ``amount_refunded``: the bound of what Stripe refunded.
    refunded: Decimal
    items: tuple[RefundItem, ...]


def _minor(value: object, currency: str, field: str) -> Decimal:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValidationFailed("not a non-negative amount in minor units", field)
    return Decimal(value).scaleb(-minor_unit(currency))


def refunds_of(event: dict[str, Any]) -> StripeRefunds | None:
    """The refunds a ``charge.refunded`` event reports, or None when it is another event or
    not CostGraph's."""
    if event.get("type") != REFUNDED:
        return None
    data = event.get("data")
    charge = data.get("object") if isinstance(data, dict) else None
    if not isinstance(charge, dict):
        raise ValidationFailed("the event has no data.object", "data.object")
    metadata = charge.get("metadata") or {}
    if not isinstance(metadata, dict) or ACCOUNT_KEY not in metadata:
        return None
    charge_id = charge.get("id")
    if not isinstance(charge_id, str) or not charge_id:
        raise ValidationFailed("the charge has no id", "data.object.id")
    intent = charge.get("payment_intent")
    payment_id = (intent.get("id") if isinstance(intent, dict) else intent) or charge_id
    if not isinstance(payment_id, str):
        raise ValidationFailed("the charge's payment_intent is not an id", "data.object")
    currency = str(charge.get("currency", "")).upper()
    if not is_currency(currency):
        raise ValidationFailed("the charge has no ISO 4217 currency", "data.object.currency")
    refunded = _minor(charge.get("amount_refunded"), currency, "data.object.amount_refunded")
    listed = charge.get("refunds")
    rows = listed.get("data") if isinstance(listed, dict) else None
    items: list[RefundItem] = []
    if isinstance(rows, list) and rows:
        for index, row in enumerate(rows):
            field = f"data.object.refunds.data.{index}"
            if not isinstance(row, dict) or not isinstance(row.get("id"), str) or not row["id"]:
                raise ValidationFailed("a refund without an id", field)
            if row.get("status") in ("failed", "canceled"):
                continue  # never took money back
            amount = _minor(row.get("amount"), currency, f"{field}.amount")
            if amount > 0:
                refund_id = row["id"]
                items.append(RefundItem(payment_key(refund_id), amount, f"Stripe {refund_id}"))
    else:  # no list: the cumulative total
        total = charge.get("amount_refunded")
        items.append(
            RefundItem(
                f"{KEY_PREFIX}{charge_id}:refunded:{total}", None, f"Stripe refunds of {charge_id}"
            )
        )
    return StripeRefunds(
        event_id=str(event.get("id", "")),
        charge_id=charge_id,
        payment_id=payment_id,
        organization_id=_uuid(metadata.get(ORGANIZATION_KEY), ORGANIZATION_KEY),
        account_id=_uuid(metadata[ACCOUNT_KEY], ACCOUNT_KEY),
        currency=currency,
        refunded=refunded,
        items=tuple(items),
    )


async def record_stripe_refunds(
    session: AsyncSession, org: OrgContext, refunds: StripeRefunds, limits: Limits
) -> list[Entry]:
    """One REFUND per Stripe refund not yet recorded, against the payment's deposit, through
    :func:`costgraph.billing.ledger.refund`; those recorded before come back as replays."""
    key = payment_key(refunds.payment_id)
    deposit = (await ledger_repository.find_by_keys(session, [key])).get(key)
    if deposit is None or deposit.type is not EntryType.DEPOSIT:
        # Not recorded yet (Stripe delivers out of order): refused, so Stripe retries.
        raise NotFound("Stripe payment", refunds.payment_id, "data.object.payment_intent")
    if deposit.account_id != refunds.account_id or deposit.currency != refunds.currency:
        raise ValidationFailed(
            "the charge's account or currency is not its deposit's", "data.object.metadata"
        )
    await ledger_repository.lock_for_refund(session, org.id, deposit.id)  # one at a time
    taken = await ledger_repository.find_by_keys(session, [item.key for item in refunds.items])
    room = refunds.refunded - await ledger_repository.refunded_total(
        session, deposit.id, KEY_PREFIX
    )
    written: list[Entry] = []
    for item in refunds.items:
        existing = taken.get(item.key)
        if existing is not None:
            if existing.type is not EntryType.REFUND or existing.related_entry_id != deposit.id:
                offered = request_hash("REFUND", item)
                amount = item.amount if item.amount is not None else room
                raise StripeConflict(item.key, offered, existing, amount, refunds.currency)
            written.append(existing.as_replay())
            continue
        amount = room if item.amount is None else min(item.amount, room)
        if amount <= 0:
            continue  # Stripe's own total says this much was never taken back
        request = Refund(
            idempotency_key=item.key, entry_id=deposit.id, amount=amount, reason=item.reason
        )
        written.append(await ledger.refund(session, org, request, limits))
        room -= amount
    return written
