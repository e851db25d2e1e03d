"""Prometheus metrics, one registry per app (tests build several apps in one process).

Counters move where the outcome is known — the HTTP middleware, the GraphQL operation
observer, the resolvers' typed results, the alert delivery worker — and gauges (open
websockets, live subscribers, the database pool) are read when Prometheus scrapes. Labels
only ever hold values from small fixed sets (a route template, a method, a status code, an
error code, a channel kind): never an id, a subject or a client-chosen name.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

PREFIX = "costgraph"
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
#: Fast answers are the norm here (a trivial query takes ~1 ms): finer low buckets.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """The app's instruments in its own :class:`CollectorRegistry`."""

    def __init__(self) -> None:
        registry = self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            f"{PREFIX}_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.http_latency = Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "Time from receiving a request to its last response byte.",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.graphql_operations = Counter(
            f"{PREFIX}_graphql_operations",
            "GraphQL operations by type and outcome (ok, rejected: a typed error, error).",
            ["type", "outcome"],
            registry=registry,
        )
        self.graphql_latency = Histogram(
            f"{PREFIX}_graphql_operation_duration_seconds",
            "GraphQL operation time (a subscription's: its whole life).",
            ["type"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.usage_ingested = Counter(
            f"{PREFIX}_usage_events_ingested",
            "Usage events written to the ledger (replays not counted), by mutation.",
            ["via"],
            registry=registry,
        )
        self.usage_replayed = Counter(
            f"{PREFIX}_usage_events_replayed",
            "Usage events that replayed an earlier write (same idempotency key).",
            ["via"],
            registry=registry,
        )
        self.usage_rejected = Counter(
            f"{PREFIX}_usage_events_rejected",
            "Usage events refused with a typed error, by its code.",
            ["code"],
            registry=registry,
        )
        self.reservations = Counter(
            f"{PREFIX}_reservations",
            "Reservations by event: authorized, refused, settled, released, expired.",
            ["event"],
            registry=registry,
        )
        self.alerts_raised = Counter(
            f"{PREFIX}_alerts_raised",
            "Budget alerts raised, by alert code.",
            ["code"],
            registry=registry,
        )
        self.deliveries = Counter(
            f"{PREFIX}_alert_deliveries",
            "Alert notification attempts by channel kind and outcome.",
            ["channel", "outcome"],
            registry=registry,
        )
        self.stripe_payment_conflicts = Counter(
            f"{PREFIX}_stripe_payment_conflicts",
            "Stripe payments refused (409) because their key was taken by another request, "
            "by Stripe event type.",
            ["event_type"],
            registry=registry,
        )
        self.websocket_connections = Counter(
            f"{PREFIX}_websocket_connections",
            "graphql-transport-ws connection_init outcomes (accepted or refused).",
            ["outcome"],
            registry=registry,
        )
        self._http: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._operations: dict[tuple[str, str], tuple[Any, Any]] = {}

    def observe_http(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method if method in _METHODS else "OTHER", status)
        children = self._http.get(key)
        if children is None:  # label lookups cost more than the increments: keep the children
            children = (
                self.http_requests.labels(key[0], key[1], str(status)),
                self.http_latency.labels(key[0], key[1]),
            )
            self._http[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_operation(self, kind: str, outcome: str, seconds: float) -> None:
        key = (kind, outcome)
        children = self._operations.get(key)
        if children is None:
            children = (
                self.graphql_operations.labels(kind, outcome),
                self.graphql_latency.labels(kind),
            )
            self._operations[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def delivery_outcome(self, channel: enum.Enum | None, outcome: str) -> None:
        """The alert worker's listener: one notification attempt (channel kind, outcome)."""
        label = "UNKNOWN" if channel is None else str(channel.value)
        self.deliveries.labels(label, outcome).inc()

    def watch(self, source: Callable[[], Iterator[Metric]]) -> None:
        """Read ``source`` at each scrape (gauges of the app's live state)."""
        self.registry.register(_Scraped(source))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Scraped(Collector):
    def __init__(self, source: Callable[[], Iterator[Metric]]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        return self._source()

    def describe(self) -> list[Metric]:
        return []  # unknown until collected; keeps registration from calling collect()


def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, value=value)


def counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", documentation, value=value)


def metrics_endpoint(metrics: Metrics, token: str | None) -> Callable[[Request], Any]:
    """``GET /metrics``: the text exposition; with ``token`` set, only for ``Bearer <token>``."""
    expected = None if token is None else f"Bearer {token}".encode()

    async def endpoint(request: Request) -> Response:
        if expected is not None:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return Response(
                    "metrics need the configured bearer token\n",
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="costgraph-metrics"'},
                    media_type="text/plain",
                )
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return endpoint
