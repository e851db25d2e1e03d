"""The graphql-transport-ws handler: strawberry's protocol, with CostGraph's rules on top.

strawberry already refuses what the protocol refuses (subscribe before ``connection_ack``:
4401; a second ``connection_init``: 4429; no init within the timeout: 4408). This subclass
adds:

- ``connection_init`` refused with 4403 for a bad token, 1008 for one connection too many
  (app/ws_handshake.py);
- every ``subscribe`` (queries and mutations over the socket too) draws on the principal's
  and OAuth client's request budgets, as an HTTP request does: over budget, an ``error``
  with ``RATE_LIMITED`` and ``retryAfter``; more operations at once than allowed, an
  ``error`` with ``SUBSCRIPTION_LIMIT``; a malformed ``subscribe`` payload closes with 4400;

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
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    SubscribeMessage,
)
from strawberry.types.unset import UnsetType

from costgraph.app.persisted_queries import PersistedQueries, Refusal
from costgraph.app.ws_context import ConnectionContext
from costgraph.app.ws_handshake import TOO_MANY_CONNECTIONS, TooManySockets
from costgraph.auth.principal import Principal
from costgraph.schema.context import Context
from costgraph.subscriptions.fanout import Frame, FrameKind
from costgraph.subscriptions.inbox import InboxClosed, SlowConsumer
from costgraph.subscriptions.live import Live
from costgraph.subscriptions.sharing import share_key

logger = logging.getLogger("costgraph.ws")

EXPIRED = (4403, "token expired")
REVOKED = (4403, "token revoked")
SLOW = (1013, "subscriber too slow")


#: The ``extensions.code`` of a ``subscribe`` over the per-connection operation limit.
SUBSCRIPTION_LIMIT = "SUBSCRIPTION_LIMIT"


class LiveView(Protocol):
    @property
    def live(self) -> Live: ...

    async def operation_refusal(self, principal: Principal) -> dict[str, Any] | None:
        """The GraphQL error refusing one more operation of ``principal`` (its request
        budget is spent), or None; counts the operation."""
        ...


def _valid_subscribe(payload: object) -> bool:
    """A query, or a persisted query's hash in its place (app/persisted_queries.py)."""
    return (
        isinstance(payload, dict)
        and isinstance(payload.get("query"), str | None)
        and isinstance(payload.get("variables"), dict | None)
        and isinstance(payload.get("operationName"), str | None)
        and isinstance(payload.get("extensions"), dict | None)
    )


def _persisted(view: LiveView, payload: dict[str, Any]) -> dict[str, Any] | None:
    """A persisted query's document put in the payload (as over HTTP), or the refusal."""
    persisted: PersistedQueries | None = getattr(view, "persisted", None)
    if persisted is None:
        return None
    text = persisted.document(payload.get("query"), payload.get("extensions"))
    if isinstance(text, Refusal):
        return {"message": text.message, "extensions": {"code": text.code}}
    if text is None:
        return {"message": "no GraphQL query found", "extensions": {"code": "VALIDATION_FAILED"}}
    payload["query"] = text
    return None


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
        """strawberry's, but a refusal closes with the code its reason has (4403, 1008)."""
        if self.connection_timed_out:
            return
        if self.connection_init_timeout_task:
            self.connection_init_timeout_task.cancel()
        payload = message.get("payload", {})
        if not isinstance(payload, dict):
            await self.websocket.close(code=4400, reason="Invalid connection init payload")
            return
        if self.connection_init_received:
            await self.websocket.close(code=4429, reason="Too many initialisation requests")
            return
        self.connection_init_received = True
        cast(ConnectionContext, self.context).connection_params = payload
        try:
            ack = await self.view.on_ws_connect(self.context)
        except TooManySockets:
            await self.websocket.close(*TOO_MANY_CONNECTIONS)
            return
        except ConnectionRejectionError:
            await self.websocket.close(code=4403, reason="Forbidden")
            return
        if isinstance(ack, UnsetType):
            await self.send_message({"type": "connection_ack"})
        else:
            await self.send_message({"type": "connection_ack", "payload": ack})
        self.connection_acknowledged = True
        principal = self.context.principal
        if self._expiry is None and principal is not None:
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

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        """Refuse what strawberry would not: a malformed payload (4400), an operation over
        the principal's request budget or over the connection's operation limit (``error``,
        with a code). The rest is strawberry's (4401 before the ack, 4409 a reused id)."""
        if not self.connection_acknowledged or message["id"] in self.operations:
            await super().handle_subscribe(message)
            return
        payload = message.get("payload")
        if not _valid_subscribe(payload):
            await self.websocket.close(code=4400, reason="Invalid subscribe payload")
            return
        refusal = _persisted(cast(LiveView, self.view), cast(dict[str, Any], payload))
        if refusal is not None:
            error_message: Any = {"id": message["id"], "type": "error", "payload": [refusal]}
            await self.send_message(error_message)
            return
        principal = self.context.principal
        if principal is not None:
            refusal = await cast(LiveView, self.view).operation_refusal(principal)
        limit = self.max_subscriptions_per_connection
        if refusal is None and limit is not None and len(self.operations) >= limit:
            refusal = {
                "message": f"at most {limit} operations may run at once on one connection",
                "extensions": {"code": SUBSCRIPTION_LIMIT, "maximum": limit},
            }
        if refusal is not None:
            error: Any = {"id": message["id"], "type": "error", "payload": [refusal]}
            await self.send_message(error)
            return
        await super().handle_subscribe(message)

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
