"""Hostile input: documents refused before graphql-core reads them and never cached, strings
with NUL or lone surrogates, amounts beyond what is stored exactly, and websocket operations
under the same request budgets as HTTP. Each answer is typed (a code naming the field or the
limit), never INTERNAL, and nothing is written."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import graphql
import httpx
import pytest
from starlette.applications import Starlette

from costgraph.app import query_caches
from costgraph.app.main import create_app
from costgraph.app.query_caches import DocumentCache
from costgraph.app.query_limits import QueryLimits
from costgraph.app.query_prescan import _TOKEN, _words, refusal, scan
from costgraph.app.settings import Settings
from costgraph.kernel.clock import format_rfc3339, utcnow
from costgraph.kernel.errors import ValidationFailed
from costgraph.kernel.money import require_payment_amount
from costgraph.kernel.text import find_bad_text
from tests.conftest import Tenant, app_state, make_tenant, raw_connection
from tests.subscriptions_support import USAGE_UPDATES, serving, ws_client
from tests.test_pricing_stripe import checkout, post, stripe_app, stripe_client  # noqa: F401
from tests.test_query_limits import document_cache

RECORD_USAGE = """mutation($input: UsageEventInput!) {
  recordUsage(input: $input) { __typename ... on UserError { code message field } } }"""
DEPOSIT = """mutation($input: DepositInput!) {
  deposit(input: $input) { __typename ... on UserError { code message field } } }"""


def usage(tenant: Tenant, **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "idempotencyKey": f"h-{uuid.uuid4().hex}",
        "accountId": str(tenant.account_id),
        "occurredAt": format_rfc3339(utcnow() - timedelta(minutes=1)),
        "provider": "openai",
        "model": "gpt-4o-mini",
        "inputTokens": 10,
        "providerCost": "0.01",
        "providerCurrency": "USD",
    }
    event.update(overrides)
    return event


async def entries(database_url: str, tenant: Tenant) -> int:
    async with raw_connection(database_url) as connection:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM ledger_entries WHERE organization_id = $1", tenant.org.id
        )
    return count


def refused(body: dict[str, Any], code: str = "VALIDATION_FAILED") -> dict[str, Any]:
    """The request's one error (a request error: no data)."""
    assert "data" not in body, body
    (error,) = body["errors"]
    assert error["extensions"]["code"] == code, error
    result: dict[str, Any] = error
    return result


