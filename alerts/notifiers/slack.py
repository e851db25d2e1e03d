"""Slack incoming webhooks: ``text`` (the notification's fallback) and Block Kit ``blocks``.

Slack-compatible receivers (Mattermost, Rocket.Chat) take the same body.
"""

from __future__ import annotations

from typing import Any

import orjson

from costgraph.alerts.notifiers.base import Outgoing, money, scope_line
from costgraph.alerts.notifiers.http import post
from costgraph.alerts.ssrf import GuardedClients


def _mrkdwn(text: str) -> str:
    """Slack's three control characters escaped (a name like ``Ada <ada@x.io>`` is text)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def payload(message: Outgoing) -> dict[str, Any]:
    alert = message.alert
    return {
        "text": f"{message.title}: {alert.message}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": message.title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _mrkdwn(alert.message)}},
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*Spent*\n{money(alert, alert.spent)}"},
                    {"type": "mrkdwn", "text": f"*Limit*\n{money(alert, alert.limit)}"},
                    {
                        "type": "mrkdwn",
                        "text": f"*Scope*\n{_mrkdwn(scope_line(alert))}",
                    },
                    {
                        "type": "mrkdwn",
                        "text": f"*Period*\n{alert.period_start:%Y-%m-%d} to "
                        f"{alert.period_end:%Y-%m-%d}",
                    },
                ],
            },
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"CostGraph alert `{alert.id}`"}],
            },
        ],
    }


class SlackNotifier:
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
