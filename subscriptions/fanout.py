"""Resolve once per distinct subscription; send the same bytes to everyone who shares it.

strawberry executes a subscription's selection set once per subscriber per event, and its
transport serialises each result again. For a thousand widgets watching the same account that
is a thousand identical executions per event (DESIGN.md measured 73 µs each). Here, the
subscriptions that would produce identical results share one :class:`SharedStream`: it runs
strawberry's stream once, turns each result into a JSON payload once, and offers that one
string to every member's bounded inbox. A member only wraps it in its own message id.

Two subscriptions share when their *share key* is equal: the field, the organisation, the
caller's rights, the query text, the variables and the operation name (see
``transport.share_key``). Resolvers of shared fields therefore depend on nothing else.

A stream whose field is *stateful* (running totals) keeps its latest frame and gives it to a
late joiner at once; an event stream (alerts) does not replay old events.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import orjson
from graphql import GraphQLError, GraphQLSyntaxError
from strawberry.schema.exceptions import CannotGetOperationTypeError
from strawberry.types.execution import ExecutionResult, PreExecutionError

from costgraph.subscriptions.inbox import Inbox

logger = logging.getLogger("costgraph.fanout")

FormatError = Callable[[GraphQLError], dict[str, Any]]
StreamFactory = Callable[[], Awaitable[AsyncIterator[Any]]]


class FrameKind(enum.StrEnum):
    NEXT = "next"
    ERROR = "error"
    COMPLETE = "complete"


@dataclass(frozen=True, slots=True)
class Frame:
    kind: FrameKind
    #: JSON text of the message's payload ("" for COMPLETE).
    payload: str = ""
    #: Set when the protocol closes the socket (4400) instead of sending an error.
    close_reason: str | None = None

    def message(self, id_json: str) -> str:
        """The whole graphql-transport-ws message for one operation id (JSON-encoded)."""
        if self.kind is FrameKind.COMPLETE:
            return '{"id":' + id_json + ',"type":"complete"}'
        return (
            '{"id":' + id_json + ',"type":"' + self.kind.value + '","payload":' + self.payload + "}"
        )


COMPLETE = Frame(FrameKind.COMPLETE)
INTERNAL_ERROR = Frame(
    FrameKind.ERROR,
    orjson.dumps(
        [{"message": "Internal server error", "extensions": {"code": "INTERNAL"}}]
    ).decode(),
)


def _json(value: object) -> str:
    encoded: bytes = orjson.dumps(value, default=str)
    return encoded.decode()


def _close_reason(error: GraphQLError) -> str | None:
    """As strawberry's transport: a syntax error or a wrong operation closes the socket."""
    if isinstance(error, GraphQLSyntaxError):
        return error.message
    if isinstance(error.original_error, CannotGetOperationTypeError):
        return error.original_error.as_http_error_reason()
    return None


def encode(result: object, format_error: FormatError) -> Frame:
    """One result of strawberry's stream as the frame every member will send."""
    if isinstance(result, PreExecutionError):
        errors = result.errors or [GraphQLError("the operation could not start")]
        return Frame(
            FrameKind.ERROR,
            _json([format_error(e) for e in errors]),
            close_reason=_close_reason(errors[0]),
        )
    if not isinstance(result, ExecutionResult):
        message = "Incremental delivery is not supported over graphql-transport-ws"
        return Frame(FrameKind.ERROR, _json([{"message": message}]))
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [format_error(e) for e in result.errors]
    if result.extensions:
        payload["extensions"] = result.extensions
    return Frame(FrameKind.NEXT, _json(payload))


@dataclass(eq=False, slots=True)
class Member:
    inbox: Inbox[Frame]


class SharedStream:
    def __init__(
        self,
        hub: FanoutHub,
        key: Hashable | None,
        factory: StreamFactory,
        *,
        replay: bool,
    ) -> None:
        self.hub = hub
        self.key = key
        self.replay = replay
        self.members: set[Member] = set()
        self.ended = False
        self._factory = factory
        self._latest: Frame | None = None
        self._task: asyncio.Task[None] | None = None

    def join(self, on_overflow: Callable[[], None]) -> Member:
        member = Member(Inbox(self.hub.queue_size, on_overflow=on_overflow))
        self.members.add(member)
        if self._latest is not None:
            member.inbox.offer(self._latest)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="costgraph-shared-stream")
        return member

    def leave(self, member: Member) -> None:
        self.members.discard(member)
        self.hub.max_depth = max(self.hub.max_depth, member.inbox.high_water)
        member.inbox.close()
        if not self.members and not self.ended:
            self.ended = True
            self.hub.forget(self)
            if self._task is not None:
                self._task.cancel()

    async def _run(self) -> None:
        try:
            source = await self._factory()
            async with aclosing(source):  # type: ignore[type-var]  # strawberry's stream is an async generator
                async for result in source:
                    frame = encode(result, self.hub.format_error)
                    if frame.kind is not FrameKind.NEXT:
                        self._end(frame)
                        return
                    if self.replay:
                        self._latest = frame
                    self._fan(frame)
            self._end(COMPLETE)
        except asyncio.CancelledError:
            raise
        except Exception:  # an unexpected failure ends the stream for its members, not the app
            logger.exception("a shared subscription stream failed")
            self._end(INTERNAL_ERROR)

    def _fan(self, frame: Frame) -> None:
        self.hub.frames += 1
        for member in tuple(self.members):
            member.inbox.offer(frame)

    def _end(self, frame: Frame) -> None:
        """A terminal frame: new subscribers start a new stream; members get it and stop."""
        self.ended = True
        self.hub.forget(self)
        self._fan(frame)


class FanoutHub:
    """The shared streams of this process, by share key."""

    def __init__(self, queue_size: int, format_error: FormatError) -> None:
        self.queue_size = queue_size
        self.format_error = format_error
        #: Frames produced (each sent to every member of its stream).
        self.frames = 0
        #: The most frames any departed member ever had waiting (never above ``queue_size``).
        self.max_depth = 0
        self._streams: dict[Hashable, SharedStream] = {}

    def stream(self, key: Hashable | None, factory: StreamFactory, *, replay: bool) -> SharedStream:
        """The live stream for ``key``, started by this caller if there is none; ``key=None``
        gives a private stream (an operation that is not shared)."""
        if key is not None:
            existing = self._streams.get(key)
            if existing is not None and not existing.ended:
                return existing
        created = SharedStream(self, key, factory, replay=replay)
        if key is not None:
            self._streams[key] = created
        return created

    def forget(self, stream: SharedStream) -> None:
        if stream.key is not None and self._streams.get(stream.key) is stream:
            del self._streams[stream.key]

    @property
    def shared_streams(self) -> int:
        return len(self._streams)

    def members(self, key: Hashable) -> int:
        stream = self._streams.get(key)
        return 0 if stream is None else len(stream.members)
