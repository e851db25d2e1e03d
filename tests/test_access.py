"""Roles and scopes at the field, and the error contract of the HTTP surface."""

from __future__ import annotations

from graphql import GraphQLError

from costgraph.app.graphql import format_error
from costgraph.kernel.errors import NotFound
from tests.conftest import Tenant
from tests.test_ledger import DEPOSIT, LEDGER, deposit_input


async def test_finance_viewer_reads_but_cannot_write(tenant: Tenant) -> None:
    viewer = tenant.token_for(roles=["finance_viewer"])
    read = await tenant.gql(LEDGER, {}, token=viewer)
    assert "errors" not in read
    write = await tenant.gql(DEPOSIT, {"input": deposit_input(tenant)}, token=viewer)
    assert write["data"] is None
    assert write["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_member_cannot_read_the_ledger(tenant: Tenant) -> None:
    member = tenant.token_for(roles=["member"])
    body = await tenant.gql(LEDGER, {}, token=member)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    me = await tenant.gql("{ me { roles } organization { slug } }", token=member)
    assert me["data"]["me"]["roles"] == ["member"]


async def test_scopes_narrow_a_client_token(tenant: Tenant) -> None:
    reader = tenant.token_for(scopes=["billing:read"])
    assert "errors" not in await tenant.gql(LEDGER, {}, token=reader)
    write = await tenant.gql(DEPOSIT, {"input": deposit_input(tenant)}, token=reader)
    assert write["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_missing_and_garbage_tokens_get_401(tenant: Tenant) -> None:
    for headers in ({}, {"Authorization": "Bearer not.a.jwt"}, {"Authorization": "Basic abc"}):
        response = await tenant.client.post(
            "/graphql", json={"query": "{ me { subject } }"}, headers=headers
        )
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer ")
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_mutation_over_get_is_refused(tenant: Tenant) -> None:
    response = await tenant.client.get(
        "/graphql",
        params={"query": 'mutation { createDepartment(input: {name: "x"}) { id } }'},
        headers={"Authorization": f"Bearer {tenant.token}"},
    )
    assert response.status_code in (400, 405)
    query = await tenant.client.get(
        "/graphql",
        params={"query": "{ organization { slug } }"},
        headers={"Authorization": f"Bearer {tenant.token}"},
    )
    assert query.json()["data"]["organization"]["slug"] == tenant.org.slug


def test_unexpected_errors_are_masked() -> None:
    leaked = GraphQLError(
        "boom", path=["ledger"], original_error=RuntimeError("SELECT * FROM secrets")
    )
    formatted = format_error(leaked)
    assert formatted["message"] == "Internal server error"
    assert formatted["extensions"] == {"code": "INTERNAL"}
    assert "SELECT" not in str(formatted)


def test_domain_errors_keep_their_code() -> None:
    error = GraphQLError(
        "x", path=["createAccount"], original_error=NotFound("customer", "c1", "input.customerId")
    )
    formatted = format_error(error)
    assert formatted["extensions"] == {"code": "NOT_FOUND", "field": "input.customerId"}
    assert formatted["message"] == "customer c1 not found"
