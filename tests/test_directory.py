"""Organisations, customers, accounts, departments and users."""

from __future__ import annotations

import uuid
from typing import Any

from tests.conftest import Tenant

CREATE_ORG = """mutation($input: OrganizationInput!) {
  createOrganization(input: $input) { id slug reportingCurrency } }"""


async def test_only_platform_admin_creates_organizations(tenant: Tenant, mint: Any) -> None:
    slug = f"org-{uuid.uuid4().hex[:8]}"
    variables = {"input": {"name": "New Co", "slug": slug, "reportingCurrency": "EUR"}}
    refused = await tenant.gql(CREATE_ORG, variables)
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    admin = mint(None, ["platform_admin"])
    created = await tenant.gql(CREATE_ORG, variables, token=admin)
    assert created["data"]["createOrganization"]["reportingCurrency"] == "EUR"
    again = await tenant.gql(CREATE_ORG, variables, token=admin)
    assert again["errors"][0]["extensions"] == {"code": "VALIDATION_FAILED", "field": "input.slug"}
    bad = await tenant.gql(
        CREATE_ORG,
        {"input": {"name": "x", "slug": "Bad Slug!", "reportingCurrency": "EUR"}},
        token=admin,
    )
    assert bad["errors"][0]["extensions"]["field"] == "input.slug"


async def test_customers_accounts_users(tenant: Tenant, other_tenant: Tenant) -> None:
    customer = await tenant.gql(
        'mutation { createCustomer(input: {name: "Beta", externalId: "cus_9"}) { id name } }'
    )
    customer_id = customer["data"]["createCustomer"]["id"]
    duplicate = await tenant.gql(
        'mutation { createCustomer(input: {name: "Beta 2", externalId: "cus_9"}) { id } }'
    )
    assert duplicate["errors"][0]["extensions"]["code"] == "VALIDATION_FAILED"

    account = await tenant.gql(
        """mutation($c: ID!) {
             createAccount(input: {customerId: $c, name: "Beta main", postpaid: true}) {
               id postpaid currency customer { name } } }""",
        {"c": customer_id},
    )
    assert account["data"]["createAccount"]["customer"]["name"] == "Beta"
    assert account["data"]["createAccount"]["currency"] == "USD"

    # Another tenant's customer answers as an unknown one.
    foreign = await tenant.gql(
        """mutation($c: ID!) { createAccount(input: {customerId: $c, name: "x"}) { id } }""",
        {"c": str(other_tenant.customer_id)},
    )
    assert foreign["errors"][0]["extensions"]["code"] == "NOT_FOUND"

    department = await tenant.gql('mutation { createDepartment(input: {name: "Research"}) { id } }')
    department_id = department["data"]["createDepartment"]["id"]
    user = await tenant.gql(
        """mutation($d: ID) { createUser(input: {email: "Ada@Example.com", departmentId: $d}) {
             email department { name } } }""",
        {"d": department_id},
    )
    assert user["data"]["createUser"] == {
        "email": "ada@example.com",
        "department": {"name": "Research"},
    }
    bad_email = await tenant.gql('mutation { createUser(input: {email: "nope"}) { id } }')
    assert bad_email["errors"][0]["extensions"]["field"] == "input.email"

    listed = await tenant.gql(
        """query($c: ID) {
             accounts(customerId: $c) { nodes { name } }
             customers(first: 1) { nodes { name } pageInfo { hasNextPage endCursor } } }""",
        {"c": customer_id},
    )
    assert listed["data"]["accounts"]["nodes"] == [{"name": "Beta main"}]
    page = listed["data"]["customers"]
    assert page["pageInfo"]["hasNextPage"] is True
    rest = await tenant.gql(
        "query($a: String) { customers(after: $a) { nodes { name } } }",
        {"a": page["pageInfo"]["endCursor"]},
    )
    names = [page["nodes"][0]["name"]] + [n["name"] for n in rest["data"]["customers"]["nodes"]]
    assert sorted(names) == ["Beta", "Customer One"]
