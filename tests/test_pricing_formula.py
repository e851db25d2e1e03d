"""The pricing formula, rates and markup resolution, with hand-computed expectations."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from costgraph.billing.cost_formula import (
    Metered,
    MissingComponent,
    PriceSheet,
    convert,
    provider_cost,
    with_markup,
)
from costgraph.billing.fx import RateBook
from costgraph.billing.markup import MarkupBook
from costgraph.kernel.errors import RateMissing

D = Decimal
ORG = uuid.uuid4()
SONNET_LIKE = PriceSheet(
    input_per_million=D("3.00"),
    output_per_million=D("15.00"),
    cached_input_per_million=D("0.30"),
    cache_write_per_million=D("3.75"),
    long_context_threshold=200_000,
    input_per_million_above_threshold=D("6.00"),
    output_per_million_above_threshold=D("22.50"),
)


def test_mixed_event_above_the_long_context_threshold() -> None:
    # prompt = 150,000 + 60,000 + 1,000 = 211,000 > 200,000: input and output at the
    # above-threshold prices; reasoning (no price of its own) at the above-threshold output.
    usage = Metered(
        input_tokens=150_000,
        cached_input_tokens=60_000,
        cache_write_tokens=1_000,
        output_tokens=2_345,
        reasoning_tokens=678,
    )
    # 150000*6 + 60000*0.30 + 1000*3.75 + 2345*22.50 + 678*22.50
    # = 900000 + 18000 + 3750 + 52762.5 + 15255 = 989767.5 per million
    assert provider_cost(SONNET_LIKE, usage) == D("0.989767500000")
    assert str(provider_cost(SONNET_LIKE, usage)) == "0.989767500000"


def test_the_same_event_at_the_threshold_uses_base_prices() -> None:
    usage = Metered(
        input_tokens=139_000,
        cached_input_tokens=60_000,
        cache_write_tokens=1_000,
        output_tokens=2_345,
        reasoning_tokens=678,
    )  # prompt = 200,000: not above
    # 139000*3 + 60000*0.30 + 1000*3.75 + 3023*15 = 417000 + 18000 + 3750 + 45345 = 484095
    assert provider_cost(SONNET_LIKE, usage) == D("0.484095000000")


def test_rounding_is_once_and_half_to_even() -> None:
    sheet = PriceSheet(input_per_million=D("0.123456789012"), output_per_million=D("0.0000005"))
    # 7 * 0.123456789012 / 1e6 = 0.000000864197523084 -> 0.000000864198
    assert provider_cost(sheet, Metered(input_tokens=7)) == D("0.000000864198")
    # 1 * 0.0000005 / 1e6 = 0.0000000000005: a tie, to even (0)
    assert provider_cost(sheet, Metered(output_tokens=1)) == D("0E-12")
    # 3 * 0.0000005 / 1e6 = 0.0000000000015: a tie, to even (2)
    assert provider_cost(sheet, Metered(output_tokens=3)) == D("0.000000000002")


def test_units_and_fallbacks() -> None:
    sheet = PriceSheet(
        input_per_million=D("2"),
        output_per_million=D("8"),
        unit_prices={"IMAGE": D("0.04"), "AUDIO_SECOND": D("0.0001")},
    )
    usage = Metered(
        input_tokens=1_000,
        cached_input_tokens=500,  # no cached price: at the input price
        reasoning_tokens=250,  # no reasoning price: at the output price
        units=(("IMAGE", D("3")), ("AUDIO_SECOND", D("12.5"))),
    )
    # (1000*2 + 500*2 + 250*8)/1e6 = 0.005; + 3*0.04 + 12.5*0.0001 = 0.12125
    assert provider_cost(sheet, usage) == D("0.126250000000")


def test_a_used_component_without_a_price_is_never_zero() -> None:
    images_only = PriceSheet(unit_prices={"IMAGE": D("0.04")})
    with pytest.raises(MissingComponent) as missing:
        provider_cost(images_only, Metered(input_tokens=1))
    assert missing.value.component == "inputTokens"
    with pytest.raises(MissingComponent) as missing:
        provider_cost(images_only, Metered(units=(("VIDEO_SECOND", D("1")),)))
    assert missing.value.component == "VIDEO_SECOND"
    # An unused component needs no price.
    assert provider_cost(images_only, Metered(units=(("IMAGE", D("2")),))) == D("0.08")


def test_huge_counts_stay_exact() -> None:
    sheet = PriceSheet(input_per_million=D("1234.567890123456"))
    tokens = 2**62
    expected = (D(tokens) * D("1234.567890123456") / D(10**6)).quantize(D("1E-12"))
    assert provider_cost(sheet, Metered(input_tokens=tokens)) == expected


def test_conversion_and_markup() -> None:
    assert convert(D("0.989767500000"), D("1.0834")) == D("1.072314109500")
    assert with_markup(D("1.072314109500"), D("25")) == D("1.340392636875")
    assert with_markup(D("2.5"), D("-100")) == D("0")
    assert with_markup(D("2.5"), D("0")) == D("2.5")


def at(day: int) -> datetime:
    return datetime(2026, 3, day, tzinfo=UTC)


def test_rate_in_force_and_inverse_and_precedence() -> None:
    book = RateBook.of(
        [
            (None, "EUR", "USD", at(1), D("1.08")),
            (None, "EUR", "USD", at(10), D("1.10")),
            (ORG, "GBP", "USD", at(1), D("1.25")),
            (None, "GBP", "USD", at(1), D("1.30")),
            (None, "USD", "JPY", at(1), D("150")),
        ]
    )
    assert book.rate_at("EUR", "USD", at(9)) == D("1.08")
    assert book.rate_at("EUR", "USD", at(10)) == D("1.10")  # half-open: the new one from t
    assert book.rate_at("GBP", "USD", at(5)) == D("1.25")  # the organisation's own wins
    # derived inverse: 1/1.08 = 0.925925925925925... -> 12 places, half-to-even
    assert book.rate_at("USD", "EUR", at(5)) == D("0.925925925926")
    assert book.rate_at("JPY", "USD", at(5)) == D("0.006666666667")
    assert book.rate_at("USD", "USD", at(5)) == D(1)
    with pytest.raises(RateMissing) as missing:
        book.rate_at("CHF", "USD", at(5))
    assert (missing.value.base, missing.value.quote) == ("CHF", "USD")
    assert "CHF->USD" in missing.value.message
    with pytest.raises(RateMissing):
        book.rate_at("EUR", "USD", datetime(2026, 2, 28, tzinfo=UTC))  # before any rate


def test_markup_resolution_order() -> None:
    customer, other = uuid.uuid4(), uuid.uuid4()
    rules = [
        (uuid.uuid4(), None, None, None, D("10")),  # organisation default
        (uuid.uuid4(), customer, None, None, D("20")),  # customer
        (uuid.uuid4(), None, "openai", None, D("30")),  # provider
        (uuid.uuid4(), customer, "openai", None, D("40")),  # customer + provider
        (uuid.uuid4(), None, None, "gpt-4o", D("50")),  # model
        (uuid.uuid4(), customer, None, "gpt-4o", D("60")),  # customer + model
    ]
    book = MarkupBook(rules)
    assert book.percent_for(customer, "openai", ["gpt-4o"]) == D("60")
    assert book.percent_for(other, "openai", ["gpt-4o"]) == D("50")  # model > customer
    assert book.percent_for(customer, "openai", ["gpt-4.1"]) == D("40")
    assert book.percent_for(other, "openai", ["gpt-4.1"]) == D("30")
    assert book.percent_for(customer, "anthropic", ["claude"]) == D("20")
    assert book.percent_for(other, "anthropic", ["claude"]) == D("10")
    # the canonical name of an alias matches too
    assert book.percent_for(other, "openai", ["gpt-4o", "gpt-4o-2024-08-06"]) == D("50")
    assert MarkupBook([]).percent_for(customer, "openai", ["gpt-4o"]) == D("0")
