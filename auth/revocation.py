"""Which client-credentials tokens are revoked, known in memory so checking costs nothing.

Every token check consults this list (the verifier does, synchronously). A revocation made
by this process is known at once; revocations made by other instances arrive with the next
refresh, every ``interval`` seconds (COSTGRAPH_REVOCATION_REFRESH_SECONDS), from the
database, which is the record. Revocations are permanent, so refreshes only ever add.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

from costgraph.auth.clients import Revocations
from costgraph.auth.principal import Principal

logger = logging.getLogger("costgraph.auth.revocation")


class RevocationList:
    def __init__(self) -> None:
        self._clients: set[str] = set()
        self._tokens: dict[str, float] = {}  # jti -> expiry (epoch seconds)
        self.refreshed_at: float | None = None

    def is_revoked(self, principal: Principal) -> bool:
        if principal.client_id is not None and principal.client_id in self._clients:
            return True
        return principal.token_id is not None and principal.token_id in self._tokens

    def revoke_client(self, client_id: str) -> None:
        self._clients.add(client_id)

    def revoke_token(self, jti: str, expires_at: datetime) -> None:
        self._tokens[jti] = expires_at.timestamp()

    def merge(self, loaded: Revocations) -> None:
        self._clients |= loaded.client_ids
        for jti, expires_at in loaded.tokens.items():
            self._tokens[jti] = expires_at.timestamp()
        now = time.time()
        self._tokens = {jti: exp for jti, exp in self._tokens.items() if exp > now}
        self.refreshed_at = time.monotonic()


async def keep_fresh(
    revocations: RevocationList,
    load: Callable[[], Awaitable[Revocations]],
    interval: float,
) -> None:
    """Merge the database's revocations every ``interval`` seconds until cancelled."""
    while True:
        await asyncio.sleep(interval)
        try:
            loaded = await load()
        except Exception:  # the database may be away for a moment; the next round retries
            logger.warning("refreshing revocations failed", exc_info=True)
            continue
        revocations.merge(loaded)
