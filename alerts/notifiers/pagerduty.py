"""PagerDuty Events API v2: a ``trigger`` whose ``dedup_key`` is the alert's id, so retries and
a second channel to the same service open one incident."""

from __future__ import annotations

from typing import Any

import orjson

from costgraph.alerts.notifiers.base import DeliveryFailed, Outgoing, facts
from costgraph.alerts.notifiers.http import post
from costgraph.alerts.rules import severity
from costgraph.alerts.ssrf import GuardedClients
from costgraph.kernel.clock import format_rfc3339


def event(message: Outgoing, routing_key: str) -> dict[str, Any]:
    alert = message.alert
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": str(alert.id),
        "client": "CostGraph",
        "payload": {
            "summary": f"{message.title}: {alert.message}"[:1024],
            "source": "costgraph",
            "severity": severity(alert.kind, alert.stage),
            "timestamp": format_rfc3339(alert.raised_at),
            "component": "payments" if alert.budget_id is None else f"budget {alert.budget_id}",
            "group": message.organization_name or str(alert.organization_id),
            "class": alert.kind.event_type,
            "custom_details": facts(alert),
        },
    }


class PagerDutyNotifier:
    def __init__(self, clients: GuardedClients, timeout: float) -> None:
        self._clients = clients
        self._timeout = timeout

    async def send(self, message: Outgoing) -> None:
        if not message.secrets:
            raise DeliveryFailed("ERROR", "the channel has no routing key")
        await post(
            self._clients.for_url(message.target),
            message.target,
            content=orjson.dumps(event(message, message.secrets[0])),
            headers={"content-type": "application/json"},
            seconds=self._timeout,
        )
