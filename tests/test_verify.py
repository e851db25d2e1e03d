"""``costgraph verify``: no drift after ordinary activity, and the exact drift when a stored
number is tampered with in SQL — for every kind of number derived from the ledger — through
the domain checker, the command line (exit codes) and the operators' ``ledgerDrift`` query.

Every test works in an organisation of its own and puts back what it tampered with, so the
suite leaves no drift behind (CI runs ``costgraph verify`` over the whole test database after
the suite)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from costgraph.app.state import AppState
from costgraph.billing import month_close, rollups, verify
from costgraph.billing.verify import Drift
from costgraph.kernel.clock import format_rfc3339
from costgraph.subscriptions.totals_check import LEDGER_CHECKS
from tests.conftest import Tenant, raw_connection
from tests.dates import clock_environment, month, now, rfc, set_now
from tests.test_allowances import prepaid_account
from tests.test_budgets import AUTHORIZE, RELEASE, SET_BUDGET, SETTLE
from tests.test_ledger import DEPOSIT, RECORD_USAGE, REFUND, usage
from tests.test_top_ups_withdrawals import SET_AUTO

VERIFY_QUERY = """query($org: ID) { ledgerDrift(organizationId: $org) {
  asOf clean unlisted checked { check compared }
  drift { what organizationId scope stored recomputed difference } } }"""


@dataclass
class Busy:
    """An organisation after a little of everything (see :func:`busy`)."""

    tenant: Tenant
    prepaid: uuid.UUID
    account_budget: uuid.UUID
    held: uuid.UUID
    settled: uuid.UUID


def ok(body: dict[str, Any], field: str, typename: str | None = None) -> dict[str, Any]:
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"][field]
    if typename is not None:
        assert result["__typename"] == typename, result
    return result


async def pooled_usage(tenant: Tenant, at: str) -> None:
    """A team's account on a pooled plan (issue 18) drawing on its pool."""
    ok(
        await tenant.gql(
            "mutation($i: PlanInput!) { setPlan(input: $i) { code } }",
            {
                "i": {
                    "code": "team",
                    "name": "Team",
                    "monthlyFee": "99.00",
                    "currency": "USD",
                    "includedTokens": 1000,
                    "pooled": True,
                }
            },
        ),
        "setPlan",
    )
    account = ok(
        await tenant.gql(
            'mutation($c: ID!) { createAccount(input: {customerId: $c, name: "Team", '
            "postpaid: true}) { id } }",
            {"c": str(tenant.customer_id)},
        ),
        "createAccount",
    )["id"]
    subscription = {"accountId": account, "planCode": "team", "billing": "MONTHLY"}
    ok(
        await tenant.gql(
            "mutation($i: AccountSubscriptionInput!) { subscribeAccount(input: $i) { id } }",
            {"i": {**subscription, "startsAt": rfc(month(-1))}},
        ),
        "subscribeAccount",
    )
    event = usage(tenant, accountId=account, inputTokens=200, outputTokens=0, occurredAt=at)
    ok(await tenant.gql(RECORD_USAGE, {"input": event}), "recordUsage", "UsageRecorded")


