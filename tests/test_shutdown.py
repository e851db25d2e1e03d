"""SIGTERM to ``costgraph serve`` with 100 writes in flight.

The writes are held in flight deterministically: the test locks the account's balance row,
which every ``recordUsage`` of that account updates, so each request is inside the app (in
its transaction or waiting for a pooled connection) when the signal arrives.

- Drained: the lock is released within the graceful-shutdown timeout. Every one of the 100 is
  committed *and* answered 200 with its entry; no connection is accepted after the signal; the
  server exits by itself, its background jobs (rollups, alert deliveries, the bus) stopped
  without an error.
- Cut off: the lock outlives the timeout. The server cancels what still runs and answers each
  503 ``UNAVAILABLE`` with ``Retry-After``; none of the 100 is in the ledger; it exits.

Both run on a PostgreSQL of the module's own (tests/own_postgres.py).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import asyncpg
import httpx
import pytest

from costgraph.app.database import create_engine, create_sessionmaker
from costgraph.app.settings import Settings
from costgraph.app.state import AppState
from costgraph.kernel.clock import utcnow
from costgraph.kernel.database_url import plain_url
from tests.conftest import Tenant, make_tenant
from tests.own_postgres import OwnPostgres, migrated_database, own_postgres
from tests.servers import free_port, server_environment

WRITES = 100
RECORD_USAGE = """
mutation($input: UsageEventInput!) {
  recordUsage(input: $input) {
    __typename
    ... on UsageRecorded { replayed entry { id } }
    ... on UserError { code message }
  }
}"""


@pytest.fixture(scope="module")
def own_server() -> Iterator[OwnPostgres]:
    """A PostgreSQL of this module's own: the 100 writes hold connections that a shared
    server may not have to spare."""
    with own_postgres() as server:
        yield server


@pytest.fixture(scope="module")
async def own_settings(own_server: OwnPostgres, settings: Settings) -> Settings:
    url = await migrated_database(own_server, "costgraph_shutdown")
    return settings.model_copy(update={"database_url": url})


@pytest.fixture
async def own_tenant(own_settings: Settings, mint: Any) -> AsyncIterator[Tenant]:
    assert own_settings.database_url
    engine = create_engine(own_settings.database_url, own_settings)
    try:
        holder = cast(AppState, SimpleNamespace(sessions=create_sessionmaker(engine)))
        yield await make_tenant(holder, cast(httpx.AsyncClient, None), mint)
    finally:
        await engine.dispose()


@contextmanager
def serving(settings: Settings, log: Path, shutdown_timeout: float) -> Iterator[Any]:
    """``costgraph serve`` in a subprocess: the real signal handling and shutdown timeout."""
    port = free_port()
    environment = server_environment(
        settings,
        COSTGRAPH_SHUTDOWN_TIMEOUT_SECONDS=str(shutdown_timeout),
        COSTGRAPH_DB_POOL_SIZE="5",
        # The held lock stands in for slow writes: they must not time out while it is held.
        COSTGRAPH_LOCK_TIMEOUT_MS="60000",
        COSTGRAPH_DB_POOL_TIMEOUT_SECONDS="60",
        COSTGRAPH_ROLLUP_INTERVAL_SECONDS="0.5",  # the background jobs run, and must stop
        COSTGRAPH_ALERTS_WORKER="true",
    )
    with log.open("w") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "costgraph.app.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "info",
            ],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, log.read_text()
                try:
                    if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the server did not become ready"
                time.sleep(0.1)
            process.url = url  # type: ignore[attr-defined]
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def _event(tenant: Tenant, key: str) -> dict[str, Any]:
    return {
        "idempotencyKey": key,
        "accountId": str(tenant.account_id),
        "occurredAt": utcnow().replace(microsecond=0).isoformat(),
        "provider": "openai",
        "model": "gpt-4o-mini",
        "inputTokens": 10,
        "outputTokens": 10,
        "providerCost": "0.000100000000",
        "providerCurrency": "USD",
    }


async def _send(http: httpx.AsyncClient, tenant: Tenant, key: str) -> tuple[str, Any]:
    """``("answered", status, body)`` or ``("dropped", error)``."""
    try:
        response = await http.post(
            "/graphql",
            json={"query": RECORD_USAGE, "variables": {"input": _event(tenant, key)}},
            headers={"Authorization": f"Bearer {tenant.token}"},
        )
    except httpx.TransportError as exc:
        return "dropped", type(exc).__name__
    return "answered", (response.status_code, response.headers, response.json())


async def _in_flight(database_url: str, server: Any) -> None:
    """Until the app's pool is all waiting for the locked row and every request arrived."""
    import psutil

    port = int(server.url.rsplit(":", 1)[1])
    connection = await asyncpg.connect(plain_url(database_url))
    try:
        for _ in range(600):
            waiting = await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND application_name = 'costgraph'"
            )
            accepted = sum(
                1
                for c in psutil.Process(server.pid).net_connections(kind="tcp")
                if c.laddr and c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED
            )
            if waiting >= 5 and accepted >= WRITES:
                # Accepted connections carry their request at once; let the server read them
                # all (uvicorn closes a connection whose request it has not begun at shutdown).
                await asyncio.sleep(1.0)
                return
            await asyncio.sleep(0.05)
    finally:
        await connection.close()
    raise AssertionError("the writes never were all in flight")


