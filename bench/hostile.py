"""What refusing hostile traffic costs the server: for each hostile document and each hostile
request head, the server's CPU per refusal against the trivial query ``{ me { subject } }``
as the ceiling (the same server, the same connection handling, in alternating rounds), and
the server's memory before and after 10,000 unique hostile documents.

The server runs as ``costgraph serve`` runs it (the request-head guard of app/http_guard.py,
uvicorn's httptools parser, uvloop), in its own process; its CPU is read from the OS
(user + system, psutil), with the idle rate of its background jobs subtracted. Every hostile
document is unique (a whitespace or comment change defeats any cache, as an attacker's
would). Target (docs/architecture.md): a refusal costs at most 2x a trivial query — reported as
refusals per CPU-second, at least 0.5x the trivial query's — and memory stays flat.

    python -m bench.hostile [--requests 300] [--rounds 3] [--memory-documents 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil

from bench.db import bench_settings, create_tenant, fresh_database, integrator_token
from bench.loadgen import LOOPBACK, Connection
from bench.report import standalone
from bench.server import COSTGRAPH, ServerConfig, ServerProcess, free_port, started
from bench.stats import Comparison, Measurement

TARGET_RATIO = 0.5
TRIVIAL = b'{"query":"{ me { subject } }"}'
#: The trivial query with 9.5 MB of variables: what any body of that size costs to take in.
BIG_TRIVIAL = orjson.dumps(
    {"query": "query($x: String) { me { subject } }", "variables": {"x": "x" * 9_500_000}}
)
MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class HostileConfig:
    #: Requests per hostile kind per round (a third of it for the 9.5 MB documents; ``huge``
    #: for the bodies read whole).
    requests: int = 300
    huge: int = 8
    rounds: int = 3
    memory_documents: int = 10_000
    #: Connections sending a head a byte a second (0: not measured; it takes the timeout).
    slow_heads: int = 20


def _documents() -> dict[str, Callable[[int], str]]:
    """Each hostile document, unique per request ``i`` (a comment or white space)."""
    return {
        "490 repeated fields (7 KB)": lambda i: "{" + " me { subject }" * 490 + "}" + " " * i,
        "5,000 tokens (10 KB)": lambda i: "{ " + "a " * 5_000 + f"}} # {i}",
        "1,500 field selections": lambda i: (
            "{ " + " ".join(f"f{n}" for n in range(1_500)) + f" }} # {i}"
        ),
        "depth 40": lambda i: "{" + "a{" * 40 + "b" + "}" * 41 + f" # {i}",
        "60 aliases": lambda i: (
            "{ " + " ".join(f"a{n}: me {{ subject }}" for n in range(60)) + f" }} # {i}"
        ),
        "fragment fan-out 2^40 (80 spreads)": lambda i: _fan_out(i),
        "12 repeated fragment spreads": lambda i: (
            "{ me { " + "...P " * 12 + "} }\nfragment P on Principal { subject }" + f" # {i}"
        ),
    }


HUGE_FILL = 9_500_000


def _huge_documents() -> dict[str, Callable[..., str]]:
    """Each 9.5 MB document, unique per request ``i``; ``fill`` shortens its filler (the client
    builds only the bytes it sends, :func:`_body_head`)."""
    return {
        "9.5 MB comment": lambda i, fill=HUGE_FILL: f"{{ me {{ subject }} }} # {i}\n#" + "x" * fill,
        "9.5 MB string literal": lambda i, fill=HUGE_FILL: (
            f'{{ me(a: "{i}' + "x" * fill + '") { subject } }'
        ),
    }


def _body_head(make: Callable[..., str], serial: int, token: str, size: int) -> tuple[bytes, int]:
    """The first ``size`` bytes of the request carrying ``make(serial)`` and how many bytes
    of it follow: the same bytes as the whole request's (each filler character is one byte of
    JSON), without building 9.5 MB on the client for each request — that cost no server CPU
    but stretched each measurement's wall time, and with it the error of the idle-rate
    correction."""
    short = HUGE_FILL if size >= HUGE_FILL else size
    body = orjson.dumps({"query": make(serial, short)})
    full = len(body) + HUGE_FILL - short
    whole = _post("/graphql", body, token)
    head = whole[: len(whole) - len(body)].replace(
        f"Content-Length: {len(body)}".encode(), f"Content-Length: {full}".encode()
    )
    return (head + body)[:size], len(head) + full - size


#: A 9.5 MB document behind 300 KB of variables (as Apollo Client orders the members): past
#: the window app/document_stream.py watches, so it costs what any body of its size costs.
PADDED = "9.5 MB comment behind 300 KB of variables"


def row_name(name: str) -> str:
    """The table's row of a hostile input (the padded one names its own ceiling)."""
    if name == PADDED:
        return f"refuse: {name} (vs the trivial query with 9.5 MB of variables)"
    return f"refuse: {name}"


