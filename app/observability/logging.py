"""Log lines: one JSON object per line (or readable text), with the request's context, scrubbed.

Everything logs through the standard library (``logging.getLogger("costgraph.…")``, and so do
uvicorn, SQLAlchemy and httpx); this module only installs the one root handler. Its filters
add the request id, principal subject and organisation id of the request being served (see
:mod:`.context`), and the trace and span ids when tracing is on, then scrub secrets (see
:mod:`.redaction`). JSON comes from python-json-logger's orjson formatter.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from typing import IO, Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.orjson import OrjsonFormatter

from costgraph.app.observability.context import current_request
from costgraph.app.observability.redaction import RedactingFilter, Redactor
from costgraph.app.settings import Settings

#: Set while tracing is on: the current span's ``(trace_id, span_id)`` in hex, or None.
TraceIds = Callable[[], tuple[str, str] | None]
_trace_ids: TraceIds | None = None

_HANDLER_NAME = "costgraph"
_CONTEXT_FIELDS = ("request_id", "subject", "organization_id")
#: Extras other libraries add that say nothing new (uvicorn's message with ANSI colours).
_DROPPED = ("color_message",)
_TEXT_SKIP = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    *_CONTEXT_FIELDS,
    *_DROPPED,
}


def set_trace_ids(source: TraceIds | None) -> None:
    global _trace_ids
    _trace_ids = source


class ContextFilter(logging.Filter):
    """Adds the current request's id, subject and organisation (and trace ids) to a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = current_request.get()
        if request is not None:
            if not hasattr(record, "request_id"):
                record.request_id = request.request_id
            if request.subject is not None and not hasattr(record, "subject"):
                record.subject = request.subject
            if request.organization_id is not None and not hasattr(record, "organization_id"):
                record.organization_id = request.organization_id
        if _trace_ids is not None:
            ids = _trace_ids()
            if ids is not None:
                record.trace_id, record.span_id = ids
        return True


class JsonFormatter(OrjsonFormatter):
    """``{"timestamp", "level", "logger", "message", …extras}`` on one line."""

    def __init__(self) -> None:
        super().__init__(
            ["levelname", "name", "message"],
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp=True,
            reserved_attrs=[*RESERVED_ATTRS, *_DROPPED],
        )


class TextFormatter(logging.Formatter):
    """``time LEVEL logger [request id] message key=value…`` for a person at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):
            record.request_id = "-"
        line = super().format(record)
        extras = [
            f"{name}={value}"
            for name, value in vars(record).items()
            if name not in _TEXT_SKIP and not name.startswith("_")
        ]
        who = [
            f"{name}={getattr(record, name)}"
            for name in ("subject", "organization_id")
            if hasattr(record, name)
        ]
        tail = " ".join(who + extras)
        if not tail:
            return line
        first, newline, rest = line.partition("\n")
        return f"{first} {tail}{newline}{rest}"


def log_handler(
    log_format: str, stream: IO[str] | None = None, secrets: Iterable[str] = ()
) -> logging.Handler:
    """A handler writing ``json`` or ``text`` lines with context added and secrets removed."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter(Redactor(secrets)))
    return handler


def configured_secrets(settings: Settings) -> list[str]:
    """The secret values in the settings, removed from log lines wherever they appear."""
    values: list[str] = []
    for name in type(settings).model_fields:
        value: Any = getattr(settings, name)
        if hasattr(value, "get_secret_value"):
            values.append(value.get_secret_value())
    return values


def configure_logging(settings: Settings, level: str | None = None) -> None:
    """Install the one root handler (replacing one installed before); quiet noisy libraries."""
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(log_handler(settings.log_format, secrets=configured_secrets(settings)))
    root.setLevel((level or settings.log_level).upper())
    for noisy in ("pgserver", "alembic", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Under uvicorn (`costgraph serve`, or `uvicorn --factory costgraph.app.asgi:create_app`),
    # its lines go through this handler too, and its access line gives way to the app's own
    # (which has the request id and the principal): no line twice, none in another format.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.handlers[:] = [logging.NullHandler()]
    uvicorn_access.propagate = False
