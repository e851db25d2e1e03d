"""``CostGraph``: the same client without asyncio in your code.

It runs an :class:`AsyncCostGraph` on an event loop of its own in a background thread
(anyio's blocking portal) and waits for each call, so the two behave the same.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import AbstractContextManager, ExitStack
from typing import Any, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal
from gql import GraphQLRequest

from .async_client import AsyncCostGraph
from .auth import TokenSource
from .events import UsageEvent
from .hold import Hold
from .models import (
    Account,
    Allowance,
    Budget,
    BudgetStatus,
    Forecast,
    PnL,
    Reservation,
    UsageAuthorized,
    UsageBatchRecorded,
    UsageRecorded,
    UsageRow,
    UsageUpdate,
)
from .retrying import RetryPolicy

T = TypeVar("T")


async def _next(iterator: AsyncIterator[T]) -> T:
    return await iterator.__anext__()


class CostGraph:
    """The synchronous client: ``with CostGraph() as cg: cg.record_usage(...)``.

    Takes the arguments of :class:`AsyncCostGraph`; its methods are the same, blocking."""

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        scopes: list[str] | None = None,
        token_url: str | None = None,
        auth: TokenSource | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self._stack = ExitStack()
        self._portal: BlockingPortal = self._stack.enter_context(start_blocking_portal())
        options: dict[str, Any] = {"clock": clock} if clock is not None else {}

        async def build() -> AsyncCostGraph:  # its locks belong to the portal's loop
            return AsyncCostGraph(
                url,
                token=token,
                client_id=client_id,
                client_secret=client_secret,
                scopes=scopes,
                token_url=token_url,
                auth=auth,
                retry=retry,
                timeout=timeout,
                **options,
            )

        try:
            self.aio = self._portal.call(build)
        except BaseException:
            self._stack.close()
            raise

    @property
    def url(self) -> str:
        return self.aio.url

    @property
    def auth(self) -> TokenSource:
        return self.aio.auth

    def __enter__(self) -> CostGraph:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._portal.call(self.aio.aclose)
        finally:
            self._stack.close()

    def _call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        async def run() -> Any:
            return await function(*args, **kwargs)

        return self._portal.call(run)

    def execute(
        self, operation: str | GraphQLRequest, variables: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._call(self.aio.execute, operation, variables)
        return result

    def record_usage(self, account_id: str, **event: Any) -> UsageRecorded:
        """As :meth:`AsyncCostGraph.record_usage` (``provider=``, ``model=``, tokens, …)."""
        result: UsageRecorded = self._call(self.aio.record_usage, account_id, **event)
        return result

    def record_usage_batch(self, events: Iterable[UsageEvent]) -> UsageBatchRecorded:
        result: UsageBatchRecorded = self._call(self.aio.record_usage_batch, list(events))
        return result

    def authorize(self, account_id: str, **estimate: Any) -> UsageAuthorized:
        result: UsageAuthorized = self._call(self.aio.authorize, account_id, **estimate)
        return result

    def settle(self, reservation_id: str, usage: UsageEvent) -> UsageRecorded:
        result: UsageRecorded = self._call(self.aio.settle, reservation_id, usage)
        return result

    def release(self, reservation_id: str) -> Reservation:
        result: Reservation = self._call(self.aio.release, reservation_id)
        return result

    def reserve(self, account_id: str, **estimate: Any) -> AbstractContextManager[Hold]:
        """As :meth:`AsyncCostGraph.reserve`: ``with cg.reserve(...) as hold:``."""
        return self._portal.wrap_async_context_manager(self.aio.reserve(account_id, **estimate))

    def accounts(self, customer_id: str | None = None) -> list[Account]:
        result: list[Account] = self._call(self.aio.accounts, customer_id)
        return result

    def account_pnl(
        self,
        account_id: str,
        start: dt.datetime | dt.date,
        end: dt.datetime | dt.date,
        currency: str | None = None,
    ) -> PnL:
        result: PnL = self._call(self.aio.account_pnl, account_id, start, end, currency)
        return result

    def customer_pnl(
        self,
        customer_id: str,
        start: dt.datetime | dt.date,
        end: dt.datetime | dt.date,
        currency: str | None = None,
    ) -> PnL:
        result: PnL = self._call(self.aio.customer_pnl, customer_id, start, end, currency)
        return result

    def organization_pnl(
        self, start: dt.datetime | dt.date, end: dt.datetime | dt.date, currency: str | None = None
    ) -> PnL:
        result: PnL = self._call(self.aio.organization_pnl, start, end, currency)
        return result

    def usage(
        self,
        start: dt.datetime | dt.date,
        end: dt.datetime | dt.date,
        group_by: Sequence[str] = ("MODEL",),
        **options: Any,
    ) -> list[UsageRow]:
        result: list[UsageRow] = self._call(self.aio.usage, start, end, group_by, **options)
        return result

    def budgets(self, scope_kind: str | None = None, scope_id: str | None = None) -> list[Budget]:
        result: list[Budget] = self._call(self.aio.budgets, scope_kind, scope_id)
        return result

    def budget_status(self, budget_id: str) -> BudgetStatus:
        result: BudgetStatus = self._call(self.aio.budget_status, budget_id)
        return result

    def allowance(self, account_id: str) -> Allowance:
        result: Allowance = self._call(self.aio.allowance, account_id)
        return result

    def forecast(
        self,
        scope_kind: str = "ORGANIZATION",
        scope_id: str | None = None,
        basis: str | None = None,
    ) -> Forecast:
        result: Forecast = self._call(self.aio.forecast, scope_kind, scope_id, basis)
        return result

    def _iterate(self, stream: AsyncIterable[T]) -> Iterator[T]:
        iterator = self._portal.call(_aiter, stream)
        try:
            while True:
                try:
                    yield self._portal.call(_next, iterator)
                except StopAsyncIteration:
                    return
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None:
                self._portal.call(close)

    def usage_updates(
        self, scope_kind: str | None = None, scope_id: str | None = None
    ) -> Iterator[UsageUpdate]:
        return self._iterate(self.aio.usage_updates(scope_kind, scope_id))

    def budget_status_changes(self, budget_id: str) -> Iterator[BudgetStatus]:
        return self._iterate(self.aio.budget_status_changes(budget_id))

    def allowance_changes(self, account_id: str) -> Iterator[Allowance]:
        return self._iterate(self.aio.allowance_changes(account_id))


async def _aiter(stream: AsyncIterable[T]) -> AsyncIterator[T]:
    return stream.__aiter__()
