"""Completing plain leaf fields without graphql-core's per-field machinery.

Most of a result is leaves read straight off an object: a reservation's ``id``, ``state``,
``aiCost``; a dashboard's hundred ledger rows of ten such fields each. graphql-core completes
each one the general way: a path, a resolve-info tuple of fourteen fields, an argument check,
the resolver, an awaitable check, then ``complete_value`` deciding again that the type is
non-null and a leaf. For a field strawberry marks as basic (no resolver, no permission, no
field extension: its resolver reads the attribute) whose type is a scalar or enum and whose
selection has no arguments, all of that decides nothing; here such a field is read and
coerced inline (``__typename`` too: it is the parent type's name). strawberry marks every
resolver of a field without a resolver function as default, field extensions (permissions)
included, so "basic" is asked of strawberry's field itself (``is_basic_field``).

Only the unremarkable case is taken. A read that raises, a value that is null where the type
is non-null, an exception or awaitable value, or a coercion that fails or gives null goes the
general way, which reads the attribute again and reports the error with graphql-core's own
message, path and location (the sources are our frozen result objects: a second read gives
the same). Every other field (resolvers, objects, lists, arguments, meta fields) and every
field while a schema extension resolves fields through middleware goes the general way as
before, and the result keeps the selection's order.
tests/test_plain_fields.py compares results and errors with graphql-core's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

from graphql import GraphQLEnumType, GraphQLField, GraphQLNonNull, GraphQLObjectType, Undefined
from graphql import GraphQLScalarType as Scalar
from graphql.execution.collect_fields import GroupedFieldSet
from graphql.pyutils import Path
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.field import StrawberryField

#: (resolver, the leaf type's output coercion, non-null) of a plain field.
Plain = tuple[Callable[..., Any], Callable[[Any], Any], bool]

#: A field read inline had no plain value: it goes the general way.
_GENERAL: Final = object()

#: Verdicts by the field's identity (graphql-core's fields are not hashable), each beside its
#: field, so that an identity reused after a schema is gone is not taken for another's.
_plain_fields: dict[int, tuple[GraphQLField, Plain | None]] = {}


def plain(field: GraphQLField) -> Plain | None:
    """The field's inline completion, or None if it is not a plain leaf."""
    kept = _plain_fields.get(id(field))
    if kept is not None and kept[0] is field:
        return kept[1]
    found: Plain | None = None
    resolve = field.resolve
    non_null = isinstance(field.type, GraphQLNonNull)
    bare = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
    # strawberry's own field, basic: no resolver and no field extension (a permission is
    # one), so its resolver only reads the attribute and needs no resolve info.
    definition = (field.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
    basic = isinstance(definition, StrawberryField) and definition.is_basic_field
    if resolve is not None and basic and isinstance(bare, Scalar | GraphQLEnumType):
        found = (resolve, bare.coerce_output_value, non_null)
    _plain_fields[id(field)] = (field, found)
    return found


class PlainFieldsExecutor(StrawberryGraphQLCoreExecutionContext):
    """strawberry's executor, completing plain leaf fields inline (see the module)."""

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: Any,
    ) -> Any:
        manager = self.middleware_manager
        if manager is not None and manager.middlewares:
            return super().execute_fields(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        fields = parent_type.fields
        inline: dict[str, Any] = {}
        rest: GroupedFieldSet | None = None
        for response_name, details in grouped_field_set.items():
            node = details[0].node
            name = node.name.value
            if name == "__typename":
                inline[response_name] = parent_type.name
                continue
            field = fields.get(name)
            found = None if field is None or node.arguments else plain(field)
            value = _GENERAL if found is None else self._read(found, source_value)
            if value is _GENERAL:
                if rest is None:
                    rest = {}
                rest[response_name] = details
            else:
                inline[response_name] = value
        if rest is None:
            return inline
        done = super().execute_fields(parent_type, source_value, path, rest, position_context)
        if not inline:
            return done
        if isinstance(done, dict):
            return _in_order(done, inline, grouped_field_set)
        return _in_order_later(done, inline, grouped_field_set)

    def _read(self, found: Plain, source: Any) -> Any:
        resolve, coerce, non_null = found
        try:
            value = resolve(source, None)
        except Exception:  # a property that raises: the general way reports it
            return _GENERAL
        if value is None:
            return _GENERAL if non_null else None
        if isinstance(value, Exception) or self.is_awaitable(value):
            return _GENERAL
        try:
            coerced = coerce(value)
        except Exception:  # the general way reports it
            return _GENERAL
        return _GENERAL if coerced is None or coerced is Undefined else coerced


def _in_order(
    done: dict[str, Any], inline: dict[str, Any], grouped_field_set: GroupedFieldSet
) -> dict[str, Any]:
    """The two halves in the selection's order (a field the general way left out, as it
    leaves out an unknown one, stays out)."""
    merged: dict[str, Any] = {}
    for response_name in grouped_field_set:
        if response_name in inline:
            merged[response_name] = inline[response_name]
        elif response_name in done:
            merged[response_name] = done[response_name]
    return merged


async def _in_order_later(
    done: Awaitable[dict[str, Any]], inline: dict[str, Any], grouped_field_set: GroupedFieldSet
) -> dict[str, Any]:
    return _in_order(await done, inline, grouped_field_set)
