"""Forecasts and usage patterns over a real ledger, on synthetic usage whose answer is known."""

from __future__ import annotations

import calendar
import random
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from costgraph.app.state import AppState
from costgraph.billing import directory, forecast, fx, ledger, ledger_repository, pattern_analysis
from costgraph.billing.budgets import Basis, BudgetSpec, set_budget
from costgraph.billing.commands import UsageEvent
from costgraph.billing.entries import Entry
from costgraph.billing.forecast_models import Method
from costgraph.billing.periods import Period
from costgraph.billing.scopes import Scope, ScopeKind
from costgraph.kernel.clock import utcnow
from costgraph.models.ledger import EntryType
from costgraph.models.scoping import bind_tenant
from tests import dates
from tests.conftest import Tenant
from tests.test_ledger import RECORD_BATCH, usage

UTC_ZONE = ZoneInfo("UTC")
PARIS = ZoneInfo("Europe/Paris")
RHYTHM = (1.0, 1.1, 1.05, 1.0, 0.95, 0.4, 0.35)  # Monday .. Sunday


def _forecast_now() -> datetime:
    """Noon on the 18th of the latest 31-day month before the current one: the "now" the
    domain-level forecasts are computed at (passed in), so "March 1-17 observed, 14 days to
    go" holds at any date, with the history inside the late-arrival window."""
    back = -1
    while (dates.month(back + 1) - dates.month(back)).days != 31:
        back -= 1
    return dates.month(back, 18, 12)


NOW = _forecast_now()
#: The forecast month, ``[start, end)``, and its last day.
MONTH_START = NOW.replace(day=1, hour=0)
MONTH_END = MONTH_START + timedelta(days=31)
LAST_DAY = (MONTH_END - timedelta(days=1)).date()


def in_month(day: date) -> bool:
    return MONTH_START.date() <= day <= LAST_DAY


def day_of_month(day: int) -> date:
    return MONTH_START.date() + timedelta(days=day - 1)


SLICES = (3, 9, 15, 21)  # each day's spend comes in four equal parts at these UTC hours

FORECAST = """query($scope: BudgetScopeInput!, $basis: BudgetBasis) {
  forecast(scope: $scope, basis: $basis) {
    scope { kind id } basis currency period periodSource periodStart periodEnd timeZone
    budgetId limit asOf spent projectedTotal
    interval80 { level low high } interval95 { level low high }
    days { date observed spend cumulative
           spendInterval95 { low high } cumulativeInterval80 { low high } }
    limitCrossedOn limitReached probabilityOverLimit method note historyDays
    excludedSpikeDays clampedNegativeDays } }"""
PATTERNS = """query($range: DateRange!, $scope: BudgetScopeInput) {
  usagePatterns(range: $range, scope: $scope) {
    timeZone currency totalSpend totalRequests anomalyBaseline anomalyThreshold
    heatmap { dayOfWeek hour spend requests hours averageSpend }
    peakHours { hour share }
    anomalies { kind start hour spend expected score }
    featureAdoption { weekStart feature users newUsers requests }
    costPerRequest { model feature requests aiCostPerRequest relativeToCheapest }
    notes } }"""


def _event(tenant: Tenant, at: datetime, cost: Decimal, **extra: Any) -> UsageEvent:
    return UsageEvent(
        idempotency_key=f"fc-{uuid.uuid4().hex}",
        account_id=tenant.account_id,
        occurred_at=at,
        provider="openai",
        model=extra.pop("model", "gpt-4o-mini"),
        input_tokens=extra.pop("input_tokens", 1000),
        output_tokens=extra.pop("output_tokens", 200),
        provider_cost=cost,
        provider_currency="USD",
        **extra,
    )


async def record(state: AppState, tenant: Tenant, events: Sequence[UsageEvent]) -> None:
    """Bulk usage through the domain's own batch recording (caller-priced, postpaid)."""
    async with state.sessions() as session, session.begin():
        bind_tenant(session.sync_session, tenant.org.id)
        for i in range(0, len(events), 1_000):
            await ledger.record_usage_batch(
                session, tenant.org, events[i : i + 1_000], state.limits
            )


