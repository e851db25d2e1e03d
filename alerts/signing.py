"""Webhook signatures as Standard Webhooks define them.

A secret is ``whsec_`` + base64 of 24 to 64 random bytes; the HMAC key is those bytes. Each
message carries three headers::

    webhook-id: <the delivery's id — the same on every retry>
    webhook-timestamp: <unix seconds of this attempt>
    webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}"> [v1,<…> …]

During a rotation a channel has several active secrets and the message is signed with each
(space-separated), so a receiver holding either the old or the new secret verifies it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping

PREFIX = "whsec_"
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64
#: A receiver should refuse messages whose timestamp is further than this from its clock.
DEFAULT_TOLERANCE_SECONDS = 300


class InvalidSecret(ValueError):
    pass


class InvalidSignature(ValueError):
    pass


def generate_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret; InvalidSecret when it is not one."""
    if not secret.startswith(PREFIX):
        raise InvalidSecret(f"a signing secret starts with {PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidSecret("a signing secret is whsec_ followed by base64") from exc
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise InvalidSecret(
            f"a signing secret holds {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes (got {len(key)})"
        )
    return key


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(
    secrets_: Iterable[str], message_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(s, message_id, timestamp, body) for s in secrets_),
    }


def verify(
    secret: str,
    received: Mapping[str, str],
    body: bytes,
    now: int,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> str:
    """Check a received message (as a receiver would); return its id. For receivers and tests."""
    message_id = received.get("webhook-id")
    stamp = received.get("webhook-timestamp")
    signatures = received.get("webhook-signature")
    if not message_id or not stamp or not signatures:
        raise InvalidSignature("missing webhook headers")
    try:
        timestamp = int(stamp)
    except ValueError as exc:
        raise InvalidSignature("malformed timestamp") from exc
    if abs(now - timestamp) > tolerance:
        raise InvalidSignature("timestamp outside the tolerance")
    expected = sign(secret, message_id, timestamp, body)
    if not any(hmac.compare_digest(expected, s) for s in signatures.split(" ")):
        raise InvalidSignature("no signature matches")
    return message_id
