"""Depth, aliases and estimated cost of a GraphQL document, before anything runs.

One pass over each operation, in which each fragment is summarised once however often it is
spread, so the work grows with the document's length, not with what the document multiplies.
It runs before graphql-core's validation (whose overlapping-fields check is itself slow on
nested fragment spreads); only a document that passes is kept (app/query_caches.py). strawberry's
``QueryDepthLimiter`` and ``MaxAliasesLimiter`` are not used: both re-walk a fragment at every
spread (a document of ~100 tokens with nested double spreads costs them seconds), and the
former fails on an unknown fragment name.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
)

from costgraph.app.query_cost import CostModel
from costgraph.app.query_limits import CEILING, QueryLimits, too_complex


@dataclass(frozen=True, slots=True)
class Shape:
    """What a selection set asks for: its deepest field, its aliases, its estimated cost."""

    depth: int = 0
    aliases: int = 0
    cost: int = 0


_EMPTY = Shape()


class _Walker:
    """One pass over an operation; fragments are summarised once and reused at each spread."""

    def __init__(
        self, schema: GraphQLSchema, fragments: dict[str, FragmentDefinitionNode], costs: CostModel
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.costs = costs
        self.summaries: dict[str, Shape] = {}
        self.open: set[str] = set()

    def selections(self, node: SelectionSetNode, parent: GraphQLNamedType | None) -> Shape:
        depth = aliases = cost = 0
        for selection in node.selections:
            if isinstance(selection, FieldNode):
                shape = self.field(selection, parent)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = self.schema.get_type(condition.name.value) if condition else parent
                shape = self.selections(selection.selection_set, target)
            elif isinstance(selection, FragmentSpreadNode):
                # A spread costs 1 besides its fields: reusing a fragment is how a short
                # document asks for a great deal (each level spreading the next twice).
                reached = self.fragment(selection.name.value)
                shape = Shape(reached.depth, reached.aliases, reached.cost + 1)
            else:  # pragma: no cover - graphql-core has no other selection
                continue
            depth = max(depth, shape.depth)
            aliases = min(aliases + shape.aliases, CEILING)
            cost = min(cost + shape.cost, CEILING)
        return Shape(depth, aliases, cost)

    def field(self, node: FieldNode, parent: GraphQLNamedType | None) -> Shape:
        name = node.name.value
        alias = 1 if node.alias else 0
        if name.startswith("__"):
            # Introspection: graphql-core bounds its depth, and it is refused when off.
            return Shape(1, alias, 0)
        fields = (
            parent.fields if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType) else {}
        )
        definition = fields.get(name)
        children = _EMPTY
        if node.selection_set is not None:
            target = get_named_type(definition.type) if definition else None
            children = self.selections(node.selection_set, target)
        parent_name = parent.name if parent is not None else ""
        own = self.costs.own_cost(parent_name, name, definition)
        times = self.costs.multiplier(definition, node.arguments or ())
        return Shape(
            depth=children.depth + 1,
            aliases=min(children.aliases + alias, CEILING),
            cost=min(own + times * children.cost, CEILING),
        )

    def fragment(self, name: str) -> Shape:
        known = self.summaries.get(name)
        if known is not None:
            return known
        definition = self.fragments.get(name)
        if definition is None or name in self.open:
            return _EMPTY  # unknown or cyclic: graphql-core's own rules report those
        self.open.add(name)
        target = self.schema.get_type(definition.type_condition.name.value)
        shape = self.selections(definition.selection_set, target)
        self.open.discard(name)
        self.summaries[name] = shape
        return shape


def _root_type(
    schema: GraphQLSchema, operation: OperationDefinitionNode
) -> GraphQLObjectType | None:
    return schema.get_root_type(operation.operation)


def analyse(
    schema: GraphQLSchema, document: DocumentNode, limits: QueryLimits
) -> tuple[GraphQLError, ...]:
    """Depth, aliases and cost of each operation of the document, against the limits."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    walker = _Walker(schema, fragments, limits.costs)
    errors: list[GraphQLError] = []
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            errors.extend(_check(walker, definition, limits))
    return tuple(errors)


def _check(
    walker: _Walker, operation: OperationDefinitionNode, limits: QueryLimits
) -> Iterator[GraphQLError]:
    label = f"operation {operation.name.value!r}" if operation.name else "the operation"
    try:
        shape = walker.selections(operation.selection_set, _root_type(walker.schema, operation))
    except RecursionError:
        yield too_complex(f"{label} is nested too deeply to analyse", "depth", limits.max_depth)
        return
    if shape.depth > limits.max_depth:
        yield too_complex(
            f"{label} has depth {shape.depth}; the limit is {limits.max_depth}",
            "depth",
            limits.max_depth,
            shape.depth,
        )
    if shape.aliases > limits.max_aliases:
        yield too_complex(
            f"{label} has {shape.aliases} aliases (fragments counted at each spread); "
            f"the limit is {limits.max_aliases}",
            "aliases",
            limits.max_aliases,
            shape.aliases,
        )
    if shape.cost > limits.max_cost:
        yield too_complex(
            f"{label} has an estimated cost of {shape.cost}; the limit is {limits.max_cost}",
            "cost",
            limits.max_cost,
            shape.cost,
        )
