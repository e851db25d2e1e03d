"""CostGraph's Python client for integrators, built on gql (async and sync).

    from costgraph.client import CostGraph
    with CostGraph() as cg:  # COSTGRAPH_URL; COSTGRAPH_TOKEN or an OAuth client's id/secret
        with cg.reserve(account, provider="openai", model="gpt-4o") as hold:
            hold.observe(response)  # the provider's answer, or each chunk of its stream

It talks to the server over HTTP and websockets only, and imports nothing of it.
See docs/guides/client.md.
"""

from .async_client import AsyncCostGraph, date_range
from .auth import BearerToken, ClientCredentials, TokenSource
from .errors import (
    AllowanceExhausted,
    BudgetLimitReached,
    ConnectionFailed,
    CostGraphError,
    Forbidden,
    IdempotencyConflict,
    NotFound,
    OverageLimit,
    PeriodClosed,
    PriceMissing,
    ProtocolError,
    RateLimited,
    RateMissing,
    Refused,
    ServerError,
    Transient,
    Unauthenticated,
    Unavailable,
    ValidationFailed,
)
from .events import UsageEvent, new_key
from .hold import Hold
from .live import LiveStream
from .models import (
    Account,
    Allowance,
    Budget,
    BudgetScope,
    BudgetStatus,
    CurrencyPair,
    EstimateInterval,
    Forecast,
    LedgerEntry,
    PnL,
    Reservation,
    RevenueBySource,
    TokenTotals,
    UsageAuthorized,
    UsageBatchRecorded,
    UsageChange,
    UsageRecorded,
    UsageRow,
    UsageTotals,
    UsageUpdate,
)
from .provider_usage import ProviderUsage, StreamUsage, anthropic_usage, openai_usage
from .retrying import RetryPolicy
from .sync_client import CostGraph

__all__ = [
    "Account",
    "Allowance",
    "AllowanceExhausted",
    "AsyncCostGraph",
    "BearerToken",
    "Budget",
    "BudgetLimitReached",
    "BudgetScope",
    "BudgetStatus",
    "ClientCredentials",
    "ConnectionFailed",
    "CostGraph",
    "CostGraphError",
    "CurrencyPair",
    "EstimateInterval",
    "Forbidden",
    "Forecast",
    "Hold",
    "IdempotencyConflict",
    "LedgerEntry",
    "LiveStream",
    "NotFound",
    "OverageLimit",
    "PeriodClosed",
    "PnL",
    "PriceMissing",
    "ProtocolError",
    "ProviderUsage",
    "RateLimited",
    "RateMissing",
    "Refused",
    "Reservation",
    "RetryPolicy",
    "RevenueBySource",
    "ServerError",
    "StreamUsage",
    "TokenSource",
    "TokenTotals",
    "Transient",
    "Unauthenticated",
    "Unavailable",
    "UsageAuthorized",
    "UsageBatchRecorded",
    "UsageChange",
    "UsageEvent",
    "UsageRecorded",
    "UsageRow",
    "UsageTotals",
    "UsageUpdate",
    "ValidationFailed",
    "anthropic_usage",
    "date_range",
    "new_key",
    "openai_usage",
]
