"""COSTGRAPH_MAX_REQUEST_BYTES: bodies over it are refused with 413 PAYLOAD_TOO_LARGE on every
route that reads one, whether ``Content-Length`` says so or a chunked body runs over (counted
as it arrives, never read to its end); websocket messages are bounded by the same setting
under ``costgraph serve``'s uvicorn options; the default fits the largest valid usage batch."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from pydantic import SecretStr, ValidationError
from starlette.applications import Starlette
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from costgraph.app.cli import uvicorn_options
from costgraph.app.main import create_app
from costgraph.app.settings import MAX_REQUEST_BYTES_CEILING, Settings
from costgraph.billing.validation import TAG_MAX
from costgraph.kernel.clock import utcnow
from tests.conftest import make_tenant
from tests.test_ledger import DEPOSIT, RECORD_BATCH
from tests.test_rate_limit import entry_count, limited_app

LIMIT = 16 * 1024
CHUNK = 4 * 1024
ME = "{ me { subject } }"
#: With a secret the Stripe route reads its body (without one it answers 503 at once).
SECRET = SecretStr("whsec_body_limit_test")


def padded(document: dict[str, Any], size: int) -> bytes:
    """``document`` as JSON of exactly ``size`` bytes (trailing whitespace is still JSON)."""
    body = orjson.dumps(document)
    assert len(body) <= size
    return body + b" " * (size - len(body))


def assert_too_large(response: httpx.Response, limit: int = LIMIT) -> None:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["errors"][0]
    assert error["extensions"] == {"code": "PAYLOAD_TOO_LARGE", "maxBytes": limit}
    assert str(limit) in error["message"]


async def test_a_body_up_to_the_limit_is_served_and_one_byte_more_is_refused(
    settings: Settings, database_url: str, mint: Any
) -> None:
    async with limited_app(settings, database_url, max_request_bytes=LIMIT) as (client, state):
        tenant = await make_tenant(state, client, mint)
        auth = {"Authorization": f"Bearer {tenant.token}", "Content-Type": "application/json"}
        fits = await client.post("/graphql", content=padded({"query": ME}, LIMIT), headers=auth)
        assert fits.status_code == 200, fits.text
        assert fits.json()["data"]["me"]["subject"] == "tester"
        over = await client.post("/graphql", content=padded({"query": ME}, LIMIT + 1), headers=auth)
        assert_too_large(over)
        # A write over the limit is refused before it runs: nothing is recorded.
        deposit = {
            "query": DEPOSIT,
            "variables": {
                "input": {
                    "idempotencyKey": f"d-{uuid.uuid4().hex}",
                    "accountId": str(tenant.account_id),
                    "amount": "5.00",
                    "currency": "USD",
                }
            },
        }
        refused = await client.post("/graphql", content=padded(deposit, 2 * LIMIT), headers=auth)
        assert_too_large(refused)
        assert await entry_count(database_url, tenant) == 0
        written = await client.post("/graphql", content=padded(deposit, LIMIT), headers=auth)
        assert written.json()["data"]["deposit"]["__typename"] == "LedgerEntryRecorded"
        assert await entry_count(database_url, tenant) == 1


async def test_a_chunked_body_is_cut_off_once_it_runs_over(
    settings: Settings, database_url: str, mint: Any
) -> None:
    """No Content-Length: the body is counted as it arrives, and read no further than the
    chunk that passes the limit (the client had ten times as much to send). A browser can
    read the refusal: it carries the CORS headers."""
    origin = "https://app.example"
    async with limited_app(
        settings, database_url, max_request_bytes=LIMIT, allowed_origins=[origin]
    ) as (client, state):
        tenant = await make_tenant(state, client, mint)
        pulled = 0

        async def endless() -> AsyncIterator[bytes]:
            nonlocal pulled
            start = b'{"query": "{ me { subject } }"'
            pulled += len(start)
            yield start
            for _ in range(10 * LIMIT // CHUNK):
                pulled += CHUNK
                yield b" " * CHUNK
            yield b"}"

        response = await client.post(
            "/graphql",
            content=endless(),
            headers={
                "Authorization": f"Bearer {tenant.token}",
                "Content-Type": "application/json",
                "Origin": origin,
            },
        )
        assert "content-length" not in response.request.headers
        assert_too_large(response)
        assert response.headers["access-control-allow-origin"] == origin
        assert LIMIT < pulled <= LIMIT + CHUNK


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke", "/webhooks/stripe"])
async def test_every_route_with_a_body_is_bounded(
    settings: Settings, database_url: str, path: str
) -> None:
    # Below the OAuth routes' own form cap (8 KiB), so that this limit is the one met.
    limit = 4_096
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    async with limited_app(
        settings, database_url, max_request_bytes=limit, stripe_webhook_secret=SECRET
    ) as (client, _):
        declared = await client.post(path, content=b"a=" + b"b" * limit, headers=form)
        assert_too_large(declared, limit)

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(2 * limit // 1_024):
                yield b"b" * 1_024

        assert_too_large(await client.post(path, content=chunks(), headers=form), limit)
        # Small bodies still reach the route (which refuses them for its own reasons).
        small = await client.post(path, content=b"grant_type=client_credentials", headers=form)
        assert small.status_code != 413


def largest_batch(events: int, metadata_bytes: int) -> bytes:
    """A recordUsageBatch request whose every field is as long as validation allows."""
    metadata = {"note": ""}
    metadata["note"] = "x" * (metadata_bytes - len(orjson.dumps(metadata)))
    assert len(orjson.dumps(metadata)) == metadata_bytes
    tag = "t" * TAG_MAX
    event = {
        "idempotencyKey": "k" * 255,
        "accountId": str(uuid.uuid4()),
        "occurredAt": utcnow().isoformat(),
        "provider": tag,
        "model": tag,
        "inputTokens": 2**31 - 1,
        "outputTokens": 2**31 - 1,
        "cachedInputTokens": 2**31 - 1,
        "reasoningTokens": 2**31 - 1,
        "cacheWriteTokens": 2**31 - 1,
        "units": [
            {"kind": "IMAGE", "quantity": "99999999.999999"},
            {"kind": "AUDIO_SECOND", "quantity": "99999999.999999"},
        ],
        "userId": str(uuid.uuid4()),
        "feature": tag,
        "agent": tag,
        "requestId": tag,
        "metadata": metadata,
        "providerCost": "999999999.999999999999",
        "providerCurrency": "USD",
    }
    return orjson.dumps({"query": RECORD_BATCH, "variables": {"input": [event] * events}})


def test_the_default_fits_the_largest_valid_usage_batch() -> None:
    defaults = Settings()
    assert defaults.max_request_bytes is None
    body = largest_batch(defaults.max_batch_events, defaults.max_metadata_bytes)
    assert len(body) <= defaults.request_body_limit
    # It follows the batch settings, and an explicit value wins.
    bigger = Settings(max_batch_events=2_000, max_metadata_bytes=16_384)
    assert len(largest_batch(2_000, 16_384)) <= bigger.request_body_limit
    assert Settings(max_request_bytes=65_536).request_body_limit == 65_536
    huge = Settings(max_batch_events=10_000, max_metadata_bytes=1_000_000)
    assert huge.request_body_limit == MAX_REQUEST_BYTES_CEILING
    for wrong in (100, MAX_REQUEST_BYTES_CEILING + 1):
        with pytest.raises(ValidationError):
            Settings(max_request_bytes=wrong)


# --- under a real uvicorn, with costgraph serve's options ---


@contextlib.asynccontextmanager
async def served(application: Starlette, settings: Settings) -> AsyncIterator[int]:
    """``application`` under uvicorn with ``costgraph serve``'s options; its port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(application, log_level="warning", **uvicorn_options(settings))
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(1_000):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        sock.close()


