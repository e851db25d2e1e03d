"""``app/token_cache.CachedTokenVerifier``: hits skip verification, nothing outlives its
token or ``max_age``, revocation is checked on every hit, failures are never cached."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from costgraph.app.token_cache import CachedTokenVerifier
from costgraph.auth.principal import Principal
from costgraph.auth.verify import InvalidToken


@dataclass
class Revoked:
    clients: set[str] = field(default_factory=set)

    def is_revoked(self, principal: Principal) -> bool:
        return principal.client_id in self.clients


class FakeVerifier:
    def __init__(self, expires_at: float) -> None:
        self.calls = 0
        self.expires_at = expires_at
        self.revocations = Revoked()

    def verify(self, token: str) -> Principal:
        self.calls += 1
        if token == "bad":
            raise InvalidToken("bad")
        return Principal(
            subject=token,
            organization_id=uuid.uuid4(),
            roles=frozenset(),
            scopes=frozenset({"usage:write"}),
            expires_at=datetime.fromtimestamp(self.expires_at, UTC),
            client_id="client",
        )


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_hits_until_expiry_or_max_age() -> None:
    clock = Clock()
    inner = FakeVerifier(expires_at=clock.now + 600)
    cached = CachedTokenVerifier(inner, max_age_seconds=60, clock=clock)
    first = cached.verify("a")
    assert cached.verify("a") is first and inner.calls == 1
    clock.now += 61
    assert cached.verify("a") is not first and inner.calls == 2
    short = CachedTokenVerifier(FakeVerifier(expires_at=clock.now + 5), clock=clock)
    short.verify("b")
    clock.now += 5
    short.verify("b")
    assert short.verifier.calls == 2  # never past the token's own exp


async def test_revocation_checked_on_every_hit_and_failures_not_cached() -> None:
    clock = Clock()
    inner = FakeVerifier(expires_at=clock.now + 600)
    cached = CachedTokenVerifier(inner, clock=clock)
    await cached.verify_async("a")
    inner.revocations.clients.add("client")
    with pytest.raises(InvalidToken):
        await cached.verify_async("a")
    for _ in range(2):
        with pytest.raises(InvalidToken):
            cached.verify("bad")
    assert len(cached) == 0 and inner.calls == 3


def test_bounded() -> None:
    clock = Clock()
    cached = CachedTokenVerifier(FakeVerifier(clock.now + 600), maxsize=2, clock=clock)
    for token in ("a", "b", "c"):
        cached.verify(token)
    assert len(cached) == 2
    cached.verify("a")
    assert cached.verifier.calls == 4  # "a" was evicted first
