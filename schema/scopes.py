"""Scopes shared by budgets, forecasts, patterns and live feeds."""

from __future__ import annotations

import strawberry

from costgraph.billing.scopes import ScopeKind

strawberry.enum(ScopeKind, name="BudgetScopeKind", description="What a budget or a feed covers.")
BudgetScopeKind = ScopeKind


@strawberry.input(description="The organisation (no id) or one of its parts.")
class BudgetScopeInput:
    kind: BudgetScopeKind
    id: strawberry.ID | None = None
