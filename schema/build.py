"""The one ``Schema``: Query, Mutation and Subscription assembled from each domain's resolvers."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.extensions import DisableIntrospection, ParserCache, ValidationCache
from strawberry.schema.config import StrawberryConfig

from costgraph.resolvers.alerts import AlertMutation, AlertQuery
from costgraph.resolvers.budgets import BudgetMutation, BudgetQuery
from costgraph.resolvers.directory import DirectoryMutation, DirectoryQuery
from costgraph.resolvers.forecast import ForecastQuery
from costgraph.resolvers.ledger import LedgerMutation, LedgerQuery
from costgraph.resolvers.oauth import OAuthMutation, OAuthQuery
from costgraph.resolvers.pnl import PnLMutation, PnLQuery
from costgraph.resolvers.pricing import PricingMutation, PricingQuery
from costgraph.resolvers.subscriptions import Subscription
from costgraph.schema.scalars import SCALAR_MAP


@strawberry.type
class Query(
    DirectoryQuery,
    LedgerQuery,
    BudgetQuery,
    OAuthQuery,
    PricingQuery,
    AlertQuery,
    PnLQuery,
    ForecastQuery,
):
    pass


@strawberry.type
class Mutation(
    DirectoryMutation,
    LedgerMutation,
    BudgetMutation,
    OAuthMutation,
    PricingMutation,
    AlertMutation,
    PnLMutation,
):
    pass


def build_schema(*, introspection: bool = True) -> strawberry.Schema:
    """The schema; with ``introspection=False`` (production default) clients cannot list it."""
    # Factories, not instances: strawberry builds extensions per request; both caches live at
    # module level, keyed by maxsize, so they are shared by every request.
    extensions: list[Any] = [
        lambda: ParserCache(maxsize=1024),
        lambda: ValidationCache(maxsize=1024),
    ]
    if not introspection:
        extensions.append(DisableIntrospection)
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(scalar_map=SCALAR_MAP),
        extensions=extensions,
    )
