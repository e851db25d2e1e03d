"""Where a bench gets its database: a fresh one per run, migrated, dropped afterwards.

The server is the machine's PostgreSQL when ``COSTGRAPH_DATABASE_URL`` is set, else an
embedded one (pgserver) in a temporary directory, started once per process and stopped at
the end — the same choice the tests make.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import make_url

from costgraph.app.database import create_engine, create_sessionmaker
from costgraph.app.embedded import start_embedded_postgres
from costgraph.app.migrate import migrate
from costgraph.app.settings import Settings
from costgraph.app.state import AppState
from costgraph.auth.keys import KeyStore
from costgraph.auth.tokens import mint_access_token
from costgraph.billing import directory, ledger
from costgraph.billing.commands import Payment
from costgraph.billing.directory import OrgContext
from costgraph.kernel.database_url import plain_url
from costgraph.models.scoping import bind_tenant

ISSUER = "https://costgraph.bench"
AUDIENCE = "costgraph-bench"


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """The configured server's URL, or an embedded server's for as long as the block runs."""
    configured = os.environ.get("COSTGRAPH_DATABASE_URL")
    if configured:
        yield configured
        return
    with tempfile.TemporaryDirectory(prefix="costgraph-bench-pg-") as path:
        url, server = start_embedded_postgres(Path(path))
        try:
            yield url
        finally:
            server.cleanup()  # stop it before its directory goes away


@contextlib.asynccontextmanager
async def fresh_database(server_url: str) -> AsyncIterator[str]:
    """A new database on ``server_url``, migrated to head; dropped (forcibly) afterwards."""
    name = f"costgraph_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(plain_url(server_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        await migrate(url)
        yield url
    finally:
        admin = await asyncpg.connect(plain_url(server_url))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@dataclass(frozen=True, slots=True)
class InProcess:
    """What an in-process bench needs: the database, the settings an app on it runs with,
    and a bench tenant."""

    url: str
    settings: Settings
    tenant: BenchTenant


@contextlib.asynccontextmanager
async def in_process_tenant(server_url: str, **overrides: object) -> AsyncIterator[InProcess]:
    """A fresh database with one bench tenant; ``overrides`` on top of the bench settings
    (e.g. no background workers, so that only the requests measured spend CPU)."""
    async with fresh_database(server_url) as url:
        with tempfile.TemporaryDirectory(prefix="costgraph-bench-") as tmp:
            settings = bench_settings(Path(tmp), url).model_copy(update=overrides)
            yield InProcess(url, settings, await create_tenant(settings, url))


T = TypeVar("T")


async def on_database(
    server_url: str, keep: str | None, measure: Callable[[str], Awaitable[T]]
) -> T:
    """``measure`` a database's URL: a fresh one (dropped afterwards), or with ``keep`` that
    named database — created when missing, migrated, kept afterwards, so the next run with the
    same name reuses the dataset a bench built in it."""
    if keep is None:
        async with fresh_database(server_url) as url:
            return await measure(url)
    url = make_url(server_url).set(database=keep).render_as_string(hide_password=False)
    admin = await asyncpg.connect(plain_url(server_url))
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", keep):
            await admin.execute(f'CREATE DATABASE "{keep}"')
    finally:
        await admin.close()
    await migrate(url)
    return await measure(url)


def bench_settings(data_dir: Path, database_url: str) -> Settings:
    """Production defaults except where the bench must differ (issuer, audience, data dir)."""
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        issuer=ISSUER,
        audience=AUDIENCE,
        # One bench client sends thousands of requests a second: the limiter still runs (its
        # cost is measured), with budgets no workload reaches.
        rate_limit_principal_per_minute=100_000_000,
        rate_limit_client_per_minute=100_000_000,
    )


@dataclass(frozen=True, slots=True)
class BenchTenant:
    """An organisation with a few accounts and users; tokens as an integrator would hold."""

    org: OrgContext
    customer_id: uuid.UUID
    account_ids: tuple[uuid.UUID, ...]
    user_ids: tuple[uuid.UUID, ...]
    currency: str


#: Each account's prepaid top-up: ample for any bench (events cost cents).
TOP_UP = Decimal("1000000000.00")


async def create_tenant(
    settings: Settings, database_url: str, *, accounts: int = 4, users: int = 5
) -> BenchTenant:
    """Through the domain functions, as the API would; one transaction.

    Accounts are prepaid (the default) and topped up, so usage runs the balance check it
    runs in production rather than being refused.
    """
    engine = create_engine(database_url, settings)
    try:
        sessions = create_sessionmaker(engine)
        slug = f"bench-{uuid.uuid4().hex[:12]}"
        async with sessions() as session, session.begin():
            org = OrgContext.of(
                await directory.create_organization(session, f"Bench {slug}", slug, "USD")
            )
            bind_tenant(session.sync_session, org.id)
            customer = await directory.create_customer(session, org, "Bench customer", None)
            account_ids = [
                (await directory.create_account(session, org, customer.id, f"acct {i}", False)).id
                for i in range(accounts)
            ]
            department = await directory.create_department(session, org, "Engineering")
            limits = AppState.limits_of(settings)
            for account_id in account_ids:
                top_up = Payment(f"bench-top-up-{account_id}", account_id, TOP_UP, "USD")
                await ledger.deposit(session, org, top_up, limits)
            user_ids = [
                (
                    await directory.create_user(
                        session, org, f"user{i}@bench.example", f"User {i}", department.id
                    )
                ).id
                for i in range(users)
            ]
    finally:
        await engine.dispose()
    return BenchTenant(
        org=org,
        customer_id=customer.id,
        account_ids=tuple(account_ids),
        user_ids=tuple(user_ids),
        currency="USD",
    )


def integrator_token(settings: Settings, org_id: uuid.UUID) -> str:
    """An OAuth client's token with ``usage:write`` (what posts usage in production)."""
    key = KeyStore(settings.key_dir, settings.signing_key_path).ensure()
    return mint_access_token(
        key,
        issuer=settings.issuer,
        audience=settings.audience,
        subject="client:bench",
        organization_id=org_id,
        scopes=["usage:write"],
        client_id="bench",
        ttl=timedelta(hours=2),
    )


def role_token(settings: Settings, org_id: uuid.UUID, roles: list[str], subject: str) -> str:
    """A person's token with these roles (a widget's ``finance_viewer``, an ``org_admin``)."""
    key = KeyStore(settings.key_dir, settings.signing_key_path).ensure()
    return mint_access_token(
        key,
        issuer=settings.issuer,
        audience=settings.audience,
        subject=subject,
        organization_id=org_id,
        roles=roles,
        ttl=timedelta(hours=2),
    )
