"""Saved report templates: CRUD and bad input through GraphQL, runs as signed links, and the
monthly schedule delivering through a real local SMTP server and a real HTTP receiver, once
per template and month however often (and however concurrently) it runs."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import sys
import time
import uuid
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import openpyxl
import pytest

from costgraph.alerts import signing
from costgraph.alerts.config import SmtpConfig
from costgraph.app.report_scheduler import ReportScheduler
from costgraph.app.settings import Settings
from costgraph.app.state import AppState
from tests import dates
from tests.alerts_support import CHANNEL, Mailbox, http_receiver, smtp_server
from tests.conftest import Tenant, raw_connection
from tests.pnl_support import usage_event
from tests.test_alert_delivery import FAST

SAVE = """mutation($input: ReportTemplateInput!) { saveReportTemplate(input: $input) {
  __typename
  ... on ReportTemplateSaved { template { id name kind format columns scheduleChannelId
      filters { name value } createdBy createdAt updatedAt } }
  ... on UserError { code message field } } }"""
LIST = """{ reportTemplates { id name kind format columns filters { name value } } }"""
DELETE = """mutation($id: ID!) { deleteReportTemplate(id: $id) {
  __typename ... on ReportTemplateDeleted { id } ... on UserError { code message field } } }"""
RUN = """mutation($id: ID!, $month: String) { runReportTemplate(id: $id, month: $month) {
  __typename ... on ReportDownload { url expiresAt filename month }
  ... on UserError { code message field } } }"""


async def save(tenant: Tenant, **input: Any) -> dict[str, Any]:
    body = await tenant.gql(SAVE, {"input": {"name": f"t-{uuid.uuid4().hex[:8]}", **input}})
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["saveReportTemplate"]
    return result


async def template_rows(database_url: str, tenant: Tenant) -> int:
    async with raw_connection(database_url) as connection:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM report_templates WHERE organization_id = $1", tenant.org.id
        )
    return count


async def test_templates_crud(tenant: Tenant) -> None:
    made = await save(
        tenant,
        name="Monthly summary",
        kind="SUMMARY",
        format="PDF",
        filters={"customerId": str(tenant.customer_id)},
    )
    assert made["__typename"] == "ReportTemplateSaved", made
    template = made["template"]
    assert template["kind"] == "SUMMARY" and template["format"] == "PDF"
    assert template["filters"] == [{"name": "customerId", "value": str(tenant.customer_id)}]
    assert template["createdBy"] == "tester"
    usage = await save(
        tenant,
        name="Usage by model",
        kind="USAGE",
        format="CSV",
        filters={"groupBy": ["MODEL"], "model": "gpt-4o"},
        columns=["model", "events", "ai_cost"],
    )
    assert usage["__typename"] == "ReportTemplateSaved", usage
    listed = (await tenant.gql(LIST))["data"]["reportTemplates"]
    assert [t["name"] for t in listed] == ["Monthly summary", "Usage by model"]
    assert {"name": "groupBy", "value": "model"} in listed[1]["filters"]
    # Replace by id: same template, new terms.
    renamed = await save(
        tenant, id=template["id"], name="Board pack", kind="SUMMARY", format="XLSX"
    )
    assert renamed["template"]["id"] == template["id"]
    assert renamed["template"]["format"] == "XLSX" and renamed["template"]["filters"] == []
    # A name is unique in the organisation.
    taken = await save(tenant, name="Board pack", kind="SUMMARY", format="PDF")
    assert taken == {
        "__typename": "ValidationFailed",
        "code": "VALIDATION_FAILED",
        "message": "a report template named 'Board pack' exists",
        "field": "input.name",
    }
    deleted = (await tenant.gql(DELETE, {"id": template["id"]}))["data"]["deleteReportTemplate"]
    assert deleted == {"__typename": "ReportTemplateDeleted", "id": template["id"]}
    again = (await tenant.gql(DELETE, {"id": template["id"]}))["data"]["deleteReportTemplate"]
    assert again["__typename"] == "NotFound"
    assert [t["name"] for t in (await tenant.gql(LIST))["data"]["reportTemplates"]] == [
        "Usage by model"
    ]


@pytest.mark.parametrize(
    ("input", "typename", "field"),
    [
        ({"kind": "SUMMARY", "format": "CSV"}, "ValidationFailed", "input.format"),
        (
            {"kind": "LEDGER", "format": "CSV", "columns": ["amount", "no_such_column"]},
            "ValidationFailed",
            "input.columns",
        ),
        (
            {"kind": "SUMMARY", "format": "XLSX", "columns": ["model"]},
            "ValidationFailed",
            "input.columns",
        ),
        (
            {"kind": "SUMMARY", "format": "XLSX", "filters": {"model": "gpt-4o"}},
            "ValidationFailed",
            "input.filters.model",
        ),
        (
            {"kind": "LEDGER", "format": "CSV", "filters": {"accountId": str(uuid.uuid4())}},
            "NotFound",
            "input.filters.accountId",
        ),
        (
            {"kind": "SUMMARY", "format": "PDF", "filters": {"customerId": "not-an-id"}},
            "NotFound",
            "input.filters.customerId",
        ),
        (
            {"kind": "SUMMARY", "format": "PDF", "scheduleChannelId": str(uuid.uuid4())},
            "NotFound",
            "input.scheduleChannelId",
        ),
        ({"kind": "SUMMARY", "format": "PDF", "name": " "}, "ValidationFailed", "input.name"),
        ({"kind": "SUMMARY", "format": "PDF", "id": str(uuid.uuid4())}, "NotFound", "input.id"),
    ],
)
async def test_bad_templates_write_nothing(
    tenant: Tenant, database_url: str, input: dict[str, Any], typename: str, field: str
) -> None:
    result = await save(tenant, **input)
    assert result["__typename"] == typename, result
    assert result["field"] == field, result
    assert await template_rows(database_url, tenant) == 0


async def test_another_tenants_filters_answer_as_missing(
    tenant: Tenant, other_tenant: Tenant, database_url: str
) -> None:
    answers = []
    for customer in (other_tenant.customer_id, uuid.uuid4()):
        result = await save(
            tenant,
            name="x",
            kind="PNL",
            format="CSV",
            filters={"customerId": str(customer)},
        )
        answers.append({**result, "message": result["message"].replace(str(customer), "<id>")})
    assert answers[0] == answers[1]
    assert answers[0]["__typename"] == "NotFound"
    assert await template_rows(database_url, tenant) == 0


def _local(url: str) -> str:
    """The link's path and query (the test client has no network)."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def test_run_returns_a_signed_link_to_the_file(tenant: Tenant, other_tenant: Tenant) -> None:
    month = dates.month_key(-2)
    await usage_event(tenant, str(tenant.account_id), dates.rfc(dates.month(-2, 3)), "0.5", "USD")
    made = await save(tenant, name="Ledger", kind="LEDGER", format="CSV")
    ident = made["template"]["id"]
    body = await tenant.gql(RUN, {"id": ident, "month": month})
    download = body["data"]["runReportTemplate"]
    assert download["__typename"] == "ReportDownload", download
    assert download["month"] == month and download["filename"] == f"Ledger-{month}.csv"
    assert urlsplit(download["url"]).path == f"/reports/templates/{ident}/{month}"
    fetched = await tenant.client.get(_local(download["url"]))  # no bearer: the link is enough
    assert fetched.status_code == 200, fetched.text
    assert fetched.headers["content-type"].startswith("text/csv")
    assert f'filename="Ledger-{month}.csv"' in fetched.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(fetched.content.decode("utf-8"))))
    data = [r for r in rows if r.get("row_type", "data") == "data"]
    assert len(data) == 1 and data[0]["currency"] == "USD"
    # A usage template with its grouping, bucket and columns, through the same path.
    usage = await save(
        tenant,
        name="Usage",
        kind="USAGE",
        format="CSV",
        filters={"groupBy": ["MODEL"], "bucket": "DAY"},
        columns=["model", "events", "ai_cost"],
    )
    link = (await tenant.gql(RUN, {"id": usage["template"]["id"], "month": month}))["data"][
        "runReportTemplate"
    ]
    table = await tenant.client.get(_local(link["url"]))
    assert table.status_code == 200, table.text
    usage_rows = list(csv.DictReader(io.StringIO(table.content.decode("utf-8"))))
    assert [r["model"] for r in usage_rows if r.get("row_type", "data") == "data"] == ["gpt-4o"]
    # A link is for its own file: changing the path or the token breaks it.
    other_path = _local(download["url"]).replace(month, dates.month_key(-3))
    assert (await tenant.client.get(other_path)).status_code == 401
    tampered = _local(download["url"])[:-4] + "AAAA"
    assert (await tenant.client.get(tampered)).status_code == 401
    # Another tenant's template answers as a missing one.
    theirs = (await other_tenant.gql(RUN, {"id": ident}))["data"]["runReportTemplate"]
    missing = (await other_tenant.gql(RUN, {"id": str(uuid.uuid4())}))["data"]["runReportTemplate"]
    assert theirs["__typename"] == missing["__typename"] == "NotFound"
    bad_month = (await tenant.gql(RUN, {"id": ident, "month": "October"}))["data"][
        "runReportTemplate"
    ]
    assert bad_month["field"] == "month"


