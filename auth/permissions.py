"""What each role and each OAuth scope may do. Fields name the right they need, nothing else.

A person's token is limited by its roles; an integration client's by its scopes; a token with
both gets the intersection (scopes narrow, never widen, what roles allow).
"""

from __future__ import annotations

import enum

from costgraph.auth.principal import Principal


class Right(enum.StrEnum):
    READ_DIRECTORY = "read_directory"  # me, organization, customers, accounts
    READ_USAGE = "read_usage"
    READ_LEDGER = "read_ledger"
    WRITE_USAGE = "write_usage"
    WRITE_BILLING = "write_billing"  # payments, refunds, adjustments, fees
    MANAGE_ORGANIZATION = "manage_organization"  # customers, accounts, departments, users
    PLATFORM = "platform"  # across organisations
    #: Register, list and revoke OAuth clients. No scope carries it: a client can never
    #: mint another client, so an integration cannot widen its own access.
    MANAGE_CLIENTS = "manage_clients"
    #: A member's own usage and allowance (fields filter to the caller's user).
    READ_OWN_USAGE = "read_own_usage"
    #: Record usage history older than the late-arrival window (``backfillUsage``). No scope
    #: carries it: history enters only at a person's (an org_admin's) explicit request.
    BACKFILL_USAGE = "backfill_usage"


ROLES = ("platform_admin", "org_admin", "finance_viewer", "member")
SCOPES = ("usage:write", "usage:read", "billing:read", "billing:write")

_ALL = frozenset(Right)
ROLE_RIGHTS: dict[str, frozenset[Right]] = {
    "platform_admin": _ALL,
    "org_admin": _ALL - {Right.PLATFORM},
    "finance_viewer": frozenset({Right.READ_DIRECTORY, Right.READ_USAGE, Right.READ_LEDGER}),
    "member": frozenset({Right.READ_DIRECTORY, Right.READ_OWN_USAGE}),
}
SCOPE_RIGHTS: dict[str, frozenset[Right]] = {
    "usage:write": frozenset({Right.READ_DIRECTORY, Right.WRITE_USAGE}),
    "usage:read": frozenset({Right.READ_DIRECTORY, Right.READ_USAGE}),
    "billing:read": frozenset({Right.READ_DIRECTORY, Right.READ_USAGE, Right.READ_LEDGER}),
    "billing:write": frozenset(
        {Right.READ_DIRECTORY, Right.WRITE_BILLING, Right.MANAGE_ORGANIZATION}
    ),
}


def rights_of(principal: Principal) -> frozenset[Right]:
    from_roles: frozenset[Right] | None = None
    if principal.roles:
        from_roles = frozenset().union(*(ROLE_RIGHTS.get(r, frozenset()) for r in principal.roles))
    if principal.scopes is None:
        return from_roles or frozenset()
    from_scopes = frozenset().union(*(SCOPE_RIGHTS.get(s, frozenset()) for s in principal.scopes))
    return from_scopes if from_roles is None else from_roles & from_scopes


def has_right(principal: Principal, right: Right) -> bool:
    return right in rights_of(principal)