async def busy(tenant: Tenant, state: AppState, database_url: str) -> Busy:
    """Deposits, usage (covered by an allowance, partly, and charged), a refund, budgets,
    reservations (settled, held, released), a user, an auto-top-up, the rollup job run, the
    month closed."""
    set_now(month(0, day=14, hour=12))  # mid-month: every event of the test in one month
    prepaid = uuid.UUID(await prepaid_account(tenant, tokens=1_000))
    department = ok(
        await tenant.gql('mutation { createDepartment(input: {name: "Ops"}) { id } }'),
        "createDepartment",
    )["id"]
    user = ok(
        await tenant.gql(
            "mutation($d: ID) { createUser(input: {email: $e, departmentId: $d}) { id } }".replace(
                "$e", f'"{uuid.uuid4().hex[:8]}@verify.example"'
            ),
            {"d": department},
        ),
        "createUser",
    )["id"]
    budget_inputs = [
        {"scope": {"kind": "ORGANIZATION"}, "limit": "500.00", "hardCap": False},
        {
            "scope": {"kind": "ACCOUNT", "id": str(prepaid)},
            "limit": "100.00",
            "hardCap": True,
            "basis": "BILLED_USAGE",
        },
        {"scope": {"kind": "USER", "id": user}, "limit": "50.00", "hardCap": False},
    ]
    budget_ids = [
        ok(
            await tenant.gql(
                SET_BUDGET, {"input": {"period": "MONTH", "currency": "USD", **value}}
            ),
            "setBudget",
        )["id"]
        for value in budget_inputs
    ]
    deposit = ok(
        await tenant.gql(
            DEPOSIT,
            {
                "input": {
                    "idempotencyKey": f"d-{uuid.uuid4().hex}",
                    "accountId": str(prepaid),
                    "amount": "50.00",
                    "currency": "USD",
                }
            },
        ),
        "deposit",
        "LedgerEntryRecorded",
    )
    at = rfc(now() - timedelta(minutes=30))
    for account, tokens, cost, with_user in (
        (prepaid, 800, "0.80", True),  # inside the allowance
        (prepaid, 500, "2.00", False),  # partly inside it
        (prepaid, 100, "1.00", True),  # beyond it: charged to the balance
        (tenant.account_id, 300, "0.30", True),  # postpaid, no plan
    ):
        event = usage(
            tenant,
            accountId=str(account),
            inputTokens=tokens,
            outputTokens=0,
            providerCost=cost,
            occurredAt=at,
            **({"userId": user} if with_user else {}),
        )
        ok(await tenant.gql(RECORD_USAGE, {"input": event}), "recordUsage", "UsageRecorded")
    await pooled_usage(tenant, at)
    ok(
        await tenant.gql(
            REFUND,
            {
                "input": {
                    "idempotencyKey": f"r-{uuid.uuid4().hex}",
                    "entryId": deposit["entry"]["id"],
                    "amount": "10.00",
                }
            },
        ),
        "refund",
        "LedgerEntryRecorded",
    )
    reservations = []
    for cost in ("0.70", "0.40", "0.20"):
        authorized = ok(
            await tenant.gql(
                AUTHORIZE,
                {
                    "input": {
                        "idempotencyKey": f"a-{uuid.uuid4().hex}",
                        "accountId": str(prepaid),
                        "provider": "openai",
                        "model": "gpt-4o",
                        "estimatedInputTokens": 100,
                        "estimatedCost": cost,
                        "estimatedCostCurrency": "USD",
                        "userId": user,
                    }
                },
            ),
            "authorizeUsage",
            "UsageAuthorized",
        )
        reservations.append(uuid.UUID(authorized["reservation"]["id"]))
    settled, held, released = reservations
    actual = usage(
        tenant,
        accountId=str(prepaid),
        inputTokens=50,
        outputTokens=0,
        providerCost="0.25",
        occurredAt=at,
        userId=user,
    )
    ok(
        await tenant.gql(SETTLE, {"input": {"reservationId": str(settled), "usage": actual}}),
        "settleUsage",
        "UsageRecorded",
    )
    ok(await tenant.gql(RELEASE, {"id": str(released)}), "releaseReservation")
    top_up = {"accountId": str(prepaid), "enabled": True, "threshold": "1.00", "amount": "20"}
    ok(await tenant.gql(SET_AUTO, {"input": top_up}), "setAutoTopUp", "AutoTopUp")
    async with raw_connection(database_url) as connection:
        await rollups.catch_up(connection)
    closed = await month_close.close_months(
        state.units, month(1), timedelta(0), only=[tenant.org.id]
    )
    assert [c.month for c in closed] == [month()], closed
    return Busy(tenant, prepaid, uuid.UUID(budget_ids[1]), held, settled)


async def check(state: AppState, organization_id: uuid.UUID) -> verify.Report:
    return await verify.verify(
        state.engine, state.limits.zone, organization_id=organization_id, checks=LEDGER_CHECKS
    )


