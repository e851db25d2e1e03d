"""GraphQL over HTTP to the letter (app/graphql_http.py, app/graphql.py), the RFC details of
the OAuth endpoints, CORS for browsers, and request errors counted as errors.

``.ci/run`` also runs graphql-http's own audit against a served instance
(scripts/audit/audit.mjs); these tests pin each fix in the suite."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from starlette.applications import Starlette

from costgraph.app.graphql_http import GRAPHQL_RESPONSE, negotiate
from costgraph.app.main import create_app
from costgraph.app.settings import Settings
from tests.conftest import Tenant
from tests.test_auth_oauth import register
from tests.test_observability import captured_logs, json_lines, scrape, value

ORIGIN = "https://dash.example"


def auth(tenant: Tenant, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant.token}", **headers}


async def post(tenant: Tenant, body: Any, accept: str | None = None) -> httpx.Response:
    headers = auth(tenant, **({"Accept": accept} if accept else {}))
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return await tenant.client.post(
        "/graphql", content=content, headers={**headers, "Content-Type": "application/json"}
    )


# --- media types and request errors ---


@pytest.mark.parametrize(
    ("accept", "media"),
    [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        (GRAPHQL_RESPONSE, GRAPHQL_RESPONSE),
        (f"{GRAPHQL_RESPONSE}, application/json;q=0.9", GRAPHQL_RESPONSE),
        (f"application/json, {GRAPHQL_RESPONSE};q=0.5", "application/json"),
        (f"{GRAPHQL_RESPONSE};q=0", "application/json"),
    ],
)
async def test_the_media_type_follows_accept(
    tenant: Tenant, accept: str | None, media: str
) -> None:
    assert negotiate(accept) == media
    response = await post(tenant, {"query": "{ me { subject } }"}, accept)
    assert response.status_code == 200
    assert response.headers["content-type"] == media
    assert response.json() == {"data": {"me": {"subject": "tester"}}}


@pytest.mark.parametrize(
    "body",
    [
        {"query": "{"},  # does not parse
        {"query": "{ nonsense }"},  # does not validate
        {"query": "query($id: ID!) { me { subject } }", "variables": {"id": None}},  # coercion
        {"query": "query A { me { subject } } query B { me { roles } }"},  # which one?
        {"query": "query A { me { subject } }", "operationName": "Nope"},
        {"query": "{ " + "me { subject } " * 20 + "}"},  # a limit
    ],
    ids=["syntax", "validation", "coercion", "several operations", "unknown name", "limit"],
)
async def test_a_request_error_has_no_data_and_its_status_follows_the_media_type(
    tenant: Tenant, body: dict[str, Any]
) -> None:
    plain = await post(tenant, body)
    assert plain.status_code == 200 and plain.headers["content-type"] == "application/json"
    assert "data" not in plain.json() and plain.json()["errors"]
    for error in plain.json()["errors"]:
        assert error["extensions"]["code"] in {"VALIDATION_FAILED", "QUERY_TOO_COMPLEX"}
    strict = await post(tenant, body, GRAPHQL_RESPONSE)
    assert strict.status_code == 400 and strict.headers["content-type"] == GRAPHQL_RESPONSE
    assert "data" not in strict.json() and strict.json()["errors"]


async def test_a_field_error_keeps_its_data(tenant: Tenant) -> None:
    """An error raised by a field is not a request error: data stays, status 200."""
    response = await post(
        tenant,
        {"query": f'{{ me {{ subject }} budgetStatus(budgetId: "{uuid.uuid4()}") {{ spent }} }}'},
        GRAPHQL_RESPONSE,
    )
    assert response.status_code == 200
    body = response.json()
    assert "data" in body and body["errors"][0]["path"] == ["budgetStatus"]


async def test_the_named_operation_of_several_runs(tenant: Tenant) -> None:
    response = await post(
        tenant,
        {"query": "query A { me { subject } } query B { me { roles } }", "operationName": "B"},
    )
    assert response.json() == {"data": {"me": {"roles": ["org_admin"]}}}


@pytest.mark.parametrize(
    "body",
    [
        {"query": "{ me { subject } }", "operationName": {"obj": "ect"}},
        {"query": "{ me { subject } }", "operationName": 0},
        {"query": "{ me { subject } }", "operationName": ["a"]},
        {"query": {"obj": "ect"}},
        {"query": "{ me { subject } }", "variables": "string"},
        {"query": "{ me { subject } }", "extensions": ["array"]},
        {"notquery": "{ me { subject } }"},
        b'{ "not a JSON',
        b"",
        b"[" * 100_000 + b"]" * 100_000,  # nested far beyond any JSON parser's stack
        b'{"query": "{ me { subject } }", "variables": ' + b'{"a":' * 5_000 + b"1" + b"}" * 5_001,
    ],
    ids=[
        "object operationName",
        "number operationName",
        "list operationName",
        "object query",
        "string variables",
        "list extensions",
        "no query",
        "bad JSON",
        "no body",
        "deep array",
        "deep variables",
    ],
)
async def test_a_malformed_request_is_400_with_a_json_error(tenant: Tenant, body: Any) -> None:
    response = await post(tenant, body)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "VALIDATION_FAILED" and error["message"]
    assert "data" not in response.json()


async def test_a_mutation_over_get_is_405_with_allow(tenant: Tenant) -> None:
    response = await tenant.client.get(
        "/graphql",
        params={"query": 'mutation { createCustomer(input: {name: "x"}) { id } }'},
        headers=auth(tenant),
    )
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert response.json()["errors"][0]["extensions"]["code"] == "VALIDATION_FAILED"
    query = await tenant.client.get(
        "/graphql", params={"query": "{ me { subject } }"}, headers=auth(tenant)
    )
    assert query.status_code == 200 and query.json()["data"]["me"]["subject"] == "tester"


async def test_a_subscription_over_post_is_a_typed_request_error(tenant: Tenant) -> None:
    response = await post(tenant, {"query": "subscription { alertRaised { id } }"})
    assert response.status_code == 200
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "VALIDATION_FAILED"
    assert "websocket" in error["message"] and "data" not in response.json()


async def test_a_syntax_error_counts_as_an_error(tenant: Tenant, client: httpx.AsyncClient) -> None:
    before = await scrape(client)
    request_id = f"req-{uuid.uuid4().hex[:8]}"
    with captured_logs() as stream:
        await tenant.client.post(
            "/graphql",
            json={"query": "{ me { subject "},
            headers=auth(tenant, **{"X-Request-ID": request_id}),
        )
    after = await scrape(client)
    name = "costgraph_graphql_operations_total"
    moved = value(after, name, type="unknown", outcome="error") - value(
        before, name, type="unknown", outcome="error"
    )
    assert moved == 1
    (access,) = [
        line
        for line in json_lines(stream)
        if line.get("request_id") == request_id and line["logger"] == "costgraph.http"
    ]
    assert access["outcome"] == "error" and access["error_codes"] == ["VALIDATION_FAILED"]


# --- CORS ---


@pytest.fixture(scope="module")
async def cors_client(settings: Settings, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    application: Starlette = create_app(
        settings.model_copy(update={"allowed_origins": [ORIGIN]}), database_url
    )
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def test_cors_allows_trace_headers_and_exposes_the_request_id(
    cors_client: httpx.AsyncClient, tenant: Tenant
) -> None:
    preflight = await cors_client.options(
        "/graphql",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": (
                "authorization, content-type, traceparent, x-request-id"
            ),
        },
    )
    assert preflight.status_code == 200
    allowed = {
        h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")
    }
    assert {"authorization", "content-type", "traceparent", "x-request-id"} <= allowed
    response = await cors_client.post(
        "/graphql",
        json={"query": "{ me { subject } }"},
        headers=auth(tenant, Origin=ORIGIN, **{"X-Request-ID": "req-cors-1"}),
    )
    assert response.headers["access-control-expose-headers"].lower() == "x-request-id"
    assert response.headers["x-request-id"] == "req-cors-1"


# --- the OAuth endpoints ---


async def test_rfc8414_metadata_validates_whole(client: httpx.AsyncClient) -> None:
    metadata = (await client.get("/.well-known/oauth-authorization-server")).json()
    AuthorizationServerMetadata(metadata).validate()  # raises on any fault
    assert metadata["response_types_supported"] == ["none"]
    assert "authorization_endpoint" not in metadata


async def test_a_token_request_without_grant_type_is_invalid_request(tenant: Tenant) -> None:
    credentials = await register(tenant, ["usage:write"])
    for form in ({}, {"grant_type": ""}):
        response = await tenant.client.post(
            "/oauth/token",
            data=form,
            auth=(credentials["clientId"], credentials["clientSecret"]),
        )
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"


async def test_a_nul_in_a_token_request_is_invalid_request(tenant: Tenant) -> None:
    response = await tenant.client.post(
        "/oauth/token",
        content=b"grant_type=client_credentials&client_id=a%00b&client_secret=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
