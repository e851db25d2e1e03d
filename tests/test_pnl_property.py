"""Property: every P&L figure equals a plain SUM over the ledger, for random data and random
ranges (cutting through hours), with the rollups caught up part of the way, in the entries'
currency and converted through rates that change mid-hour. And the rollup tables, once
caught up, hold exactly the ledger's sums.

Mixed currencies: USD, EUR (rates changing mid-hour) and GBP, which has no rate at all. The
converted figures are the plain sums of the currencies with a rate, GBP is named as the
missing pair exactly when it has entries in the range, and every entry currency's panel is
its plain sum in its own money.

The entries are written straight into the ledger (the write path has tests of its own); the
reference below reads them back with one plain SELECT and applies docs/architecture.md's definitions
entry by entry, converting each at the rate in force at its own time.

Usage is partly covered by a plan's allowance at random (none, half, all of it): the part
charged is ``-balance_delta``, as the write path stores it. Revenue counts the charged part
of postpaid usage only (the allowance is paid by the fee, prepaid usage by its top-up); a
slice of usage (an agent, a model) is credited with all its charged usage.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costgraph.app.state import AppState
from costgraph.billing import fx_repository, pnl, rollups, usage_analytics
from costgraph.billing.directory import OrgContext
from costgraph.billing.fx import CurrencyPair, RateBook
from costgraph.billing.pnl_ranges import ReportLimits, TimeBucket
from costgraph.models.scoping import bind_tenant
from tests.conftest import raw_connection
from tests.pnl_support import catch_up
from tests.seeded import balances_as_written

#: February 2004: no other test writes there.
BASE = datetime(2004, 2, 2, tzinfo=UTC)
WINDOW_MINUTES = 3 * 24 * 60
Q = Decimal("0.000000000001")
TYPES = [
    "USAGE_CHARGE",
    "USAGE_CHARGE",
    "USAGE_CHARGE",
    "DEPOSIT",
    "SUBSCRIPTION_PAYMENT",
    "REFUND",
    "WITHDRAWAL",
    "PLATFORM_FEE",
    "ADJUSTMENT",
    "REPRICE",
]
LIMITS = ReportLimits(max_range_days=400, max_points=10_000, max_usage_rows=100_000)

amounts = st.decimals(min_value=0, max_value=500, places=12)
entry = st.fixed_dictionaries(
    {
        "type": st.sampled_from(TYPES),
        "account": st.integers(0, 3),  # USD postpaid, USD prepaid, EUR postpaid, GBP postpaid
        "minute": st.integers(0, WINDOW_MINUTES),
        "second": st.integers(0, 59),
        "amount": amounts,
        "cost": amounts,
        "tokens": st.integers(0, 10_000),
        "model": st.sampled_from(["m1", "m2", None]),
        "agent": st.sampled_from(["a1", "a2", None]),
        "user": st.sampled_from([0, 1, None]),
        "feature": st.sampled_from(["f1", None]),
        "sign": st.booleans(),
        # Halves of the usage the plan's allowance covered: 0 none, 1 half, 2 all of it.
        "covered": st.integers(0, 2),
    }
)
ACCOUNT_CURRENCIES = ("USD", "USD", "EUR", "GBP")
window = st.tuples(st.integers(-90, WINDOW_MINUTES + 90), st.integers(1, WINDOW_MINUTES + 200))


@dataclass
class Org:
    ctx: OrgContext
    customers: list[uuid.UUID]
    accounts: list[uuid.UUID]
    users: list[uuid.UUID]


async def make_org(connection: asyncpg.Connection, rate_changes: list[int]) -> Org:
    org_id, slug = uuid.uuid4(), f"p-{uuid.uuid4().hex[:16]}"
    await connection.execute(
        "INSERT INTO organizations (id, name, slug, reporting_currency) VALUES ($1,$2,$2,'USD')",
        org_id,
        slug,
    )
    customers = [uuid.uuid4(), uuid.uuid4()]
    for customer in customers:
        await connection.execute(
            "INSERT INTO customers (organization_id, id, name) VALUES ($1, $2, 'c')",
            org_id,
            customer,
        )
    accounts = []
    for customer, currency, postpaid in (
        (customers[0], "USD", True),
        (customers[0], "USD", False),
        (customers[1], "EUR", True),
        (customers[1], "GBP", True),  # no GBP rate of any kind
    ):
        account = uuid.uuid4()
        await connection.execute(
            "INSERT INTO accounts (organization_id, id, customer_id, name, currency, postpaid) "
            "VALUES ($1, $2, $3, 'a', $4, $5)",
            org_id,
            account,
            customer,
            currency,
            postpaid,
        )
        accounts.append(account)
    users = []
    for index in range(2):
        user = uuid.uuid4()
        await connection.execute(
            "INSERT INTO users (organization_id, id, email) VALUES ($1, $2, $3)",
            org_id,
            user,
            f"u{index}@{slug}.example",
        )
        users.append(user)
    # EUR->USD from before the window, changing at random minutes (mostly mid-hour).
    for index, minute in enumerate([-10_000, *sorted(set(rate_changes))]):
        await connection.execute(
            "INSERT INTO exchange_rates (organization_id, base, quote, rate, effective_from) "
            "VALUES ($1, 'EUR', 'USD', $2, $3)",
            org_id,
            Decimal("1.07") + Decimal(index) / 7,
            BASE + timedelta(minutes=minute, seconds=17),
        )
    return Org(OrgContext(org_id, slug, slug, "USD"), customers, accounts, users)


async def insert(connection: asyncpg.Connection, org: Org, rows: list[dict[str, Any]]) -> None:
    usage_ids: list[tuple[uuid.UUID, datetime]] = []
    for row in rows:
        kind = row["type"]
        account = None if kind == "PLATFORM_FEE" and row["sign"] else org.accounts[row["account"]]
        currency = "USD" if account is None else ACCOUNT_CURRENCIES[row["account"]]
        customer = None if account is None else org.customers[1 if row["account"] >= 2 else 0]
        related = None
        at = BASE + timedelta(minutes=row["minute"], seconds=row["second"])
        amount, cost = row["amount"], Decimal(0)
        if kind == "USAGE_CHARGE":
            cost = row["cost"]
        elif kind == "REPRICE":  # a reprice correction: signed, carries AI cost
            if not usage_ids:
                continue
            kind, related = "ADJUSTMENT", usage_ids[-1][0]
            cost = row["cost"] if row["sign"] else -row["cost"]
            amount = -amount if row["sign"] else amount
        elif kind == "ADJUSTMENT":
            amount = -amount if row["sign"] else amount
        ident = uuid.uuid4()
        usage = kind == "USAGE_CHARGE" or related is not None
        charged = Decimal(0)
        if kind == "USAGE_CHARGE":  # the allowance covered row["covered"] halves of it
            charged = (amount * (2 - row.get("covered", 0)) / 2).quantize(Q, ROUND_HALF_EVEN)
        elif related is not None:  # a reprice charges its whole delta
            charged = amount
        await connection.execute(
            """INSERT INTO ledger_entries (organization_id, id, type, account_id, customer_id,
                   occurred_at, currency, amount, ai_cost, provider, model, input_tokens,
                   output_tokens, user_id, agent, feature, related_entry_id, idempotency_key,
                   request_hash, balance_delta)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                   $17, $18, 'x', $19)""",
            org.ctx.id,
            ident,
            kind,
            account,
            customer,
            at,
            currency,
            amount,
            cost,
            "p" if usage and row["model"] else None,
            row["model"] if usage else None,
            row["tokens"] if kind == "USAGE_CHARGE" else 0,
            row["tokens"] // 3 if kind == "USAGE_CHARGE" else 0,
            None if row["user"] is None or not usage else org.users[row["user"]],
            row["agent"],
            row["feature"],
            related,
            uuid.uuid4().hex,
            -charged,
        )
        if kind == "USAGE_CHARGE":
            usage_ids.append((ident, at))
    await balances_as_written(connection, org.ctx.id)


async def reference(
    connection: asyncpg.Connection,
    org: Org,
    book: RateBook,
    start: datetime,
    end: datetime,
    currency: str,
    where: str = "true",
    args: tuple[Any, ...] = (),
    *,
    attributed: bool = False,
    only: str | None = None,
) -> dict[str, Any]:
    """The definitions applied entry by entry to a plain SELECT; ``attributed``: a slice of
    usage, whose revenue is its charged usage. Entries in a currency without a rate into
    ``currency`` are left out; ``only``: the entries in that currency alone."""
    rows = await connection.fetch(
        f"""SELECT e.*, a.postpaid FROM ledger_entries e
            LEFT JOIN accounts a ON a.organization_id = e.organization_id AND a.id = e.account_id
            WHERE e.organization_id = $1 AND e.occurred_at >= $2 AND e.occurred_at < $3
              AND {where}""",
        org.ctx.id,
        start,
        end,
        *args,
    )
    if only is not None:
        rows = [row for row in rows if row["currency"].strip() == only]
    rates = [book.find(row["currency"].strip(), currency, row["occurred_at"]) for row in rows]
    rows = [row for row, rate in zip(rows, rates, strict=True) if rate is not None]
    sums: dict[str, Any] = defaultdict(Decimal)
    sums["events"] = 0
    for row in rows:
        rate = book.rate_at(row["currency"].strip(), currency, row["occurred_at"])
        value = row["amount"] * rate
        kind = row["type"]
        if kind == "USAGE_CHARGE" or (kind == "ADJUSTMENT" and row["related_entry_id"]):
            sums["ai_cost"] += row["ai_cost"] * rate
            sums["billed"] += value
            charged = -row["balance_delta"] * rate
            sums["charged"] += charged
            if row["postpaid"]:
                sums["postpaid"] += charged
            sums["events"] += kind == "USAGE_CHARGE"
        elif kind == "SUBSCRIPTION_PAYMENT":
            sums["subscriptions"] += value
        elif kind == "DEPOSIT":
            sums["top_ups"] += value
        elif kind == "REFUND":
            sums["refunds"] += value
        elif kind == "WITHDRAWAL":
            sums["withdrawals"] += value
        elif kind == "PLATFORM_FEE":
            sums["fees"] += value
        else:
            sums["adjustments"] += value
    revenue = (
        sums["subscriptions"]
        + sums["top_ups"]
        + sums["postpaid"]
        - sums["refunds"]
        - sums["withdrawals"]
    )
    if attributed:
        revenue = sums["charged"]
    margin = revenue - sums["ai_cost"] - sums["fees"]
    return {
        "revenue": revenue.quantize(Q, ROUND_HALF_EVEN),
        "usage_revenue": (sums["charged"] if attributed else sums["postpaid"]).quantize(
            Q, ROUND_HALF_EVEN
        ),
        "charged_usage": sums["charged"].quantize(Q, ROUND_HALF_EVEN),
        "covered_usage": (sums["billed"] - sums["charged"]).quantize(Q, ROUND_HALF_EVEN),
        "net_impact": margin.quantize(Q, ROUND_HALF_EVEN),
        "ai_cost": sums["ai_cost"].quantize(Q, ROUND_HALF_EVEN),
        "billed_usage": sums["billed"].quantize(Q, ROUND_HALF_EVEN),
        "postpaid_usage": sums["postpaid"].quantize(Q, ROUND_HALF_EVEN),
        "top_ups": sums["top_ups"].quantize(Q, ROUND_HALF_EVEN),
        "refunds": sums["refunds"].quantize(Q, ROUND_HALF_EVEN),
        "platform_fees": sums["fees"].quantize(Q, ROUND_HALF_EVEN),
        "balance_adjustments": sums["adjustments"].quantize(Q, ROUND_HALF_EVEN),
        "margin": margin.quantize(Q, ROUND_HALF_EVEN),
        "events": sums["events"],
        "entries": len(rows),
    }


def observed(figures: Any) -> dict[str, Any]:
    return {name: getattr(figures, name) for name in REFERENCE_FIELDS}


REFERENCE_FIELDS = (
    "revenue",
    "usage_revenue",
    "charged_usage",
    "covered_usage",
    "net_impact",
    "ai_cost",
    "billed_usage",
    "postpaid_usage",
    "top_ups",
    "refunds",
    "platform_fees",
    "balance_adjustments",
    "margin",
    "events",
    "entries",
)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=st.lists(entry, max_size=40),
    rolled=st.integers(0, 40),
    windows=st.lists(window, min_size=1, max_size=3),
    rate_changes=st.lists(st.integers(0, WINDOW_MINUTES), max_size=3),
)
async def test_every_figure_is_a_plain_sum(
    state: AppState,
    database_url: str,
    rows: list[dict[str, Any]],
    rolled: int,
    windows: list[tuple[int, int]],
    rate_changes: list[int],
) -> None:
    async with raw_connection(database_url) as connection:
        org = await make_org(connection, rate_changes)
        await insert(connection, org, rows[:rolled])
        await catch_up(connection)  # part of the data rolled up, the rest in the tail
        await insert(connection, org, rows[rolled:])
        book = RateBook.of(
            await _rates(state, org, BASE - timedelta(days=30), BASE + timedelta(days=30))
        )
        for offset, length in windows:
            start = BASE + timedelta(minutes=offset, seconds=31)
            end = start + timedelta(minutes=length)
            for currency in ("USD", "EUR"):
                async with state.sessions() as session:
                    bind_tenant(session.sync_session, org.ctx.id)
                    for scope, where, args in (
                        (pnl.Scope(pnl.ScopeKind.ORGANIZATION), "true", ()),
                        (
                            pnl.Scope(pnl.ScopeKind.ACCOUNT, org.accounts[1]),  # prepaid
                            "e.account_id = $4",
                            (org.accounts[1],),
                        ),
                        (
                            pnl.Scope(pnl.ScopeKind.ACCOUNT, org.accounts[2]),
                            "e.account_id = $4",
                            (org.accounts[2],),
                        ),
                        (
                            pnl.Scope(pnl.ScopeKind.CUSTOMER, org.customers[0]),
                            "e.customer_id = $4",
                            (org.customers[0],),
                        ),
                        (
                            pnl.Scope(pnl.ScopeKind.ORGANIZATION, agent="a1"),
                            "e.agent = $4",
                            ("a1",),
                        ),
                    ):
                        report = await pnl.open_report(
                            session, org.ctx, scope, start, end, currency, LIMITS
                        )
                        totaled = await pnl.summarize(session, report)
                        got = observed(totaled.figures)
                        want = await reference(
                            connection,
                            org,
                            book,
                            start,
                            end,
                            currency,
                            where,
                            args,
                            attributed=scope.agent is not None,
                        )
                        assert got == want, (scope, start, end, currency)
                        panels = {f.currency: f for f in totaled.by_currency}
                        for own in ("USD", "EUR", "GBP"):
                            alone = await reference(
                                connection,
                                org,
                                book,
                                start,
                                end,
                                own,
                                where,
                                args,
                                attributed=scope.agent is not None,
                                only=own,
                            )
                            assert (own in panels) == (alone["entries"] > 0), (own, panels)
                            if own in panels:
                                assert observed(panels[own]) == alone, (scope, own)
                            if own == "GBP":
                                gap = CurrencyPair("GBP", currency)
                                assert (gap in totaled.missing) == (alone["entries"] > 0)
                    # A breakdown by model adds up to the same plain sums per model.
                    report = await pnl.open_report(
                        session,
                        org.ctx,
                        pnl.Scope(pnl.ScopeKind.ORGANIZATION),
                        start,
                        end,
                        currency,
                        LIMITS,
                    )
                    for row in await pnl.breakdown(session, report, ("model",), pnl.Order.COST):
                        want = await reference(
                            connection,
                            org,
                            book,
                            start,
                            end,
                            currency,
                            "e.model = $4",
                            (row.key["model"],),
                            attributed=True,
                        )
                        assert observed(row.figures) == want
                    # The GBP panel is a report of its own (rollups read by currency too).
                    panel = report.panel_of("GBP")
                    for row in await pnl.breakdown(session, panel, ("model",), pnl.Order.COST):
                        want = await reference(
                            connection,
                            org,
                            book,
                            start,
                            end,
                            "GBP",
                            "e.model = $4",
                            (row.key["model"],),
                            attributed=True,
                            only="GBP",
                        )
                        assert observed(row.figures) == want
                    # Usage by user and hour: each group equals its plain sum.
                    usage = await usage_analytics.usage(
                        session,
                        org.ctx,
                        start,
                        end,
                        [usage_analytics.UsageDimension.USER],
                        TimeBucket.HOUR,
                        None,
                        currency,
                        LIMITS,
                    )
                    for item in usage:
                        assert item.bucket is not None
                        lower = max(item.bucket, start)
                        upper = min(item.bucket + timedelta(hours=1), end)
                        user = item.key["user"]
                        where = "e.user_id IS NULL" if user is None else "e.user_id = $4"
                        # A GBP group stays in GBP, naming the pair; the rest is converted.
                        assert [str(p) for p in item.missing] == (
                            [f"GBP->{currency}"] if item.figures.currency == "GBP" else []
                        )
                        want = await reference(
                            connection,
                            org,
                            book,
                            lower,
                            upper,
                            item.figures.currency,
                            where,
                            () if user is None else (user,),
                            only="GBP" if item.missing else None,
                        )
                        assert item.figures.ai_cost == want["ai_cost"]
                        assert item.figures.billed_usage == want["billed_usage"]
                        assert item.figures.events == want["events"]


async def _rates(state: AppState, org: Org, start: datetime, end: datetime) -> list[Any]:
    async with state.sessions() as session:
        pairs = {("EUR", "USD"), ("USD", "EUR")}
        return await fx_repository.rates_between(session, org.ctx.id, pairs, start, end)


async def test_rollup_tables_hold_the_ledgers_sums(database_url: str) -> None:
    """After a catch-up, every rollup table sums to the ledger, per organisation."""
    async with raw_connection(database_url) as connection:
        org = await make_org(connection, [60])
        rows = [
            {
                "type": kind,
                "account": index % 3,
                "minute": index * 37,
                "second": index,
                "amount": Decimal(index) / 3,
                "cost": Decimal(index) / 7,
                "tokens": index * 11,
                "model": ["m1", "m2", None][index % 3],
                "agent": ["a1", None][index % 2],
                "user": [0, 1, None][index % 3],
                "feature": ["f1", None][index % 2],
                "sign": index % 2 == 0,
            }
            for index, kind in enumerate(TYPES * 4)
        ]
        await insert(connection, org, rows)
        await catch_up(connection)
        ledger = await connection.fetchrow(
            """SELECT count(*) AS n, sum(amount) AS amount, sum(input_tokens) AS tokens,
                      sum(CASE WHEN type = 'USAGE_CHARGE'
                                 OR (type = 'ADJUSTMENT' AND related_entry_id IS NOT NULL)
                               THEN -balance_delta ELSE 0 END) AS charged
               FROM ledger_entries WHERE organization_id = $1""",
            org.ctx.id,
        )
        for table in rollups.TABLE_KEYS:
            sums = await connection.fetchrow(
                f"""SELECT sum(entries) AS n,
                       sum(billed_usage + subscriptions + top_ups + refunds + withdrawals
                           + platform_fees + balance_adjustments) AS amount,
                       sum(input_tokens) AS tokens, sum(charged_usage) AS charged
                    FROM {table} WHERE organization_id = $1""",
                org.ctx.id,
            )
            assert (sums["n"], sums["amount"], sums["tokens"], sums["charged"]) == (
                ledger["n"],
                ledger["amount"],
                ledger["tokens"],
                ledger["charged"],
            ), table
