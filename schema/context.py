"""The per-request context: the verified principal, its tenant, sessions and loaders."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from costgraph.auth.principal import Principal
from costgraph.billing import tenant_cache
from costgraph.billing.directory import OrgContext, get_organization
from costgraph.kernel.errors import Forbidden, Unauthenticated
from costgraph.kernel.unit_of_work import UnitOfWork
from costgraph.models.scoping import bind_tenant
from costgraph.schema.loaders import Loaders

if TYPE_CHECKING:  # the app builds the state; the GraphQL layer only reads it
    from costgraph.app.state import AppState

T = TypeVar("T")


async def organization(app: AppState, principal: Principal) -> OrgContext:
    """The principal's organisation (through this process's tenant cache), else ``Forbidden``.
    Shared by the GraphQL context and the plain HTTP routes."""
    org_id = principal.organization_id
    if org_id is None:
        raise Forbidden("this token is not bound to an organisation")
    cached = tenant_cache.ORGS.get(org_id)
    if cached is None:
        generation = tenant_cache.ORGS.generation
        async with app.sessions() as session:
            org = await get_organization(session, org_id)
        if org is None:
            raise Forbidden("the token's organisation does not exist")
        cached = OrgContext.of(org)
        tenant_cache.ORGS.put(org_id, cached, generation=generation)
    return cached


@dataclass
class Context:
    request: Request | WebSocket
    response: Response | WebSocket | None
    app: AppState
    principal: Principal | None
    _org: OrgContext | None = field(default=None, init=False)

    def require_principal(self) -> Principal:
        if self.principal is None:
            raise Unauthenticated("an access token is required")
        return self.principal

    async def org(self) -> OrgContext:
        """The caller's tenant, from the verified token only."""
        if self._org is None:
            self._org = await organization(self.app, self.require_principal())
        return self._org

    async def tenant_session(self) -> AsyncSession:
        org = await self.org()
        session = self.app.sessions()
        bind_tenant(session.sync_session, org.id)
        return session

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        session = await self.tenant_session()
        try:
            yield session
        finally:
            await session.close()

    async def write(self, action: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        """Run one domain action for the caller's tenant as a unit of work: one transaction,
        retried on conflicts, alerts evaluated before commit, events published after."""
        return await self.app.units.run(await self.org(), action)

    async def write_untenanted(self, action: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        """:meth:`write` on a session bound to no tenant (it refuses tenant tables): creating
        an organisation, the platform catalog."""
        return await self.app.units.run(None, action)

    @cached_property
    def loaders(self) -> Loaders:
        return Loaders(self.tenant_session)
