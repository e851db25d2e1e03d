"""Types of the OAuth2 integration clients."""

from __future__ import annotations

import datetime as dt

import strawberry

from costgraph.auth.clients import ClientRecord, RegisteredClient


@strawberry.input(description="A new integration client and the scopes it may be granted.")
class OAuthClientInput:
    name: str
    scopes: list[str] = strawberry.field(
        description="Any of usage:write, usage:read, billing:read, billing:write."
    )
    user_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="The user the client acts for: the users view shows their integration "
        "access as active while such a client is not revoked.",
    )


@strawberry.type(description="An integration client (client-credentials grant).")
class OAuthClient:
    id: strawberry.ID
    client_id: str
    name: str
    scopes: list[str]
    created_at: dt.datetime
    revoked_at: dt.datetime | None = strawberry.field(
        description="Set once revoked: its tokens stop working and it gets no new ones."
    )
    user_id: strawberry.ID | None = strawberry.field(
        default=None, description="The user the client acts for, if any."
    )

    @classmethod
    def of(cls, record: ClientRecord) -> OAuthClient:
        return cls(
            id=strawberry.ID(str(record.id)),
            client_id=record.client_id,
            name=record.name,
            scopes=list(record.scopes),
            created_at=record.created_at,
            revoked_at=record.revoked_at,
            user_id=None if record.user_id is None else strawberry.ID(str(record.user_id)),
        )


@strawberry.type(
    description="A new client's credentials. The secret is shown this once: only a hash of "
    "it is kept, so a lost secret means registering a new client."
)
class OAuthClientCredentials:
    client: OAuthClient
    client_id: str
    client_secret: str
    token_endpoint: str

    @classmethod
    def of(cls, registered: RegisteredClient, token_endpoint: str) -> OAuthClientCredentials:
        return cls(
            client=OAuthClient.of(registered.record),
            client_id=registered.record.client_id,
            client_secret=registered.secret,
            token_endpoint=token_endpoint,
        )
