"""What the application holds for its lifetime (owned by the lifespan)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from costgraph.app.settings import Settings
from costgraph.auth.keys import KeyStore
from costgraph.auth.verify import TokenVerifier
from costgraph.billing.commands import Limits


@dataclass(slots=True)
class AppState:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    keys: KeyStore
    verifier: TokenVerifier
    limits: Limits

    @classmethod
    def limits_of(cls, settings: Settings) -> Limits:
        return Limits(
            max_batch_events=settings.max_batch_events,
            max_page_size=settings.max_page_size,
            max_metadata_bytes=settings.max_metadata_bytes,
            max_idempotency_key_length=settings.max_idempotency_key_length,
        )
