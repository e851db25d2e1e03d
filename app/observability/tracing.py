"""OpenTelemetry tracing, off unless ``COSTGRAPH_OTEL_ENABLED`` (then nothing here is imported).

When on: a span per HTTP request and websocket connection (OpenTelemetry's ASGI middleware,
which also continues an incoming ``traceparent``), per GraphQL operation with its parse,
validation and resolver spans (strawberry's OpenTelemetry extension), and per SQL statement
(the SQLAlchemy instrumentation). Export follows the standard variables: OTLP over HTTP to
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), the service name
from ``OTEL_SERVICE_NAME`` (default ``costgraph``), sampling from ``OTEL_TRACES_SAMPLER``;
``OTEL_TRACES_EXPORTER=console`` prints spans instead, ``none`` exports nothing.

What spans never carry: the query text (clients inline literals, a channel secret among
them) and input objects (only scalar arguments with harmless names are kept).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.middleware import Middleware
from strawberry.extensions import LifecycleStep
from strawberry.extensions.tracing import OpenTelemetryExtension

from costgraph.app.observability import logging as observability_logging
from costgraph.app.observability.redaction import REDACTED, is_sensitive_name

#: Probes and scrapes make no spans.
_UNTRACED_URLS = "/healthz,/readyz,/metrics"


def _exporter() -> SpanExporter | None:
    chosen = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if chosen == "none":
        return None
    if chosen == "console":
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def build_provider() -> TracerProvider:
    """A provider configured from the standard ``OTEL_*`` variables."""
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: "costgraph"}
    provider = TracerProvider(resource=Resource.create(attributes))
    exporter = _exporter()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _safe_arguments(args: dict[str, Any], info: Any) -> dict[str, Any]:
    """Scalar arguments only, secrets named as such removed; input objects by type name."""
    kept: dict[str, Any] = {}
    for name, value in args.items():
        if is_sensitive_name(name):
            kept[name] = REDACTED
        elif value is None or isinstance(value, bool | int | float | str):
            kept[name] = value
        else:
            kept[name] = type(value).__name__
    return kept


class OperationSpans(OpenTelemetryExtension):
    """strawberry's extension, but the operation span names the operation, not its text."""

    def on_operation(self) -> Iterator[None]:  # type: ignore[override]
        span = self._tracer.start_span("GraphQL operation", kind=SpanKind.INTERNAL)
        span.set_attribute("component", "graphql")
        self._span_holder[LifecycleStep.OPERATION] = span
        try:
            yield
        finally:
            execution = self.execution_context
            name = execution.operation_name
            try:
                kind = execution.operation_type.value
            except RuntimeError:
                kind = "unknown"
            span.update_name(f"{kind} {name}" if name else kind)
            span.set_attribute("graphql.operation.type", kind)
            if name:
                span.set_attribute("graphql.operation.name", name[:100])
            errors = execution.pre_execution_errors or (
                execution.result.errors if execution.result is not None else None
            )
            if errors:
                span.set_status(Status(StatusCode.ERROR, "the response carries errors"))
            span.end()


def _current_ids() -> tuple[str, str] | None:
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


class Tracing:
    """The app's tracer provider and what it instruments."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self._owned = provider is None
        self.provider = provider or build_provider()

    def middleware(self) -> Middleware:
        return Middleware(
            OpenTelemetryMiddleware,
            tracer_provider=self.provider,
            excluded_urls=_UNTRACED_URLS,
            exclude_spans=["receive", "send"],
        )

    def schema_extension(self) -> Callable[[], OperationSpans]:
        provider = self.provider

        def build() -> OperationSpans:
            return OperationSpans(tracer_provider=provider, arg_filter=_safe_arguments)

        return build

    def start(self, engine: AsyncEngine) -> None:
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        # Its declared range stops below SQLAlchemy 2.1, whose engine events it uses unchanged
        # (tests/test_observability.py checks the SQL spans).
        SQLAlchemyInstrumentor().instrument(
            engine=engine.sync_engine, tracer_provider=self.provider, skip_dep_check=True
        )
        observability_logging.set_trace_ids(_current_ids)

    def stop(self) -> None:
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        observability_logging.set_trace_ids(None)
        SQLAlchemyInstrumentor().uninstrument()
        if self._owned:
            self.provider.shutdown()
        else:
            self.provider.force_flush()