def daily_events(tenant: Tenant, amounts: dict[date, float], until: datetime) -> list[UsageEvent]:
    """Each day's amount in four equal parts over the day (only the parts before ``until``)."""
    events = []
    for day, amount in amounts.items():
        part = Decimal(repr(round(amount / len(SLICES), 6)))
        for hour in SLICES:
            at = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
            if at < until:
                events.append(_event(tenant, at, part))
    return events


def trend_month(
    *, history_days: int, start: float = 40.0, slope: float = 0.8, noise: float = 0.05
) -> tuple[dict[date, float], dict[date, float]]:
    """(observed, true mean) per day, from ``history_days`` before NOW to the month's end."""
    rng = random.Random(11)
    first = NOW.date() - timedelta(days=history_days)
    observed, means = {}, {}
    day, t = first, 0
    while day <= LAST_DAY:
        mean = (start + slope * t) * RHYTHM[day.weekday()]
        means[day] = mean
        observed[day] = max(0.0, mean * (1 + noise * rng.gauss(0, 1)))
        day, t = day + timedelta(days=1), t + 1
    return observed, means


async def run_forecast(
    state: AppState, tenant: Tenant, scope: Scope | None = None, now: datetime = NOW
) -> forecast.Projection:
    async with state.sessions() as session:
        bind_tenant(session.sync_session, tenant.org.id)
        return await forecast.forecast(
            session,
            tenant.org,
            scope or Scope(ScopeKind.ACCOUNT, tenant.account_id),
            now,
            UTC_ZONE,
        )


def month_total(values: dict[date, float]) -> float:
    return sum(v for d, v in values.items() if in_month(d))


# --- forecasts ---


async def test_a_linear_trend_lands_within_its_interval(state: AppState, tenant: Tenant) -> None:
    observed, means = trend_month(history_days=45)
    await record(state, tenant, daily_events(tenant, observed, NOW))
    projection = await run_forecast(state, tenant)

    assert projection.method is Method.WEEKDAY_TREND_REGRESSION
    assert projection.target.source is forecast.PeriodSource.CALENDAR_MONTH
    assert (projection.target.start, projection.target.end) == (MONTH_START, MONTH_END)
    assert projection.history_days == 45
    # Spent so far is exact: days 1-17 and today's two parts before noon.
    known = sum(
        Decimal(repr(round(v / 4, 6))) * (4 if d < NOW.date() else 2)
        for d, v in observed.items()
        if in_month(d) and d <= NOW.date()
    )
    assert projection.spent == known.quantize(Decimal("0.01"))
    truth = month_total(means)
    interval80, interval95 = projection.interval(80), projection.interval(95)
    assert interval80 is not None and interval95 is not None
    assert interval80.low <= Decimal(repr(truth)) <= interval80.high
    assert interval95.low <= Decimal(repr(month_total(observed))) <= interval95.high
    assert abs(float(projection.projected) - truth) / truth < 0.03
    # Ours beats the straight line, which misses the trend.
    elapsed = 17.5
    line = float(projection.spent) / elapsed * 31
    assert abs(float(projection.projected) - truth) < abs(line - truth) / 2
    # The daily path: every day of the month, observed before today, estimates after.
    assert [d.date.day for d in projection.days] == list(range(1, 32))
    assert all(d.observed for d in projection.days[:17])
    assert not any(d.observed for d in projection.days[17:])
    assert projection.days[-1].cumulative == projection.projected
    last = projection.days[-1].cumulative_intervals
    assert [(i.low, i.high) for i in last] == [(i.low, i.high) for i in projection.intervals]
    for day in projection.days[17:]:
        for bounds in day.cumulative_intervals:
            assert bounds.low >= projection.spent
    assert projection.limit_crossed_on is None and projection.probability_over_limit is None


