"""How each GraphQL error is logged: once, where strawberry hands errors over
(``Schema.process_errors``, for HTTP and websocket operations alike), at a level that says
whether someone should look.

- Expected: a domain failure (``BUDGET_LIMIT_REACHED``, ``NOT_FOUND``, ``UNAVAILABLE``, …), an
  error with a code set deliberately (a limit, a permission), or a document or variable
  refused before execution (no path). INFO, one line, no traceback: the client was told.
- A database fault (down, busy, conflicting beyond the retries): WARNING, one line; the
  client gets a retryable ``UNAVAILABLE`` (see ``app/graphql.py`` ``format_error``).
- Anything else is a bug: ERROR with its traceback; the client sees only ``INTERNAL``.

strawberry's own logger (``strawberry.execution``) is not used: it writes every error at
ERROR with a traceback.
"""

from __future__ import annotations

import logging

from graphql import GraphQLError

from costgraph.kernel.errors import DomainError, ErrorCode
from costgraph.kernel.retry import unavailable as db_fault

logger = logging.getLogger("costgraph.graphql")

#: A logged message is cut to this many characters (it may quote a client's input).
_MESSAGE_LIMIT = 300


def _where(error: GraphQLError) -> str:
    return ".".join(map(str, error.path)) if error.path else "(document)"


def log_error(error: GraphQLError) -> None:
    original = error.original_error
    if isinstance(original, DomainError):
        logger.info(
            "graphql %s in %s: %s",
            original.code.value,
            _where(error),
            original.message[:_MESSAGE_LIMIT],
        )
        return
    fault = None if original is None else db_fault(original)
    if fault is not None:
        logger.warning(
            "database fault in %s: %s (%s)", _where(error), fault.reason, type(original).__name__
        )
        return
    code = (error.extensions or {}).get("code")
    if isinstance(code, str) or error.path is None:
        logger.info(
            "graphql %s in %s: %s",
            code if isinstance(code, str) else ErrorCode.VALIDATION_FAILED.value,
            _where(error),
            error.message[:_MESSAGE_LIMIT],
        )
        return
    logger.error("unexpected error in %s", _where(error), exc_info=original or error)
