"""Reads shared per key: callers waiting together share one read, and a shared read always
starts after the caller asked (never an answer older than a read of its own)."""

from __future__ import annotations

import asyncio

import pytest

from costgraph.subscriptions.coalesced_reads import CoalescedReads


class Source:
    """A value that changes; each read reports the value it saw when it started."""

    def __init__(self) -> None:
        self.value = 0
        self.reads = 0
        self.release = asyncio.Event()

    async def read(self) -> int:
        seen = self.value
        self.reads += 1
        await self.release.wait()
        return seen


async def test_callers_arriving_together_share_one_read() -> None:
    reads: CoalescedReads[int] = CoalescedReads()
    source = Source()
    callers = [asyncio.create_task(reads.read("scope", source.read)) for _ in range(20)]
    await asyncio.sleep(0)
    source.release.set()
    assert await asyncio.gather(*callers) == [0] * 20
    assert source.reads == 1
    assert reads.in_flight() == 0


async def test_a_caller_arriving_during_a_read_gets_a_later_one() -> None:
    reads: CoalescedReads[int] = CoalescedReads()
    source = Source()
    first = asyncio.create_task(reads.read("scope", source.read))
    await asyncio.sleep(0.01)
    assert source.reads == 1  # running, and it saw 0
    source.value = 1  # a write commits; its notice wakes the next callers
    later = [asyncio.create_task(reads.read("scope", source.read)) for _ in range(10)]
    await asyncio.sleep(0.01)
    assert source.reads == 1  # the later callers wait for the running read to end
    source.release.set()
    assert await first == 0
    assert await asyncio.gather(*later) == [1] * 10  # one more read, started after the write
    assert source.reads == 2
    assert reads.in_flight() == 0


async def test_keys_do_not_share_and_errors_reach_every_caller() -> None:
    reads: CoalescedReads[int] = CoalescedReads()
    source = Source()
    source.release.set()

    async def failing() -> int:
        await asyncio.sleep(0.01)
        raise RuntimeError("database went away")

    one = [asyncio.create_task(reads.read("a", failing)) for _ in range(3)]
    other = asyncio.create_task(reads.read("b", source.read))
    results = await asyncio.gather(*one, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert await other == 0
    # The key is free again: the next read runs.
    assert await reads.read("a", source.read) == 0


async def test_a_caller_leaving_does_not_cancel_the_shared_read() -> None:
    reads: CoalescedReads[int] = CoalescedReads()
    source = Source()
    leader = asyncio.create_task(reads.read("scope", source.read))
    follower = asyncio.create_task(reads.read("scope", source.read))
    await asyncio.sleep(0.01)
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    source.release.set()
    assert await follower == 0
    assert source.reads == 1
