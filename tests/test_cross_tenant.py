"""Tenant isolation, driven by the schema itself.

Every Query and Mutation field of ``build_schema()`` that takes an ID — as an argument or
anywhere inside an input — is called as tenant A with tenant B's real ids, and again with ids
that exist nowhere. The two answers must be identical (ids aside) and must be a refusal:
NOT_FOUND, or nothing. Nothing may be written in either tenant. Query fields are also read as
A and must show nothing of B, nor may B's pagination cursors show A anything of B's.

Arguments come from :data:`BUILDERS`, one entry per field. A field that takes an ID, or a
query that needs arguments, and has no entry fails :func:`test_every_field_is_covered` — so
a new field cannot skip this suite; its author adds a builder (a few lines) here.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import pytest
from graphql import (
    GraphQLField,
    GraphQLID,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLUnionType,
    Undefined,
    get_named_type,
    is_leaf_type,
)

from costgraph.app.graphql_schema import build_schema
from costgraph.models import Base
from tests.conftest import Tenant, raw_connection
from tests.dates import ago, month, month_key, rfc

SCHEMA = build_schema()._schema
ROOTS = {"query": SCHEMA.query_type, "mutation": SCHEMA.mutation_type}
SELECTION_DEPTH = 3


@dataclass(frozen=True)
class Ids:
    """One tenant's objects (or, for the control, ids that exist nowhere)."""

    customer: str
    account: str
    department: str
    user: str
    entry: str
    client: str
    budget: str
    reservation: str
    alert: str
    channel: str
    report_template: str
    plan_code: str = ""
    marker: str = ""

    def id_values(self) -> dict[str, str]:
        return {
            getattr(self, f.name): f"<{f.name}>"
            for f in fields(self)
            if f.name not in ("plan_code", "marker")
        }

    @classmethod
    def nowhere(cls) -> Ids:
        return cls(*(str(uuid.uuid4()) for _ in range(11)))


# --- argument builders: (probe ids, the caller's own ids, a unique key) -> argument sets ---

Builder = Callable[[Ids, Ids, str], list[dict[str, Any]]]


def usage(key: str, account: str, user: str | None = None) -> dict[str, Any]:
    return {
        "idempotencyKey": f"xt-{key}",
        "accountId": account,
        "userId": user,
        "occurredAt": rfc(ago(minutes=5)),  # a call just made: in the budgets' period
        "provider": "openai",
        "model": "gpt-4o",
        "inputTokens": 10,
        "providerCost": "0.001",
        "providerCurrency": "USD",
    }


def money(key: str, account: str) -> dict[str, Any]:
    return {
        "idempotencyKey": f"xt-{key}",
        "accountId": account,
        "amount": "1.00",
        "currency": "USD",
    }


def scopes(p: Ids) -> list[dict[str, Any]]:
    return [
        {"kind": "ACCOUNT", "id": p.account},
        {"kind": "CUSTOMER", "id": p.customer},
        {"kind": "DEPARTMENT", "id": p.department},
        {"kind": "USER", "id": p.user},
    ]


def budget(scope: dict[str, Any]) -> dict[str, Any]:
    return {"scope": scope, "period": "MONTH", "limit": "10", "currency": "USD", "hardCap": True}


def authorize(key: str, account: str, user: str | None = None) -> dict[str, Any]:
    return {
        "idempotencyKey": f"xt-{key}",
        "accountId": account,
        "userId": user,
        "provider": "openai",
        "model": "gpt-4o",
        "estimatedCost": "0.01",
        "estimatedCostCurrency": "USD",
    }


def channel(key: str) -> dict[str, Any]:
    return {"kind": "WEBHOOK", "target": f"http://127.0.0.1:9/xt-{key}"}


def report_template(key: str, **extra: Any) -> dict[str, Any]:
    return {"name": f"xt-{key}", "kind": "USAGE", "format": "CSV", **extra}


WEEK = {"start": rfc(month(-11)), "end": rfc(month(-11, 8))}

