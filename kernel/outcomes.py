"""The typed errors the GraphQL operation running now answered with.

The layer that maps a domain error to a result-union member notes its code here; the access
log and the metrics (``costgraph.app.observability.operations``) read it when the operation
ends, so an answered ``BUDGET_LIMIT_REACHED`` counts as "rejected", not "ok".
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass(slots=True)
class OperationNotes:
    error_codes: list[str] = field(default_factory=list)


current_operation: ContextVar[OperationNotes | None] = ContextVar(
    "costgraph_operation", default=None
)


def note_error_code(code: str) -> None:
    """A typed error the current operation answered with (no-op outside an operation)."""
    notes = current_operation.get()
    if notes is not None:
        notes.error_codes.append(code)