# --- documents: refused before parsing, never cached ------------------------------------------


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every document graphql-core is asked to parse (the extension's own parse call)."""
    seen: list[str] = []
    real = graphql.parse

    def counting(source: Any, **options: Any) -> Any:
        seen.append(str(source))
        return real(source, **options)

    monkeypatch.setattr(query_caches, "parse", counting)
    yield seen


@pytest.mark.parametrize(
    ("document", "limit"),
    [
        ("{" + " me { subject }" * 490 + "}", "repeatedFields"),  # the quadratic rule's food
        ("{ " + " ".join(f"f{i}" for i in range(1_500)) + " }", "selections"),
        ("{ " + "a " * 5_000 + "}", "tokens"),
        ("{" + "a{" * 30 + "b" + "}" * 31, "depth"),
        ("{ " + " ".join(f"a{i}: me {{ subject }}" for i in range(60)) + " }", "aliases"),
    ],
    ids=["repeated fields", "selections", "tokens", "depth", "aliases"],
)
async def test_a_hostile_document_is_refused_unparsed_and_not_kept(
    app: Starlette, tenant: Tenant, parses: list[str], document: str, limit: str
) -> None:
    cache = document_cache(app)
    for variant in (document, document.replace(" ", "  ", 1)):  # white space defeats no check
        error = refused(await tenant.gql(variant), "QUERY_TOO_COMPLEX")
        assert error["extensions"]["limit"] == limit
        assert cache.get(variant) is None
    assert parses == []


@pytest.mark.parametrize(
    "document",
    [
        "{ me { subject } }\n#" + "x" * 9_500_000,  # a 9.5 MB comment
        '{ me(a: "' + "x" * 9_500_000 + '") { subject } }',  # a 9.5 MB string
        "{ me { subject } }\n#" + "x" * 40_000,  # just over 32 KiB
    ],
    ids=["comment", "string", "just over"],
)
async def test_a_huge_document_is_refused_while_its_body_arrives(
    app: Starlette, tenant: Tenant, parses: list[str], document: str
) -> None:
    """Over the limit in a POST body: refused as the body arrives (app/document_stream.py),
    413 with the limit's error; nothing parsed, nothing kept."""
    cache = document_cache(app)
    auth = {"Authorization": f"Bearer {tenant.token}"}
    response = await tenant.client.post("/graphql", json={"query": document}, headers=auth)
    assert response.status_code == 413, response.text
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert error["extensions"]["limit"] == "bytes"
    assert cache.get(document) is None and parses == []


async def test_fragment_repetition_is_refused_after_parsing_but_before_validation(
    tenant: Tenant,
) -> None:
    query = "{ me { ...P ...P ...P ...P ...P ...P ...P ...P ...P ...P ...P ...P } }\n"
    body = await tenant.gql(query + "fragment P on Principal { subject }")
    assert refused(body, "QUERY_TOO_COMPLEX")["extensions"]["limit"] == "repeatedFields"


def test_the_scan_counts_what_is_written() -> None:
    counts = scan(
        "query Q($x: Int = 1) @d(a: {b: [1, 2]}) {\n"
        "  a: me @include(if: true) { subject }  # me { me }\n"
        '  me { subject roles(x: "{ me }") }\n'
        "  ... on Query { me { scopes } }\n"
        "  ...F ...F\n"
        "}\n"
        "fragment F on Query { organization { name } }"
    )
    # me twice in the root set (the inline fragment merges into it), ...F twice: 2 repeats.
    assert (counts.fields, counts.repeated, counts.aliases, counts.depth) == (9, 2, 1, 2)
    assert "# me" not in counts.text and '"{ me }"' in counts.text  # comments blanked only
    # Names in a row are counted one by one: fields, repeats, what an alias or spread takes.
    rows = scan("query Q { a b, c a { x y } d ... on T { e a } f: g h ...F i }")
    assert (rows.fields, rows.repeated, rows.aliases, rows.depth) == (12, 2, 1, 2)
    assert scan("{ " + "a " * 600 + "}", QueryLimits()).fields == 501  # stops one past
    introspection = graphql.get_introspection_query(descriptions=True)
    assert refusal(introspection, QueryLimits())[0] is None  # GraphiQL's own query passes
    # Read in pieces cut between tokens, the tokens are exactly the whole document's (names in
    # a row come as one piece, which a cut may make two).
    for document in (
        "{" + "me{subject}" * 300 + "}",
        "{ " + " ".join(f"a{n}: me(x: 1.5e3, y: [1,2]) {{ subject }}" for n in range(200)) + "}",
        introspection,
    ):
        assert tokens(_words(document)) == tokens(_TOKEN.findall(document))


def tokens(pieces: Iterable[str]) -> list[str]:
    return [token for piece in pieces for token in piece.replace(",", " ").split()]


def test_the_document_cache_is_bounded_in_bytes() -> None:
    cache = DocumentCache(max_bytes=10_000)
    document = graphql.parse("{ me { subject } }")
    for index in range(100):
        cache.put(f"{{ me {{ subject }} }} # {index}", document, 1_000)
        assert cache.bytes <= 10_000
    assert len(cache) == 10 and cache.get("{ me { subject } } # 99") is document
    assert cache.get("{ me { subject } } # 0") is None  # the least recently used went first
    cache.put("huge", document, 10_001)  # one entry over the whole budget is never kept
    assert cache.get("huge") is None and len(cache) == 10


async def test_accepted_documents_stay_cached_within_the_budget(
    settings: Settings, database_url: str, mint: Any
) -> None:
    budget = 64 * 1024
    application = create_app(
        settings.model_copy(update={"graphql_document_cache_bytes": budget}), database_url
    )
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            tenant = await make_tenant(query_caches_state(application), http, mint)
            cache = document_cache(application)
            for index in range(200):  # unique documents: each accepted, the cache stays bounded
                body = await tenant.gql(f"{{ me {{ subject }} }} # {index} {'x' * 500}")
                assert body == {"data": {"me": {"subject": "tester"}}}
                assert cache.bytes <= budget
            assert 0 < len(cache) < 200


def query_caches_state(application: Starlette) -> Any:
    return app_state(application)


# --- NUL and lone surrogates ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"model": "gpt\x00"}, "input.model"),
        ({"feature": "a\ud800b"}, "input.feature"),
        ({"metadata": {"note": "x\x00"}}, "input.metadata.note"),
        ({"metadata": {"k\x00": "v"}}, "input.metadata.k\ufffd"),
        ({"metadata": {"list": ["ok", "\udfff"]}}, "input.metadata.list.1"),
        ({"idempotencyKey": "\x00"}, "input.idempotencyKey"),
    ],
)
async def test_bad_text_in_variables_is_a_validation_error_naming_the_field(
    tenant: Tenant, database_url: str, overrides: dict[str, Any], field: str
) -> None:
    # Sent as JSON a client would send: a lone surrogate \u-escaped, which orjson refuses to
    # read; the view reads it anyway so that the answer can name the field.
    variables = {"input": usage(tenant, **overrides)}
    raw = json.dumps({"query": RECORD_USAGE, "variables": variables}).encode()
    response = await tenant.client.post(
        "/graphql",
        content=raw,
        headers={"Authorization": f"Bearer {tenant.token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200
    error = refused(response.json())
    assert error["extensions"]["field"] == field
    assert await entries(database_url, tenant) == 0


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ('{ ledger(filter: {model: "a\\u0000"}) { nodes { id } } }', "filter.model"),
        ('mutation { createCustomer(input: {name: "N\\u{0}"}) { id } }', "input.name"),
        ('query($m: String = "\\u0000") { ledger(filter: {model: $m}) { nodes { id } } }', "m"),
    ],
)
async def test_a_nul_in_a_literal_is_a_validation_error_naming_the_argument(
    tenant: Tenant, document: str, field: str
) -> None:
    error = refused(await tenant.gql(document))
    assert error["extensions"]["field"] == field and "NUL" in error["message"]


