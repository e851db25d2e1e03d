"""Observability: JSON log lines with request context and no secrets, /metrics that move with
real writes, refusals, websockets and deliveries, and OpenTelemetry spans only when on."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from starlette.applications import Starlette

from costgraph.alerts.worker import DeliveryWorker, running
from costgraph.app.main import create_app
from costgraph.app.observability.logging import log_handler
from costgraph.app.observability.redaction import REDACTED, Redactor
from costgraph.app.settings import Settings
from costgraph.app.state import AppState
from tests.alerts_support import HttpReceiver, http_receiver, statuses
from tests.conftest import Tenant, make_tenant, raw_connection
from tests.subscriptions_support import USAGE_UPDATES, serving, subscribed
from tests.test_alert_delivery import channel, fast_config, settled
from tests.test_budgets import (
    AUTHORIZE,
    RECORD_USAGE,
    RELEASE,
    SETTLE,
    authorize_input,
    charge,
    set_budget,
)

ME = "query Me { me { subject } }"
TRACED = "query Me { me { subject } organization { slug } }"


@contextlib.contextmanager
def captured_logs(log_format: str = "json", secrets: tuple[str, ...] = ()) -> Iterator[io.StringIO]:
    """The app's log handler on the root logger, writing into a buffer, at INFO."""
    stream = io.StringIO()
    handler = log_handler(log_format, stream, secrets)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


async def scrape(
    client: httpx.AsyncClient, **headers: str
) -> dict[tuple[str, frozenset[Any]], float]:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, frozenset[Any]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


# --- logs ---


async def test_json_lines_carry_request_id_principal_and_organisation(tenant: Tenant) -> None:
    request_id = f"req-{uuid.uuid4().hex[:8]}"
    with captured_logs() as stream:
        response = await tenant.client.post(
            "/graphql",
            json={"query": ME},
            headers={"Authorization": f"Bearer {tenant.token}", "X-Request-ID": request_id},
        )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == request_id
    lines = json_lines(stream)  # every line is one JSON object
    (access,) = [line for line in lines if line.get("request_id") == request_id]
    assert access["logger"] == "costgraph.http"
    assert access["subject"] == "tester"
    assert access["organization_id"] == str(tenant.org.id)
    assert access["level"] == "INFO" and access["timestamp"]
    assert access["message"] == "POST /graphql 200"
    assert access["route"] == "/graphql" and access["status"] == 200
    assert access["method"] == "POST" and access["duration_ms"] >= access["operation_ms"] >= 0
    # One request, one line: its GraphQL operation is on it.
    assert access["operation_type"] == "query" and access["operation_name"] == "Me"
    assert access["outcome"] == "ok" and access["error_codes"] == []
    assert tenant.token not in stream.getvalue()


async def test_a_malformed_request_id_is_replaced(tenant: Tenant) -> None:
    response = await tenant.client.post(
        "/graphql",
        json={"query": ME},
        headers={"Authorization": f"Bearer {tenant.token}", "X-Request-ID": "a b;<script>"},
    )
    generated = response.headers["x-request-id"]
    assert generated != "a b;<script>" and len(generated) == 32
    int(generated, 16)  # 128 fresh random bits in hex


async def test_a_rejected_usage_is_logged_with_its_code(tenant: Tenant) -> None:
    await set_budget(tenant)
    with captured_logs() as stream:
        refused = await tenant.gql(RECORD_USAGE, {"input": charge(tenant, "5.00")})
    assert refused["data"]["recordUsage"]["__typename"] == "BudgetLimitReached"
    (line,) = [
        line
        for line in json_lines(stream)
        if line["logger"] == "costgraph.http" and line.get("organization_id") == str(tenant.org.id)
    ]
    assert line["operation_type"] == "mutation"
    assert line["outcome"] == "rejected"
    assert line["error_codes"] == ["BUDGET_LIMIT_REACHED"]


async def test_an_invalid_token_is_refused_and_never_logged(tenant: Tenant) -> None:
    forged = tenant.token[:-6] + "AAAAAA"
    with captured_logs() as stream:
        response = await tenant.client.post(
            "/graphql", json={"query": ME}, headers={"Authorization": f"Bearer {forged}"}
        )
    assert response.status_code == 401
    text = stream.getvalue()
    assert "token refused" in text
    assert forged not in text and forged.split(".")[1] not in text


