"""The context of one websocket connection: the request context plus the handshake's state.

strawberry builds it once per connection and sets ``connection_params`` from the
``connection_init`` payload; ``on_ws_connect`` verifies the token there and sets the
principal. Everything per event opens its own session (see ``resolvers/subscriptions.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from costgraph.schema.context import Context
from costgraph.subscriptions.connections import Lease


@dataclass
class ConnectionContext(Context):
    connection_params: dict[str, Any] | None = field(default=None, init=False)
    lease: Lease | None = field(default=None, init=False)