async def test_bearer_template_route(tenant: Tenant) -> None:
    made = await save(tenant, name="Summary", kind="SUMMARY", format="XLSX")
    path = f"/reports/templates/{made['template']['id']}/{dates.month_key(-2)}"
    response = await tenant.client.get(path, headers={"Authorization": f"Bearer {tenant.token}"})
    assert response.status_code == 200, response.text
    book = openpyxl.load_workbook(io.BytesIO(response.content))
    assert "Summary" in book.sheetnames
    member = tenant.token_for(roles=["member"])
    refused = await tenant.client.get(path, headers={"Authorization": f"Bearer {member}"})
    assert refused.status_code == 403


# --- the monthly schedule ---


def scheduler(state: AppState, settings: Settings, smtp: SmtpConfig) -> ReportScheduler:
    alerts = replace(state.alerts, delivery=FAST, smtp=smtp)
    return ReportScheduler(
        state.units, settings, state.keys, alerts, max_page_size=200, zone_name="UTC"
    )


async def runs_of(database_url: str, tenant: Tenant) -> list[dict[str, Any]]:
    async with raw_connection(database_url) as connection:
        rows = await connection.fetch(
            "SELECT template_id, month, state, attempts, last_error FROM report_runs "
            "WHERE organization_id = $1 ORDER BY created_at",
            tenant.org.id,
        )
    return [dict(r) for r in rows]


