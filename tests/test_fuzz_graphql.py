"""Schema-driven fuzzing of ``/graphql``: schemathesis generates queries and mutations from the
schema the app serves — valid ones and deliberately invalid ones — and each is sent in-process
as one tenant's org_admin while another tenant's data sits in the same database.

Every answer must be a well-formed GraphQL answer: no 5xx, no ``INTERNAL`` error, every error
with an ``extensions.code``, and nothing of the other tenant anywhere in it. That tenant is
seeded with recognisable names ("canary<hex>…") and its ids are offered to the generator as
ID arguments, next to our own ids and ids that exist nowhere, so generated requests do probe
across tenants. An id the request itself carried may be echoed back (``NOT_FOUND`` names
it); everything else of the other tenant must never appear — and, after the run, none of its
rows may have changed.

schemathesis (on hypothesis-graphql) builds the documents; its own runner is not used: it
calls ASGI apps through a synchronous test client on another event loop, while the app here
lives on the suite's loop, so each case is sent through the suite's httpx client instead.
Bounded: ``COSTGRAPH_FUZZ_CASES`` cases (default 300), well under a minute in process;
``-s`` prints how the answers were distributed.
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import graphql
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.graphql import nodes

from costgraph.app.graphql_schema import build_schema
from costgraph.app.state import AppState
from costgraph.billing import budgets, directory, ledger
from costgraph.billing.budgets import BudgetSpec
from costgraph.billing.commands import Payment, UsageEvent
from costgraph.billing.directory import OrgContext
from costgraph.billing.periods import Period
from costgraph.billing.scopes import Scope, ScopeKind
from costgraph.kernel.clock import utcnow
from costgraph.models.scoping import bind_tenant
from tests.conftest import Tenant, make_tenant, raw_connection

CASES = int(os.environ.get("COSTGRAPH_FUZZ_CASES", "300"))
#: Strings PostgreSQL cannot store (NUL) or UTF-8 cannot encode (lone surrogates), and a long
#: one: each must come back VALIDATION_FAILED (or be refused as the document), never INTERNAL.
HOSTILE_STRINGS = ("\x00", "a\x00b", "\ud800", "x\udfffy", "\ud83c", "\x00" * 3, "é" * 300)
#: Amounts at and beyond what is stored exactly (inputs stay below 10^15).
HUGE_AMOUNTS = (
    "999999999999999.999999999999",
    "1000000000000000",
    "10000000000000000",
    "-10000000000000000.5",
    "99999999999999999999999999",
    "1" + "0" * 40,
)
#: What the run's answers were (first error code, or "data"), printed with ``-s``.
ANSWERS: Counter[str] = Counter()


@dataclass(frozen=True)
class World:
    """Our tenant (the caller) and the other one's traces, which no answer may show."""

    ours: Tenant
    theirs: Tenant
    our_ids: tuple[str, ...]
    their_ids: tuple[str, ...]
    canaries: tuple[str, ...]
    cases: st.SearchStrategy[Any]
    #: Rows of the other tenant in every tenant table before the run: none may change.
    their_rows: dict[str, str]


async def tenant_rows(database_url: str, org_id: uuid.UUID) -> dict[str, str]:
    """A digest of one organisation's rows in every table that has an ``organization_id``."""
    async with raw_connection(database_url) as connection:
        tables = await connection.fetch(
            "SELECT c.table_name FROM information_schema.columns c "
            "JOIN information_schema.tables t USING (table_schema, table_name) "
            "WHERE c.column_name = 'organization_id' AND c.table_schema = 'public' "
            "AND t.table_type = 'BASE TABLE' ORDER BY 1"
        )
        counts = {}
        for row in tables:
            name = row["table_name"]
            counts[name] = await connection.fetchval(
                f"SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, ',' "
                f"ORDER BY t::text)), '') FROM \"{name}\" t WHERE organization_id = $1",
                org_id,
            )
        counts["organizations"] = await connection.fetchval(
            "SELECT md5(o::text) FROM organizations o WHERE id = $1", org_id
        )
        return counts


async def _seed(state: AppState, org: OrgContext, tag: str) -> dict[str, str]:
    """A customer, account, department and user named after ``tag``, a deposit, usage with
    tagged model/feature/agent, and a budget: everything a leak could show."""
    limits = state.limits
    async with state.sessions() as session, session.begin():
        bind_tenant(session.sync_session, org.id)
        customer = await directory.create_customer(session, org, f"{tag}-customer", f"{tag}-ext")
        account = await directory.create_account(session, org, customer.id, f"{tag}-acct", True)
        department = await directory.create_department(session, org, f"{tag}-dept")
        user = await directory.create_user(
            session, org, f"{tag}@{tag}.example", f"{tag}-user", department.id
        )
        paid = await ledger.deposit(
            session,
            org,
            Payment(f"{tag}-deposit", account.id, Decimal("12.34"), "USD", description=tag),
            limits,
        )
        used = await ledger.record_usage(
            session,
            org,
            UsageEvent(
                idempotency_key=f"{tag}-usage",
                account_id=account.id,
                occurred_at=utcnow(),
                provider="openai",
                model=f"{tag}-model",
                input_tokens=1234,
                user_id=user.id,
                feature=f"{tag}-feature",
                agent=f"{tag}-agent",
                request_id=f"{tag}-request",
                provider_cost=Decimal("0.42"),
                provider_currency="USD",
            ),
            limits,
        )
        budget = await budgets.set_budget(
            session,
            org,
            BudgetSpec(
                Scope(ScopeKind.ACCOUNT, account.id), Period.MONTH, Decimal(99), "USD", True
            ),
        )
    return {
        "customer": str(customer.id),
        "account": str(account.id),
        "department": str(department.id),
        "user": str(user.id),
        "deposit": str(paid.id),
        "usage": str(used.id),
        "budget": str(budget.id),
    }


