"""Identity and oauth clients.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "oauth_clients",
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("client_id", sa.String(length=80), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.String(length=32)), nullable=False),
        sa.Column("secret_hash", sa.String(length=200), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("cardinality(scopes) > 0", name=op.f("ck_oauth_clients_scopes")),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_oauth_clients_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_oauth_clients")),
        sa.UniqueConstraint(
            "organization_id", "client_id", name=op.f("uq_oauth_clients_organization_id_client_id")
        ),
    )
    op.create_table(
        "oauth_revoked_tokens",
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("jti", sa.String(length=128), nullable=False),
        sa.Column("client_id", sa.String(length=80), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "revoked_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_oauth_revoked_tokens_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("organization_id", "jti", name=op.f("pk_oauth_revoked_tokens")),
    )
    op.create_index(
        "ix_oauth_revoked_tokens_expires_at", "oauth_revoked_tokens", ["expires_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_oauth_revoked_tokens_expires_at", table_name="oauth_revoked_tokens")
    op.drop_table("oauth_revoked_tokens")
    op.drop_table("oauth_clients")
