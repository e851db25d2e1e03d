"""Microsoft Teams incoming webhooks (Workflows and the older connectors): a ``message`` with
one Adaptive Card attachment."""

from __future__ import annotations

from typing import Any

import orjson

from costgraph.alerts.notifiers.base import Outgoing, money, scope_line
from costgraph.alerts.notifiers.http import post
from costgraph.alerts.ssrf import GuardedClients


def payload(message: Outgoing) -> dict[str, Any]:
    alert = message.alert
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "size": "Medium",
                "weight": "Bolder",
                "text": message.title,
                "wrap": True,
            },
            {"type": "TextBlock", "text": alert.message, "wrap": True},
            {
                "type": "FactSet",
                "facts": [
                    {"title": "Spent", "value": money(alert, alert.spent)},
                    {"title": "Limit", "value": money(alert, alert.limit)},
                    {"title": "Scope", "value": scope_line(alert)},
                    {"title": "Alert", "value": str(alert.id)},
                ],
            },
        ],
    }
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }


class TeamsNotifier:
    def __init__(self, clients: GuardedClients, timeout: float) -> None:
        self._clients = clients
        self._timeout = timeout

    async def send(self, message: Outgoing) -> None:
        await post(
            self._clients.for_url(message.target),
            message.target,
            content=orjson.dumps(payload(message)),
            headers={"content-type": "application/json"},
            seconds=self._timeout,
        )
