"""Real server processes for tests that need more than one instance."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx

from costgraph.app.settings import Settings
from tests.dates import clock_environment


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_environment(settings: Settings, **env: str) -> dict[str, str]:
    """The environment of a server process on the test's database, keys, token audience,
    business clock and late-arrival window."""
    assert settings.database_url
    return dict(
        os.environ,
        COSTGRAPH_DATABASE_URL=settings.database_url,
        COSTGRAPH_DATA_DIR=str(settings.data_dir),
        COSTGRAPH_ISSUER=settings.issuer,
        COSTGRAPH_AUDIENCE=settings.audience,
        COSTGRAPH_LATE_ARRIVAL_WINDOW_SECONDS=str(settings.late_arrival_window_seconds),
        **clock_environment(),
        **env,
    )


@contextlib.contextmanager
def running_servers(
    settings: Settings, count: int, *, ports: list[int] | None = None, **env: str
) -> Iterator[list[str]]:
    """Start ``count`` uvicorn processes of the app on one database; yield their base URLs.
    ``ports``: where they listen (e.g. again where a stopped one did); default: free ones."""
    environment = server_environment(settings, **env)
    ports = ports or [free_port() for _ in range(count)]
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "costgraph.app.asgi:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=environment,
        )
        for port in ports
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        deadline = time.monotonic() + 30
        for url in urls:
            while True:
                try:
                    if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server at {url} did not become ready")
                time.sleep(0.1)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
