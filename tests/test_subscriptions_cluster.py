"""Two server processes sharing PostgreSQL and Redis: live updates cross instances, and survive
Redis going away and coming back without a restart of either server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from costgraph.app.settings import Settings
from costgraph.app.state import AppState
from tests.conftest import Tenant, make_tenant
from tests.dates import clock_environment
from tests.subscriptions_support import (
    RECORD_USAGE,
    USAGE_UPDATES,
    WsClient,
    free_port,
    subscribed,
    usage_input,
)

REPO = Path(__file__).resolve().parent.parent
SHARED_REDIS = "redis://127.0.0.1:6379/15"


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def _start(settings: Settings, broadcast_url: str, logs: Path) -> Server:
    port = free_port()
    log = logs / f"server-{port}.log"
    env = {
        **os.environ,
        "COSTGRAPH_DATABASE_URL": str(settings.database_url),
        "COSTGRAPH_DATA_DIR": str(settings.data_dir),
        "COSTGRAPH_ISSUER": settings.issuer,
        "COSTGRAPH_AUDIENCE": settings.audience,
        **clock_environment(),
        "COSTGRAPH_BROADCAST_URL": broadcast_url,
        "COSTGRAPH_BROADCAST_HEARTBEAT_MS": "200",
        "COSTGRAPH_DB_POOL_SIZE": "3",
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "costgraph.app.asgi:create_app",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
        "--timeout-graceful-shutdown", "5",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Server(port, process, log)


async def _ready(server: Server, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            assert server.process.poll() is None, server.tail()
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"{server.url}/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise AssertionError(f"server did not start:\n{server.tail()}")


def _stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@contextlib.asynccontextmanager
async def two_servers(settings: Settings, broadcast_url: str) -> AsyncIterator[list[Server]]:
    with tempfile.TemporaryDirectory(prefix="costgraph-cluster-") as logs:
        servers = [_start(settings, broadcast_url, Path(logs)) for _ in range(2)]
        try:
            await asyncio.gather(*(_ready(s) for s in servers))
            yield servers
        finally:
            for server in servers:
                await asyncio.to_thread(_stop, server)
                print(f"--- server on port {server.port} ---\n{server.tail()}")  # shown on failure


class RedisServer:
    """A redis-server of our own on a free port, to stop and start at will."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def launch(self) -> None:
        command = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--daemonize", "no",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    async def start(self) -> None:
        self.launch()
        client = aioredis.Redis.from_url(self.url)
        try:
            for _ in range(200):
                with contextlib.suppress(Exception):
                    if await client.ping():
                        return
                await asyncio.sleep(0.02)
        finally:
            await client.aclose()
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def cluster_tenant(state: AppState, client: httpx.AsyncClient, mint: Any) -> Tenant:
    return await make_tenant(state, client, mint)


async def _record(http: httpx.AsyncClient, server: Server, tenant: Tenant) -> tuple[str, float]:
    """Record one usage event through ``server``; its entry id and how long the call took."""
    started = time.monotonic()
    response = await http.post(
        f"{server.url}/graphql",
        json={"query": RECORD_USAGE, "variables": {"input": usage_input(tenant.account_id)}},
        headers={"Authorization": f"Bearer {tenant.token}"},
    )
    elapsed = time.monotonic() - started
    result = response.json()["data"]["recordUsage"]
    assert result["__typename"] == "UsageRecorded", result
    return result["entry"]["id"], elapsed


async def _update(client: WsClient, within: float) -> dict[str, Any]:
    update: dict[str, Any] = (await client.next_data("1", within=within))["usageUpdates"]
    return update


def _scope(tenant: Tenant) -> dict[str, Any]:
    return {"scope": {"kind": "ACCOUNT", "id": str(tenant.account_id)}}


async def test_a_subscriber_on_one_instance_sees_usage_recorded_through_another(
    settings: Settings, cluster_tenant: Tenant
) -> None:
    tenant = cluster_tenant
    async with (
        two_servers(settings, SHARED_REDIS) as (a, b),
        httpx.AsyncClient() as http,
        subscribed(a.port, tenant.token, USAGE_UPDATES, _scope(tenant)) as watcher,
    ):
        assert (await _update(watcher, 5))["kind"] == "SNAPSHOT"
        for n in range(1, 4):
            started = time.monotonic()
            entry_id, _ = await _record(http, b, tenant)
            update = await _update(watcher, within=1.0)  # within a second, or it fails
            assert time.monotonic() - started < 1.0
            assert update["kind"] == "EVENT"
            assert update["event"]["entryId"] == entry_id
            assert update["totals"][0]["events"] == n


async def test_ingestion_survives_redis_going_away_and_the_subscription_resumes(
    settings: Settings, cluster_tenant: Tenant, private_redis: RedisServer
) -> None:
    tenant = cluster_tenant
    await private_redis.start()
    async with (
        two_servers(settings, private_redis.url) as (a, b),
        httpx.AsyncClient() as http,
        subscribed(a.port, tenant.token, USAGE_UPDATES, _scope(tenant)) as watcher,
    ):
        assert (await _update(watcher, 5))["kind"] == "SNAPSHOT"
        first, _ = await _record(http, b, tenant)
        assert (await _update(watcher, 1.0))["event"]["entryId"] == first

        private_redis.stop()
        # Writes keep committing, quickly: publishing never waits for the broker.
        for _ in range(3):
            _, elapsed = await _record(http, b, tenant)
            assert elapsed < 1.0
        # The subscriber is told, and stays subscribed.
        interrupted = await _update(watcher, within=5.0)
        assert interrupted["kind"] == "INTERRUPTED"

        await private_redis.start()
        resumed = await _update(watcher, within=10.0)
        assert resumed["kind"] == "RESUMED"
        # Totals were re-read: the writes made during the outage are in them.
        assert resumed["totals"][0]["events"] == 4

        # Events flow again across instances (the writer's bus may need a moment more).
        deadline = time.monotonic() + 10
        while True:
            entry_id, _ = await _record(http, b, tenant)
            try:
                update = await _update(watcher, within=1.0)
            except TimeoutError:
                assert time.monotonic() < deadline, "events did not flow again"
                continue
            break
        assert update["kind"] == "EVENT"
        assert update["event"]["entryId"] == entry_id