async def test_a_budget_sets_the_period_and_the_crossing_day(
    state: AppState, tenant: Tenant
) -> None:
    observed, means = trend_month(history_days=30)
    await record(state, tenant, daily_events(tenant, observed, NOW))
    # The expected path crosses this limit on the 26th.
    limit = Decimal(
        repr(
            round(
                sum(m for d, m in means.items() if in_month(d) and d.day <= 25)
                + means[day_of_month(26)] / 2,
                2,
            )
        )
    )
    async with state.sessions() as session, session.begin():
        bind_tenant(session.sync_session, tenant.org.id)
        budget = await set_budget(
            session,
            tenant.org,
            BudgetSpec(
                Scope(ScopeKind.ACCOUNT, tenant.account_id),
                Period.MONTH,
                limit,
                "USD",
                hard_cap=False,
            ),
        )
    projection = await run_forecast(state, tenant)
    assert projection.target.source is forecast.PeriodSource.BUDGET
    assert projection.target.budget_id == budget.id and projection.target.limit == limit
    assert projection.target.basis is Basis.AI_COST
    crossed = projection.limit_crossed_on
    assert crossed is not None and day_of_month(24) <= crossed <= day_of_month(28)
    by_day = {d.date: d for d in projection.days}
    assert by_day[crossed].cumulative >= limit > by_day[crossed - timedelta(days=1)].cumulative
    assert not projection.limit_reached and projection.exceeds_limit
    assert projection.probability_over_limit is not None
    assert projection.probability_over_limit > Decimal("0.5")
    assert projection.likely_over_limit(Decimal("0.5"))
    # The alerting hook forecasts the same period from the budget itself.
    async with state.sessions() as session:
        bind_tenant(session.sync_session, tenant.org.id)
        hook = await forecast.projected_total(session, tenant.org, budget, NOW, UTC_ZONE)
    assert hook is not None
    assert (hook.projected, hook.intervals) == (projection.projected, projection.intervals)


async def test_short_history_falls_back_and_says_so(state: AppState, tenant: Tenant) -> None:
    observed, _ = trend_month(history_days=6, slope=0.0)
    await record(state, tenant, daily_events(tenant, observed, NOW))
    projection = await run_forecast(state, tenant)
    assert projection.method is Method.MEAN_DAILY_RATE
    assert projection.history_days == 6
    assert "only 6 complete day(s)" in projection.note
    interval95 = projection.interval(95)
    assert interval95 is not None
    assert interval95.low <= projection.projected <= interval95.high
    assert interval95.high - interval95.low > Decimal("0.2") * projection.projected


async def test_no_history_answers_clearly(state: AppState, tenant: Tenant) -> None:
    projection = await run_forecast(state, tenant)
    assert projection.method is Method.NO_HISTORY
    assert projection.spent == projection.projected == Decimal("0.00")
    assert projection.intervals == ()
    assert "no usage in the last 84 days" in projection.note
    assert len(projection.days) == 31 and all(d.spend == 0 for d in projection.days)
    # Through the API, for the organisation, on the real clock.
    body = await tenant.gql(FORECAST, {"scope": {"kind": "ORGANIZATION"}})
    assert "errors" not in body, body
    answer = body["data"]["forecast"]
    assert answer["method"] == "NO_HISTORY"
    assert answer["projectedTotal"] == answer["spent"] == "0.00"
    assert answer["interval80"] is None and answer["interval95"] is None
    assert answer["periodSource"] == "CALENDAR_MONTH" and answer["timeZone"] == "UTC"
    now = utcnow()  # the API's clock, a moment ago
    assert len(answer["days"]) == calendar.monthrange(now.year, now.month)[1]


