"""``POST /webhooks/stripe``: Stripe payments in, as deposits (see
:mod:`costgraph.billing.stripe_payments` for what is recorded and how).

The ``Stripe-Signature`` header (``t=<unix time>,v1=<hex>[,v1=…]``) must carry an HMAC-SHA256
of ``"<t>.<raw body>"`` under ``COSTGRAPH_STRIPE_WEBHOOK_SECRET``, and ``t`` must be within
``COSTGRAPH_STRIPE_WEBHOOK_TOLERANCE_SECONDS`` of now (replays of old deliveries are refused).
Answers: 200 once the deposit is committed (or the event is ignored, or was already
recorded); 400 for a bad signature or body; 422 when the event names an organisation or
account that does not resolve; 503 while no secret is configured. Stripe retries non-2xx.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from costgraph.app.state import AppState
from costgraph.billing.directory import OrgContext, get_organization
from costgraph.billing.stripe_payments import payment_of, record_stripe_payment
from costgraph.kernel.errors import DomainError
from costgraph.models.scoping import bind_tenant

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
        except ValueError:
            return _error(400, "VALIDATION_FAILED", "the body is not a JSON object")
        try:
            payment = payment_of(event)
            if payment is None:
                return JSONResponse({"received": True, "recorded": False})
            async with state.sessions() as session, session.begin():
                org = await get_organization(session, payment.organization_id)
                if org is None:
                    return _error(422, "NOT_FOUND", "the organisation in the metadata is unknown")
                bind_tenant(session.sync_session, org.id)
                entry = await record_stripe_payment(
                    session, OrgContext.of(org), payment, state.limits
                )
        except DomainError as exc:
            logger.warning("Stripe event %s refused: %s", event.get("id"), exc.message)
            return _error(422, exc.code.value, exc.message)
        # The transaction has committed: only now is the delivery acknowledged.
        return JSONResponse(
            {
                "received": True,
                "recorded": True,
                "entryId": str(entry.id),
                "replayed": entry.replayed,
            }
        )

    return Route("/webhooks/stripe", webhook, methods=["POST"])
