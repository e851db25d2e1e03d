"""Every example of the README and docs/ runs against a freshly seeded demo server.

The server is what a reader starts (`costgraph demo`, then `costgraph serve`) on a database
of its own, on the wall clock as a reader's would be; each page's examples run in one bash
session with the tools a reader has (`costgraph`, `curl`), so a page cannot promise a
command that fails.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from costgraph.kernel.database_url import plain_url
from tests.docs_examples import ROOT, examples, links, pages, script
from tests.servers import free_port

README_LIMIT = 8_500  # "at most about 8,000 characters"


@dataclass(frozen=True, slots=True)
class DemoServer:
    port: int
    environment: dict[str, str]


async def _create_database(server_url: str, name: str) -> str:
    admin = await asyncpg.connect(plain_url(server_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


async def _drop_database(server_url: str, name: str) -> None:
    admin = await asyncpg.connect(plain_url(server_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _reader_environment(database_url: str, data_dir: str, port: int) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("COSTGRAPH_") or key == "COSTGRAPH_TEST_NOW"
    }
    environment.pop("COSTGRAPH_TEST_NOW", None)
    environment.update(
        PATH=f"{bin_dir}{os.pathsep}{environment.get('PATH', '')}",
        COSTGRAPH_DATABASE_URL=database_url,
        COSTGRAPH_DATA_DIR=data_dir,
        COSTGRAPH_URL=f"http://127.0.0.1:{port}/graphql",
        COSTGRAPH_ISSUER=f"http://127.0.0.1:{port}",
    )
    return environment


@pytest.fixture(scope="module")
def demo_server(server_url: str) -> Iterator[DemoServer]:
    name = f"costgraph_docs_{uuid.uuid4().hex[:12]}"
    database_url = asyncio.run(_create_database(server_url, name))
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="costgraph-docs-") as data_dir:
        environment = _reader_environment(database_url, data_dir, port)
        subprocess.run(
            ["costgraph", "demo"], env=environment, check=True, timeout=300, capture_output=True
        )
        server = subprocess.Popen(
            ["costgraph", "serve", "--port", str(port), "--log-level", "warning"],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).is_success:
                        break
                except httpx.TransportError:
                    pass
                assert server.poll() is None, "costgraph serve exited"
                assert time.monotonic() < deadline, "costgraph serve did not become ready"
                time.sleep(0.2)
            token = subprocess.run(
                ["costgraph", "token", "--org", "demo", "--role", "org_admin"],
                env=environment,
                check=True,
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout.strip()
            yield DemoServer(port, {**environment, "COSTGRAPH_TOKEN": token})
        finally:
            server.terminate()
            server.wait(timeout=30)
    asyncio.run(_drop_database(server_url, name))


#: The README's tour runs in its own test below (once: its idempotency keys are fixed, as a
#: reader's first run would send them).
RUNNABLE = [
    page
    for page in pages()
    if page.name != "README.md" and any(e.not_run_because is None for e in examples(page))
]


def run_page(page: Path, server: DemoServer, workdir: str) -> subprocess.CompletedProcess[str]:
    """A page's examples in one bash session in ``workdir``; fails the test on any error."""
    result = subprocess.run(
        ["bash", "-c", script(examples(page), server.port)],
        env=server.environment,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (
        f"{result.stderr[-4000:]}\n--- stdout ---\n{result.stdout[-4000:]}"
    )
    return result


@pytest.mark.parametrize("page", RUNNABLE, ids=lambda page: str(page.relative_to(ROOT)))
def test_the_page_examples_run(page: Path, demo_server: DemoServer) -> None:
    with tempfile.TemporaryDirectory(prefix="costgraph-reader-") as workdir:
        run_page(page, demo_server, workdir)


def test_the_tour_shows_what_it_says(demo_server: DemoServer) -> None:
    """The README's tour: the hard cap refuses, the live watcher saw the balance move."""
    with tempfile.TemporaryDirectory(prefix="costgraph-reader-") as workdir:
        result = run_page(ROOT / "README.md", demo_server, workdir)
        live = Path(workdir, "live.jsonl").read_text(encoding="utf-8").splitlines()
    assert '"BudgetLimitReached"' in result.stdout
    assert "BUDGET_LIMIT_REACHED" in result.stdout
    assert len(live) == 2 and live[0] != live[1], live
    assert "row_type," in result.stdout  # the CSV's header line
    assert "settled:" in result.stdout  # the Python client's reserve-then-settle


def test_every_example_not_run_says_why() -> None:
    for page in pages():
        for example in examples(page):
            if example.not_run_because is not None:
                assert len(example.not_run_because) > 10, (page, example.line)


def test_relative_links_lead_to_files() -> None:
    broken = [
        (str(page.relative_to(ROOT)), target)
        for page in pages()
        for target in links(page)
        if target and not (page.parent / target).exists()
    ]
    assert broken == []


def test_the_readme_is_short() -> None:
    assert len((ROOT / "README.md").read_text(encoding="utf-8")) <= README_LIMIT
