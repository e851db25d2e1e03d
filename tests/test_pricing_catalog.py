"""The catalog through the API: versions, overrides, aliases, rates, markup, and pricing at
ingestion (hand-computed)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event as sa_event

from costgraph.app.state import AppState
from costgraph.billing import ledger
from costgraph.billing.catalog_loader import load_starter_catalog, parse_rows, starter_text
from costgraph.billing.commands import UsageEvent
from costgraph.models.scoping import bind_tenant
from tests.conftest import Tenant, raw_connection
from tests.dates import month, rfc

SET_PRICE = """mutation($input: ModelPriceInput!) { setModelPrice(input: $input) {
  id scope provider model currency effectiveFrom effectiveTo inputPerMillion outputPerMillion
  aliases unitPrices { kind price } } }"""
PRICES = """query($provider: String, $model: String, $at: DateTime) {
  modelPrices(provider: $provider, model: $model, at: $at) {
    id scope model effectiveFrom effectiveTo inputPerMillion aliases } }"""
SET_RATE = """mutation($input: ExchangeRateInput!) { setExchangeRate(input: $input) {
  id scope base quote rate effectiveFrom } }"""
RATES = (
    """query($at: DateTime) { exchangeRates(at: $at) { scope base quote rate effectiveFrom } }"""
)
SET_MARKUP = """mutation($input: MarkupInput!) { setMarkup(input: $input) {
  id percent customerId provider model } }"""
RECORD = """mutation($input: UsageEventInput!) { recordUsage(input: $input) {
  __typename
  ... on UsageRecorded { entry { id amount aiCost providerCost providerCurrency fxRate
      priceVersionId callerPriced markupPercent currency cacheWriteTokens } }
  ... on PriceMissing { code message field provider model }
  ... on RateMissing { code message base quote }
  ... on UserError { code message field } } }"""


def provider_name() -> str:
    return f"p{uuid.uuid4().hex[:12]}"


def price_input(provider: str, **overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "provider": provider,
        "model": "m1",
        "currency": "USD",
        "effectiveFrom": rfc(month(-11)),
        "inputPerMillion": "2.00",
        "outputPerMillion": "8.00",
    }
    value.update(overrides)
    return value


def event(tenant: Tenant, provider: str, **overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "idempotencyKey": f"e-{uuid.uuid4().hex}",
        "accountId": str(tenant.account_id),
        "occurredAt": rfc(month(-6, 1, 12)),
        "provider": provider,
        "model": "m1",
        "inputTokens": 1_000_000,
        "outputTokens": 500_000,
    }
    value.update(overrides)
    return value


async def set_price(tenant: Tenant, token: str | None = None, **kw: Any) -> dict[str, Any]:
    return await tenant.gql(SET_PRICE, {"input": price_input(**kw)}, token=token)


async def record(tenant: Tenant, provider: str, **overrides: Any) -> dict[str, Any]:
    body = await tenant.gql(RECORD, {"input": event(tenant, provider, **overrides)})
    result: dict[str, Any] = body["data"]["recordUsage"]
    return result


async def count(database_url: str, table: str, **where: Any) -> int:
    clauses = " AND ".join(f"{k} = ${i}" for i, k in enumerate(where, 1)) or "true"
    async with raw_connection(database_url) as connection:
        value = await connection.fetchval(
            f"SELECT count(*) FROM {table} WHERE {clauses}", *where.values()
        )
    return int(value)


async def test_a_new_version_closes_the_open_one_and_prices_both_sides(tenant: Tenant) -> None:
    p = provider_name()
    first = (await set_price(tenant, provider=p))["data"]["setModelPrice"]
    assert first["scope"] == "ORGANIZATION" and first["effectiveTo"] is None
    second = (
        await set_price(
            tenant,
            provider=p,
            effectiveFrom=rfc(month(-6, 1, 12)),
            inputPerMillion="1.00",
            outputPerMillion="4.00",
        )
    )["data"]["setModelPrice"]
    history = (await tenant.gql(PRICES, {"provider": p}))["data"]["modelPrices"]
    assert [(v["id"], v["effectiveTo"]) for v in history] == [
        (first["id"], rfc(month(-6, 1, 12))),
        (second["id"], None),
    ]
    # One microsecond before the change: the old prices (1M*2 + 0.5M*8 = 6.00).
    before = await record(tenant, p, occurredAt=rfc(month(-6, 1, 12) - timedelta(microseconds=1)))
    assert before["entry"]["providerCost"] == "6.000000000000"
    assert before["entry"]["priceVersionId"] == first["id"]
    # At the instant of the change (half-open): the new prices (1M*1 + 0.5M*4 = 3.00).
    after = await record(tenant, p, occurredAt=rfc(month(-6, 1, 12)))
    assert after["entry"]["providerCost"] == "3.000000000000"
    assert after["entry"]["priceVersionId"] == second["id"]
    assert after["entry"]["callerPriced"] is False
    at = (await tenant.gql(PRICES, {"provider": p, "at": rfc(month(-9))}))["data"]
    assert [v["id"] for v in at["modelPrices"]] == [first["id"]]


async def test_overlapping_versions_are_refused_and_write_nothing(
    tenant: Tenant, database_url: str
) -> None:
    p = provider_name()
    await set_price(tenant, provider=p, effectiveFrom=rfc(month(-9)))
    before = await count(database_url, "model_prices", provider=p)
    for effective_from in (rfc(month(-9)), rfc(month(-10))):
        body = await set_price(tenant, provider=p, effectiveFrom=effective_from)
        assert body["data"] is None
        assert body["errors"][0]["extensions"]["code"] == "VALIDATION_FAILED"
        assert "overlap" in body["errors"][0]["message"]
    # A closed version that fills a gap before it is fine.
    gap = await set_price(
        tenant,
        provider=p,
        effectiveFrom=rfc(month(-11)),
        effectiveTo=rfc(month(-9)),
    )
    assert gap["data"]["setModelPrice"]["effectiveTo"] == rfc(month(-9))
    assert await count(database_url, "model_prices", provider=p) == before + 1


async def test_the_database_itself_refuses_overlap_and_edits(
    tenant: Tenant, database_url: str
) -> None:
    p = provider_name()
    await set_price(tenant, provider=p)
    async with raw_connection(database_url) as connection:
        with pytest.raises(asyncpg.ExclusionViolationError):
            await connection.execute(
                """INSERT INTO model_prices (organization_id, provider, model, currency,
                   effective_from, input_per_million) VALUES ($1, $2, 'm1', 'USD', $3, 1)""",
                tenant.org.id,
                p,
                month(-7),
            )
        with pytest.raises(asyncpg.RestrictViolationError):
            await connection.execute(
                "UPDATE model_prices SET input_per_million = 0 WHERE provider = $1", p
            )
        with pytest.raises(asyncpg.RestrictViolationError):
            await connection.execute("DELETE FROM model_prices WHERE provider = $1", p)
        # The platform's version of the same name is another series: no overlap.
        await connection.execute(
            """INSERT INTO model_prices (provider, model, currency, effective_from,
               input_per_million) VALUES ($1, 'm1', 'USD', $2, 1)""",
            p,
            month(-7),
        )


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"inputPerMillion": "-0.01"}, "input.inputPerMillion"),
        ({"unitPrices": [{"kind": "IMAGE", "price": "-1"}]}, "input.unitPrices.0.price"),
        ({"effectiveFrom": "1999-12-31T00:00:00Z"}, "input.effectiveFrom"),
        ({"longContextThreshold": 1000}, "input.inputPerMillionAboveThreshold"),
        ({"outputPerMillionAboveThreshold": "9"}, "input.longContextThreshold"),
        ({"provider": "Not A Slug"}, "input.provider"),
        ({"aliases": ["m1"]}, "input.aliases.0"),
        ({"inputPerMillion": None, "outputPerMillion": None}, "input.inputPerMillion"),
    ],
)
async def test_bad_prices_are_typed_errors_that_write_nothing(
    tenant: Tenant, database_url: str, overrides: dict[str, Any], field: str
) -> None:
    p = provider_name()
    body = await set_price(tenant, **{"provider": p, **overrides})
    assert body["data"] is None
    assert body["errors"][0]["extensions"] == {"code": "VALIDATION_FAILED", "field": field}
    assert await count(database_url, "model_prices", provider=p) == 0


@pytest.mark.parametrize(
    "overrides",
    [
        {"effectiveFrom": "2026-13-01T00:00:00Z"},
        {"effectiveFrom": "yesterday"},
        {"effectiveFrom": "2026-01-01T00:00:00"},  # no zone
        {"currency": "XXY"},
        {"inputPerMillion": 1.5},  # a JSON number, not an exact decimal
    ],
)
async def test_malformed_input_is_refused_before_anything_runs(
    tenant: Tenant, database_url: str, overrides: dict[str, Any]
) -> None:
    p = provider_name()
    body = await set_price(tenant, provider=p, **overrides)
    assert body.get("data") is None
    assert body["errors"][0]["extensions"]["code"] == "VALIDATION_FAILED"
    assert await count(database_url, "model_prices", provider=p) == 0


async def test_overrides_are_the_tenants_own_and_win_over_the_platform(
    tenant: Tenant, other_tenant: Tenant, mint: Any
) -> None:
    p = provider_name()
    platform = mint(None, ["platform_admin"])
    body = await set_price(tenant, token=platform, provider=p, aliases=["m1-2026-01-01"])
    assert body["data"]["setModelPrice"]["scope"] == "PLATFORM"
    await set_price(tenant, provider=p, inputPerMillion="1.00", outputPerMillion="1.00")
    # The tenant with an override is priced by it: 1M*1 + 0.5M*1 = 1.50 ...
    mine = await record(tenant, p, model="m1-2026-01-01")
    assert mine["entry"]["providerCost"] == "1.500000000000"
    # ... the other tenant by the platform's (through the alias): 1M*2 + 0.5M*8 = 6.00.
    theirs = await record(other_tenant, p, model="m1-2026-01-01")
    assert theirs["entry"]["providerCost"] == "6.000000000000"
    seen = (await other_tenant.gql(PRICES, {"provider": p}))["data"]["modelPrices"]
    assert [v["scope"] for v in seen] == ["PLATFORM"]
    assert seen[0]["aliases"] == ["m1-2026-01-01"]
    mine_seen = (await tenant.gql(PRICES, {"provider": p, "at": rfc(month(-6))}))["data"]
    assert [v["scope"] for v in mine_seen["modelPrices"]] == ["ORGANIZATION"]
    # Only a platform admin writes the platform catalog.
    member = await set_price(
        tenant, token=mint(None, ["org_admin"]), provider=p, effectiveFrom=rfc(month(-3))
    )
    assert member["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_unknown_model_is_price_missing_and_writes_nothing(
    tenant: Tenant, database_url: str
) -> None:
    p = provider_name()
    result = await record(tenant, p, model="nope")
    assert result["__typename"] == "PriceMissing"
    assert result["code"] == "PRICE_MISSING"
    assert (result["provider"], result["model"], result["field"]) == (p, "nope", "input.model")
    await set_price(tenant, provider=p, unitPrices=[{"kind": "IMAGE", "price": "0.04"}])
    # A used component the version does not price is PRICE_MISSING too.
    video = await record(tenant, p, units=[{"kind": "VIDEO_SECOND", "quantity": "2"}])
    assert video["__typename"] == "PriceMissing" and "VIDEO_SECOND" in video["message"]
    # Before the first version: missing as well.
    early = await record(tenant, p, occurredAt=rfc(month(-12)))
    assert early["__typename"] == "PriceMissing"
    assert await count(database_url, "ledger_entries", organization_id=tenant.org.id) == 0


async def test_a_foreign_provider_is_converted_at_the_rate_in_force(tenant: Tenant) -> None:
    p = provider_name()
    await set_price(
        tenant,
        provider=p,
        currency="KES",
        inputPerMillion="3.00",
        outputPerMillion="15.00",
        cachedInputPerMillion="0.30",
    )
    missing = await record(tenant, p)
    assert missing["__typename"] == "RateMissing"
    assert (missing["base"], missing["quote"]) == ("KES", "USD")
    assert "KES->USD" in missing["message"]
    for rate, since in (("1.0800", rfc(month(-7))), ("1.0834", rfc(month(-6)))):
        saved = await tenant.gql(
            SET_RATE,
            {"input": {"base": "KES", "quote": "USD", "rate": rate, "effectiveFrom": since}},
        )
        assert saved["data"]["setExchangeRate"]["scope"] == "ORGANIZATION"
    result = await record(
        tenant,
        p,
        inputTokens=12_345,
        cachedInputTokens=20_000,
        outputTokens=678,
        occurredAt=rfc(month(-6, 15)),
    )
    entry = result["entry"]
    # 12345*3 + 20000*0.30 + 678*15 = 37035 + 6000 + 10170 = 53205 per million = 0.053205 KES
    assert (entry["providerCost"], entry["providerCurrency"]) == ("0.053205000000", "KES")
    assert entry["fxRate"] == "1.083400000000"
    # 0.053205 * 1.0834 = 0.057642297 USD
    assert (entry["aiCost"], entry["currency"]) == ("0.057642297000", "USD")
    assert entry["amount"] == entry["aiCost"] and entry["markupPercent"] == "0.000000000000"
    # Before the second rate: the first one.
    earlier = await record(tenant, p, occurredAt=rfc(month(-7, 15)))
    assert earlier["entry"]["fxRate"] == "1.080000000000"
    rates = (await tenant.gql(RATES, {"at": rfc(month(-7, 20))}))["data"]["exchangeRates"]
    assert {
        "scope": "ORGANIZATION",
        "base": "KES",
        "quote": "USD",
        "rate": "1.080000000000",
        "effectiveFrom": rfc(month(-7)),
    } in rates


@pytest.mark.parametrize(
    ("rate", "base", "quote", "field"),
    [
        ("0", "EUR", "USD", "input.rate"),
        ("-1.2", "EUR", "USD", "input.rate"),
        ("1.1", "EUR", "EUR", "input.quote"),
    ],
)
async def test_bad_rates_are_refused(
    tenant: Tenant, database_url: str, rate: str, base: str, quote: str, field: str
) -> None:
    body = await tenant.gql(
        SET_RATE,
        {
            "input": {
                "base": base,
                "quote": quote,
                "rate": rate,
                "effectiveFrom": rfc(month(-11)),
            }
        },
    )
    assert body["errors"][0]["extensions"] == {"code": "VALIDATION_FAILED", "field": field}
    assert await count(database_url, "exchange_rates", organization_id=tenant.org.id) == 0
    unknown = await tenant.gql(
        SET_RATE,
        {
            "input": {
                "base": "ABC",
                "quote": "USD",
                "rate": "1",
                "effectiveFrom": rfc(month(-11)),
            }
        },
    )
    assert unknown["errors"][0]["extensions"]["code"] == "VALIDATION_FAILED"


async def test_markup_is_resolved_and_stored_beside_ai_cost(tenant: Tenant) -> None:
    p = provider_name()
    await set_price(tenant, provider=p, aliases=["m1-snap"])
    await set_price(tenant, provider=p, model="m2")
    rules = [
        {"percent": "10"},
        {"percent": "25.5", "customerId": str(tenant.customer_id)},
        {"percent": "50", "provider": p, "model": "m1"},
    ]
    for rule in rules:
        saved = await tenant.gql(SET_MARKUP, {"input": rule})
        assert Decimal(saved["data"]["setMarkup"]["percent"]) == Decimal(rule["percent"])
    # m1 (through its alias): the model rule; 6.00 * 1.5 = 9.00
    m1 = (await record(tenant, p, model="m1-snap"))["entry"]
    assert (m1["aiCost"], m1["amount"], m1["markupPercent"]) == (
        "6.000000000000",
        "9.000000000000",
        "50.000000000000",
    )
    # m2: the customer's rule beats the organisation default; 6.00 * 1.255 = 7.53
    m2 = (await record(tenant, p, model="m2"))["entry"]
    assert (m2["amount"], m2["markupPercent"]) == ("7.530000000000", "25.500000000000")
    # Setting a rule again replaces it.
    await tenant.gql(SET_MARKUP, {"input": {"percent": "0", "customerId": str(tenant.customer_id)}})
    m2 = (await record(tenant, p, model="m2"))["entry"]
    assert m2["amount"] == "6.000000000000"
    below = await tenant.gql(SET_MARKUP, {"input": {"percent": "-100.01"}})
    assert below["errors"][0]["extensions"] == {
        "code": "VALIDATION_FAILED",
        "field": "input.percent",
    }
    free = await tenant.gql(SET_MARKUP, {"input": {"percent": "-100"}})
    assert free["data"]["setMarkup"]["percent"] == "-100.000000000000"


async def test_caller_priced_events_are_converted_and_marked_up(tenant: Tenant) -> None:
    await tenant.gql(
        SET_RATE,
        {
            "input": {
                "base": "EUR",
                "quote": "USD",
                "rate": "1.1",
                "effectiveFrom": rfc(month(-11)),
            }
        },
    )
    await tenant.gql(SET_MARKUP, {"input": {"percent": "20"}})
    result = await record(
        tenant,
        "router",
        model="anything",
        providerCost="0.50",
        providerCurrency="EUR",
        cacheWriteTokens=42,
    )
    entry = result["entry"]
    assert entry["callerPriced"] is True and entry["priceVersionId"] is None
    assert (entry["aiCost"], entry["amount"]) == ("0.550000000000", "0.660000000000")
    assert entry["cacheWriteTokens"] == 42


async def test_a_batch_is_priced_with_a_fixed_number_of_queries(
    tenant: Tenant, state: AppState
) -> None:
    p = provider_name()
    for model in ("a", "b", "c"):
        await set_price(tenant, provider=p, model=model, currency="EUR")
    await tenant.gql(
        SET_RATE,
        {
            "input": {
                "base": "EUR",
                "quote": "USD",
                "rate": "1.1",
                "effectiveFrom": rfc(month(-11)),
            }
        },
    )
    start = month(-6)
    events = [
        UsageEvent(
            idempotency_key=f"q-{uuid.uuid4().hex}",
            account_id=tenant.account_id,
            occurred_at=start + timedelta(minutes=i),
            provider=p,
            model="abc"[i % 3],
            input_tokens=i,
        )
        for i in range(300)
    ]
    statements: list[str] = []

    def count_statement(*args: Any) -> None:
        statements.append(str(args[2]))

    engine = state.engine.sync_engine
    sa_event.listen(engine, "before_cursor_execute", count_statement)
    try:
        async with state.sessions() as session, session.begin():
            bind_tenant(session.sync_session, tenant.org.id)
            entries = await ledger.record_usage_batch(session, tenant.org, events, state.limits)
    finally:
        sa_event.remove(engine, "before_cursor_execute", count_statement)
    assert len(entries) == 300 and all(e.fx_rate == Decimal("1.1") for e in entries)
    pricing = [
        s
        for s in statements
        if "model_prices" in s
        or "model_aliases" in s
        or "exchange_rates" in s
        or "markup_rules" in s
    ]
    assert len(pricing) <= 4, pricing


async def test_the_starter_catalog_loads_idempotently(state: AppState, tenant: Tenant) -> None:
    rows = parse_rows(starter_text())
    providers = {r.provider for r in rows}
    assert {"openai", "anthropic", "google", "mistral"} <= providers
    assert all(r.source_url for r in rows)
    kinds = {kind for r in rows for kind, _ in r.unit_prices}
    assert {"IMAGE", "CHARACTER", "VIDEO_SECOND"} <= kinds
    async with state.sessions() as session, session.begin():
        await load_starter_catalog(session)
    async with state.sessions() as session, session.begin():
        again = await load_starter_catalog(session)
    assert again.added == 0 and again.unchanged == len(rows)
    # A dated snapshot is priced as its model: gpt-4o at 2.50 / 10.00 per million.
    result = await record(
        tenant,
        "openai",
        model="gpt-4o-2024-08-06",
        inputTokens=1000,
        outputTokens=100,
        occurredAt=rfc(month(-6)),
    )
    assert result["entry"]["providerCost"] == "0.003500000000"
