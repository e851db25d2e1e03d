"""What a budget, a forecast or a live feed is about: the organisation or one of its parts."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass


class ScopeKind(enum.StrEnum):
    ORGANIZATION = "ORGANIZATION"
    CUSTOMER = "CUSTOMER"
    ACCOUNT = "ACCOUNT"
    DEPARTMENT = "DEPARTMENT"
    USER = "USER"


@dataclass(frozen=True, slots=True)
class Scope:
    kind: ScopeKind
    #: The organisation's own id for ORGANIZATION.
    id: uuid.UUID


@dataclass(frozen=True, slots=True)
class Attribution:
    """Where one ledger entry lands, in every scope at once."""

    organization_id: uuid.UUID
    customer_id: uuid.UUID | None
    account_id: uuid.UUID | None
    department_id: uuid.UUID | None
    user_id: uuid.UUID | None

    def scopes(self) -> list[Scope]:
        found = [Scope(ScopeKind.ORGANIZATION, self.organization_id)]
        for kind, ident in (
            (ScopeKind.CUSTOMER, self.customer_id),
            (ScopeKind.ACCOUNT, self.account_id),
            (ScopeKind.DEPARTMENT, self.department_id),
            (ScopeKind.USER, self.user_id),
        ):
            if ident is not None:
                found.append(Scope(kind, ident))
        return found