def _register_scalars(ids: list[str]) -> None:
    """Values for the schema's scalars: mostly valid, sometimes not (schemathesis keeps a
    global registry; only this module uses it)."""
    times = st.datetimes(
        min_value=datetime(1995, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
    ).map(lambda t: t.isoformat().replace("+00:00", "Z"))
    scalars = {
        "ID": st.one_of(st.sampled_from(ids), st.uuids().map(str), st.text(max_size=12)).map(
            nodes.String
        ),
        "DateTime": st.one_of(
            times, st.sampled_from(["2024-13-01T00:00:00Z", "yesterday", "2024-01-01T00:00:00"])
        ).map(nodes.String),
        "Date": st.one_of(
            st.dates(min_value=date(1995, 1, 1), max_value=date(2035, 1, 1)).map(str),
            st.sampled_from(["2024-02-30", "not a date"]),
        ).map(nodes.String),
        "Decimal": st.one_of(
            st.decimals(min_value=-(10**6), max_value=10**6, places=2).map(str),
            st.sampled_from(["NaN", "Infinity", "1e999", "-0", "abc", "0.0000000000001", ""]),
            st.sampled_from(HUGE_AMOUNTS),
        ).map(nodes.String),
        # Every string argument: ordinary text, and text no database column stores.
        "String": st.one_of(st.text(max_size=20), st.sampled_from(HOSTILE_STRINGS)).map(
            nodes.String
        ),
        "CurrencyCode": st.sampled_from(["USD", "EUR", "GBP", "JPY", "usd", "XXX", "ZZZ", ""]).map(
            nodes.String
        ),
        "JSON": st.sampled_from(
            [
                nodes.Object([]),
                nodes.Object(
                    [
                        graphql.ObjectFieldNode(
                            name=graphql.NameNode(value="ref"), value=nodes.String("x")
                        )
                    ]
                ),
                nodes.String("not an object"),
                nodes.Int(7),
                *(
                    nodes.Object(
                        [
                            graphql.ObjectFieldNode(
                                name=graphql.NameNode(value="note"), value=nodes.String(text)
                            )
                        ]
                    )
                    for text in HOSTILE_STRINGS
                ),
            ]
        ),
    }
    for name, strategy in scalars.items():
        schemathesis.graphql.scalar(name, strategy)


@pytest.fixture(scope="module")
async def world(
    state: AppState, client: httpx.AsyncClient, mint: Any, database_url: str
) -> AsyncIterator[World]:
    ours = await make_tenant(state, client, mint)
    theirs = await make_tenant(state, client, mint)
    tag = f"canary{uuid.uuid4().hex[:10]}"
    our_objects = await _seed(state, ours.org, f"ours{uuid.uuid4().hex[:10]}")
    their_objects = await _seed(state, theirs.org, tag)
    our_ids = (str(ours.org.id), str(ours.customer_id), str(ours.account_id), *our_objects.values())
    their_ids = (
        str(theirs.org.id),
        str(theirs.customer_id),
        str(theirs.account_id),
        *their_objects.values(),
    )
    _register_scalars([*our_ids, *their_ids])
    schema = schemathesis.graphql.from_file(build_schema().as_str())
    cases = st.one_of(
        schema.as_strategy(GenerationMode.POSITIVE),
        schema.as_strategy(GenerationMode.POSITIVE),
        schema.as_strategy(GenerationMode.NEGATIVE),
    )
    their_rows = await tenant_rows(database_url, theirs.org.id)
    canaries = (tag, theirs.org.slug, *their_ids)
    yield World(ours, theirs, our_ids, their_ids, canaries, cases, their_rows)
    print("\nfuzz answers:", dict(ANSWERS.most_common()))


def check_answer(world: World, query: str, response: httpx.Response) -> None:
    assert response.status_code < 500, response.text[:2000]
    body = response.json()
    assert isinstance(body, dict) and ("data" in body or "errors" in body), body
    errors = body.get("errors") or []
    ANSWERS[errors[0].get("extensions", {}).get("code", "?") if errors else "data"] += 1
    for error in errors:
        code = (error.get("extensions") or {}).get("code")
        assert code, f"an error without extensions.code: {error}"
        assert code != "INTERNAL", f"INTERNAL for:\n{query}\n{error}"
    for canary in world.canaries:
        if canary not in query:  # an id we sent may come back in NOT_FOUND
            assert canary not in response.text, f"the other tenant's {canary!r} leaked"


@settings(
    max_examples=CASES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)
@given(data=st.data())
async def test_generated_requests_never_fail_or_leak(
    world: World, client: httpx.AsyncClient, data: st.DataObject
) -> None:
    case = data.draw(world.cases, label="case")
    response = await client.post(
        "/graphql",
        # ASCII JSON: a lone surrogate travels \u-escaped, as a client would send it.
        content=json.dumps({"query": case.body}).encode(),
        headers={
            "Authorization": f"Bearer {world.ours.token}",
            "Content-Type": "application/json",
        },
    )
    check_answer(world, case.body, response)


async def test_the_other_tenant_was_not_touched(world: World, database_url: str) -> None:
    """After the fuzz run (it runs first in this module): not one row of the other tenant
    was added, changed away or removed by any generated mutation."""
    assert await tenant_rows(database_url, world.theirs.org.id) == world.their_rows
