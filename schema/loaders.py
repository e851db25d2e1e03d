"""DataLoaders for every relation; each batch runs in a session of its own, because sibling
fields resolve concurrently and one AsyncSession must not be shared between tasks."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.dataloader import DataLoader

from costgraph.billing.directory import get_many
from costgraph.models import Account, Customer, Department, User

T = TypeVar("T", Customer, Account, Department, User)
SessionFactory = Callable[[], Awaitable[AsyncSession]]


def _loader(open_session: SessionFactory, model: type[T]) -> DataLoader[uuid.UUID, T | None]:
    async def load(ids: Sequence[uuid.UUID]) -> list[T | None]:
        session = await open_session()
        try:
            found = await get_many(session, model, ids)
        finally:
            await session.close()
        return [found.get(i) for i in ids]

    return DataLoader(load_fn=load)


class Loaders:
    def __init__(self, open_session: SessionFactory) -> None:
        self.customer = _loader(open_session, Customer)
        self.account = _loader(open_session, Account)
        self.department = _loader(open_session, Department)
        self.user = _loader(open_session, User)
