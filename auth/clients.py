"""Integration clients (OAuth2 client credentials): registration, listing, revocation.

The service and its SQL. Functions called for a signed-in person take a session the caller
bound to the token's tenant (see :mod:`costgraph.models.scoping`). The token and revocation
endpoints have no token to take a tenant from: :func:`find_client` and
:func:`record_token_revocation` bind their session to the tenant the client id names.
:func:`load_revocations` is platform work on a platform-bound session.

A ``client_id`` reads ``cg_<organisation id>_<random>``: the token endpoint learns the tenant
from the id itself and looks the client up inside that tenant only.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.auth.permissions import SCOPES
from costgraph.auth.secret_hash import hash_secret_in_thread, new_secret
from costgraph.kernel.errors import NotFound, ValidationFailed
from costgraph.models.directory import User
from costgraph.models.oauth import OAuthClient, RevokedToken
from costgraph.models.scoping import bind_tenant

CLIENT_ID_RE = re.compile(r"^cg_([0-9a-f]{32})_([0-9a-f]{24})$")
NAME_MAX = 200


@dataclass(frozen=True, slots=True)
class ClientRecord:
    organization_id: uuid.UUID
    id: uuid.UUID
    client_id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None
    secret_hash: str = field(repr=False)
    #: The user the client acts for, if any.
    user_id: uuid.UUID | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @classmethod
    def of(cls, row: OAuthClient) -> ClientRecord:
        return cls(
            organization_id=row.organization_id,
            id=row.id,
            client_id=row.client_id,
            name=row.name,
            scopes=tuple(row.scopes),
            created_at=row.created_at,
            revoked_at=row.revoked_at,
            secret_hash=row.secret_hash,
            user_id=row.user_id,
        )


@dataclass(frozen=True, slots=True)
class RegisteredClient:
    """A new client and its secret: the only time the secret exists in clear."""

    record: ClientRecord
    secret: str = field(repr=False)


def new_client_id(organization_id: uuid.UUID) -> str:
    return f"cg_{organization_id.hex}_{secrets.token_hex(12)}"


def organization_of(client_id: str) -> uuid.UUID | None:
    """The tenant a well-formed client id belongs to; None for anything else."""
    match = CLIENT_ID_RE.fullmatch(client_id)
    return None if match is None else uuid.UUID(hex=match.group(1))


def validate_scopes(scopes: Iterable[str], field_name: str = "input.scopes") -> tuple[str, ...]:
    wanted = sorted(set(scopes))
    if not wanted:
        raise ValidationFailed("at least one scope is required", field_name)
    unknown = [s for s in wanted if s not in SCOPES]
    if unknown:
        raise ValidationFailed(
            f"unknown scope {unknown[0][:40]!r}; scopes are {', '.join(SCOPES)}", field_name
        )
    return tuple(wanted)


def _name(value: str) -> str:
    value = value.strip()
    if not value or len(value) > NAME_MAX:
        raise ValidationFailed(f"must be 1 to {NAME_MAX} characters", "input.name")
    return value


async def register_client(
    session: AsyncSession,
    organization_id: uuid.UUID,
    name: str,
    scopes: Iterable[str],
    user_id: uuid.UUID | None = None,
) -> RegisteredClient:
    """Create a client (acting for ``user_id``, one of the tenant's users, if given); its
    secret is returned once and stored only as a scrypt hash."""
    clean_name = _name(name)
    granted = validate_scopes(scopes)
    if (
        user_id is not None
        and await session.scalar(select(User.id).where(User.id == user_id)) is None
    ):
        raise NotFound("user", user_id, "input.userId")
    secret = new_secret()
    hashed = await hash_secret_in_thread(secret)
    row = OAuthClient(
        organization_id=organization_id,
        client_id=new_client_id(organization_id),
        name=clean_name,
        scopes=list(granted),
        secret_hash=hashed,
        user_id=user_id,
    )
    session.add(row)
    await session.flush()
    await session.refresh(row, ["created_at"])
    return RegisteredClient(ClientRecord.of(row), secret)


async def list_clients(session: AsyncSession) -> list[ClientRecord]:
    rows = await session.scalars(
        select(OAuthClient).order_by(OAuthClient.created_at, OAuthClient.id)
    )
    return [ClientRecord.of(row) for row in rows]


async def revoke_client(session: AsyncSession, id: uuid.UUID) -> ClientRecord:
    """Revoke a client of the session's tenant; revoking twice keeps the first time."""
    row = await session.scalar(select(OAuthClient).where(OAuthClient.id == id).with_for_update())
    if row is None:
        raise NotFound("OAuth client", id, "id")
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
        await session.flush()
    return ClientRecord.of(row)


async def find_client(session: AsyncSession, client_id: str) -> ClientRecord | None:
    """The client with this id, looked up inside the tenant the id names (binds the session)."""
    organization_id = organization_of(client_id)
    if organization_id is None:
        return None
    bind_tenant(session.sync_session, organization_id)
    row = await session.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id))
    return None if row is None else ClientRecord.of(row)


async def record_token_revocation(
    session: AsyncSession,
    organization_id: uuid.UUID,
    jti: str,
    client_id: str,
    expires_at: datetime,
) -> None:
    """Remember a revoked access token until it would have expired anyway (idempotent)."""
    bind_tenant(session.sync_session, organization_id)
    await session.execute(
        insert(RevokedToken)
        .values(
            organization_id=organization_id, jti=jti, client_id=client_id, expires_at=expires_at
        )
        .on_conflict_do_nothing(index_elements=["organization_id", "jti"])
    )


@dataclass(frozen=True, slots=True)
class Revocations:
    client_ids: frozenset[str]
    tokens: dict[str, datetime]


async def load_revocations(session: AsyncSession, now: datetime | None = None) -> Revocations:
    """Every revoked client and every revoked token not yet expired, across tenants.

    The session must be bound to the platform: this is the one cross-tenant read of identity.
    """
    at = now or datetime.now(UTC)
    client_ids: Sequence[str] = (
        await session.scalars(
            select(OAuthClient.client_id).where(OAuthClient.revoked_at.is_not(None))
        )
    ).all()
    tokens = (
        await session.execute(
            select(RevokedToken.jti, RevokedToken.expires_at).where(RevokedToken.expires_at > at)
        )
    ).all()
    return Revocations(frozenset(client_ids), {jti: exp for jti, exp in tokens})
