"""costgraph.client against real servers this test starts (no mocks): reserve-then-settle,
a retry after a dropped answer, token refresh across expiry, live updates across a restart
and a token's expiry, the operator commands, and the typed results checked against the SDL."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import os
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, get_args, get_origin

import httpx
import jwt
import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    build_schema,
    parse,
    validate,
)

from costgraph.app.settings import Settings
from costgraph.client import (
    AsyncCostGraph,
    BudgetLimitReached,
    CostGraph,
    RetryPolicy,
    StreamUsage,
    UsageEvent,
    UsageUpdate,
    anthropic_usage,
    openai_usage,
)
from costgraph.client.models import RESULTS
from costgraph.client.operations import SOURCES
from costgraph.client.shapes import camel, hints, unwrap_optional
from costgraph.kernel.clock import utcnow
from tests import dates
from tests.conftest import Tenant, raw_connection
from tests.dates import rfc
from tests.servers import free_port, running_servers
from tests.test_budgets import set_budget
from tests.verify_support import assert_no_drift

ROOT = Path(__file__).resolve().parent.parent
FAST = RetryPolicy(attempts=40, initial=0.05, maximum=0.5, jitter=0.1)


@pytest.fixture
def server(settings: Settings) -> Iterator[str]:
    """One server process of its own (its business clock starts with the test's); OAuth
    tokens live 60 s, with no leeway, so that a test can outlive one. Mid-month: a test that
    outlives a token must not see the month turn under it (a suite run on a clock set to a
    month's last seconds would)."""
    dates.set_now(dates.month(0, 15, 12))
    env = {"COSTGRAPH_OAUTH_TOKEN_TTL_SECONDS": "60", "COSTGRAPH_JWT_LEEWAY_SECONDS": "0"}
    with running_servers(settings, 1, **env) as (url,):
        yield f"{url}/graphql"


def client(url: str, tenant: Tenant, **options: Any) -> AsyncCostGraph:
    return AsyncCostGraph(url, token=tenant.token, retry=FAST, clock=utcnow, **options)


async def entries_with_key(tenant: Tenant, database_url: str, key: str) -> int:
    async with raw_connection(database_url) as connection:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM ledger_entries WHERE organization_id = $1"
            " AND idempotency_key = $2",
            tenant.org.id,
            key,
        )
    return count


async def eventually(check: Callable[[], bool], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


class Collector:
    """Runs a live stream in a task and keeps what it yields."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.updates: list[UsageUpdate] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for update in self.stream:
            self.updates.append(update)

    def events(self) -> int:
        """The account's event count in the newest update (0 before any)."""
        if not self.updates or not self.updates[-1].totals:
            return 0
        return sum(total.events for total in self.updates[-1].totals)

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.wait([self.task])
        assert self.task.cancelled(), self.task.exception()


@pytest.fixture
async def collectors() -> AsyncIterator[list[Collector]]:
    made: list[Collector] = []
    yield made
    for collector in made:
        await collector.stop()


# --- reserve, settle, release --------------------------------------------------------------


async def test_reserve_settles_releases_and_refuses(
    server: str, tenant: Tenant, state: Any
) -> None:
    budget = (await set_budget(tenant, limit="1.00"))["data"]["setBudget"]
    account = str(tenant.account_id)
    estimate = {"estimated_cost": "0.30", "estimated_cost_currency": "USD"}
    async with client(server, tenant) as cg:
        # Success: the block reports the response's usage; leaving settles with it.
        async with cg.reserve(account, provider="openai", model="gpt-4o", **estimate) as hold:
            assert (await cg.budget_status(budget["id"])).reserved == Decimal("0.30")
            hold.observe(
                {
                    "model": "gpt-4o-2024-08-06",
                    "usage": {
                        "prompt_tokens": 1200,
                        "completion_tokens": 300,
                        "prompt_tokens_details": {"cached_tokens": 200},
                        "completion_tokens_details": {"reasoning_tokens": 50},
                    },
                }
            )
            hold.report(provider_cost="0.25", provider_currency="USD")
        assert hold.settled is not None and not hold.settled.replayed
        entry = hold.settled.entry
        assert (entry.input_tokens, entry.cached_input_tokens) == (1000, 200)
        assert (entry.output_tokens, entry.reasoning_tokens) == (250, 50)
        assert entry.model == "gpt-4o" and entry.ai_cost == Decimal("0.25")
        status = await cg.budget_status(budget["id"])
        assert (status.spent, status.reserved) == (Decimal("0.25"), 0)

        # A stream: its chunks arrive inside the block (Anthropic's events, cumulative).
        async with cg.reserve(
            account, provider="anthropic", model="claude-sonnet-4", **estimate
        ) as streamed:
            for event in ANTHROPIC_STREAM:
                streamed.observe(event)
            streamed.report(provider_cost="0.05", provider_currency="USD")
        assert streamed.settled is not None
        got = streamed.settled.entry
        assert (got.input_tokens, got.cached_input_tokens, got.cache_write_tokens) == (25, 100, 40)
        assert got.output_tokens == 15

        # An exception inside the block releases the hold and passes through.
        with pytest.raises(RuntimeError, match="the model call failed"):
            async with cg.reserve(account, provider="openai", model="gpt-4o", **estimate) as failed:
                raise RuntimeError("the model call failed")
        assert failed.settled is None
        status = await cg.budget_status(budget["id"])
        assert (status.spent, status.reserved) == (Decimal("0.30"), 0)

        # Over budget: entering raises the typed refusal, and nothing is held by it.
        async with cg.reserve(account, provider="openai", model="gpt-4o", **estimate) as first:
            with pytest.raises(BudgetLimitReached) as refused:
                async with cg.reserve(
                    account,
                    provider="openai",
                    model="gpt-4o",
                    estimated_cost="0.50",
                    estimated_cost_currency="USD",
                ):
                    raise AssertionError("entered a block over budget")
            assert refused.value.code == "BUDGET_LIMIT_REACHED" and refused.value.message
            assert refused.value.details["budgetId"] == budget["id"]
            assert (await cg.budget_status(budget["id"])).reserved == Decimal("0.30")
            first.report(
                input_tokens=10, output_tokens=5, provider_cost="0.01", provider_currency="USD"
            )
        status = await cg.budget_status(budget["id"])
        assert (status.spent, status.reserved) == (Decimal("0.31"), 0)
    await assert_no_drift(state, tenant.org.id)


ANTHROPIC_STREAM: list[dict[str, Any]] = [
    {
        "type": "message_start",
        "message": {
            "model": "claude-sonnet-4-20250514",
            "usage": {
                "input_tokens": 25,
                "output_tokens": 1,
                "cache_read_input_tokens": 100,
                "cache_creation_input_tokens": 40,
            },
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 15}},
    {"type": "message_stop"},
]


def test_provider_usage_in_one_line() -> None:
    chat = {
        "model": "gpt-4o-mini-2024-07-18",
        "usage": {
            "prompt_tokens": 1800,
            "completion_tokens": 350,
            "prompt_tokens_details": {"cached_tokens": 800},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }
    assert openai_usage(chat, model="gpt-4o-mini") == {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "input_tokens": 1000,
        "output_tokens": 350,
        "cached_input_tokens": 800,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
    }
    responses_api = {
        "object": "response",
        "model": "o4-mini",
        "usage": {
            "input_tokens": 500,
            "input_tokens_details": {"cached_tokens": 100},
            "output_tokens": 900,
            "output_tokens_details": {"reasoning_tokens": 600},
        },
    }
    counts = openai_usage(responses_api)
    assert (counts["input_tokens"], counts["cached_input_tokens"]) == (400, 100)
    assert (counts["output_tokens"], counts["reasoning_tokens"]) == (300, 600)
    message = {
        "type": "message",
        "model": "claude-sonnet-4",
        "usage": {
            "input_tokens": 30,
            "output_tokens": 70,
            "cache_read_input_tokens": 1000,
            "cache_creation_input_tokens": 200,
        },
    }
    usage = anthropic_usage(message)
    assert (usage["input_tokens"], usage["cached_input_tokens"]) == (30, 1000)
    assert (usage["cache_write_tokens"], usage["output_tokens"]) == (200, 70)
    # A stream: chunks count until the provider's final usage replaces the count.
    meter = StreamUsage("openai", "gpt-4o", input_tokens=50)
    for text in ("Hel", "lo", ""):
        meter.observe({"choices": [{"delta": {"content": text}}], "usage": None})
    assert (meter.counts()["input_tokens"], meter.counts()["output_tokens"]) == (50, 2)
    meter.observe({"choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": 3}})
    assert (meter.counts()["input_tokens"], meter.counts()["output_tokens"]) == (40, 3)
    anthropic = StreamUsage("anthropic", "claude-sonnet-4")
    for event in ANTHROPIC_STREAM:
        anthropic.observe(event)
    assert anthropic.usage()["output_tokens"] == 15 and anthropic.chunks == 2


# --- a dropped answer, retried -------------------------------------------------------------


class DroppingProxy:
    """A TCP proxy to the server that loses the first ``drops`` answers: it forwards the
    request, and closes the client's connection when the answer starts to come back."""

    def __init__(self, target: str, drops: int) -> None:
        self.target_port = httpx.URL(target).port
        self.drops = drops
        self.connections = 0
        self.dropped = 0

    async def __aenter__(self) -> DroppingProxy:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        drop = self.dropped < self.drops
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def upstream() -> None:
            while data := await reader.read(65536):
                up_writer.write(data)
                await up_writer.drain()

        async def downstream() -> None:
            while data := await up_reader.read(65536):
                if drop:
                    self.dropped += 1
                    writer.transport.abort()  # the server answered; the client never hears it
                    return
                writer.write(data)
                await writer.drain()

        try:
            await asyncio.wait(
                [asyncio.create_task(upstream()), asyncio.create_task(downstream())],
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            up_writer.close()
            writer.close()


async def test_a_retry_after_a_dropped_answer_writes_one_entry(
    server: str, tenant: Tenant, database_url: str, state: Any
) -> None:
    async with DroppingProxy(server, drops=1) as proxy:
        via_proxy = f"http://127.0.0.1:{proxy.port}/graphql"
        async with client(via_proxy, tenant) as cg:
            recorded = await cg.record_usage(
                str(tenant.account_id),
                provider="openai",
                model="gpt-4o-mini",
                input_tokens=1200,
                output_tokens=300,
                provider_cost="0.0004",
                provider_currency="USD",
            )
        assert proxy.dropped == 1 and proxy.connections == 2
        # The first attempt was written and its answer lost: the retry, with the same
        # generated key, is a replay of it.
        assert recorded.replayed is True
        key = recorded.entry.idempotency_key
        assert await entries_with_key(tenant, database_url, key) == 1

        # The same through the synchronous client, for a batch (keys made per event).
        proxy.drops = 2
        events = [
            UsageEvent(
                account_id=str(tenant.account_id),
                provider="openai",
                model="gpt-4o-mini",
                input_tokens=100 * n,
                occurred_at=utcnow(),
                provider_cost="0.0001",
                provider_currency="USD",
            )
            for n in range(1, 4)
        ]

        def post_batch() -> Any:
            with CostGraph(via_proxy, token=tenant.token, retry=FAST) as sync:
                return sync.record_usage_batch(events)

        batch = await asyncio.to_thread(post_batch)
        assert proxy.dropped == 2
        assert (batch.recorded, batch.replayed) == (0, 3), "the lost first attempt wrote them"
        for entry in batch.entries:
            assert await entries_with_key(tenant, database_url, entry.idempotency_key) == 1
    await assert_no_drift(state, tenant.org.id)


# --- tokens and live updates ---------------------------------------------------------------


async def test_token_refresh_and_live_updates_across_expiry(
    server: str, tenant: Tenant, collectors: list[Collector]
) -> None:
    registered = await tenant.gql(
        """mutation($input: OAuthClientInput!) {
          registerOAuthClient(input: $input) { clientId clientSecret } }""",
        {"input": {"name": "client test", "scopes": ["usage:write", "usage:read"]}},
    )
    credentials = registered["data"]["registerOAuthClient"]
    account = str(tenant.account_id)
    async with AsyncCostGraph(
        server,
        client_id=credentials["clientId"],
        client_secret=credentials["clientSecret"],
        retry=FAST,
        clock=utcnow,
    ) as cg:
        live = Collector(cg.usage_updates("ACCOUNT", account))
        collectors.append(live)
        await eventually(lambda: bool(live.updates), "the first snapshot")
        assert live.updates[0].kind == "SNAPSHOT"
        first = await cg.auth.token()

        async def record(n: int) -> None:
            await cg.record_usage(
                account,
                provider="openai",
                model="gpt-4o-mini",
                input_tokens=n,
                provider_cost="0.001",
                provider_currency="USD",
            )

        await record(1)
        await eventually(lambda: live.events() == 1, "the first event")

        expires = jwt.decode(first, options={"verify_signature": False})["exp"]
        await asyncio.sleep(max(0.0, expires - time.time()) + 1.5)
        async with httpx.AsyncClient() as http:
            stale = await http.post(
                server,
                json={"query": "{ me { subject } }"},
                headers={"Authorization": f"Bearer {first}"},
            )
        assert stale.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

        await record(2)  # with the refreshed token
        assert await cg.auth.token() != first
        assert getattr(cg.auth, "fetched", 0) >= 2
        await eventually(lambda: live.events() == 2, "the event after the token's expiry")
        # The stream reconnected with the next token when it was refreshed (before the
        # server would have closed the socket at the old one's expiry).
        assert live.stream.connections >= 2
        assert [u.kind for u in live.updates].count("SNAPSHOT") >= 2


async def test_live_updates_survive_a_server_restart(
    settings: Settings, tenant: Tenant, collectors: list[Collector]
) -> None:
    port = free_port()
    account = str(tenant.account_id)
    url = f"http://127.0.0.1:{port}/graphql"
    async with client(url, tenant) as cg:

        async def record() -> None:
            await cg.record_usage(
                account,
                provider="openai",
                model="gpt-4o-mini",
                output_tokens=10,
                provider_cost="0.002",
                provider_currency="USD",
            )

        with running_servers(settings, 1, ports=[port]):
            live = Collector(cg.usage_updates("ACCOUNT", account))
            collectors.append(live)
            await eventually(lambda: bool(live.updates), "the first snapshot")
            await record()
            await eventually(lambda: live.events() == 1, "the first event")
        seen = len(live.updates)
        with running_servers(settings, 1, ports=[port]):
            await eventually(lambda: len(live.updates) > seen, "the snapshot after the restart")
            await record()
            await eventually(lambda: live.events() == 2, "the event after the restart")
        assert live.stream.connections == 2
        after = [u.kind for u in live.updates[seen:]]
        assert after == ["SNAPSHOT", "EVENT"], after


# --- the operator commands -----------------------------------------------------------------


def test_usage_post_and_pnl_commands(server: str, tenant: Tenant) -> None:
    env = {**os.environ, "COSTGRAPH_URL": server, "COSTGRAPH_TOKEN": tenant.token}
    account = str(tenant.account_id)
    now = utcnow()

    def costgraph(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["costgraph", *args], env=env, capture_output=True, text=True, timeout=120
        )

    posted = costgraph(
        "usage", "post", "--account", account, "--provider", "openai", "--model", "gpt-4o",
        "--input-tokens", "1000", "--output-tokens", "200", "--provider-cost", "0.0125",
        "--provider-currency", "USD", "--occurred-at", rfc(now), "--idempotency-key", "cli-1",
    )  # fmt: skip
    assert posted.returncode == 0, posted.stderr
    assert "replayed         no" in posted.stdout and "0.012500000000 USD" in posted.stdout
    again = costgraph(
        "usage", "post", "--json", "--account", account, "--provider", "openai", "--model",
        "gpt-4o", "--input-tokens", "1000", "--output-tokens", "200", "--provider-cost",
        "0.0125", "--provider-currency", "USD", "--occurred-at", rfc(now),
        "--idempotency-key", "cli-1",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["replayed"] is True
    conflict = costgraph(
        "usage", "post", "--account", account, "--provider", "openai", "--model", "gpt-4o",
        "--input-tokens", "5", "--idempotency-key", "cli-1", "--occurred-at", rfc(now),
        "--provider-cost", "0.0125", "--provider-currency", "USD",
    )  # fmt: skip
    assert conflict.returncode == 1 and "IDEMPOTENCY_CONFLICT" in conflict.stderr

    start, end = (now - dt.timedelta(days=1)).date(), (now + dt.timedelta(days=2)).date()
    table = costgraph("pnl", "--account", account, "--from", str(start), "--to", str(end))
    assert table.returncode == 0, table.stderr
    assert "AI cost        0.012500000000 USD" in table.stdout and "events" in table.stdout
    figures = costgraph(
        "pnl", "--account", account, "--from", str(start), "--to", str(end), "--json"
    )
    assert figures.returncode == 0, figures.stderr
    pnl = json.loads(figures.stdout)
    assert (pnl["event_count"], Decimal(pnl["ai_cost"])) == (1, Decimal("0.0125"))
    assert pnl["tokens"]["total"] == 1200
    bad = costgraph("pnl", "--from", str(end), "--to", str(start))
    assert bad.returncode == 2 and "--from must be before --to" in bad.stderr


# --- the typed results and documents against the committed SDL ------------------------------

SCALARS: dict[Any, set[str]] = {
    str: {"String", "ID", "CurrencyCode"},
    int: {"Int"},
    bool: {"Boolean"},
    float: {"Float"},
    Decimal: {"Decimal"},
    dt.datetime: {"DateTime"},
    dt.date: {"Date"},
}


def _check(hint: Any, graphql_type: Any, where: str) -> list[str]:
    inner, optional = unwrap_optional(hint)
    problems = []
    if isinstance(graphql_type, GraphQLNonNull):
        graphql_type = graphql_type.of_type
    elif not optional:
        problems.append(f"{where}: nullable in the SDL, not Optional here")
    if get_origin(inner) is list:
        if not isinstance(graphql_type, GraphQLList):
            return [*problems, f"{where}: a list here, {graphql_type} in the SDL"]
        return problems + _check(get_args(inner)[0], graphql_type.of_type, f"{where}[]")
    if dataclasses.is_dataclass(inner):
        if not isinstance(graphql_type, GraphQLObjectType) or graphql_type.name != getattr(
            inner, "TYPENAME", None
        ):
            problems.append(f"{where}: {inner.__name__} here, {graphql_type} in the SDL")
        return problems
    if isinstance(graphql_type, GraphQLEnumType):
        return problems if inner is str else [*problems, f"{where}: enum {graphql_type} not str"]
    if not isinstance(graphql_type, GraphQLScalarType) or graphql_type.name not in SCALARS.get(
        inner, set()
    ):
        problems.append(f"{where}: {inner} here, {graphql_type} in the SDL")
    return problems


def test_typed_results_and_documents_match_the_committed_sdl() -> None:
    schema = build_schema((ROOT / "schema" / "schema.graphql").read_text(encoding="utf-8"))
    problems: list[str] = []
    for model in RESULTS:
        sdl_type = schema.type_map.get(model.TYPENAME)  # type: ignore[attr-defined]
        assert isinstance(sdl_type, GraphQLObjectType), model
        kinds = hints(model)
        for field in dataclasses.fields(model):
            name = camel(field.name)
            if name not in sdl_type.fields:
                problems.append(f"{sdl_type.name}.{name}: not in the SDL")
                continue
            where = f"{sdl_type.name}.{name}"
            problems += _check(kinds[field.name], sdl_type.fields[name].type, where)
    for name, source in SOURCES.items():
        problems += [f"{name}: {error.message}" for error in validate(schema, parse(source))]
    assert problems == []
