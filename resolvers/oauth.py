"""Integration clients: register (the secret shown once), list, revoke. Org admins only."""

from __future__ import annotations

import strawberry

from costgraph.auth import clients
from costgraph.auth.oauth_server import TOKEN_PATH
from costgraph.auth.permissions import Right
from costgraph.resolvers.access import needs
from costgraph.resolvers.ids import decode_id, decode_optional
from costgraph.schema.oauth import OAuthClient, OAuthClientCredentials, OAuthClientInput
from costgraph.schema.types import Info


@strawberry.type
class OAuthQuery:
    @strawberry.field(
        description="The organisation's integration clients, revoked ones included.",
        extensions=[needs(Right.MANAGE_CLIENTS)],
    )
    async def oauth_clients(self, info: Info) -> list[OAuthClient]:
        async with info.context.reading() as session:
            records = await clients.list_clients(session)
        return [OAuthClient.of(record) for record in records]


@strawberry.type
class OAuthMutation:
    @strawberry.mutation(
        name="registerOAuthClient",
        description="A new integration client; its secret is in this answer and nowhere else.",
        extensions=[needs(Right.MANAGE_CLIENTS)],
    )
    async def register_oauth_client(
        self, info: Info, input: OAuthClientInput
    ) -> OAuthClientCredentials:
        user_id = decode_optional(input.user_id, "user", "input.userId")
        registered = await info.context.write(
            lambda uow: clients.register_client(
                uow.session, uow.org.id, input.name, input.scopes, user_id
            )
        )
        token_endpoint = info.context.app.settings.issuer.rstrip("/") + TOKEN_PATH
        return OAuthClientCredentials.of(registered, token_endpoint)

    @strawberry.mutation(
        name="revokeOAuthClient",
        description="Revoke a client: it gets no new tokens and the ones it has stop working.",
        extensions=[needs(Right.MANAGE_CLIENTS)],
    )
    async def revoke_oauth_client(self, info: Info, id: strawberry.ID) -> OAuthClient:
        client_id = decode_id(id, "OAuth client", "id")
        record = await info.context.write(lambda uow: clients.revoke_client(uow.session, client_id))
        info.context.app.revocations.revoke_client(record.client_id)  # at once, here
        return OAuthClient.of(record)
