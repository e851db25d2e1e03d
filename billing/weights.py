"""Weighted allowance consumption: how many *budgeted tokens* a usage entry consumes.

A plan's allowance counts budgeted tokens, not raw ones, so an expensive model, a heavy
feature or a second of video consumes more than a short text generation. The weights are an
organisation's *allowance catalog* (``setAllowanceWeight``; one catalog for all its plans,
like its prices), each a decimal:

- ``MODEL`` (provider, model; model ``*``: every model of the provider): a multiplier on the
  event's tokens. Default 1.
- ``FEATURE`` (the event's ``feature`` tag): a multiplier on everything the event consumes.
  Default 1 (0: the feature is free of allowance).
- ``UNIT`` (IMAGE, AUDIO_SECOND, VIDEO_SECOND, REQUEST, CHARACTER): budgeted tokens per unit.
  Default 0: units draw nothing from the allowance (their price is charged to the balance),
  as before weights existed.

For one event, with ``tokens`` = input + output + cached input + reasoning tokens::

    budgeted = ceil(model x feature x tokens + sum(feature x unit[kind] x quantity))

capped at the largest BIGINT. The entry keeps what it was weighed with, so a later change of
the catalog applies to later usage only and never rewrites history: ``allowance_weight`` =
model x feature, each unit's effective weight (unit x feature, when not 0) as ``weight`` in
its ``units`` item, and ``budgeted_tokens``. ``costgraph verify`` recomputes the budgeted
tokens from those (:data:`BUDGETED_SQL`) and the allowance counters from the budgeted tokens.
Entries written before weights carry NULL: weight 1, budgeted = their tokens.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Context, Decimal

from costgraph.billing.validation import INT8_MAX, UNIT_KINDS
from costgraph.kernel.errors import ValidationFailed
from costgraph.kernel.money import decimal_places

ONE = Decimal(1)
ZERO = Decimal(0)
#: Exact for any product of a weight and a BIGINT count (no rounding before the ceiling).
_EXACT = Context(prec=80)
#: Decimal places a weight may have, and its bounds (a multiplier; tokens per unit).
WEIGHT_PLACES = 6
MAX_MULTIPLIER = Decimal(1_000_000)
MAX_PER_UNIT = Decimal(1_000_000_000)
ANY_MODEL = "*"


class Dimension(enum.StrEnum):
    MODEL = "MODEL"
    FEATURE = "FEATURE"
    UNIT = "UNIT"


@dataclass(frozen=True, slots=True)
class Weights:
    """An organisation's allowance catalog, as the write path reads it."""

    models: Mapping[tuple[str, str], Decimal] = field(default_factory=dict)
    features: Mapping[str, Decimal] = field(default_factory=dict)
    units: Mapping[str, Decimal] = field(default_factory=dict)

    @classmethod
    def of_rows(cls, rows: Sequence[tuple[str, str, str, Decimal]]) -> Weights:
        """From ``(dimension, provider, name, weight)`` rows."""
        models: dict[tuple[str, str], Decimal] = {}
        features: dict[str, Decimal] = {}
        units: dict[str, Decimal] = {}
        for dimension, provider, name, weight in rows:
            if dimension == Dimension.MODEL:
                models[(provider, name)] = weight
            elif dimension == Dimension.FEATURE:
                features[name] = weight
            else:
                units[name] = weight
        return cls(models, features, units)

    def model(self, provider: str | None, model: str | None) -> Decimal:
        if provider is None:
            return ONE
        found = self.models.get((provider, model or ""))
        return found if found is not None else self.models.get((provider, ANY_MODEL), ONE)

    def feature(self, feature: str | None) -> Decimal:
        return ONE if feature is None else self.features.get(feature, ONE)


EMPTY = Weights()


@dataclass(frozen=True, slots=True)
class Weighed:
    """What one event consumes: its token multiplier, its units with their effective
    weights, and the budgeted tokens."""

    weight: Decimal
    units: list[dict[str, str]] | None
    budgeted_tokens: int


def raw_tokens(input_tokens: int, output_tokens: int, cached: int, reasoning: int) -> int:
    """The tokens an allowance counts (cache writes are not usage of the model's budget)."""
    return input_tokens + output_tokens + cached + reasoning