def _padded(i: int) -> bytes:
    document = _huge_documents()["9.5 MB comment"](i)
    return orjson.dumps({"variables": {"pad": "x" * 300_000}, "query": document})


def _fan_out(i: int, levels: int = 40) -> str:
    fragments = "\n".join(
        f"fragment {name}{n} on Principal {{ subject ...A{n + 1} ...B{n + 1} }}"
        for n in range(levels)
        for name in "AB"
    )
    ends = (
        f"fragment A{levels} on Principal {{ subject }}\n"
        f"fragment B{levels} on Principal {{ subject }}"
    )
    return f"{{ me {{ ...A0 }} }} # {i}\n{fragments}\n{ends}"


#: Request heads, each sent on a connection of its own until the server answers.
HEADS: dict[str, tuple[bytes, int]] = {
    "32 MiB Authorization header": (
        b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer ",
        32 * MB,
    ),
    "unfinished 64 MiB header on /healthz": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: ", 64 * MB),
    "20 KiB request line": (b"GET /healthz?" + b"a" * 20_480 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 0),
    "6,000 short header lines": (b"GET /healthz HTTP/1.1\r\n" + b"X-A: b\r\n" * 6_000 + b"\r\n", 0),
}


@dataclass
class CpuMeter:
    """The server process's CPU seconds, less its idle rate (background jobs) over the wall
    time of each measurement."""

    process: psutil.Process
    idle_rate: float = 0.0
    seconds: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def cpu(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)

    async def calibrate(self, seconds: float = 2.0) -> None:
        before, started_at = self.cpu(), time.perf_counter()
        await asyncio.sleep(seconds)
        self.idle_rate = (self.cpu() - before) / (time.perf_counter() - started_at)

    async def measure(self, label: str, count: int, work: Awaitable[None]) -> None:
        before, started_at = self.cpu(), time.perf_counter()
        await work
        spent = self.cpu() - before - self.idle_rate * (time.perf_counter() - started_at)
        self.seconds[label] = self.seconds.get(label, 0.0) + max(spent, 1e-6)
        self.counts[label] = self.counts.get(label, 0) + count

    def measurement(self, label: str) -> Measurement:
        return Measurement(label, self.counts[label], self.seconds[label])


