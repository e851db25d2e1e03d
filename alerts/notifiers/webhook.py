"""Generic webhooks, signed as Standard Webhooks sign them (see ``alerts/signing.py``).

The body is the same on every retry of a delivery; ``webhook-id`` is the delivery's id (so a
receiver dedupes by it) and ``webhook-timestamp`` the attempt's time, both covered by the
signature. Example body::

    {"type": "budget.threshold", "timestamp": "2026-11-23T13:40:00Z",
     "data": {"alertId": "…", "organizationId": "…", "budgetId": "…", "kind": "THRESHOLD",
              "stage": 75, "scope": {"kind": "USER", "id": "…", "name": "Ada <ada@…>"},
              "periodStart": "2026-11-01T00:00:00Z", "periodEnd": "2026-12-01T00:00:00Z",
              "spent": "7.600000000000", "limit": "10.000000000000", "currency": "USD",
              "message": "…", "raisedAt": "2026-11-23T13:40:00Z"}}
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from costgraph.alerts import signing
from costgraph.alerts.notifiers.base import Outgoing, facts
from costgraph.alerts.notifiers.http import post
from costgraph.alerts.records import AlertRecord
from costgraph.alerts.ssrf import GuardedClients
from costgraph.kernel.clock import format_rfc3339

USER_AGENT = "CostGraph-Webhooks/1"


def payload(alert: AlertRecord) -> dict[str, Any]:
    return {
        "type": alert.kind.event_type,
        "timestamp": format_rfc3339(alert.raised_at),
        "data": facts(alert),
    }


def body_of(alert: AlertRecord) -> bytes:
    return orjson.dumps(payload(alert))


class WebhookNotifier:
    def __init__(
        self, clients: GuardedClients, timeout: float, clock: Callable[[], float] = time.time
    ) -> None:
        self._clients = clients
        self._timeout = timeout
        self._clock = clock

    async def send(self, message: Outgoing) -> None:
        body = body_of(message.alert)
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            **signing.headers(message.secrets, str(message.delivery_id), int(self._clock()), body),
        }
        client = self._clients.for_url(message.target)
        await post(client, message.target, content=body, headers=headers, seconds=self._timeout)
