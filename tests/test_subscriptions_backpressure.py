"""A subscriber that stops reading is dropped with bounded memory; the others get everything."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from costgraph.app.main import create_app
from costgraph.app.settings import Settings
from costgraph.app.state import AppState
from costgraph.subscriptions import publish
from costgraph.subscriptions.channels import alerts_channel
from costgraph.subscriptions.events import AlertNotice
from tests.conftest import Tenant, make_tenant
from tests.subscriptions_support import PROTOCOL, WsClient, serving, subscribed, ws_url

EVENTS = 10_000
ALERTS = "subscription { alertRaised { stage message } }"
SEND_QUEUE = 64


@pytest.fixture(scope="module")
async def server(settings: Settings, database_url: str) -> AsyncIterator[tuple[AppState, int]]:
    custom = settings.model_copy(
        update={"ws_send_queue_size": SEND_QUEUE, "shutdown_timeout_seconds": 20.0}
    )
    app = create_app(custom, database_url)
    async with app.router.lifespan_context(app), serving(app, lifespan=False) as uvicorn_server:
        graphql = next(r for r in app.routes if getattr(r, "path", "") == "/graphql")
        yield graphql.app.state, uvicorn_server.port  # type: ignore[attr-defined]


async def _until(condition: Any, within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def _alert(tenant: Tenant, n: int) -> AlertNotice:
    return AlertNotice(
        organization_id=tenant.org.id,
        id=uuid.uuid4(),
        code="BUDGET_THRESHOLD",
        stage=n,
        # 2 kB each: far more than the OS socket buffers hold (about 3 MB here) in all.
        message=f"alert {n}: " + "x" * 2000,
        raised_at=datetime.now(UTC),
    )


def _tiny_socket(port: int) -> socket.socket:
    """A client socket with a small receive window, so a non-reader pushes back at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def test_a_subscriber_that_never_reads_is_dropped_and_the_others_get_everything(
    server: tuple[AppState, int], state: AppState, client: httpx.AsyncClient, mint: Any
) -> None:
    own, port = server
    tenant = await make_tenant(state, client, mint)
    hub = own.live.hub
    slow_before = own.live.stats.slow_consumers

    async with connect(
        ws_url(port),
        subprotocols=[PROTOCOL],
        sock=_tiny_socket(port),
        max_queue=1,
        compression=None,  # compressed, thousands of alerts would fit in the OS buffers
    ) as raw_slow:
        slow = WsClient(raw_slow)
        assert (await slow.init(tenant.token))["type"] == "connection_ack"
        await slow.subscribe("slow", ALERTS)
        async with subscribed(port, tenant.token, ALERTS, op_id="fast") as fast:
            await _until(lambda: own.bus.subscribers(alerts_channel(tenant.org.id)) == 1)
            await _until(lambda: sum(len(s.members) for s in hub._streams.values()) >= 2)
            # From here the slow client reads nothing until the burst is over.

            async def read_all() -> list[int]:
                stages = []
                while len(stages) < EVENTS:
                    data = await fast.next_data("fast", within=30)
                    stages.append(data["alertRaised"]["stage"])
                return stages

            reader = asyncio.create_task(read_all())
            deepest = 0
            for n in range(EVENTS):
                publish.alert_raised(own.bus, _alert(tenant, n))
                if n % 100 == 99:
                    await asyncio.sleep(0.002)  # a fast producer, but one that yields
                    for stream in hub._streams.values():
                        for member in stream.members:
                            deepest = max(deepest, len(member.inbox))
            stages = await asyncio.wait_for(reader, 60)

        # The fast subscriber got every alert, in order, although another one stalled.
        assert stages == list(range(EVENTS))
        # The slow one was dropped once its queue was full; no queue ever held more.
        assert own.live.stats.slow_consumers == slow_before + 1
        assert deepest <= SEND_QUEUE
        assert hub.max_depth <= SEND_QUEUE
        assert own.bus.stats.publish_dropped == 0

        # When it finally reads, it finds only what the socket buffers held, then is told.
        received = 0
        told = None
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                message = orjson.loads(await asyncio.wait_for(raw_slow.recv(), 10))
                if message["type"] == "next":
                    received += 1
                elif message["type"] == "error":
                    told = message
        assert received < EVENTS // 2
        assert told is not None
        assert told["payload"][0]["extensions"]["code"] == "SLOW_CONSUMER"
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1013
