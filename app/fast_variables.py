"""Coercing a large list variable (``recordUsageBatch``'s 1,000 events) at a fraction of the cost.

graphql-core coerces a variable with ``coerce_input_value``, which re-decides for every value
whether its type is non-null, a list, an input object or a leaf, and first walks the whole
value once more (``input_is_nested_too_deeply``) to refuse values nested deeper than the parser
allows. For a 1,000-event batch the two were ~17 % of the server's time for the request.

Here the same decisions are taken once per type: a coercer is compiled for a list variable's
type (closures over each input object's fields, their defaults and their leaves' own
``coerce_input_value``) and does exactly what ``coerce_input_value`` does, value for value.
The nesting walk is left out only where it cannot find anything: a type whose nesting is
bounded (no input object reaches itself) and no deeper than the limit.

Anything else goes the way it went: a variable that is not a list, or of a recursive type, is
coerced by graphql-core; a value the fast coercer does not accept (``Undefined``) makes the
executor be built again from the original values, so graphql-core reports every error with
its own messages, paths and limits. Hook: graphql-core's documented extension point for
custom executors (``executor_class``, passed by strawberry as ``execution_context_class``).
The list variable is given to graphql-core as an empty list (a valid value of every list
type) and its coerced value put in place of it afterwards, with its source.
tests/test_fast_variables.py checks the results equal graphql-core's.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from graphql import (
    DocumentNode,
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
    GraphQLSchema,
    OperationDefinitionNode,
    Undefined,
    is_required_input_field,
    type_from_ast,
)
from graphql.execution.values import VariableValues
from graphql.language.parser import MAX_NESTING_DEPTH
from graphql.pyutils import is_iterable
from graphql.utilities.coerce_input_value import coerce_default_value
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

Coercer = Callable[[Any], Any]

#: Types whose nesting is unbounded or too deep: coerced by graphql-core.
_UNFIT = object()


def _depth(type_: GraphQLInputType, seen: frozenset[str]) -> int | None:
    """How deep ``input_is_nested_too_deeply`` can go in a value of ``type_`` (each list or
    input object is one level), or None if an input object can reach itself."""
    if isinstance(type_, GraphQLNonNull):
        return _depth(type_.of_type, seen)
    if isinstance(type_, GraphQLList):
        inner = _depth(type_.of_type, seen)
        return None if inner is None else inner + 1
    if isinstance(type_, GraphQLInputObjectType):
        if type_.name in seen:
            return None
        deepest = 0
        for field in type_.fields.values():
            inner = _depth(field.type, seen | {type_.name})
            if inner is None:
                return None
            deepest = max(deepest, inner)
        return deepest + 1
    return 0


def _compile(type_: GraphQLInputType) -> Coercer:
    """``coerce_input_value(value, type_)`` with the type's decisions taken once."""
    if isinstance(type_, GraphQLNonNull):
        inner = _compile(type_.of_type)

        def non_null(value: Any) -> Any:
            if value is None or value is Undefined:
                return Undefined
            return inner(value)

        return non_null
    if isinstance(type_, GraphQLList):
        return _list(_compile(type_.of_type))
    if isinstance(type_, GraphQLInputObjectType):
        return _input_object(type_)
    if isinstance(type_, GraphQLScalarType | GraphQLEnumType):
        return _leaf(type_.coerce_input_value)
    raise TypeError(f"not an input type: {type_!r}")


def _list(item: Coercer) -> Coercer:
    def coerce(value: Any) -> Any:
        if value is None or value is Undefined:
            return None
        if not is_iterable(value):  # a list of one
            coerced = item(value)
            return Undefined if coerced is Undefined else [coerced]
        items: list[Any] = []
        append = items.append
        for entry in value:
            coerced = item(entry)
            if coerced is Undefined:
                return Undefined
            append(coerced)
        return items

    return coerce


def _leaf(parse: Callable[[Any], Any]) -> Coercer:
    def coerce(value: Any) -> Any:
        if value is None or value is Undefined:
            return None
        try:
            return parse(value)
        except Exception:  # as graphql-core: invalid, no value
            return Undefined

    return coerce


def _leaf_parser(type_: GraphQLInputType) -> tuple[Callable[[Any], Any], bool] | None:
    """A leaf field's own ``coerce_input_value`` and whether it is non-null, else None."""
    non_null = isinstance(type_, GraphQLNonNull)
    bare = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
    if isinstance(bare, GraphQLScalarType | GraphQLEnumType):
        return bare.coerce_input_value, non_null
    return None


