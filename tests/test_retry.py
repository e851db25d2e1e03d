"""Re-running write transactions that PostgreSQL aborted for a concurrent one (40001, 40P01),
and the typed ``UNAVAILABLE`` for the faults that are not re-run — on real conflicts between
real sessions."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from costgraph.app.state import AppState
from costgraph.kernel.errors import ErrorCode, Unavailable, ValidationFailed
from costgraph.kernel.retry import Fault, RetryPolicy, classify, in_transaction
from tests.conftest import Tenant, make_tenant, raw_connection
from tests.seeded import balances_as_written

FAST = RetryPolicy(attempts=4, first_wait=0.001, max_wait=0.01)

#: Organisations whose balance rows a test used as a plain row to fight over.
_TOUCHED: set[uuid.UUID] = set()


@pytest.fixture(autouse=True)
async def _balances_put_back(database_url: str) -> AsyncIterator[None]:
    """The balances these tests move by hand are put back to what the ledger says after each
    test (the suite leaves no drift behind for ``costgraph verify``)."""
    yield
    async with raw_connection(database_url) as connection:
        for organization_id in _TOUCHED:
            await balances_as_written(connection, organization_id)
    _TOUCHED.clear()


async def _balance_row(database_url: str, tenant: Tenant, balance: str = "0") -> uuid.UUID:
    _TOUCHED.add(tenant.org.id)
    async with raw_connection(database_url) as connection:
        await connection.execute(
            "INSERT INTO account_balances (organization_id, account_id, balance) "
            "VALUES ($1, $2, $3) "
            "ON CONFLICT (organization_id, account_id) DO UPDATE SET balance = $3",
            tenant.org.id,
            tenant.account_id,
            Decimal(balance),
        )
    return tenant.account_id


async def _balance(database_url: str, account_id: uuid.UUID) -> Decimal:
    async with raw_connection(database_url) as connection:
        value: Decimal = await connection.fetchval(
            "SELECT balance FROM account_balances WHERE account_id = $1", account_id
        )
    return value


async def _serializable(state: AppState) -> AsyncConnection:
    connection = await state.engine.connect()
    return await connection.execution_options(isolation_level="SERIALIZABLE")


def _conflicting_increment(
    state: AppState, database_url: str, account_id: uuid.UUID, interfere: int
) -> tuple[Any, list[int]]:
    """An action adding 1 under SERIALIZABLE; its first ``interfere`` runs see a concurrent
    transaction add 100 to the same row between their read and their write (a real 40001)."""
    runs: list[int] = []

    async def action() -> Decimal:
        runs.append(len(runs) + 1)
        connection = await _serializable(state)
        try:
            async with connection.begin():
                read = await connection.scalar(
                    text("SELECT balance FROM account_balances WHERE account_id = :a"),
                    {"a": account_id},
                )
                if len(runs) <= interfere:
                    async with raw_connection(database_url) as other:
                        await other.execute(
                            "UPDATE account_balances SET balance = balance + 100 "
                            "WHERE account_id = $1",
                            account_id,
                        )
                await connection.execute(
                    text("UPDATE account_balances SET balance = :b WHERE account_id = :a"),
                    {"a": account_id, "b": read + 1},
                )
            return Decimal(read + 1)
        finally:
            await connection.close()

    return action, runs


async def test_a_serialization_failure_is_run_again_until_it_commits(
    state: AppState, database_url: str, tenant: Tenant
) -> None:
    account = await _balance_row(database_url, tenant)
    action, runs = _conflicting_increment(state, database_url, account, interfere=2)

    written = await in_transaction(action, FAST)

    assert runs == [1, 2, 3]
    # The run that committed read both concurrent additions: no update was lost.
    assert written == Decimal(201)
    assert await _balance(database_url, account) == Decimal(201)


async def test_it_gives_up_after_the_policy_with_a_typed_retryable_error(
    state: AppState, database_url: str, tenant: Tenant
) -> None:
    account = await _balance_row(database_url, tenant)
    action, runs = _conflicting_increment(state, database_url, account, interfere=10)

    with pytest.raises(Unavailable) as raised:
        await in_transaction(action, RetryPolicy(attempts=3, first_wait=0.001, max_wait=0.01))

    assert runs == [1, 2, 3]
    assert raised.value.code is ErrorCode.UNAVAILABLE
    assert raised.value.reason == Fault.CONFLICT.value
    assert raised.value.retry_after_seconds >= 1
    assert classify(raised.value.__cause__) is Fault.CONFLICT  # type: ignore[arg-type]
    # Only the concurrent transactions' writes exist: none of the aborted runs left anything.
    assert await _balance(database_url, account) == Decimal(300)


async def test_a_deadlock_between_two_sessions_is_run_again(
    state: AppState, database_url: str, client: httpx.AsyncClient, mint: Any
) -> None:
    first = await make_tenant(state, client, mint)
    second = await make_tenant(state, client, mint)
    rows = [await _balance_row(database_url, t) for t in (first, second)]
    holding = {"ab": asyncio.Event(), "ba": asyncio.Event()}
    runs: list[str] = []

    def locker(name: str, order: list[uuid.UUID], other: str) -> Any:
        async def action() -> None:
            runs.append(name)
            async with state.engine.connect() as connection, connection.begin():
                for position, account in enumerate(order):
                    await connection.execute(
                        text(
                            "UPDATE account_balances SET balance = balance + 1 "
                            "WHERE account_id = :a"
                        ),
                        {"a": account},
                    )
                    if position == 0 and runs.count(name) == 1:
                        # Both hold their first row before asking for the other's.
                        holding[name].set()
                        await asyncio.wait_for(holding[other].wait(), 10)

        return action

    await asyncio.gather(
        in_transaction(locker("ab", rows, "ba"), FAST),
        in_transaction(locker("ba", rows[::-1], "ab"), FAST),
    )

    # PostgreSQL aborted exactly one of them (40P01); it ran again once the other committed.
    assert len(runs) == 3
    assert [await _balance(database_url, r) for r in rows] == [Decimal(2), Decimal(2)]


async def test_a_lock_timeout_is_not_run_again_but_answers_unavailable(
    state: AppState, database_url: str, tenant: Tenant
) -> None:
    account = await _balance_row(database_url, tenant)
    runs: list[int] = []

    async def action() -> None:
        runs.append(1)
        async with state.engine.connect() as connection, connection.begin():
            await connection.execute(text("SET LOCAL lock_timeout = '50ms'"))
            await connection.execute(
                text("UPDATE account_balances SET balance = 7 WHERE account_id = :a"),
                {"a": account},
            )

    async with raw_connection(database_url) as holder, holder.transaction():
        await holder.execute(
            "SELECT 1 FROM account_balances WHERE account_id = $1 FOR UPDATE", account
        )
        with pytest.raises(Unavailable) as raised:
            await in_transaction(action, FAST)

    assert runs == [1]
    assert raised.value.reason == Fault.BUSY.value
    assert await _balance(database_url, account) == Decimal(0)


async def test_other_failures_pass_through_untouched(
    state: AppState, database_url: str, tenant: Tenant
) -> None:
    runs: list[int] = []

    async def invalid() -> None:
        runs.append(1)
        raise ValidationFailed("bad", "input")

    with pytest.raises(ValidationFailed):
        await in_transaction(invalid, FAST)

    async def broken_sql() -> None:
        runs.append(1)
        async with state.engine.connect() as connection:
            await connection.execute(text("SELECT no_such_column FROM account_balances"))

    with pytest.raises(sa_exc.ProgrammingError):
        await in_transaction(broken_sql, FAST)
    assert runs == [1, 1]


@pytest.mark.parametrize(
    ("error", "fault"),
    [
        (asyncpg.exceptions.SerializationError("x"), Fault.CONFLICT),
        (asyncpg.exceptions.DeadlockDetectedError("x"), Fault.CONFLICT),
        (asyncpg.exceptions.LockNotAvailableError("x"), Fault.BUSY),
        (asyncpg.exceptions.QueryCanceledError("x"), Fault.BUSY),
        (asyncpg.exceptions.AdminShutdownError("x"), Fault.UNAVAILABLE),
        (asyncpg.exceptions.CannotConnectNowError("x"), Fault.UNAVAILABLE),
        (asyncpg.exceptions.ConnectionDoesNotExistError("x"), Fault.UNAVAILABLE),
        (asyncpg.exceptions.TooManyConnectionsError("x"), Fault.UNAVAILABLE),
        (
            asyncpg.InterfaceError("cannot call Connection.fetch(): connection is closed"),
            Fault.UNAVAILABLE,
        ),
        (
            asyncpg.exceptions.InternalClientError(
                "cannot switch to state 15; another operation (2) is in progress"
            ),
            Fault.UNAVAILABLE,
        ),
        (ConnectionRefusedError(111, "refused"), Fault.UNAVAILABLE),
        (TimeoutError(), Fault.UNAVAILABLE),
        (asyncpg.exceptions.UniqueViolationError("x"), None),
        (asyncpg.InterfaceError("another operation is in progress"), None),
        (ValueError("x"), None),
    ],
)
def test_classify(error: BaseException, fault: Fault | None) -> None:
    assert classify(error) is fault
    wrapped = RuntimeError("outer")
    wrapped.__cause__ = error
    assert classify(wrapped) is fault


async def _until_waiting_on_a_lock(database_url: str, request: asyncio.Task[Any]) -> None:
    async with raw_connection(database_url) as connection:  # outside any transaction's snapshot
        for _ in range(400):
            assert not request.done(), request.result()
            waiting = await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND application_name = 'costgraph'"
            )
            if waiting:
                return
            await asyncio.sleep(0.025)
    raise AssertionError("the deposit never waited for the balance row")


DEPOSIT = """
mutation($input: DepositInput!) {
  deposit(input: $input) {
    __typename
    ... on LedgerEntryRecorded { replayed entry { id amount } }
    ... on UserError { code message }
  }
}"""


async def test_a_mutation_caught_in_a_deadlock_is_run_again_and_answers_success(
    database_url: str, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    """Through GraphQL: ``deposit`` writes its idempotency key, then the account's balance.
    Another session holds the balance row and then claims the same key: a real deadlock, in
    which PostgreSQL aborts the deposit (the other session waits longer before checking).
    The deposit runs again and commits once the other session gives up."""
    caplog.set_level(logging.INFO, logger="costgraph.retry")
    account = await _balance_row(database_url, tenant)
    key = f"dl-{uuid.uuid4().hex}"
    async with raw_connection(database_url) as other:
        await other.execute("SET deadlock_timeout = '20s'")
        transaction = other.transaction()
        await transaction.start()
        await other.execute(
            "UPDATE account_balances SET balance = balance WHERE account_id = $1", account
        )
        deposit = asyncio.create_task(
            tenant.gql(
                DEPOSIT,
                {
                    "input": {
                        "idempotencyKey": key,
                        "accountId": str(account),
                        "amount": "5.00",
                        "currency": "USD",
                    }
                },
            )
        )
        await _until_waiting_on_a_lock(database_url, deposit)
        # Returns once PostgreSQL has aborted the deposit's first run (it then holds the key).
        await asyncio.wait_for(
            other.execute(
                "INSERT INTO ledger_keys (organization_id, idempotency_key, entry_id, "
                "occurred_at) VALUES ($1, $2, $3, now())",
                tenant.org.id,
                key,
                uuid.uuid4(),
            ),
            20,
        )
        await transaction.rollback()
        body = await asyncio.wait_for(deposit, 20)

    assert "errors" not in body, body
    assert "transaction conflicted (SQLSTATE 40P01) in run 1; running it again" in caplog.messages
    assert body["data"]["deposit"]["__typename"] == "LedgerEntryRecorded"
    assert body["data"]["deposit"]["replayed"] is False
    assert await _balance(database_url, account) == Decimal("5.00")
    async with raw_connection(database_url) as connection:
        count = await connection.fetchval(
            "SELECT count(*) FROM ledger_entries WHERE idempotency_key = $1", key
        )
    assert count == 1


async def test_every_pooled_connection_carries_the_timeouts(state: AppState) -> None:
    settings = state.settings
    connections = [await state.engine.connect() for _ in range(3)]  # distinct pool members
    try:
        for connection in connections:
            shown = {
                name: await connection.scalar(
                    text("SELECT setting FROM pg_settings WHERE name = :n"), {"n": name}
                )
                for name in (
                    "statement_timeout",
                    "lock_timeout",
                    "idle_in_transaction_session_timeout",
                )
            }
            assert shown == {
                "statement_timeout": str(settings.statement_timeout_ms),  # in ms
                "lock_timeout": str(settings.lock_timeout_ms),
                "idle_in_transaction_session_timeout": str(settings.idle_in_transaction_timeout_ms),
            }
    finally:
        for connection in connections:
            await connection.close()
