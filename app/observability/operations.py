"""The log fields and the metrics of each GraphQL operation (a strawberry schema extension).

Over HTTP the fields go on the request's one access line; over a websocket each operation
gets a line of its own when it ends (a subscription: its whole life).

Its outcome is ``ok``; ``rejected`` when a mutation answered with a typed error (the
resolvers note the code: ``costgraph.kernel.outcomes``); ``error`` when the response
carries GraphQL errors (their codes as ``format_error`` would give them). The extension is
added last, so it sees errors before any outer extension masks them.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from costgraph.app.observability.context import current_request
from costgraph.app.observability.metrics import Metrics
from costgraph.app.query_caches import REFUSED
from costgraph.kernel.errors import DomainError, ErrorCode
from costgraph.kernel.outcomes import OperationNotes, current_operation
from costgraph.kernel.retry import unavailable

logger = logging.getLogger("costgraph.graphql.operation")

#: A client names its operations; a log line keeps at most this much of the name.
_NAME_LIMIT = 100


def error_code(error: GraphQLError) -> str:
    """The ``extensions.code`` the client gets for ``error`` (as ``format_error`` decides)."""
    original = error.original_error
    if original is not None and not isinstance(original, DomainError):
        original = unavailable(original) or original  # a database fault: UNAVAILABLE
    if isinstance(original, DomainError):
        return original.code.value
    code = (error.extensions or {}).get("code")
    if isinstance(code, str):
        return code
    return ErrorCode.VALIDATION_FAILED.value if error.path is None else ErrorCode.INTERNAL.value


def _metrics_of(context: Any) -> Metrics | None:
    metrics = getattr(getattr(context, "app", None), "metrics", None)
    return metrics if isinstance(metrics, Metrics) else None


class OperationObserver(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        notes = OperationNotes()
        reset = current_operation.set(notes)
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            with contextlib.suppress(ValueError):  # a stream closed from another context
                current_operation.reset(reset)
            self._report(notes, elapsed)

    def _report(self, notes: OperationNotes, elapsed: float) -> None:
        execution = self.execution_context
        try:
            kind = execution.operation_type.value
        except RuntimeError:  # no document, or no such operation
            kind = "unknown"
        if execution.graphql_document is REFUSED:  # a syntax error, a limit: nothing parsed
            kind = "unknown"
        errors = execution.pre_execution_errors
        if errors is None and execution.result is not None:
            errors = execution.result.errors
        codes = [error_code(e) for e in errors or ()]
        outcome = "error" if codes else "rejected" if notes.error_codes else "ok"
        metrics = _metrics_of(execution.context)
        if metrics is not None:
            metrics.observe_operation(kind, outcome, elapsed)
        request = current_request.get()
        on_access_line = request is not None and request.kind == "http"
        if not (on_access_line or logger.isEnabledFor(logging.INFO)):
            return
        name = execution.operation_name
        name = None if name is None else name[:_NAME_LIMIT]
        summary: dict[str, object] = {
            "operation_type": kind,
            "operation_name": name,
            "outcome": outcome,
            "error_codes": codes + notes.error_codes,
            "operation_ms": round(elapsed * 1000, 2),
        }
        if on_access_line:
            assert request is not None
            request.operations.append(summary)
        else:
            logger.info("graphql %s %s: %s", kind, name or "(anonymous)", outcome, extra=summary)
