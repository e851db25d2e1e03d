"""Helpers for the live-subscription tests: a real uvicorn server and a protocol-level client."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from costgraph.kernel.clock import utcnow

PROTOCOL = "graphql-transport-ws"

USAGE_UPDATES = """
subscription($scope: BudgetScopeInput) {
  usageUpdates(scope: $scope) {
    kind scopeKind scopeId eventsIncluded
    totals { currency events totalTokens aiCost billedUsage }
    event { entryId accountId events totalTokens aiCost billedUsage publishedAt }
  }
}"""

ALERTS = "subscription { alertRaised { id code stage message raisedAt } }"

RECORD_USAGE = """
mutation($input: UsageEventInput!) {
  recordUsage(input: $input) {
    __typename
    ... on UsageRecorded { entry { id } }
    ... on UserError { code message }
  }
}"""


def usage_input(account_id: uuid.UUID, **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "idempotencyKey": f"live-{uuid.uuid4().hex}",
        "accountId": str(account_id),
        "occurredAt": utcnow().isoformat(),
        "provider": "openai",
        "model": "gpt-4o-mini",
        "inputTokens": 1000,
        "outputTokens": 200,
        "providerCost": "0.000270000000",
        "providerCurrency": "USD",
    }
    event.update(overrides)
    return event


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def serving(app: Starlette, *, lifespan: bool) -> AsyncIterator[uvicorn.Server]:
    """``app`` under a real uvicorn on a loopback port, in this event loop."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, lifespan="on" if lifespan else "off", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
        server.port = sock.getsockname()[1]  # type: ignore[attr-defined]
        yield server
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        sock.close()


def ws_url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/graphql"


@dataclass
class WsClient:
    """graphql-transport-ws spoken by hand, so that every bad input can be sent."""

    connection: ClientConnection
    received: list[dict[str, Any]] = field(default_factory=list)

    async def send(self, message: dict[str, Any]) -> None:
        await self.connection.send(orjson.dumps(message).decode())

    async def recv(self, within: float = 5.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.connection.recv(), within)
        message: dict[str, Any] = orjson.loads(raw)
        self.received.append(message)
        return message

    async def init(self, token: str | None) -> dict[str, Any]:
        payload = {} if token is None else {"authorization": f"Bearer {token}"}
        await self.send({"type": "connection_init", "payload": payload})
        return await self.recv()

    async def subscribe(
        self, op_id: str, query: str, variables: dict[str, Any] | None = None
    ) -> None:
        await self.send(
            {
                "id": op_id,
                "type": "subscribe",
                "payload": {"query": query, "variables": variables or {}},
            }
        )

    async def next_data(self, op_id: str, within: float = 5.0) -> dict[str, Any]:
        """The data of the next ``next`` message for ``op_id`` (fails on anything else)."""
        while True:
            message = await self.recv(within)
            if message.get("type") == "ping":
                await self.send({"type": "pong"})
                continue
            assert message.get("id") == op_id, message
            assert message["type"] == "next", message
            assert "errors" not in message["payload"], message
            data: dict[str, Any] = message["payload"]["data"]
            return data

    async def closed(self, within: float = 5.0) -> tuple[int | None, str]:
        """Wait for the server to close; its close code and reason."""
        try:
            while True:
                await asyncio.wait_for(self.connection.recv(), within)
        except ConnectionClosed as exc:
            received = exc.rcvd
            return (None, "") if received is None else (received.code, received.reason)


@contextlib.asynccontextmanager
async def ws_client(
    port: int, *, subprotocol: str = PROTOCOL, **options: Any
) -> AsyncIterator[WsClient]:
    async with connect(ws_url(port), subprotocols=[subprotocol], **options) as connection:  # type: ignore[list-item]
        yield WsClient(connection)


@contextlib.asynccontextmanager
async def subscribed(
    port: int,
    token: str,
    query: str,
    variables: dict[str, Any] | None = None,
    op_id: str = "1",
    **options: Any,
) -> AsyncIterator[WsClient]:
    """An acknowledged connection with one subscription started."""
    async with ws_client(port, **options) as client:
        ack = await client.init(token)
        assert ack["type"] == "connection_ack", ack
        await client.subscribe(op_id, query, variables)
        yield client
