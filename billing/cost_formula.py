"""THE pricing formula: what one metered usage costs under one price version. Pure and exact.

Token buckets are disjoint: every token is counted in exactly one of them.

- ``input_tokens``: prompt tokens that were neither read from nor written to a cache;
- ``cached_input_tokens``: prompt tokens read from the provider's cache;
- ``cache_write_tokens``: prompt tokens written to the cache;
- ``output_tokens``: generated tokens other than reasoning;
- ``reasoning_tokens``: hidden reasoning ("thinking") tokens.

Prices are per 1,000,000 tokens, or per unit for images, audio and video seconds, requests
and characters. A version may leave a token price unset; then reasoning falls back to the
output price and cache reads and writes to the input price (the providers' own convention
where they publish no separate price). Any other used component without a price is
:class:`MissingComponent`: never a silent zero.

Long context: when the whole prompt (input + cached + cache-write tokens) is above the
version's ``long_context_threshold``, every input and output token of the request (and
reasoning that falls back to output) is priced at the above-threshold prices; unset
above-threshold prices keep the base price. Cache prices do not change with the threshold.

The sum is exact (``Decimal`` at 80 significant digits, far above any token count times any
price), then rounded once to the ledger's 12 decimal places, half-to-even. Conversion and
markup are each one multiplication, rounded the same way, so every stored figure can be
recomputed from the entry and its price version alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Context, Decimal

from costgraph.kernel.money import QUANTUM

#: Exact arithmetic: no product or sum of the formula comes near 80 digits.
EXACT = Context(prec=80)
MILLION = Decimal(1_000_000)
HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class PriceSheet:
    """The numbers of one price version (``None``: not priced)."""

    input_per_million: Decimal | None = None
    output_per_million: Decimal | None = None
    cached_input_per_million: Decimal | None = None
    cache_write_per_million: Decimal | None = None
    reasoning_per_million: Decimal | None = None
    long_context_threshold: int | None = None
    input_per_million_above_threshold: Decimal | None = None
    output_per_million_above_threshold: Decimal | None = None
    unit_prices: Mapping[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Metered:
    """What one call consumed."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    units: Sequence[tuple[str, Decimal]] = ()

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cached_input_tokens + self.cache_write_tokens


class MissingComponent(Exception):
    """The usage has a component the version does not price (e.g. ``IMAGE``)."""

    def __init__(self, component: str) -> None:
        super().__init__(component)
        self.component = component


def _rounded(value: Decimal) -> Decimal:
    return value.quantize(QUANTUM, rounding=ROUND_HALF_EVEN, context=EXACT)


def _token_prices(sheet: PriceSheet, usage: Metered) -> tuple[Decimal | None, Decimal | None]:
    """Input and output prices per million for this request, long context applied."""
    price_in, price_out = sheet.input_per_million, sheet.output_per_million
    threshold = sheet.long_context_threshold
    if threshold is not None and usage.prompt_tokens > threshold:
        if sheet.input_per_million_above_threshold is not None:
            price_in = sheet.input_per_million_above_threshold
        if sheet.output_per_million_above_threshold is not None:
            price_out = sheet.output_per_million_above_threshold
    return price_in, price_out


def provider_cost(sheet: PriceSheet, usage: Metered) -> Decimal:
    """Cost of ``usage`` in the version's currency, rounded to 12 places (half-to-even)."""
    price_in, price_out = _token_prices(sheet, usage)
    cached = sheet.cached_input_per_million
    written = sheet.cache_write_per_million
    reasoning = sheet.reasoning_per_million
    buckets: tuple[tuple[str, int, Decimal | None], ...] = (
        ("inputTokens", usage.input_tokens, price_in),
        ("cachedInputTokens", usage.cached_input_tokens, price_in if cached is None else cached),
        ("cacheWriteTokens", usage.cache_write_tokens, price_in if written is None else written),
        ("outputTokens", usage.output_tokens, price_out),
        ("reasoningTokens", usage.reasoning_tokens, price_out if reasoning is None else reasoning),
    )
    per_million = Decimal(0)
    for component, count, price in buckets:
        if count == 0:
            continue
        if price is None:
            raise MissingComponent(component)
        per_million = EXACT.add(per_million, EXACT.multiply(Decimal(count), price))
    total = EXACT.divide(per_million, MILLION)
    for kind, quantity in usage.units:
        if quantity == 0:
            continue
        unit_price = sheet.unit_prices.get(kind)
        if unit_price is None:
            raise MissingComponent(kind)
        total = EXACT.add(total, EXACT.multiply(quantity, unit_price))
    return _rounded(total)


def convert(amount: Decimal, rate: Decimal) -> Decimal:
    """``amount`` in the quote currency at ``rate`` (1 base = rate quote), 12 places."""
    return _rounded(EXACT.multiply(amount, rate))


def markup_factor(percent: Decimal) -> Decimal:
    """``1 + percent / 100``: what :func:`with_markup` multiplies by."""
    return EXACT.add(Decimal(1), EXACT.divide(percent, HUNDRED))


def with_factor(ai_cost: Decimal, factor: Decimal) -> Decimal:
    """:func:`with_markup` with the factor computed once (a batch shares a few)."""
    return _rounded(EXACT.multiply(ai_cost, factor))


def with_markup(ai_cost: Decimal, percent: Decimal) -> Decimal:
    """Billed usage: ``ai_cost * (1 + percent / 100)``, 12 places."""
    return with_factor(ai_cost, markup_factor(percent))