async def test_a_lone_surrogate_in_the_document_is_a_validation_error(tenant: Tenant) -> None:
    error = refused(await tenant.gql('{ ledger(filter: {model: "\\ud800"}) { nodes { id } } }'))
    assert "Unicode" in error["message"]


async def test_a_nul_in_a_csv_export_parameter_is_refused_before_the_first_byte(
    tenant: Tenant,
) -> None:
    now = utcnow()
    response = await tenant.client.get(
        "/exports/ledger.csv",
        params={
            "start": format_rfc3339(now - timedelta(days=2)),
            "end": format_rfc3339(now),
            "model": "a\x00",
        },
        headers={"Authorization": f"Bearer {tenant.token}"},
    )
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["extensions"] == {"code": "VALIDATION_FAILED", "field": "model"}


def test_find_bad_text_walks_any_depth() -> None:
    deep: Any = "fine"
    for _ in range(5_000):  # deeper than orjson's or Python's recursion
        deep = [deep]
    assert find_bad_text(deep) is None
    deep[0] = "\x00"
    assert find_bad_text({"a": deep}) == ("a.0", "contains a NUL character (U+0000)")


# --- amounts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "amount", ["1000000000000000", "10000000000000000", "99999999999999999999999999"]
)
async def test_amounts_of_10_15_and_more_are_validation_errors(
    tenant: Tenant, database_url: str, amount: str
) -> None:
    deposit = {
        "idempotencyKey": uuid.uuid4().hex,
        "accountId": str(tenant.account_id),
        "amount": amount,
        "currency": "USD",
    }
    error = refused(await tenant.gql(DEPOSIT, {"input": deposit}))
    assert "15 integer digits" in error["message"]
    cost = refused(await tenant.gql(RECORD_USAGE, {"input": usage(tenant, providerCost=amount)}))
    assert "15 integer digits" in cost["message"]
    assert await entries(database_url, tenant) == 0
    with pytest.raises(ValidationFailed) as caught:
        require_payment_amount(Decimal(amount), "USD", "amount")
    assert caught.value.field == "amount"


async def test_the_largest_amount_is_recorded_exactly(tenant: Tenant) -> None:
    largest = "999999999999999.99"
    deposit = {
        "idempotencyKey": uuid.uuid4().hex,
        "accountId": str(tenant.account_id),
        "amount": largest,
        "currency": "USD",
    }
    body = await tenant.gql(
        "mutation($input: DepositInput!) { deposit(input: $input) { "
        "... on LedgerEntryRecorded { entry { amount } } } }",
        {"input": deposit},
    )
    assert Decimal(body["data"]["deposit"]["entry"]["amount"]) == Decimal(largest)


async def test_a_stripe_amount_of_10_18_is_a_validation_error(
    stripe_client: httpx.AsyncClient,  # noqa: F811
    tenant: Tenant,
    database_url: str,
) -> None:
    response = await post(stripe_client, checkout(tenant, f"pi_{uuid.uuid4().hex}", 10**18))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "VALIDATION_FAILED"
    nul = await post(stripe_client, checkout(tenant, f"pi_{uuid.uuid4().hex}", note="a\x00"))
    assert nul.status_code == 400 and "NUL" in nul.json()["error"]["message"]
    assert await entries(database_url, tenant) == 0


# --- websocket operations draw on the request budgets -----------------------------------------


@pytest.fixture(scope="module")
async def limited(settings: Settings, database_url: str) -> AsyncIterator[tuple[Starlette, int]]:
    app = create_app(
        settings.model_copy(update={"rate_limit_principal_per_minute": 3}), database_url
    )
    async with app.router.lifespan_context(app), serving(app, lifespan=False) as server:
        yield app, server.port  # type: ignore[attr-defined]


async def test_websocket_operations_share_the_principals_budget_with_http(
    limited: tuple[Starlette, int], mint: Any
) -> None:
    app, port = limited
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        tenant = await make_tenant(query_caches_state(app), http, mint)
        token = mint(tenant.org.id, ["org_admin"], subject=f"ws-{uuid.uuid4().hex}")
        async with ws_client(port) as client:
            assert (await client.init(token))["type"] == "connection_ack"
            for n in range(3):  # three operations: the whole budget
                await client.subscribe(f"q{n}", "{ me { subject } }")
                assert (await client.recv())["type"] == "next"
                assert (await client.recv())["type"] == "complete"
            await client.subscribe("over", USAGE_UPDATES)  # a subscription start is counted too
            error = await client.recv()
            assert error["type"] == "error" and error["id"] == "over"
            extensions = error["payload"][0]["extensions"]
            assert extensions["code"] == "RATE_LIMITED" and extensions["retryAfter"] >= 1
        over_http = await http.post(
            "/graphql",
            json={"query": "{ me { subject } }"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert over_http.status_code == 429