async def test_negative_days_are_clamped_and_said(state: AppState, tenant: Tenant) -> None:
    observed, _ = trend_month(history_days=20, slope=0.0)
    await record(state, tenant, daily_events(tenant, observed, NOW))
    # A correction larger than a day's charges (as a reprice would write, pointing at an entry).
    day = MONTH_START + timedelta(days=9, hours=12)  # the 10th, noon
    async with state.sessions() as session, session.begin():
        bind_tenant(session.sync_session, tenant.org.id)
        target = (
            await ledger.record_usage_batch(
                session, tenant.org, [_event(tenant, day, Decimal("1.00"))], state.limits
            )
        )[0]
        key = f"fix-{uuid.uuid4().hex}"
        await ledger_repository.insert_entries(
            session,
            [
                Entry(
                    organization_id=tenant.org.id,
                    id=uuid.uuid4(),
                    type=EntryType.ADJUSTMENT,
                    account_id=tenant.account_id,
                    customer_id=tenant.customer_id,
                    occurred_at=day,
                    currency="USD",
                    amount=Decimal("-500"),
                    ai_cost=Decimal("-500"),
                    related_entry_id=target.id,
                    idempotency_key=key,
                    request_hash=key.encode(),
                )
            ],
        )
    projection = await run_forecast(state, tenant)
    assert projection.clamped_days == 1
    assert "counted as zero" in projection.note
    assert {d.date: d.spend for d in projection.days}[day_of_month(10)] == Decimal("0.00")
    assert projection.spent > 0


async def test_forecast_through_the_api(state: AppState, tenant: Tenant) -> None:
    today = dates.now().date()
    amounts = {today - timedelta(days=i): 20.0 + (i % 7) for i in range(1, 22)}
    events = [
        usage(
            tenant,
            providerCost=f"{amount / 2:.6f}",
            occurredAt=f"{day.isoformat()}T{hour:02d}:00:00Z",
        )
        for day, amount in amounts.items()
        for hour in (6, 18)
    ]
    body = await tenant.gql(RECORD_BATCH, {"input": events})
    assert body["data"]["recordUsageBatch"]["__typename"] == "UsageBatchRecorded", body
    answer = await tenant.gql(
        FORECAST, {"scope": {"kind": "ACCOUNT", "id": str(tenant.account_id)}}
    )
    assert "errors" not in answer, answer
    f = answer["data"]["forecast"]
    assert f["method"] == "WEEKDAY_TREND_REGRESSION" and f["historyDays"] == 21
    assert f["scope"] == {"kind": "ACCOUNT", "id": str(tenant.account_id)}
    assert f["currency"] == "USD" and f["basis"] == "AI_COST" and f["limit"] is None
    low95, low80 = Decimal(f["interval95"]["low"]), Decimal(f["interval80"]["low"])
    high80, high95 = Decimal(f["interval80"]["high"]), Decimal(f["interval95"]["high"])
    projected, spent = Decimal(f["projectedTotal"]), Decimal(f["spent"])
    assert spent <= low95 <= low80 <= projected <= high80 <= high95
    assert f["projectedTotal"].count(".") == 1 and len(f["projectedTotal"].split(".")[1]) == 2
    past = [d for d in f["days"] if d["observed"]]
    assert len(past) == today.day - 1
    assert all(d["spendInterval95"] is None for d in past)
    assert all(d["cumulativeInterval80"] for d in f["days"] if not d["observed"])
    # A member reads only their own usage: the forecast is not theirs to read.
    member = tenant.token_for(roles=["member"])
    denied = await tenant.gql(FORECAST, {"scope": {"kind": "ORGANIZATION"}}, token=member)
    assert denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_another_tenants_scope_is_not_found(tenant: Tenant, other_tenant: Tenant) -> None:
    theirs = {"kind": "ACCOUNT", "id": str(other_tenant.account_id)}
    nowhere = {"kind": "ACCOUNT", "id": str(uuid.uuid4())}
    window = {"start": dates.rfc(dates.day(-10)), "end": dates.rfc(dates.day(-3))}
    for query, extra in ((FORECAST, {}), (PATTERNS, {"range": window})):
        answers = []
        for scope in (theirs, nowhere):
            body = await tenant.gql(query, {"scope": scope, **extra})
            error = body["errors"][0]
            assert error["extensions"]["code"] == "NOT_FOUND", body
            answers.append(error["message"].replace(scope["id"], "<id>"))
        assert answers[0] == answers[1]


