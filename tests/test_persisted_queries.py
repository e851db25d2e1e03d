"""Apollo's automatic persisted queries on /graphql, and the operator's allow-list mode.

A hash alone runs a document accepted before (else ``PersistedQueryNotFound``); a hash with
its document registers it once it passed every limit; a hash that does not match its document
is refused. GET, POST and batches speak it alike; hostile documents are never registered.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette

from costgraph.app.main import create_app
from costgraph.app.settings import Settings
from tests.conftest import Tenant, app_state, make_tenant
from tests.dates import month, rfc
from tests.subscriptions_support import serving, ws_client
from tests.test_query_limits import document_cache, entry_count

ME = "{ me { subject } }"
RECORD_USAGE = """mutation Record($input: UsageEventInput!) {
  recordUsage(input: $input) { __typename ... on UsageRecorded { replayed entry { id } } }
}"""


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def persisted(text: str, version: int = 1) -> dict[str, Any]:
    return {"persistedQuery": {"version": version, "sha256Hash": sha(text)}}


async def post(tenant: Tenant, body: dict[str, Any] | list[Any]) -> dict[str, Any]:
    response = await tenant.client.post(
        "/graphql", json=body, headers={"Authorization": f"Bearer {tenant.token}"}
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def only_error(body: dict[str, Any]) -> dict[str, Any]:
    assert "data" not in body or body["data"] is None, body
    (error,) = body["errors"]
    return dict(error)


def usage(tenant: Tenant) -> dict[str, Any]:
    return {
        "idempotencyKey": f"apq-{uuid.uuid4().hex}",
        "accountId": str(tenant.account_id),
        "occurredAt": rfc(month(-1, 1, 10)),
        "provider": "openai",
        "model": "gpt-4o-mini",
        "inputTokens": 1200,
        "outputTokens": 300,
        "providerCost": "0.000360000000",
        "providerCurrency": "USD",
    }


async def test_unknown_hash_then_register_then_hash_alone(
    tenant: Tenant, app: Starlette, database_url: str
) -> None:
    # A document no one sent before (a unique comment), so its hash is unknown.
    text = f"# {uuid.uuid4().hex}\n{RECORD_USAGE}"
    missing = only_error(await post(tenant, {"extensions": persisted(text), "variables": {}}))
    assert missing["message"] == "PersistedQueryNotFound"
    assert missing["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    assert await entry_count(database_url, tenant) == 0

    cache = document_cache(app)
    assert cache.text_of(sha(text)) is None
    first = await post(
        tenant,
        {"query": text, "variables": {"input": usage(tenant)}, "extensions": persisted(text)},
    )
    assert first["data"]["recordUsage"]["__typename"] == "UsageRecorded", first
    assert cache.text_of(sha(text)) == text

    again = await post(
        tenant, {"variables": {"input": usage(tenant)}, "extensions": persisted(text)}
    )
    assert again["data"]["recordUsage"] == {
        "__typename": "UsageRecorded",
        "replayed": False,
        "entry": {"id": again["data"]["recordUsage"]["entry"]["id"]},
    }
    assert await entry_count(database_url, tenant) == 2
    # Variables are still checked on a known hash: a bad one is refused, nothing written.
    bad = await post(
        tenant, {"variables": {"input": {"accountId": 1}}, "extensions": persisted(text)}
    )
    assert bad["errors"][0]["extensions"]["code"] == "VALIDATION_FAILED"
    assert await entry_count(database_url, tenant) == 2


async def test_hash_must_match_the_document(tenant: Tenant, app: Starlette) -> None:
    text = f"# {uuid.uuid4().hex}\n{ME}"
    wrong = {"persistedQuery": {"version": 1, "sha256Hash": sha(text + " ")}}
    error = only_error(await post(tenant, {"query": text, "extensions": wrong}))
    assert error["message"] == "provided sha does not match query"
    assert error["extensions"]["code"] == "VALIDATION_FAILED"
    # Neither hash became known.
    assert document_cache(app).text_of(sha(text + " ")) is None


@pytest.mark.parametrize(
    "extension",
    [
        {"persistedQuery": {"version": 2, "sha256Hash": "0" * 64}},
        {"persistedQuery": "abc"},
    ],
)
async def test_unsupported_versions_are_refused(tenant: Tenant, extension: dict[str, Any]) -> None:
    error = only_error(await post(tenant, {"extensions": extension}))
    assert error["extensions"]["code"] == "PERSISTED_QUERY_NOT_SUPPORTED"


async def test_malformed_hash_is_refused(tenant: Tenant) -> None:
    extension = {"persistedQuery": {"version": 1, "sha256Hash": "ABC"}}
    error = only_error(await post(tenant, {"extensions": extension}))
    assert error["extensions"]["code"] == "VALIDATION_FAILED"
    assert "sha256Hash" in error["message"]


async def test_get_runs_a_known_hash_and_needs_a_token(tenant: Tenant) -> None:
    text = f"# {uuid.uuid4().hex}\n{ME}"
    params = {"extensions": json.dumps(persisted(text))}
    auth = {"Authorization": f"Bearer {tenant.token}", "Accept": "application/json"}
    missing = await tenant.client.get("/graphql", params=params, headers=auth)
    assert only_error(missing.json())["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    registered = await tenant.client.get("/graphql", params={"query": text, **params}, headers=auth)
    assert registered.json() == {"data": {"me": {"subject": "tester"}}}
    known = await tenant.client.get("/graphql", params=params, headers=auth)
    assert known.json() == {"data": {"me": {"subject": "tester"}}}
    # Not the IDE's page, and not without a token (a browser's Accept included).
    anonymous = await tenant.client.get("/graphql", params=params, headers={"Accept": "text/html"})
    assert anonymous.status_code == 401


async def test_a_mutation_by_hash_is_not_run_over_get(tenant: Tenant, database_url: str) -> None:
    text = f"# {uuid.uuid4().hex}\n{RECORD_USAGE}"
    await post(
        tenant,
        {"query": text, "variables": {"input": usage(tenant)}, "extensions": persisted(text)},
    )
    response = await tenant.client.get(
        "/graphql",
        params={
            "extensions": json.dumps(persisted(text)),
            "variables": json.dumps({"input": usage(tenant)}),
        },
        headers={"Authorization": f"Bearer {tenant.token}", "Accept": "application/json"},
    )
    assert response.status_code == 405
    assert await entry_count(database_url, tenant) == 1


async def test_hostile_documents_are_never_registered(tenant: Tenant, app: Starlette) -> None:
    deep = "{ me " + "{ subject " * 40 + "}" * 41
    refused = only_error(await post(tenant, {"query": deep, "extensions": persisted(deep)}))
    assert refused["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert document_cache(app).text_of(sha(deep)) is None
    again = only_error(await post(tenant, {"extensions": persisted(deep)}))
    assert again["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    invalid = "{ me { noSuchField } }"
    assert only_error(await post(tenant, {"query": invalid, "extensions": persisted(invalid)}))
    assert document_cache(app).text_of(sha(invalid)) is None


async def test_evicted_documents_are_forgotten_by_hash(tenant: Tenant, app: Starlette) -> None:
    """One cache: a hash is known exactly while its document is cached."""
    cache = document_cache(app)
    text = f"# {uuid.uuid4().hex}\n{ME}"
    await post(tenant, {"query": text, "extensions": persisted(text)})
    assert cache.text_of(sha(text)) == text
    saved = cache.max_bytes
    try:
        cache.max_bytes = 0
        cache.put(f"# {uuid.uuid4().hex}\n{ME}", cache.get(text), 0)  # type: ignore[arg-type]
    finally:
        cache.max_bytes = saved
    assert cache.text_of(sha(text)) is None
    error = only_error(await post(tenant, {"extensions": persisted(text)}))
    assert error["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"


# --- allow-list mode --------------------------------------------------------------------------


def write_manifest(path: Path) -> Path:
    operations = [
        {"id": sha(text), "body": text, "name": name, "type": kind}
        for text, name, kind in ((ME, "Me", "query"), (RECORD_USAGE, "Record", "mutation"))
    ]
    document = {"format": "apollo-persisted-query-manifest", "version": 1, "operations": operations}
    path.write_bytes(orjson.dumps(document))
    return path


@pytest.fixture(scope="module")
async def allow_list_app(
    settings: Settings, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Starlette]:
    manifest = write_manifest(tmp_path_factory.mktemp("apq") / "manifest.json")
    strict = settings.model_copy(
        update={
            "graphql_persisted_queries_only": True,
            "graphql_persisted_query_manifest": manifest,
        }
    )
    application = create_app(strict, database_url)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def listed(allow_list_app: Starlette, mint: Any) -> AsyncIterator[Tenant]:
    transport = httpx.ASGITransport(app=allow_list_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield await make_tenant(app_state(allow_list_app), http, mint)


async def test_allow_list_runs_only_the_manifest(listed: Tenant, database_url: str) -> None:
    # By hash, never sent in full before: the manifest knows it.
    assert await post(listed, {"extensions": persisted(ME)}) == {
        "data": {"me": {"subject": "tester"}}
    }
    # In full, without a hash: allowed, it is the manifest's.
    assert (await post(listed, {"query": ME}))["data"] == {"me": {"subject": "tester"}}
    recorded = await post(
        listed, {"variables": {"input": usage(listed)}, "extensions": persisted(RECORD_USAGE)}
    )
    assert recorded["data"]["recordUsage"]["__typename"] == "UsageRecorded", recorded
    # Anything else is refused, registered or not, and nothing runs.
    other = "{ me { subject roles } }"
    for body in ({"query": other}, {"query": other, "extensions": persisted(other)}):
        error = only_error(await post(listed, body))
        assert error["extensions"]["code"] == "PERSISTED_QUERY_NOT_ALLOWED"
    error = only_error(await post(listed, {"extensions": persisted(other)}))
    assert error["extensions"]["code"] == "PERSISTED_QUERY_NOT_ALLOWED"
    assert await entry_count(database_url, listed) == 1


def test_allow_list_mode_needs_a_manifest(settings: Settings) -> None:
    with pytest.raises(ValueError, match="PERSISTED_QUERY_MANIFEST"):
        Settings(**{**settings.model_dump(), "graphql_persisted_queries_only": True})


def test_a_manifest_entry_must_be_its_body_hash(tmp_path: Path, settings: Settings) -> None:
    from costgraph.app.persisted_queries import load_manifest

    path = tmp_path / "bad.json"
    operations = [{"id": "0" * 64, "body": ME}]
    path.write_bytes(
        orjson.dumps({"format": "apollo-persisted-query-manifest", "operations": operations})
    )
    with pytest.raises(ValueError, match="SHA-256"):
        load_manifest(path)


# --- over the websocket (graphql-transport-ws subscribe payloads) ------------------------------


async def ws_answer(port: int, token: str, payload: dict[str, Any]) -> dict[str, Any]:
    async with ws_client(port) as ws:
        ack = await ws.init(token)
        assert ack["type"] == "connection_ack", ack
        await ws.send({"id": "q", "type": "subscribe", "payload": payload})
        return await ws.recv()


async def test_websocket_subscribe_payloads_speak_it(
    settings: Settings, database_url: str, mint: Any, tmp_path: Path
) -> None:
    """Open mode: unknown hash, then registered by its text, then by hash alone. Allow-list
    mode: the manifest's document by hash; any other refused."""
    text = f"# {uuid.uuid4().hex}\n{ME}"
    manifest = write_manifest(tmp_path / "manifest.json")
    modes = (
        {},
        {"graphql_persisted_queries_only": True, "graphql_persisted_query_manifest": manifest},
    )
    for update in modes:
        application = create_app(settings.model_copy(update=update), database_url)
        async with (
            application.router.lifespan_context(application),
            serving(application, lifespan=False) as server,
            httpx.AsyncClient() as http,
        ):
            port: int = server.port  # type: ignore[attr-defined]
            tenant = await make_tenant(app_state(application), http, mint)
            if not update:
                missing = await ws_answer(port, tenant.token, {"extensions": persisted(text)})
                assert missing["type"] == "error", missing
                assert missing["payload"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
                full = {"query": text, "extensions": persisted(text)}
                registered = await ws_answer(port, tenant.token, full)
                assert registered["payload"]["data"] == {"me": {"subject": "tester"}}
                known = await ws_answer(port, tenant.token, {"extensions": persisted(text)})
                assert known["payload"]["data"] == {"me": {"subject": "tester"}}, known
            else:
                listed = await ws_answer(port, tenant.token, {"extensions": persisted(ME)})
                assert listed["payload"]["data"] == {"me": {"subject": "tester"}}, listed
                refused = await ws_answer(port, tenant.token, {"query": text})
                assert refused["type"] == "error", refused
                assert refused["payload"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_ALLOWED"
