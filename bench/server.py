"""Servers for the HTTP benches, each in its own process (its own GIL, its own core).

The parent starts ``python -m bench.server KIND CONFIG_JSON`` and waits for ``/healthz``.
Every kind runs under one uvicorn configuration — loopback, one worker, uvicorn's default
loop and HTTP parser (uvloop and httptools when installed, as ``costgraph serve`` gets), no
access log — so ours and the ceiling differ only in the application.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.loadgen import LOOPBACK, wait_ready

REPO_ROOT = Path(__file__).resolve().parent.parent
COSTGRAPH = "costgraph"
BARE = "bare"
KINDS = (COSTGRAPH, BARE)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    kind: str
    port: int
    database_url: str
    data_dir: str
    organization_id: str | None = None
    currency: str = "USD"
    #: :mod:`bench.tuning` experiments applied to the app before it is built.
    tuning: tuple[str, ...] = ()
    #: Also the server options ``costgraph serve`` sets (the request-head guard, websocket
    #: message size, shutdown grace: ``costgraph.app.cli.uvicorn_options``).
    as_served: bool = False


def clock_environment() -> dict[str, str]:
    """The business clock for a server process: this process's, when it runs on a set clock
    (a bench run from the tests at COSTGRAPH_TEST_NOW), so the server dates events as the
    workload does."""
    from costgraph.kernel.clock import SystemClock, format_rfc3339, installed, utcnow

    if isinstance(installed(), SystemClock):
        return {}
    return {"COSTGRAPH_CLOCK_START": format_rfc3339(utcnow())}


def build_app(config: ServerConfig) -> Any:
    from bench import apps, tuning
    from bench.db import bench_settings
    from costgraph.app.business_clock import install_configured_clock
    from costgraph.app.main import create_app

    settings = bench_settings(Path(config.data_dir), config.database_url)
    install_configured_clock(settings)  # COSTGRAPH_CLOCK_START, for the bare app too
    if config.kind == COSTGRAPH:
        tuning.apply(config.tuning)
        return create_app(settings, config.database_url)
    if config.kind == BARE:
        assert config.organization_id is not None
        return apps.bare_app(
            settings, config.database_url, uuid.UUID(config.organization_id), config.currency
        )
    raise SystemExit(f"unknown server kind {config.kind!r}; one of {', '.join(KINDS)}")


def serve(config: ServerConfig) -> None:
    import uvicorn

    options: dict[str, Any] = {}
    if config.as_served:
        from bench.db import bench_settings
        from costgraph.app.cli import uvicorn_options

        options = uvicorn_options(bench_settings(Path(config.data_dir), config.database_url))
    uvicorn.Server(
        uvicorn.Config(
            build_app(config),
            host=LOOPBACK,
            port=config.port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            **options,
        )
    ).run()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """A started server: its port, its log, its process (ours to stop)."""

    def __init__(self, config: ServerConfig, log_dir: Path) -> None:
        self.config = config
        self.log_path = log_dir / f"{config.kind}-{config.port}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.server", json.dumps(asdict(config))],
            cwd=REPO_ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **clock_environment()},
        )

    @property
    def port(self) -> int:
        return self.config.port

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, limit: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_bytes()[-limit:].decode(errors="replace")

    def stop(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)  # uvicorn shuts down gracefully
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log.close()


@contextlib.asynccontextmanager
async def started(
    *configs: ServerConfig, within_seconds: float = 60.0
) -> AsyncIterator[list[ServerProcess]]:
    """Start every server at once (start-up overlaps), wait until all are ready, stop all."""
    with tempfile.TemporaryDirectory(prefix="costgraph-bench-logs-") as logs:
        servers = [ServerProcess(config, Path(logs)) for config in configs]
        try:
            for server in servers:
                try:
                    await wait_ready(server.port, "/healthz", within_seconds, server.alive)
                except Exception as exc:
                    raise RuntimeError(
                        f"{server.config.kind} server did not start:\n{server.log_tail()}"
                    ) from exc
            yield servers
        finally:
            for server in servers:
                await asyncio.to_thread(server.stop)


if __name__ == "__main__":
    arguments = json.loads(sys.argv[1])
    serve(ServerConfig(**{**arguments, "tuning": tuple(arguments.get("tuning", ()))}))
