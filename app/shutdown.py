"""The answer of a request that shutdown cut off.

On SIGTERM uvicorn stops accepting connections and lets running requests finish; those still
running when ``timeout_graceful_shutdown`` runs out are cancelled. Without this middleware
such a request ends in a bare 500 (or a dropped connection). With it, a request cancelled
before its response started is answered ``503`` with ``Retry-After`` and the GraphQL error
shape, code ``UNAVAILABLE``.

What a cancelled write did: its transaction was not committed, unless the cancellation struck
while the COMMIT itself was on the wire — a window of one round trip, which no server can
close. The client therefore retries with the same idempotency key: a write that was applied
answers ``replayed``.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from costgraph.kernel.errors import ErrorCode

logger = logging.getLogger("costgraph.shutdown")

RETRY_AFTER_SECONDS = 2

_BODY = orjson.dumps(
    {
        "errors": [
            {
                "message": "the server shut down before this request finished; retry it "
                "(with the same idempotency key: a write that was applied answers as replayed)",
                "extensions": {
                    "code": ErrorCode.UNAVAILABLE.value,
                    "retryAfter": RETRY_AFTER_SECONDS,
                },
            }
        ]
    }
)


class AnswerCancelledRequests:
    """Pure ASGI middleware: a cancelled HTTP request whose answer had not started gets 503."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:
            if started:
                raise
            logger.warning("request to %s cancelled by shutdown: answered 503", scope["path"])
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
                        (b"connection", b"close"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": _BODY})
            # Not re-raised: the request's task ends here, answered; the server is exiting.
