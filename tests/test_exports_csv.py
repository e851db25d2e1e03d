"""CSV exports (issue #10): RFC 4180 read back by two independent readers (Python's csv module
and pandas' C parser), totals reconciled against the P&L query, column selection, every bad
input refused before a byte is written, tenant isolation, signed links, and streaming."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pandas
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from costgraph.app.state import AppState
from costgraph.billing.exports import (
    ExportLimits,
    escape_formula,
    links,
    parse_params,
    render_csv,
    round_money,
)
from costgraph.billing.exports.columns import LEDGER, Column, Kind
from costgraph.billing.exports.csv_writer import TableWriter
from costgraph.billing.exports.spec import ExportFilters, ExportRequest, ReportKind
from costgraph.billing.pnl_ranges import TimeBucket
from costgraph.models.scoping import bind_tenant
from tests.conftest import Tenant, make_tenant, raw_connection
from tests.dates import month, rfc
from tests.pnl_support import (
    ADJUST,
    DEPOSIT,
    ORG_PNL,
    key,
    ok,
    usage_event,
    write,
)
from tests.seeded import balances_as_written

RANGE = {"start": rfc(month(-9)), "end": rfc(month(-8))}
CREATE_LINK = """mutation($input: ExportInput!) { createExportLink(input: $input) {
  __typename ... on ExportLink { url expiresAt filename }
  ... on UserError { code message field } } }"""

# --- pure functions ---


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("=SUM(A1:A9)", "'=SUM(A1:A9)"),
        ("+1", "'+1"),
        ("-2", "'-2"),
        ("@cmd", "'@cmd"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("plain", "plain"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_escape_formula(text: str, escaped: str) -> None:
    assert escape_formula(text) == escaped


def test_money_rounds_half_to_even_to_the_minor_unit() -> None:
    assert round_money(Decimal("0.125"), "USD") == Decimal("0.12")
    assert round_money(Decimal("0.135"), "USD") == Decimal("0.14")
    assert round_money(Decimal("2.5"), "JPY") == Decimal("2")
    assert round_money(Decimal("3.5"), "JPY") == Decimal("4")
    assert round_money(Decimal("0.0005"), "BHD") == Decimal("0.000")
    assert str(round_money(Decimal("1.000000000001"), "USD")) == "1.00"


def _table_bytes() -> bytes:
    columns = (
        Column("name", Kind.TEXT),
        LEDGER["amount"],
        LEDGER["currency"],
        Column("count", Kind.INTEGER),
    )
    writer = TableWriter(columns)
    writer.header()
    writer.write(
        [
            ('Smith, "Jo"\r\nline 2', Decimal("-1.505"), "USD", -3),
            ("=1+2", Decimal("2.125"), "USD", 4),
            ("-minus", Decimal("7"), "JPY", 0),
            (None, Decimal("-0.001"), "USD", None),
        ]
    )
    writer.reconciliation("USD")
    return writer.take()


def test_writer_is_rfc_4180() -> None:
    data = _table_bytes()
    assert data.endswith(b"\r\n")
    assert data.decode("utf-8").split("\r\n")[0] == "row_type,name,amount,currency,count"
    lines = data.split(b"\r\n")
    # Quotes doubled, the field with a comma, quotes and CRLF quoted; numbers never escaped.
    assert lines[1] == b'data,"Smith, ""Jo""'
    assert lines[2] == b'line 2",-1.50,USD,-3'
    assert lines[3] == b"data,'=1+2,2.12,USD,4"
    assert lines[4] == b"data,'-minus,7,JPY,0"
    assert lines[5] == b"data,,0.00,USD,"  # -0.001 rounds to zero, written without a sign
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    assert rows[1] == ["data", 'Smith, "Jo"\r\nline 2', "-1.50", "USD", "-3"]
    assert rows[-4:] == [
        ["total_rounded", "", "7", "JPY", ""],
        ["total_unrounded", "", "7", "JPY", ""],
        ["total_rounded", "", "0.62", "USD", ""],
        ["total_unrounded", "", "0.619", "USD", ""],
    ]
    frame = pandas.read_csv(io.BytesIO(data), engine="c", dtype=str, keep_default_na=False)
    assert list(frame.columns) == ["row_type", "name", "amount", "currency", "count"]
    assert frame["name"][0] == 'Smith, "Jo"\r\nline 2'
    assert len(frame) == len(rows) - 1


@hypothesis_settings(max_examples=200, deadline=None)
@given(
    texts=st.lists(st.text(alphabet=st.sampled_from('ab ,"\r\n=+-@\té€'), max_size=8), min_size=1),
    amounts=st.lists(
        st.decimals(min_value=-1000, max_value=1000, places=6, allow_nan=False), min_size=1
    ),
)
def test_writer_writes_what_the_csv_module_writes(texts: list[str], amounts: list[Decimal]) -> None:
    """The hot loop joins fields itself; the csv module (minimal quoting, CRLF) and
    :func:`round_money` are the reference for every cell."""
    size = min(len(texts), len(amounts))
    currencies = ["USD", "JPY", "BHD"]
    rows = [(texts[i], amounts[i], currencies[i % 3]) for i in range(size)]
    writer = TableWriter((Column("name", Kind.TEXT), LEDGER["amount"], LEDGER["currency"]))
    writer.write(rows)
    buffer = io.StringIO()
    reference = csv.writer(buffer, lineterminator="\r\n")
    for text, amount, currency in rows:
        rounded = round_money(amount, currency)
        shown = format(abs(rounded) if rounded.is_zero() else rounded, "f")
        reference.writerow(["data", escape_formula(text), shown, currency])
    assert writer.take().decode("utf-8") == buffer.getvalue()


def test_query_string_round_trip() -> None:
    request = ExportRequest(
        report=ReportKind.USAGE,
        start=datetime(2026, 1, 1, tzinfo=UTC),
        end=datetime(2026, 2, 1, tzinfo=UTC),
        columns=("model", "ai_cost"),
        filters=ExportFilters(account_id=uuid.uuid4(), feature="chat, beta"),
        group_by=("model",),
        bucket=TimeBucket.DAY,
        currency="EUR",
    )
    assert parse_params("usage", request.to_params()) == request


# --- through HTTP ---


class Books:
    """A tenant with usage, a deposit and a correction whose texts test quoting and escaping."""

    def __init__(self, tenant: Tenant, user_id: str) -> None:
        self.tenant = tenant
        self.user_id = user_id


@pytest.fixture
async def books(tenant: Tenant) -> Books:
    account = str(tenant.account_id)
    created = await ok(
        tenant,
        "mutation($input: UserInput!) { createUser(input: $input) { id } }",
        {"input": {"email": f"{key()}@example.com"}},
    )
    user = created["createUser"]["id"]
    for day, cost in ((2, "0.0012345"), (3, "1.005"), (3, "2.0050001"), (20, "0.333333")):
        await usage_event(
            tenant,
            account,
            rfc(month(-9, day, 10)),
            cost,
            "USD",
            userId=user,
            feature='=HYPERLINK("http://x")',
            agent="+agent, with comma",
            requestId="@req",
            metadata={"note": 'line one, "quoted"\nline two'},
        )
    await write(
        tenant,
        DEPOSIT,
        "deposit",
        {
            "idempotencyKey": key(),
            "accountId": account,
            "amount": "10.00",
            "currency": "USD",
            "occurredAt": rfc(month(-9, 5)),
        },
    )
    await write(
        tenant,
        ADJUST,
        "adjust",
        {
            "idempotencyKey": key(),
            "accountId": account,
            "amount": "-1.25",
            "currency": "USD",
            "occurredAt": rfc(month(-9, 6)),
            "description": "-fix\r\nsecond line",
        },
    )
    # Outside the range: never exported.
    await usage_event(tenant, account, rfc(month(-8, 2)), "5", "USD")
    return Books(tenant, user)


async def get(tenant: Tenant, path: str, token: str | None = None, **params: str) -> httpx.Response:
    headers = {} if token == "" else {"Authorization": f"Bearer {token or tenant.token}"}
    return await tenant.client.get(path, params=params, headers=headers)


def parse_both(data: bytes) -> tuple[list[dict[str, str]], pandas.DataFrame]:
    text = data.decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    frame = pandas.read_csv(io.BytesIO(data), engine="c", dtype=str, keep_default_na=False)
    assert list(frame.columns) == list(rows[0]) if rows else True
    assert frame.to_dict("records") == rows  # the two readers agree, cell for cell
    return rows, frame


def by_type(rows: list[dict[str, str]], kind: str) -> list[dict[str, str]]:
    return [r for r in rows if r["row_type"] == kind]


async def org_pnl(tenant: Tenant) -> dict[str, Any]:
    result: dict[str, Any] = (await ok(tenant, ORG_PNL, {"range": RANGE}))["organizationPnl"]
    return result


async def test_ledger_export_reads_back_and_reconciles_with_pnl(books: Books) -> None:
    tenant = books.tenant
    response = await get(tenant, "/exports/ledger.csv", **RANGE, columns=",".join(LEDGER))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert "attachment" in response.headers["content-disposition"]
    data = response.content
    assert data.count(b"\n") == data.count(b"\r\n")  # every line ends CRLF, no bare LF
    rows, _ = parse_both(data)
    data_rows = by_type(rows, "data")
    assert [r["type"] for r in data_rows] == ["USAGE_CHARGE"] * 3 + ["DEPOSIT", "ADJUSTMENT"] + [
        "USAGE_CHARGE"
    ]
    usage = [r for r in data_rows if r["type"] == "USAGE_CHARGE"]
    assert {r["feature"] for r in usage} == {'\'=HYPERLINK("http://x")'}
    assert {r["agent"] for r in usage} == {"'+agent, with comma"}
    assert {r["request_id"] for r in usage} == {"'@req"}
    assert {r["user_id"] for r in usage} == {books.user_id}
    assert 'line one, \\"quoted\\"\\nline two' in usage[0]["metadata"]
    (adjustment,) = [r for r in data_rows if r["type"] == "ADJUSTMENT"]
    assert adjustment["description"] == "'-fix\r\nsecond line"
    assert adjustment["amount"] == "-1.25"  # a number, not escaped
    for row in data_rows:
        assert len(row["amount"].split(".")[1]) == 2 and row["currency"] == "USD"
    (rounded,) = by_type(rows, "total_rounded")
    (exact,) = by_type(rows, "total_unrounded")
    assert Decimal(rounded["amount"]) == sum(Decimal(r["amount"]) for r in data_rows)
    assert Decimal(rounded["ai_cost"]) == sum(Decimal(r["ai_cost"]) for r in data_rows)
    pnl = await org_pnl(tenant)
    # The exact sums are the P&L's: usage billed (postpaid revenue) + top-up + correction.
    billed = Decimal(pnl["billedUsage"])
    assert Decimal(exact["ai_cost"]) == Decimal(pnl["aiCost"])
    assert Decimal(exact["amount"]) == billed + Decimal("10.00") + Decimal("-1.25")
    assert Decimal(pnl["balanceAdjustments"]) == Decimal("-1.25")
    assert Decimal(exact["ai_cost"]) != Decimal(rounded["ai_cost"])  # rounding did something
    # The same through the usage-charge filter: its sum is the P&L's billed usage.
    only_usage = await get(tenant, "/exports/ledger.csv", **RANGE, types="USAGE_CHARGE")
    (exact_usage,) = by_type(parse_both(only_usage.content)[0], "total_unrounded")
    assert Decimal(exact_usage["amount"]) == billed


async def test_usage_and_pnl_exports_match_the_pnl_query(books: Books) -> None:
    tenant = books.tenant
    pnl = await org_pnl(tenant)
    usage = await get(tenant, "/exports/usage.csv", **RANGE, groupBy="model,user", bucket="DAY")
    assert usage.status_code == 200, usage.text
    rows, frame = parse_both(usage.content)
    assert list(frame.columns)[:7] == [
        "row_type",
        "bucket_start",
        "model",
        "user_id",
        "user_email",  # names beside ids
        "user_name",
        "currency",
    ]
    assert [r["bucket_start"] for r in by_type(rows, "data")] == [
        rfc(month(-9, 2)),
        rfc(month(-9, 3)),
        rfc(month(-9, 20)),
    ]
    (exact,) = by_type(rows, "total_unrounded")
    assert Decimal(exact["ai_cost"]) == Decimal(pnl["aiCost"])
    assert Decimal(exact["billed_usage"]) == Decimal(pnl["billedUsage"])

    report = await get(tenant, "/exports/pnl.csv", **RANGE)
    rows, _ = parse_both(report.content)
    (row,) = by_type(rows, "data")
    (rounded,) = by_type(rows, "total_rounded")
    (exact,) = by_type(rows, "total_unrounded")
    for name, figure in (("revenue", "revenue"), ("ai_cost", "aiCost"), ("margin", "margin")):
        assert Decimal(exact[name]) == Decimal(pnl[figure])
        assert row[name] == rounded[name] == str(round_money(Decimal(pnl[figure]), "USD"))
    assert row["period_start"] == RANGE["start"] and row["period_end"] == RANGE["end"]
    weekly = await get(tenant, "/exports/pnl.csv", **RANGE, bucket="WEEK", columns="revenue")
    rows, frame = parse_both(weekly.content)
    assert list(frame.columns) == ["row_type", "revenue", "currency"]
    days = range((month(-8) - month(-9)).days)
    weeks = {(month(-9) + timedelta(days=d)).isocalendar()[:2] for d in days}
    assert len(by_type(rows, "data")) == len(weeks)  # the ISO weeks the month touches
    (exact,) = by_type(rows, "total_unrounded")
    assert Decimal(exact["revenue"]) == Decimal(pnl["revenue"])


async def test_columns_are_chosen_in_order_with_currency_beside_money(books: Books) -> None:
    response = await get(books.tenant, "/exports/ledger.csv", **RANGE, columns="amount,type,id")
    rows, frame = parse_both(response.content)
    assert list(frame.columns) == ["row_type", "amount", "currency", "type", "id"]
    with_code = await get(books.tenant, "/exports/ledger.csv", **RANGE, columns="currency,amount")
    assert with_code.content.startswith(b"row_type,currency,amount\r\n")
    no_money = await get(books.tenant, "/exports/ledger.csv", **RANGE, columns="id")
    rows, _ = parse_both(no_money.content)
    assert {r["row_type"] for r in rows} == {"data"}  # nothing to reconcile


async def test_render_csv_gives_the_downloads_bytes(books: Books, state: AppState) -> None:
    """What saved templates and e-mailed reports call: the same file as the download."""
    tenant = books.tenant
    async with state.sessions() as session:
        bind_tenant(session.sync_session, tenant.org.id)
        for report in ("ledger", "usage", "pnl"):
            request = parse_params(report, dict(RANGE))
            data = await render_csv(session, tenant.org, request, ExportLimits())
            direct = await get(tenant, f"/exports/{report}.csv", **RANGE)
            assert data == direct.content


def error_of(response: httpx.Response) -> dict[str, Any]:
    (error,) = response.json()["errors"]
    result: dict[str, Any] = error["extensions"] | {"message": error["message"]}
    return result


async def test_bad_input_is_refused_before_anything_is_written(
    books: Books, other_tenant: Tenant
) -> None:
    tenant = books.tenant
    cases: list[tuple[str, dict[str, str], int, str, str | None]] = [
        (
            "/exports/ledger.csv",
            {**RANGE, "columns": "id,nope"},
            400,
            "VALIDATION_FAILED",
            "columns",
        ),
        ("/exports/ledger.csv", {**RANGE, "columns": ""}, 400, "VALIDATION_FAILED", "columns"),
        ("/exports/ledger.csv", {**RANGE, "columns": "id,id"}, 400, "VALIDATION_FAILED", "columns"),
        (
            "/exports/ledger.csv",
            {"start": "2024-01-01T00:00:00Z", "end": rfc(month(-11))},
            400,
            "VALIDATION_FAILED",
            "end",
        ),
        (
            "/exports/ledger.csv",
            {"start": RANGE["end"], "end": RANGE["start"]},
            400,
            "VALIDATION_FAILED",
            "end",
        ),
        (
            "/exports/ledger.csv",
            {"start": "yesterday", "end": RANGE["end"]},
            400,
            "VALIDATION_FAILED",
            "start",
        ),
        ("/exports/ledger.csv", {**RANGE, "bogus": "1"}, 400, "VALIDATION_FAILED", "bogus"),
        ("/exports/ledger.csv", {**RANGE, "types": "GIFT"}, 400, "VALIDATION_FAILED", "types"),
        ("/exports/ledger.csv", {**RANGE, "bucket": "DAY"}, 400, "VALIDATION_FAILED", "bucket"),
        ("/exports/usage.csv", {**RANGE, "groupBy": "planet"}, 400, "VALIDATION_FAILED", "groupBy"),
        ("/exports/usage.csv", {**RANGE, "columns": "model"}, 400, "VALIDATION_FAILED", "columns"),
        ("/exports/pnl.csv", {**RANGE, "model": "x"}, 400, "VALIDATION_FAILED", "model"),
        ("/exports/pnl.csv", {**RANGE, "currency": "XXY"}, 400, "VALIDATION_FAILED", "currency"),
        ("/exports/ledger.xml", RANGE, 400, "VALIDATION_FAILED", "format"),
        ("/exports/ledger.docx", RANGE, 400, "VALIDATION_FAILED", "format"),
        ("/exports/ledger", RANGE, 400, "VALIDATION_FAILED", "format"),
        ("/exports/invoices.csv", RANGE, 404, "NOT_FOUND", "report"),
        (
            "/exports/ledger.csv",
            {**RANGE, "accountId": "not-a-uuid"},
            404,
            "NOT_FOUND",
            "accountId",
        ),
    ]
    for path, params, status, code, field in cases:
        response = await get(tenant, path, **params)
        assert response.status_code == status, (path, params, response.text)
        assert "text/csv" not in response.headers["content-type"]
        error = error_of(response)
        assert (error["code"], error.get("field")) == (code, field), (path, params, error)
    # Another tenant's ids answer exactly as ids that exist nowhere.
    theirs = {
        "accountId": str(other_tenant.account_id),
        "customerId": str(other_tenant.customer_id),
    }
    for report in ("ledger", "usage", "pnl"):
        for name, ident in theirs.items():
            foreign = await get(tenant, f"/exports/{report}.csv", **RANGE, **{name: ident})
            missing_id = str(uuid.uuid4())
            missing = await get(tenant, f"/exports/{report}.csv", **RANGE, **{name: missing_id})
            assert foreign.status_code == missing.status_code == 404
            assert foreign.text.replace(ident, "<id>") == missing.text.replace(missing_id, "<id>")


async def test_authentication_and_rights(books: Books) -> None:
    tenant = books.tenant
    assert (await get(tenant, "/exports/ledger.csv", token="", **RANGE)).status_code == 401
    bad = await get(tenant, "/exports/ledger.csv", token="not.a.jwt", **RANGE)
    assert bad.status_code == 401 and "WWW-Authenticate" in bad.headers
    viewer = tenant.token_for(roles=["finance_viewer"])
    for report in ("ledger", "usage", "pnl"):
        response = await get(tenant, f"/exports/{report}.csv", token=viewer, **RANGE)
        assert response.status_code == 200, response.text
    member = tenant.token_for(roles=["member"])
    refused = await get(tenant, "/exports/ledger.csv", token=member, **RANGE)
    assert refused.status_code == 403 and error_of(refused)["code"] == "FORBIDDEN"
    usage_reader = tenant.token_for(scopes=["usage:read"])
    assert (await get(tenant, "/exports/usage.csv", token=usage_reader, **RANGE)).status_code == 200
    no_ledger = await get(tenant, "/exports/ledger.csv", token=usage_reader, **RANGE)
    assert no_ledger.status_code == 403


async def test_tenant_isolation(books: Books, other_tenant: Tenant) -> None:
    theirs = await get(other_tenant, "/exports/ledger.csv", **RANGE, columns=",".join(LEDGER))
    rows, _ = parse_both(theirs.content)
    assert by_type(rows, "data") == []
    assert str(books.tenant.account_id) not in theirs.text
    assert books.user_id not in theirs.text
    (exact,) = by_type(rows, "total_unrounded")
    assert exact["amount"] == "0" and exact["currency"] == "USD"


async def link_for(tenant: Tenant, input: dict[str, Any], token: str | None = None) -> Any:
    body = await tenant.gql(CREATE_LINK, {"input": input}, token=token)
    assert "errors" not in body, body
    return body["data"]["createExportLink"]


async def test_signed_link(books: Books, state: AppState) -> None:
    tenant = books.tenant
    input = {
        "report": "LEDGER",
        "range": RANGE,
        "columns": ["id", "amount"],
        "filter": {"accountId": str(tenant.account_id), "types": ["USAGE_CHARGE"]},
    }
    link = await link_for(tenant, input)
    assert link["__typename"] == "ExportLink"
    assert link["url"].startswith("http://testserver/exports/ledger.csv?token=")
    expires = datetime.fromisoformat(link["expiresAt"])
    # A link expires on the wall clock (security time), not the business clock.
    assert timedelta(0) < expires - datetime.now(UTC) <= timedelta(seconds=301)
    downloaded = await tenant.client.get(link["url"])  # no Authorization header
    assert downloaded.status_code == 200, downloaded.text
    direct = await get(
        tenant,
        "/exports/ledger.csv",
        **RANGE,
        columns="id,amount",
        accountId=str(tenant.account_id),
        types="USAGE_CHARGE",
    )
    assert downloaded.content == direct.content
    assert len(by_type(parse_both(downloaded.content)[0], "data")) == 4

    token = link["url"].split("token=", 1)[1]
    header, payload, signature = token.split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    for tampered in (f"{header}.{payload}.{flipped}", f"{header}.{payload[:-4]}abcd.{signature}"):
        response = await tenant.client.get(f"/exports/ledger.csv?token={tampered}")
        assert response.status_code == 401
        assert error_of(response)["message"] == "the download link is not valid"
    other_report = await tenant.client.get(f"/exports/pnl.csv?token={token}")
    assert other_report.status_code == 401 and "this report" in error_of(other_report)["message"]
    widened = await tenant.client.get(f"{link['url']}&accountId={uuid.uuid4()}")
    assert widened.status_code == 400 and error_of(widened)["field"] == "token"

    principal = await state.verifier.verify_async(tenant.token)
    expired = links.sign(
        state.keys.active,
        issuer=state.settings.issuer,
        audience=state.settings.audience,
        principal=principal,
        report="ledger",
        params={"start": RANGE["start"], "end": RANGE["end"]},
        ttl=timedelta(seconds=60),
        now=datetime.now(UTC) - timedelta(hours=1),
    )
    response = await tenant.client.get(f"/exports/ledger.csv?token={expired.token}")
    assert response.status_code == 401
    assert error_of(response)["message"] == "the download link has expired: create a new one"
    # A link is no access token, and an access token is no link.
    as_bearer = await tenant.client.post(
        "/graphql",
        json={"query": "{ me { subject } }"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert as_bearer.status_code == 401
    as_link = await tenant.client.get(f"/exports/ledger.csv?token={tenant.token}")
    assert as_link.status_code == 401


async def test_link_mutation_refuses_bad_input_as_typed_errors(
    books: Books, other_tenant: Tenant
) -> None:
    tenant = books.tenant
    cases = [
        (
            {"report": "LEDGER", "range": RANGE, "columns": ["nope"]},
            "ValidationFailed",
            "input.columns",
        ),
        (
            {"report": "LEDGER", "range": {"start": "2020-01-01T00:00:00Z", "end": RANGE["end"]}},
            "ValidationFailed",
            "input.range.end",
        ),
        (
            {"report": "PNL", "range": RANGE, "filter": {"userId": str(uuid.uuid4())}},
            "ValidationFailed",
            "input.filter.userId",
        ),
        (
            {
                "report": "USAGE",
                "range": RANGE,
                "filter": {"accountId": str(other_tenant.account_id)},
            },
            "NotFound",
            "input.filter.accountId",
        ),
        (
            {"report": "LEDGER", "range": RANGE, "filter": {"userId": "nope"}},
            "NotFound",
            "input.filter.userId",
        ),
    ]
    for input, typename, field in cases:
        result = await link_for(tenant, input)
        assert (result["__typename"], result["field"]) == (typename, field), (input, result)
    member = tenant.token_for(roles=["member"])
    body = await tenant.gql(CREATE_LINK, {"input": {"report": "LEDGER", "range": RANGE}}, member)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    usage_reader = tenant.token_for(scopes=["usage:read"])
    body = await tenant.gql(
        CREATE_LINK, {"input": {"report": "LEDGER", "range": RANGE}}, usage_reader
    )
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


# --- streaming ---

SEED = """
INSERT INTO ledger_entries (organization_id, type, account_id, customer_id, occurred_at,
    currency, amount, balance_delta, ai_cost, provider_cost, provider_currency, fx_rate,
    caller_priced, provider, model, input_tokens, output_tokens, idempotency_key, request_hash)
