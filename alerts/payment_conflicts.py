"""PAYMENT_CONFLICT: a Stripe payment whose idempotency key another request holds.

The webhook records nothing and answers 409 (Stripe retries); this raises the alert that
tells the organisation's admins, in a unit of work of its own. It is not a budget's alert:
no budget, the organisation as its scope — so only the organisation-wide channels hear it —
and a ``subject`` (the payment's key and the refused body's fingerprint) that raises it once
however often Stripe retries the same delivery. Like every alert it is written with its
outbox rows, announced on ``alertRaised`` after commit and delivered by the worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.alerts import outbox
from costgraph.alerts.events import AlertsRaised
from costgraph.alerts.records import AlertRecord
from costgraph.alerts.rules import AlertKind
from costgraph.billing.directory import OrgContext
from costgraph.billing.scopes import ScopeKind
from costgraph.billing.stripe_payments import StripeConflict
from costgraph.kernel.clock import utcnow
from costgraph.kernel.money import format_money
from costgraph.kernel.unit_of_work import emit
from costgraph.models.alerts import Alert

SUBJECT_MAX = 255


@dataclass(frozen=True, slots=True)
class ConflictFacts:
    """What the alert says: the key, the refused payment and what holds the key."""

    key: str
    event_id: str
    amount: Decimal
    currency: str
    existing_entry: str
    existing_type: str
    existing_amount: Decimal
    existing_currency: str
    existing_fingerprint: str
    offered_fingerprint: str

    @classmethod
    def of(cls, conflict: StripeConflict, event_id: str) -> ConflictFacts:
        existing = conflict.existing
        return cls(
            key=conflict.key,
            event_id=event_id,
            amount=conflict.amount,
            currency=conflict.currency,
            existing_entry=str(existing.id),
            existing_type=existing.type.value,
            existing_amount=existing.amount,
            existing_currency=existing.currency,
            existing_fingerprint=conflict.existing_fingerprint,
            offered_fingerprint=conflict.offered_fingerprint,
        )

    @property
    def subject(self) -> str:
        """Once per key and refused body (Stripe re-sends the same body for days)."""
        suffix = f"#{self.offered_fingerprint[:32]}"
        return self.key[: SUBJECT_MAX - len(suffix)] + suffix

    def message(self) -> str:
        offered = format_money(self.amount, self.currency)
        held = format_money(self.existing_amount, self.existing_currency)
        return (
            f"A Stripe payment of {offered} (event {self.event_id}) was not "
            f"recorded: its key {self.key} already holds a {self.existing_type.lower()} of "
            f"{held} (entry {self.existing_entry}) made by another "
            f"request (fingerprints: recorded {self.existing_fingerprint[:16]}…, this payment "
            f"{self.offered_fingerprint[:16]}…). Stripe keeps retrying the delivery: correct "
            "the entry under that key (refund or adjust it) and resend the event."
        )


async def raise_alert(
    session: AsyncSession, org: OrgContext, facts: ConflictFacts
) -> AlertRecord | None:
    """Raise the alert with its outbox rows (once per subject); the alert if this call
    raised it."""
    now = utcnow()
    statement = (
        insert(Alert)
        .values(
            organization_id=org.id,
            budget_id=None,
            kind=AlertKind.PAYMENT_CONFLICT.value,
            stage=0,
            subject=facts.subject,
            period_start=now,
            period_end=now,
            raised_at=now,
            scope_kind=ScopeKind.ORGANIZATION.value,
            scope_id=org.id,
            scope_name=org.name,
            spent=facts.amount,
            limit_amount=facts.existing_amount,
            currency=facts.currency,
            message=facts.message(),
        )
        .on_conflict_do_nothing(
            index_elements=["organization_id", "subject"],
            index_where=Alert.subject.is_not(None),
        )
        .returning(Alert)
    )
    row = (await session.scalars(statement)).one_or_none()
    if row is None:
        return None  # raised by an earlier delivery of the same payment
    alert = AlertRecord.of(row)
    await outbox.enqueue(session, org.id, [alert])
    emit(session, AlertsRaised((alert,)))
    return alert
