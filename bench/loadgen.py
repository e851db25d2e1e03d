"""A small HTTP/1.1 keep-alive load generator on asyncio streams, loopback only.

httpx costs a few hundred microseconds of client CPU per request, which on a 2-core machine
would cap a bare Starlette route below its real rate and make every ratio look better than
it is. This client sends pre-built bytes and reads exactly ``Content-Length`` (or chunked)
bytes back: tens of thousands of requests per second per core, so the server is what is
measured. It is bounded in time *and* in request count, and refuses any host but 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from bench.stats import Measurement

LOOPBACK = "127.0.0.1"
MAX_REQUESTS = 1_000_000
MAX_DURATION = 120.0


class LoadError(RuntimeError):
    pass


def _require_loopback(host: str) -> None:
    if host != LOOPBACK:
        raise LoadError(f"the load generator only targets {LOOPBACK} (got {host!r})")


@dataclass(slots=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


class Connection:
    """One keep-alive connection; requests on it run one after another."""

    def __init__(self, host: str, port: int) -> None:
        _require_loopback(host)
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError):
                await self.writer.wait_closed()

    def encode(
        self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    async def send(self, raw: bytes) -> Response:
        if self.reader is None or self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = await self._chunked()
        else:
            raise LoadError("response without Content-Length or chunked encoding")
        return Response(status, headers, body)

    async def _chunked(self) -> bytes:
        assert self.reader is not None
        parts: list[bytes] = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> Response:
        return await self.send(self.encode(method, path, body, headers))


async def wait_ready(
    port: int, path: str, within_seconds: float, alive: Callable[[], bool]
) -> None:
    """Poll ``GET path`` until it answers 200, the process dies, or the time is up."""
    deadline = time.monotonic() + within_seconds
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not alive():
            raise LoadError("the server process exited during start-up")
        connection = Connection(LOOPBACK, port)
        try:
            response = await connection.request("GET", path)
            if response.status == 200:
                return
        except (OSError, asyncio.IncompleteReadError) as exc:
            last = exc
        finally:
            await connection.close()
        await asyncio.sleep(0.05)
    raise LoadError(f"server on port {port} not ready after {within_seconds:.0f}s ({last})")


@dataclass(slots=True)
class LoadPlan:
    """What to send: ``body_for(i)`` makes request ``i``'s body (each may differ)."""

    path: str
    body_for: Callable[[int], bytes]
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Bytes every successful response body contains (checked on each response).
    expect: bytes = b""
    concurrency: int = 16
    duration: float = 5.0
    warmup: float = 1.0
    max_requests: int = 200_000


async def run_load(port: int, plan: LoadPlan, label: str) -> Measurement:
    """Closed loop: ``concurrency`` connections, each sending its next request on the answer.

    Requests started during the warm-up are not counted; the measured window runs from the
    end of the warm-up until the last counted request is answered.
    """
    if not 0 < plan.duration <= MAX_DURATION or not 0 < plan.max_requests <= MAX_REQUESTS:
        raise LoadError("duration and request count must be bounded")
    headers = {"Content-Type": "application/json", **plan.headers}
    connections = [Connection(LOOPBACK, port) for _ in range(plan.concurrency)]
    await asyncio.gather(*(c.open() for c in connections))
    start = time.perf_counter()
    measure_from = start + plan.warmup
    deadline = measure_from + plan.duration
    issued = 0
    counted = 0
    errors = 0
    first_error: str | None = None
    latencies: list[float] = []
    finished = measure_from

    async def worker(connection: Connection) -> None:
        nonlocal issued, counted, errors, first_error, finished
        while True:
            sent_at = time.perf_counter()
            if sent_at >= deadline or issued >= plan.max_requests:
                return
            index = issued
            issued += 1
            raw = connection.encode("POST", plan.path, plan.body_for(index), headers)
            response = await connection.send(raw)
            done = time.perf_counter()
            if response.status != 200 or plan.expect not in response.body:
                errors += 1  # warm-up failures count too: a failing server never passes
                if first_error is None:
                    first_error = f"{response.status}: {response.body[:300]!r}"
            if sent_at < measure_from:
                continue
            counted += 1
            latencies.append(done - sent_at)
            finished = max(finished, done)

    try:
        await asyncio.gather(*(worker(c) for c in connections))
    finally:
        await asyncio.gather(*(c.close() for c in connections))
    if first_error is not None:
        print(f"  {label}: {errors} failed responses, first: {first_error}")
    return Measurement(
        label=label,
        operations=counted,
        seconds=max(finished - measure_from, 1e-9),
        latencies=tuple(latencies),
        errors=errors,
    )


def merge(label: str, parts: Sequence[Measurement]) -> Measurement:
    """Slices of one side measured in turns, as one measurement."""
    return Measurement(
        label=label,
        operations=sum(p.operations for p in parts),
        seconds=sum(p.seconds for p in parts),
        latencies=tuple(latency for p in parts for latency in p.latencies),
        errors=sum(p.errors for p in parts),
    )


async def alternate(sides: Sequence[tuple[str, int, LoadPlan]], rounds: int) -> list[Measurement]:
    """Measure each ``(label, port, plan)`` in turn, ``rounds`` times, so that drift on a
    shared machine spreads over all sides alike; each slice lasts ``plan.duration``."""
    parts: dict[str, list[Measurement]] = {label: [] for label, _, _ in sides}
    for _ in range(rounds):
        for label, port, plan in sides:
            parts[label].append(await run_load(port, plan, label))
    return [merge(label, parts[label]) for label, _, _ in sides]
