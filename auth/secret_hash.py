"""Client secrets at rest: scrypt (RFC 7914, ``hashlib.scrypt``), compared in constant time.

A stored hash reads ``scrypt$<n>$<r>$<p>$<salt>$<digest>`` (base64url), so its cost can be
raised later without invalidating the secrets already issued. Hashing costs tens of
milliseconds of CPU on purpose: call these functions from a worker thread, not the event loop.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import secrets

import anyio
import anyio.to_thread

SCHEME = "scrypt"
N, R, P = 2**14, 8, 1  # 16 MiB of memory per hash
DIGEST_BYTES = 32
SALT_BYTES = 16
MAX_SECRET_LENGTH = 256
_MAX_MEMORY = 64 * 1024 * 1024


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _derive(secret: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(
        secret.encode(), salt=salt, n=n, r=r, p=p, dklen=length, maxmem=_MAX_MEMORY
    )


def new_secret() -> str:
    """A client secret: 256 random bits, URL-safe, recognisable by its prefix."""
    return "cgs_" + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    salt = os.urandom(SALT_BYTES)
    digest = _derive(secret, salt, N, R, P, DIGEST_BYTES)
    return f"{SCHEME}${N}${R}${P}${_b64(salt)}${_b64(digest)}"


def verify_secret(secret: str, encoded: str) -> bool:
    """True when ``secret`` matches; every mismatch costs the same whole computation."""
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        expected = _unb64(digest)
        params = int(n), int(r), int(p)
        if scheme != SCHEME or not (1 < params[0] <= 2**20 and params[1] <= 32 and params[2] <= 4):
            raise ValueError("unsupported hash parameters")
        candidate = secret[:MAX_SECRET_LENGTH]
        actual = _derive(candidate, _unb64(salt), *params, len(expected))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected) and len(secret) <= MAX_SECRET_LENGTH


#: Secret checks that may run at once (each holds 16 MiB for tens of milliseconds), so a
#: flood of token requests queues instead of exhausting memory and every worker thread.
MAX_CONCURRENT_HASHES = 4


@functools.cache
def hashing_limiter() -> anyio.CapacityLimiter:
    """Created on first use, from inside the running event loop."""
    return anyio.CapacityLimiter(MAX_CONCURRENT_HASHES)


async def hash_secret_in_thread(secret: str) -> str:
    return await anyio.to_thread.run_sync(hash_secret, secret, limiter=hashing_limiter())


@functools.cache
def dummy_hash() -> str:
    """A hash nobody knows the secret of: checked against when the client is unknown, so an
    unknown client takes as long to refuse as a wrong secret."""
    return hash_secret(secrets.token_urlsafe(32))
