"""Forecasts of a period's total and usage patterns: decode, call the domain, map."""

from __future__ import annotations

from typing import Annotated

import strawberry

from costgraph.auth.permissions import Right
from costgraph.billing import forecast, pattern_analysis
from costgraph.billing.budgets import Basis
from costgraph.kernel.clock import utcnow
from costgraph.resolvers.access import needs
from costgraph.resolvers.budgets import decode_scope
from costgraph.schema import forecast as types
from costgraph.schema.budgets import BudgetBasis
from costgraph.schema.inputs import DateRange
from costgraph.schema.scopes import BudgetScopeInput
from costgraph.schema.types import Info


@strawberry.type
class ForecastQuery:
    @strawberry.field(
        description="The projected total of the scope's current month with 80 % and 95 % "
        "intervals: its MONTH budget's period when it has one, else the calendar month in the "
        "configured time zone.",
        extensions=[needs(Right.READ_USAGE)],
    )
    async def forecast(
        self,
        info: Info,
        scope: BudgetScopeInput,
        basis: Annotated[
            BudgetBasis | None,
            strawberry.argument(
                description="Which MONTH budget (or measure, without one); default: AI_COST first."
            ),
        ] = None,
    ) -> types.Forecast:
        org = await info.context.org()
        wanted = decode_scope(scope, org.id, "scope")
        app = info.context.app
        async with info.context.reading() as session:
            projection = await forecast.forecast(
                session,
                org,
                wanted,
                utcnow(),
                app.limits.zone,
                basis=basis,
                history_days=app.settings.forecast_history_days,
            )
        return types.Forecast.of(projection)

    @strawberry.field(
        description="Usage by hour of day and day of week, peak hours, anomalies, the daily "
        "trend and seasonal profiles (weekday, ISO week, month), feature adoption and cost per "
        "request by model and feature, in the configured time zone. The range may cover at "
        "most COSTGRAPH_PATTERNS_MAX_RANGE_DAYS days (366 by default) and never more than "
        "COSTGRAPH_PNL_MAX_RANGE_DAYS.",
        extensions=[needs(Right.READ_USAGE)],
    )
    async def usage_patterns(
        self,
        info: Info,
        range: DateRange,
        scope: BudgetScopeInput | None = None,
        basis: BudgetBasis = Basis.AI_COST,
    ) -> types.UsagePatterns:
        org = await info.context.org()
        wanted = None if scope is None else decode_scope(scope, org.id, "scope")
        app = info.context.app
        async with info.context.reading() as session:
            report = await pattern_analysis.usage_patterns(
                session,
                org,
                wanted,
                range.start,
                range.end,
                app.limits.zone,
                basis=basis,
                max_range_days=min(
                    app.settings.patterns_max_range_days, app.settings.pnl_max_range_days
                ),
                now=utcnow(),
            )
        return types.UsagePatterns.of(report)
