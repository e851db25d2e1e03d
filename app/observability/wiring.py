"""Observability as the app uses it: middleware, the ``/metrics`` route, schema extensions and
the lifespan part (scrape-time gauges; tracing of the engine), from the settings."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.middleware import Middleware
from starlette.routing import Route

from costgraph.app.observability.gauges import state_gauges
from costgraph.app.observability.metrics import Metrics, metrics_endpoint
from costgraph.app.observability.middleware import ObservabilityMiddleware
from costgraph.app.observability.operations import OperationObserver
from costgraph.app.settings import Settings
from costgraph.app.state import AppState

if TYPE_CHECKING:
    from costgraph.app.observability.tracing import Tracing


class Observability:
    def __init__(self, settings: Settings, tracer_provider: Any = None) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.tracing: Tracing | None = None
        if settings.otel_enabled or tracer_provider is not None:
            try:  # imported only when switched on
                from costgraph.app.observability.tracing import Tracing
            except ImportError as exc:
                raise SystemExit(
                    f"COSTGRAPH_OTEL_ENABLED needs the tracing extra: "
                    f"pip install 'costgraph[otel]' ({exc})"
                ) from exc
            self.tracing = Tracing(tracer_provider)
        self._state: AppState | None = None
        self.metrics.watch(state_gauges(lambda: self._state))

    def middleware(self) -> list[Middleware]:
        """Outermost first: the trace span (when on), then request ids, access log, metrics."""
        layers = [] if self.tracing is None else [self.tracing.middleware()]
        layers.append(
            Middleware(
                ObservabilityMiddleware,
                metrics=self.metrics,
                access_log=self.settings.access_log,
            )
        )
        return layers

    def schema_extensions(self) -> list[Any]:
        extensions: list[Any] = [OperationObserver]
        if self.tracing is not None:
            extensions.append(self.tracing.schema_extension())
        return extensions

    def routes(self) -> list[Route]:
        if not self.settings.metrics_enabled:
            return []
        token = self.settings.metrics_token
        secret = None if token is None else token.get_secret_value()
        return [Route("/metrics", metrics_endpoint(self.metrics, secret), methods=["GET"])]

    @contextlib.asynccontextmanager
    async def running(self, state: AppState) -> AsyncIterator[None]:
        self._state = state
        if self.tracing is not None:
            self.tracing.start(state.engine)
        try:
            yield
        finally:
            if self.tracing is not None:
                self.tracing.stop()
            self._state = None
