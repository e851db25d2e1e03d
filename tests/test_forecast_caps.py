"""Forecasts under hard caps: the projection and its intervals never exceed what a cap lets
through, the answer says when a cap (not demand) bounds it, and the trend is exposed."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from costgraph.alerts import forecasting
from costgraph.app.state import AppState
from costgraph.billing import directory
from costgraph.billing.budgets import BudgetSpec, set_budget
from costgraph.billing.periods import Period
from costgraph.billing.scopes import Scope, ScopeKind
from costgraph.billing.trends import TrendDirection
from costgraph.models.scoping import bind_tenant
from tests import dates
from tests.conftest import Tenant
from tests.test_forecast import (
    FORECAST,
    MONTH_START,
    NOW,
    UTC_ZONE,
    daily_events,
    record,
    run_forecast,
    trend_month,
)
from tests.verify_support import assert_no_drift

DAILY = Decimal("2.00")  # four parts of 0.50: every sum is exact in cents


async def _user(state: AppState, tenant: Tenant) -> Scope:
    async with state.sessions() as session, session.begin():
        bind_tenant(session.sync_session, tenant.org.id)
        user = await directory.create_user(session, tenant.org, "capped@example.com", "Cap", None)
    return Scope(ScopeKind.USER, user.id)


async def _steady_usage(state: AppState, tenant: Tenant, scope: Scope, days: int = 45) -> None:
    """2.00 a day for ``days`` days up to NOW (noon of the 18th): 35.00 spent in the month."""
    amounts = {NOW.date() - timedelta(days=i): float(DAILY) for i in range(days + 1)}
    events = daily_events(tenant, amounts, NOW)
    user = scope.id if scope.kind is ScopeKind.USER else None
    await record(state, tenant, [e.__class__(**{**_fields(e), "user_id": user}) for e in events])


def _fields(event: object) -> dict[str, object]:
    return {name: getattr(event, name) for name in event.__dataclass_fields__}  # type: ignore[attr-defined]


async def _budget(
    state: AppState, tenant: Tenant, scope: Scope, limit: str, *, hard_cap: bool = True
) -> object:
    async with state.sessions() as session, session.begin():
        bind_tenant(session.sync_session, tenant.org.id)
        return await set_budget(
            session,
            tenant.org,
            BudgetSpec(scope, Period.MONTH, Decimal(limit), "USD", hard_cap=hard_cap),
            zone=UTC_ZONE,
        )


async def test_a_user_blocked_at_the_cap_is_projected_at_it(
    state: AppState, tenant: Tenant
) -> None:
    scope = await _user(state, tenant)
    await _steady_usage(state, tenant, scope)
    await _budget(state, tenant, scope, "35.00")  # all of it spent: further spend is refused
    projection = await run_forecast(state, tenant, scope)
    assert projection.spent == Decimal("35.00")
    assert projection.projected == Decimal("35.00")
    for interval in projection.intervals:
        assert interval.low == interval.high == Decimal("35.00")
    for day in projection.days:
        assert day.cumulative <= Decimal("35.00")
        assert all(i.high <= Decimal("35.00") for i in day.cumulative_intervals)
    assert projection.bounded_by_cap and projection.binding_cap is not None
    assert projection.binding_cap.remaining == Decimal(0)
    # Demand alone: 35.00 + the rest of today (1.00) + 13 days of 2.00 = 62.00.
    assert projection.uncapped_projected is not None
    assert abs(projection.uncapped_projected - Decimal("62.00")) < Decimal("2.00")
    assert projection.probability_capped == Decimal(1)
    assert "bounded by the hard cap" in projection.note
    assert not projection.exceeds_limit and projection.probability_over_limit == Decimal(1)
    await assert_no_drift(state, tenant.org.id)


async def test_a_cap_with_room_bounds_the_total_and_the_intervals(
    state: AppState, tenant: Tenant
) -> None:
    scope = await _user(state, tenant)
    await _steady_usage(state, tenant, scope)
    budget = await _budget(state, tenant, scope, "50.00")
    projection = await run_forecast(state, tenant, scope)
    assert projection.spent == Decimal("35.00")
    assert projection.projected == Decimal("50.00")  # demand (about 62) would pass it
    assert all(i.high <= Decimal("50.00") for i in projection.intervals)
    assert projection.binding_cap is not None
    assert projection.binding_cap.budget_id == budget.id  # type: ignore[attr-defined]
    assert projection.binding_cap.remaining == Decimal("15.00")
    # The day the cap is reached: 35 + 1 (rest of the 18th) + 2 a day -> the 25th.
    reached = next(d.date for d in projection.days if d.cumulative >= Decimal("50.00"))
    assert reached == MONTH_START.date() + timedelta(days=24)
    # The forecast alert shares the projection: a cap that binds its own budget alerts when
    # spend will likely be refused (the lower 80 % bound at the limit), never projecting more.
    async with state.sessions() as session:
        bind_tenant(session.sync_session, tenant.org.id)
        verdict = await forecasting.project(session, tenant.org, budget.id, NOW, UTC_ZONE)  # type: ignore[attr-defined]
    assert verdict is not None and verdict.over
    assert verdict.projection.projected == projection.projected
    assert verdict.projection.intervals == projection.intervals


async def test_a_wider_cap_binds_and_a_soft_budget_does_not(
    state: AppState, tenant: Tenant
) -> None:
    scope = await _user(state, tenant)
    await _steady_usage(state, tenant, scope)
    await _budget(state, tenant, scope, "40.00", hard_cap=False)  # a soft limit: no bound
    soft = await run_forecast(state, tenant, scope)
    assert not soft.bounded_by_cap and soft.caps == ()
    assert soft.projected > Decimal("55.00") and soft.exceeds_limit
    # The organisation's hard cap holds all of the user's usage: it binds the user too.
    organization = Scope(ScopeKind.ORGANIZATION, tenant.org.id)
    await _budget(state, tenant, organization, "45.00")
    capped = await run_forecast(state, tenant, scope)
    assert capped.bounded_by_cap and capped.projected == Decimal("45.00")
    assert capped.binding_cap is not None and capped.binding_cap.scope == organization
    assert all(i.high <= Decimal("45.00") for i in capped.intervals)
    # A cap that demand does not reach: demand bounds the projection.
    await _budget(state, tenant, organization, "500.00")
    free = await run_forecast(state, tenant, scope)
    assert not free.bounded_by_cap and len(free.caps) == 1
    assert free.projected == free.uncapped_projected
    assert free.probability_capped == Decimal(0)


async def test_the_forecast_exposes_its_trend(state: AppState, tenant: Tenant) -> None:
    observed, _ = trend_month(history_days=45, slope=0.8)
    await record(state, tenant, daily_events(tenant, observed, NOW))
    rising = await run_forecast(state, tenant)
    assert rising.trend is not None and rising.trend.direction is TrendDirection.RISING
    assert rising.trend.slope_per_day is not None
    assert Decimal("0.6") < rising.trend.slope_per_day < Decimal("1.0")  # true slope 0.8 x rhythm
    assert rising.trend.days == 45


async def test_caps_and_trend_through_the_api(state: AppState, tenant: Tenant) -> None:
    # Mid-month: at a month's last seconds nothing is left to project past the cap.
    dates.set_now(dates.month(0, 15, 12))
    today = dates.now().date()
    first: date = today.replace(day=1)
    amounts = {today - timedelta(days=i): 2.0 for i in range(1, 31)}
    events = daily_events(tenant, amounts, dates.now())
    await record(state, tenant, events)
    spent = sum((Decimal("2.00") for d in amounts if d >= first), Decimal(0))
    account = Scope(ScopeKind.ACCOUNT, tenant.account_id)
    await _budget(state, tenant, account, str(spent + Decimal("0.01")))
    query = FORECAST.replace(
        "excludedSpikeDays",
        "excludedSpikeDays boundedByCap uncappedProjectedTotal probabilityCapped "
        "cap { budgetId limit remaining scope { kind } period } caps { budgetId } "
        "trend { direction rising slopePerDay slopeInterval95 { low high } pValue "
        "daysConsidered weeksConsidered weekOverWeekChange }",
    )
    body = await tenant.gql(query, {"scope": {"kind": "ACCOUNT", "id": str(tenant.account_id)}})
    assert "errors" not in body, body
    f = body["data"]["forecast"]
    limit = spent + Decimal("0.01")
    assert Decimal(f["projectedTotal"]) <= limit
    assert Decimal(f["interval95"]["high"]) <= limit and Decimal(f["interval80"]["high"]) <= limit
    assert f["boundedByCap"] is True and f["cap"]["scope"]["kind"] == "ACCOUNT"
    assert Decimal(f["cap"]["remaining"]) == Decimal("0.01")
    assert Decimal(f["uncappedProjectedTotal"]) > limit
    assert f["trend"]["direction"] == "FLAT" and f["trend"]["rising"] is False
    assert f["trend"]["daysConsidered"] == 30 and Decimal(f["trend"]["weekOverWeekChange"]) == 0
