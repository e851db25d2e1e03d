"""The one place that confines every ORM statement to the caller's tenant.

A session is opened for a tenant (:func:`bind_tenant`); from then on every SELECT, UPDATE
and DELETE that touches a :class:`TenantScoped` table gets ``organization_id = <tenant>``
added, through relationships and aliases too. A session with no tenant refuses to touch
tenant tables at all (fail closed); only platform work opts out, explicitly.
"""

from __future__ import annotations

import uuid
from typing import Final

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria

from costgraph.models.base import TenantScoped

TENANT_KEY: Final = "costgraph.tenant"
PLATFORM: Final = "platform"


class TenantNotBound(RuntimeError):
    """A tenant table was queried from a session that was never bound to a tenant."""


class TenantSession(Session):
    """The session class of the whole application."""


def bind_tenant(session: Session, organization_id: uuid.UUID) -> None:
    session.info[TENANT_KEY] = organization_id


def bind_platform(session: Session) -> None:
    """Let this session see every tenant. Only platform-admin code paths call it."""
    session.info[TENANT_KEY] = PLATFORM


def bound_tenant(session: Session) -> uuid.UUID | None:
    value = session.info.get(TENANT_KEY)
    return value if isinstance(value, uuid.UUID) else None


def _touches_tenant_tables(state: ORMExecuteState) -> bool:
    return any(
        isinstance(mapper.class_, type) and issubclass(mapper.class_, TenantScoped)
        for mapper in state.all_mappers
    )


@event.listens_for(TenantSession, "do_orm_execute")
def _scope_to_tenant(state: ORMExecuteState) -> None:
    if not (state.is_select or state.is_update or state.is_delete):
        return
    if state.is_column_load or state.is_relationship_load:
        return  # the parent statement was already scoped
    tenant = state.session.info.get(TENANT_KEY)
    if tenant == PLATFORM:
        return
    if tenant is None:
        if _touches_tenant_tables(state):
            raise TenantNotBound("tenant tables queried outside a tenant-bound session")
        return
    state.statement = state.statement.options(
        with_loader_criteria(
            TenantScoped,
            lambda cls: cls.organization_id == tenant,
            include_aliases=True,
        )
    )
