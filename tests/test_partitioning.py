"""The ledger partitioned by month: idempotency across partitions, append-only partitions,
partitions ahead of time, and migration 0006 on a database that already holds entries."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from costgraph.app.database import create_engine, create_sessionmaker
from costgraph.app.migrate import migrate
from costgraph.app.settings import Settings
from costgraph.billing import ledger
from costgraph.billing.commands import Limits, Payment
from costgraph.billing.directory import OrgContext
from costgraph.kernel.database_url import plain_url
from costgraph.kernel.errors import IdempotencyConflict
from costgraph.models.scoping import bind_tenant
from tests.conftest import Tenant, raw_connection
from tests.dates import month, rfc
from tests.pnl_support import DEPOSIT, RECORD_USAGE, catch_up, key

DEPOSIT_AT = """mutation($input: DepositInput!) { deposit(input: $input) {
  __typename ... on LedgerEntryRecorded { replayed entry { id occurredAt } }
  ... on UserError { code field } } }"""


async def partition_of(database_url: str, entry_id: str) -> str:
    async with raw_connection(database_url) as connection:
        name: str = await connection.fetchval(
            "SELECT tableoid::regclass::text FROM ledger_entries WHERE id = $1::uuid", entry_id
        )
    return name


def part(month_start: datetime) -> str:
    """A month's partition name, e.g. ``p2026_10``."""
    return f"p{month_start:%Y_%m}"


async def test_same_key_other_time_is_a_conflict_not_a_second_entry(
    tenant: Tenant, database_url: str
) -> None:
    """Uniqueness lives in ledger_keys, not in a partition: another occurredAt (so another
    partition) with the same key is the same request changed — a conflict."""
    event = {
        "idempotencyKey": key(),
        "accountId": str(tenant.account_id),
        "occurredAt": rfc(month(-2, 3, 10)),
        "provider": "openai",
        "model": "m",
        "providerCost": "0.10",
        "providerCurrency": "USD",
    }
    first = (await tenant.gql(RECORD_USAGE, {"input": event}))["data"]["recordUsage"]
    moved = dict(event, occurredAt=rfc(month(-4, 3, 10)))
    second = (await tenant.gql(RECORD_USAGE, {"input": moved}))["data"]["recordUsage"]
    assert second["code"] == "IDEMPOTENCY_CONFLICT"
    async with raw_connection(database_url) as connection:
        count = await connection.fetchval(
            "SELECT count(*) FROM ledger_entries WHERE organization_id = $1", tenant.org.id
        )
    assert count == 1
    assert (await partition_of(database_url, first["entry"]["id"])).endswith(part(month(-2)))


async def test_entries_land_in_their_month_and_old_ones_in_the_default(
    tenant: Tenant, database_url: str
) -> None:
    placed = {}
    last_month, end_of_three_ago = rfc(month(-1, 2)), rfc(month(-2) - timedelta(seconds=1))
    for at in (last_month, end_of_three_ago, "2001-02-03T04:05:06Z"):
        body = await tenant.gql(
            DEPOSIT_AT,
            {
                "input": {
                    "idempotencyKey": key(),
                    "accountId": str(tenant.account_id),
                    "amount": "1.00",
                    "currency": "USD",
                    "occurredAt": at,
                }
            },
        )
        entry = body["data"]["deposit"]["entry"]
        placed[at] = await partition_of(database_url, entry["id"])
    assert placed == {
        last_month: f"ledger_partitions.ledger_entries_{part(month(-1))}",
        end_of_three_ago: f"ledger_partitions.ledger_entries_{part(month(-3))}",
        "2001-02-03T04:05:06Z": "ledger_partitions.ledger_entries_default",
    }