def _input_object(type_: GraphQLInputObjectType) -> Coercer:
    if type_.is_one_of:
        raise TypeError("oneOf input objects are left to graphql-core")
    names = frozenset(type_.fields)
    # In field order: (name, out name, whether a leaf, the leaf's own coercion or else the
    # field's coercer, a leaf's non-null, required, coerced default or Undefined). A leaf's
    # steps are taken inline.
    plan: list[tuple[str, str, bool, Coercer, bool, bool, Any]] = []
    for name, field in type_.fields.items():
        leaf = _leaf_parser(field.type)
        plan.append(
            (
                name,
                field.out_name or name,
                leaf is not None,
                _compile(field.type) if leaf is None else leaf[0],
                leaf is not None and leaf[1],
                is_required_input_field(field),
                coerce_default_value(field),  # memoised by graphql-core: the same object
            )
        )
    steps = tuple(plan)
    out_type = type_.out_type

    def coerce(value: Any) -> Any:  # coerce_input_value, unrolled
        if value is None or value is Undefined:
            return None
        if not isinstance(value, dict):
            return Undefined
        # An unknown field is invalid, unless its value is Undefined (not from JSON).
        if not names.issuperset(value) and any(
            k not in names and v is not Undefined for k, v in value.items()
        ):
            return Undefined
        coerced: dict[str, Any] = {}
        get = value.get
        for name, out_name, is_leaf, field_coercer, non_null, required, default in steps:
            raw = get(name, Undefined)
            if raw is Undefined:
                if required:
                    return Undefined
                if default is not Undefined:
                    coerced[out_name] = default
                continue
            if not is_leaf:
                result = field_coercer(raw)
            elif raw is None:
                if non_null:
                    return Undefined
                result = None
            else:
                try:
                    result = field_coercer(raw)
                except Exception:  # as graphql-core: invalid, no value
                    return Undefined
            if result is Undefined:
                return Undefined
            coerced[out_name] = result
        return out_type(coerced)

    return coerce


class ListCoercers:
    """Compiled coercers of list types, by the type's printed name, for one schema."""

    def __init__(self) -> None:
        self._compiled: dict[str, Coercer | object] = {}

    def of(self, type_: GraphQLInputType) -> Coercer | None:
        key = str(type_)
        found = self._compiled.get(key)
        if found is None:
            found = _UNFIT
            depth = _depth(type_, frozenset())
            try:
                if depth is not None and depth <= MAX_NESTING_DEPTH:
                    found = _compile(type_)
            except TypeError:
                pass
            self._compiled[key] = found
        return None if found is _UNFIT else found  # type: ignore[return-value]


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    found = None
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            if name is None:
                if found is not None:
                    return None  # ambiguous: graphql-core says so
                found = definition
            elif definition.name is not None and definition.name.value == name:
                return definition
    return found


def precoerce(
    coercers: ListCoercers,
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    raw: dict[str, Any] | None,
) -> dict[str, Any] | None:
    """The list variables of the operation coerced here, by name; None when there are none or
    one of them is not accepted (graphql-core then coerces all and reports)."""
    if not raw:
        return None
    operation = _operation(document, operation_name)
    if operation is None:
        return None
    done: dict[str, Any] = {}
    for definition in operation.variable_definitions or ():
        name = definition.variable.name.value
        value = raw.get(name, Undefined)
        if value is Undefined or value is None:
            continue
        declared = type_from_ast(schema, definition.type)
        bare = declared.of_type if isinstance(declared, GraphQLNonNull) else declared
        if not isinstance(bare, GraphQLList):
            continue
        coercer = coercers.of(declared)  # type: ignore[arg-type]
        if coercer is None:
            continue
        coerced = coercer(value)
        if coerced is Undefined:
            return None
        done[name] = coerced
    return done or None


_coercers: weakref.WeakKeyDictionary[GraphQLSchema, ListCoercers] = weakref.WeakKeyDictionary()


def coercers_of(schema: GraphQLSchema) -> ListCoercers:
    found = _coercers.get(schema)
    if found is None:
        found = _coercers[schema] = ListCoercers()
    return found


class FastVariablesExecutor(StrawberryGraphQLCoreExecutionContext):
    """strawberry's executor, with list variables coerced by :func:`precoerce`."""

    @classmethod
    def build(
        cls,
        schema: GraphQLSchema,
        document: DocumentNode,
        root_value: Any = None,
        context_value: Any = None,
        raw_variable_values: dict[str, Any] | None = None,
        operation_name: str | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        def core(variables: dict[str, Any] | None) -> Any:
            return super(FastVariablesExecutor, cls).build(
                schema,
                document,
                root_value,
                context_value,
                variables,
                operation_name,
                *args,
                **kwargs,
            )

        done = precoerce(coercers_of(schema), schema, document, operation_name, raw_variable_values)
        if done is None:
            return core(raw_variable_values)
        assert raw_variable_values is not None
        built = core({**raw_variable_values, **dict.fromkeys(done, ())})
        if isinstance(built, list):  # errors elsewhere: reported from the original values
            return core(raw_variable_values)
        sources, coerced = built.variable_values
        sources = dict(sources)
        for name in done:
            sources[name] = sources[name]._replace(value=raw_variable_values[name])
        built.variable_values = VariableValues(sources, {**coerced, **done})
        return built
