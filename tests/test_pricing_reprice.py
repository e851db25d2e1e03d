"""Reprice: past entries are never rewritten; corrections are new ADJUSTMENT entries."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from tests.conftest import Tenant, raw_connection
from tests.test_pricing_catalog import SET_RATE, provider_name, record, set_price

REPRICE = """mutation($input: RepriceInput!) { repriceUsage(input: $input) {
  __typename
  ... on RepriceCompleted { runId examined adjusted adjustments {
      type amount aiCost balanceDelta relatedEntryId priceVersionId metadata occurredAt } }
  ... on UserError { code message field } } }"""
RANGE = {"start": "2026-06-01T00:00:00Z", "end": "2026-07-01T00:00:00Z"}


async def reprice(tenant: Tenant, **extra: Any) -> dict[str, Any]:
    body = await tenant.gql(REPRICE, {"input": {"range": RANGE, "reason": "fix", **extra}})
    result: dict[str, Any] = body["data"]["repriceUsage"]
    return result


async def test_a_rate_added_later_is_applied_by_an_explicit_reprice(
    tenant: Tenant, database_url: str, mint: Any
) -> None:
    p = provider_name()
    platform = mint(None, ["platform_admin"])
    # A platform price in EUR; the tenant's own EUR->USD rate.
    await set_price(tenant, token=platform, provider=p, currency="EUR")
    await tenant.gql(
        SET_RATE,
        {
            "input": {
                "base": "EUR",
                "quote": "USD",
                "rate": "1.25",
                "effectiveFrom": "2026-01-01T00:00:00Z",
            }
        },
    )
    original = (await record(tenant, p, occurredAt="2026-06-10T00:00:00Z"))["entry"]
    # 6.00 EUR at 1.25 = 7.50 USD
    assert original["aiCost"] == "7.500000000000"
    # Nothing to correct yet.
    first = await reprice(tenant)
    assert (first["examined"], first["adjusted"]) == (1, 0)
    # A corrected rate from June 1st (a new, later rate: rates are never edited).
    await tenant.gql(
        SET_RATE,
        {
            "input": {
                "base": "EUR",
                "quote": "USD",
                "rate": "1.10",
                "effectiveFrom": "2026-06-01T00:00:00Z",
            }
        },
    )
    second = await reprice(tenant)
    assert (second["examined"], second["adjusted"]) == (1, 1)
    adjustment = second["adjustments"][0]
    # 6.00 * 1.10 = 6.60: a correction of -0.90, dated like the entry it corrects
    assert adjustment["type"] == "ADJUSTMENT"
    assert Decimal(adjustment["aiCost"]) == Decimal("-0.90")
    assert Decimal(adjustment["amount"]) == Decimal("-0.90")
    assert Decimal(adjustment["balanceDelta"]) == Decimal("0.90")
    assert adjustment["relatedEntryId"] == original["id"]
    assert adjustment["occurredAt"] == "2026-06-10T00:00:00Z"
    assert adjustment["metadata"]["kind"] == "reprice"
    assert adjustment["metadata"]["run_id"] == second["runId"]
    assert adjustment["metadata"]["previous"]["ai_cost"] == "7.500000000000"
    # Running it again finds nothing left to correct.
    third = await reprice(tenant)
    assert third["adjusted"] == 0
    async with raw_connection(database_url) as connection:
        stored = await connection.fetchval(
            "SELECT ai_cost FROM ledger_entries WHERE id = $1::uuid", original["id"]
        )
        runs = await connection.fetch(
            "SELECT requested_by, reason, examined, adjusted FROM reprice_runs "
            "WHERE organization_id = $1 ORDER BY created_at",
            tenant.org.id,
        )
        with pytest.raises(asyncpg.RestrictViolationError):
            await connection.execute(
                "UPDATE ledger_entries SET ai_cost = 0 WHERE id = $1::uuid", original["id"]
            )
    assert stored == Decimal("7.5")  # the original entry is untouched
    assert [(r["examined"], r["adjusted"]) for r in runs] == [(1, 0), (1, 1), (1, 0)]
    assert all(r["reason"] == "fix" for r in runs)


async def test_reprice_of_an_empty_or_bad_range(tenant: Tenant) -> None:
    empty = await reprice(tenant)
    assert (empty["examined"], empty["adjusted"]) == (0, 0)
    body = await tenant.gql(
        REPRICE, {"input": {"range": {"start": RANGE["end"], "end": RANGE["start"]}}}
    )
    assert body["data"]["repriceUsage"]["code"] == "VALIDATION_FAILED"