def test_secrets_in_messages_extras_and_tracebacks_do_not_come_out() -> None:
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    client_secret = "cgs_" + "x" * 43
    smtp_password = "correct-horse-battery"
    logger = logging.getLogger("costgraph.test")
    for log_format in ("json", "text"):
        with captured_logs(log_format, secrets=(smtp_password,)) as stream:
            logger.info("header was Authorization: Bearer %s", jwt)
            logger.info(
                "client created",
                extra={
                    "client_secret": client_secret,
                    "headers": {"Authorization": f"Bearer {jwt}", "Accept": "json"},
                    "note": f"webhook secret whsec_{'y' * 32} and password={smtp_password}",
                    "input_tokens": 1200,
                },
            )
            try:
                raise RuntimeError(f"SMTP login failed for {smtp_password} with {jwt}")
            except RuntimeError:
                logger.exception("delivery failed")
        out = stream.getvalue()
        for secret in (jwt, client_secret, smtp_password, "whsec_yyyy", jwt.split(".")[1]):
            assert secret not in out, (log_format, secret, out)
        assert REDACTED in out
        assert "1200" in out  # usage token counts are not secrets
        if log_format == "json":
            lines = json_lines(stream)
            assert lines[1]["client_secret"] == REDACTED
            assert lines[1]["headers"] == {"Authorization": REDACTED, "Accept": "json"}
            assert lines[1]["input_tokens"] == 1200
            assert "RuntimeError" in lines[2]["exc_info"]


def test_redactor_keeps_ordinary_text() -> None:
    redactor = Redactor()
    text = "POST /graphql 200 recordUsage for gpt-4o-mini with 1200 input tokens"
    assert redactor.text(text) == text
    assert redactor.text("Bearer abc.def") == f"Bearer {REDACTED}"
    assert redactor.text('{"access_token": "opaque-value"}') == f'{{"access_token": "{REDACTED}"}}'


def test_text_lines_show_the_request_id_and_extras() -> None:
    from costgraph.app.observability.context import RequestContext, current_request

    reset = current_request.set(RequestContext("rid-123", "alice", "org-1"))
    try:
        with captured_logs("text") as stream:
            logging.getLogger("costgraph.test").info("hello", extra={"status": 200})
    finally:
        current_request.reset(reset)
    line = stream.getvalue().strip()
    assert "INFO costgraph.test [rid-123] hello" in line
    assert "subject=alice" in line and "organization_id=org-1" in line and "status=200" in line


# --- metrics ---


async def test_metrics_move_with_usage_refusals_reservations_and_alerts(
    tenant: Tenant, client: httpx.AsyncClient, settings: Settings
) -> None:
    before = await scrape(client)
    await set_budget(tenant)  # hard cap 1.00, thresholds at 50/80/100 %
    ok = await tenant.gql(RECORD_USAGE, {"input": charge(tenant, "0.60")})
    assert ok["data"]["recordUsage"]["__typename"] == "UsageRecorded"
    twice = charge(tenant, "0.01")
    replay = await tenant.gql(RECORD_USAGE, {"input": twice})
    await tenant.gql(RECORD_USAGE, {"input": twice})
    assert replay["data"]["recordUsage"]["__typename"] == "UsageRecorded"
    refused = await tenant.gql(RECORD_USAGE, {"input": charge(tenant, "0.50")})
    assert refused["data"]["recordUsage"]["__typename"] == "BudgetLimitReached"
    held = await tenant.gql(AUTHORIZE, {"input": authorize_input(tenant, "0.10")})
    reservation = held["data"]["authorizeUsage"]["reservation"]["id"]
    released = await tenant.gql(RELEASE, {"id": reservation})
    assert released["data"]["releaseReservation"]["state"] == "RELEASED"
    await tenant.gql(RELEASE, {"id": reservation})  # again: closes nothing, counts nothing
    after = await scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("costgraph_usage_events_ingested_total", via="recordUsage") == 2
    assert moved("costgraph_usage_events_replayed_total", via="recordUsage") == 1
    assert moved("costgraph_usage_events_rejected_total", code="BUDGET_LIMIT_REACHED") == 1
    assert moved("costgraph_reservations_total", event="authorized") == 1
    assert moved("costgraph_reservations_total", event="released") == 1
    assert moved("costgraph_alerts_raised_total", code="BUDGET_THRESHOLD") == 1  # 50 %
    assert moved("costgraph_graphql_operations_total", type="mutation", outcome="rejected") == 1
    assert moved("costgraph_graphql_operations_total", type="mutation", outcome="ok") >= 6
    assert (
        moved("costgraph_http_requests_total", route="/graphql", method="POST", status="200") == 8
    )
    assert (
        moved("costgraph_http_request_duration_seconds_count", route="/graphql", method="POST") == 8
    )
    assert value(after, "costgraph_db_pool_size") == settings.db_pool_size
    assert value(after, "costgraph_db_pool_checked_out") >= 0
    # Labels never carry ids: no organisation, account or reservation id anywhere.
    text = (await client.get("/metrics")).text
    for ident in (str(tenant.org.id), str(tenant.account_id), reservation):
        assert ident not in text


