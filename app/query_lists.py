"""List sizes: every list argument, as a literal in the document (a validation rule, since it
needs the expected input type) or anywhere inside the variables (checked against their
declared types after validation, before execution)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from graphql import (
    GraphQLError,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLSchema,
    ListValueNode,
    OperationDefinitionNode,
    ValidationRule,
    get_named_type,
    type_from_ast,
)

from costgraph.app.query_limits import QueryLimits, too_complex


def list_literal_rule(limits: QueryLimits) -> type[ValidationRule]:
    """A validation rule for list literals in the document (it needs the expected input type,
    which graphql-core's validation tracks). Build it once: the validation cache keys on it."""

    class ListLiteralSizeRule(ValidationRule):
        def enter_list_value(self, node: ListValueNode, *_args: object) -> None:
            expected = self.context.get_input_type()
            if expected is None:
                return
            item_type = get_named_type(expected).name
            cap = limits.list_cap(item_type)
            if len(node.values) > cap:
                self.report_error(
                    too_complex(
                        f"a list of {item_type} holds {len(node.values)} items; the limit is {cap}",
                        "listSize",
                        cap,
                        len(node.values),
                    )
                )

    return ListLiteralSizeRule


def _may_hold_lists(
    field_type: GraphQLInputType, holds_lists: Callable[[GraphQLNamedType], bool]
) -> bool:
    while isinstance(field_type, GraphQLNonNull):
        field_type = field_type.of_type
    return isinstance(field_type, GraphQLList) or holds_lists(get_named_type(field_type))


class ListsInVariables:
    """Finds the first list in a variable's value longer than its cap, guided by its type."""

    def __init__(self, limits: QueryLimits) -> None:
        self.limits = limits
        self._holds_lists: dict[str, bool] = {}
        self._list_fields: dict[str, tuple[tuple[str, GraphQLInputType], ...]] = {}

    def list_fields(
        self, named: GraphQLInputObjectType
    ) -> tuple[tuple[str, GraphQLInputType], ...]:
        """The fields of an input type whose values can contain a list (memoised): the only
        ones walked, so a 1,000-event batch is not visited field by field."""
        found = self._list_fields.get(named.name)
        if found is None:
            found = tuple(
                (name, input_field.type)
                for name, input_field in named.fields.items()
                if _may_hold_lists(input_field.type, self.holds_lists)
            )
            self._list_fields[named.name] = found
        return found

    def holds_lists(self, named: GraphQLNamedType) -> bool:
        """Whether values of this input type can contain a list anywhere (memoised)."""
        known = self._holds_lists.get(named.name)
        if known is not None:
            return known
        self._holds_lists[named.name] = False  # a recursive input type: assume no until known
        result = False
        if isinstance(named, GraphQLInputObjectType):
            for input_field in named.fields.values():
                field_type = input_field.type
                while isinstance(field_type, GraphQLNonNull):
                    field_type = field_type.of_type
                if isinstance(field_type, GraphQLList) or self.holds_lists(
                    get_named_type(field_type)
                ):
                    result = True
                    break
        self._holds_lists[named.name] = result
        return result

    def oversized(self, value: object, type_: GraphQLInputType, path: str) -> GraphQLError | None:
        if isinstance(type_, GraphQLNonNull):
            type_ = type_.of_type
        if isinstance(type_, GraphQLList):
            item_type = type_.of_type
            if not isinstance(value, list):
                return self.oversized(value, item_type, path)
            item_name = get_named_type(item_type).name
            cap = self.limits.list_cap(item_name)
            if len(value) > cap:
                return too_complex(
                    f"variable {path} holds {len(value)} items; the limit is {cap}",
                    "listSize",
                    cap,
                    len(value),
                )
            inner = item_type.of_type if isinstance(item_type, GraphQLNonNull) else item_type
            named = get_named_type(inner)
            if isinstance(inner, GraphQLList) or (named is not None and self.holds_lists(named)):
                for index, item in enumerate(value):
                    if found := self.oversized(item, item_type, f"{path}.{index}"):
                        return found
            return None
        if isinstance(type_, GraphQLInputObjectType) and isinstance(value, dict):
            if not self.holds_lists(type_):
                return None
            for name, field_type in self.list_fields(type_):
                if name in value and (
                    found := self.oversized(value[name], field_type, f"{path}.{name}")
                ):
                    return found
        return None

    def check(
        self,
        schema: GraphQLSchema,
        operation: OperationDefinitionNode,
        variables: Mapping[str, Any],
    ) -> GraphQLError | None:
        for definition in operation.variable_definitions or ():
            name = definition.variable.name.value
            if name not in variables:
                continue
            declared = type_from_ast(schema, definition.type)
            if declared is None:
                continue
            named = get_named_type(declared)
            wrapped = declared
            while isinstance(wrapped, GraphQLNonNull):
                wrapped = wrapped.of_type
            if not isinstance(wrapped, GraphQLList) and not self.holds_lists(named):
                continue
            if found := self.oversized(variables[name], declared, f"${name}"):  # type: ignore[arg-type]
                return found
        return None
