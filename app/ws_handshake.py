"""``connection_init``: the token in the payload, verified like a bearer header, and the
principal's connection counted. A refused token closes the socket with 4403 (the protocol's
code for a rejected init); one connection too many for the principal closes it with 1008
(policy violation: a distinct code, which graphql-ws clients do not retry blindly, unlike
4403). The reason goes to the log, never to the client."""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

from starlette.websockets import WebSocket
from strawberry.exceptions import ConnectionRejectionError

from costgraph.app.ws_context import ConnectionContext
from costgraph.auth.verify import InvalidToken, Verifier
from costgraph.subscriptions.connections import Connections, TooManyConnections

logger = logging.getLogger("costgraph.ws")

#: The close code and reason of a connection over the principal's limit.
TOO_MANY_CONNECTIONS = (1008, "too many connections")


class TooManySockets(ConnectionRejectionError):
    """The principal already holds as many connections as it may (close 1008)."""


def bearer_from(params: dict[str, Any] | None) -> str | None:
    """The token of ``{"authorization": "Bearer <token>"}`` (the key in any case)."""
    if not params:
        return None
    value = next((v for k, v in params.items() if k.lower() == "authorization"), None)
    if not isinstance(value, str):
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _closer(websocket: object) -> Any:
    async def close(code: int, reason: str) -> None:
        if isinstance(websocket, WebSocket):
            with contextlib.suppress(RuntimeError, OSError):  # already closed
                await websocket.close(code=code, reason=reason)

    return close


async def accept(context: ConnectionContext, verifier: Verifier, connections: Connections) -> None:
    """Verify and count the connection, or raise :class:`ConnectionRejectionError`."""
    token = bearer_from(context.connection_params)
    if token is None:
        logger.info("websocket refused: no bearer token in connection_init")
        raise ConnectionRejectionError({"reason": "unauthenticated"})
    try:
        principal = await verifier.verify_async(token)
    except InvalidToken as exc:
        logger.info("websocket refused: %s", exc)
        raise ConnectionRejectionError({"reason": "unauthenticated"}) from None
    if principal.expires_at <= datetime.now(UTC):
        logger.info("websocket refused: the token has expired (within the leeway)")
        raise ConnectionRejectionError({"reason": "unauthenticated"})
    try:
        lease = connections.acquire(principal, _closer(context.response))
    except TooManyConnections as exc:
        logger.info("websocket refused: %s", exc)
        raise TooManySockets({"reason": "too many connections"}) from None
    context.principal = principal
    context.lease = lease
