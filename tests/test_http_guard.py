"""The request head bounded by the server (app/http_guard.py): its size, each line's size and
its arrival time, on a real uvicorn with the protocol ``costgraph serve`` uses, over raw
sockets (a client library would refuse to send what these tests send)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator

import orjson
import pytest
import uvicorn
import websockets
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from costgraph.app.cli import uvicorn_options
from costgraph.app.http_guard import GuardedHttpToolsProtocol, HeadLimits, guarded_protocol
from costgraph.app.settings import Settings

LIMITS = HeadLimits(max_bytes=4_096, max_line_bytes=1_024, timeout_seconds=0.5)


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"path": request.url.path, "body": len(body)})


async def ws_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(await websocket.receive_text())
    await websocket.close()


@pytest.fixture(scope="module")
async def port() -> AsyncIterator[int]:
    app = Starlette(
        routes=[Route("/echo", echo, methods=["GET", "POST"]), WebSocketRoute("/ws", ws_echo)]
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, lifespan="off", log_level="warning", http=guarded_protocol(LIMITS))
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        sock.close()


@contextlib.asynccontextmanager
async def connection(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def answer(
    reader: asyncio.StreamReader, within: float = 5.0
) -> tuple[int, dict[str, str], bytes]:
    """One response: status, headers, body (by Content-Length)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), within)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {
        k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
    }
    body = await asyncio.wait_for(
        reader.readexactly(int(headers.get("content-length", "0"))), within
    )
    return status, headers, body


async def closed(reader: asyncio.StreamReader, within: float = 5.0) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), within) == b""
    except ConnectionError:
        return True


async def test_an_ordinary_request_and_keep_alive_pass(port: int) -> None:
    async with connection(port) as (reader, writer):
        for _ in range(3):  # one connection, several requests, each head measured afresh
            writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
            status, _, body = await answer(reader)
            assert status == 200 and orjson.loads(body) == {"path": "/echo", "body": 5}


async def test_a_head_sent_a_byte_at_a_time_is_measured_across_reads(port: int) -> None:
    head = b"\r\nGET /echo HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\n"  # a blank line first
    async with connection(port) as (reader, writer):
        for byte in head:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.001)
        assert (await answer(reader))[0] == 200
        writer.write(b"GET /echo HTTP/1.1\r\nX-B: " + b"b" * 600)  # the next head, in pieces
        await asyncio.sleep(0.05)
        writer.write(b"b" * 600 + b"\r\n\r\n")  # one line of 1,207 bytes over two reads
        assert (await answer(reader))[0] == 431


async def test_a_head_just_under_the_limits_passes(port: int) -> None:
    fields = b"".join(b"X-F%d: %s\r\n" % (i, b"v" * 900) for i in range(3))  # 3 lines of ~908
    async with connection(port) as (reader, writer):
        writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
        assert (await answer(reader))[0] == 200


@pytest.mark.parametrize(
    "head",
    [
        b"GET /echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + b"a" * 2_000 + b"\r\n\r\n",
        b"GET /echo?q=" + b"a" * 2_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # the request line
        b"GET /echo HTTP/1.1\r\n" + b"X-Many: 1234567890\r\n" * 400 + b"\r\n",  # the block
    ],
    ids=["header line", "request line", "head"],
)
async def test_an_oversized_head_is_431_and_closed(port: int, head: bytes) -> None:
    async with connection(port) as (reader, writer):
        writer.write(head)
        status, headers, body = await answer(reader)
        assert status == 431 and headers["connection"] == "close"
        error = orjson.loads(body)["errors"][0]
        assert error["extensions"]["code"] == "HEADERS_TOO_LARGE"
        assert error["extensions"]["maxHeaderBytes"] == LIMITS.max_bytes
        assert await closed(reader)


async def test_an_unfinished_huge_header_is_cut_off_early(port: int) -> None:
    """The 64 MiB header of the report, sent without end: refused after a few KiB, never
    read (the client cannot even send it all)."""
    async with connection(port) as (reader, writer):
        writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ")
        sent = 0
        with contextlib.suppress(ConnectionError):
            for _ in range(1024):  # 64 MiB in 64 KiB pieces, at most
                writer.write(b"a" * 65_536)
                sent += 65_536
                await writer.drain()
                await asyncio.sleep(0)  # let the answer be read, if it is there
                if reader.at_eof() or len(reader._buffer) > 0:  # type: ignore[attr-defined]
                    break
        status, _, _ = await answer(reader)
        assert status == 431
        assert sent < 8 * 1024 * 1024


async def test_a_slow_head_is_408_and_closed(port: int) -> None:
    async with connection(port) as (reader, writer):
        started = time.monotonic()
        writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
        for _ in range(3):  # a byte at a time, never finishing within the timeout
            await asyncio.sleep(0.2)
            with contextlib.suppress(ConnectionError):
                writer.write(b"X")
        status, headers, body = await answer(reader)
        assert status == 408 and headers["connection"] == "close"
        assert orjson.loads(body)["errors"][0]["extensions"]["code"] == "REQUEST_TIMEOUT"
        assert await closed(reader)
        assert time.monotonic() - started < LIMITS.timeout_seconds + 2


async def test_a_connection_that_sends_nothing_is_closed(port: int) -> None:
    async with connection(port) as (reader, _):
        assert await closed(reader, within=LIMITS.timeout_seconds + 2)


async def test_a_slow_response_is_not_a_slow_head(port: int) -> None:
    """The timer runs while a head arrives, not while a request's body or its answer does."""
    async with connection(port) as (reader, writer):
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
        await asyncio.sleep(LIMITS.timeout_seconds * 2)
        writer.write(b"cd")
        assert (await answer(reader))[0] == 200


async def test_a_websocket_handshake_passes_the_guard(port: int) -> None:
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws:
        await ws.send("ping")
        assert await ws.recv() == "ping"


def test_costgraph_serve_runs_uvicorn_with_the_guard(settings: Settings) -> None:
    limited = settings.model_copy(
        update={
            "http_max_header_bytes": 10_000,
            "http_max_header_line_bytes": 2_000,
            "http_header_timeout_seconds": 3.0,
        }
    )
    protocol = uvicorn_options(limited)["http"]
    assert issubclass(protocol, GuardedHttpToolsProtocol)
    assert protocol.head_limits == HeadLimits(10_000, 2_000, 3.0)
