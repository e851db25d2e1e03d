"""``POST /webhooks/stripe``: Stripe payments in, as deposits, and their refunds (see
:mod:`costgraph.billing.stripe_payments` for what is recorded and how).

The ``Stripe-Signature`` header (``t=<unix time>,v1=<hex>[,v1=…]``) must carry an HMAC-SHA256
of ``"<t>.<raw body>"`` under ``COSTGRAPH_STRIPE_WEBHOOK_SECRET``, and ``t`` must be within
``COSTGRAPH_STRIPE_WEBHOOK_TOLERANCE_SECONDS`` of now (replays of old deliveries are refused).
Each delivery is one unit of work (:mod:`costgraph.kernel.unit_of_work`): one transaction,
retried on serialization failures and deadlocks, and the balance notices published after
commit (``allowanceChanged`` hears of a Stripe top-up like any other).

Answers: 200 once the deposit or refunds are committed (or the event is ignored, or was
already recorded); 400 for a bad signature or body; 409 when the payment's key is taken by
another request (a conflict, not a replay: nothing is recorded, both fingerprints are logged,
``costgraph_stripe_payment_conflicts_total`` counts it and a ``PAYMENT_CONFLICT`` alert goes
to the organisation's admins through the alert outbox, once per payment and body); 422 when
the event names an organisation or account that does not resolve, or a refund that cannot
be recorded; 503 while no secret is configured or the database is unavailable. Stripe
retries every non-2xx answer.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from costgraph.alerts import payment_conflicts
from costgraph.app.state import AppState
from costgraph.billing.directory import OrgContext, get_organization
from costgraph.billing.entries import Entry
from costgraph.billing.stripe_payments import (
    HANDLED,
    REFUNDED,
    StripeConflict,
    StripePayment,
    StripeRefunds,
    payment_of,
    record_stripe_payment,
    record_stripe_refunds,
    refunds_of,
)
from costgraph.kernel.errors import DomainError, Unavailable
from costgraph.kernel.text import find_bad_text

logger = logging.getLogger("costgraph.stripe")

MAX_BODY_BYTES = 512 * 1024


def signature_valid(
    payload: bytes, header: str | None, secret: str, tolerance_seconds: int, now: float
) -> bool:
    if not header:
        return False
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif name == "v1":
            signatures.append(value)
    if timestamp is None or not signatures or abs(now - timestamp) > tolerance_seconds:
        return False
    expected = hmac.new(
        secret.encode(), str(timestamp).encode() + b"." + payload, hashlib.sha256
    ).hexdigest()
    return any(hmac.compare_digest(expected, signature) for signature in signatures)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


async def _organization(state: AppState, organization_id: uuid.UUID) -> OrgContext | None:
    async with state.sessions() as session:
        org = await get_organization(session, organization_id)
    return None if org is None else OrgContext.of(org)


async def _record(
    state: AppState, org: OrgContext, target: StripePayment | StripeRefunds
) -> list[Entry]:
    """The event's deposit or refunds, as one unit of work."""
    if isinstance(target, StripePayment):
        payment = target
        entry = await state.units.run(
            org, lambda uow: record_stripe_payment(uow.session, uow.org, payment, state.limits)
        )
        return [entry]
    refunds = target
    return await state.units.run(
        org, lambda uow: record_stripe_refunds(uow.session, uow.org, refunds, state.limits)
    )


async def _conflict(
    state: AppState, org: OrgContext, event: dict[str, Any], conflict: StripeConflict
) -> JSONResponse:
    """A key taken by another request: nothing recorded; logged with both fingerprints,
    counted, and the organisation's admins alerted (once per key and body). 409, so Stripe
    retries the delivery (and it succeeds once the conflicting entry is dealt with)."""
    event_type = str(event.get("type", ""))
    logger.warning(
        "Stripe event %s (%s) conflicts with entry %s under key %s: recorded fingerprint %s, "
        "this event's %s; nothing recorded",
        event.get("id"),
        event_type,
        conflict.existing.id,
        conflict.key,
        conflict.existing_fingerprint,
        conflict.offered_fingerprint,
    )
    state.metrics.stripe_payment_conflicts.labels(
        event_type if event_type in HANDLED or event_type == REFUNDED else "other"
    ).inc()
    facts = payment_conflicts.ConflictFacts.of(conflict, str(event.get("id", "")))
    try:
        await state.units.run(
            org, lambda uow: payment_conflicts.raise_alert(uow.session, uow.org, facts)
        )
    except DomainError as exc:  # the answer is a conflict either way; Stripe will retry
        logger.warning("the payment conflict alert was not raised: %s", exc.message)
    return _error(409, conflict.code.value, conflict.message)


def stripe_webhook_route(state_of: Callable[[], AppState]) -> Route:
    async def webhook(request: Request) -> JSONResponse:
        state = state_of()
        secret = state.settings.stripe_webhook_secret
        if secret is None:
            return _error(503, "NOT_CONFIGURED", "the Stripe webhook secret is not configured")
        payload = await request.body()
        if len(payload) > MAX_BODY_BYTES:
            return _error(413, "VALIDATION_FAILED", "the body is too large")
        if not signature_valid(
            payload,
            request.headers.get("stripe-signature"),
            secret.get_secret_value(),
            state.settings.stripe_webhook_tolerance_seconds,
            time.time(),
        ):
            return _error(400, "UNAUTHENTICATED", "the Stripe-Signature header does not verify")
        try:
            event: Any = orjson.loads(payload)
            if not isinstance(event, dict):
                raise ValueError("not an object")
        except ValueError:  # also a lone surrogate (orjson refuses it)
            return _error(400, "VALIDATION_FAILED", "the body is not a JSON object")
        if (bad_text := find_bad_text(event)) is not None:  # a NUL, which no column stores
            return _error(400, "VALIDATION_FAILED", f"the body's {bad_text[0]} {bad_text[1]}")
        try:
            payment = payment_of(event)
            refunds = refunds_of(event) if payment is None else None
            target = payment or refunds
            if target is None:
                return JSONResponse({"received": True, "recorded": False})
            org = await _organization(state, target.organization_id)
            if org is None:
                return _error(422, "NOT_FOUND", "the organisation in the metadata is unknown")
            try:
                entries = await _record(state, org, target)
            except StripeConflict as conflict:
                return await _conflict(state, org, event, conflict)
        except Unavailable as exc:
            logger.warning("Stripe event %s not recorded: %s", event.get("id"), exc.message)
            return _error(503, exc.code.value, exc.message)
        except DomainError as exc:
            logger.warning("Stripe event %s refused: %s", event.get("id"), exc.message)
            return _error(422, exc.code.value, exc.message)
        # The transaction has committed: only now is the delivery acknowledged.
        return JSONResponse(
            {
                "received": True,
                "recorded": True,
                "entryId": str(entries[0].id) if entries else None,
                "entryIds": [str(e.id) for e in entries],
                "replayed": all(e.replayed for e in entries),
            }
        )

    return Route("/webhooks/stripe", webhook, methods=["POST"])