async def test_expired_and_settled_reservations_are_counted(
    tenant: Tenant, client: httpx.AsyncClient, database_url: str
) -> None:
    await set_budget(tenant)
    before = await scrape(client)
    lapsed = await tenant.gql(AUTHORIZE, {"input": authorize_input(tenant, "0.50")})
    async with raw_connection(database_url) as connection:  # let it lapse
        await connection.execute(
            "UPDATE reservations SET expires_at = now() - interval '1 second' WHERE id = $1",
            uuid.UUID(lapsed["data"]["authorizeUsage"]["reservation"]["id"]),
        )
    fresh = await tenant.gql(AUTHORIZE, {"input": authorize_input(tenant, "0.60")})  # sweeps it
    reservation = fresh["data"]["authorizeUsage"]["reservation"]["id"]
    settled = await tenant.gql(
        SETTLE, {"input": {"reservationId": reservation, "usage": charge(tenant, "0.40")}}
    )
    assert settled["data"]["settleUsage"]["__typename"] == "UsageRecorded"
    after = await scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("costgraph_reservations_total", event="authorized") == 2
    assert moved("costgraph_reservations_total", event="expired") == 1
    assert moved("costgraph_reservations_total", event="settled") == 1
    assert moved("costgraph_usage_events_ingested_total", via="settleUsage") == 1


async def test_a_batch_refusal_counts_every_event(
    tenant: Tenant, client: httpx.AsyncClient
) -> None:
    from tests.test_ledger import RECORD_BATCH

    before = await scrape(client)
    await set_budget(tenant)
    batch = [charge(tenant, "0.40"), charge(tenant, "0.40"), charge(tenant, "0.40")]
    refused = await tenant.gql(RECORD_BATCH, {"input": batch})
    assert refused["data"]["recordUsageBatch"]["__typename"] == "BudgetLimitReached"
    after = await scrape(client)
    name = "costgraph_usage_events_rejected_total"
    assert (
        value(after, name, code="BUDGET_LIMIT_REACHED")
        - value(before, name, code="BUDGET_LIMIT_REACHED")
        == 3
    )


async def test_websocket_gauges_follow_connections(
    app: Starlette, tenant: Tenant, client: httpx.AsyncClient
) -> None:
    before = await scrape(client)
    async with serving(app, lifespan=False) as server:
        port = server.port  # type: ignore[attr-defined]
        with captured_logs() as stream:
            async with subscribed(port, tenant.token, USAGE_UPDATES):
                ack_seen = await scrape(client)
                for _ in range(100):  # the subscribe message is handled asynchronously
                    if value(ack_seen, "costgraph_live_subscribers") > value(
                        before, "costgraph_live_subscribers"
                    ):
                        break
                    await _tick()
                    ack_seen = await scrape(client)
            closed = await scrape(client)
            for _ in range(100):
                if (
                    value(closed, "costgraph_websocket_connections_open")
                    == value(before, "costgraph_websocket_connections_open")
                    and "costgraph.graphql.operation" in stream.getvalue()
                ):
                    break
                await _tick()
                closed = await scrape(client)
    open_now = "costgraph_websocket_connections_open"
    assert value(ack_seen, open_now) == value(before, open_now) + 1
    assert (
        value(ack_seen, "costgraph_live_subscribers")
        == value(before, "costgraph_live_subscribers") + 1
    )
    accepted = "costgraph_websocket_connections_total"
    assert (
        value(ack_seen, accepted, outcome="accepted")
        == value(before, accepted, outcome="accepted") + 1
    )
    assert value(closed, open_now) == value(before, open_now)
    assert value(closed, "costgraph_live_subscribers") == value(
        before, "costgraph_live_subscribers"
    )
    lines = {line["message"]: line for line in json_lines(stream)}
    connected, ended = lines["websocket connected"], lines["websocket closed"]
    for line in (connected, ended):
        assert line["subject"] == "tester"
        assert line["organization_id"] == str(tenant.org.id)
    assert connected["request_id"] == ended["request_id"]
    assert ended["duration_ms"] > 0
    # A websocket's operation has a line of its own when it ends.
    (operation,) = [
        line for line in lines.values() if line["logger"] == "costgraph.graphql.operation"
    ]
    assert operation["operation_type"] == "subscription" and operation["outcome"] == "ok"
    assert operation["request_id"] == connected["request_id"]
    assert tenant.token not in stream.getvalue()


