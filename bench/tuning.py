"""What-if experiments: apply a candidate improvement to the running app, then measure it
with the same bench. Off by default; ``--tuning NAME[,NAME]`` on any bench (and
``ServerConfig.tuning`` for the servers) turns them on, and the results name them.

They patch module attributes at start-up, so an experiment fails loudly (``KeyError`` /
``AttributeError``) when the code it targets has moved, rather than silently measuring
nothing. They are measurement tools, not the way to ship a change: each docstring says
where the real change would go.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any


def _original(owner: object, name: str) -> Any:
    """The attribute an experiment replaces; it must exist (else the code has moved)."""
    if not hasattr(owner, name):
        raise AttributeError(f"{owner!r} has no {name!r} any more: update bench.tuning")
    return getattr(owner, name)


def _patch(owner: object, name: str, value: Any) -> None:
    _original(owner, name)
    setattr(owner, name, value)


def _token_cache() -> None:
    """``app/token_cache.CachedTokenVerifier`` around the app's verifier (``app/main.py``)."""
    import costgraph.app.main as main
    from costgraph.app.token_cache import CachedTokenVerifier

    build = _original(main, "build_verifier")

    def cached(*args: Any, **kwargs: Any) -> Any:
        return CachedTokenVerifier(build(*args, **kwargs))

    _patch(main, "build_verifier", cached)


def _orjson() -> None:
    """``app/fast_json.OrjsonView`` mixed into ``GraphQLApp`` (``app/graphql.py``)."""
    import costgraph.app.graphql as graphql
    from costgraph.app.fast_json import OrjsonView

    _patch(graphql.GraphQLApp, "decode_json", OrjsonView.decode_json)
    _patch(graphql.GraphQLApp, "encode_json", OrjsonView.encode_json)


def _org_cache() -> None:
    """``Context.org`` reads the organisation through a 30 s cache (``resolvers/context.py``)."""
    from bench.prototypes import OrgCache
    from costgraph.billing.directory import OrgContext, get_organization
    from costgraph.kernel.errors import Forbidden
    from costgraph.schema.context import Context

    cache = OrgCache()

    async def org(self: Context) -> OrgContext:
        if self._org is None:
            principal = self.require_principal()
            if principal.organization_id is None:
                raise Forbidden("this token is not bound to an organisation")
            found = cache.get(principal.organization_id)
            if found is None:
                async with self.app.sessions() as session:
                    row = await get_organization(session, principal.organization_id)
                if row is None:
                    raise Forbidden("the token's organisation does not exist")
                found = OrgContext.of(row)
                cache.put(principal.organization_id, found)
            self._org = found
        return self._org

    _patch(Context, "org", org)


def _no_pre_ping() -> None:
    """``pool_pre_ping=False`` in ``app/database.create_engine`` (one round trip per checkout)."""
    import costgraph.app.database as database

    create = _original(database, "create_async_engine")

    def without_ping(*args: Any, **kwargs: Any) -> Any:
        return create(*args, **{**kwargs, "pool_pre_ping": False})

    _patch(database, "create_async_engine", without_ping)


def _fast_hash() -> None:
    """``bench.prototypes.fast_request_hash`` as ``billing.idempotency.request_hash``."""
    import costgraph.billing.ledger as ledger
    from bench.prototypes import fast_request_hash

    _patch(ledger, "request_hash", fast_request_hash)


def _raw_replay_lookup() -> None:
    """``bench.prototypes.find_by_keys_raw`` as ``ledger_repository.find_by_keys``."""
    import costgraph.billing.ledger_repository as repo
    from bench.prototypes import find_by_keys_raw

    _patch(repo, "find_by_keys", find_by_keys_raw)


def _fast_replace() -> None:
    """``bench.prototypes.fast_replace`` wherever the ledger copies entries with
    ``dataclasses.replace`` (``billing/ledger.py``, ``billing/drawdown.py``, when present)."""
    import importlib

    from bench.prototypes import fast_replace

    patched = 0
    for name in ("costgraph.billing.ledger", "costgraph.billing.drawdown"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if getattr(module, "replace", None) is not None:
            _patch(module, "replace", fast_replace)
            patched += 1
    assert patched, "no module of the ledger uses dataclasses.replace any more"


def _fast_arrays() -> None:
    """``bench.prototypes.fast_column_arrays`` as ``ledger_repository._column_arrays``."""
    import costgraph.billing.ledger_repository as repo
    from bench.prototypes import fast_column_arrays

    _patch(repo, "_column_arrays", fast_column_arrays)


def _json_logs() -> None:
    """Production logging: the JSON handler at INFO (an access line and an operation line per
    request), written to /dev/null (``app/observability/logging.py``)."""
    import logging

    from costgraph.app.observability.logging import log_handler

    sink = open(os.devnull, "w")  # noqa: SIM115  # for the server process's lifetime
    root = logging.getLogger()
    root.addHandler(log_handler("json", sink))
    root.setLevel(logging.INFO)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _no_graphql_hardening() -> None:
    """What the query limits and the rate limiter cost: strawberry's plain ParserCache and
    ValidationCache in ``app/graphql_schema.py`` instead of ``app/query_caches.limited_caches``, and
    no ``RateLimiter`` (``app/main.py``)."""
    from strawberry.extensions import ParserCache, ValidationCache

    import costgraph.app.graphql_schema as build
    import costgraph.app.main as main

    def plain_caches(limits: Any, maxsize: int = 1024) -> list[Any]:
        return [lambda: ParserCache(maxsize=maxsize), lambda: ValidationCache(maxsize=maxsize)]

    class NoLimiter:
        @staticmethod
        def from_settings(settings: Any) -> None:
            return None

    _patch(build, "limited_caches", plain_caches)
    _patch(main, "RateLimiter", NoLimiter)


def _no_observability() -> None:
    """The app without its observability layers (request-id/metrics middleware, operation
    observer), to see what they cost (``app/observability/wiring.py``)."""
    from costgraph.app.observability import wiring

    _patch(wiring.Observability, "middleware", lambda self: [])
    _patch(wiring.Observability, "schema_extensions", lambda self: [])


EXPERIMENTS: dict[str, Callable[[], None]] = {
    "token-cache": _token_cache,
    "orjson": _orjson,
    "org-cache": _org_cache,
    "no-pre-ping": _no_pre_ping,
    "fast-hash": _fast_hash,
    "raw-replay-lookup": _raw_replay_lookup,
    "fast-replace": _fast_replace,
    "fast-arrays": _fast_arrays,
    "json-logs": _json_logs,
    "no-observability": _no_observability,
    "no-graphql-hardening": _no_graphql_hardening,
}


def parse(text: str | None) -> tuple[str, ...]:
    names = tuple(n.strip() for n in (text or "").split(",") if n.strip())
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        raise SystemExit(f"unknown tuning {unknown}; known: {', '.join(EXPERIMENTS)}")
    return names


_applied: set[str] = set()


def apply(names: Iterable[str]) -> None:
    """Apply each experiment once per process (before the app is built)."""
    for name in names:
        if name not in _applied:
            EXPERIMENTS[name]()
            _applied.add(name)
