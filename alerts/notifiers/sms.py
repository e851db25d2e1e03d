"""SMS through a Twilio-compatible Messages API, with the operator's account (settings):
``POST {api_base}/2010-04-01/Accounts/{sid}/Messages.json`` (form: To, From, Body; basic auth
with the account SID and auth token)."""

from __future__ import annotations

from urllib.parse import quote

import httpx

from costgraph.alerts.config import SmsConfig
from costgraph.alerts.notifiers.base import DeliveryFailed, Outgoing
from costgraph.alerts.notifiers.http import post

MAX_BODY = 1600


def text_of(message: Outgoing) -> str:
    return f"CostGraph — {message.title}. {message.alert.message}"[:MAX_BODY]


def messages_url(config: SmsConfig) -> str:
    sid = quote(config.account_sid or "", safe="")
    return f"{config.api_base.rstrip('/')}/2010-04-01/Accounts/{sid}/Messages.json"


class SmsNotifier:
    """The API base is the operator's (not a tenant's), so it is not SSRF-filtered; redirects
    are still not followed."""

    def __init__(self, config: SmsConfig, client: httpx.AsyncClient, timeout: float) -> None:
        self._config = config
        self._client = client
        self._timeout = timeout

    async def send(self, message: Outgoing) -> None:
        config = self._config
        if not config.configured or config.account_sid is None or config.auth_token is None:
            raise DeliveryFailed("ERROR", "no SMS account is configured")
        await post(
            self._client,
            messages_url(config),
            data={"To": message.target, "From": config.sender or "", "Body": text_of(message)},
            auth=(config.account_sid, config.auth_token),
            seconds=self._timeout,
        )
