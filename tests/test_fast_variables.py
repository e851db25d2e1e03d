"""app/fast_variables.py coerces list variables as graphql-core does: for any value, valid or
not, the compiled coercer gives graphql-core's ``coerce_input_value`` result (or both refuse),
and the executor it builds holds the same variables; a refused value is reported by
graphql-core itself, with its own message and path. Recursive input types are left to
graphql-core (its nesting limit applies to them)."""

from __future__ import annotations

from typing import Any

from graphql import (
    GraphQLArgument,
    GraphQLField,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLString,
    Undefined,
    parse,
)
from graphql.utilities import coerce_input_value
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from costgraph.app.fast_variables import FastVariablesExecutor, ListCoercers
from costgraph.app.graphql_schema import build_schema
from tests.dates import now, rfc

SCHEMA = build_schema()._schema  # graphql-core's schema, as the executor gets it
BATCH = """
mutation Ingest($input: [UsageEventInput!]!) {
  recordUsageBatch(input: $input) { __typename }
}
"""
BATCH_TYPE = GraphQLNonNull(GraphQLList(GraphQLNonNull(SCHEMA.type_map["UsageEventInput"])))  # type: ignore[arg-type]

VALID_EVENT: dict[str, Any] = {
    "idempotencyKey": "k-1",
    "accountId": "00000000-0000-0000-0000-000000000001",
    "occurredAt": now().isoformat().replace("+00:00", "Z"),  # microseconds kept
    "provider": "openai",
    "model": "gpt-4o",
    "inputTokens": 10,
    "outputTokens": 5,
    "userId": None,
    "metadata": {"a": [1, {"b": None}]},
    "providerCost": "0.0012",
    "providerCurrency": "USD",
    "units": [{"kind": "IMAGE", "quantity": "2"}],
}
#: Values of every sort a field may be given: right, wrong, null, beyond Int, NUL.
ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False),
    st.sampled_from(["", "x\x00y", "IMAGE", "REQUEST", "nope", "1.5", rfc(now()), "not a date"]),
    st.lists(st.integers(), max_size=2),
    st.just({"kind": "IMAGE", "quantity": "1"}),
    st.just({}),
)
FIELDS = [*VALID_EVENT, "cacheWriteTokens", "feature", "unknownField"]


@st.composite
def events(draw: st.DrawFn) -> Any:
    event = dict(VALID_EVENT)
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
        if draw(st.booleans()):
            event.pop(name, None)
        else:
            event[name] = draw(ODD_VALUES)
    return event


batches = st.one_of(
    st.lists(events(), max_size=4),
    events(),  # a list of one, given as the item
    ODD_VALUES,
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(batches)
def test_the_compiled_coercer_gives_graphql_cores_result(value: Any) -> None:
    coercer = ListCoercers().of(BATCH_TYPE)
    assert coercer is not None
    expected = coerce_input_value(value, BATCH_TYPE)
    got = coercer(value)
    if expected is Undefined:
        assert got is Undefined
    else:
        assert got == expected


def _built(executor: type[StrawberryGraphQLCoreExecutionContext], variables: Any) -> Any:
    return executor.build(SCHEMA, parse(BATCH), raw_variable_values=variables)


def test_the_executor_holds_the_same_variables_as_graphql_cores() -> None:
    variables = {"input": [VALID_EVENT, {**VALID_EVENT, "idempotencyKey": "k-2"}]}
    fast = _built(FastVariablesExecutor, variables)
    plain = _built(StrawberryGraphQLCoreExecutionContext, variables)
    assert fast.variable_values.coerced == plain.variable_values.coerced
    fast_source = fast.variable_values.sources["input"]
    plain_source = plain.variable_values.sources["input"]
    assert fast_source.value is plain_source.value is variables["input"]
    assert str(fast_source.signature.type) == str(plain_source.signature.type)


def test_a_refused_value_is_reported_by_graphql_core_with_its_path() -> None:
    bad = {k: v for k, v in VALID_EVENT.items() if k != "provider"}
    variables = {"input": [VALID_EVENT, bad]}
    fast = _built(FastVariablesExecutor, variables)
    plain = _built(StrawberryGraphQLCoreExecutionContext, variables)
    assert isinstance(fast, list)
    assert [e.message for e in fast] == [e.message for e in plain]
    assert "at [1]" in fast[0].message and "'provider'" in fast[0].message


def test_an_int_beyond_32_bits_is_refused_as_graphql_core_refuses_it() -> None:
    variables = {"input": [{**VALID_EVENT, "inputTokens": 2**31}]}
    fast = _built(FastVariablesExecutor, variables)
    assert isinstance(fast, list)
    assert fast[0].message == _built(StrawberryGraphQLCoreExecutionContext, variables)[0].message


def test_a_recursive_input_type_is_left_to_graphql_core() -> None:
    node = GraphQLInputObjectType(
        "Node", lambda: {"name": GraphQLInputField(GraphQLString), "child": GraphQLInputField(node)}
    )
    flat = GraphQLInputObjectType("Flat", {"n": GraphQLInputField(GraphQLInt)})
    query = GraphQLObjectType(
        "Query",
        {
            "f": GraphQLField(
                GraphQLString,
                args={
                    "a": GraphQLArgument(GraphQLList(node)),
                    "b": GraphQLArgument(GraphQLList(flat)),
                },
            )
        },
    )
    GraphQLSchema(query)
    coercers = ListCoercers()
    assert coercers.of(GraphQLList(node)) is None
    assert coercers.of(GraphQLList(flat)) is not None
