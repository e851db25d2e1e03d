"""Bounds on the request head, in the HTTP server itself: its size, each line's size, and how
long it may take to arrive.

uvicorn's default parser (httptools, on llhttp) enforces none of them: it concatenates a header
value as it arrives (a 64 MiB header cost seconds of CPU and hundreds of MB), and no timer
runs while a request head trickles in. Its h11 parser bounds the head
(``h11_max_incomplete_event_size``), but answers 400, bounds no single line, has no timer
either, and parses every request in Python. So ``costgraph serve`` runs uvicorn with this
subclass of its httptools protocol, which looks at the bytes before the parser does:

- the head (request line and header fields) over ``COSTGRAPH_HTTP_MAX_HEADER_BYTES``, or any
  one line of it over ``COSTGRAPH_HTTP_MAX_HEADER_LINE_BYTES``: ``431 Request Header Fields
  Too Large`` and the connection closed, after reading at most the limit and one read more;
- a head not complete within ``COSTGRAPH_HTTP_HEADER_TIMEOUT_SECONDS`` of its first byte (or
  of the connection opening): ``408 Request Timeout`` and closed (a connection that sent
  nothing is just closed).

An answer that closes the connection before the request's body has all arrived (a refusal of
the body, app/body_limit.py) lingers the same way: the rest of the body is dropped unread, not
answered with a reset that could destroy the refusal.

Each request on a keep-alive connection is measured from its first byte. Websocket handshakes
are requests too. Under ``uvicorn --factory costgraph.app.asgi:create_app`` pass
``--http costgraph.app.http_guard:GuardedHttpToolsProtocol`` (limits from the environment).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger("costgraph.http")

#: After a refusal the connection is half-closed and what the client still sends is read and
#: dropped, up to this much for up to this long: closing with unread bytes would send a
#: reset that can destroy the answer before the client reads it.
LINGER_BYTES = 256 * 1024
LINGER_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class HeadLimits:
    max_bytes: int = 32_768
    max_line_bytes: int = 16_384
    timeout_seconds: float = 10.0

    @classmethod
    def of(cls, settings: Any) -> HeadLimits:
        return cls(
            max_bytes=settings.http_max_header_bytes,
            max_line_bytes=settings.http_max_header_line_bytes,
            timeout_seconds=settings.http_header_timeout_seconds,
        )


def _answer(status: bytes, code: str, message: str, **extensions: object) -> bytes:
    body = orjson.dumps(
        {"errors": [{"message": message, "extensions": {"code": code, **extensions}}]}
    )
    return b"".join(
        [
            b"HTTP/1.1 ",
            status,
            b"\r\ncontent-type: application/json\r\ncontent-length: ",
            str(len(body)).encode(),
            b"\r\nconnection: close\r\n\r\n",
            body,
        ]
    )


class _LingerOnClose:
    """The transport as a request's cycle sees it: its ``close`` lingers while the request's
    body is still arriving."""

    def __init__(self, protocol: GuardedHttpToolsProtocol) -> None:
        self._protocol = protocol

    def __getattr__(self, name: str) -> Any:
        return getattr(self._protocol.transport, name)

    def close(self) -> None:
        self._protocol._close_after_answer()


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the request head bounded in size and time."""

    #: Set by :func:`guarded_protocol`; read from the environment's settings when unset.
    head_limits: ClassVar[HeadLimits | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limits = type(self).head_limits
        if limits is None:
            from costgraph.app.settings import Settings

            limits = type(self).head_limits = HeadLimits.of(Settings())
        self._limits = limits
        self._reading_head = True
        self._head_bytes = 0
        self._line_bytes = 0  # of the line being read
        self._tail = b""  # the last bytes read, to find an empty line split across reads
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._discarded = 0

    # --- the protocol's events ---

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:  # lingering after a refusal: dropped, within a bound
            self._discarded += len(data)
            if self._discarded > LINGER_BYTES:
                self.transport.close()
            return
        if self._reading_head:
            if self._head_timer is None:
                self._arm()
            refusal = self._measure(data)
            if refusal is not None:
                self._refuse(refusal)
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._disarm()
        super().on_headers_complete()
        if self.cycle is not None:
            self.cycle.transport = _LingerOnClose(self)  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._start_head()  # a keep-alive connection: the next request's head

    # --- measuring ---

    def _start_head(self) -> None:
        self._reading_head = True
        self._head_bytes = self._line_bytes = 0
        self._tail = b""
        self._disarm()  # armed again by the next request's first byte

    def _measure(self, data: bytes) -> bytes | None:
        """Count the head's bytes and its longest line in ``data`` (in C: find, split); the
        answer refusing it, if over a limit."""
        limits = self._limits
        if not self._head_bytes:  # blank lines before a request line are no part of a head
            data = data.lstrip(b"\r\n")
            if not data:
                return None
        joined = self._tail + data
        ends = [
            i + n for i, n in ((joined.find(b"\n\r\n"), 3), (joined.find(b"\n\n"), 2)) if i >= 0
        ]
        portion = data if not ends else data[: max(0, min(ends) - len(self._tail))]
        first = portion.find(b"\n")
        if first < 0:
            self._line_bytes += len(portion)
        else:
            longest = self._line_bytes + first
            if len(portion) - first > limits.max_line_bytes:  # another line may be too long
                longest = max(longest, *map(len, portion[first + 1 :].split(b"\n")))
            self._line_bytes = len(portion) - portion.rfind(b"\n") - 1
            if longest > limits.max_line_bytes + 1:  # + 1: the CR before the LF
                return self._line_too_long()
        self._head_bytes += len(portion)
        if self._line_bytes > limits.max_line_bytes + 1:
            return self._line_too_long()
        if self._head_bytes > limits.max_bytes:
            return self._head_too_large()
        if ends:
            self._reading_head = False  # the empty line: the head is complete
        else:
            self._tail = joined[-2:]
        return None

    def _line_too_long(self) -> bytes:
        return self._too_large(
            f"a line of the request head is over {self._limits.max_line_bytes} bytes"
        )

    def _head_too_large(self) -> bytes:
        return self._too_large(f"the request head is over {self._limits.max_bytes} bytes")

    def _too_large(self, message: str) -> bytes:
        logger.info("request head refused (431): %s", message)
        return _answer(
            b"431 Request Header Fields Too Large",
            "HEADERS_TOO_LARGE",
            message,
            maxHeaderBytes=self._limits.max_bytes,
            maxHeaderLineBytes=self._limits.max_line_bytes,
        )

    # --- the head's deadline ---

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self._limits.timeout_seconds, self._timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _timed_out(self) -> None:
        self._head_timer = None
        if not self._reading_head or self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self._arm()  # the previous response is still being made: the next head waits
            return
        if self._head_bytes == 0 and self._line_bytes == 0:
            self.transport.close()  # nothing was sent: closed like an idle keep-alive
            return
        seconds = self._limits.timeout_seconds
        logger.info("request head refused (408): not complete within %s s", seconds)
        self._refuse(
            _answer(
                b"408 Request Timeout",
                "REQUEST_TIMEOUT",
                f"the request head did not arrive within {seconds:g} s",
            )
        )

    def _close_after_answer(self) -> None:
        """The answer is out and the connection must close: at once, or lingering when the
        client is still sending the request's body."""
        if self.cycle is None or not self.cycle.more_body or self._refused:
            self.transport.close()
            return
        self._refused = True
        self._linger()

    def _refuse(self, answer: bytes) -> None:
        self._refused = True
        self._disarm()
        transport = self.transport
        if transport.is_closing():
            return
        transport.write(answer)
        self._linger()

    def _linger(self) -> None:
        transport = self.transport
        if transport.can_write_eof():
            transport.write_eof()  # the answer, then our end closed; theirs still read
            self.loop.call_later(LINGER_SECONDS, transport.close)
        else:
            transport.close()


def guarded_protocol(limits: HeadLimits) -> type[GuardedHttpToolsProtocol]:
    """The protocol class for ``uvicorn.run(http=…)`` with these limits."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"head_limits": limits})
