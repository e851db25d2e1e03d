"""The reservation a ``reserve(...)`` block holds, and what the block reports it used."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from .events import UsageEvent
from .models import Reservation, UsageRecorded
from .provider_usage import StreamUsage, TokenCounts


class Hold:
    """Inside ``reserve(...)``: feed it the provider's answer or stream (``observe``), or
    report the counts yourself (``report``, ``add``). Leaving the block settles with them;
    when nothing was reported it settles at the estimate the hold was made for."""

    def __init__(
        self,
        reservation: Reservation,
        meter: StreamUsage,
        *,
        started_at: dt.datetime,
        estimate: TokenCounts,
    ) -> None:
        self.reservation = reservation
        self.meter = meter
        self.started_at = started_at
        self.estimate = estimate
        #: The settlement, once the block has left without an exception.
        self.settled: UsageRecorded | None = None
        self._reported: TokenCounts = {}
        self._cost: tuple[Decimal | str, str | None] | None = None

    @property
    def id(self) -> str:
        return self.reservation.id

    def observe(self, payload: Mapping[str, Any]) -> None:
        """A response, a stream chunk or a stream event (OpenAI or Anthropic, as a dict)."""
        self.meter.observe(payload)

    def add(self, **tokens: int) -> None:
        """Add tokens you count yourself (``output_tokens=1`` per chunk, …)."""
        self.meter.add(**tokens)

    def report(
        self,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cached_input_tokens: int | None = None,
        cache_write_tokens: int | None = None,
        reasoning_tokens: int | None = None,
        provider_cost: Decimal | str | None = None,
        provider_currency: str | None = None,
    ) -> None:
        """The actual counts (each replaces what was observed), and the cost if you know it."""
        given = {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cached_input_tokens": cached_input_tokens,
            "cache_write_tokens": cache_write_tokens,
            "reasoning_tokens": reasoning_tokens,
        }
        self._reported.update({k: int(v) for k, v in given.items() if v is not None})  # type: ignore[typeddict-item]
        if provider_cost is not None:
            self._cost = (provider_cost, provider_currency)

    def counts(self) -> TokenCounts:
        """What the settlement will say was used."""
        if self.meter.seen:
            counts = self.meter.counts()
        else:
            counts = {
                "input_tokens": 0,
                "output_tokens": 0,
                "cached_input_tokens": 0,
                "cache_write_tokens": 0,
                "reasoning_tokens": 0,
            }
            if not self._reported:
                counts.update(self.estimate)
        counts.update(self._reported)
        return counts

    def usage_event(self, template: UsageEvent, key: str) -> UsageEvent:
        counts = self.counts()
        cost, currency = self._cost if self._cost is not None else (None, None)
        return UsageEvent(
            account_id=template.account_id,
            provider=template.provider,
            model=template.model,
            occurred_at=self.started_at,
            idempotency_key=key,
            user_id=template.user_id,
            feature=template.feature,
            agent=template.agent,
            request_id=template.request_id,
            metadata=template.metadata,
            provider_cost=cost,
            provider_currency=currency,
            input_tokens=counts.get("input_tokens", 0),
            output_tokens=counts.get("output_tokens", 0),
            cached_input_tokens=counts.get("cached_input_tokens", 0),
            cache_write_tokens=counts.get("cache_write_tokens", 0),
            reasoning_tokens=counts.get("reasoning_tokens", 0),
        )
