"""The anomaly bench at test size: the same harness as ``python -m bench.anomalies`` on fewer
series, fixed seeds, bounds asserted (the full run's figures are in bench/README.md)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import select

from bench.anomalies import MAX_FPR, render, run_bench, synthesize
from costgraph.app.demo import seed_demo
from costgraph.app.state import AppState
from costgraph.billing import ledger, pattern_analysis, patterns
from costgraph.billing.anomaly_detection import detect
from costgraph.billing.commands import UsageEvent
from costgraph.billing.directory import OrgContext
from costgraph.models import Account
from costgraph.models.scoping import bind_tenant
from tests import dates


async def record_for(
    state: AppState, org: OrgContext, account: uuid.UUID, at: datetime, cost: Decimal
) -> None:
    event = UsageEvent(
        idempotency_key=f"spike-{uuid.uuid4().hex}",
        account_id=account,
        occurred_at=at,
        provider="openai",
        model="gpt-4o",
        input_tokens=1000,
        output_tokens=100,
        provider_cost=cost,
        provider_currency="USD",
    )
    async with state.sessions() as session, session.begin():
        bind_tenant(session.sync_session, org.id)
        await ledger.record_usage_batch(session, org, [event], state.limits)


def test_false_positive_rate_and_recall_meet_their_bounds() -> None:
    report = run_bench(series=40, spiked=30, seed=20_261_204, sizes=(0.5, 1.0, 2.0))
    print(render(report))
    tally = report.tally
    assert tally.series == 40 and sum(tally.planted.values()) == 90
    assert tally.fpr <= MAX_FPR, report.as_dict()
    # Three false flags a quarter at most on demo-like usage (the old detector: hundreds).
    assert tally.demo_flags / tally.demo_series <= 3, report.as_dict()
    assert tally.recall(1.0) >= 0.75 and tally.recall(2.0) >= 0.85, report.as_dict()
    assert tally.recall(0.5) <= tally.recall(1.0) <= tally.recall(2.0)
    assert report.passed


def test_the_bench_is_deterministic() -> None:
    first = run_bench(series=4, spiked=3, seed=3, sizes=(1.0,)).as_dict()
    second = run_bench(series=4, spiked=3, seed=3, sizes=(1.0,)).as_dict()
    first.pop("seconds"), second.pop("seconds")
    assert first == second


def test_a_huge_spike_in_demo_like_usage_is_found_first() -> None:
    series = synthesize(np.random.default_rng(11), demo=True)
    values = series.values.copy()
    at = 24 * 40 + 3  # a night hour, mid-quarter
    values[at] += 5 * 24 * float(np.mean(series.values))
    found = detect(values, series.weekdays, series.hours)
    assert found is not None and found.weekly
    flagged = np.flatnonzero(found.spikes | found.drops)
    assert at in flagged and len(flagged) <= 4
    assert int(np.argmax(np.where(found.spikes, found.scores, -np.inf))) == at


async def test_the_demo_quarter_flags_few_hours_and_a_real_spike_first(state: AppState) -> None:
    now = dates.now()
    demo = await seed_demo(state.units, state.limits, now=now)
    org = demo.organization
    start, end = dates.day(-90), dates.day(0)

    async def scan() -> pattern_analysis.PatternsReport:
        async with state.sessions() as session:
            bind_tenant(session.sync_session, org.id)
            return await pattern_analysis.usage_patterns(
                session, org, None, start, end, ZoneInfo("UTC"), now=now
            )

    normal = await scan()
    assert normal.baseline is patterns.Baseline.HOUR_OF_WEEK
    assert normal.anomalies_flagged <= 3, [(a.start, a.spend, a.score) for a in normal.anomalies]
    # A real spike: a day's worth of spend in one quiet hour, two days ago.
    async with state.sessions() as session:
        bind_tenant(session.sync_session, org.id)
        account = (await session.scalars(select(Account).order_by(Account.name))).first()
    assert account is not None
    daily = normal.total_spend / 90
    at = dates.day(-2, 3)
    await record_for(state, org, account.id, at, round(daily * 2, 6))
    spiked = await scan()
    assert spiked.anomalies and spiked.anomalies[0].start == at
    assert spiked.anomalies[0].kind is patterns.AnomalyKind.SPIKE
    assert spiked.anomalies_flagged <= 4
