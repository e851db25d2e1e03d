"""What one GraphQL field costs, for the estimate made before execution (app/query_limits.py).

The model, in the manner of a ``@cost`` directive kept in code:

- a field returning an object or a list of objects costs 1, a scalar or enum leaf 0;
- a field listed in :data:`FIELD_COSTS` costs its weight instead (reports, forecasts and
  writes are the heavy ones);
- a field with a size argument (``first``, ``limit``) multiplies the cost of what it selects by
  the size asked: the literal (clamped to the page maximum the resolvers enforce), the page
  maximum when it comes in a variable (the worst case, so the estimate depends on the document
  only and is cached with its validation), or the argument's default when it is omitted.

An estimate is an upper bound in spirit, not a prediction: it refuses documents whose shape
multiplies work (lists inside lists, many heavy reports), before any of it is done.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from graphql import (
    ArgumentNode,
    GraphQLArgument,
    GraphQLField,
    IntValueNode,
    VariableNode,
    get_named_type,
    is_leaf_type,
)

#: Arguments whose value is how many items a list field returns.
SIZE_ARGUMENTS = ("first", "limit")

#: Page size of a connection when ``first`` is omitted (kernel/pagination.py's default).
DEFAULT_PAGE_SIZE = 50

#: Cost of a mutation field not listed below: each one writes in its own transaction.
DEFAULT_MUTATION_COST = 10

#: Weights of the fields whose resolvers do more than fetch rows by key, as "Type.field".
FIELD_COSTS: Mapping[str, int] = {
    # Aggregates over the ledger (rollups plus the tail since the last fold).
    "Query.accountPnl": 20,
    "Query.customerPnl": 20,
    "Query.organizationPnl": 20,
    "Query.platformPnl": 50,
    "Query.pnlTimeline": 50,
    "Query.usage": 50,
    "Query.usersView": 20,
    "Query.customersView": 20,
    "Query.payerKpis": 20,
    "Query.monthlyCloses": 10,
    "PnL.byModel": 5,
    "PnL.byProvider": 5,
    "PnL.topAgents": 5,
    "PnL.topUsers": 5,
    # Analytics (issue 23): cohorts read every customer's monthly history; feature ROI groups
    # by feature and user (no rollup covers both); a comparison's breakdown reads two.
    "Query.cohorts": 50,
    "Query.featureRoi": 50,
    "PnLComparison.byModel": 10,
    # Forecasts fit models over weeks of history; patterns scan a range hour by hour.
    "Query.forecast": 50,
    "Query.usagePatterns": 100,
    "Query.budgetStatus": 5,
    "Query.allowance": 5,
    # Writes that touch many rows.
    "Mutation.recordUsageBatch": 50,
    "Mutation.backfillUsage": 50,
    "Mutation.repriceUsage": 100,
}


@dataclass(frozen=True, slots=True)
class CostModel:
    """Field weights and the page bounds the resolvers enforce."""

    max_page_size: int = 200
    default_page_size: int = DEFAULT_PAGE_SIZE
    weights: Mapping[str, int] = field(default_factory=lambda: dict(FIELD_COSTS))

    def own_cost(self, parent_type: str, field_name: str, definition: GraphQLField | None) -> int:
        weight = self.weights.get(f"{parent_type}.{field_name}")
        if weight is not None:
            return weight
        if parent_type == "Mutation":
            return DEFAULT_MUTATION_COST
        if definition is not None and is_leaf_type(get_named_type(definition.type)):
            return 0
        return 1

    def multiplier(
        self, definition: GraphQLField | None, arguments: tuple[ArgumentNode, ...]
    ) -> int:
        """How many times the field's selection runs: its size argument, else 1."""
        if definition is None:
            return 1
        for name in SIZE_ARGUMENTS:
            declared = definition.args.get(name)
            if declared is not None:
                return self._size(name, declared, arguments)
        return 1

    def _size(
        self, name: str, declared: GraphQLArgument, arguments: tuple[ArgumentNode, ...]
    ) -> int:
        given = next((a.value for a in arguments if a.name.value == name), None)
        if isinstance(given, IntValueNode):
            return max(0, min(int(given.value), self.max_page_size))
        if isinstance(given, VariableNode):
            return self.max_page_size
        default = declared.default_value
        if isinstance(default, int) and not isinstance(default, bool):
            return max(0, min(default, self.max_page_size))
        return min(self.default_page_size, self.max_page_size)