async def test_schedule_delivers_each_month_once(
    tenant: Tenant, state: AppState, settings: Settings, database_url: str
) -> None:
    now = dates.now()
    await usage_event(tenant, str(tenant.account_id), dates.rfc(now), "0.25", "USD")
    mailbox = Mailbox()
    async with http_receiver() as receiver:
        with smtp_server(mailbox) as port:
            smtp = SmtpConfig(host="127.0.0.1", port=port, security="none")
            saved = state.alerts
            state.alerts = replace(saved, smtp=smtp)
            try:
                email = await tenant.gql(
                    CHANNEL, {"input": {"kind": "EMAIL", "target": "finance@example.com"}}
                )
                hook = await tenant.gql(
                    CHANNEL, {"input": {"kind": "WEBHOOK", "target": receiver.url("reports")}}
                )
            finally:
                state.alerts = saved
            email_id = email["data"]["createNotificationChannel"]["id"]
            hook_channel = hook["data"]["createNotificationChannel"]
            receiver.secrets["reports"] = hook_channel["signingSecret"]
            by_mail = await save(
                tenant,
                name="Summary by mail",
                kind="SUMMARY",
                format="XLSX",
                scheduleChannelId=email_id,
            )
            by_hook = await save(
                tenant,
                name="P&L by webhook",
                kind="PNL",
                format="CSV",
                scheduleChannelId=hook_channel["id"],
            )
            slack = await tenant.gql(
                CHANNEL, {"input": {"kind": "SLACK", "target": receiver.url("slack")}}
            )
            by_slack = await save(
                tenant,
                name="Summary to chat",
                kind="SUMMARY",
                format="PDF",
                scheduleChannelId=slack["data"]["createNotificationChannel"]["id"],
            )
            saved_all = (by_mail, by_hook, by_slack)
            assert {s["__typename"] for s in saved_all} == {"ReportTemplateSaved"}
            # The first of next month: last month (this one) is due. Two schedulers at once,
            # then again: one delivery per template and month.
            first = dates.month(1, 1, 0, 5)
            one, two = scheduler(state, settings, smtp), scheduler(state, settings, smtp)
            try:
                await asyncio.gather(one.run_due(first), two.run_due(first))
                await one.run_due(first)
                # Later in the same month, from the command's code path: nothing new.
                await two.run_due(first.replace(day=15))
            finally:
                await one.aclose()
                await two.aclose()
    month = dates.month_key()
    runs = await runs_of(database_url, tenant)
    assert len(runs) == 3, runs
    assert {r["state"] for r in runs} == {"DELIVERED"}, runs
    assert all(r["attempts"] == 1 for r in runs), runs
    # The email: once, with the workbook attached.
    mine = [m for m in mailbox.messages if m["To"] == "finance@example.com"]
    assert len(mine) == 1
    mail = mine[0]
    assert month in str(mail["Subject"]) and "Summary by mail" in str(mail["Subject"])
    (attachment,) = [part for part in mail.walk() if part.get_filename()]
    assert attachment.get_filename() == f"Summary-by-mail-{month}.xlsx"
    book = openpyxl.load_workbook(io.BytesIO(attachment.get_payload(decode=True)))
    summary = {row[0]: row[1] for row in book["Summary"].iter_rows(values_only=True) if row}
    assert summary["Month"] == month and summary["Organisation"] == tenant.org.name
    # The webhook: once, signed, with a link that downloads the file.
    posts = receiver.at("reports")
    assert len(posts) == 1
    assert posts[0].verified_id is not None
    signing.verify(hook_channel["signingSecret"], posts[0].headers, posts[0].body, int(time.time()))
    payload = posts[0].json()
    assert payload["type"] == "report.ready"
    assert payload["data"]["month"] == month and payload["data"]["name"] == "P&L by webhook"
    fetched = await tenant.client.get(_local(payload["data"]["url"]))
    assert fetched.status_code == 200, fetched.text
    assert fetched.headers["content-type"].startswith("text/csv")
    # Slack: once, a text with the link to the PDF.
    (chat,) = receiver.at("slack")
    text = chat.json()["blocks"][0]["text"]["text"]
    url = text.split("<", 1)[1].split("|", 1)[0]
    pdf = await tenant.client.get(_local(url))
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")