async def test_partitions_refuse_update_delete_truncate(tenant: Tenant, database_url: str) -> None:
    for at in (None, "2001-06-07T00:00:00Z"):  # this month's partition, the default one
        deposit = {
            "idempotencyKey": key(),
            "accountId": str(tenant.account_id),
            "amount": "3.00",
            "currency": "USD",
            "occurredAt": at,
        }
        body = await tenant.gql(DEPOSIT, {"input": deposit})
        assert body["data"]["deposit"]["__typename"] == "LedgerEntryRecorded", body
    async with raw_connection(database_url) as connection:
        partitions = [
            r["name"]
            for r in await connection.fetch(
                """SELECT c.oid::regclass::text AS name FROM pg_inherits i
                   JOIN pg_class c ON c.oid = i.inhrelid
                   WHERE i.inhparent = 'ledger_entries'::regclass"""
            )
        ]
        assert "ledger_partitions.ledger_entries_default" in partitions
        assert len(partitions) >= 16  # a year back, three months ahead, the default
        current = f"ledger_partitions.ledger_entries_{part(month())}"  # by the business clock
        for table in (current, "ledger_partitions.ledger_entries_default", "ledger_keys"):
            for statement in (
                f"UPDATE {table} SET organization_id = organization_id WHERE organization_id = $1",
                f"DELETE FROM {table} WHERE organization_id = $1",
            ):
                with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
                    await connection.execute(statement, tenant.org.id)
            with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
                await connection.execute(f"TRUNCATE {table}")


async def test_partitions_are_created_ahead_and_months_held_by_the_default_are_left(
    tenant: Tenant, database_url: str
) -> None:
    """February 2002 has an entry in the DEFAULT partition: its month is not split out (the
    entry stays where it is, still found); January and March get partitions."""
    body = await tenant.gql(
        DEPOSIT_AT,
        {
            "input": {
                "idempotencyKey": key(),
                "accountId": str(tenant.account_id),
                "amount": "1.00",
                "currency": "USD",
                "occurredAt": "2002-02-10T00:00:00Z",
            }
        },
    )
    entry = body["data"]["deposit"]["entry"]
    assert await partition_of(database_url, entry["id"]) == (
        "ledger_partitions.ledger_entries_default"
    )
    async with raw_connection(database_url) as connection:
        created = await connection.fetchval(
            "SELECT ledger_ensure_partitions('2002-01-01', '2002-03-01')"
        )
        names = {
            r[0]
            for r in await connection.fetch(
                "SELECT inhrelid::regclass::text FROM pg_inherits "
                "WHERE inhparent = 'ledger_entries'::regclass"
            )
        }
        again = await connection.fetchval(
            "SELECT ledger_ensure_partitions('2002-01-01', '2002-03-01')"
        )
    assert created == 2 and again == 0
    assert "ledger_partitions.ledger_entries_p2002_01" in names
    assert "ledger_partitions.ledger_entries_p2002_03" in names
    assert "ledger_partitions.ledger_entries_p2002_02" not in names
    assert await partition_of(database_url, entry["id"]) == (
        "ledger_partitions.ledger_entries_default"
    )


# --- migration 0006 on a database with entries ---


