"""Each GraphQL error is logged once, at a level that says whether someone should look:
expected ones (domain failures, refused documents) at INFO without a traceback, database
faults at WARNING without one, bugs at ERROR with theirs; strawberry's own logger (every
error at ERROR with a traceback) is not used."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import strawberry

from costgraph.app.graphql import format_error
from costgraph.app.graphql_schema import CostGraphSchema
from costgraph.app.settings import Settings
from tests.conftest import Tenant, make_tenant, raw_connection
from tests.test_ledger import DEPOSIT, LEDGER, deposit_input
from tests.test_rate_limit import limited_app, post

WATCHED = ("costgraph.graphql", "strawberry")


def error_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """What the GraphQL layer and strawberry logged (not the access lines)."""
    return [
        record
        for record in caplog.records
        if record.name.startswith(WATCHED) and record.name != "costgraph.graphql.operation"
    ]


async def test_expected_errors_are_one_info_line_without_a_traceback(
    tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    viewer = tenant.token_for(roles=["finance_viewer"])
    forbidden = await tenant.gql(DEPOSIT, {"input": deposit_input(tenant)}, token=viewer)
    assert forbidden["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    invalid = await tenant.gql("{ organization { noSuchField } }")
    assert invalid["errors"][0]["extensions"]["code"] == "VALIDATION_FAILED"

    records = error_records(caplog)
    assert [r.levelno for r in records] == [logging.INFO, logging.INFO], records
    assert all(r.exc_info is None for r in records)
    assert not any(r.name.startswith("strawberry") for r in records)
    first, second = (r.getMessage() for r in records)
    assert "FORBIDDEN in deposit" in first
    assert "VALIDATION_FAILED in (document)" in second
    assert "noSuchField" in second


async def test_a_database_fault_is_one_warning_without_a_traceback(
    settings: Settings, database_url: str, mint: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The ledger locked by another session past the lock timeout: the client is told
    UNAVAILABLE (retry), the log has one line, and no traceback."""
    async with limited_app(settings, database_url, lock_timeout_ms=50) as (client, state):
        tenant = await make_tenant(state, client, mint)
        caplog.set_level(logging.INFO)
        async with raw_connection(database_url) as locker, locker.transaction():
            await locker.execute("LOCK TABLE ledger_entries IN ACCESS EXCLUSIVE MODE")
            response = await post(client, tenant.token, LEDGER)
        error = response.json()["errors"][0]
        assert error["extensions"]["code"] == "UNAVAILABLE", error
        records = error_records(caplog)
        assert len(records) == 1, records
        assert records[0].levelno == logging.WARNING
        assert records[0].getMessage().startswith("database fault in ledger: busy")
        assert records[0].exc_info is None


@strawberry.type
class Broken:
    @strawberry.field
    def boom(self) -> int:
        raise RuntimeError("SELECT secret FROM somewhere")


async def test_an_unexpected_error_is_logged_once_at_error_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    schema = CostGraphSchema(query=Broken, hide_suggestions=True)
    result = await schema.execute("{ boom }")
    assert result.errors
    formatted = [format_error(error) for error in result.errors]  # as the HTTP view does
    assert formatted == [
        {"message": "Internal server error", "path": ["boom"], "extensions": {"code": "INTERNAL"}}
    ]
    records = error_records(caplog)
    assert len(records) == 1, records
    (record,) = records
    assert record.levelno == logging.ERROR
    assert record.name == "costgraph.graphql"
    assert record.getMessage() == "unexpected error in boom"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)