async def _tick() -> None:
    import asyncio

    await asyncio.sleep(0.02)


@pytest.fixture
async def receiver() -> AsyncIterator[HttpReceiver]:
    async with http_receiver() as served:
        yield served


async def test_delivery_outcomes_are_counted_by_channel_and_outcome(
    tenant: Tenant,
    state: AppState,
    client: httpx.AsyncClient,
    database_url: str,
    receiver: HttpReceiver,
) -> None:
    receiver.behaviours["flaky"] = statuses(500, 200)
    hook = await channel(tenant, "WEBHOOK", receiver.url("flaky"))
    receiver.secrets["flaky"] = hook["signingSecret"]
    await set_budget(tenant, hardCap=False, thresholds=[50])
    before = await scrape(client)
    await tenant.gql(RECORD_USAGE, {"input": charge(tenant, "0.60")})
    worker = DeliveryWorker(
        state.units, fast_config(state), on_outcome=state.metrics.delivery_outcome
    )
    async with running(worker):
        await settled(database_url, tenant, 1)
    after = await scrape(client)
    name = "costgraph_alert_deliveries_total"
    for outcome in ("HTTP_STATUS", "DELIVERED"):
        labels = {"channel": "WEBHOOK", "outcome": outcome}
        assert value(after, name, **labels) - value(before, name, **labels) == 1


async def test_metrics_can_require_a_token_or_be_off(settings: Settings, database_url: str) -> None:
    guarded = settings.model_copy(update={"metrics_token": SecretStr("scrape-secret-123")})
    off = settings.model_copy(update={"metrics_enabled": False})
    for built, expected in ((guarded, 401), (off, 404)):
        app = create_app(built, database_url)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            assert (await http.get("/metrics")).status_code == expected
            if built is guarded:
                wrong = await http.get("/metrics", headers={"Authorization": "Bearer nope"})
                assert wrong.status_code == 401
                samples = await scrape(http, Authorization="Bearer scrape-secret-123")
                assert (
                    "costgraph_http_requests_total",
                    frozenset({"route": "/metrics", "method": "GET", "status": "401"}.items()),
                ) in samples


async def test_two_apps_keep_separate_registries(
    settings: Settings, database_url: str, client: httpx.AsyncClient
) -> None:
    other = create_app(settings, database_url)
    transport = httpx.ASGITransport(app=other)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        for _ in range(3):
            await http.get("/healthz")
        mine = await scrape(http)
    labels = {"route": "/healthz", "method": "GET", "status": "200"}
    assert value(mine, "costgraph_http_requests_total", **labels) == 3


# --- tracing ---


@pytest.fixture
async def traced(
    settings: Settings, database_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, InMemorySpanExporter, AppState]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(settings, database_url, tracer_provider=provider)
    async with app.router.lifespan_context(app):
        graphql = next(r for r in app.routes if getattr(r, "path", "") == "/graphql")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            yield http, exporter, graphql.app.state  # type: ignore[attr-defined]


