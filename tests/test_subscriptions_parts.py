"""The parts of the live path on their own: bounded inboxes, inline sends, notices, deltas,
and the bus's behaviour when Redis cannot be reached at all."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from costgraph.billing.entries import Entry
from costgraph.billing.scopes import Scope, ScopeKind
from costgraph.kernel.database_url import plain_url
from costgraph.models.ledger import EntryType
from costgraph.subscriptions import inline
from costgraph.subscriptions.bus import Bus, BusConfig
from costgraph.subscriptions.events import (
    MalformedNotice,
    UsageNotice,
    decode_usage,
    encode_usage,
)
from costgraph.subscriptions.inbox import Inbox, InboxClosed, SlowConsumer
from costgraph.subscriptions.publish import usage_deltas, usage_recorded
from costgraph.subscriptions.signals import BusSignal
from tests.subscriptions_support import free_port

# --- inboxes ---


async def test_a_full_inbox_drops_everything_and_tells_its_reader() -> None:
    overflowed: list[bool] = []
    inbox: Inbox[int] = Inbox(3, on_overflow=lambda: overflowed.append(True))
    assert all(inbox.offer(n) for n in range(3))
    assert inbox.offer(3) is False
    assert overflowed == [True]
    assert len(inbox) == 0  # nothing kept for a reader that fell behind
    assert inbox.offer(4) is False
    with pytest.raises(SlowConsumer):
        await inbox.drain()
    assert inbox.high_water == 3


async def test_a_coalescing_inbox_resets_to_its_gap_marker() -> None:
    inbox: Inbox[object] = Inbox(2, gap=BusSignal.GAP)
    for n in range(4):  # 2 overflows: 0, 1 and 2 are replaced by the marker
        inbox.offer(n)
    assert await inbox.drain() == [BusSignal.GAP, 3]


async def test_a_closed_inbox_gives_what_it_holds_then_ends() -> None:
    inbox: Inbox[int] = Inbox(4)
    inbox.offer(1)
    inbox.close()
    assert await inbox.drain() == [1]
    with pytest.raises(InboxClosed):
        await inbox.drain()


async def test_a_waiting_reader_wakes_on_offer() -> None:
    inbox: Inbox[str] = Inbox(4)
    reader = asyncio.create_task(inbox.drain())
    await asyncio.sleep(0)
    inbox.offer("x")
    assert await asyncio.wait_for(reader, 1) == ["x"]


# --- inline sends ---


async def test_a_coroutine_that_does_not_wait_finishes_inline() -> None:
    async def quick() -> int:
        return 7

    assert inline.start(quick()) == 7


async def test_a_coroutine_that_waits_is_finished_later_in_order() -> None:
    gate = asyncio.Event()
    steps: list[str] = []

    async def slow() -> str:
        steps.append("started")
        await gate.wait()
        await asyncio.sleep(0)
        steps.append("finished")
        return "done"

    outcome = inline.start(slow())
    assert isinstance(outcome, inline.Suspended)
    assert steps == ["started"]
    finishing = asyncio.create_task(outcome.finish())
    await asyncio.sleep(0.01)
    assert not finishing.done()
    gate.set()
    assert await asyncio.wait_for(finishing, 1) == "done"
    assert steps == ["started", "finished"]


async def test_an_exception_after_waiting_reaches_the_finisher() -> None:
    failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def broken() -> None:
        await failed

    outcome = inline.start(broken())
    assert isinstance(outcome, inline.Suspended)
    failed.set_exception(ConnectionResetError("gone"))
    with pytest.raises(ConnectionResetError):
        await outcome.finish()


# --- notices and deltas ---


def _entry(**overrides: object) -> Entry:
    org = uuid.UUID(int=1)
    entry = Entry(
        organization_id=org,
        id=uuid.uuid4(),
        type=EntryType.USAGE_CHARGE,
        account_id=uuid.UUID(int=2),
        customer_id=uuid.UUID(int=3),
        occurred_at=datetime(2026, 11, 3, 10, tzinfo=UTC),
        currency="USD",
        amount=Decimal("0.000324000000"),
        idempotency_key=uuid.uuid4().hex,
        request_hash=b"h",
        ai_cost=Decimal("0.000270000000"),
        input_tokens=1000,
        output_tokens=200,
    )
    return replace(entry, **overrides)  # type: ignore[arg-type]


def test_deltas_sum_per_attribution_and_leave_out_replays_and_payments() -> None:
    user = uuid.UUID(int=9)
    entries = [
        _entry(),
        _entry(input_tokens=10, output_tokens=0),
        _entry(user_id=user),
        _entry().as_replay(),
        _entry(type=EntryType.DEPOSIT),
    ]
    account, by_user = usage_deltas(entries)
    assert account.entries == 2
    assert account.total_tokens == 1210
    assert account.ai_cost == Decimal("0.000540000000")
    assert account.entry_id == entries[1].id
    assert by_user.user_id == user
    assert by_user.entries == 1
    org = Scope(ScopeKind.ORGANIZATION, uuid.UUID(int=1))
    assert account.touches(org, uuid.UUID(int=1))
    assert account.touches(Scope(ScopeKind.ACCOUNT, uuid.UUID(int=2)), uuid.UUID(int=1))
    assert not account.touches(Scope(ScopeKind.USER, user), uuid.UUID(int=1))
    assert by_user.touches(Scope(ScopeKind.USER, user), uuid.UUID(int=1))


def test_a_notice_survives_the_wire_exactly() -> None:
    notice = UsageNotice(uuid.UUID(int=1), datetime.now(UTC), tuple(usage_deltas([_entry()])))
    assert decode_usage(encode_usage(notice)) == notice


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"v": 2, "kind": "usage"}',
        '{"v": 1, "kind": "usage", "org": "x", "at": "2026-01-01T00:00:00+00:00", "d": []}',
        '{"v": 1, "kind": "usage", "org": "00000000-0000-0000-0000-000000000001",'
        ' "at": "2026-01-01T00:00:00", "d": []}',
        '{"v": 1, "kind": "usage", "org": "00000000-0000-0000-0000-000000000001",'
        ' "at": "2026-01-01T00:00:00+00:00", "d": [[1, 2]]}',
    ],
)
def test_anything_else_on_a_channel_is_refused(text: str) -> None:
    with pytest.raises(MalformedNotice):
        decode_usage(text)


def test_publishing_never_raises_into_the_write() -> None:
    class Broken:
        def listening(self, channel: str) -> bool:
            return True

        def publish(self, channel: str, message: str) -> bool:
            raise RuntimeError("broker exploded")

    usage_recorded(Broken(), [_entry()])  # logged, not raised


# --- the bus without a broker ---


async def test_with_redis_unreachable_publishing_is_immediate_and_subscribers_are_told() -> None:
    bus = Bus(BusConfig(url=f"redis://127.0.0.1:{free_port()}/0", connect_timeout=0.2))
    await bus.start()  # does not fail: it keeps trying in the background
    try:
        assert not bus.up
        started = asyncio.get_running_loop().time()
        for _ in range(100):
            bus.publish("c", "m")
        assert asyncio.get_running_loop().time() - started < 0.05
        await asyncio.sleep(0.05)
        assert bus.stats.publish_dropped == 100
        async with bus.subscribe("c") as inbox:
            assert await asyncio.wait_for(inbox.drain(), 1) == [BusSignal.INTERRUPTED]
    finally:
        await bus.close(grace=0.5)


async def test_the_memory_bus_delivers_to_every_subscriber_of_a_channel_only() -> None:
    bus = Bus(BusConfig())
    await bus.start()
    try:
        async with (
            bus.subscribe("a") as first,
            bus.subscribe("a") as second,
            bus.subscribe("b") as other,
        ):
            bus.publish("a", "hello")
            assert await asyncio.wait_for(first.drain(), 1) == ["hello"]
            assert await asyncio.wait_for(second.drain(), 1) == ["hello"]
            assert len(other) == 0
        assert bus.subscribers("a") == 0
    finally:
        await bus.close()


async def test_a_postgres_bus_carries_a_message_to_a_process_with_no_subscriber_of_its_own(
    database_url: str,
) -> None:
    """broadcaster's LISTEN/NOTIFY backend reaches other processes: a bus on it publishes a
    message even when nobody in its own process follows the channel (only the in-memory bus
    may skip those)."""
    url = plain_url(database_url)
    writer, reader = Bus(BusConfig(url=url)), Bus(BusConfig(url=url))
    await writer.start()
    await reader.start()
    try:
        assert writer.listening("usage_x") and BusConfig().in_memory
        async with reader.subscribe("usage_x") as inbox:
            await asyncio.sleep(0.2)  # the LISTEN is in place
            assert writer.publish("usage_x", "hello")
            assert await asyncio.wait_for(inbox.drain(), 5) == ["hello"]
    finally:
        await writer.close(grace=0.5)
        await reader.close(grace=0.5)
