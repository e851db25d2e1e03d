"""The ledger's parents (migration 0010): checked once per insert statement instead of by
per-row foreign keys, and permanent, so a checked parent can never go away."""

from __future__ import annotations

import hashlib
import uuid
from decimal import Decimal

import asyncpg
import pytest

from costgraph.billing import ledger_repository as repo
from costgraph.billing.entries import Entry
from costgraph.kernel.clock import utcnow
from costgraph.models.ledger import EntryType
from tests.conftest import Tenant, raw_connection


def _entry(organization_id: uuid.UUID, account_id: uuid.UUID | None, key: str) -> Entry:
    return Entry(
        organization_id=organization_id,
        id=uuid.uuid4(),
        type=EntryType.PLATFORM_FEE,
        account_id=account_id,
        customer_id=None,
        occurred_at=utcnow(),
        currency="USD",
        amount=Decimal("1.25"),
        idempotency_key=key,
        request_hash=hashlib.sha256(key.encode()).digest(),
    )


async def _insert(connection: asyncpg.Connection, entries: list[Entry]) -> int:
    return len(await repo.insert_on(connection, entries))


async def test_an_insert_naming_a_missing_parent_writes_nothing(
    tenant: Tenant, database_url: str
) -> None:
    org = tenant.org.id
    async with raw_connection(database_url) as connection:
        await connection.execute("SET timezone = 'UTC'")
        good = _entry(org, tenant.account_id, f"fee-{uuid.uuid4()}")
        no_account = _entry(org, None, f"fee-{uuid.uuid4()}")
        assert await _insert(connection, [good, no_account]) == 2

        for bad in (
            _entry(org, uuid.uuid4(), f"fee-{uuid.uuid4()}"),  # no such account
            _entry(uuid.uuid4(), None, f"fee-{uuid.uuid4()}"),  # no such organisation
        ):
            fine = _entry(org, tenant.account_id, f"fee-{uuid.uuid4()}")
            with pytest.raises(asyncpg.ForeignKeyViolationError, match="no such organization"):
                await _insert(connection, [fine, bad])
            for entry in (fine, bad):  # the whole statement is refused, keys included
                assert (
                    await connection.fetchval(
                        "SELECT count(*) FROM ledger_keys WHERE idempotency_key = $1",
                        entry.idempotency_key,
                    )
                    == 0
                )
        # An account of another organisation is not this organisation's account.
        other_org = uuid.uuid4()
        await connection.execute(
            "INSERT INTO organizations (id, name, slug, reporting_currency) "
            "VALUES ($1, 'Other', $2, 'USD')",
            other_org,
            f"other-{other_org.hex[:12]}",
        )
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await _insert(connection, [_entry(other_org, tenant.account_id, "fee-x")])


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM accounts WHERE organization_id = $1",
        "UPDATE accounts SET id = gen_random_uuid() WHERE organization_id = $1",
        "DELETE FROM organizations WHERE id = $1",
        "UPDATE organizations SET id = gen_random_uuid() WHERE id = $1",
    ],
)
async def test_organisations_and_accounts_are_permanent(
    tenant: Tenant, database_url: str, statement: str
) -> None:
    async with raw_connection(database_url) as connection:
        with pytest.raises(asyncpg.RestrictViolationError, match="permanent"):
            await connection.execute(statement, tenant.org.id)
        for table in ("accounts", "organizations"):
            with pytest.raises(asyncpg.RestrictViolationError, match="permanent"):
                await connection.execute(f"TRUNCATE {table} CASCADE")
        # Their other columns still change as before.
        await connection.execute(
            "UPDATE accounts SET name = name || '.' WHERE organization_id = $1", tenant.org.id
        )
        assert await connection.fetchval(
            "SELECT count(*) FROM accounts WHERE organization_id = $1 AND id = $2",
            tenant.org.id,
            tenant.account_id,
        )