async def test_a_scope_across_currencies_is_converted_at_dated_rates(
    state: AppState, tenant: Tenant
) -> None:
    async with state.sessions() as session, session.begin():
        bind_tenant(session.sync_session, tenant.org.id)
        euro = await directory.create_account(
            session, tenant.org, tenant.customer_id, "Shilling", True, "KES"
        )
    days = {NOW.date() - timedelta(days=i): 10.0 for i in range(1, 21)}
    events = daily_events(tenant, days, NOW)
    events += [
        replace(
            e,
            idempotency_key=f"eur-{uuid.uuid4().hex}",
            account_id=euro.id,
            provider_currency="KES",
        )
        for e in daily_events(tenant, days, NOW)
    ]
    await record(state, tenant, events)
    organization = Scope(ScopeKind.ORGANIZATION, tenant.org.id)
    # No KES->USD rate: KES usage is left out and named — never a silent 1.0, never a
    # failure of the whole forecast.
    without = await run_forecast(state, tenant, organization)
    assert [str(pair) for pair in without.missing] == ["KES->USD"]
    assert without.spent == Decimal("170.00")  # the USD usage alone
    assert "KES left out" in without.note
    async with state.sessions() as session, session.begin():
        await fx.set_exchange_rate(
            session, tenant.org.id, "KES", "USD", Decimal("1.1"), MONTH_START - timedelta(days=90)
        )
    projection = await run_forecast(state, tenant, organization)
    assert projection.target.currency == "USD"
    assert projection.spent == Decimal("357.00")  # (10 USD + 10 KES x 1.1) x 17 days
    assert "KES converted to USD" in projection.note
    in_shillings = await run_forecast(state, tenant, Scope(ScopeKind.ACCOUNT, euro.id))
    assert in_shillings.target.currency == "KES" and in_shillings.spent == Decimal("170.00")
    assert "converted" not in in_shillings.note


# --- usage patterns ---


def quiet_monday() -> datetime:
    """Midnight in Paris of a Monday three or more weeks back whose next fifteen days cross
    no daylight-saving change (so every local hour exists once)."""
    day = dates.day(-21).date()
    day -= timedelta(days=day.weekday())
    while True:
        start = datetime(day.year, day.month, day.day, tzinfo=PARIS)
        if start.utcoffset() == (start + timedelta(days=15)).utcoffset():
            return start
        day -= timedelta(days=7)


