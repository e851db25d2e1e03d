"""Per-process, short-lived copies of a tenant's read-mostly data (the write path's lookups).

Every usage write needs the organisation, its markup rules and the catalog rows of the
models it names; these change rarely and are read on every request. Each is kept here for at
most :data:`DEFAULT_TTL_SECONDS` (``COSTGRAPH_TENANT_CACHE_TTL_SECONDS``; 0 turns caching
off).

Staleness bound: the mutation that writes one of these in *this* process drops the copy in
its transaction and again after commit, so this process never reads its own old value. Other
processes see the change within one TTL. What may be cached is only what a few seconds of
delay cannot turn into a broken guarantee: prices and markup (a rule set on another
instance takes effect up to one TTL later there, as if it had been set that much later), and
the organisation's name and currency. Enforcement never reads from here: budget counters,
budget definitions, balances, allowance counters and accounts are read in the writer's
transaction, under their row locks.

A load that started before an invalidation is not stored (a generation counter), so a
reader racing a writer cannot put the old value back for a full TTL.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

if TYPE_CHECKING:
    from costgraph.billing.catalog import CatalogName
    from costgraph.billing.directory import OrgContext
    from costgraph.billing.markup_repository import RuleRow
    from costgraph.billing.weights import Weights

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

DEFAULT_TTL_SECONDS = 5.0
DEFAULT_MAX_ENTRIES = 10_000


class TtlCache(Generic[K, V]):
    """A bounded map whose entries expire ``ttl`` seconds after they were loaded."""

    def __init__(
        self,
        name: str,
        ttl: float = DEFAULT_TTL_SECONDS,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._generation = 0

    def get(self, key: K) -> V | None:
        """The cached value, or None when absent or expired."""
        found = self._entries.get(key)
        if found is None:
            return None
        expires_at, value = found
        if self._clock() >= expires_at:
            self._entries.pop(key, None)
            return None
        return value

    def put(self, key: K, value: V, *, generation: int | None = None) -> None:
        """Store ``value``; with ``generation``, only if nothing was invalidated since."""
        if self.ttl <= 0 or (generation is not None and generation != self._generation):
            return
        self._entries[key] = (self._clock() + self.ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    @property
    def generation(self) -> int:
        return self._generation

    async def get_or_load(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        cached = self.get(key)
        if cached is not None:
            return cached
        generation = self._generation
        value = await load()
        self.put(key, value, generation=generation)
        return value

    def invalidate(self, key: K) -> None:
        self._generation += 1
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()


def after_commit(session: AsyncSession, action: Callable[[], None]) -> None:
    """Run ``action`` now and once more when the session's transaction commits.

    Now: this process's later reads miss. After commit: a load that ran between the two (and
    read the old, still committed row) is thrown away.
    """
    action()

    def run(_session: object) -> None:
        action()

    event.listen(session.sync_session, "after_commit", run, once=True)


# --- the caches of the write path ---

#: organisation id -> OrgContext (Context.org() and anything resolving the caller's tenant).
ORGS: TtlCache[uuid.UUID, OrgContext] = TtlCache("orgs")
#: organisation id -> its markup rules (``markup_repository.RuleRow`` list).
MARKUP_RULES: TtlCache[uuid.UUID, list[RuleRow]] = TtlCache("markup_rules")
#: (organisation id, provider, model name) -> what the catalog holds for that name.
CATALOG: TtlCache[tuple[uuid.UUID, str, str], CatalogName] = TtlCache("catalog")
#: organisation id -> its allowance weights (billing/weights.py; like prices: a change made
#: on another instance applies there up to one TTL later).
WEIGHTS: TtlCache[uuid.UUID, Weights] = TtlCache("allowance_weights")

ALL: tuple[TtlCache[Any, Any], ...] = (ORGS, MARKUP_RULES, CATALOG, WEIGHTS)


def configure(ttl_seconds: float) -> None:
    """Set every cache's TTL (from settings at startup); 0 turns caching off."""
    for cache in ALL:
        cache.ttl = ttl_seconds
        cache.clear()
