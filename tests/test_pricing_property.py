"""Property: the cost stored on an entry always equals the catalog formula, computed here
independently with exact fractions, for random versions and events."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costgraph.app.state import AppState
from costgraph.billing import catalog, ledger
from costgraph.billing.commands import UnitUsage, UsageEvent
from costgraph.models.scoping import bind_tenant
from tests.conftest import Tenant
from tests.dates import month

prices = st.decimals(min_value=0, max_value=100, places=6)
maybe = st.none() | prices
tokens = st.integers(min_value=0, max_value=3_000_000)
#: When the price versions start and the events happen (from the session's start).
START = month(-11)


def reference(version: dict[str, Any], usage: dict[str, Any], above: bool) -> Decimal:
    """The formula as the docs state it, in fractions, rounded once half-to-even."""
    f = {k: (None if v is None else Fraction(v)) for k, v in version.items() if k != "units"}
    price_in = f["input"] if not above or f["input_above"] is None else f["input_above"]
    price_out = f["output"] if not above or f["output_above"] is None else f["output_above"]
    total = Fraction(
        usage["input"] * price_in
        + usage["cached"] * (price_in if f["cached"] is None else f["cached"])
        + usage["write"] * (price_in if f["write"] is None else f["write"])
        + usage["output"] * price_out
        + usage["reasoning"] * (price_out if f["reasoning"] is None else f["reasoning"]),
        1_000_000,
    )
    total += usage["images"] * Fraction(version["units"])
    scaled = total * 10**12
    quotient, remainder = divmod(scaled.numerator, scaled.denominator)
    twice = 2 * remainder
    if twice > scaled.denominator or (twice == scaled.denominator and quotient % 2 == 1):
        quotient += 1
    return Decimal(quotient).scaleb(-12)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    version=st.fixed_dictionaries(
        {
            "input": prices,
            "output": prices,
            "cached": maybe,
            "write": maybe,
            "reasoning": maybe,
            "input_above": maybe,
            "output_above": maybe,
            "units": prices,
        }
    ),
    threshold=st.integers(min_value=1, max_value=5_000_000),
    usage=st.fixed_dictionaries(
        {
            "input": tokens,
            "cached": tokens,
            "write": tokens,
            "output": tokens,
            "reasoning": tokens,
            "images": st.integers(min_value=0, max_value=20),
        }
    ),
    offset=st.integers(min_value=0, max_value=10_000),
)
async def test_stored_cost_equals_the_formula(
    state: AppState,
    tenant: Tenant,
    version: dict[str, Any],
    threshold: int,
    usage: dict[str, Any],
    offset: int,
) -> None:
    provider = f"h{uuid.uuid4().hex[:12]}"
    has_above = version["input_above"] is not None or version["output_above"] is not None
    new = catalog.NewPriceVersion(
        provider=provider,
        model="m",
        currency="USD",
        effective_from=START,
        input_per_million=version["input"],
        output_per_million=version["output"],
        cached_input_per_million=version["cached"],
        cache_write_per_million=version["write"],
        reasoning_per_million=version["reasoning"],
        long_context_threshold=threshold if has_above else None,
        input_per_million_above_threshold=version["input_above"],
        output_per_million_above_threshold=version["output_above"],
        unit_prices=(("IMAGE", version["units"]),),
    )
    event = UsageEvent(
        idempotency_key=f"h-{uuid.uuid4().hex}",
        account_id=tenant.account_id,
        occurred_at=START + timedelta(minutes=offset),
        provider=provider,
        model="m",
        input_tokens=usage["input"],
        cached_input_tokens=usage["cached"],
        cache_write_tokens=usage["write"],
        output_tokens=usage["output"],
        reasoning_tokens=usage["reasoning"],
        units=(UnitUsage("IMAGE", Decimal(usage["images"])),),
    )
    async with state.sessions() as session, session.begin():
        bind_tenant(session.sync_session, tenant.org.id)
        saved = await catalog.set_model_price(session, tenant.org.id, new)
        entry = await ledger.record_usage(session, tenant.org, event, state.limits)
    prompt = usage["input"] + usage["cached"] + usage["write"]
    expected = reference(version, usage, has_above and prompt > threshold)
    assert entry.price_version_id == saved.id
    assert entry.provider_cost == expected
    assert entry.ai_cost == expected and entry.amount == expected  # USD, no markup
