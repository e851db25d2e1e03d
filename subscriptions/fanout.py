"""Resolve once per distinct subscription; send the same bytes to everyone who shares it.

strawberry executes a subscription's selection set once per subscriber per event, and its
transport serialises each result again. For a thousand widgets watching the same account that
is a thousand identical executions per event (measured at 73 µs each on a 2-core machine). Here, the
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
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Hashable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import orjson
from graphql import GraphQLError, GraphQLSyntaxError
from strawberry.schema.exceptions import CannotGetOperationTypeError
from strawberry.types.execution import ExecutionResult, PreExecutionError

from costgraph.subscriptions import inline
from costgraph.subscriptions.inbox import Inbox

logger = logging.getLogger("costgraph.fanout")

#: Distinct operation ids whose message a frame keeps (bounded: ids are chosen by clients).
_MESSAGE_CACHE = 8

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
    #: Messages built so far, by operation id: members that use the same id (most clients
    #: number their first subscription "1") send the very same string.
    _messages: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def message(self, id_json: str) -> str:
        """The whole graphql-transport-ws message for one operation id (JSON-encoded)."""
        built = self._messages.get(id_json)
        if built is None:
            if self.kind is FrameKind.COMPLETE:
                built = '{"id":' + id_json + ',"type":"complete"}'
            else:
                built = (
                    '{"id":' + id_json + ',"type":"' + self.kind.value + '","payload":'
                    + self.payload + "}"
                )  # fmt: skip
            if len(self._messages) < _MESSAGE_CACHE:
                self._messages[id_json] = built
        return built


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
    """One subscriber of a stream. Frames reach it one of two ways: sent at once by the
    fan-out (when it is idle: nothing queued, no send in progress — the common case), or
    queued in its bounded inbox, which its own task sends in order."""

    inbox: Inbox[Frame]
    #: Sends one frame; False when the subscriber is done. Set by the transport.
    send: Callable[[Frame], Coroutine[Any, Any, bool]] | None = None
    #: A direct send had to wait: new frames queue behind it.
    busy: bool = False
    #: The member's own task holds frames it is sending: new frames queue behind them.
    holding: bool = False
    #: The task finishing a direct send that had to wait.
    waiting: asyncio.Task[None] | None = None

    def stop(self) -> None:
        self.send = None
        self.inbox.close()

    async def idle(self) -> None:
        """Wait until a direct send that had to wait is over."""
        if self.waiting is not None:
            await asyncio.wait([self.waiting])


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
        member.stop()
        if member.waiting is not None:
            member.waiting.cancel()
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
        direct = frame.kind is FrameKind.NEXT
        for member in tuple(self.members):
            if (
                direct
                and member.send is not None
                and not (member.busy or member.holding or member.inbox)
            ):
                self._send_now(member, frame)
            else:
                member.inbox.offer(frame)

    def _send_now(self, member: Member, frame: Frame) -> None:
        assert member.send is not None
        try:
            outcome = inline.start(member.send(frame))
        except Exception:  # the socket is gone: the transport cleans up
            member.stop()
            return
        if isinstance(outcome, inline.Suspended):
            member.busy = True
            member.waiting = asyncio.create_task(self._finish(member, outcome))
        elif not outcome:
            member.stop()

    async def _finish(self, member: Member, send: inline.Suspended[bool]) -> None:
        try:
            sent = await send.finish()
        except Exception:  # the socket is gone: the transport cleans up
            sent = False
        finally:
            member.busy = False
            member.waiting = None
        if not sent:
            member.stop()

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