async def test_spans_appear_when_tracing_is_on(
    traced: tuple[httpx.AsyncClient, InMemorySpanExporter, AppState], mint: Any
) -> None:
    http, exporter, state = traced
    tenant = await make_tenant(state, http, mint)
    exporter.clear()
    secret_literal = "whsec_inline_literal_in_a_query"
    with captured_logs() as stream:
        response = await http.post(
            "/graphql",
            json={
                "query": TRACED + f' query Other {{ me {{ subject }} }} # "{secret_literal}"',
                "operationName": "Me",
            },
            headers={"Authorization": f"Bearer {tenant.token}"},
        )
    assert response.status_code == 200, response.text
    spans = exporter.get_finished_spans()
    by_name = {span.name: span for span in spans}
    operation = by_name["query Me"]
    server = next(s for s in spans if s.name.startswith("POST"))
    assert operation.attributes is not None
    assert operation.attributes["graphql.operation.type"] == "query"
    assert operation.context.trace_id == server.context.trace_id
    assert "GraphQL Resolving: me" in by_name
    sql = [s for s in spans if "postgresql" in str(dict(s.attributes or {}))]
    assert sql, [s.name for s in spans]
    assert all(s.context.trace_id == server.context.trace_id for s in sql)
    everything = " ".join(str(dict(s.attributes or {})) + s.name for s in spans)
    assert tenant.token not in everything and secret_literal not in everything
    # Log lines written while serving carry the trace id.
    trace_id = format(server.context.trace_id, "032x")
    access = next(line for line in json_lines(stream) if line["logger"] == "costgraph.http")
    assert access["trace_id"] == trace_id
    # Probes and scrapes make no spans.
    exporter.clear()
    assert (await http.get("/healthz")).status_code == 200
    assert (await http.get("/metrics")).status_code == 200
    assert not [s.name for s in exporter.get_finished_spans() if s.name.startswith("GET")]


def test_tracing_is_off_by_default_and_costs_nothing(settings: Settings) -> None:
    """Off by default: no tracing middleware or extension, their modules never imported."""
    program = (
        "import sys\n"
        "from costgraph.app.main import create_app\n"
        "from costgraph.app.settings import Settings\n"
        f"settings = Settings(data_dir={str(settings.data_dir)!r})\n"
        "assert settings.otel_enabled is False\n"
        "app = create_app(settings, 'postgresql://nobody@127.0.0.1:1/none')\n"
        "names = [m.cls.__name__ for m in app.user_middleware]\n"
        "assert names[0] == 'ObservabilityMiddleware', names\n"
        "tracing = ('costgraph.app.observability.tracing', 'opentelemetry.instrumentation',\n"
        "           'opentelemetry.sdk.trace', 'strawberry.extensions.tracing.opentelemetry')\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(tracing))\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


async def test_the_overhead_bench_runs_at_toy_size(server_url: str) -> None:
    from bench.observability_overhead import measure

    rows = await measure(server_url, requests=5, rounds=1)
    assert [row.ours.operations for row in rows] == [5, 5]
    assert all(row.ours.seconds > 0 and row.ceiling.seconds > 0 for row in rows)


def test_configure_logging_installs_one_handler_for_everything(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """What `costgraph serve` and the ASGI factory install: one root handler, uvicorn's lines
    through it, uvicorn's access line off (the app writes its own), configured secrets out."""
    from costgraph.app.observability.logging import configure_logging

    root = logging.getLogger()
    names = ("uvicorn", "uvicorn.error", "uvicorn.access")
    saved = (list(root.handlers), root.level)
    saved_uvicorn = [
        (logging.getLogger(n).handlers[:], logging.getLogger(n).propagate) for n in names
    ]
    configured = settings.model_copy(
        update={"log_format": "json", "smtp_password": SecretStr("smtp-pass-1234567")}
    )
    try:
        configure_logging(configured, "warning")
        assert len(root.handlers) == 1 and root.level == logging.WARNING
        logging.getLogger("uvicorn.error").warning("from uvicorn")
        logging.getLogger("uvicorn.access").warning("an access line of uvicorn's")
        logging.getLogger("costgraph.test").warning("login with smtp-pass-1234567 failed")
        logging.getLogger("costgraph.test").info("below the level")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        for name, (handlers, propagate) in zip(names, saved_uvicorn, strict=True):
            logging.getLogger(name).handlers[:] = handlers
            logging.getLogger(name).propagate = propagate
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    assert [(line["logger"], line["message"]) for line in lines] == [
        ("uvicorn.error", "from uvicorn"),
        ("costgraph.test", f"login with {REDACTED} failed"),
    ]
