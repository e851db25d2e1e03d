"""``AsyncCostGraph``: the asyncio client (``CostGraph`` in ``sync_client.py`` wraps it)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urljoin

import httpx
from gql import Client, GraphQLRequest, gql
from gql.client import AsyncClientSession
from gql.transport.exceptions import (
    TransportProtocolError,
    TransportQueryError,
    TransportServerError,
)
from gql.transport.httpx import HTTPXAsyncTransport

from .auth import BearerToken, ClientCredentials, TokenSource
from .errors import (
    ConnectionFailed,
    CostGraphError,
    ProtocolError,
    Refused,
    ServerError,
    Unauthenticated,
    from_graphql_errors,
    from_user_error,
)
from .events import UsageEvent, new_key, rfc3339
from .hold import Hold
from .live import LiveStream
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
from .operations import DOCUMENTS
from .provider_usage import StreamUsage
from .retrying import RetryPolicy
from .shapes import parse

T = TypeVar("T")
logger = logging.getLogger("costgraph.client")

DEFAULT_URL = "http://127.0.0.1:8000/graphql"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def token_source(
    url: str,
    token: str | None,
    client_id: str | None,
    client_secret: str | None,
    scopes: list[str] | None,
    token_url: str | None,
    retry: RetryPolicy,
    timeout: float,
) -> TokenSource:
    """A given token; else client credentials; else ``COSTGRAPH_TOKEN``, then
    ``COSTGRAPH_CLIENT_ID`` and ``COSTGRAPH_CLIENT_SECRET`` from the environment."""
    if token:
        return BearerToken(token)
    client_id = client_id or (None if client_secret else os.environ.get("COSTGRAPH_CLIENT_ID"))
    client_secret = client_secret or os.environ.get("COSTGRAPH_CLIENT_SECRET")
    if not client_id and os.environ.get("COSTGRAPH_TOKEN"):
        return BearerToken(os.environ["COSTGRAPH_TOKEN"])
    if client_id and client_secret:
        return ClientCredentials(
            client_id,
            client_secret,
            token_url=token_url or urljoin(url, "/oauth/token"),
            scopes=scopes,
            timeout=timeout,
            retry=retry,
        )
    raise ValueError(
        "no credentials: pass token=… or client_id=… and client_secret=…, or set "
        "COSTGRAPH_TOKEN (or COSTGRAPH_CLIENT_ID and COSTGRAPH_CLIENT_SECRET)"
    )


def date_range(start: dt.datetime | dt.date, end: dt.datetime | dt.date) -> dict[str, str]:
    """``[start, end)``; a date is its midnight UTC."""

    def moment(value: dt.datetime | dt.date) -> str:
        if not isinstance(value, dt.datetime):
            value = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
        return rfc3339(value)

    return {"start": moment(start), "end": moment(end)}


class AsyncCostGraph:
    """CostGraph's API for integrators, on asyncio.

    ``url`` defaults to ``COSTGRAPH_URL`` (else the local server); credentials are a bearer
    ``token`` or an OAuth client's ``client_id`` and ``client_secret`` (see
    :func:`token_source`). Calls retry network errors, 5xx and ``UNAVAILABLE`` per ``retry``;
    writes keep their idempotency key across those retries. ``clock`` dates usage that does
    not say when it occurred. Use it as ``async with AsyncCostGraph(...) as cg:``.
    """

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
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self.url = url or os.environ.get("COSTGRAPH_URL") or DEFAULT_URL
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.clock = clock
        self.auth = auth or token_source(
            self.url, token, client_id, client_secret, scopes, token_url, self.retry, timeout
        )
        self._gql = Client(
            transport=HTTPXAsyncTransport(url=self.url, timeout=timeout),
            execute_timeout=timeout + 5,
        )
        self._session: AsyncClientSession | None = None
        self._connecting = asyncio.Lock()

    async def __aenter__(self) -> AsyncCostGraph:
        await self._connected()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            self._session = None
            await self._gql.close_async()  # type: ignore[no-untyped-call]

    async def _connected(self) -> AsyncClientSession:
        async with self._connecting:
            if self._session is None:
                session = await self._gql.connect_async()  # type: ignore[no-untyped-call]
                assert isinstance(session, AsyncClientSession)
                self._session = session
            return self._session

    # --- any operation -------------------------------------------------------------------

    async def execute(
        self, operation: str | GraphQLRequest, variables: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Send one query or mutation and return its ``data``; GraphQL errors raise their
        typed exception. Transient failures are retried as the client's policy says."""
        request = GraphQLRequest(
            gql(operation) if isinstance(operation, str) else operation,
            variable_values=dict(variables) if variables is not None else None,
        )
        result: dict[str, Any] = await self.retry.retrying()(self._execute_once, request)
        return result

    async def _execute_once(self, request: GraphQLRequest) -> dict[str, Any]:
        session = await self._connected()
        token = await self.auth.token()
        for first in (True, False):
            headers = {"Authorization": f"Bearer {token}"}
            try:
                data: dict[str, Any] = await session.execute(
                    request, extra_args={"headers": headers}
                )
                return data
            except TransportQueryError as exc:
                error = from_graphql_errors(exc.errors)
                if isinstance(error, Unauthenticated) and self.auth.refreshable and first:
                    token = await self.auth.token(refresh=True)  # revoked or expired early
                    continue
                raise error from exc
            except TransportServerError as exc:
                if (exc.code or 0) >= 500:
                    raise ServerError(exc.code or 500, str(exc)) from exc
                raise ProtocolError(str(exc)) from exc
            except TransportProtocolError as exc:
                raise ProtocolError(str(exc)) from exc
            except CostGraphError:
                raise
            except (httpx.TransportError, OSError, TimeoutError) as exc:
                raise ConnectionFailed(f"{self.url}: {exc!r}") from exc
            except Exception as exc:  # gql's TransportConnectionFailed, TransportClosed, …
                if type(exc).__module__.startswith("gql.transport"):
                    raise ConnectionFailed(f"{self.url}: {exc!r}") from exc
                raise
        raise AssertionError("unreachable")

    async def _write(
        self, name: str, field: str, success: type[T], variables: Mapping[str, Any]
    ) -> T:
        data = await self.execute(DOCUMENTS[name], variables)
        result: dict[str, Any] = data[field]
        if result.get("__typename") == success.TYPENAME:  # type: ignore[attr-defined]
            return parse(success, result)
        raise from_user_error(result)

    # --- usage -------------------------------------------------------------------------

    async def record_usage(
        self,
        account_id: str,
        *,
        provider: str,
        model: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cached_input_tokens: int = 0,
        cache_write_tokens: int = 0,
        reasoning_tokens: int = 0,
        occurred_at: dt.datetime | None = None,
        idempotency_key: str | None = None,
        user_id: str | None = None,
        feature: str | None = None,
        agent: str | None = None,
        request_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        provider_cost: Decimal | str | None = None,
        provider_currency: str | None = None,
    ) -> UsageRecorded:
        """Record one AI call. Without ``idempotency_key`` a fresh one is made, and kept
        across retries: a write whose answer was lost is replayed, not written twice."""
        event = UsageEvent(
            account_id=account_id,
            provider=provider,
            model=model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_input_tokens=cached_input_tokens,
            cache_write_tokens=cache_write_tokens,
            reasoning_tokens=reasoning_tokens,
            occurred_at=occurred_at,
            idempotency_key=idempotency_key,
            user_id=user_id,
            feature=feature,
            agent=agent,
            request_id=request_id,
            metadata=metadata,
            provider_cost=provider_cost,
            provider_currency=provider_currency,
        )
        return await self._write(
            "record_usage",
            "recordUsage",
            UsageRecorded,
            {"input": event.to_input(new_key(), self.clock())},
        )

    async def record_usage_batch(self, events: Iterable[UsageEvent]) -> UsageBatchRecorded:
        """Record many calls in one request (each with its own key, made when missing)."""
        now = self.clock()
        batch = [event.to_input(new_key(), now) for event in events]
        return await self._write(
            "record_usage_batch", "recordUsageBatch", UsageBatchRecorded, {"input": batch}
        )

    # --- reserve, settle, release ---------------------------------------------------------

    async def authorize(
        self,
        account_id: str,
        *,
        provider: str,
        model: str,
        estimated_input_tokens: int = 0,
        estimated_output_tokens: int = 0,
        estimated_cost: Decimal | str | None = None,
        estimated_cost_currency: str | None = None,
        user_id: str | None = None,
        feature: str | None = None,
        agent: str | None = None,
        idempotency_key: str | None = None,
    ) -> UsageAuthorized:
        """Hold the estimated cost; raises ``BudgetLimitReached`` and the like when refused."""
        value: dict[str, Any] = {
            "idempotencyKey": idempotency_key or new_key("hold"),
            "accountId": str(account_id),
            "provider": provider,
            "model": model,
            "estimatedInputTokens": estimated_input_tokens,
            "estimatedOutputTokens": estimated_output_tokens,
        }
        optional = {
            "estimatedCost": None if estimated_cost is None else str(estimated_cost),
            "estimatedCostCurrency": estimated_cost_currency,
            "userId": user_id,
            "feature": feature,
            "agent": agent,
        }
        value.update({k: v for k, v in optional.items() if v is not None})
        return await self._write(
            "authorize_usage", "authorizeUsage", UsageAuthorized, {"input": value}
        )

    async def settle(self, reservation_id: str, usage: UsageEvent) -> UsageRecorded:
        """Record what a held call used (``usage.idempotency_key`` made when missing)."""
        value = {"reservationId": reservation_id, "usage": usage.to_input(new_key(), self.clock())}
        return await self._write("settle_usage", "settleUsage", UsageRecorded, {"input": value})

    async def release(self, reservation_id: str) -> Reservation:
        """Free a hold unused."""
        data = await self.execute(DOCUMENTS["release_reservation"], {"id": reservation_id})
        return parse(Reservation, data["releaseReservation"])

    @asynccontextmanager
    async def reserve(
        self,
        account_id: str,
        *,
        provider: str,
        model: str,
        estimated_input_tokens: int = 0,
        estimated_output_tokens: int = 0,
        estimated_cost: Decimal | str | None = None,
        estimated_cost_currency: str | None = None,
        user_id: str | None = None,
        feature: str | None = None,
        agent: str | None = None,
        request_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> AsyncIterator[Hold]:
        """Reserve before an AI call, settle after it: ``async with cg.reserve(...) as hold``.

        Entering holds the estimate (``authorizeUsage``) and raises the refusal's typed
        exception (``BudgetLimitReached``, ``AllowanceExhausted``, …) instead of entering.
        The block reports what the call used (``hold.observe(response_or_chunk)``,
        ``hold.report(...)``). Leaving settles with that; leaving by an exception releases
        the hold and lets the exception through.
        """
        key = idempotency_key or new_key("hold")
        authorized = await self.authorize(
            account_id,
            provider=provider,
            model=model,
            estimated_input_tokens=estimated_input_tokens,
            estimated_output_tokens=estimated_output_tokens,
            estimated_cost=estimated_cost,
            estimated_cost_currency=estimated_cost_currency,
            user_id=user_id,
            feature=feature,
            agent=agent,
            idempotency_key=key,
        )
        hold = Hold(
            authorized.reservation,
            StreamUsage(provider, model, input_tokens=estimated_input_tokens),
            started_at=self.clock(),
            estimate={
                "input_tokens": estimated_input_tokens,
                "output_tokens": estimated_output_tokens,
            },
        )
        template = UsageEvent(
            account_id=account_id,
            provider=provider,
            model=model,
            user_id=user_id,
            feature=feature,
            agent=agent,
            request_id=request_id,
            metadata=metadata,
        )
        try:
            yield hold
        except BaseException:
            await self._release_quietly(hold)
            raise
        try:
            hold.settled = await self.settle(hold.id, hold.usage_event(template, f"{key}-settle"))
        except Refused:  # OVERAGE_LIMIT, …: nothing was written; free the hold
            await self._release_quietly(hold)
            raise  # (after a transient failure the settlement may have landed: keep the hold)

    async def _release_quietly(self, hold: Hold) -> None:
        try:
            await self.release(hold.id)
        except CostGraphError as exc:  # it expires on its own; the caller's error matters
            logger.warning("could not release reservation %s: %s", hold.id, exc)

    # --- reads ---------------------------------------------------------------------------

    async def accounts(self, customer_id: str | None = None) -> list[Account]:
        found: list[Account] = []
        after: str | None = None
        while True:
            data = await self.execute(
                DOCUMENTS["accounts"], {"first": 100, "after": after, "customerId": customer_id}
            )
            page = data["accounts"]
            found.extend(parse(Account, node) for node in page["nodes"])
            if not page["pageInfo"]["hasNextPage"]:
                return found
            after = page["pageInfo"]["endCursor"]

    async def account_pnl(
        self,
        account_id: str,
        start: dt.datetime | dt.date,
        end: dt.datetime | dt.date,
        currency: str | None = None,
    ) -> PnL:
        variables = {"id": account_id, "range": date_range(start, end), "currency": currency}
        data = await self.execute(DOCUMENTS["account_pnl"], variables)
        return parse(PnL, data["accountPnl"])

    async def customer_pnl(
        self,
        customer_id: str,
        start: dt.datetime | dt.date,
        end: dt.datetime | dt.date,
        currency: str | None = None,
    ) -> PnL:
        variables = {"id": customer_id, "range": date_range(start, end), "currency": currency}
        data = await self.execute(DOCUMENTS["customer_pnl"], variables)
        return parse(PnL, data["customerPnl"])

    async def organization_pnl(
        self, start: dt.datetime | dt.date, end: dt.datetime | dt.date, currency: str | None = None
    ) -> PnL:
        variables = {"range": date_range(start, end), "currency": currency}
        data = await self.execute(DOCUMENTS["organization_pnl"], variables)
        return parse(PnL, data["organizationPnl"])

    async def usage(
        self,
        start: dt.datetime | dt.date,
        end: dt.datetime | dt.date,
        group_by: Sequence[str] = ("MODEL",),
        *,
        bucket: str | None = None,
        filter: Mapping[str, Any] | None = None,
        currency: str | None = None,
    ) -> list[UsageRow]:
        variables = {
            "range": date_range(start, end),
            "groupBy": list(group_by),
            "bucket": bucket,
            "filter": dict(filter) if filter else None,
            "currency": currency,
        }
        data = await self.execute(DOCUMENTS["usage"], variables)
        return [parse(UsageRow, row) for row in data["usage"]]

    async def budgets(
        self, scope_kind: str | None = None, scope_id: str | None = None
    ) -> list[Budget]:
        scope = None if scope_kind is None else {"kind": scope_kind, "id": scope_id}
        data = await self.execute(DOCUMENTS["budgets"], {"scope": scope})
        return [parse(Budget, budget) for budget in data["budgets"]]

    async def budget_status(self, budget_id: str) -> BudgetStatus:
        data = await self.execute(DOCUMENTS["budget_status"], {"id": budget_id})
        return parse(BudgetStatus, data["budgetStatus"])

    async def allowance(self, account_id: str) -> Allowance:
        data = await self.execute(DOCUMENTS["allowance"], {"id": account_id})
        return parse(Allowance, data["allowance"])

    async def forecast(
        self,
        scope_kind: str = "ORGANIZATION",
        scope_id: str | None = None,
        basis: str | None = None,
    ) -> Forecast:
        variables = {"scope": {"kind": scope_kind, "id": scope_id}, "basis": basis}
        data = await self.execute(DOCUMENTS["forecast"], variables)
        return parse(Forecast, data["forecast"])

    # --- live ----------------------------------------------------------------------------

    def _live(
        self, name: str, field: str, model: type[T], variables: dict[str, Any]
    ) -> LiveStream[T]:
        return LiveStream(
            self.url,
            GraphQLRequest(DOCUMENTS[name], variable_values=variables),
            field,
            lambda data: parse(model, data),
            auth=self.auth,
            retry=self.retry,
            timeout=self.timeout,
        )

    def usage_updates(
        self, scope_kind: str | None = None, scope_id: str | None = None
    ) -> LiveStream[UsageUpdate]:
        """This month's totals of a scope (default: the organisation), live: a SNAPSHOT on
        every (re)connection, then an EVENT per write."""
        scope = None if scope_kind is None else {"kind": scope_kind, "id": scope_id}
        return self._live("usage_updates", "usageUpdates", UsageUpdate, {"scope": scope})

    def budget_status_changes(self, budget_id: str) -> LiveStream[BudgetStatus]:
        return self._live(
            "budget_status_changed", "budgetStatusChanged", BudgetStatus, {"id": budget_id}
        )

    def allowance_changes(self, account_id: str) -> LiveStream[Allowance]:
        return self._live("allowance_changed", "allowanceChanged", Allowance, {"id": account_id})
