"""GraphQL over HTTP, to the letter of the spec (graphql-http's audit passes with no warning):

- the response media type follows ``Accept``: ``application/graphql-response+json`` when the
  client names it (at least as high as ``application/json``), else ``application/json``
  (also for ``*/*`` or no ``Accept``);
- a *request error* — the document did not parse or validate, a limit refused it, the
  variables did not coerce, no operation could be chosen — has no ``data`` entry. It is
  answered 400 in ``application/graphql-response+json``, 200 in ``application/json`` (as the
  spec asks of each media type);
- a malformed request (bad JSON, a ``query`` or ``operationName`` that is not a string,
  ``variables`` or ``extensions`` that are not objects) is 400 with a JSON error, never a
  plain-text one; a mutation over GET is 405 with ``Allow: POST``.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from graphql import GraphQLError
from starlette.responses import Response
from starlette.types import Scope

from costgraph.kernel.errors import ErrorCode

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"


def _quality(parameters: list[str]) -> float:
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 1.0


def negotiate(accept: str | None) -> str:
    """The media type to answer with, from an ``Accept`` header."""
    if not accept or GRAPHQL_RESPONSE not in accept.lower():
        return JSON
    explicit = 0.0
    plain = 0.0
    for item in accept.split(","):
        media, *parameters = item.split(";")
        media = media.strip().lower()
        quality = _quality(parameters)
        if media == GRAPHQL_RESPONSE:
            explicit = max(explicit, quality)
        elif media in (JSON, "application/*", "*/*"):
            plain = max(plain, quality)
    return GRAPHQL_RESPONSE if explicit > 0 and explicit >= plain else JSON


def accept_of(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"accept":
            return bytes(value).decode("latin-1")
    return None


def is_request_error(data: object, errors: list[GraphQLError] | None) -> bool:
    """No data, and only errors that no field raised (parsing, validation, limits, variable
    coercion, choosing the operation)."""
    return data is None and bool(errors) and all(e.path is None for e in errors or ())


def request_error_status(media_type: str) -> int:
    return 400 if media_type == GRAPHQL_RESPONSE else 200


def error_response(
    status: int,
    message: str,
    media_type: str = JSON,
    *,
    code: ErrorCode = ErrorCode.VALIDATION_FAILED,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A refusal in GraphQL's error shape, with no ``data`` entry."""
    body = {"errors": [{"message": message, "extensions": {"code": code.value}}]}
    return Response(orjson.dumps(body), status_code=status, media_type=media_type, headers=headers)
