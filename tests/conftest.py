"""Test fixtures on a real PostgreSQL: the machine's server when COSTGRAPH_DATABASE_URL is
set, else an embedded one. Each run gets a fresh database, migrated once; tests isolate by
creating their own organisation (tenant), which is also how production isolates.

The business clock (``costgraph.kernel.clock.utcnow``): with ``COSTGRAPH_TEST_NOW`` (RFC 3339,
e.g. ``2028-02-29T23:59:30Z``) set, every test starts with the clock at that same instant (an
autouse fixture installs a fresh ``ShiftedClock`` before each test, which then ticks at the
wall clock's pace); unset, tests run on the system clock. Test data is dated relative to the
clock with tests/dates.py, anchored at the test's start; a test that must cross a boundary
moves the clock itself (``dates.set_now``), and the next test starts afresh. Server processes
a test starts get the same clock through ``COSTGRAPH_CLOCK_START`` (``dates.clock_environment``).
Security and operational time (tokens, rate limits, leases) stays on the wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url
from starlette.applications import Starlette

from costgraph.app.database import create_engine, create_sessionmaker
from costgraph.app.embedded import start_embedded_postgres
from costgraph.app.main import create_app
from costgraph.app.migrate import migrate
from costgraph.app.settings import Settings
from costgraph.app.state import AppState
from costgraph.auth.keys import KeyStore
from costgraph.auth.tokens import mint_access_token
from costgraph.billing import directory
from costgraph.billing.directory import OrgContext
from costgraph.kernel import clock
from costgraph.kernel.clock import ShiftedClock, SystemClock, parse_rfc3339
from costgraph.kernel.database_url import plain_url
from costgraph.models.scoping import bind_tenant
from tests import dates


def _test_now() -> datetime | None:
    text = os.environ.get("COSTGRAPH_TEST_NOW")
    if not text:
        return None
    try:
        return parse_rfc3339(text)
    except ValueError as exc:
        raise pytest.UsageError(f"COSTGRAPH_TEST_NOW: {exc}") from exc


#: The instant every test starts at, or None for the system clock.
TEST_NOW = _test_now()


def _fresh_clock() -> clock.Clock:
    return SystemClock() if TEST_NOW is None else ShiftedClock(TEST_NOW)


# Module constants of test files (computed at import) count from the session's start.
clock.install(_fresh_clock())
dates.anchor(TEST_NOW)


@pytest.fixture(autouse=True)
def business_clock() -> Iterator[None]:
    """Every test starts on a fresh business clock (at COSTGRAPH_TEST_NOW when set), with the
    date helpers anchored there; whatever clock a test installs ends with it."""
    clock.install(_fresh_clock())
    dates.anchor(TEST_NOW)
    yield
    clock.install(_fresh_clock())


@pytest.fixture(scope="session")
def data_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="costgraph-test-") as path:
        yield Path(path)


@pytest.fixture(scope="session")
def server_url(data_dir: Path) -> Iterator[str]:
    """A PostgreSQL server: the configured one, or an embedded one for this run."""
    configured = os.environ.get("COSTGRAPH_DATABASE_URL")
    if configured:
        yield configured
        return
    url, server = start_embedded_postgres(data_dir)
    yield url
    del server


@pytest.fixture(scope="session")
async def database_url(server_url: str) -> AsyncIterator[str]:
    """A fresh database on that server, migrated to head, dropped afterwards.

    ``COSTGRAPH_TEST_KEEP_DATABASE=<file>`` keeps it instead and writes its URL to the file,
    for a check after the session (CI runs ``costgraph verify`` on it, then drops it with
    ``scripts/drop_database.py <file>``). Meaningful with ``COSTGRAPH_DATABASE_URL`` set: an
    embedded server stops with the session."""
    name = f"costgraph_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(plain_url(server_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    keep = os.environ.get("COSTGRAPH_TEST_KEEP_DATABASE")
    if keep:
        await asyncio.to_thread(Path(keep).write_text, url + "\n", "utf-8")
    await migrate(url)
    yield url
    if keep:
        return
    admin = await asyncpg.connect(plain_url(server_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def settings(data_dir: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        issuer="https://costgraph.test",
        audience="costgraph-test",
        introspection=True,
        # Alert tests run their own delivery workers; their receivers listen on loopback.
        alerts_worker=False,
        alerts_allowed_networks=["127.0.0.0/8"],
        # P&L tests run the rollup job themselves (answers are exact either way); a job in
        # the background would write rollup rows while tests count rows.
        rollup_interval_seconds=0,
        # Report schedule tests run their own scheduler rounds (`run_due`).
        reports_scheduler=False,
        # Forecast alert tests run their own rounds (`ForecastAlerts.tick`).
        forecast_alert_interval_seconds=0,
        # Subscription billing tests run their own rounds (`bill_round`).
        subscription_billing_interval_seconds=0,
        # The limiter runs on every request of the suite, with budgets no test reaches;
        # tests/test_rate_limit.py builds apps with small ones.
        rate_limit_principal_per_minute=100_000_000,
        rate_limit_client_per_minute=100_000_000,
        # Tests seed history (P&L, forecasts, exports, reports, partitions of past years) with
        # plain writes, so the suite's app takes events of any age (the most the setting
        # allows, a century); the late-arrival policy itself is tested at the shipped default,
        # 72 hours (tests/test_late_arrival.py sets it on the app's limits).
        late_arrival_window_seconds=36_525 * 86_400,
    )


@pytest.fixture(scope="session")
async def app(settings: Settings, database_url: str) -> AsyncIterator[Starlette]:
    application = create_app(settings, database_url)
    async with application.router.lifespan_context(application):
        yield application


def app_state(application: Starlette) -> AppState:
    """The AppState an app's ``/graphql`` route serves with."""
    graphql = next(r for r in application.routes if getattr(r, "path", "") == "/graphql")
    result: AppState = graphql.app.state  # type: ignore[attr-defined]
    return result


