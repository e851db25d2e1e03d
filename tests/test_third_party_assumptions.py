"""What CostGraph assumes of its libraries beyond their plain public API, one test each, so
that an upgrade which breaks an assumption fails here, by name, before the code relying on it
misbehaves or silently slows down.

- SQLAlchemy (range pinned in pyproject.toml): billing/raw_connection.py begins the session's
  transaction through the asyncpg adapter's private ``_start_transaction``, a round trip less
  than the public way, and SQLAlchemy must then commit or roll back that transaction.
- strawberry: schema/fast_inputs.py builds ``UsageEventInput`` through the public ``from_input``
  hook (documented for integrations that make their own type definitions) and copies the
  fields it takes as leaves, which strawberry must pass through unchanged.
- strawberry: app/query_caches.py reads ``Schema._schema`` (graphql-core's schema, for which
  strawberry has no public accessor; its own ``ValidationCache`` reads it too) and sets
  ``ExecutionContext._provided_operation_name``.
"""

from __future__ import annotations

import inspect
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from graphql import GraphQLSchema, parse
from sqlalchemy import text
from strawberry.types import ExecutionContext
from strawberry.types.arguments import InputContext, convert_argument
from strawberry.types.base import StrawberryObjectDefinition

from costgraph.app.graphql_schema import build_schema
from costgraph.app.state import AppState
from costgraph.billing.raw_connection import driver_connection
from costgraph.kernel.clock import utcnow
from costgraph.schema import fast_inputs, inputs

# --- SQLAlchemy: a raw first statement begins SQLAlchemy's own transaction ---


async def _exists(state: AppState, table: str) -> bool:
    async with state.sessions() as session:
        found = await session.scalar(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": table})
    return bool(found)


async def test_sqlalchemy_adapter_begins_as_raw_connection_expects(state: AppState) -> None:
    async with state.sessions() as session:
        connection = await session.connection()
        raw = await connection.get_raw_connection()
        start = getattr(type(raw.dbapi_connection), "_start_transaction", None)
        assert inspect.iscoroutinefunction(start), "SQLAlchemy's adapter lost _start_transaction"
        assert not raw.driver_connection.is_in_transaction()  # BEGIN is still lazy
        driver = await driver_connection(session)
        assert driver is raw.driver_connection and driver.is_in_transaction()
        await session.rollback()


@pytest.mark.parametrize("commit", [True, False])
async def test_sqlalchemy_ends_the_transaction_a_raw_statement_began(
    state: AppState, commit: bool
) -> None:
    table = f"assumption_probe_{uuid.uuid4().hex[:12]}"

    class Undo(Exception):
        pass

    try:
        async with state.sessions() as session, session.begin():
            driver = await driver_connection(session)
            await driver.execute(f"CREATE TABLE {table} (id int)")
            if not commit:
                raise Undo
    except Undo:
        pass
    assert not driver.is_in_transaction()
    try:
        assert await _exists(state, table) is commit
    finally:
        async with state.sessions() as session, session.begin():
            await session.execute(text(f"DROP TABLE IF EXISTS {table}"))


# --- strawberry: the fast build of UsageEventInput ---


def _usage_value() -> dict[str, Any]:
    return {
        "idempotencyKey": "k",
        "accountId": "acc",
        "occurredAt": utcnow(),
        "provider": "openai",
        "model": "m",
        "units": [{"kind": inputs.UnitKind.IMAGE, "quantity": 2}],
    }


def test_strawberry_builds_usage_input_through_the_from_input_hook() -> None:
    schema = build_schema()
    definition = inputs.UsageEventInput.__strawberry_definition__  # type: ignore[attr-defined]
    hook = definition.from_input
    assert hook is not None, "fast_inputs.install did not set the hook"
    paths: list[tuple[str | int, ...]] = []

    def spy(kind: type, value: Any, context: InputContext) -> Any:
        paths.append(context.path)
        return hook(kind, value, context)

    definition.from_input = spy
    try:
        built = convert_argument(
            _usage_value(),
            inputs.UsageEventInput,
            schema.schema_converter.scalar_registry,
            schema.config,
            path=("input",),
        )
    finally:
        definition.from_input = hook
    assert paths == [("input",)], "strawberry no longer calls from_input"
    assert isinstance(built, inputs.UsageEventInput)
    assert isinstance(built.units[0], inputs.UnitUsageInput)


def test_strawberry_passes_every_leaf_of_fast_inputs_through_unchanged() -> None:
    schema = build_schema()
    registry = schema.schema_converter.scalar_registry
    context = InputContext(info=None, config=schema.config, scalar_registry=registry, path=())
    leaves = 0
    for named in schema.schema_converter.type_map.values():
        definition = named.definition
        if not (isinstance(definition, StrawberryObjectDefinition) and definition.is_input):
            continue
        for field in definition.fields:
            field_type = field.resolve_type(type_definition=definition)
            if fast_inputs.is_leaf(field_type, context):
                value = object()
                converted = convert_argument(value, field_type, registry, schema.config)
                assert converted is value, f"{definition.name}.{field.python_name}"
                leaves += 1
    assert leaves > 50  # the check ran over the schema's inputs, not over nothing


# --- strawberry: what app/query_caches.py reads and sets ---


def test_strawberry_schema_keeps_graphql_cores_schema_as_schema() -> None:
    schema = build_schema()
    graphql_schema = schema._schema
    assert isinstance(graphql_schema, GraphQLSchema)
    assert graphql_schema.get_type("UsageEventInput") is not None


def test_strawberry_execution_context_keeps_the_requested_operation_name() -> None:
    context = ExecutionContext(
        query="query A { __typename } query B { __typename }",
        schema=build_schema(),
        allowed_operations=(),
        provided_operation_name="B",
    )
    assert context._provided_operation_name == "B"
    context.graphql_document = parse(context.query or "")
    assert context.operation_name == "B"
    context._provided_operation_name = None
    assert context.operation_name == "A"  # unnamed: the document's first operation


def test_pgserver_lists_a_clusters_users_as_app_embedded_prunes_them(tmp_path: Path) -> None:
    """app/embedded.py reads and rewrites pgserver's list of the processes using a cluster:
    a JSON list of pids in ``.handle_pids.json``, guarded by ``PostgresServer.lock_path``."""
    from pgserver.postgres_server import PostgresServer

    from costgraph.app.embedded import HANDLES_FILE, forget_dead_handles, start_embedded_postgres

    assert isinstance(PostgresServer.lock_path, Path)
    _, server = start_embedded_postgres(tmp_path)
    try:
        handles = tmp_path / "pg" / HANDLES_FILE
        assert json.loads(handles.read_text()) == [os.getpid()]
        gone = 2**22 + 12345  # above Linux's pid_max by default: no such process
        handles.write_text(json.dumps([os.getpid(), gone]))
        assert forget_dead_handles(tmp_path / "pg") == [gone]
        assert json.loads(handles.read_text()) == [os.getpid()]
    finally:
        server.cleanup()
