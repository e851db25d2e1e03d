"""The one visible place per field that says what the field needs."""

from __future__ import annotations

import uuid
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


class _ReadsAccount(BasePermission):
    """READ_USAGE; or a member's READ_OWN_USAGE on an account its token names."""

    error_extensions = {"code": "FORBIDDEN"}
    message = (
        "this operation needs the read_usage right, or read_own_usage on an account the "
        "token is for"
    )

    def __init__(self, argument: str) -> None:
        self.argument = argument

    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        principal = info.context.principal
        if principal is None:
            return False
        if has_right(principal, Right.READ_USAGE):
            return True
        if not has_right(principal, Right.READ_OWN_USAGE):
            return False
        try:
            wanted = uuid.UUID(str(kwargs.get(self.argument)))
        except ValueError:
            return False
        return wanted in principal.account_ids


def reads_account(argument: str = "account_id") -> FieldExtension:
    """Readable by whoever reads usage, and by a ``member`` for its own account: one its
    token names (claim ``accounts``); a member asking for another account is FORBIDDEN."""
    return PermissionExtension(
        permissions=[_ReadsAccount(argument)], fail_silently=False, use_directives=False
    )