BUILDERS: dict[str, Builder] = {
    # queries
    "accounts": lambda p, o, k: [{"customerId": p.customer}],
    "users": lambda p, o, k: [{"departmentId": p.department}],
    "ledger": lambda p, o, k: [
        {"filter": {"accountId": p.account}},
        {"filter": {"customerId": p.customer}},
        {"filter": {"userId": p.user}},
    ],
    "budgets": lambda p, o, k: [{"scope": s} for s in scopes(p)],
    "budgetStatus": lambda p, o, k: [{"budgetId": p.budget}],
    "allowance": lambda p, o, k: [{"accountId": p.account}],
    "forecast": lambda p, o, k: [{"scope": s} for s in scopes(p)],
    "usagePatterns": lambda p, o, k: [
        {"range": {"start": rfc(month(-11)), "end": rfc(month(-11, 8))}, "scope": s}
        for s in scopes(p)
    ],
    # mutations
    "createAccount": lambda p, o, k: [{"input": {"customerId": p.customer, "name": "probe"}}],
    "createUser": lambda p, o, k: [
        {"input": {"email": f"xt-{k}@example.com", "departmentId": p.department}}
    ],
    "recordUsage": lambda p, o, k: [
        {"input": usage(k, p.account)},
        {"input": usage(k, o.account, p.user)},
    ],
    "recordUsageBatch": lambda p, o, k: [
        {"input": [usage(k, p.account)]},
        {"input": [usage(k, o.account, p.user)]},
    ],
    "backfillUsage": lambda p, o, k: [
        {"input": [usage(k, p.account)]},
        {"input": [usage(k, o.account, p.user)]},
    ],
    "deposit": lambda p, o, k: [{"input": money(k, p.account)}],
    "recordSubscriptionPayment": lambda p, o, k: [{"input": money(k, p.account)}],
    "adjust": lambda p, o, k: [{"input": money(k, p.account)}],
    "recordPlatformFee": lambda p, o, k: [{"input": money(k, p.account)}],
    "refund": lambda p, o, k: [
        {"input": {"idempotencyKey": f"xt-{k}", "entryId": p.entry, "amount": "1.00"}}
    ],
    "setBudget": lambda p, o, k: [{"input": budget(s)} for s in scopes(p)],
    "authorizeUsage": lambda p, o, k: [
        {"input": authorize(k, p.account)},
        {"input": authorize(k, o.account, p.user)},
    ],
    "settleUsage": lambda p, o, k: [
        {"input": {"reservationId": p.reservation, "usage": usage(k, o.account)}},
        {"input": {"reservationId": o.reservation, "usage": usage(k, p.account)}},
        {"input": {"reservationId": o.reservation, "usage": usage(k, o.account, p.user)}},
    ],
    "releaseReservation": lambda p, o, k: [{"id": p.reservation}],
    "revokeOAuthClient": lambda p, o, k: [{"id": p.client}],
    "registerOAuthClient": lambda p, o, k: [
        {"input": {"name": k, "scopes": ["usage:read"], "userId": p.user}}
    ],
    "setMarkup": lambda p, o, k: [{"input": {"percent": "10", "customerId": p.customer}}],
    "subscribeAccount": lambda p, o, k: [
        {"input": {"accountId": p.account, "planCode": o.plan_code, "billing": "MONTHLY"}}
    ],
    "changePlan": lambda p, o, k: [{"input": {"accountId": p.account, "planCode": o.plan_code}}],
    "setSeats": lambda p, o, k: [{"input": {"accountId": p.account, "seats": 2}}],
    "cancelSubscription": lambda p, o, k: [{"accountId": p.account}],
    "withdraw": lambda p, o, k: [{"input": money(k, p.account)}],
    "setAutoTopUp": lambda p, o, k: [
        {"input": {"accountId": p.account, "enabled": True, "threshold": "1", "amount": "5"}}
    ],
    "autoTopUp": lambda p, o, k: [{"accountId": p.account}],
    "alerts": lambda p, o, k: [
        *({"filter": {"scope": s}} for s in scopes(p)),
        {"filter": {"budgetId": p.budget}},
    ],
    "alertDeliveries": lambda p, o, k: [{"alertId": p.alert}],
    "acknowledgeAlert": lambda p, o, k: [{"id": p.alert}],
    "createNotificationChannel": lambda p, o, k: [
        *({"input": {**channel(k), "scope": s}} for s in scopes(p)),
        {"input": {**channel(k), "budgetId": p.budget}},
    ],
    "rotateNotificationChannelSecret": lambda p, o, k: [{"id": p.channel}],
    "setNotificationChannelEnabled": lambda p, o, k: [{"id": p.channel, "enabled": False}],
    "repriceUsage": lambda p, o, k: [
        {
            "input": {
                "range": {"start": rfc(month(-11)), "end": rfc(month(-9))},
                "accountId": p.account,
            }
        }
    ],
    # P&L and usage analytics
    "accountPnl": lambda p, o, k: [{"accountId": p.account, "range": WEEK}],
    "customerPnl": lambda p, o, k: [{"customerId": p.customer, "range": WEEK}],
    "organizationPnl": lambda p, o, k: [{"range": WEEK}],
    "platformPnl": lambda p, o, k: [{"range": WEEK}],
    "pnlTimeline": lambda p, o, k: [
        {"scope": {"kind": "ACCOUNT", "id": p.account}, "range": WEEK, "bucket": "DAY"},
        {"scope": {"kind": "CUSTOMER", "id": p.customer}, "range": WEEK, "bucket": "DAY"},
    ],
    "usage": lambda p, o, k: [
        {"range": WEEK, "groupBy": ["MODEL"], "filter": {"accountId": p.account}},
        {"range": WEEK, "groupBy": ["MODEL"], "filter": {"customerId": p.customer}},
        {"range": WEEK, "groupBy": ["MODEL"], "filter": {"userId": p.user}},
        {"range": WEEK, "groupBy": ["MODEL"], "filter": {"departmentId": p.department}},
    ],
    "usersView": lambda p, o, k: [{"range": WEEK}],
    "customersView": lambda p, o, k: [{"range": WEEK}],
    "payerKpis": lambda p, o, k: [{"range": WEEK}],
    "cohorts": lambda p, o, k: [{"range": WEEK}],
    "featureRoi": lambda p, o, k: [{"range": WEEK, "compareTo": WEEK}],
    "monthlyCloses": lambda p, o, k: [{"month": rfc(month(-11))}],
    # platform_admin only: a tenant's token is refused before the id is read, whatever it names
    "ledgerDrift": lambda p, o, k: [{"organizationId": p.customer}],
    # CSV export links (checked like the download: another tenant's ids are NOT_FOUND)
    "createExportLink": lambda p, o, k: [
        {"input": {"report": "LEDGER", "range": WEEK, "filter": {"accountId": p.account}}},
        {"input": {"report": "USAGE", "range": WEEK, "filter": {"customerId": p.customer}}},
        {"input": {"report": "LEDGER", "range": WEEK, "filter": {"userId": p.user}}},
        {"input": {"report": "USAGE", "range": WEEK, "filter": {"departmentId": p.department}}},
    ],
    # saved report templates
    "saveReportTemplate": lambda p, o, k: [
        {"input": report_template(k, id=p.report_template)},
        {"input": report_template(k, filters={"customerId": p.customer})},
        {"input": report_template(k, filters={"accountId": p.account})},
        {"input": report_template(k, filters={"userId": p.user})},
        {"input": report_template(k, filters={"departmentId": p.department})},
        {"input": report_template(k, scheduleChannelId=p.channel)},
    ],
    "deleteReportTemplate": lambda p, o, k: [{"id": p.report_template}],
    "runReportTemplate": lambda p, o, k: [{"id": p.report_template, "month": month_key(-11)}],
}


