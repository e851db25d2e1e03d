"""Live fan-out: 1,000 websocket subscribers at 10 events/s, against the ceiling that
docs/architecture.md names — a bare Starlette websocket endpoint broadcasting pre-serialised
bytes.

    python -m bench.fanout [--subscribers 1000] [--rate 10] [--duration 15] [--accounts 1]

**Ours.** ``--subscribers`` graphql-transport-ws connections, each its own principal (a
``finance_viewer`` token per widget), subscribe to ``usageUpdates`` of an account on one
instance (``COSTGRAPH_BROADCAST_URL=redis://…``). ``--rate`` times a second a usage notice
arrives through Redis — by default published by the bench exactly as a writer instance
publishes after a commit (``--events notices``), so that what is measured is the fan-out, as
for the ceiling; ``--events writes`` makes real ``recordUsage`` calls through a second instance
instead. The instance re-reads the account's totals once, executes the selection once and
sends the same bytes to every subscriber. Latency runs from the publish (the update's
``event.publishedAt``) to the client's receipt.

**Ceiling.** The same number of plain websockets on a bare Starlette app; ``--rate`` times a
second a POST makes it stamp the time into one pre-serialised text message (padded to the size
of ours) and send it to every socket. Latency runs from that stamp to the client's receipt.

Both servers run in their own process under the same uvicorn configuration, loopback only;
one client process (this one) holds every connection and reads every message of both.
Throughput is deliveries per second over the publishing window plus the drain; the ratio is
ours over the ceiling. **Memory per idle connection** is the server's RSS growth with every
subscriber connected, subscribed and idle, divided by their number (after a warm-up).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil  # type: ignore[import-untyped]
from redis.asyncio import Redis

from bench.db import bench_settings, create_tenant, fresh_database, integrator_token
from bench.report import standalone
from bench.stats import Comparison, Measurement, percentile
from costgraph.subscriptions.channels import usage_channel
from costgraph.subscriptions.events import UsageDelta, UsageNotice, encode_usage

LOOPBACK = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = "graphql-transport-ws"
TARGET_RATIO = 0.5
TARGET_P99_MS = 100.0
WARM_UP_CONNECTIONS = 50
CONNECT_CONCURRENCY = 64
MAX_SUBSCRIBERS = 5_000
DEFAULT_BROADCAST = "redis://127.0.0.1:6379/0"
MAX_DURATION = 60.0
DRAIN_SECONDS = 2.0
#: Event n of ours carries BASE_TOKENS + n tokens, which identifies it in an update.
BASE_TOKENS = 1200

SUBSCRIPTION = """
subscription($scope: BudgetScopeInput) {
  usageUpdates(scope: $scope) {
    kind eventsIncluded
    totals { currency events totalTokens aiCost billedUsage }
    event { entryId accountId totalTokens aiCost billedUsage occurredAt publishedAt }
  }
}"""
RECORD_USAGE = "mutation($input: UsageEventInput!) { recordUsage(input: $input) { __typename } }"


@dataclass(frozen=True, slots=True)
class FanoutConfig:
    subscribers: int = 1_000
    rate: float = 10.0
    duration: float = 15.0
    accounts: int = 1
    #: The measured instance's COSTGRAPH_BROADCAST_URL.
    broadcast: str = DEFAULT_BROADCAST
    #: Where events come from: ``notices`` — published on Redis as another instance does after
    #: each commit, so only the fan-out is measured; ``writes`` — real ``recordUsage`` calls
    #: (through a second instance with Redis, through the measured one with ``memory://``).
    events: str = "notices"

    @property
    def separate_writer(self) -> bool:
        return self.events == "writes" and not self.broadcast.startswith("memory://")

    def checked(self) -> FanoutConfig:
        if not 1 <= self.subscribers <= MAX_SUBSCRIBERS:
            raise SystemExit(f"--subscribers must be 1..{MAX_SUBSCRIBERS}")
        if not 0 < self.rate <= 1_000 or not 0 < self.duration <= MAX_DURATION:
            raise SystemExit(f"--rate must be in (0, 1000], --duration in (0, {MAX_DURATION}]")
        if not 1 <= self.accounts <= self.subscribers:
            raise SystemExit("--accounts must be between 1 and --subscribers")
        if self.events not in {"notices", "writes"}:
            raise SystemExit("--events must be notices or writes")
        if self.events == "notices" and self.broadcast.startswith("memory://"):
            raise SystemExit("--events notices needs a redis:// --broadcast")
        return self


# --- the servers (each in its own process) ---


@dataclass(frozen=True, slots=True)
class ServerSpec:
    kind: str  # "ours", "writer" (ours, taking the writes) or "bare"
    port: int
    database_url: str
    data_dir: str
    broadcast: str = "memory://"


def bare_app() -> Any:
    """The ceiling: accept sockets, and on POST /publish send one stamped message to all."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    sockets: set[WebSocket] = set()

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        sockets.add(websocket)
        try:
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect:
            pass
        finally:
            sockets.discard(websocket)

    async def publish(request: Request) -> JSONResponse:
        pad = int(request.query_params.get("pad", "0"))
        message = orjson.dumps({"t": time.time(), "pad": "x" * pad}).decode()
        for websocket in list(sockets):
            with contextlib.suppress(Exception):
                await websocket.send_text(message)
        return JSONResponse({"sent": len(sockets)})

    async def healthz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            WebSocketRoute("/ws", endpoint),
            Route("/publish", publish, methods=["POST"]),
            Route("/healthz", healthz),
        ]
    )