def budgeted(weight: Decimal, tokens: int, units: Sequence[tuple[Decimal, Decimal]]) -> int:
    """``ceil(weight x tokens + sum(quantity x unit weight))``, capped at the largest BIGINT."""
    total = _EXACT.multiply(weight, Decimal(tokens))
    for quantity, unit_weight in units:
        total = _EXACT.add(total, _EXACT.multiply(quantity, unit_weight))
    whole = int(total.to_integral_value(rounding=ROUND_CEILING, context=_EXACT))
    return min(whole, INT8_MAX)


def weigh(
    weights: Weights,
    provider: str | None,
    model: str | None,
    feature: str | None,
    tokens: int,
    units: Sequence[tuple[str, Decimal]],
) -> Weighed:
    """Weigh one event (``units``: ``(kind, quantity)``)."""
    per_feature = weights.feature(feature)
    weight = _EXACT.multiply(weights.model(provider, model), per_feature)
    items: list[dict[str, str]] = []
    weighed: list[tuple[Decimal, Decimal]] = []
    for kind, quantity in units:
        item = {"kind": kind, "quantity": format(quantity, "f")}
        unit_weight = _EXACT.multiply(weights.units.get(kind, ZERO), per_feature)
        if unit_weight:
            item["weight"] = format(unit_weight, "f")
            weighed.append((quantity, unit_weight))
        items.append(item)
    return Weighed(weight, items or None, budgeted(weight, tokens, weighed))


#: The budgeted tokens of a usage entry ``e``, recomputed in SQL from what it stores (for
#: ``costgraph verify``): the same formula as :func:`budgeted`, exact NUMERIC arithmetic.
BUDGETED_SQL = (
    "least(ceil(coalesce(e.allowance_weight, 1) * (e.input_tokens::numeric + e.output_tokens "
    "+ e.cached_input_tokens + e.reasoning_tokens) + coalesce((SELECT sum((u.item->>'quantity')"
    "::numeric * (u.item->>'weight')::numeric) FROM jsonb_array_elements(CASE WHEN "
    "jsonb_typeof(e.units) = 'array' THEN e.units ELSE '[]'::jsonb END) AS u(item) "
    "WHERE u.item ? 'weight'), 0)), 9223372036854775807)"
)


# --- the catalog's rules ---


@dataclass(frozen=True, slots=True)
class WeightSpec:
    dimension: Dimension
    name: str
    weight: Decimal
    provider: str | None = None


def validate(spec: WeightSpec) -> tuple[str, str, str, Decimal]:
    """The row to store for ``spec`` (``dimension, provider, name, weight``), or a typed error
    naming the field."""
    weight = spec.weight
    if not weight.is_finite() or weight < 0:
        raise ValidationFailed("a weight must be zero or more", "input.weight")
    bound = MAX_PER_UNIT if spec.dimension is Dimension.UNIT else MAX_MULTIPLIER
    if weight > bound:
        raise ValidationFailed(
            f"a {spec.dimension.value} weight is at most {bound}", "input.weight"
        )
    if decimal_places(weight.normalize()) > WEIGHT_PLACES:
        raise ValidationFailed(
            f"a weight has at most {WEIGHT_PLACES} decimal places", "input.weight"
        )
    name = spec.name.strip()
    if not name or len(name) > 200:
        raise ValidationFailed("must be 1 to 200 characters", "input.name")
    provider = (spec.provider or "").strip()
    if spec.dimension is Dimension.MODEL:
        if not provider or len(provider) > 100:
            raise ValidationFailed("a MODEL weight names its provider", "input.provider")
    elif provider:
        raise ValidationFailed(f"a {spec.dimension.value} weight has no provider", "input.provider")
    if spec.dimension is Dimension.UNIT and name not in UNIT_KINDS:
        raise ValidationFailed(
            f"a UNIT weight names a unit kind: {', '.join(sorted(UNIT_KINDS))}", "input.name"
        )
    return spec.dimension.value, provider, name, weight.normalize() if weight else ZERO
