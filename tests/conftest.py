"""Test fixtures on a real PostgreSQL: the machine's server when COSTGRAPH_DATABASE_URL is
set, else an embedded one. Each run gets a fresh database, migrated once; tests isolate by
creating their own organisation (tenant), which is also how production isolates."""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url
from starlette.applications import Starlette

from costgraph.app.database import create_engine, create_sessionmaker, plain_url
from costgraph.app.embedded import start_embedded_postgres
from costgraph.app.main import create_app
from costgraph.app.migrate import migrate
from costgraph.app.settings import Settings
from costgraph.app.state import AppState
from costgraph.auth.keys import KeyStore
from costgraph.auth.tokens import mint_access_token
from costgraph.billing import directory
from costgraph.billing.directory import OrgContext
from costgraph.models.scoping import bind_tenant


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
    """A fresh database on that server, migrated to head, dropped afterwards."""
    name = f"costgraph_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(plain_url(server_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    await migrate(url)
    yield url
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
        # The limiter runs on every request of the suite, with budgets no test reaches;
        # tests/test_rate_limit.py builds apps with small ones.
        rate_limit_principal_per_minute=100_000_000,
        rate_limit_client_per_minute=100_000_000,
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