# --- reading the schema ---


def _unwrap(type_: Any) -> Any:
    while isinstance(type_, GraphQLNonNull | GraphQLList):
        type_ = type_.of_type
    return type_


def id_paths(type_: Any, path: str, seen: frozenset[str] = frozenset()) -> set[str]:
    """Every place an ID can go in a value of this input type."""
    if isinstance(type_, GraphQLNonNull):
        return id_paths(type_.of_type, path, seen)
    if isinstance(type_, GraphQLList):
        return id_paths(type_.of_type, path + "[]", seen)
    if type_ is GraphQLID:
        return {path}
    if isinstance(type_, GraphQLInputObjectType) and type_.name not in seen:
        found: set[str] = set()
        for name, field in type_.fields.items():
            found |= id_paths(field.type, f"{path}.{name}", seen | {type_.name})
        return found
    return set()


def set_id_paths(value: Any, type_: Any, path: str) -> set[str]:
    """The ID places a concrete argument value fills."""
    if value is None:
        return set()
    if isinstance(type_, GraphQLNonNull):
        return set_id_paths(value, type_.of_type, path)
    if isinstance(type_, GraphQLList):
        return set().union(*(set_id_paths(v, type_.of_type, path + "[]") for v in value))
    if type_ is GraphQLID:
        return {path}
    if isinstance(type_, GraphQLInputObjectType):
        return set().union(
            *(
                set_id_paths(v, type_.fields[name].type, f"{path}.{name}")
                for name, v in value.items()
            )
        )
    return set()


