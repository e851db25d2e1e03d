"""A ceiling on request bodies (``COSTGRAPH_MAX_REQUEST_BYTES``), for every HTTP route.

Pure ASGI middleware. A body whose ``Content-Length`` is over the limit is refused before a
byte of it is read. A body without one (chunked) is counted as it arrives: the chunk that
passes the limit ends the request, so at most the limit plus one chunk is ever held. Either
way the answer is ``413`` in GraphQL's error shape, code ``PAYLOAD_TOO_LARGE``, and the
connection is closed (the rest of the body is never read).

A ``watch`` may look at each body as it arrives and refuse it before its end with an answer
of its own (app/document_stream.py: a GraphQL document over its limit); the connection is
closed the same way.

Websocket messages are bounded by the server instead (uvicorn's ``ws_max_size``, set from the
same setting by ``costgraph serve``, see :func:`costgraph.app.cli.uvicorn_options`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from costgraph.kernel.errors import ErrorCode

logger = logging.getLogger("costgraph.body_limit")


class _BodyTooLarge(Exception):
    """Raised into the app from ``receive`` once the body passes the limit."""


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length before we are called
    return None


def too_large(max_bytes: int) -> tuple[Message, Message]:
    """The 413 answer's two ASGI messages."""
    body = orjson.dumps(
        {
            "errors": [
                {
                    "message": f"the request body is larger than the {max_bytes} bytes "
                    "this server takes; send less at once (split a usage batch)",
                    "extensions": {
                        "code": ErrorCode.PAYLOAD_TOO_LARGE.value,
                        "maxBytes": max_bytes,
                    },
                }
            ]
        }
    )
    start: Message = {
        "type": "http.response.start",
        "status": 413,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


class BodyWatch(Protocol):
    def refusal(self, piece: bytes) -> tuple[Message, Message] | None:
        """Fed each piece of the body in order; the answer refusing it, if it must be."""


class BodySizeLimit:
    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        watch: Callable[[Scope], BodyWatch | None] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.watch = watch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            logger.info(
                "%s %s refused: Content-Length %d over %d bytes",
                scope["method"],
                scope["path"],
                declared,
                self.max_bytes,
            )
            await self._refuse(send)
            return

        received = 0
        overflowed = False
        started = False
        watch = self.watch(scope) if self.watch is not None else None
        answer: tuple[Message, Message] | None = None

        async def counting_receive() -> Message:
            nonlocal received, overflowed, answer
            if overflowed:  # the app asks again after being told: the client is gone for it
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                piece = message.get("body", b"")
                received += len(piece)
                if received > self.max_bytes:
                    overflowed = True
                    raise _BodyTooLarge
                if watch is not None and (answer := watch.refusal(piece)) is not None:
                    overflowed = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if overflowed and not started:
                return  # the app answering anyway (it caught the error): 413 goes instead
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            # Ours, or whatever the app made of it. Once an answer is on its way nothing
            # truthful can follow: the server ends the connection.
            if not overflowed or started:
                raise
        if overflowed and not started:
            if answer is not None:
                logger.info("%s %s refused by its watch", scope["method"], scope["path"])
                await send(answer[0])
                await send(answer[1])
                return
            logger.info(
                "%s %s refused: body over %d bytes", scope["method"], scope["path"], self.max_bytes
            )
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        start, body = too_large(self.max_bytes)
        await send(start)
        await send(body)
