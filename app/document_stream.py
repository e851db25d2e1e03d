"""The GraphQL document's size, watched while a ``POST /graphql`` body streams in.

A body may be as large as the biggest usage batch (``COSTGRAPH_MAX_REQUEST_BYTES``, about
10 MB by default), but the batch travels in ``variables``: the document itself is bounded by
``COSTGRAPH_GRAPHQL_MAX_DOCUMENT_BYTES`` (32 KiB). Taking in a 9.5 MB body costs some 40 ms
whatever it holds, so a document over its limit is refused from the bytes read so far: the
top-level members of the JSON object are walked (``json``'s C scanner), and once a ``query``
member's string — complete or cut off by the end of what has arrived — decodes to more than
the limit, the request is answered ``413`` with the limit's error (``QUERY_TOO_COMPLEX``,
``limit: "bytes"``) and the rest of the body is never read.

The walk is bounded: it runs at doubling sizes (the limit, twice it, ...), and stops watching
once the body is past a window of a few times the limit without a verdict (a ``query`` member
after a large ``variables`` one, as Apollo Client orders them). Such a body costs what any
body of its size costs, and the document is refused by the lexical scan once it is read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import orjson
from starlette.types import Message, Scope

from costgraph.app.query_limits import too_complex

#: The JSON envelope around the members that matter: ``operationName``, ``extensions``,
#: white space.
ENVELOPE_BYTES = 64 * 1024
#: A JSON-escaped document may take up to 6 bytes for each of its bytes (``\\u0041``).
ESCAPED_BYTES_PER_BYTE = 6

_SPACE = re.compile(r"[ \t\n\r]*")
_QUOTE = re.compile('"')
_DECODER = json.JSONDecoder(strict=False)
#: The C string scanner of ``json`` (not in its type stubs): (text, index after the opening
#: quote, strict) -> (the string, the index after its closing quote).
scanstring: Callable[[str, int, bool], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]


class DocumentWatch:
    """Fed a body's pieces in order; says when its ``query`` member is over ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.window = ESCAPED_BYTES_PER_BYTE * max_bytes + ENVELOPE_BYTES
        self._prefix = bytearray()
        self._next_check = max_bytes + 1
        self._watching = True
        self.found = 0  # the document's size when over (what arrived of it)

    def feed(self, piece: bytes) -> bool:
        """Whether the document is over the limit (then refuse: the rest need not be read)."""
        if not self._watching:
            return False
        self._prefix += piece[: self.window + 1 - len(self._prefix)]  # no more is looked at
        if len(self._prefix) < self._next_check:
            return False
        found = document_bytes_so_far(bytes(self._prefix), self.max_bytes)
        if found is not None and found > self.max_bytes:
            self.found = found
            return True
        if len(self._prefix) > self.window:
            self._watching = False  # no verdict within the window: the body is read as is
            self._prefix = bytearray()
        self._next_check = 2 * len(self._prefix)
        return False

    def refusal(self, piece: bytes) -> tuple[Message, Message] | None:
        """:meth:`feed`, and the answer's two ASGI messages when the document is over."""
        if not self.feed(piece):
            return None
        error = too_complex(
            f"the document is {self.found} bytes or more; the limit is {self.max_bytes} "
            "(the rest of the request was not read)",
            "bytes",
            self.max_bytes,
            self.found,
        )
        body = orjson.dumps({"errors": [error.formatted]})
        start: Message = {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
        return start, {"type": "http.response.body", "body": body}


def watch_graphql_posts(max_bytes: int) -> Callable[[Scope], DocumentWatch | None]:
    """For :class:`costgraph.app.body_limit.BodySizeLimit`: a watch on each ``POST
    /graphql`` body."""

    def watch(scope: Scope) -> DocumentWatch | None:
        if scope["method"] == "POST" and scope["path"] == "/graphql":
            return DocumentWatch(max_bytes)
        return None

    return watch


def document_bytes_so_far(prefix: bytes, enough: int | None = None) -> int | None:
    """The UTF-8 size of the largest ``query`` member of the JSON object that ``prefix``
    begins (a member cut off by the prefix's end counts what arrived of it); None when no
    ``query`` member has begun, or the prefix is not the start of a JSON object. With
    ``enough``, a cut-off member found over it is measured no further."""
    text = prefix.decode("utf-8", "ignore")  # a character cut off at the end: not counted
    found: int | None = None
    try:
        index = _SPACE.match(text).end()  # type: ignore[union-attr]
        if text[index : index + 1] != "{":
            return None
        index += 1
        while True:
            index = _SPACE.match(text, index).end()  # type: ignore[union-attr]
            if text[index : index + 1] != '"':
                return found  # "}" (the end), or cut off, or not JSON
            key, index = scanstring(text, index + 1, False)
            index = _SPACE.match(text, index).end()  # type: ignore[union-attr]
            if text[index : index + 1] != ":":
                return found
            index = _SPACE.match(text, index + 1).end()  # type: ignore[union-attr]
            if key == "query" and text[index : index + 1] == '"':
                size, index = _string_bytes(text, index, enough)
                found = max(found or 0, size)
                if index < 0:  # cut off by the prefix's end
                    return found
            else:
                _, index = _DECODER.raw_decode(text, index)
            index = _SPACE.match(text, index).end()  # type: ignore[union-attr]
            if text[index : index + 1] != ",":
                return found
            index += 1
    except (ValueError, RecursionError):  # cut off, or not JSON: the parser will say
        return found


def _string_bytes(text: str, start: int, enough: int | None = None) -> tuple[int, int]:
    """The UTF-8 size of the JSON string at ``text[start]`` (its opening quote) and the index
    after it; -1 for the index when the string is cut off (its size is then what arrived, or
    more than ``enough`` of it)."""
    if enough is not None:
        # No closing quote in what follows (no quote, or each one escaped and no escaped
        # backslash before any): it decodes to at least a byte a character, less 5 an escape
        # (``\\u0041`` is 6 characters) — when that is already over, it is.
        head = text[start + 1 : start + 2 * enough + 2]
        least = len(head) - 5 * head.count("\\")
        if least > enough and (
            '"' not in head
            or (
                "\\\\" not in head
                and all(head[quote.start() - 1] == "\\" for quote in _QUOTE.finditer(head))
            )
        ):
            return least, -1
    try:
        value, end = scanstring(text, start + 1, False)
    except ValueError:
        pass
    else:
        return len(value.encode("utf-8", "surrogatepass")), end
    # Cut off: what arrived, less a trailing escape that may be incomplete (at most 12
    # characters: a surrogate pair).
    cut = len(text)
    for back in range(13):
        try:
            value, _ = scanstring(text[start + 1 : cut - back] + '"', 0, False)
        except ValueError:
            continue
        return len(value.encode("utf-8", "surrogatepass")), -1
    return 0, -1
