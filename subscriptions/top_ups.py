"""The ``topUpRequested`` feed: an account's TOP_UP_REQUESTED alerts as they are raised."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

from costgraph.alerts.rules import AlertKind
from costgraph.subscriptions.bus import Bus
from costgraph.subscriptions.events import AlertNotice
from costgraph.subscriptions.feeds import alert_feed

CODE = AlertKind.TOP_UP_REQUESTED.code


async def top_up_feed(
    bus: Bus, organization_id: uuid.UUID, account_id: uuid.UUID
) -> AsyncIterator[AlertNotice]:
    """The account's top-up requests (the organisation's alert channel, filtered)."""
    async for notice in alert_feed(bus, organization_id):
        if notice.code == CODE and notice.scope_id == account_id:
            yield notice