async def exchange(port: int, head: bytes, chunks: list[bytes]) -> bytes:
    """Send a raw HTTP/1.1 request head and body chunks; the server's whole answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)  # to EOF: the server closes
    finally:
        writer.close()


async def test_a_real_server_refuses_big_bodies_and_big_websocket_messages(
    settings: Settings, database_url: str, mint: Any
) -> None:
    limited = settings.model_copy(
        update={"max_request_bytes": LIMIT, "stripe_webhook_secret": SECRET}
    )
    assert uvicorn_options(limited)["ws_max_size"] == LIMIT
    application = create_app(limited, database_url)
    async with served(application, limited) as port:
        # Announced too large: answered at once, without waiting for a body never sent.
        answer = await exchange(
            port,
            b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000000\r\n\r\n",
            [],
        )
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert b"PAYLOAD_TOO_LARGE" in answer
        # Chunked: refused when the limit is passed; the client stops there.
        chunk = b" " * CHUNK
        framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        answer = await exchange(
            port,
            b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            [framed] * (LIMIT // CHUNK + 1),
        )
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert b"PAYLOAD_TOO_LARGE" in answer

        url = f"ws://127.0.0.1:{port}/graphql"
        async with connect(url, subprotocols=["graphql-transport-ws"]) as small:  # type: ignore[list-item]
            token = mint(uuid.uuid4(), ["org_admin"])
            init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
            await small.send(orjson.dumps(init).decode())
            assert orjson.loads(await small.recv())["type"] == "connection_ack"
        async with connect(url, subprotocols=["graphql-transport-ws"]) as big:  # type: ignore[list-item]
            init = {"type": "connection_init", "payload": {"padding": "x" * LIMIT}}
            await big.send(orjson.dumps(init).decode())
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(big.recv(), 10)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1009  # message too big