def field_id_paths(field: GraphQLField) -> set[str]:
    return set().union(*(id_paths(arg.type, name) for name, arg in field.args.items()))


def required_args(field: GraphQLField) -> list[str]:
    return [
        name
        for name, arg in field.args.items()
        if isinstance(arg.type, GraphQLNonNull) and arg.default_value is Undefined
    ]


def selection(type_: Any, depth: int) -> str:
    named = get_named_type(type_)
    if is_leaf_type(named):
        return ""
    if isinstance(named, GraphQLUnionType):
        parts = ["__typename"] + [f"... on {m.name} {selection(m, depth)}" for m in named.types]
        return "{ " + " ".join(parts) + " }"
    assert isinstance(named, GraphQLObjectType | GraphQLInterfaceType)
    parts = ["__typename"]
    for name, field in named.fields.items():
        if required_args(field):
            continue
        if is_leaf_type(get_named_type(field.type)):
            parts.append(name)
        elif depth > 0:
            parts.append(f"{name} {selection(field.type, depth - 1)}")
    return "{ " + " ".join(parts) + " }"


def document(operation: str, name: str, arguments: dict[str, Any]) -> str:
    field = ROOTS[operation].fields[name]
    if not arguments:
        return f"{operation} {{ {name} {selection(field.type, SELECTION_DEPTH)} }}"
    definitions = ", ".join(f"${a}: {field.args[a].type}" for a in arguments)
    call = ", ".join(f"{a}: ${a}" for a in arguments)
    return (
        f"{operation} Probe({definitions}) "
        f"{{ {name}({call}) {selection(field.type, SELECTION_DEPTH)} }}"
    )


def fields_needing_builders() -> dict[str, set[str]]:
    """Field name -> its ID paths: every ID-bearing field, and every query with required args."""
    needed: dict[str, set[str]] = {}
    for operation, root in ROOTS.items():
        for name, field in root.fields.items():
            paths = field_id_paths(field)
            if paths or (operation == "query" and required_args(field)):
                needed[name] = paths
    return needed


def operation_of(name: str) -> str:
    return "query" if name in SCHEMA.query_type.fields else "mutation"


# --- the checks ---


def test_every_field_is_covered() -> None:
    """A new field with an ID (or a query needing arguments) must get a builder here, and every
    place an ID can go in its arguments must be exercised by one of the builder's calls."""
    needed = fields_needing_builders()
    missing = sorted(set(needed) - set(BUILDERS))
    assert not missing, f"add argument builders to tests/test_cross_tenant.py for: {missing}"
    stale = sorted(set(BUILDERS) - set(needed))
    assert not stale, f"builders for fields that no longer take ids: {stale}"
    fake = Ids.nowhere()
    for name, paths in needed.items():
        field = ROOTS[operation_of(name)].fields[name]
        covered: set[str] = set()
        for arguments in BUILDERS[name](fake, fake, "k"):
            for arg, value in arguments.items():
                covered |= set_id_paths(value, field.args[arg].type, arg)
        assert covered == paths, f"{name}: ID places not exercised: {sorted(paths - covered)}"


async def _ok(tenant: Tenant, query: str, variables: dict[str, Any] | None = None) -> Any:
    body = await tenant.gql(query, variables)
    assert "errors" not in body, body
    (value,) = body["data"].values()
    return value


