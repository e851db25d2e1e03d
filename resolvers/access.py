"""The one visible place per field that says what the field needs."""

from __future__ import annotations

from typing import Any

from strawberry.extensions.field_extension import FieldExtension
from strawberry.permission import BasePermission, PermissionExtension

from costgraph.auth.permissions import Right, has_right


class _Requires(BasePermission):
    error_extensions = {"code": "FORBIDDEN"}

    def __init__(self, right: Right) -> None:
        self.right = right
        self.message = f"this operation needs the {right.value} right"

    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        principal = info.context.principal
        return principal is not None and has_right(principal, self.right)


def needs(right: Right) -> FieldExtension:
    """``@strawberry.field(extensions=[needs(Right.READ_LEDGER)])``."""
    return PermissionExtension(
        permissions=[_Requires(right)], fail_silently=False, use_directives=False
    )
