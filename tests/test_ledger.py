"""The idempotent, append-only ledger through the GraphQL API."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from tests.conftest import Tenant, raw_connection
from tests.dates import month, rfc

RECORD_USAGE = """
mutation($input: UsageEventInput!) {
  recordUsage(input: $input) {
    __typename
    ... on UsageRecorded { replayed entry { id amount aiCost providerCost callerPriced inputTokens
                                            currency occurredAt metadata userId } }
    ... on UserError { code message field }
  }
}"""
RECORD_BATCH = """
mutation($input: [UsageEventInput!]!) {
  recordUsageBatch(input: $input) {
    __typename
    ... on UsageBatchRecorded { recorded replayed entries { id idempotencyKey } }
    ... on UserError { code message field }
  }
}"""
DEPOSIT = """
mutation($input: DepositInput!) {
  deposit(input: $input) {
    __typename
    ... on LedgerEntryRecorded { replayed entry { id amount balanceDelta currency type } }
    ... on UserError { code message field }
  }
}"""
REFUND = """
mutation($input: RefundInput!) {
  refund(input: $input) {
    __typename
    ... on LedgerEntryRecorded { replayed entry { id amount balanceDelta relatedEntryId } }
    ... on UserError { code message field }
  }
}"""
LEDGER = """
query($first: Int, $after: String, $filter: LedgerFilter) {
  ledger(first: $first, after: $after, filter: $filter) {
    edges { cursor node { id idempotencyKey occurredAt } }
    pageInfo { hasNextPage endCursor }
  }
}"""


def usage_time() -> datetime:
    """When ``usage`` events happen unless told otherwise: 10:00 UTC on the 1st of last month."""
    return month(-1, hour=10)


def usage(tenant: Tenant, **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "idempotencyKey": f"u-{uuid.uuid4().hex}",
        "accountId": str(tenant.account_id),
        "occurredAt": rfc(usage_time()),
        "provider": "openai",
        "model": "gpt-4o-mini",
        "inputTokens": 1200,
        "outputTokens": 300,
        "providerCost": "0.000360000000",
        "providerCurrency": "USD",
    }
    event.update(overrides)
    return event


def deposit_input(tenant: Tenant, **overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "idempotencyKey": f"d-{uuid.uuid4().hex}",
        "accountId": str(tenant.account_id),
        "amount": "25.00",
        "currency": "USD",
    }
    value.update(overrides)
    return value


async def entry_count(database_url: str, tenant: Tenant) -> int:
    async with raw_connection(database_url) as connection:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM ledger_entries WHERE organization_id = $1", tenant.org.id
        )
    return count


# --- recording and idempotency ---


async def test_record_usage_stores_exact_amounts(tenant: Tenant) -> None:
    body = await tenant.gql(RECORD_USAGE, {"input": usage(tenant, metadata={"job": 7})})
    result = body["data"]["recordUsage"]
    assert result["__typename"] == "UsageRecorded", result
    entry = result["entry"]
    assert entry["amount"] == "0.000360000000"
    assert entry["aiCost"] == "0.000360000000"
    assert entry["callerPriced"] is True
    assert entry["inputTokens"] == 1200
    assert entry["occurredAt"] == rfc(usage_time())
    assert entry["metadata"] == {"job": 7}
    assert result["replayed"] is False


async def test_replay_returns_original_and_writes_nothing(
    tenant: Tenant, database_url: str
) -> None:
    event = usage(tenant)
    first = (await tenant.gql(RECORD_USAGE, {"input": event}))["data"]["recordUsage"]
    # The same body written differently (offset instead of Z, 0.00036 instead of 0.000360…).
    in_paris = usage_time().astimezone(timezone(timedelta(hours=1))).isoformat()
    again = dict(event, occurredAt=in_paris, providerCost="0.00036")
    second = (await tenant.gql(RECORD_USAGE, {"input": again}))["data"]["recordUsage"]
    assert second["replayed"] is True
    assert second["entry"]["id"] == first["entry"]["id"]
    assert await entry_count(database_url, tenant) == 1


async def test_same_key_other_body_is_a_conflict(tenant: Tenant, database_url: str) -> None:
    event = usage(tenant)
    await tenant.gql(RECORD_USAGE, {"input": event})
    result = (await tenant.gql(RECORD_USAGE, {"input": dict(event, inputTokens=1201)}))["data"][
        "recordUsage"
    ]
    assert result["__typename"] == "IdempotencyConflict"
    assert result["code"] == "IDEMPOTENCY_CONFLICT"
    assert await entry_count(database_url, tenant) == 1


async def test_keys_are_per_organization(tenant: Tenant, other_tenant: Tenant) -> None:
    key = f"shared-{uuid.uuid4().hex}"
    a = await tenant.gql(RECORD_USAGE, {"input": usage(tenant, idempotencyKey=key)})
    b = await other_tenant.gql(RECORD_USAGE, {"input": usage(other_tenant, idempotencyKey=key)})
    assert a["data"]["recordUsage"]["replayed"] is False
    assert b["data"]["recordUsage"]["replayed"] is False
    assert a["data"]["recordUsage"]["entry"]["id"] != b["data"]["recordUsage"]["entry"]["id"]


async def test_fifty_concurrent_identical_deposits_write_one_entry(
    tenant: Tenant, database_url: str
) -> None:
    payload = deposit_input(tenant, amount="10.00", metadata={"payment_id": "pi_1"})
    results = await asyncio.gather(*(tenant.gql(DEPOSIT, {"input": payload}) for _ in range(50)))
    entries = {r["data"]["deposit"]["entry"]["id"] for r in results}
    replayed = [r["data"]["deposit"]["replayed"] for r in results]
    assert len(entries) == 1
    assert replayed.count(False) == 1 and replayed.count(True) == 49
    assert await entry_count(database_url, tenant) == 1


async def test_batch_mixes_new_replayed_and_in_batch_duplicates(
    tenant: Tenant, database_url: str
) -> None:
    earlier = usage(tenant)
    await tenant.gql(RECORD_USAGE, {"input": earlier})
    fresh = [usage(tenant) for _ in range(5)]
    batch = [earlier, *fresh, fresh[0]]
    result = (await tenant.gql(RECORD_BATCH, {"input": batch}))["data"]["recordUsageBatch"]
    assert result["__typename"] == "UsageBatchRecorded", result
    assert result["recorded"] == 5
    assert result["replayed"] == 2
    keys = [e["idempotencyKey"] for e in result["entries"]]
    assert keys == [e["idempotencyKey"] for e in batch]
    assert await entry_count(database_url, tenant) == 6


async def test_batch_conflict_writes_nothing(tenant: Tenant, database_url: str) -> None:
    earlier = usage(tenant)
    await tenant.gql(RECORD_USAGE, {"input": earlier})
    batch = [usage(tenant), usage(tenant), dict(earlier, model="gpt-4o")]
    result = (await tenant.gql(RECORD_BATCH, {"input": batch}))["data"]["recordUsageBatch"]
    assert result["code"] == "IDEMPOTENCY_CONFLICT"
    assert result["field"] == "input.2.idempotencyKey"
    assert await entry_count(database_url, tenant) == 1


async def test_batch_over_limit_is_refused(tenant: Tenant, database_url: str, state: Any) -> None:
    limit = state.limits.max_batch_events
    batch = [usage(tenant) for _ in range(limit + 1)]
    result = (await tenant.gql(RECORD_BATCH, {"input": batch}))["data"]["recordUsageBatch"]
    assert result["code"] == "VALIDATION_FAILED"
    assert str(limit) in result["message"]
    assert await entry_count(database_url, tenant) == 0


# --- payments, refunds, adjustments ---


async def test_deposit_refund_and_adjustment(tenant: Tenant) -> None:
    paid = (await tenant.gql(DEPOSIT, {"input": deposit_input(tenant, amount="40.00")}))["data"][
        "deposit"
    ]["entry"]
    assert paid["balanceDelta"] == "40.000000000000"
    refund = {"idempotencyKey": f"r-{uuid.uuid4().hex}", "entryId": paid["id"], "amount": "15.00"}
    done = (await tenant.gql(REFUND, {"input": refund}))["data"]["refund"]
    assert done["entry"]["relatedEntryId"] == paid["id"]
    assert Decimal(done["entry"]["balanceDelta"]) == Decimal("-15")
    too_much = dict(refund, idempotencyKey=f"r-{uuid.uuid4().hex}", amount="25.01")
    refused = (await tenant.gql(REFUND, {"input": too_much}))["data"]["refund"]
    assert refused["code"] == "VALIDATION_FAILED"
    assert "25.00" in refused["message"]
    # The retry of the first refund still replays, though nothing more could be refunded.
    replay = (await tenant.gql(REFUND, {"input": refund}))["data"]["refund"]
    assert replay["replayed"] is True

    adjust = """mutation($input: AdjustmentInput!) { adjust(input: $input) {
        ... on LedgerEntryRecorded { entry { amount balanceDelta type } }
        ... on UserError { code } } }"""
    adjusted = await tenant.gql(
        adjust,
        {
            "input": {
                "idempotencyKey": "adj-1",
                "accountId": str(tenant.account_id),
                "amount": "-2.50",
                "currency": "USD",
                "description": "goodwill reversal",
            }
        },
    )
    assert adjusted["data"]["adjust"]["entry"] == {
        "amount": "-2.500000000000",
        "balanceDelta": "-2.500000000000",
        "type": "ADJUSTMENT",
    }


async def test_refund_of_usage_is_refused(tenant: Tenant) -> None:
    used = (await tenant.gql(RECORD_USAGE, {"input": usage(tenant)}))["data"]["recordUsage"]
    refund = {"idempotencyKey": "r-usage", "entryId": used["entry"]["id"], "amount": "0.01"}
    result = (await tenant.gql(REFUND, {"input": refund}))["data"]["refund"]
    assert result["code"] == "VALIDATION_FAILED"


async def test_a_fully_refunded_payment_says_nothing_is_left_in_plain_figures(
    tenant: Tenant,
) -> None:
    paid = (await tenant.gql(DEPOSIT, {"input": deposit_input(tenant, amount="5.00")}))["data"][
        "deposit"
    ]["entry"]
    whole = {"idempotencyKey": f"r-{uuid.uuid4().hex}", "entryId": paid["id"], "amount": "5.00"}
    assert (await tenant.gql(REFUND, {"input": whole}))["data"]["refund"]["entry"]
    more = dict(whole, idempotencyKey=f"r-{uuid.uuid4().hex}", amount="0.01")
    refused = (await tenant.gql(REFUND, {"input": more}))["data"]["refund"]
    assert refused["code"] == "VALIDATION_FAILED"
    # "0.00 USD" (kernel/money.py format_money), never the exponent form "0E-12".
    assert "(0.00 USD)" in refused["message"], refused["message"]


async def test_deposit_in_another_currency_is_a_mismatch(tenant: Tenant, database_url: str) -> None:
    result = (await tenant.gql(DEPOSIT, {"input": deposit_input(tenant, currency="EUR")}))["data"][
        "deposit"
    ]
    assert result["code"] == "CURRENCY_MISMATCH"
    assert await entry_count(database_url, tenant) == 0


async def test_usage_priced_in_another_currency_without_rate(tenant: Tenant) -> None:
    result = (await tenant.gql(RECORD_USAGE, {"input": usage(tenant, providerCurrency="KES")}))[
        "data"
    ]["recordUsage"]
    assert result["code"] == "RATE_MISSING"
    assert "KES" in result["message"] and "USD" in result["message"]


# --- bad input: a clear error, nothing written ---

BAD_USAGE: list[tuple[str, dict[str, Any], str]] = [
    ("negative tokens", {"inputTokens": -1}, "input.inputTokens"),
    ("empty key", {"idempotencyKey": ""}, "input.idempotencyKey"),
    ("long key", {"idempotencyKey": "k" * 256}, "input.idempotencyKey"),
    ("huge metadata", {"metadata": {"blob": "x" * 10_000}}, "input.metadata"),
    # Too old for the late-arrival window: tests/test_late_arrival.py (the suite's app takes
    # history of any age).
    ("far future", {"occurredAt": "2999-01-01T00:00:00Z"}, "input.occurredAt"),
    ("negative cost", {"providerCost": "-0.01"}, "input.providerCost"),
    ("cost without currency", {"providerCurrency": None}, "input.providerCurrency"),
    ("unknown unit", {"units": [{"kind": "IMAGE", "quantity": "-1"}]}, "input.units.0.quantity"),
]


@pytest.mark.parametrize(("label", "override", "field"), BAD_USAGE, ids=[b[0] for b in BAD_USAGE])
async def test_bad_usage_is_a_typed_validation_error(
    tenant: Tenant, database_url: str, label: str, override: dict[str, Any], field: str
) -> None:
    result = (await tenant.gql(RECORD_USAGE, {"input": usage(tenant, **override)}))["data"][
        "recordUsage"
    ]
    assert result["__typename"] == "ValidationFailed", result
    assert result["code"] == "VALIDATION_FAILED"
    assert result["field"] == field
    assert await entry_count(database_url, tenant) == 0


BAD_SCALARS: list[tuple[str, dict[str, Any]]] = [
    ("float tokens", {"inputTokens": 1.5}),
    ("string tokens", {"inputTokens": "12"}),
    ("float cost", {"providerCost": 0.00036}),
    ("NaN", {"providerCost": "NaN"}),
    ("Infinity", {"providerCost": "Infinity"}),
    ("exponent", {"providerCost": "1e-5"}),
    ("too many decimals", {"providerCost": "0.0000000000001"}),
    ("too many digits", {"providerCost": "1" * 27}),
    ("unknown currency", {"providerCurrency": "XYZ"}),
    ("lower-case currency", {"providerCurrency": "usd"}),
    ("no time zone", {"occurredAt": "2026-11-01T10:00:00"}),
    ("impossible date", {"occurredAt": "2026-13-01T10:00:00Z"}),
    ("not a date", {"occurredAt": "yesterday"}),
    ("year 10000", {"occurredAt": "10000-01-01T00:00:00Z"}),
]


@pytest.mark.parametrize(("label", "override"), BAD_SCALARS, ids=[b[0] for b in BAD_SCALARS])
async def test_bad_scalars_are_refused_before_execution(
    tenant: Tenant, database_url: str, label: str, override: dict[str, Any]
) -> None:
    body = await tenant.gql(RECORD_USAGE, {"input": usage(tenant, **override)})
    assert body.get("data") is None
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "VALIDATION_FAILED"
    assert "Traceback" not in error["message"]
    assert await entry_count(database_url, tenant) == 0


BAD_DEPOSITS: list[tuple[str, dict[str, Any], str]] = [
    ("zero", {"amount": "0"}, "VALIDATION_FAILED"),
    ("negative", {"amount": "-5.00"}, "VALIDATION_FAILED"),
    ("sub-cent USD", {"amount": "1.001"}, "VALIDATION_FAILED"),
    ("unknown account", {"accountId": str(uuid.uuid4())}, "NOT_FOUND"),
    ("malformed account id", {"accountId": "acct-1"}, "NOT_FOUND"),
    ("over-long key", {"idempotencyKey": "k" * 300}, "VALIDATION_FAILED"),
]


@pytest.mark.parametrize(
    ("label", "override", "code"), BAD_DEPOSITS, ids=[b[0] for b in BAD_DEPOSITS]
)
async def test_bad_deposits(
    tenant: Tenant, database_url: str, label: str, override: dict[str, Any], code: str
) -> None:
    result = (await tenant.gql(DEPOSIT, {"input": deposit_input(tenant, **override)}))["data"][
        "deposit"
    ]
    assert result["code"] == code, result
    assert await entry_count(database_url, tenant) == 0


async def test_jpy_deposit_has_no_minor_unit(state: Any, client: Any, mint: Any) -> None:
    from tests.conftest import make_tenant

    yen = await make_tenant(state, client, mint, currency="JPY")
    ok = await yen.gql(DEPOSIT, {"input": deposit_input(yen, amount="500", currency="JPY")})
    assert ok["data"]["deposit"]["__typename"] == "LedgerEntryRecorded"
    bad = await yen.gql(DEPOSIT, {"input": deposit_input(yen, amount="500.5", currency="JPY")})
    assert bad["data"]["deposit"]["code"] == "VALIDATION_FAILED"


# --- other tenants' objects answer as missing ones ---


async def test_other_tenant_account_answers_as_unknown(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = usage(tenant, accountId=str(other_tenant.account_id))
    missing = usage(tenant, accountId=str(uuid.uuid4()))
    a = (await tenant.gql(RECORD_USAGE, {"input": theirs}))["data"]["recordUsage"]
    b = (await tenant.gql(RECORD_USAGE, {"input": missing}))["data"]["recordUsage"]
    assert a["code"] == b["code"] == "NOT_FOUND"
    assert a["message"].replace(str(other_tenant.account_id), "ID") == b["message"].replace(
        missing["accountId"], "ID"
    )


async def test_other_tenant_entries_are_invisible(tenant: Tenant, other_tenant: Tenant) -> None:
    theirs = (await other_tenant.gql(DEPOSIT, {"input": deposit_input(other_tenant)}))["data"][
        "deposit"
    ]["entry"]
    refund = {"idempotencyKey": "steal", "entryId": theirs["id"], "amount": "1.00"}
    assert (await tenant.gql(REFUND, {"input": refund}))["data"]["refund"]["code"] == "NOT_FOUND"
    filtered = await tenant.gql(LEDGER, {"filter": {"accountId": str(other_tenant.account_id)}})
    assert filtered["data"]["ledger"]["edges"] == []
    everything = await tenant.gql(LEDGER, {"first": 100})
    assert all(e["node"]["id"] != theirs["id"] for e in everything["data"]["ledger"]["edges"])


# --- the ledger is append-only, in the database itself ---


async def test_database_refuses_update_delete_truncate(tenant: Tenant, database_url: str) -> None:
    await tenant.gql(DEPOSIT, {"input": deposit_input(tenant)})
    async with raw_connection(database_url) as connection:
        for statement in (
            "UPDATE ledger_entries SET amount = 0 WHERE organization_id = $1",
            "DELETE FROM ledger_entries WHERE organization_id = $1",
        ):
            with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
                await connection.execute(statement, tenant.org.id)
        with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
            await connection.execute("TRUNCATE ledger_entries CASCADE")
    assert await entry_count(database_url, tenant) == 1


# --- pagination ---


async def test_pagination_is_stable_while_entries_arrive(tenant: Tenant) -> None:
    events = [usage(tenant, occurredAt=rfc(month(-2, day, 12))) for day in range(1, 26)]
    await tenant.gql(RECORD_BATCH, {"input": events})
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = (await tenant.gql(LEDGER, {"first": 10, "after": after}))["data"]["ledger"]
        seen.extend(e["node"]["idempotencyKey"] for e in page["edges"])
        pages += 1
        if pages == 1:
            # New entries, newer and older than the cursor, land between page requests.
            await tenant.gql(
                RECORD_BATCH,
                {
                    "input": [
                        usage(tenant, occurredAt=rfc(month(-2, 28))),
                    ]
                },
            )
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    originals = [
        e["idempotencyKey"] for e in sorted(events, key=lambda e: e["occurredAt"], reverse=True)
    ]
    assert [k for k in seen if k in set(originals)] == originals
    assert len(seen) == len(set(seen))


async def test_bad_cursor_and_page_size(tenant: Tenant) -> None:
    body = await tenant.gql(LEDGER, {"after": "not-a-cursor"})
    assert body["errors"][0]["extensions"]["code"] == "VALIDATION_FAILED"
    body = await tenant.gql(LEDGER, {"first": 100_000})
    assert body["errors"][0]["extensions"]["code"] == "VALIDATION_FAILED"


async def test_ledger_filters(tenant: Tenant) -> None:
    await tenant.gql(
        RECORD_BATCH,
        {
            "input": [
                usage(tenant, feature="chat", occurredAt=rfc(month(-3, 1))),
                usage(tenant, feature="search", agent="scout", occurredAt=rfc(month(-3, 2))),
                usage(tenant, model="claude", occurredAt=rfc(month(-3, 3))),
            ]
        },
    )
    await tenant.gql(DEPOSIT, {"input": deposit_input(tenant)})

    async def keys(filter: dict[str, Any]) -> int:
        body = await tenant.gql(LEDGER, {"filter": filter, "first": 50})
        return len(body["data"]["ledger"]["edges"])

    assert await keys({"feature": "chat"}) == 1
    assert await keys({"agent": "scout"}) == 1
    assert await keys({"model": "claude"}) == 1
    assert await keys({"types": ["DEPOSIT"]}) == 1
    assert await keys({"range": {"start": rfc(month(-3, 2)), "end": rfc(month(-3, 3))}}) == 1
    assert await keys({"customerId": str(tenant.customer_id)}) == 4
