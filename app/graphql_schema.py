"""The one ``Schema``: Query, Mutation and Subscription assembled from each domain's resolvers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import DisableIntrospection
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from costgraph.app.error_log import log_error
from costgraph.app.fast_variables import FastVariablesExecutor
from costgraph.app.plain_fields import PlainFieldsExecutor
from costgraph.app.query_caches import limited_caches
from costgraph.app.query_limits import QueryLimits, refine_error
from costgraph.resolvers.alerts import AlertMutation, AlertQuery
from costgraph.resolvers.analytics import AnalyticsQuery
from costgraph.resolvers.budgets import BudgetMutation, BudgetQuery
from costgraph.resolvers.directory import DirectoryMutation, DirectoryQuery
from costgraph.resolvers.exports import ExportMutation
from costgraph.resolvers.forecast import ForecastQuery
from costgraph.resolvers.ledger import LedgerMutation, LedgerQuery
from costgraph.resolvers.oauth import OAuthMutation, OAuthQuery
from costgraph.resolvers.pnl import PnLMutation, PnLQuery
from costgraph.resolvers.pricing import PricingMutation, PricingQuery
from costgraph.resolvers.reports import ReportMutation, ReportQuery
from costgraph.resolvers.subscription_billing import SubscriptionBillingMutation
from costgraph.resolvers.subscriptions import Subscription
from costgraph.resolvers.top_ups import TopUpMutation, TopUpQuery, TopUpSubscription
from costgraph.resolvers.verify import VerifyQuery
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
    AnalyticsQuery,
    ForecastQuery,
    ReportQuery,
    VerifyQuery,
    TopUpQuery,
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
    ReportMutation,
    ExportMutation,
    SubscriptionBillingMutation,
    TopUpMutation,
):
    pass


@strawberry.type(name="Subscription")
class AllSubscriptions(Subscription, TopUpSubscription):
    pass


class CostGraphExecutor(PlainFieldsExecutor, FastVariablesExecutor):
    """graphql-core's executor as strawberry extends it, with list variables coerced by
    compiled coercers (app/fast_variables.py) and plain leaf fields completed inline
    (app/plain_fields.py); each changes the cost, never the result."""


class CostGraphSchema(strawberry.Schema):
    """strawberry's schema, refining errors before they are logged and formatted: the token
    limit gets its code, and "Did you mean …?" hints go when introspection is off.

    Each error is then logged once, by app/error_log.py: expected ones at INFO without a
    traceback, bugs at ERROR with one (strawberry's default logs all at ERROR)."""

    def __init__(self, *args: Any, hide_suggestions: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hide_suggestions = hide_suggestions

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        for error in errors:
            refine_error(error, hide_suggestions=self.hide_suggestions)
            log_error(error)


def build_schema(
    *,
    introspection: bool = True,
    extra_extensions: Sequence[Any] = (),
    limits: QueryLimits | None = None,
) -> strawberry.Schema:
    """The schema; with ``introspection=False`` (production default) clients cannot list it.

    ``limits`` (default: the settings' defaults) are checked before anything runs, see
    app/query_limits.py and app/query_caches.py. ``extra_extensions`` come last, innermost:
    the app's operation observer and tracing.
    """
    # A factory, not an instance: strawberry builds extensions per request. In place of its
    # ParserCache and ValidationCache: the limits (bytes, tokens, depth, aliases, cost, list
    # sizes, …) checked on the way, and one cache of accepted documents bounded in bytes.
    extensions: list[Any] = limited_caches(limits or QueryLimits())
    if not introspection:
        extensions.append(DisableIntrospection)
    extensions.extend(extra_extensions)
    return CostGraphSchema(
        hide_suggestions=not introspection,
        query=Query,
        mutation=Mutation,
        subscription=AllSubscriptions,
        config=StrawberryConfig(scalar_map=SCALAR_MAP),
        extensions=extensions,
        execution_context_class=CostGraphExecutor,
    )
