"""Currency pairs: what a view names when a currency has no rate to the one it reports in."""

from __future__ import annotations

import decimal
from collections.abc import Iterable

import strawberry

from costgraph.billing.fx import CurrencyPair as PairModel
from costgraph.schema.scalars import CurrencyCode


@strawberry.type(
    description="A currency pair without an exchange rate where one was needed: amounts in "
    "`base` could not be converted into `quote`, so they are reported in their own currency "
    "instead of being counted in `quote`."
)
class CurrencyPair:
    base: CurrencyCode
    quote: CurrencyCode

    @classmethod
    def of(cls, pair: PairModel) -> CurrencyPair:
        return cls(base=CurrencyCode(pair.base), quote=CurrencyCode(pair.quote))


def pairs(found: Iterable[PairModel]) -> list[CurrencyPair]:
    return [CurrencyPair.of(pair) for pair in sorted(found)]


@strawberry.type(description="An amount in its own currency.")
class CurrencyAmount:
    currency: CurrencyCode
    amount: decimal.Decimal
