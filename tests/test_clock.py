"""The injected business clock: how a test, the app and a server process started by a test
read "now" (costgraph.kernel.clock, COSTGRAPH_CLOCK_START, COSTGRAPH_TEST_NOW)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import ValidationError

from costgraph.app import business_clock
from costgraph.app.settings import Settings
from costgraph.kernel import clock
from costgraph.kernel.clock import ShiftedClock, SystemClock, parse_rfc3339, utcnow
from tests import dates
from tests.conftest import TEST_NOW, Tenant
from tests.servers import running_servers

DEPOSIT_NOW = """mutation($input: DepositInput!) { deposit(input: $input) {
  __typename ... on LedgerEntryRecorded { entry { occurredAt } }
  ... on UserError { code message field } } }"""


def test_a_shifted_clock_starts_at_its_instant_and_ticks() -> None:
    start = datetime(2030, 6, 30, 23, 59, 59, tzinfo=UTC)
    shifted = ShiftedClock(start)
    first = shifted.now()
    time.sleep(0.01)
    second = shifted.now()
    assert start <= first < second < start + timedelta(seconds=5)
    with pytest.raises(ValueError, match="time zone"):
        ShiftedClock(datetime(2030, 1, 1))


def test_every_test_starts_on_a_fresh_clock() -> None:
    """At COSTGRAPH_TEST_NOW when it is set (the anchor is exactly that instant), else on
    the system clock; the date helpers count from the test's start."""
    if TEST_NOW is None:
        assert isinstance(clock.installed(), SystemClock)
        assert abs(dates.now() - datetime.now(UTC)) < timedelta(minutes=1)
    else:
        assert isinstance(clock.installed(), ShiftedClock)
        assert dates.now() == TEST_NOW
    assert timedelta(0) <= utcnow() - dates.now() < timedelta(minutes=1)
    assert dates.month() <= dates.now() < dates.month(1)
    assert dates.month(-1) < dates.month() == dates.month(0, 1)
    assert dates.rfc(dates.month(-1)).endswith("-01T00:00:00Z")


def test_a_test_may_move_the_clock() -> None:
    """``set_now`` runs the clock (and the helpers) from another instant, for this test only
    (the next test starts afresh: see the test above, whichever order they run in)."""
    target = dates.month(-14, 28, 23, 59)
    dates.set_now(target)
    assert dates.now() == target
    assert timedelta(0) <= utcnow() - target < timedelta(minutes=1)
    # A server process started now would start where the test's clock is.
    started = parse_rfc3339(dates.clock_environment()["COSTGRAPH_CLOCK_START"])
    assert timedelta(0) <= started - target < timedelta(minutes=1)


def test_clock_start_setting() -> None:
    assert Settings(clock_start=None).clock_start is None
    assert Settings(clock_start="").clock_start is None
    parsed = Settings(clock_start="2031-01-02T03:04:05+02:00").clock_start
    assert parsed == datetime(2031, 1, 2, 1, 4, 5, tzinfo=UTC)
    for bad in ("2031-01-02", "2031-01-02T03:04:05", "soon"):
        with pytest.raises(ValidationError, match="clock_start"):
            Settings(clock_start=bad)
    with pytest.raises(ValidationError, match="time zone"):
        Settings(clock_start=datetime(2031, 1, 2))


def test_app_startup_installs_the_configured_clock() -> None:
    start = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
    business_clock.install_configured_clock(Settings(clock_start=start))
    assert timedelta(0) <= utcnow() - start < timedelta(seconds=5)
    installed = clock.installed()
    # Asked again for the same start (the CLI, then the app it builds): the clock runs on.
    business_clock.install_configured_clock(Settings(clock_start=start))
    assert clock.installed() is installed
    # No start configured: the clock in place stays.
    business_clock.install_configured_clock(Settings())
    assert clock.installed() is installed


async def test_a_server_process_runs_on_the_tests_clock(tenant: Tenant, settings: Settings) -> None:
    """A server a test starts gets the test's clock (COSTGRAPH_CLOCK_START): a deposit with no
    occurredAt is dated by that clock, not by the machine's."""
    target = dates.month(-5, 14, 9, 30)
    dates.set_now(target)
    with running_servers(settings, 1) as (url,):
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            response = await http.post(
                "/graphql",
                json={
                    "query": DEPOSIT_NOW,
                    "variables": {
                        "input": {
                            "idempotencyKey": f"clock-{target.timestamp()}-{tenant.org.id}",
                            "accountId": str(tenant.account_id),
                            "amount": "1.00",
                            "currency": "USD",
                        }
                    },
                },
                headers={"Authorization": f"Bearer {tenant.token}"},
            )
    result = response.json()["data"]["deposit"]
    assert result["__typename"] == "LedgerEntryRecorded", result
    occurred = datetime.fromisoformat(result["entry"]["occurredAt"])
    assert timedelta(0) <= occurred - target < timedelta(minutes=2)
