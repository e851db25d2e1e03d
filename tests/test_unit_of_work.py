"""The unit of work (kernel/unit_of_work.py) on real PostgreSQL: one tenant-bound transaction,
hooks before commit inside it, events handed out only after commit, a conflict re-run from
scratch with an empty event list."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import pytest
from sqlalchemy import text

from costgraph.app.state import AppState
from costgraph.billing import directory
from costgraph.kernel.errors import ValidationFailed
from costgraph.kernel.retry import RetryPolicy
from costgraph.kernel.unit_of_work import DomainEvent, UnitOfWork, Units, emit
from costgraph.models.scoping import TenantNotBound, bound_tenant
from tests.conftest import Tenant, raw_connection


@dataclass(frozen=True, slots=True)
class Noted(DomainEvent):
    what: str


class Heard:
    """An after-commit hook that keeps what it is handed."""

    def __init__(self) -> None:
        self.batches: list[list[DomainEvent]] = []

    def __call__(self, events: Sequence[DomainEvent]) -> None:
        self.batches.append(list(events))


def units_of(state: AppState) -> tuple[Units, Heard]:
    units = Units(state.sessions, RetryPolicy(attempts=4, first_wait=0.001, max_wait=0.01))
    heard = Heard()
    units.after_commit(heard)
    return units, heard


async def customers_named(database_url: str, tenant: Tenant, name: str) -> int:
    async with raw_connection(database_url) as connection:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM customers WHERE organization_id = $1 AND name = $2",
            tenant.org.id,
            name,
        )
    return count


async def test_events_are_handed_out_after_commit_and_never_for_a_rollback(
    state: AppState, tenant: Tenant, database_url: str
) -> None:
    units, heard = units_of(state)
    seen_inside: list[int] = []

    async def hook(unit: UnitOfWork) -> None:  # before commit: the action's writes are there
        row = await unit.session.execute(
            text("SELECT count(*) FROM customers WHERE organization_id = :o AND name = :n"),
            {"o": tenant.org.id, "n": "uow-ok"},
        )
        seen_inside.append(int(row.scalar_one()))
        assert heard.batches == []  # nothing published before the commit

    units.before_commit(hook)

    async def create(unit: UnitOfWork) -> uuid.UUID:
        assert bound_tenant(unit.session.sync_session) == tenant.org.id
        customer = await directory.create_customer(unit.session, unit.org, "uow-ok", None)
        emit(unit.session, Noted("created"))
        return customer.id

    await units.run(tenant.org, create)
    assert seen_inside == [1]
    assert heard.batches == [[Noted("created")]]
    assert await customers_named(database_url, tenant, "uow-ok") == 1

    async def refused(unit: UnitOfWork) -> None:
        await directory.create_customer(unit.session, unit.org, "uow-refused", None)
        unit.emit(Noted("refused"))
        raise ValidationFailed("no", "input")

    with pytest.raises(ValidationFailed):
        await units.run(tenant.org, refused)
    assert heard.batches == [[Noted("created")]]  # the rolled-back unit published nothing
    assert await customers_named(database_url, tenant, "uow-refused") == 0


async def test_a_failing_before_commit_hook_rolls_the_unit_back(
    state: AppState, tenant: Tenant, database_url: str
) -> None:
    units, heard = units_of(state)

    async def hook(unit: UnitOfWork) -> None:
        if unit.emitted(Noted):
            raise ValidationFailed("the hook refuses", "input")

    units.before_commit(hook)

    async def create(unit: UnitOfWork) -> None:
        await directory.create_customer(unit.session, unit.org, "uow-hooked", None)
        unit.emit(Noted("x"))

    with pytest.raises(ValidationFailed):
        await units.run(tenant.org, create)
    assert await customers_named(database_url, tenant, "uow-hooked") == 0
    assert heard.batches == []


async def test_a_failing_after_commit_hook_fails_nothing(
    state: AppState, tenant: Tenant, database_url: str
) -> None:
    units = Units(state.sessions)

    def broken(events: Sequence[DomainEvent]) -> None:
        raise RuntimeError("the bus is down")

    heard = Heard()
    units.after_commit(broken)
    units.after_commit(heard)

    async def create(unit: UnitOfWork) -> str:
        await directory.create_customer(unit.session, unit.org, "uow-published", None)
        unit.emit(Noted("y"))
        return "done"

    assert await units.run(tenant.org, create) == "done"
    assert heard.batches == [[Noted("y")]]  # the next hook still ran
    assert await customers_named(database_url, tenant, "uow-published") == 1


async def test_a_unit_without_a_tenant_refuses_tenant_tables(state: AppState) -> None:
    units = Units(state.sessions)

    async def read(unit: UnitOfWork) -> None:
        await directory.create_customer(unit.session, unit.org, "nobody's", None)

    with pytest.raises(TenantNotBound):
        await units.run(None, read)


async def test_a_deadlock_reruns_the_whole_unit_with_an_empty_event_list(
    state: AppState, tenant: Tenant, database_url: str
) -> None:
    """Two real units lock two keys in opposite orders: PostgreSQL aborts one (40P01), which
    runs again from a fresh session; only its last attempt's events are published."""
    units, heard = units_of(state)
    first, second = f"uow-a-{uuid.uuid4()}", f"uow-b-{uuid.uuid4()}"
    both_hold_one = asyncio.Barrier(2)
    attempts: dict[str, int] = {"left": 0, "right": 0}

    def unit_locking(name: str, one: str, other: str) -> Callable[[UnitOfWork], Awaitable[None]]:
        async def action(unit: UnitOfWork) -> None:
            attempts[name] += 1
            unit.emit(Noted(f"{name}-{attempts[name]}"))
            lock = text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))")
            await unit.session.execute(lock, {"k": one})
            if attempts[name] == 1:
                await both_hold_one.wait()
            await unit.session.execute(lock, {"k": other})
            await directory.create_customer(unit.session, unit.org, f"uow-{name}", None)

        return action

    await asyncio.gather(
        units.run(tenant.org, unit_locking("left", first, second)),
        units.run(tenant.org, unit_locking("right", second, first)),
    )
    assert sorted(attempts.values()) == [1, 2]  # one of them was re-run, once
    rerun = next(name for name, count in attempts.items() if count == 2)
    published = sorted(e.what for batch in heard.batches for e in batch if isinstance(e, Noted))
    assert published == sorted([f"{rerun}-2", f"{'left' if rerun == 'right' else 'right'}-1"])
    assert await customers_named(database_url, tenant, "uow-left") == 1
    assert await customers_named(database_url, tenant, "uow-right") == 1
