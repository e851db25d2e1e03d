"""A GraphQL document over COSTGRAPH_GRAPHQL_MAX_DOCUMENT_BYTES in a large body is refused with
413 ``QUERY_TOO_COMPLEX`` (``limit: "bytes"``) from the bytes read so far, the rest of the
body unread; the largest valid usage batch still goes through, whichever order its members
come in (app/document_stream.py)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson

from costgraph.app.document_stream import DocumentWatch, document_bytes_so_far
from costgraph.app.main import create_app
from costgraph.app.settings import Settings
from costgraph.kernel.clock import utcnow
from tests.conftest import make_tenant
from tests.test_body_limit import served
from tests.test_ledger import RECORD_BATCH
from tests.test_rate_limit import entry_count, limited_app
from tests.verify_support import assert_no_drift

LIMIT = 32_768
PIECE = 65_536


def pieces(body: bytes, size: int = PIECE) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


def refused_after(body: bytes, limit: int = LIMIT) -> int | None:
    """How many pieces the watch took before refusing ``body`` (None: never)."""
    watch = DocumentWatch(limit)
    for count, piece in enumerate(pieces(body), 1):
        if watch.feed(piece):
            return count
    return None


def test_the_query_member_is_measured_as_it_arrives() -> None:
    body = orjson.dumps({"query": "{ me { subject } }", "variables": {"x": "y" * 50}})
    assert document_bytes_so_far(body) == len("{ me { subject } }")
    # Cut off inside the document: what arrived of it, decoded (é is 2 bytes, \\u00e9 6).
    assert document_bytes_so_far(b'{"query": "ab\\u00e9') == 4
    assert document_bytes_so_far(b'{"query": "ab\\u00') == 2  # an escape cut in half
    # An escaped key is the same key; a later duplicate is measured too.
    assert document_bytes_so_far(b'{"\\u0071uery": "abc"}') == 3
    assert document_bytes_so_far(b'{"query": "a", "query": "bcd"') == 3
    # After the other members, as Apollo Client sends them.
    apollo = orjson.dumps({"operationName": None, "variables": {"a": [1, 2]}, "query": "q" * 99})
    assert document_bytes_so_far(apollo) == 99
    # Not a JSON object, or no query yet: nothing to say.
    assert document_bytes_so_far(b"[1, 2]") is None
    assert document_bytes_so_far(b'{"variables": {"a": [1, 2') is None


def test_a_big_document_is_refused_within_the_first_piece() -> None:
    comment = orjson.dumps({"query": "{ me { subject } }\n#" + "x" * 9_500_000})
    literal = orjson.dumps({"query": '{ me(a: "' + "x" * 9_500_000 + '") { subject } }'})
    escaped = orjson.dumps({"query": "{ me { subject } }\n#" + "\u00e9" * 200_000})
    assert refused_after(comment) == refused_after(literal) == 1
    assert refused_after(escaped) == 1
    # Behind small variables too (Apollo Client's order).
    behind = orjson.dumps({"variables": {"a": "b" * 1_000}, "query": "#" + "x" * 9_500_000})
    assert refused_after(behind) == 1
    # A document within the limit is not, however large the body.
    fits = orjson.dumps({"query": "#" + "x" * (LIMIT - 1), "variables": {"x": "y" * 2_000_000}})
    assert refused_after(fits) is None
    exactly = orjson.dumps({"query": "\u00e9" * (LIMIT // 2)})
    assert refused_after(exactly) is None


def test_the_quick_bound_reads_escaped_quotes_and_backslashes_right() -> None:
    """A cut-off document is judged from its first bytes when no quote in them can close it;
    an escaped backslash before a quote makes that quote real (the string ends there)."""
    head = orjson.dumps({"query": '{ me(a: "' + "x" * 70_000 + '") { subject } }'})[:PIECE]
    found = document_bytes_so_far(head, LIMIT)
    assert found is not None and found > LIMIT
    quotes = orjson.dumps({"query": '"' * 40_000})  # each one 2 bytes of JSON, 1 of document
    assert document_bytes_so_far(quotes[:PIECE], LIMIT) == (PIECE - len(b'{"query":"')) // 2
    # A short document whose string holds an escaped backslash, then the rest of the body.
    closed = orjson.dumps(
        {"query": '{ me(a: "\\\\") { subject } }', "variables": {"x": "y" * PIECE}}
    )
    assert document_bytes_so_far(closed[:PIECE], LIMIT) == len('{ me(a: "\\\\") { subject } }')
    assert refused_after(closed) is None


def batch(account_id: uuid.UUID, events: int, metadata_bytes: int) -> list[dict[str, Any]]:
    """``events`` usage events (distinct keys), each with ``metadata_bytes`` of metadata."""
    note = "x" * (metadata_bytes - len(orjson.dumps({"note": ""})))
    now = utcnow().isoformat()
    run = uuid.uuid4().hex
    return [
        {
            "idempotencyKey": f"big-{run}-{n}",
            "accountId": str(account_id),
            "occurredAt": now,
            "provider": "openai",
            "model": "gpt-4o",
            "inputTokens": 10,
            "outputTokens": 5,
            "providerCost": "0.000360000000",
            "providerCurrency": "USD",
            "metadata": {"note": note},
        }
        for n in range(events)
    ]


def test_the_largest_usage_batch_is_not_refused_in_either_order() -> None:
    defaults = Settings()
    events = batch(uuid.uuid4(), defaults.max_batch_events, defaults.max_metadata_bytes)
    first = orjson.dumps({"query": RECORD_BATCH, "variables": {"input": events}})
    last = orjson.dumps({"variables": {"input": events}, "query": RECORD_BATCH})
    assert len(first) > 8_000_000
    limit = defaults.graphql_max_document_bytes
    assert refused_after(first, limit) is None
    assert refused_after(last, limit) is None
    # Even in one piece (a server that hands the body over whole): only the window is read.
    watch = DocumentWatch(limit)
    assert not watch.feed(last)


async def test_a_full_usage_batch_is_recorded_through_the_watch(
    settings: Settings, database_url: str, mint: Any
) -> None:
    async with limited_app(settings, database_url) as (client, state):
        tenant = await make_tenant(state, client, mint)
        events = batch(tenant.account_id, settings.max_batch_events, settings.max_metadata_bytes)
        body = orjson.dumps({"variables": {"input": events}, "query": RECORD_BATCH})
        assert len(body) > 8_000_000
        auth = {"Authorization": f"Bearer {tenant.token}", "Content-Type": "application/json"}
        answer = await client.post("/graphql", content=body, headers=auth)
        assert answer.status_code == 200, answer.text[:500]
        recorded = answer.json()["data"]["recordUsageBatch"]
        assert recorded["__typename"] == "UsageBatchRecorded", recorded
        assert recorded["recorded"] == settings.max_batch_events
        assert await entry_count(database_url, tenant) == settings.max_batch_events
        await assert_no_drift(state, tenant.org.id)


async def test_a_real_server_refuses_a_big_document_without_reading_the_rest(
    settings: Settings, database_url: str, mint: Any
) -> None:
    """The client announces 9.5 MB and sends 128 KiB: the answer comes without the rest."""
    application = create_app(settings, database_url)
    async with served(application, settings) as port:
        token = mint(uuid.uuid4(), ["org_admin"])
        body = orjson.dumps({"query": "{ me { subject } }\n#" + "x" * 9_500_000})
        head = (
            "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(head + body[: 2 * PIECE])
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 10)  # to EOF: the server closes
        finally:
            writer.close()
        status, _, rest = answer.partition(b"\r\n")
        assert status.startswith(b"HTTP/1.1 413 "), answer[:300]
        error = orjson.loads(rest.partition(b"\r\n\r\n")[2])["errors"][0]
        extensions = error["extensions"]
        assert extensions["code"] == "QUERY_TOO_COMPLEX"
        assert extensions["limit"] == "bytes"
        assert extensions["maximum"] == settings.graphql_max_document_bytes
        assert extensions["found"] > settings.graphql_max_document_bytes
        assert "data" not in orjson.loads(rest.partition(b"\r\n\r\n")[2])


async def test_a_body_is_not_read_before_its_token_is_checked(
    settings: Settings, database_url: str
) -> None:
    """A 9.5 MB body whose document comes last (past the watch's window) with a bad token:
    answered 401 from the head and the first 64 KiB, the rest never sent — who may send such
    a body is settled before a byte of it is read (then its principal's rate limit)."""
    application = create_app(settings, database_url)
    async with served(application, settings) as port:
        body = orjson.dumps(
            {
                "variables": {"pad": "x" * 300_000},
                "query": "{ me { subject } }\n#" + "x" * 9_500_000,
            }
        )
        head = (
            "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer not-a-token\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(head + body[:PIECE])
            await writer.drain()
            answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        finally:
            writer.close()
        assert answer.startswith(b"HTTP/1.1 401 "), answer[:300]