def serve(spec: ServerSpec) -> None:
    import uvicorn

    if spec.kind in {"ours", "writer"}:
        from costgraph.app.main import create_app

        settings = bench_settings(Path(spec.data_dir), spec.database_url)
        settings = settings.model_copy(update={"broadcast_url": spec.broadcast})
        app = create_app(settings, spec.database_url)
    else:
        app = bare_app()
    uvicorn.Server(
        uvicorn.Config(app, host=LOOPBACK, port=spec.port, log_level="warning", access_log=False)
    ).run()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    spec: ServerSpec
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def rss(self) -> int:
        return int(psutil.Process(self.process.pid).memory_info().rss)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


async def _ready(server: ServerProcess, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"{server.spec.kind} server exited:\n{server.log.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                response = await http.get(f"http://{LOOPBACK}:{server.spec.port}/healthz")
                if response.status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{server.spec.kind} server did not start:\n{server.log.read_text()}")


def _spawn(spec: ServerSpec, log: Path) -> ServerProcess:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.fanout", "serve", json.dumps(asdict(spec))],
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    return ServerProcess(spec, process, log)


@contextlib.asynccontextmanager
async def started(*specs: ServerSpec) -> AsyncIterator[list[ServerProcess]]:
    with tempfile.TemporaryDirectory(prefix="costgraph-fanout-logs-") as logs:
        servers = []
        for spec in specs:
            servers.append(_spawn(spec, Path(logs) / f"{spec.kind}.log"))
        try:
            await asyncio.gather(*(_ready(s) for s in servers))
            yield servers
        finally:
            for server in servers:
                await asyncio.to_thread(server.stop)


# --- the client ---


class WireSocket(asyncio.Protocol):
    """A minimal websocket client: the opening handshake, masked frames out, and frames in
    parsed inside ``data_received``. No task wakes per message, so with 10,000 messages a
    second on a 2-core machine the client is not what the bench measures. No compression
    is offered, and the servers send every message in one frame."""

    def __init__(self) -> None:
        self.on_text: Callable[[bytes, float], None] = lambda payload, at: None
        self.transport: asyncio.Transport | None = None
        self.handshake: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._buffer = bytearray()
        self._open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(ConnectionError("closed during the handshake"))

    def data_received(self, data: bytes) -> None:
        received = time.time()
        self._buffer += data
        if not self._open:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buffer[:end])
            del self._buffer[: end + 4]
            self._open = True
            self.handshake.set_result(head)
        self._frames(received)

    def _frames(self, received: float) -> None:
        buffer = self._buffer
        while len(buffer) >= 2:
            length, offset = buffer[1] & 0x7F, 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length, offset = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length, offset = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < offset + length:
                return
            opcode = buffer[0] & 0x0F
            payload = bytes(buffer[offset : offset + length])
            del buffer[: offset + length]
            if opcode == 0x1:
                self.on_text(payload, received)
            elif opcode == 0x9:
                self.send_frame(0xA, payload)
            elif opcode == 0x8 and self.transport is not None:
                self.transport.close()

    def send_frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        size = len(payload)
        if size < 126:
            header = bytes([0x80 | opcode, 0x80 | size])
        elif size < 1 << 16:
            header = bytes([0x80 | opcode, 0x80 | 126]) + size.to_bytes(2, "big")
        else:
            header = bytes([0x80 | opcode, 0x80 | 127]) + size.to_bytes(8, "big")
        key = int.from_bytes((mask * (size // 4 + 1))[:size], "big")
        masked = (int.from_bytes(payload, "big") ^ key).to_bytes(size, "big")
        assert self.transport is not None
        self.transport.write(header + mask + masked)

    def send_json(self, message: object) -> None:
        self.send_frame(0x1, orjson.dumps(message))

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.send_frame(0x8, (1000).to_bytes(2, "big"))
            self.transport.close()


async def open_socket(port: int, path: str, subprotocol: str | None = None) -> WireSocket:
    loop = asyncio.get_running_loop()
    _, socket_ = await loop.create_connection(WireSocket, LOOPBACK, port)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {LOOPBACK}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if subprotocol:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    assert socket_.transport is not None
    socket_.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = await asyncio.wait_for(socket_.handshake, 30)
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"handshake refused: {head[:80]!r}")
    return socket_


async def _next_text(socket_: WireSocket) -> dict[str, Any]:
    """During set-up: the next message, decoded."""
    arrived: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def on_text(payload: bytes, at: float) -> None:
        if not arrived.done():
            arrived.set_result(payload)

    socket_.on_text = on_text
    message: dict[str, Any] = orjson.loads(await asyncio.wait_for(arrived, 30))
    return message


Stamp = Callable[[bytes], list[float] | None]


@dataclass
class Receiver:
    """Records, once counting starts, the publish-to-receipt latency of every event received.

    ``stamp`` gives the publish times of the events a message carries (ours may carry several
    when a burst was coalesced); each counts as one delivery.
    """

    stamp: Stamp
    expected: int
    latencies: list[float] = field(default_factory=list)
    counting: bool = False
    errors: int = 0
    complete: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, payload: bytes, received: float) -> None:
        if not self.counting:
            return
        published = self.stamp(payload)
        if published is None:
            self.errors += 1
            return
        self.latencies.extend(received - at for at in published)
        if len(self.latencies) >= self.expected:
            self.complete.set()


@dataclass
class OursStamp:
    """Publish times of the events in one ``usageUpdates`` message.

    The newest event's comes from the server (``publishedAt``). When an update coalesced
    several events, the older ones' publish time is not in the message; their latency is
    taken from when the bench *sent* their write (before the server could publish them), so
    it is an upper bound. Event ``n`` is recognised by its tokens (1200 + n).
    """

    accounts: int
    sent_at: dict[int, float] = field(default_factory=dict)

    def __call__(self, payload: bytes) -> list[float] | None:
        message = orjson.loads(payload)
        if message.get("type") != "next":
            return None
        update = message["payload"]["data"]["usageUpdates"]
        event = update["event"]
        if event is None:
            return None
        newest = event["totalTokens"] - BASE_TOKENS
        stamps = [datetime.fromisoformat(event["publishedAt"]).timestamp()]
        for older in range(1, update["eventsIncluded"]):
            sent = self.sent_at.get(newest - older * self.accounts)
            if sent is None:
                return None
            stamps.append(sent)
        return stamps


def bare_stamp(payload: bytes) -> list[float] | None:
    stamp: float = orjson.loads(payload)["t"]
    return [stamp]


async def _bounded(
    count: int, open_one: Callable[[int], Awaitable[WireSocket]]
) -> list[WireSocket]:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(index: int) -> WireSocket:
        async with gate:
            return await open_one(index)

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def _ours_socket(port: int, token: str, account_id: uuid.UUID) -> WireSocket:
    socket_ = await open_socket(port, "/graphql", PROTOCOL)
    socket_.send_json({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
    ack = await _next_text(socket_)
    if ack.get("type") != "connection_ack":
        raise RuntimeError(f"connection refused: {ack}")
    scope = {"scope": {"kind": "ACCOUNT", "id": str(account_id)}}
    payload = {"query": SUBSCRIPTION, "variables": scope}
    socket_.send_json({"id": "1", "type": "subscribe", "payload": payload})
    snapshot = await _next_text(socket_)
    if snapshot.get("type") != "next":
        raise RuntimeError(f"subscription refused: {snapshot}")
    return socket_


@dataclass
class Phase:
    measurement: Measurement
    rss_per_connection: float
    expected: int


async def _phase(
    label: str,
    server: ServerProcess,
    config: FanoutConfig,
    open_one: Callable[[int], Awaitable[WireSocket]],
    publish: Callable[[int], Coroutine[Any, Any, None]],
    stamp: Stamp,
) -> Phase:
    warm = await _bounded(WARM_UP_CONNECTIONS, open_one)
    for socket_ in warm:
        socket_.close()
    await asyncio.sleep(1.0)
    base = server.rss
    connections = await _bounded(config.subscribers, open_one)
    gc.collect()
    await asyncio.sleep(1.0)
    per_connection = (server.rss - base) / config.subscribers

    events = max(1, round(config.rate * config.duration))
    expected = events * config.subscribers
    receiver = Receiver(stamp, expected)
    for socket_ in connections:
        socket_.on_text = receiver.record
    receiver.counting = True
    interval = 1.0 / config.rate
    started_at = time.monotonic()
    # Events leave on schedule whatever a write costs: the fan-out is what is measured.
    writes: list[asyncio.Task[None]] = []
    for n in range(events):
        writes.append(asyncio.create_task(publish(n)))
        delay = started_at + (n + 1) * interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    await asyncio.gather(*writes)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(receiver.complete.wait(), DRAIN_SECONDS)
    elapsed = time.monotonic() - started_at
    receiver.counting = False
    for socket_ in connections:
        socket_.close()
    return Phase(
        Measurement(
            label=label,
            operations=len(receiver.latencies),
            seconds=elapsed,
            latencies=tuple(receiver.latencies),
            errors=receiver.errors,
        ),
        per_connection,
        expected,
    )


async def run(server_url: str, config: FanoutConfig | None = None) -> list[Comparison]:
    config = (config or FanoutConfig()).checked()
    async with fresh_database(server_url) as url:
        with tempfile.TemporaryDirectory(prefix="costgraph-bench-") as tmp:
            return await _run(url, Path(tmp), config)


async def _run(url: str, data_dir: Path, config: FanoutConfig) -> list[Comparison]:
    from costgraph.auth.keys import KeyStore
    from costgraph.auth.tokens import mint_access_token

    settings = bench_settings(data_dir, url)
    tenant = await create_tenant(settings, url, accounts=config.accounts, users=0)
    writer_token = integrator_token(settings, tenant.org.id)
    key = KeyStore(settings.key_dir, settings.signing_key_path).ensure()
    viewer_tokens = [
        mint_access_token(
            key,
            issuer=settings.issuer,
            audience=settings.audience,
            subject=f"widget-{i}",
            organization_id=tenant.org.id,
            roles=["finance_viewer"],
            ttl=timedelta(hours=1),
        )
        for i in range(config.subscribers + WARM_UP_CONNECTIONS)
    ]
    specs: tuple[ServerSpec, ...] = (
        ServerSpec("ours", free_port(), url, str(data_dir), config.broadcast),
        ServerSpec("bare", free_port(), url, str(data_dir)),
    )
    if config.separate_writer:
        specs += (ServerSpec("writer", free_port(), url, str(data_dir), config.broadcast),)
    async with started(*specs) as servers, httpx.AsyncClient(timeout=30) as http:
        ours_server, bare_server = servers[0], servers[1]
        writer_port = servers[-1].spec.port if config.separate_writer else ours_server.spec.port
        issued = iter(viewer_tokens)

        async def open_ours(index: int) -> WireSocket:
            token = next(issued)  # one principal per widget, as in production
            account = tenant.account_ids[index % len(tenant.account_ids)]
            return await _ours_socket(ours_server.spec.port, token, account)

        ours_stamp = OursStamp(accounts=len(tenant.account_ids))
        notices = None if config.events == "writes" else Redis.from_url(config.broadcast)

        async def notify(n: int) -> None:
            """What a writer instance publishes after committing event ``n``."""
            assert notices is not None
            account = tenant.account_ids[n % len(tenant.account_ids)]
            now = datetime.now(UTC)
            ours_stamp.sent_at[n] = now.timestamp()
            delta = UsageDelta(
                entry_id=uuid.uuid4(),
                account_id=account,
                customer_id=tenant.customer_id,
                department_id=None,
                user_id=None,
                currency=tenant.currency,
                entries=1,
                input_tokens=BASE_TOKENS - 200 + n,
                output_tokens=200,
                cached_input_tokens=0,
                cache_write_tokens=0,
                reasoning_tokens=0,
                ai_cost=Decimal("0.000270000000"),
                billed=Decimal("0.000270000000"),
                occurred_at=now,
            )
            notice = UsageNotice(tenant.org.id, now, (delta,))
            await notices.publish(usage_channel(tenant.org.id), encode_usage(notice))

        async def record(n: int) -> None:
            account = tenant.account_ids[n % len(tenant.account_ids)]
            ours_stamp.sent_at[n] = time.time()
            event = {
                "idempotencyKey": f"fanout-{uuid.uuid4().hex}",
                "accountId": str(account),
                "occurredAt": datetime.now().astimezone().isoformat(),
                "provider": "openai",
                "model": "gpt-4o-mini",
                "inputTokens": BASE_TOKENS - 200 + n,
                "outputTokens": 200,
                "providerCost": "0.000270000000",
                "providerCurrency": "USD",
            }
            response = await http.post(
                f"http://{LOOPBACK}:{writer_port}/graphql",
                json={"query": RECORD_USAGE, "variables": {"input": event}},
                headers={"Authorization": f"Bearer {writer_token}"},
            )
            if response.json()["data"]["recordUsage"]["__typename"] != "UsageRecorded":
                raise RuntimeError(f"recordUsage failed: {response.text}")

        pad = 460  # makes the ceiling's message as long as ours (about 490 bytes)

        async def broadcast(n: int) -> None:
            await http.post(f"http://{LOOPBACK}:{bare_server.spec.port}/publish?pad={pad}")

        ceiling = await _phase(
            "bare Starlette websocket, pre-serialised bytes",
            bare_server,
            config,
            lambda i: open_socket(bare_server.spec.port, "/ws"),
            broadcast,
            bare_stamp,
        )
        ours = await _phase(
            "usageUpdates over graphql-transport-ws",
            ours_server,
            config,
            open_ours,
            record if notices is None else notify,
            ours_stamp,
        )
        if notices is not None:
            await notices.aclose()
    row = Comparison(
        workload=f"live fan-out, {config.subscribers:,} subscribers x {config.rate:g} events/s",
        unit="deliveries/s",
        ours=ours.measurement,
        ceiling=ceiling.measurement,
        target_ratio=TARGET_RATIO,
        details={
            "subscribers": config.subscribers,
            "events_per_second": config.rate,
            "seconds": config.duration,
            "distinct_subscriptions": config.accounts,
            "broadcast": config.broadcast.split("://", 1)[0],
            "events": config.events,
            "writes_through": (
                "a second instance" if config.separate_writer else "the measured one"
            )
            if config.events == "writes"
            else "none (notices published on Redis)",
            "delivered_ours": f"{ours.measurement.operations}/{ours.expected}",
            "delivered_ceiling": f"{ceiling.measurement.operations}/{ceiling.expected}",
            "p99_ms_ours": round(percentile(ours.measurement.latencies, 0.99) * 1000, 2),
            "p99_ms_ceiling": round(percentile(ceiling.measurement.latencies, 0.99) * 1000, 2),
            "p99_target_ms": TARGET_P99_MS,
            "p99_within_target": percentile(ours.measurement.latencies, 0.99) * 1000
            <= TARGET_P99_MS,
            "rss_per_idle_connection_kib_ours": round(ours.rss_per_connection / 1024, 1),
            "rss_per_idle_connection_kib_ceiling": round(ceiling.rss_per_connection / 1024, 1),
        },
    )
    for name, value in row.details.items():
        print(f"  {name}: {value}")
    return [row]


def _arguments(argv: list[str] | None = None) -> FanoutConfig:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__)
    defaults = FanoutConfig()
    parser.add_argument("--subscribers", type=int, default=defaults.subscribers)
    parser.add_argument("--rate", type=float, default=defaults.rate)
    parser.add_argument("--duration", type=float, default=defaults.duration)
    parser.add_argument(
        "--accounts", type=int, default=defaults.accounts,
        help="distinct subscriptions: subscribers and events are spread over this many accounts",
    )  # fmt: skip
    parser.add_argument(
        "--broadcast", default=defaults.broadcast,
        help="redis://… (default), or memory:// (one instance; needs --events writes)",
    )  # fmt: skip
    parser.add_argument(
        "--events", default=defaults.events, choices=("notices", "writes"),
        help="notices (default): published on Redis as a writer instance does after commit; "
        "writes: real recordUsage calls",
    )  # fmt: skip
    args = parser.parse_args(argv)
    return FanoutConfig(
        args.subscribers, args.rate, args.duration, args.accounts, args.broadcast, args.events
    ).checked()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(ServerSpec(**json.loads(sys.argv[2])))
        return
    config = _arguments()

    async def bench(server_url: str) -> list[Comparison]:
        return await run(server_url, config)

    standalone("fanout", bench)


if __name__ == "__main__":
    main()