async def build_world(tenant: Tenant, label: str) -> Ids:
    """Objects of every kind an id argument can name, created through the API as the tenant."""
    marker = f"{label}-{uuid.uuid4().hex[:12]}"
    department = await _ok(
        tenant,
        "mutation($n: String!) { createDepartment(input: {name: $n}) { id } }",
        {"n": marker},
    )
    user = await _ok(
        tenant,
        "mutation($i: UserInput!) { createUser(input: $i) { id } }",
        {"i": {"email": f"{marker}@example.com", "name": marker, "departmentId": department["id"]}},
    )
    await _ok(
        tenant, "mutation($n: String!) { createCustomer(input: {name: $n}) { id } }", {"n": marker}
    )
    account = str(tenant.account_id)
    deposit = await _ok(
        tenant,
        "mutation($i: DepositInput!) "
        "{ deposit(input: $i) { ... on LedgerEntryRecorded { entry { id } } } }",
        {"i": money(f"{marker}-deposit", account)},
    )
    await _ok(
        tenant,
        "mutation($i: UsageEventInput!) { recordUsage(input: $i) { __typename } }",
        {"i": usage(f"{marker}-usage", account, user["id"])},
    )
    client = await _ok(
        tenant,
        "mutation($i: OAuthClientInput!) { registerOAuthClient(input: $i) { client { id } } }",
        {"i": {"name": marker, "scopes": ["usage:read"]}},
    )
    budget_row = await _ok(
        tenant,
        "mutation($i: BudgetInput!) { setBudget(input: $i) { id } }",
        {"i": {**budget({"kind": "ACCOUNT", "id": account}), "hardCap": False, "limit": "1000"}},
    )
    reservation = await _ok(
        tenant,
        "mutation($i: AuthorizeUsageInput!) { authorizeUsage(input: $i) "
        "{ __typename ... on UsageAuthorized { reservation { id } } } }",
        {"i": authorize(f"{marker}-reserve", account)},
    )
    assert reservation["__typename"] == "UsageAuthorized", reservation
    # An alert: a small budget of the user, crossed by one more call; then a channel.
    await _ok(
        tenant,
        "mutation($i: BudgetInput!) { setBudget(input: $i) { id } }",
        {"i": {**budget({"kind": "USER", "id": user["id"]}), "hardCap": False, "limit": "0.0001"}},
    )
    await _ok(
        tenant,
        "mutation($i: UsageEventInput!) { recordUsage(input: $i) { __typename } }",
        {"i": usage(f"{marker}-alert", account, user["id"])},
    )
    alert = await _ok(tenant, "{ alerts(first: 1) { nodes { id } } }")
    made_channel = await _ok(
        tenant,
        "mutation($i: NotificationChannelInput!) { createNotificationChannel(input: $i) { id } }",
        {"i": channel(marker)},
    )
    template = await _ok(
        tenant,
        "mutation($i: ReportTemplateInput!) { saveReportTemplate(input: $i) "
        "{ __typename ... on ReportTemplateSaved { template { id } } } }",
        {
            "i": {
                "name": marker,
                "kind": "SUMMARY",
                "format": "PDF",
                "filters": {"customerId": str(tenant.customer_id)},
            }
        },
    )
    assert template["__typename"] == "ReportTemplateSaved", template
    plan = await _ok(
        tenant,
        "mutation($i: PlanInput!) { setPlan(input: $i) { code } }",
        {
            "i": {
                "code": marker,
                "name": marker,
                "monthlyFee": "10.00",
                "currency": "USD",
                "includedTokens": 1000,
            }
        },
    )
    return Ids(
        customer=str(tenant.customer_id),
        account=account,
        department=department["id"],
        user=user["id"],
        entry=deposit["entry"]["id"],
        client=client["client"]["id"],
        budget=budget_row["id"],
        reservation=reservation["reservation"]["id"],
        alert=alert["nodes"][0]["id"],
        channel=made_channel["id"],
        report_template=template["template"]["id"],
        plan_code=plan["code"],
        marker=marker,
    )


def row_count_sql() -> str:
    """One statement counting every tenant table's rows per organisation."""
    parts = [
        f"SELECT '{table.name}@' || organization_id::text, count(*) FROM \"{table.name}\" "
        "WHERE organization_id = ANY($1::uuid[]) GROUP BY organization_id"
        for table in Base.metadata.sorted_tables
        if "organization_id" in table.c
    ]
    return " UNION ALL ".join(parts)


async def tenant_row_counts(connection: Any, organization_ids: list[uuid.UUID]) -> dict[str, int]:
    rows = await connection.fetch(row_count_sql(), organization_ids)
    return {name: count for name, count in rows}


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})")


def normalized(body: dict[str, Any], ids: Ids, key: str) -> str:
    """The answer with the probed ids named by kind, and values generated by the call itself
    (a new id, a timestamp) masked, so two answers compare on what they say."""
    text = json.dumps(body, sort_keys=True)
    for value, label in sorted(ids.id_values().items(), key=lambda kv: -len(kv[0])):
        text = text.replace(value, label)
    text = text.replace(key, "<key>")
    return _TIME.sub("<time>", _UUID.sub("<uuid>", text))