def _post(path: str, body: bytes, token: str) -> bytes:
    return Connection(LOOPBACK, 0).encode(
        "POST",
        path,
        body,
        {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )


async def _posts(port: int, bodies: list[bytes], token: str, expect: int) -> None:
    """On one keep-alive connection; each answer must be ``expect``."""
    connection = Connection(LOOPBACK, port)
    try:
        for body in bodies:
            response = await connection.send(_post("/graphql", body, token))
            if response.status != expect:
                raise RuntimeError(f"expected {expect}, got {response.status}: {response.body!r}")
    finally:
        await connection.close()


async def _trivial_fresh(port: int, count: int, token: str) -> None:
    """The trivial query, each on a connection of its own (the heads' own connection cost)."""
    for _ in range(count):
        await _posts(port, [TRIVIAL], token, 200)


async def _head(port: int, head: bytes, flood: int) -> int:
    """Send ``head`` (then up to ``flood`` more bytes of its last line) on a new connection
    until the server answers; the status, or 0 when a flood ran into the closed connection
    before its answer was read (the client's send buffers hold megabytes: the server, done
    lingering, closes with them unread)."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        writer.write(head)
        sent, piece = 0, b"a" * 65_536
        with contextlib.suppress(OSError):
            while sent < flood and not reader.at_eof() and not reader._buffer:  # type: ignore[attr-defined]
                writer.write(piece)
                sent += len(piece)
                await writer.drain()
                await asyncio.sleep(0)  # let the loop read: the answer may be there
        try:
            status_line = await asyncio.wait_for(reader.readline(), 30)
        except OSError:
            if not flood:
                raise
            return 0
        return int(status_line.split()[1])
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _refused_bodies(
    port: int, make: Callable[[int], str], serials: range, token: str
) -> None:
    """Each document's body (made when sent) on a connection of its own, sent 64 KiB at a
    time until the server answers: it must refuse with 413 before the end (or have closed
    before its answer was read: the rest of the body is never read, a refusal all the
    same)."""
    for serial in serials:
        head, rest = _body_head(make, serial, token, 65_536)
        status = await _head(port, head, rest)
        if status not in (413, 0):
            raise RuntimeError(f"expected 413, got {status}")


async def _heads(port: int, head: bytes, flood: int, count: int) -> None:
    for _ in range(count):
        status = await _head(port, head, flood)
        if status not in (431, 0 if flood else 431):
            raise RuntimeError(f"expected 431, got {status}")


async def _slow_heads(port: int, connections: int) -> float:
    """``connections`` heads sent a byte a second; seconds until the server closed them all."""

    async def one() -> None:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        with contextlib.suppress(ConnectionError):
            while not reader.at_eof() and not reader._buffer:  # type: ignore[attr-defined]
                writer.write(b"X")
                await writer.drain()
                await asyncio.sleep(1.0)
        with contextlib.suppress(ConnectionError):
            await reader.read()
        writer.close()

    started_at = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(one() for _ in range(connections))), 120)
    return time.perf_counter() - started_at


async def measure(server: ServerProcess, token: str, config: HostileConfig) -> list[Comparison]:
    port = server.port
    meter = CpuMeter(psutil.Process(server.process.pid))
    documents, huge = _documents(), _huge_documents()
    await _posts(port, [TRIVIAL] * 200, token, 200)  # warm-up
    for make in documents.values():
        await _posts(port, [orjson.dumps({"query": make(-1)})], token, 200)
    await meter.calibrate()
    trivial = "trivial query { me { subject } } (keep-alive)"
    big = "trivial query with 9.5 MB of variables"
    serial = 0
    for _ in range(config.rounds):
        await meter.measure(
            trivial, config.requests, _posts(port, [TRIVIAL] * config.requests, token, 200)
        )
        for name, make in documents.items():
            bodies = [orjson.dumps({"query": make(serial + n)}) for n in range(config.requests)]
            serial += config.requests
            await meter.measure(name, config.requests, _posts(port, bodies, token, 200))
        for name, make in huge.items():  # refused early now: as many as the headers'
            count = max(1, config.requests // 3)
            serials = range(serial, serial + count)
            serial += count
            await meter.measure(name, count, _refused_bodies(port, make, serials, token))
        bodies = [_padded(serial + n) for n in range(config.huge)]
        serial += config.huge
        await meter.measure(PADDED, config.huge, _posts(port, bodies, token, 200))
        await meter.measure(big, config.huge, _posts(port, [BIG_TRIVIAL] * config.huge, token, 200))
        fresh = "trivial query on a new connection each"
        count = max(1, config.requests // 3)
        await meter.measure(fresh, count, _trivial_fresh(port, count, token))
        for name, (head, flood) in HEADS.items():
            count = max(1, config.requests // 10) if flood else max(1, config.requests // 3)
            await meter.measure(name, count, _heads(port, head, flood, count))
    ceiling = meter.measurement(trivial)
    rows = [
        Comparison(
            row_name(name),
            "refusals per CPU-second",
            meter.measurement(name),
            # A document behind 300 KB of variables is found once the body is read, as any
            # body must be before its last member is known: its trivial query is the one
            # carrying as many bytes (the token and the principal's rate limit were checked
            # before a byte of it was read). Its cost against the bare trivial query is in
            # the details.
            ceiling if name != PADDED else meter.measurement(big),
            TARGET_RATIO,
            details={
                "cpu_per_refusal_us": round(meter.seconds[name] / meter.counts[name] * 1e6, 1)
            },
        )
        for name in [*documents, *huge, PADDED, *HEADS]
    ]
    for row in rows:
        if row.workload.startswith("refuse: 9.5 MB"):
            per = meter.seconds[big] / meter.counts[big]
            row.details["vs_trivial_with_same_body_size"] = round(
                per / (row.ours.seconds / row.ours.operations), 2
            )
            row.details["vs_trivial_query"] = round(
                (ceiling.seconds / ceiling.operations) / (row.ours.seconds / row.ours.operations),
                3,
            )
    slow = await _slow_heads(port, config.slow_heads) if config.slow_heads else None
    memory = await _memory(server, port, token, config.memory_documents)
    rows[0].details.update(
        {
            "trivial_cpu_per_request_us": round(ceiling.seconds / ceiling.operations * 1e6, 1),
            "trivial_new_connection_cpu_us": round(
                meter.seconds[fresh] / meter.counts[fresh] * 1e6, 1
            ),
            "slow_heads": config.slow_heads,
            "slow_heads_closed_after_seconds": None if slow is None else round(slow, 1),
            "memory": memory,
        }
    )
    return rows


async def _memory(server: ServerProcess, port: int, token: str, documents: int) -> dict[str, Any]:
    """Server RSS before and after ``documents`` unique hostile documents, then as many unique
    accepted ones (which the document cache keeps, within its byte budget)."""
    process = psutil.Process(server.process.pid)

    def rss() -> float:
        return round(process.memory_info().rss / MB, 1)

    before = rss()
    make = _documents()["490 repeated fields (7 KB)"]
    for start in range(0, documents, 500):
        stop = min(start + 500, documents)
        bodies = [orjson.dumps({"query": make(n) + f" # {n}"}) for n in range(start, stop)]
        await _posts(port, bodies, token, 200)
    after_hostile = rss()
    for start in range(0, documents, 500):
        bodies = [
            orjson.dumps({"query": f"{{ me {{ subject }} }} # {n} {'x' * 500}"})
            for n in range(start, min(start + 500, documents))
        ]
        await _posts(port, bodies, token, 200)
    return {
        "documents": documents,
        "rss_before_mib": before,
        "rss_after_hostile_mib": after_hostile,
        "rss_after_as_many_accepted_mib": rss(),
    }


async def run(server_url: str, config: HostileConfig | None = None) -> list[Comparison]:
    async with fresh_database(server_url) as url:
        with tempfile.TemporaryDirectory(prefix="costgraph-bench-") as tmp:
            settings = bench_settings(Path(tmp), url)
            tenant = await create_tenant(settings, url, accounts=1, users=1)
            token = integrator_token(settings, tenant.org.id)
            server_config = ServerConfig(
                COSTGRAPH, free_port(), url, tmp, str(tenant.org.id), as_served=True
            )
            async with started(server_config) as (server,):
                return await measure(server, token, config or HostileConfig())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="per kind per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory-documents", type=int, default=10_000)
    args = parser.parse_args()
    config = HostileConfig(
        requests=args.requests, rounds=args.rounds, memory_documents=args.memory_documents
    )
    rows = standalone("hostile", lambda url: run(url, config))
    print(orjson.dumps(rows[0].details, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