def summary(drift: list[Drift]) -> set[tuple[str, str, Decimal | None, Decimal | None]]:
    return {(d.what, d.scope, d.stored, d.recomputed) for d in drift}


@contextlib.asynccontextmanager
async def tampered(connection: asyncpg.Connection, sql: str, undo: str) -> AsyncIterator[None]:
    """A stored number changed behind the code's back, and put back whatever happens."""
    await connection.execute(sql)
    try:
        yield
    finally:
        await connection.execute(undo)


async def test_no_drift_after_ordinary_activity(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    await busy(tenant, state, database_url)
    report = await check(state, tenant.org.id)
    assert report.drift == [] and report.clean, report.drift
    assert all(count > 0 for count in report.checked.values()), report.checked
    assert report.checked["account balances"] == 3  # prepaid, postpaid, the team's
    assert report.checked["auto-top-up flags"] == 1  # the prepaid account's
    assert report.checked["pooled allowance cycles"] == 1
    assert report.checked["settled reservations"] == 1


async def test_tampering_shows_as_exact_drift(
    tenant: Tenant, state: AppState, database_url: str
) -> None:
    """Each kind of derived number, tampered with in SQL: verify names exactly it (what,
    where, stored, recomputed); put back, verify is clean again."""
    done = await busy(tenant, state, database_url)
    org = tenant.org.id
    async with raw_connection(database_url) as connection:

        async def scalar(sql: str, *args: Any) -> Any:
            return await connection.fetchval(sql, org, *args)

        balance = await scalar(
            "SELECT balance FROM account_balances WHERE organization_id = $1 AND account_id = $2",
            done.prepaid,
        )
        cycle_start, used = await connection.fetchrow(
            "SELECT cycle_start, used_tokens FROM allowance_counters WHERE organization_id = $1",
            org,
        )
        period_start, period_end, spent, reserved = await connection.fetchrow(
            "SELECT period_start, period_end, spent, reserved FROM budget_counters "
            "WHERE organization_id = $1 AND budget_id = $2",
            org,
            done.account_budget,
        )
        hold = Decimal(
            await scalar(
                "SELECT h ->> 'amount' FROM reservations, jsonb_array_elements(holds) h "
                "WHERE organization_id = $1 AND id = $2 AND (h ->> 'budget_id')::uuid = $3",
                done.held,
                done.account_budget,
            )
        )
        model_row = await connection.fetchrow(
            "SELECT bucket, provider, model, ai_cost FROM rollup_model_hourly "
            "WHERE organization_id = $1 AND model = 'gpt-4o-mini'",
            org,
        )
        usage_hour = (now() - timedelta(minutes=30)).replace(minute=0, second=0, microsecond=0)
        org_row = await connection.fetchrow(
            "SELECT bucket, billed_usage FROM rollup_org_hourly "
            "WHERE organization_id = $1 AND bucket = $2",
            org,
            usage_hour,
        )
        settled_entry = await scalar(
            "SELECT settled_entry_id FROM reservations WHERE organization_id = $1 AND id = $2",
            done.settled,
        )
        top_ups = await scalar(
            "SELECT top_ups FROM pnl_month_closes WHERE organization_id = $1 "
            "AND scope_kind = 'ORGANIZATION'"
        )
        budget_scope = (
            f"budget {done.account_budget} (ACCOUNT {done.prepaid}, MONTH, BILLED_USAGE, USD) "
            f"period {format_rfc3339(period_start)}"
        )
        counter = f"budget {done.account_budget} period {format_rfc3339(period_start)}"
        where_account = f"organization_id = '{org}' AND account_id = '{done.prepaid}'"
        where_budget = f"organization_id = '{org}' AND budget_id = '{done.account_budget}'"
        flag = ("auto_top_up flag", f"account {done.prepaid}")
        cases: list[tuple[str, str, str, set[tuple[str, str, Any, Any]]]] = [
            (
                f"UPDATE account_balances SET auto_top_up = false WHERE {where_account}",
                f"UPDATE account_balances SET auto_top_up = true WHERE {where_account}",
                "auto-top-up flag off",
                {(*flag, None, Decimal(1))},
            ),
            (
                f"UPDATE auto_top_ups SET enabled = false WHERE {where_account}",
                f"UPDATE auto_top_ups SET enabled = true WHERE {where_account}",
                "auto-top-up flag without a setting",
                {(*flag, Decimal(1), Decimal(0))},
            ),
            (
                f"UPDATE account_balances SET balance = balance + 1.5 WHERE {where_account}",
                f"UPDATE account_balances SET balance = balance - 1.5 WHERE {where_account}",
                "balance",
                {("balance", f"account {done.prepaid}", balance + Decimal("1.5"), balance)},
            ),
            (
                f"DELETE FROM account_balances WHERE {where_account}",
                "INSERT INTO account_balances (organization_id, account_id, balance, auto_top_up) "
                f"VALUES ('{org}', '{done.prepaid}', {balance}, true)",
                "balance row",
                {("balance", f"account {done.prepaid}", None, balance), (*flag, None, Decimal(1))},
            ),
            (
                f"UPDATE allowance_counters SET used_tokens = used_tokens + 7 "
                f"WHERE {where_account}",
                f"UPDATE allowance_counters SET used_tokens = used_tokens - 7 "
                f"WHERE {where_account}",
                "allowance",
                {
                    (
                        "allowance.used_tokens",
                        f"account {done.prepaid} cycle {format_rfc3339(cycle_start)}",
                        used + 7,
                        used,
                    )
                },
            ),
            (
                f"UPDATE budget_counters SET spent = spent + 2 WHERE {where_budget}",
                f"UPDATE budget_counters SET spent = spent - 2 WHERE {where_budget}",
                "budget spent",
                {("budget.spent", budget_scope, spent + 2, spent)},
            ),
            (
                f"UPDATE budget_counters SET reserved = reserved + 3 WHERE {where_budget}",
                f"UPDATE budget_counters SET reserved = reserved - 3 WHERE {where_budget}",
                "budget reserved",
                {("budget.reserved", counter, reserved + 3, reserved)},
            ),
            (
                f"DELETE FROM budget_counters WHERE {where_budget}",
                "INSERT INTO budget_counters (organization_id, budget_id, period_start, "
                f"period_end, spent, reserved) VALUES ('{org}', '{done.account_budget}', "
                f"'{period_start.isoformat()}', '{period_end.isoformat()}', {spent}, {reserved})",
                "budget counter row",
                {
                    ("budget.spent", budget_scope, None, spent),
                    ("budget.reserved", counter, None, reserved),
                },
            ),
            (
                "UPDATE reservations SET holds = (SELECT jsonb_agg(CASE WHEN h ->> 'budget_id' = "
                f"'{done.account_budget}' THEN jsonb_set(h, '{{amount}}', '\"9.99\"') ELSE h END) "
                f"FROM jsonb_array_elements(holds) h) WHERE id = '{done.held}'",
                "UPDATE reservations SET holds = (SELECT jsonb_agg(CASE WHEN h ->> 'budget_id' = "
                f"'{done.account_budget}' THEN jsonb_set(h, '{{amount}}', '\"{hold}\"') ELSE h "
                f"END) FROM jsonb_array_elements(holds) h) WHERE id = '{done.held}'",
                "hold",
                {
                    (
                        "reservation.hold",
                        f"reservation {done.held} budget {done.account_budget}",
                        Decimal("9.99"),
                        hold,
                    ),
                    ("budget.reserved", counter, reserved, reserved - hold + Decimal("9.99")),
                },
            ),
            (
                "UPDATE reservations SET settled_entry_id = gen_random_uuid() "
                f"WHERE id = '{done.settled}'",
                f"UPDATE reservations SET settled_entry_id = '{settled_entry}' "
                f"WHERE id = '{done.settled}'",
                "settled entry",
                {("reservation.settled_entry", f"reservation {done.settled}", 1, 0)},
            ),
            (
                "UPDATE rollup_model_hourly SET ai_cost = ai_cost + 1 "
                f"WHERE organization_id = '{org}' AND model = 'gpt-4o-mini'",
                "UPDATE rollup_model_hourly SET ai_cost = ai_cost - 1 "
                f"WHERE organization_id = '{org}' AND model = 'gpt-4o-mini'",
                "rollup",
                {
                    (
                        "rollup_model_hourly.ai_cost",
                        f"hour {format_rfc3339(model_row['bucket'])} currency USD "
                        "provider openai model gpt-4o-mini",
                        model_row["ai_cost"] + 1,
                        model_row["ai_cost"],
                    )
                },
            ),
            (
                "UPDATE rollup_org_hourly SET billed_usage = billed_usage + 5 "
                f"WHERE organization_id = '{org}' AND bucket = '{usage_hour.isoformat()}'",
                "UPDATE rollup_org_hourly SET billed_usage = billed_usage - 5 "
                f"WHERE organization_id = '{org}' AND bucket = '{usage_hour.isoformat()}'",
                "live totals",
                {
                    (
                        "rollup_org_hourly.billed_usage",
                        f"hour {format_rfc3339(org_row['bucket'])} currency USD",
                        org_row["billed_usage"] + 5,
                        org_row["billed_usage"],
                    ),
                    (
                        "live_totals.billed",
                        f"ORGANIZATION {org} USD from {format_rfc3339(month())}",
                        org_row["billed_usage"] + 5,
                        org_row["billed_usage"],
                    ),
                },
            ),
            (
                "UPDATE pnl_month_closes SET top_ups = top_ups + 4 "
                f"WHERE organization_id = '{org}' AND scope_kind = 'ORGANIZATION'",
                "UPDATE pnl_month_closes SET top_ups = top_ups - 4 "
                f"WHERE organization_id = '{org}' AND scope_kind = 'ORGANIZATION'",
                "month close",
                {
                    (
                        "month_close.top_ups",
                        f"{month().strftime('%Y-%m')} ORGANIZATION {org} USD",
                        top_ups + 4,
                        top_ups,
                    )
                },
            ),
        ]
        for sql, undo, name, expected in cases:
            async with tampered(connection, sql, undo):
                report = await check(state, org)
                assert summary(report.drift) == expected, name
                assert not report.clean and report.unlisted == 0, name
                assert all(d.organization_id == org for d in report.drift), name
                for row in report.drift:
                    assert row.difference == row.recomputed - (row.stored or 0), name
        report = await check(state, org)
        assert report.clean, report.drift


async def test_one_organisation_is_verified_alone(
    tenant: Tenant, other_tenant: Tenant, state: AppState, database_url: str
) -> None:
    """Drift in another organisation is not this one's; the whole platform sees both."""
    async with raw_connection(database_url) as connection:
        other = other_tenant.org.id
        await connection.execute(
            "INSERT INTO account_balances (organization_id, account_id, balance) "
            "VALUES ($1, $2, 3.25)",
            other,
            other_tenant.account_id,
        )
        try:
            assert (await check(state, tenant.org.id)).clean
            theirs = await check(state, other)
            assert summary(theirs.drift) == {
                ("balance", f"account {other_tenant.account_id}", Decimal("3.25"), Decimal(0))
            }
            everyone = await verify.verify(state.engine, state.limits.zone, checks=LEDGER_CHECKS)
            assert ("balance", f"account {other_tenant.account_id}") in {
                (d.what, d.scope) for d in everyone.drift
            }
        finally:
            await connection.execute(
                "DELETE FROM account_balances WHERE organization_id = $1", other
            )
    assert (await check(state, other)).clean


async def test_unknown_organisation_is_not_found(state: AppState) -> None:
    from costgraph.kernel.errors import NotFound

    with pytest.raises(NotFound):
        await check(state, uuid.uuid4())


def run_cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "COSTGRAPH_DATABASE_URL": database_url,
        **clock_environment(),
    }
    return subprocess.run(
        [sys.executable, "-m", "costgraph.app.cli", "verify", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


async def test_command_line_exit_codes(tenant: Tenant, database_url: str) -> None:
    usage_event = usage(tenant, occurredAt=rfc(now() - timedelta(minutes=5)))
    ok(await tenant.gql(RECORD_USAGE, {"input": usage_event}), "recordUsage", "UsageRecorded")
    clean = await asyncio.to_thread(run_cli, database_url, "--org", tenant.org.slug)
    assert clean.returncode == 0, clean.stderr
    lines = clean.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("no drift: checked "), clean.stdout
    assert "1 account balances" in lines[0]
    where = f"organization_id = '{tenant.org.id}' AND account_id = '{tenant.account_id}'"
    async with raw_connection(database_url) as connection:
        balance = await connection.fetchval(f"SELECT balance FROM account_balances WHERE {where}")
        async with tampered(
            connection,
            f"UPDATE account_balances SET balance = balance + 0.5 WHERE {where}",
            f"UPDATE account_balances SET balance = balance - 0.5 WHERE {where}",
        ):
            drifting = await asyncio.to_thread(run_cli, database_url, "--org", str(tenant.org.id))
    assert drifting.returncode == 1, drifting.stderr
    header, rule, row, *rest = drifting.stdout.splitlines()
    assert header.split() == ["organization", "what", "scope", "stored", "recomputed", "difference"]
    assert set(rule) <= {"-", " "}
    cells = row.split()
    assert cells[:4] == [str(tenant.org.id), "balance", "account", str(tenant.account_id)]
    stored, recomputed, difference = (Decimal(c) for c in cells[4:])
    assert (stored, recomputed, difference) == (balance + Decimal("0.5"), balance, Decimal("-0.5"))
    assert rest[-1].startswith("1 drifting number(s); checked "), rest
    unknown = await asyncio.to_thread(run_cli, database_url, "--org", "no-such-organisation")
    assert unknown.returncode == 2 and "no organisation" in unknown.stderr
    assert unknown.stdout == ""


async def test_ledger_drift_query_is_platform_admin_only(
    tenant: Tenant, state: AppState, database_url: str, mint: Any
) -> None:
    usage_event = usage(tenant, occurredAt=rfc(now() - timedelta(minutes=5)))
    ok(await tenant.gql(RECORD_USAGE, {"input": usage_event}), "recordUsage", "UsageRecorded")
    variables = {"org": str(tenant.org.id)}
    for roles in (["org_admin"], ["finance_viewer"], ["member"]):
        refused = await tenant.gql(VERIFY_QUERY, variables, token=tenant.token_for(roles=roles))
        assert refused["data"] is None
        assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN", refused
    admin = mint(None, ["platform_admin"])
    clean = ok(await tenant.gql(VERIFY_QUERY, variables, token=admin), "ledgerDrift")
    assert clean["clean"] is True and clean["drift"] == [] and clean["unlisted"] == 0
    assert {"check": "account balances", "compared": 1} in clean["checked"]
    where = f"organization_id = '{tenant.org.id}' AND account_id = '{tenant.account_id}'"
    async with (
        raw_connection(database_url) as connection,
        tampered(
            connection,
            f"UPDATE account_balances SET balance = balance + 0.5 WHERE {where}",
            f"UPDATE account_balances SET balance = balance - 0.5 WHERE {where}",
        ),
    ):
        found = ok(await tenant.gql(VERIFY_QUERY, variables, token=admin), "ledgerDrift")
    assert found["clean"] is False
    (row,) = found["drift"]
    assert (row["what"], row["organizationId"], row["scope"]) == (
        "balance",
        str(tenant.org.id),
        f"account {tenant.account_id}",
    )
    assert Decimal(row["stored"]) - Decimal(row["recomputed"]) == Decimal("0.5")
    assert Decimal(row["difference"]) == Decimal("-0.5")
    unknown = await tenant.gql(VERIFY_QUERY, {"org": str(uuid.uuid4())}, token=admin)
    assert unknown["errors"][0]["extensions"]["code"] == "NOT_FOUND", unknown