async def _written(database_url: str, keys: list[str]) -> set[str]:
    connection = await asyncpg.connect(plain_url(database_url))
    try:
        rows = await connection.fetch(
            "SELECT idempotency_key FROM ledger_entries WHERE idempotency_key = ANY($1::text[])",
            keys,
        )
    finally:
        await connection.close()
    return {row["idempotency_key"] for row in rows}


async def _locked_balance(database_url: str, tenant: Tenant) -> asyncpg.Connection:
    connection = await asyncpg.connect(plain_url(database_url))
    await connection.execute(
        "INSERT INTO account_balances (organization_id, account_id, balance) VALUES ($1, $2, 0) "
        "ON CONFLICT DO NOTHING",
        tenant.org.id,
        tenant.account_id,
    )
    await connection.execute("BEGIN")
    await connection.execute(
        "SELECT 1 FROM account_balances WHERE account_id = $1 FOR UPDATE", tenant.account_id
    )
    return connection


def _client(url: str) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=WRITES + 10, max_keepalive_connections=WRITES + 10)
    return httpx.AsyncClient(base_url=url, limits=limits, timeout=60)


async def _fire(http: httpx.AsyncClient, tenant: Tenant, keys: list[str]) -> list[Any]:
    return list(await asyncio.gather(*(_send(http, tenant, key) for key in keys)))


def _clean_exit(process: Any, log: Path, timeout: float) -> str:
    # Bounded: the graceful timeout, then the lifespan (bus, workers, pool) closing. uvicorn
    # re-raises the signal it handled once it is done, hence -SIGTERM rather than 0.
    assert process.wait(timeout=timeout * 2 + 20) in (0, -signal.SIGTERM), log.read_text()
    text = log.read_text()
    assert "Traceback" not in text, text
    assert "Application shutdown complete" in text, text
    assert "Finished server process" in text, text
    return text


async def test_sigterm_drains_the_writes_in_flight(
    own_settings: Settings, own_tenant: Tenant, tmp_path: Path
) -> None:
    settings, tenant = own_settings, own_tenant
    assert settings.database_url
    database_url = settings.database_url
    timeout = 8.0  # COSTGRAPH_SHUTDOWN_TIMEOUT_SECONDS: ample for 100 writes once unblocked
    log = tmp_path / "server.log"
    keys = [f"sd-{uuid.uuid4().hex}" for _ in range(WRITES)]
    with serving(settings, log, timeout) as server:
        lock = await _locked_balance(database_url, tenant)
        try:
            async with _client(server.url) as http:
                writes = asyncio.create_task(_fire(http, tenant, keys))
                await _in_flight(database_url, server)
                server.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.5)
                late = await _send(http, tenant, f"late-{uuid.uuid4().hex}")
                await lock.execute("ROLLBACK")  # the writes may now commit
                results = await writes
        finally:
            await lock.close()
        _clean_exit(server, log, timeout)

    answered = [r for r in results if r[0] == "answered"]
    assert len(answered) == WRITES, results
    for _, (status, _headers, body) in answered:
        assert status == 200, body
        assert body["data"]["recordUsage"]["__typename"] == "UsageRecorded", body
    assert await _written(database_url, keys) == set(keys)
    # After the signal the server takes no new request: nothing of it can be written.
    assert late[0] == "dropped", late
    assert "Cancel" not in log.read_text()  # nothing had to be cut off


async def test_sigterm_cuts_off_what_outlives_its_timeout_uncommitted(
    own_settings: Settings, own_tenant: Tenant, tmp_path: Path
) -> None:
    settings, tenant = own_settings, own_tenant
    assert settings.database_url
    database_url = settings.database_url
    timeout = 1.0  # shorter than the lock is held
    log = tmp_path / "server.log"
    keys = [f"sc-{uuid.uuid4().hex}" for _ in range(WRITES)]
    with serving(settings, log, timeout) as server:
        lock = await _locked_balance(database_url, tenant)
        try:
            async with _client(server.url) as http:
                writes = asyncio.create_task(_fire(http, tenant, keys))
                await _in_flight(database_url, server)
                server.send_signal(signal.SIGTERM)
                results = await writes  # the lock is held until every answer is in
        finally:
            await lock.execute("ROLLBACK")
            await lock.close()
        text = _clean_exit(server, log, timeout)

    assert "timeout graceful shutdown exceeded" in text
    for outcome in results:
        assert outcome[0] == "answered", outcome
        status, headers, body = outcome[1]
        assert status == 503, body
        assert int(headers["retry-after"]) >= 1
        assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAVAILABLE"]
    assert await _written(database_url, keys) == set()