#: Fields whose answer to an id that matches nothing is an empty run they record in the
#: caller's own tenant (and nowhere else): table written -> why.
RECORDS_ITSELF: dict[str, str] = {}


def _leaks(body: dict[str, Any], theirs: Ids, echoed: str = "") -> list[str]:
    """B's ids and names found in an answer, except ids the caller itself sent (``echoed``),
    which a NOT_FOUND message may repeat."""
    text = json.dumps(body)
    return [v for v in [*theirs.id_values(), theirs.marker] if v in text and v not in echoed]


@pytest.fixture
async def worlds(tenant: Tenant, other_tenant: Tenant) -> tuple[Ids, Ids]:
    return await build_world(tenant, "tenant-a"), await build_world(other_tenant, "tenant-b")


async def test_another_tenants_ids_answer_exactly_as_missing_ones(
    tenant: Tenant, other_tenant: Tenant, worlds: tuple[Ids, Ids], database_url: str
) -> None:
    own, theirs = worlds
    orgs = [tenant.org.id, other_tenant.org.id]
    problems: list[str] = []
    async with raw_connection(database_url) as connection:
        for name in sorted(BUILDERS):
            problems += await _probe(tenant, name, own, theirs, connection, orgs)
    assert not problems, "\n".join(problems)


async def _probe(
    tenant: Tenant, name: str, own: Ids, theirs: Ids, connection: Any, orgs: list[uuid.UUID]
) -> list[str]:
    """Call one field with B's ids and with missing ones, variant by variant."""
    problems: list[str] = []
    operation = operation_of(name)
    for index in range(len(BUILDERS[name](Ids.nowhere(), own, "k"))):
        before = await tenant_row_counts(connection, orgs)
        answers = []
        for probe in (theirs, Ids.nowhere()):
            key = uuid.uuid4().hex
            arguments = BUILDERS[name](probe, own, key)[index]
            body = await tenant.gql(document(operation, name, arguments), arguments)
            if leaked := _leaks(body, theirs, echoed=json.dumps(arguments)):
                problems.append(f"{name}#{index} showed tenant B's {leaked}: {body}")
            answers.append(normalized(body, probe, key))
        if answers[0] != answers[1]:
            problems.append(f"{name}#{index}: B's ids {answers[0]} != missing {answers[1]}")
        after = await tenant_row_counts(connection, orgs)
        allowed = {f"{RECORDS_ITSELF[name]}@{tenant.org.id}"} if name in RECORDS_ITSELF else set()
        written = {k for k in before | after if before.get(k) != after.get(k)} - allowed
        if written:
            problems.append(f"{name}#{index} wrote {sorted(written)}")
    return problems


async def test_reads_show_nothing_of_another_tenant(
    tenant: Tenant, worlds: tuple[Ids, Ids]
) -> None:
    own, theirs = worlds
    seen_own = set()
    for name in SCHEMA.query_type.fields:
        calls = BUILDERS[name](own, own, "k") if name in BUILDERS else [{}]
        for arguments in calls:
            body = await tenant.gql(document("query", name, arguments), arguments)
            assert not _leaks(body, theirs), (name, body)
            text = json.dumps(body)
            seen_own |= {v for v in own.id_values() if v in text}
    # The control: these reads did return the caller's own data.
    assert {own.customer, own.account, own.entry, own.client, own.budget} <= seen_own


async def test_another_tenants_cursors_show_nothing_of_theirs(
    tenant: Tenant, other_tenant: Tenant, worlds: tuple[Ids, Ids]
) -> None:
    _own, theirs = worlds
    paginated = [
        name
        for name, field in SCHEMA.query_type.fields.items()
        if "after" in field.args and "first" in field.args
    ]
    assert {"customers", "accounts", "ledger"} <= set(paginated)
    for name in paginated:
        query = (
            f"query($after: String) {{ {name}(first: 1, after: $after) "
            "{ pageInfo { endCursor } edges { node { id } } } }"
        )
        page = await other_tenant.gql(query, {"after": None})
        cursor = page["data"][name]["pageInfo"]["endCursor"]
        assert cursor is not None, f"tenant B has no {name} to page through"
        body = await tenant.gql(document("query", name, {"after": cursor}), {"after": cursor})
        assert not _leaks(body, theirs), (name, body)