async def test_schedule_retries_then_gives_up(
    tenant: Tenant, state: AppState, settings: Settings, database_url: str
) -> None:
    async with http_receiver() as receiver:
        from tests.alerts_support import statuses

        receiver.behaviours["down"] = statuses(503, 503, 503, 503)
        hook = await tenant.gql(
            CHANNEL, {"input": {"kind": "WEBHOOK", "target": receiver.url("down")}}
        )
        channel_id = hook["data"]["createNotificationChannel"]["id"]
        await save(tenant, name="Down", kind="SUMMARY", format="PDF", scheduleChannelId=channel_id)
        first = dates.month(1)
        runner = scheduler(state, settings, SmtpConfig())
        try:
            for _ in range(FAST.max_attempts + 2):
                await runner.run_due(first)
                await asyncio.sleep(FAST.retry_max)
        finally:
            await runner.aclose()
        (run,) = await runs_of(database_url, tenant)
        assert run["state"] == "DEAD", run
        assert run["attempts"] == FAST.max_attempts
        assert "HTTP 503" in run["last_error"]
        assert len(receiver.at("down")) == FAST.max_attempts


async def test_run_due_command_in_two_processes_delivers_once(
    tenant: Tenant, settings: Settings, database_url: str
) -> None:
    """`costgraph reports run-due --now …` twice at once, in two processes: the receiver gets
    the month's message once."""
    async with http_receiver() as receiver:
        hook = await tenant.gql(
            CHANNEL, {"input": {"kind": "WEBHOOK", "target": receiver.url("cli")}}
        )
        channel = hook["data"]["createNotificationChannel"]
        receiver.secrets["cli"] = channel["signingSecret"]
        made = await save(
            tenant, name="By command", kind="LEDGER", format="CSV", scheduleChannelId=channel["id"]
        )
        assert made["__typename"] == "ReportTemplateSaved", made
        first = dates.month(1, 1, 6)
        assert settings.database_url
        env = dict(
            os.environ,
            COSTGRAPH_DATABASE_URL=settings.database_url,
            COSTGRAPH_DATA_DIR=str(settings.data_dir),
            COSTGRAPH_ISSUER=settings.issuer,
            COSTGRAPH_AUDIENCE=settings.audience,
            COSTGRAPH_ALERTS_ALLOWED_NETWORKS="127.0.0.0/8",
            **dates.clock_environment(),
        )
        command = [
            sys.executable,
            "-m",
            "costgraph.app.cli",
            "reports",
            "run-due",
            "--now",
            first.isoformat(),
        ]

        async def run() -> str:
            process = await asyncio.create_subprocess_exec(
                *command, env=env, stdout=asyncio.subprocess.PIPE
            )
            out, _ = await process.communicate()
            assert process.returncode == 0
            return out.decode()

        outputs = await asyncio.gather(run(), run())
    month = dates.month_key()
    assert all(f"reports for {month}" in out for out in outputs), outputs
    posts = receiver.at("cli")
    assert len(posts) == 1, posts
    assert posts[0].verified_id is not None
    assert posts[0].json()["data"]["name"] == "By command"
    (run_row,) = await runs_of(database_url, tenant)
    assert run_row["state"] == "DELIVERED" and run_row["attempts"] == 1


async def test_only_deliverable_channels_take_a_schedule(tenant: Tenant, database_url: str) -> None:
    made = await tenant.gql(
        CHANNEL,
        {
            "input": {
                "kind": "PAGERDUTY",
                "target": "http://127.0.0.1:9/enqueue",
                "secret": "routing-key-123",
            }
        },
    )
    pager = made["data"]["createNotificationChannel"]["id"]
    refused = await save(
        tenant, name="Paged", kind="SUMMARY", format="PDF", scheduleChannelId=pager
    )
    assert refused["__typename"] == "ValidationFailed"
    assert refused["field"] == "input.scheduleChannelId"
    assert "EMAIL, WEBHOOK, SLACK, TEAMS" in refused["message"]
    assert await template_rows(database_url, tenant) == 0