SELECT $1, 'USAGE_CHARGE', $2, $3, $4::timestamptz + make_interval(secs => g),
    'USD', cost * 1.2, -cost * 1.2, cost, cost, 'USD', 1, true, 'openai', 'model-' || (g % 8),
    200 + g % 3000, 50 + g % 700, 'seed-' || g, '\\x00'::bytea
FROM (SELECT g, ((g * 7919) % 100000)::numeric / 10000000 AS cost
      FROM generate_series(1, $5::int) AS g) s
"""


async def test_ledger_streams_in_chunks(
    state: AppState, client: httpx.AsyncClient, mint: Any, database_url: str, app: Any
) -> None:
    tenant = await make_tenant(state, client, mint)
    entries = state.settings.export_chunk_rows * 2 + 17
    start = month(-7)
    async with raw_connection(database_url) as connection:
        await connection.execute(
            SEED, tenant.org.id, tenant.account_id, tenant.customer_id, start, entries
        )
        await balances_as_written(connection, tenant.org.id)
    query = f"start={rfc(start)}&end={rfc(month(-6))}&columns=id,amount,ai_cost"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/exports/ledger.csv",
        "raw_path": b"/exports/ledger.csv",
        "query_string": query.encode(),
        "headers": [(b"authorization", f"Bearer {tenant.token}".encode()), (b"host", b"test")],
        "server": ("test", 80),
        "client": ("127.0.0.1", 1234),
        "root_path": "",
    }
    sent: list[dict[str, Any]] = []

    requested = False
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if requested:  # the client stays connected until the response is complete
            await never.wait()
        requested = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start_message = sent[0]
    assert start_message["status"] == 200
    bodies = [m for m in sent if m["type"] == "http.response.body" and m.get("body")]
    # The header and a chunk per cursor fetch: the file left the server piece by piece.
    assert len(bodies) >= 3
    data = b"".join(m["body"] for m in bodies)
    rows, frame = parse_both(data)
    assert len(by_type(rows, "data")) == entries
    assert frame[frame["row_type"] == "data"]["id"].is_unique
    times = [r for r in rows if r["row_type"] == "data"]
    assert times[0]["amount"] == str(
        round_money(Decimal(7919 % 100000) / 10000000 * Decimal("1.2"), "USD")
    )
    (rounded,) = by_type(rows, "total_rounded")
    (exact,) = by_type(rows, "total_unrounded")
    assert Decimal(rounded["amount"]) == sum(Decimal(r["amount"]) for r in times)
    async with raw_connection(database_url) as connection:
        total = await connection.fetchval(
            "SELECT sum(amount) FROM ledger_entries WHERE organization_id = $1", tenant.org.id
        )
    assert Decimal(exact["amount"]) == total
