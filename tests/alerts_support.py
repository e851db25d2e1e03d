"""Real local receivers for alert deliveries: an HTTP server (uvicorn + Starlette, in the test's
event loop) that checks Standard Webhooks signatures, and SMTP servers (aiosmtpd) that accept,
refuse or hang. Nothing is mocked: the worker talks to them over TCP."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any

import orjson
import uvicorn
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from costgraph.alerts import signing
from tests.servers import free_port

CHANNEL = """mutation($input: NotificationChannelInput!) {
  createNotificationChannel(input: $input) {
    id kind target signingSecret secretCount budgetId scope { kind id } } }"""
ALERTS = """query($filter: AlertFilter, $first: Int, $after: String) {
  alerts(filter: $filter, first: $first, after: $after) {
    nodes { id code kind stage state message budgetId spent limit currency
            periodStart periodEnd raisedAt acknowledgedAt acknowledgedBy scope { kind id } }
    pageInfo { hasNextPage endCursor } } }"""
ACKNOWLEDGE = """mutation($id: ID!) {
  acknowledgeAlert(id: $id) { id state acknowledgedAt acknowledgedBy } }"""
DELIVERIES = """query($id: ID!) { alertDeliveries(alertId: $id) {
  id channelKind state attempts lastError history { attempt outcome statusCode error } } }"""


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    #: The message id, when the signature verified with the path's secret.
    verified_id: str | None = None

    def json(self) -> Any:
        return orjson.loads(self.body)


Behaviour = Callable[[Request, int], Awaitable[Response]]


async def ok(request: Request, attempt: int) -> Response:
    return JSONResponse({"ok": True})


def statuses(*codes: int) -> Behaviour:
    """Answer the n-th request with the n-th code (the last one from then on)."""

    async def answer(request: Request, attempt: int) -> Response:
        return Response(status_code=codes[min(attempt, len(codes) - 1)])

    return answer


@dataclass
class HttpReceiver:
    """Paths behave as configured; every request is kept, with its signature checked."""

    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    host: str = "127.0.0.1"

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}/{path}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def unique_ids(self, path: str) -> Counter[str]:
        """Verified message ids at ``path`` — what a receiver deduping by webhook-id keeps."""
        return Counter(r.verified_id for r in self.at(path) if r.verified_id is not None)

    async def hang(self, request: Request, attempt: int) -> Response:
        await self.release.wait()
        return Response(status_code=599)

    def app(self) -> Starlette:
        async def endpoint(request: Request) -> Response:
            path = request.path_params["path"]
            body = await request.body()
            headers = {k.lower(): v for k, v in request.headers.items()}
            verified = None
            secret = self.secrets.get(path)
            if secret is not None:
                with contextlib.suppress(signing.InvalidSignature):
                    verified = signing.verify(secret, headers, body, int(time.time()))
            attempt = len(self.at(path))
            self.received.append(Received(path, headers, body, verified))
            behaviour = self.behaviours.get(path, ok)
            return await behaviour(request, attempt)

        return Starlette(routes=[Route("/{path:path}", endpoint, methods=["POST"])])


@contextlib.asynccontextmanager
async def http_receiver(
    receiver: HttpReceiver | None = None, host: str = "127.0.0.1"
) -> AsyncIterator[HttpReceiver]:
    receiver = receiver or HttpReceiver()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    receiver.host, receiver.port = host, sock.getsockname()[1]
    config = uvicorn.Config(
        receiver.app(), lifespan="off", log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        assert server.started, "receiver did not start"
        yield receiver
    finally:
        receiver.release.set()
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


# --- SMTP ---


@dataclass
class Mailbox:
    """An aiosmtpd handler: keeps every message; ``refuse`` first N DATA commands."""

    refuse: int = 0
    messages: list[Message] = field(default_factory=list)
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            if self.refused < self.refuse:
                self.refused += 1
                return "451 4.3.0 try again later"
            content = envelope.original_content or b""
            self.messages.append(message_from_bytes(content))
        return "250 OK"

    def alert_ids(self) -> Counter[str]:
        with self.lock:
            return Counter(str(m["X-CostGraph-Alert-Id"]) for m in self.messages)

    def message_ids(self) -> Counter[str]:
        with self.lock:
            return Counter(str(m["Message-ID"]) for m in self.messages)


@contextlib.contextmanager
def smtp_server(mailbox: Mailbox) -> Iterator[int]:
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@contextlib.asynccontextmanager
async def hanging_tcp_server() -> AsyncIterator[int]:
    """Accepts connections and never says a word (an SMTP server that hangs)."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def until(condition: Callable[[], Awaitable[bool] | bool], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def new_key() -> str:
    return f"alert-{uuid.uuid4().hex}"
