"""GraphQL protection: depth, aliases, tokens, cost and list sizes refused before anything runs
(``QUERY_TOO_COMPLEX``), no batching, no mutation over GET, JSON bodies only, no suggestions
and no introspection when it is off.

Most tests run against an app of their own with small limits and production defaults for
introspection; the session app (introspection on, default limits) serves as the contrast.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from graphql import parse
from starlette.applications import Starlette

from costgraph.app.graphql_schema import build_schema
from costgraph.app.main import create_app
from costgraph.app.query_caches import DocumentCache, cache_of
from costgraph.app.query_cost import FIELD_COSTS
from costgraph.app.query_limits import QueryLimits
from costgraph.app.query_shape import analyse
from costgraph.app.settings import Settings
from tests.conftest import Tenant, app_state, make_tenant, raw_connection
from tests.dates import month, rfc

STRICT = {
    "introspection": False,
    "graphql_ide": False,
    "graphql_max_depth": 5,
    "graphql_max_aliases": 3,
    "graphql_max_tokens": 300,
    "graphql_max_cost": 55,
    "graphql_max_list_size": 5,
    "max_batch_events": 3,  # recordUsageBatch's input: at most 2 * 3 items before execution
}

RECORD_USAGE = """mutation($input: UsageEventInput!) {
  recordUsage(input: $input) { __typename ... on UsageRecorded { entry { id } } }
}"""
RECORD_BATCH = """mutation($input: [UsageEventInput!]!) {
  recordUsageBatch(input: $input) {
    __typename
    ... on UsageBatchRecorded { recorded }
    ... on UserError { code message field }
  }
}"""


@pytest.fixture(scope="module")
async def strict_app(settings: Settings, database_url: str) -> AsyncIterator[Starlette]:
    application = create_app(settings.model_copy(update=STRICT), database_url)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="module")
async def strict_client(strict_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=strict_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
async def strict(strict_app: Starlette, strict_client: httpx.AsyncClient, mint: Any) -> Tenant:
    return await make_tenant(app_state(strict_app), strict_client, mint)


def usage(tenant: Tenant, **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "idempotencyKey": f"u-{uuid.uuid4().hex}",
        "accountId": str(tenant.account_id),
        "occurredAt": rfc(month(-1, 1, 10)),
        "provider": "openai",
        "model": "gpt-4o-mini",
        "inputTokens": 1200,
        "outputTokens": 300,
        "providerCost": "0.000360000000",
        "providerCurrency": "USD",
    }
    event.update(overrides)
    return event


async def entry_count(database_url: str, tenant: Tenant) -> int:
    async with raw_connection(database_url) as connection:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM ledger_entries WHERE organization_id = $1", tenant.org.id
        )
    return count


def document_cache(application: Starlette) -> DocumentCache:
    graphql = next(r for r in application.routes if getattr(r, "path", "") == "/graphql")
    cache = cache_of(graphql.app.schema)  # type: ignore[attr-defined]
    assert cache is not None
    return cache


def refusal(body: dict[str, Any], limit: str) -> dict[str, Any]:
    """The one QUERY_TOO_COMPLEX error of a refused request, which returned no data."""
    assert body.get("data") is None, body
    errors = [e for e in body["errors"] if e["extensions"].get("limit") == limit]
    assert errors, body
    error: dict[str, Any] = errors[0]
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    return error


# --- ordinary requests pass -----------------------------------------------------------------


async def test_ordinary_requests_run_under_small_limits(strict: Tenant, database_url: str) -> None:
    me = await strict.gql("{ me { subject } }")
    assert me == {"data": {"me": {"subject": "tester"}}}
    recorded = await strict.gql(RECORD_USAGE, {"input": usage(strict)})
    assert recorded["data"]["recordUsage"]["__typename"] == "UsageRecorded", recorded
    page = await strict.gql("{ ledger(first: 2) { nodes { id } } }")
    assert len(page["data"]["ledger"]["nodes"]) == 1
    assert await entry_count(database_url, strict) == 1


# --- depth, aliases, tokens -------------------------------------------------------------------


async def test_depth_is_counted_through_fragments(strict: Tenant) -> None:
    body = await strict.gql(
        """{ ledger { ...Page } }
        fragment Page on LedgerEntryConnection { edges { node { ...Entry } } }
        fragment Entry on LedgerEntry { account { customer { id } } }"""
    )
    error = refusal(body, "depth")
    assert error["extensions"]["maximum"] == 5
    assert error["extensions"]["found"] == 6
    assert "depth 6" in error["message"] and "limit is 5" in error["message"]


async def test_aliases_are_counted_at_each_spread(strict: Tenant) -> None:
    spread_twice = await strict.gql(
        "{ ...Two ...Two } fragment Two on Query { a: me { subject } b: me { subject } }"
    )
    error = refusal(spread_twice, "aliases")
    assert error["extensions"]["found"] == 4
    nested = await strict.gql(
        """{ me { ...Outer } }
        fragment Outer on Principal { ...Inner ...Inner }
        fragment Inner on Principal { x: subject y: subject }"""
    )
    assert refusal(nested, "aliases")["extensions"]["found"] == 4


async def test_aliases_in_inline_fragments_count(strict: Tenant) -> None:
    body = await strict.gql(
        """{ ... on Query { a: me { subject } b: me { subject } }
             ... on Query { c: me { subject } ... on Query { d: me { subject } } } }"""
    )
    assert refusal(body, "aliases")["extensions"]["found"] == 4
    allowed = await strict.gql("{ ... on Query { a: me { subject } } b: me { subject } }")
    assert allowed["data"]["a"] == allowed["data"]["b"] == {"subject": "tester"}


async def test_a_fragment_fan_out_is_estimated_without_being_walked(tenant: Tenant) -> None:
    """40 levels of two fragments, each spreading both of the next level, reach 2^40 fields
    from ~900 tokens; the estimate counts them from one summary per fragment (walking them
    would never end)."""
    levels = 40
    fragments = "\n".join(
        f"fragment {name}{i} on Principal {{ subject ...A{i + 1} ...B{i + 1} }}"
        for i in range(levels)
        for name in "AB"
    )
    ends = "\n".join(f"fragment {name}{levels} on Principal {{ subject }}" for name in "AB")
    query = f"{{ me {{ ...A0 }} }}\n{fragments}\n{ends}"
    # Refused before parsing: its selections, each fragment counted at each spread.
    error = refusal(await tenant.gql(query), "selections")
    assert error["extensions"]["found"] >= 2**40
    (cost,) = analyse(build_schema()._schema, parse(query), QueryLimits())
    # me costs 1 + (1 + cost of F0); each spread costs 1 besides its fragment: 2^41 in all.
    assert cost.extensions["limit"] == "cost" and cost.extensions["found"] == 2**41
    assert cost.extensions["maximum"] == 10_000  # the default COSTGRAPH_GRAPHQL_MAX_COST


async def test_tokens_over_the_limit_stop_the_parser(strict: Tenant) -> None:
    body = await strict.gql("{ me { " + "subject " * 300 + "} }")
    error = refusal(body, "tokens")
    assert error["extensions"]["maximum"] == 300
    assert "300 tokens" in error["message"]


# --- cost -------------------------------------------------------------------------------------


async def test_cost_takes_the_page_size_and_assumes_the_largest_for_a_variable(
    strict: Tenant,
) -> None:
    by_variable = await strict.gql(
        "query($n: Int) { ledger(first: $n) { nodes { id } } }", {"n": 2}
    )
    error = refusal(by_variable, "cost")
    # 1 for the connection + 200 (COSTGRAPH_MAX_PAGE_SIZE) * 1 for its nodes
    assert error["extensions"]["found"] == 201
    assert "estimated cost of 201" in error["message"] and "limit is 55" in error["message"]
    by_literal = await strict.gql("{ ledger(first: 40) { nodes { id } } }")
    assert by_literal["data"]["ledger"]["nodes"] == []


async def test_a_mutation_over_the_cost_limit_writes_nothing(
    strict: Tenant, database_url: str
) -> None:
    body = await strict.gql(
        """mutation($one: UsageEventInput!, $many: [UsageEventInput!]!) {
          recordUsage(input: $one) { ... on UsageRecorded { entry { id } } }
          recordUsageBatch(input: $many) { ... on UsageBatchRecorded { recorded } }
        }""",
        {"one": usage(strict), "many": [usage(strict)]},
    )
    error = refusal(body, "cost")
    assert error["extensions"]["found"] == 10 + 1 + 50  # app/query_cost.py's weights
    assert await entry_count(database_url, strict) == 0


def test_the_estimate_follows_the_cost_table() -> None:
    schema = build_schema()._schema
    limits = QueryLimits(max_cost=0)

    def cost(query: str) -> int:
        errors = analyse(schema, parse(query), limits)
        found = [e.extensions["found"] for e in errors if e.extensions["limit"] == "cost"]
        return int(found[0]) if found else 0

    assert cost("{ me { subject } }") == 1
    assert cost("{ ledger(first: 10) { nodes { id account { id } } } }") == 1 + 10 * 2
    assert cost("{ ledger { nodes { id } } }") == 1 + 50  # first omitted: the default page
    assert cost("{ ledger(first: 5000) { nodes { id } } }") == 1 + 200  # the resolver's maximum
    span = '(range: {start: "2026-01-01T00:00:00Z", end: "2026-02-01T00:00:00Z"}'
    assert cost("{ organizationPnl" + span + ") { topAgents { agent } } }") == 20 + 5
    assert cost("{ usersView" + span + ") { user { id } } }") == 20 + 50 * 1  # limit's default
    assert cost("{ usersView" + span + ", limit: 2) { user { id } } }") == 20 + 2 * 1
    assert cost("mutation { releaseReservation(id: 1) { id } }") == 10


def test_every_weighted_field_exists() -> None:
    schema = build_schema()._schema
    for coordinate in FIELD_COSTS:
        type_name, field_name = coordinate.split(".")
        owner = schema.get_type(type_name)
        assert owner is not None and field_name in owner.fields, coordinate  # type: ignore[attr-defined]


# --- list sizes -------------------------------------------------------------------------------


async def test_an_oversized_batch_is_refused_before_it_is_read(
    strict: Tenant, database_url: str
) -> None:
    flood = await strict.gql(RECORD_BATCH, {"input": [usage(strict) for _ in range(7)]})
    error = refusal(flood, "listSize")
    assert error["extensions"]["maximum"] == 6 and error["extensions"]["found"] == 7
    assert "$input" in error["message"]
    # Over the domain's own limit but within twice it: the typed answer of the mutation.
    over = await strict.gql(RECORD_BATCH, {"input": [usage(strict) for _ in range(4)]})
    result = over["data"]["recordUsageBatch"]
    assert result["code"] == "VALIDATION_FAILED" and "at most 3" in result["message"]
    assert await entry_count(database_url, strict) == 0


async def test_lists_inside_variables_and_literals_are_capped(
    strict: Tenant, database_url: str
) -> None:
    units = [{"kind": "IMAGE", "quantity": "1"} for _ in range(6)]
    nested = await strict.gql(RECORD_BATCH, {"input": [usage(strict, units=units)]})
    error = refusal(nested, "listSize")
    assert "$input.0.units" in error["message"] and error["extensions"]["maximum"] == 5
    assert await entry_count(database_url, strict) == 0
    literal = await strict.gql(
        '{ usage(range: {start: "2026-01-01T00:00:00Z", end: "2026-01-02T00:00:00Z"}, '
        "groupBy: [MODEL, MODEL, MODEL, MODEL, MODEL, MODEL]) { model } }"
    )
    assert "UsageDimension" in refusal(literal, "listSize")["message"]


# --- transport: batching, GET, content types ------------------------------------------------


async def test_batched_operations_are_refused(strict: Tenant, database_url: str) -> None:
    operation = {"query": RECORD_USAGE, "variables": {"input": usage(strict)}}
    response = await strict.client.post(
        "/graphql",
        json=[operation, dict(operation, variables={"input": usage(strict)})],
        headers={"Authorization": f"Bearer {strict.token}"},
    )
    assert response.status_code == 400
    assert "Batching is not enabled" in response.text
    assert await entry_count(database_url, strict) == 0


async def test_a_mutation_over_get_is_refused(strict: Tenant, database_url: str) -> None:
    event = usage(strict)
    mutation = (
        "mutation { recordUsage(input: {"
        f'idempotencyKey: "{event["idempotencyKey"]}", accountId: "{event["accountId"]}", '
        'provider: "openai", model: "gpt-4o-mini", inputTokens: 1, outputTokens: 1, '
        'providerCost: "0.01", providerCurrency: "USD"}) { __typename } }'
    )
    headers = {"Authorization": f"Bearer {strict.token}"}
    response = await strict.client.get("/graphql", params={"query": mutation}, headers=headers)
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert response.json()["errors"][0]["extensions"]["code"] == "VALIDATION_FAILED"
    assert await entry_count(database_url, strict) == 0
    query = await strict.client.get(
        "/graphql", params={"query": "{ me { subject } }"}, headers=headers
    )
    assert query.json() == {"data": {"me": {"subject": "tester"}}}


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
async def test_only_json_bodies_are_accepted(
    strict: Tenant, database_url: str, content_type: str | None
) -> None:
    body = orjson.dumps({"query": RECORD_USAGE, "variables": {"input": usage(strict)}})
    headers = {"Authorization": f"Bearer {strict.token}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = await strict.client.post("/graphql", content=body, headers=headers)
    assert response.status_code == 415
    assert response.json()["errors"][0]["extensions"]["code"] == "VALIDATION_FAILED"
    assert await entry_count(database_url, strict) == 0
    accepted = await strict.client.post(
        "/graphql",
        content=body,
        headers={**headers, "Content-Type": "application/json; charset=utf-8"},
    )
    assert accepted.json()["data"]["recordUsage"]["__typename"] == "UsageRecorded"


# --- introspection off: no schema, no IDE, no suggestions --------------------------------------


SUGGESTIBLE = [
    "{ mee { subject } }",  # a field
    "{ ledger(frist: 2) { nodes { id } } }",  # an argument
    "{ ledger(filter: {tpyes: [USAGE]}) { nodes { id } } }",  # an input field
]


@pytest.mark.parametrize("query", SUGGESTIBLE)
async def test_no_suggestions_when_introspection_is_off(
    strict: Tenant, tenant: Tenant, query: str
) -> None:
    with_introspection = await tenant.gql(query)
    assert "Did you mean" in with_introspection["errors"][0]["message"]
    body = await strict.gql(query)
    assert body["errors"], body
    for error in body["errors"]:
        assert "Did you mean" not in error["message"], error
        assert error["extensions"]["code"] == "VALIDATION_FAILED"


async def test_introspection_and_the_ide_are_off_by_default(strict: Tenant) -> None:
    for query in ("{ __schema { queryType { name } } }", '{ __type(name: "Query") { name } }'):
        body = await strict.gql(query)
        assert body.get("data") is None and "introspection" in body["errors"][0]["message"]
    ide = await strict.client.get("/graphql", headers={"Accept": "text/html"})
    assert ide.status_code == 404
    assert Settings().introspection is False and Settings().graphql_ide is False


# --- the caches stay effective ---------------------------------------------------------------


async def test_validation_stays_cached(strict_app: Starlette, strict: Tenant) -> None:
    """An accepted document is kept (parsed and validated once); a refused one never is."""
    cache = document_cache(strict_app)
    query = f"{{ me {{ subject }} organization {{ slug }} }} # {uuid.uuid4().hex}"
    await strict.gql(query)
    kept = cache.get(query)
    assert kept is not None
    await strict.gql(query)
    assert cache.get(query) is kept
    refused = "{ " + "me { subject } " * 12 + "} # " + uuid.uuid4().hex  # repeated fields
    assert refusal(await strict.gql(refused), "repeatedFields")
    invalid = f"{{ nonsense }} # {uuid.uuid4().hex}"
    assert (await strict.gql(invalid))["errors"]
    assert cache.get(refused) is None and cache.get(invalid) is None