async def test_planted_peak_hour_spike_adoption_and_cost_per_request(
    state: AppState, tenant: Tenant
) -> None:
    users = []
    async with state.sessions() as session, session.begin():
        bind_tenant(session.sync_session, tenant.org.id)
        for name in ("a", "b", "c"):
            user = await directory.create_user(session, tenant.org, f"{name}@x.io", None, None)
            users.append(user.id)
    start = quiet_monday()  # a Monday, local midnight
    monday = start.date()
    spike = start + timedelta(days=3, hours=3)  # Thursday 03:00 in Paris
    # Week two, Monday: search at 11:00 and the costly call at 12:00, local time.
    search_at = (start + timedelta(days=7, hours=11)).astimezone(UTC)
    costly_at = (start + timedelta(days=7, hours=12)).astimezone(UTC)
    events: list[UsageEvent] = []
    for d in range(7):
        for hour in range(24):
            local = start + timedelta(days=d, hours=hour)
            if local == spike:
                cost = Decimal("12")
            elif d < 5 and hour == 14:
                cost = Decimal("3")
            elif d < 5 and 9 <= hour < 18:
                cost = Decimal("1")
            else:
                cost = Decimal("0.05")
            events.append(
                _event(tenant, local.astimezone(UTC), cost, feature="chat", user_id=users[d % 2])
            )
    # Search: one user, week two; expensive model on chat alongside the cheap one.
    events.append(
        _event(
            tenant,
            search_at,
            Decimal("0.2"),
            feature="search",
            user_id=users[2],
        )
    )
    events.append(
        _event(
            tenant,
            costly_at,
            Decimal("4"),
            feature="chat",
            user_id=users[2],
            model="gpt-4o",
        )
    )
    await record(state, tenant, events)
    end = start + timedelta(days=8)
    async with state.sessions() as session:
        bind_tenant(session.sync_session, tenant.org.id)
        report = await pattern_analysis.usage_patterns(
            session, tenant.org, None, start.astimezone(UTC), end.astimezone(UTC), PARIS
        )
    assert report.zone == "Europe/Paris" and report.currency == "USD"
    assert report.total_requests == 7 * 24 + 2
    assert report.peak_hours[0].hour == 14
    # The planted spike first; the one costly gpt-4o call on the quiet Monday noon too.
    assert [(a.kind.value, a.start, a.hour) for a in report.anomalies] == [
        ("SPIKE", spike.astimezone(UTC), 3),
        ("SPIKE", costly_at, 12),
    ]
    cells = {(c.weekday, c.hour): c for c in report.heatmap}
    assert cells[(4, 3)].spend == Decimal("12") and cells[(1, 14)].spend == Decimal("3")
    adoption = {(w.week, w.feature): w for w in report.adoption}
    next_monday = monday + timedelta(days=7)
    assert adoption[(monday, "chat")].users == 2
    assert adoption[(monday, "chat")].new_users == 2
    assert adoption[(next_monday, "chat")].users == 1  # user c, new that week
    assert adoption[(next_monday, "chat")].new_users == 1
    assert adoption[(next_monday, "search")].users == 1
    costs = {(c.usage.model, c.usage.feature): c for c in report.cost_per_request}
    assert costs[("gpt-4o", "chat")].ai_cost_per_request == Decimal("4")
    mini = costs[("gpt-4o-mini", "chat")]
    assert mini.usage.requests == 7 * 24
    assert mini.ai_cost_per_request == (mini.usage.ai_cost / mini.usage.requests).quantize(
        Decimal("1E-12")
    )
    assert costs[("gpt-4o", "chat")].relative_to_cheapest == round(
        float(Decimal(4) / mini.ai_cost_per_request), 2
    )
    assert costs[("gpt-4o-mini", "chat")].relative_to_cheapest == 1.0


async def test_patterns_through_the_api_and_range_limit(state: AppState, tenant: Tenant) -> None:
    day = dates.day(-30)
    await record(
        state,
        tenant,
        [
            _event(tenant, day + timedelta(hours=h), Decimal("2" if h == 15 else "1"))
            for h in range(8, 20)
        ],
    )
    window = {"start": dates.rfc(day), "end": dates.rfc(day + timedelta(days=1))}
    body = await tenant.gql(PATTERNS, {"range": window})
    assert "errors" not in body, body
    p = body["data"]["usagePatterns"]
    assert p["timeZone"] == "UTC" and p["totalRequests"] == 12
    assert Decimal(p["totalSpend"]) == Decimal("13")
    assert len(p["heatmap"]) == 168 and p["peakHours"][0]["hour"] == 15
    assert p["anomalyBaseline"] == "NONE" and p["anomalies"] == []
    assert p["anomalyThreshold"] is None
    start = dates.day(-400)  # a year at most (bounded by the P&L's 400 days too)
    too_long = {"start": dates.rfc(start), "end": dates.rfc(start + timedelta(days=366))}
    assert "errors" not in await tenant.gql(PATTERNS, {"range": too_long})
    too_long["end"] = dates.rfc(start + timedelta(days=366, seconds=1))
    refused = await tenant.gql(PATTERNS, {"range": too_long})
    error = refused["errors"][0]
    assert error["extensions"]["code"] == "VALIDATION_FAILED"
    assert "366 days" in error["message"]
    backwards = {"start": dates.rfc(start + timedelta(days=1)), "end": dates.rfc(start)}
    refused = await tenant.gql(PATTERNS, {"range": backwards})
    assert refused["errors"][0]["extensions"]["code"] == "VALIDATION_FAILED"
