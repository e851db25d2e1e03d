"""`costgraph serve` and `costgraph demo` on the embedded PostgreSQL, stopped every way a
user stops them, leave no database process behind; and the served address is the issuer.

Each test has a data directory of its own and no COSTGRAPH_DATABASE_URL, as a new user runs
the commands; the PostgreSQL processes counted are those serving that directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.servers import free_port

BIN = Path(sys.executable).parent


def _environment(data_dir: Path) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("COSTGRAPH_")}
    environment.update(
        PATH=f"{BIN}{os.pathsep}{environment.get('PATH', '')}",
        COSTGRAPH_DATA_DIR=str(data_dir),
        COSTGRAPH_ALERTS_WORKER="false",
        COSTGRAPH_REPORTS_SCHEDULER="false",
    )
    return environment


def postgres_of(data_dir: Path) -> list[psutil.Process]:
    """The PostgreSQL server processes whose data directory is under ``data_dir``."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        try:
            cmdline = " ".join(process.info["cmdline"] or [])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if "postgres" in (process.info["name"] or "") and str(data_dir) in cmdline:
            found.append(process)
    return found


def assert_none_left(data_dir: Path) -> None:
    deadline = time.monotonic() + 20
    while postgres_of(data_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert postgres_of(data_dir) == [], "a PostgreSQL process outlived the command"


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    for process in postgres_of(tmp_path):  # whatever a failed test left: not the next's
        process.kill()


def _serve(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        ["costgraph", "serve", "--port", str(port), "--log-level", "warning"],
        env=_environment(data_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).is_success:
                return server
        except httpx.TransportError:
            pass
        assert server.poll() is None, "costgraph serve exited"
        assert time.monotonic() < deadline, "costgraph serve did not become ready"
        time.sleep(0.2)


def _run(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["costgraph", *args],
        env=_environment(data_dir),
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )


def test_demo_leaves_nothing_running(data_dir: Path) -> None:
    result = _run(data_dir, "demo")
    assert "Access token" in result.stdout
    assert result.stderr == ""  # quiet unless --verbose: stdout can be captured as is
    assert_none_left(data_dir)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_serve_stopped_leaves_nothing_running(data_dir: Path, stop: signal.Signals) -> None:
    server = _serve(data_dir, free_port())
    assert postgres_of(data_dir)
    server.send_signal(stop)
    server.wait(timeout=60)
    assert_none_left(data_dir)


def test_a_second_command_shares_the_server_and_the_issuer_follows_the_port(
    data_dir: Path,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = _serve(data_dir, port)
    try:
        _run(data_dir, "demo")  # a second process on the same data directory, then gone
        token = _run(data_dir, "token", "--org", "demo", "--role", "org_admin").stdout.strip()
        assert server.poll() is None and postgres_of(data_dir)  # still serving
        answer = httpx.post(
            f"{base}/graphql",
            json={"query": "{ organization { name } }"},
            headers={"Authorization": f"Bearer {token}"},
        ).json()
        assert answer == {"data": {"organization": {"name": "Demo Studio"}}}
        metadata = httpx.get(f"{base}/.well-known/oauth-authorization-server").json()
        assert metadata["issuer"] == base
        assert metadata["token_endpoint"] == f"{base}/oauth/token"
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert_none_left(data_dir)


def test_a_killed_server_is_stopped_by_the_next_command(data_dir: Path) -> None:
    server = _serve(data_dir, free_port())
    server.kill()  # SIGKILL: nothing of it runs, its PostgreSQL is orphaned for now
    server.wait(timeout=30)
    assert postgres_of(data_dir)
    _run(data_dir, "migrate")  # the next user of the directory is the last one out
    assert_none_left(data_dir)


def test_demo_terminated_mid_way_leaves_nothing_running(data_dir: Path) -> None:
    demo = subprocess.Popen(
        ["costgraph", "demo"],
        env=_environment(data_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not postgres_of(data_dir):  # wait until it has started its database
        assert demo.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    demo.send_signal(signal.SIGTERM)
    demo.wait(timeout=60)
    assert_none_left(data_dir)