@pytest.fixture
async def old_database(server_url: str) -> AsyncIterator[str]:
    name = f"costgraph_mig_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(plain_url(server_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    yield url
    admin = await asyncpg.connect(plain_url(server_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _seed_at_0005(url: str) -> dict[str, Any]:
    await migrate(url, "0005")
    org, customer, account = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    connection = await asyncpg.connect(plain_url(url))
    try:
        await connection.execute(
            "INSERT INTO organizations (id, name, slug, reporting_currency) "
            "VALUES ($1, 'Old', 'old', 'USD')",
            org,
        )
        await connection.execute(
            "INSERT INTO customers (organization_id, id, name) VALUES ($1, $2, 'C')",
            org,
            customer,
        )
        await connection.execute(
            "INSERT INTO accounts (organization_id, id, customer_id, name, currency, postpaid) "
            "VALUES ($1, $2, $3, 'A', 'USD', true)",
            org,
            account,
            customer,
        )
        rows = [
            ("DEPOSIT", "2003-05-06T07:08:09Z", "50.00", "0", "dep-1"),
            ("USAGE_CHARGE", rfc(month(-1, 2, 10, 15)), "1.20", "1.00", "use-1"),
            ("USAGE_CHARGE", rfc(month(-1, 2, 10, 45)), "2.40", "2.00", "use-2"),
        ]
        for kind, at, amount, cost, idem in rows:
            await connection.execute(
                """INSERT INTO ledger_entries (organization_id, type, account_id, customer_id,
                       occurred_at, currency, amount, ai_cost, idempotency_key, request_hash,
                       model)
                   VALUES ($1, $2, $3, $4, $5::text::timestamptz, 'USD', $6::numeric,
                       $7::numeric, $8, $9, 'm')""",
                org,
                kind,
                account,
                customer,
                at,
                amount,
                cost,
                idem,
                b"h-" + idem.encode(),
            )
    finally:
        await connection.close()
    return {"org": org, "account": account}


async def test_migration_0006_keeps_existing_entries(old_database: str) -> None:
    seeded = await _seed_at_0005(old_database)
    await migrate(old_database, "0010")
    connection = await asyncpg.connect(plain_url(old_database))
    try:
        placed = dict(
            await connection.fetch(
                "SELECT idempotency_key, tableoid::regclass::text FROM ledger_entries "
                "ORDER BY occurred_at"
            )
        )
        assert placed == {
            "dep-1": "ledger_partitions.ledger_entries_p2003_05",
            "use-1": f"ledger_partitions.ledger_entries_{part(month(-1))}",
            "use-2": f"ledger_partitions.ledger_entries_{part(month(-1))}",
        }
        keys = await connection.fetchval("SELECT count(*) FROM ledger_keys")
        assert keys == 3
        hour = await connection.fetchrow(
            "SELECT entries, events, ai_cost, billed_usage, postpaid_usage FROM "
            "rollup_org_hourly WHERE bucket = $1",
            month(-1, 2, 10),
        )
        assert tuple(hour) == (2, 2, Decimal("3.00"), Decimal("3.60"), Decimal("3.60"))
        assert await connection.fetchval("SELECT sum(entries) FROM rollup_org_hourly") == 3
    finally:
        await connection.close()
    # Migration 0015 restates the rollups in place (charged usage, a new measure; postpaid
    # usage beyond the allowance): these raw rows charged nothing (balance_delta 0). The
    # job's next run adds nothing twice (this code's job cannot run on the 0010 schema).
    await migrate(old_database)
    connection = await asyncpg.connect(plain_url(old_database))
    try:
        await catch_up(connection)
        hour = await connection.fetchrow(
            "SELECT entries, billed_usage, postpaid_usage, charged_usage FROM "
            "rollup_org_hourly WHERE bucket = $1",
            month(-1, 2, 10),
        )
        assert tuple(hour) == (2, Decimal("3.60"), Decimal(0), Decimal(0))
        assert await connection.fetchval("SELECT sum(entries) FROM rollup_org_hourly") == 3
    finally:
        await connection.close()
    # A retry of an entry written before the migration replays it (ledger_keys owns it).
    settings = Settings(database_url=old_database)
    engine = create_engine(old_database, settings)
    try:
        sessions = create_sessionmaker(engine)
        org = OrgContext(seeded["org"], "old", "Old", "USD")
        async with sessions() as session, session.begin():
            bind_tenant(session.sync_session, org.id)
            payment = Payment("dep-1", seeded["account"], Decimal("50.00"), "USD")
            with pytest.raises(IdempotencyConflict, match="'dep-1'"):
                await ledger.deposit(session, org, payment, Limits())
    finally:
        await engine.dispose()


async def test_the_rollup_runner_folds_new_entries_in(
    tenant: Tenant, state: Any, settings: Settings, database_url: str
) -> None:
    from costgraph.app.rollup_runner import RollupRunner

    await tenant.gql(
        DEPOSIT,
        {
            "input": {
                "idempotencyKey": key(),
                "accountId": str(tenant.account_id),
                "amount": "9.00",
                "currency": "USD",
                "occurredAt": rfc(month(-2, 20, 10, 30)),
            }
        },
    )
    runner = RollupRunner(state.engine, settings)
    for _ in range(100):  # another run may hold the job's lock for a moment
        await runner.tick()
        async with raw_connection(database_url) as connection:
            rolled = await connection.fetchval(
                "SELECT top_ups FROM rollup_org_hourly WHERE organization_id = $1",
                tenant.org.id,
            )
        if rolled is not None:
            break
    assert rolled == Decimal("9.00")
