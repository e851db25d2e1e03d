"""Integration clients of the OAuth2 authorization server, and revoked access tokens."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKeyConstraint,
    Index,
    String,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from costgraph.models.base import Base, CreatedAt, Id, TenantScoped


class OAuthClient(TenantScoped, Base):
    """A client-credentials client of one organisation. The secret is kept only as a hash.

    ``client_id`` embeds the organisation id, so the token endpoint finds a client by its
    tenant key without a cross-tenant lookup. A revoked client stays (``revoked_at``) so its
    id is never reused and its tokens keep being refused.
    """

    __tablename__ = "oauth_clients"
    __table_args__ = (
        UniqueConstraint("organization_id", "client_id"),
        CheckConstraint("cardinality(scopes) > 0", name="scopes"),
        ForeignKeyConstraint(["organization_id", "user_id"], ["users.organization_id", "users.id"]),
    )

    id: Mapped[Id] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(String(80))
    name: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(32)))
    secret_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[CreatedAt]
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: The user the client acts for, if any (the users view's integration access).
    user_id: Mapped[uuid.UUID | None]


class RevokedToken(TenantScoped, Base):
    """An access token revoked before its expiry (RFC 7009), by its ``jti``.

    Rows are only needed until ``expires_at``: after that the token is refused anyway.
    """

    __tablename__ = "oauth_revoked_tokens"
    __table_args__ = (Index("ix_oauth_revoked_tokens_expires_at", "expires_at"),)

    jti: Mapped[str] = mapped_column(String(128), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(80))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[CreatedAt]
