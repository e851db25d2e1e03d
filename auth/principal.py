"""Who is calling, as established from a verified access token."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    organization_id: uuid.UUID | None
    roles: frozenset[str]
    #: None when the token carries no ``scope`` claim (a person's token limited by roles only).
    scopes: frozenset[str] | None
    expires_at: datetime
    client_id: str | None = None
    token_id: str | None = None
    #: The accounts a person's token is for (claim ``accounts``): what a ``member`` may read
    #: of its own (allowance, banner, top-up requests). Empty: none named.
    account_ids: frozenset[uuid.UUID] = frozenset()