@pytest.fixture(scope="session")
def state(app: Starlette) -> AppState:
    return app_state(app)


@pytest.fixture(scope="session")
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture(scope="session")
def keys(settings: Settings) -> KeyStore:
    store = KeyStore(settings.key_dir)
    store.ensure()
    return store


@dataclass
class Tenant:
    """A fresh organisation with one customer and one account, and an org_admin token."""

    org: OrgContext
    customer_id: uuid.UUID
    account_id: uuid.UUID
    token: str
    client: httpx.AsyncClient
    mint: Any

    async def gql(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        response = await self.client.post(
            "/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"Authorization": f"Bearer {token or self.token}"},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def token_for(self, *, roles: list[str] | None = None, scopes: list[str] | None = None) -> str:
        return str(self.mint(self.org.id, roles or [], scopes))


@pytest.fixture(scope="session")
def mint(keys: KeyStore, settings: Settings) -> Any:
    def _mint(
        org_id: uuid.UUID | None,
        roles: list[str],
        scopes: list[str] | None = None,
        ttl: timedelta = timedelta(minutes=30),
        subject: str = "tester",
    ) -> str:
        return mint_access_token(
            keys.active,
            issuer=settings.issuer,
            audience=settings.audience,
            subject=subject,
            organization_id=org_id,
            roles=roles,
            scopes=scopes,
            ttl=ttl,
        )

    return _mint


async def make_tenant(
    state: AppState, client: httpx.AsyncClient, mint: Any, currency: str = "USD"
) -> Tenant:
    slug = f"t-{uuid.uuid4().hex[:16]}"
    async with state.sessions() as session, session.begin():
        org_row = await directory.create_organization(session, f"Tenant {slug}", slug, currency)
        org = OrgContext.of(org_row)
        bind_tenant(session.sync_session, org.id)
        customer = await directory.create_customer(session, org, "Customer One", None)
        # Postpaid, so usage needs no top-up; prepaid behaviour has tests of its own.
        account = await directory.create_account(session, org, customer.id, "Main", True)
    return Tenant(
        org=org,
        customer_id=customer.id,
        account_id=account.id,
        token=mint(org.id, ["org_admin"]),
        client=client,
        mint=mint,
    )


@pytest.fixture
async def tenant(state: AppState, client: httpx.AsyncClient, mint: Any) -> Tenant:
    return await make_tenant(state, client, mint)


@pytest.fixture
async def other_tenant(state: AppState, client: httpx.AsyncClient, mint: Any) -> Tenant:
    return await make_tenant(state, client, mint)


@contextlib.asynccontextmanager
async def raw_connection(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(plain_url(database_url))
    try:
        yield connection
    finally:
        await connection.close()


__all__ = ["Tenant", "create_engine", "create_sessionmaker", "make_tenant", "raw_connection"]
