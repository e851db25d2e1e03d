"""Live subscriptions that outlive dropped sockets, server restarts and token expiry.

Each connection is gql's websockets transport speaking graphql-transport-ws, with the
token in ``connection_init``. A pump task moves its updates into a small queue, so the
consumer's own awaits are never cancelled by the helper. When the socket drops (a restart,
a network fault, the server completing the stream on shutdown) the helper reconnects with
exponential backoff and jitter; the server answers a new subscriber with a SNAPSHOT first,
so nothing is lost across the gap. The server closes a socket whose token expires (4403):
the helper reconnects with the next token shortly before that (when the token source
refreshes it), and after an authentication close asks for a fresh one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Generic, TypeVar

from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportError, TransportQueryError
from gql.transport.websockets import WebsocketsTransport
from websockets.exceptions import ConnectionClosed

from .auth import TokenSource
from .errors import CostGraphError, Transient, Unauthenticated, from_graphql_errors
from .retrying import RetryPolicy

T = TypeVar("T")
logger = logging.getLogger("costgraph.client.live")

#: Close codes that mean "authenticate again": unauthorized, forbidden (a refused or expired
#: token), and a subscribe before the acknowledgement.
AUTH_CLOSES = frozenset({4401, 4403})
_END = object()


def close_code(exc: BaseException) -> int | None:
    """The websocket close code behind a transport error, if the server sent one."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionClosed) and current.rcvd is not None:
            return current.rcvd.code
        current = current.__cause__ or current.__context__
    return None


class LiveStream(Generic[T]):
    """An endless stream of one subscription's updates; iterate it with ``async for``.

    ``connections`` counts the sockets opened so far (1 + reconnects)."""

    def __init__(
        self,
        url: str,
        request: GraphQLRequest,
        field: str,
        parse: Callable[[Mapping[str, Any]], T],
        *,
        auth: TokenSource,
        retry: RetryPolicy,
        timeout: float,
    ) -> None:
        self.url = "ws" + url.removeprefix("http")  # http -> ws, https -> wss
        self.request = request
        self.field = field
        self.parse = parse
        self.auth = auth
        self.retry = retry
        self.timeout = timeout
        self.connections = 0

    def __aiter__(self) -> AsyncIterator[T]:
        return self._run()

    async def _pump(self, token: str, queue: asyncio.Queue[Any]) -> None:
        transport = WebsocketsTransport(
            url=self.url,
            init_payload={"Authorization": f"Bearer {token}"},
            subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
            connect_timeout=self.timeout,
            ack_timeout=self.timeout,
            close_timeout=2,
        )
        try:
            async with Client(transport=transport) as session:
                self.connections += 1
                async for data in session.subscribe(self.request):
                    await queue.put(data)
            await queue.put(_END)
        except Exception as exc:  # handed to the consumer's side, which decides
            await queue.put(exc)

    async def _run(self) -> AsyncIterator[T]:
        loop = asyncio.get_running_loop()
        failures = 0
        refresh = False
        while True:
            token = await self.auth.token(refresh=refresh)
            refresh = False
            renew_at = self.auth.expires_at()
            queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=64)
            pump = asyncio.create_task(self._pump(token, queue))
            reason: BaseException | None = None
            try:
                while True:
                    wait = None if renew_at is None else max(0.0, renew_at - loop.time())
                    try:
                        item = await asyncio.wait_for(queue.get(), wait)
                    except TimeoutError:
                        logger.info("live: the token is due for refresh; reconnecting")
                        break  # renew: reconnect with the next token, no backoff
                    if isinstance(item, BaseException):
                        reason = item
                        break
                    if item is _END:
                        reason = ConnectionError("the server completed the subscription")
                        break
                    failures = 0
                    yield self.parse(item[self.field])
            finally:
                pump.cancel()
                await asyncio.wait([pump])  # the pump keeps its own errors
            if reason is None:
                continue
            refresh = self._after(reason)
            failures += 1
            delay = self.retry.delay(failures)
            logger.info("live: connection lost (%r); reconnecting in %.2fs", reason, delay)
            await asyncio.sleep(delay)

    def _after(self, reason: BaseException) -> bool:
        """Whether to reconnect with a fresh token; raises what no reconnect can fix."""
        if isinstance(reason, TransportQueryError):
            error: CostGraphError = from_graphql_errors(reason.errors)
        elif close_code(reason) in AUTH_CLOSES:
            error = Unauthenticated("UNAUTHENTICATED", f"the server closed the socket: {reason}")
        elif isinstance(reason, TransportError | OSError | ConnectionError | TimeoutError):
            return False
        else:
            raise reason
        if isinstance(error, Unauthenticated) and self.auth.refreshable:
            return True
        if isinstance(error, Transient) or error.code in ("SLOW_CONSUMER", "RATE_LIMITED"):
            return False
        raise error
