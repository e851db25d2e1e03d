"""The graphql-transport-ws handler: strawberry's protocol, with CostGraph's rules on top.

strawberry already refuses what the protocol refuses (subscribe before ``connection_ack``:
4401; a second ``connection_init``: 4429; no init within the timeout: 4408; more operations
than allowed: an ``error`` message). This subclass adds:

- the socket closes with 4403 when the token expires (or is revoked: checked before each
  update), and the principal's connection count is released when it ends;
- every operation runs through a :class:`~.fanout.SharedStream` (shared when its share key
  allows, private otherwise), so all errors leave through the app's ``format_error``;
- a subscriber whose send queue fills is told (``error`` with ``SLOW_CONSUMER``, when the
  socket still takes it) and disconnected (1013, try again later); nobody else waits for it.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any, Protocol, cast

import orjson
from starlette.websockets import WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import ConnectionInitMessage

from costgraph.resolvers.context import Context
from costgraph.subscriptions.fanout import Frame, FrameKind
from costgraph.subscriptions.inbox import InboxClosed, SlowConsumer
from costgraph.subscriptions.live import Live
from costgraph.subscriptions.sharing import share_key

logger = logging.getLogger("costgraph.ws")

EXPIRED = (4403, "token expired")
REVOKED = (4403, "token revoked")
SLOW = (1013, "subscriber too slow")


class LiveView(Protocol):
    @property
    def live(self) -> Live: ...


def _slow_error(id_json: str, capacity: int) -> str:
    error = {
        "message": f"subscriber too slow: more than {capacity} updates were waiting",
        "extensions": {"code": "SLOW_CONSUMER"},
    }
    return '{"id":' + id_json + ',"type":"error","payload":' + orjson.dumps([error]).decode() + "}"


class LiveTransportHandler(BaseGraphQLTransportWSHandler[Context, None]):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._live = cast(LiveView, self.view).live
        self._ws = cast(ASGIWebSocketAdapter, self.websocket).ws
        self._expiry: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._main: asyncio.Task[Any] | None = None
        self._revocations = self.context.app.revocations
        self._aborted = False

    async def handle(self) -> None:
        self._main = asyncio.current_task()
        try:
            await super().handle()
        except asyncio.CancelledError:
            if not self._aborted or self._main is None:
                raise
            self._main.uncancel()

    # --- connection ---

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        await super().handle_connection_init(message)
        principal = self.context.principal
        if self.connection_acknowledged and self._expiry is None and principal is not None:
            self._expiry = asyncio.create_task(self._close_at(principal.expires_at))

    async def _close_at(self, when: datetime) -> None:
        await asyncio.sleep(max(0.0, (when - datetime.now(UTC)).total_seconds()))
        self._live.stats.expired += 1
        logger.info("websocket closed: the token expired")
        await self._close(*EXPIRED)

    async def _close(self, code: int, reason: str) -> None:
        """Close; a peer that does not take the close frame in time is abandoned: the handler
        ends (freeing everything it holds) and the socket is left to the server and the OS."""
        try:
            await asyncio.wait_for(
                self.websocket.close(code, reason), self._live.config.close_grace
            )
        except TimeoutError:
            self._abandon()
        except Exception:  # already closed or broken: nothing left to do
            logger.debug("closing a websocket failed", exc_info=True)

    def _abandon(self) -> None:
        logger.warning("websocket peer is not reading; abandoning the connection")
        self._aborted = True
        if self._main is not None:
            self._main.cancel()

    async def shutdown(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        try:
            await super().shutdown()
        finally:
            lease = getattr(self.context, "lease", None)
            if lease is not None:
                lease.release()

    # --- operations ---

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        key, replay = share_key(
            self.context.principal, operation.query, operation.variables, operation.operation_name
        )

        async def start() -> Any:
            return await self.schema.stream(
                operation.query,
                variable_values=operation.variables,
                context_value=self.context,
                root_value=self.root_value,
                operation_name=operation.operation_name,
            )

        stream = self._live.hub.stream(key, start, replay=replay)
        member = stream.join(on_overflow=lambda: self._slow(operation))
        self._live.stats.subscribers += 1
        id_json = orjson.dumps(operation.id).decode()
        # Usually the fan-out sends for us; this task only sends what had to queue.
        member.send = lambda frame: self._deliver(operation, frame, id_json)
        try:
            while True:
                frames = await member.inbox.drain()
                member.holding = True  # no direct send may overtake these frames
                try:
                    await member.idle()
                    for frame in frames:
                        if not await self._deliver(operation, frame, id_json):
                            return
                finally:
                    member.holding = False
        except (SlowConsumer, InboxClosed, WebSocketDisconnect, WebSocketDisconnected):
            return
        except RuntimeError:  # a send after the socket closed
            return
        finally:
            self._live.stats.subscribers -= 1
            stream.leave(member)

    def _revoked(self) -> bool:
        principal = self.context.principal
        return (
            principal is not None
            and self._revocations is not None
            and (self._revocations.is_revoked(principal))
        )

    async def _deliver(
        self, operation: Operation[Context, None], frame: Frame, id_json: str
    ) -> bool:
        """Send one frame; False when the operation is over."""
        if operation.completed:
            return False
        if frame.kind is FrameKind.NEXT:
            if self._revoked():
                logger.info("websocket closed: the token was revoked")
                await self._close(*REVOKED)
                return False
            await self._ws.send_text(frame.message(id_json))
            return True
        operation.completed = True
        self.operations.pop(operation.id, None)
        if frame.close_reason is not None:
            await self.websocket.close(code=4400, reason=frame.close_reason)
        else:
            await self._ws.send_text(frame.message(id_json))
        return False

    def _slow(self, operation: Operation[Context, None]) -> None:
        """Called while fanning out: this subscriber's queue is full. Drop it, never wait."""
        if self._closing is not None:
            return
        self._live.stats.slow_consumers += 1
        logger.warning("websocket subscriber too slow; disconnecting it")
        operation.completed = True
        self.operations.pop(operation.id, None)
        if operation.task is not None:
            operation.task.cancel()
        self._closing = asyncio.create_task(
            self._disconnect_slow(orjson.dumps(operation.id).decode())
        )

    async def _disconnect_slow(self, id_json: str) -> None:
        message = _slow_error(id_json, self._live.hub.queue_size)
        try:
            await asyncio.wait_for(self._ws.send_text(message), self._live.config.close_grace)
        except TimeoutError:
            self._abandon()
            return
        except Exception:  # already closed: the close below is a no-op
            logger.debug("telling a slow subscriber failed", exc_info=True)
        await self._close(*SLOW)
