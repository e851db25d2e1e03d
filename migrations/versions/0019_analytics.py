"""Analytics support (issue 23).

Revision ID: 0019
Revises: 0018

- ``oauth_clients.user_id``: the user an integration client acts for (optional). The users
  view reports a user's integration access as active while one of their clients is not
  revoked. Tenant-first foreign key to ``users``, like every key here.

Other analytics work of issue 23 may add to this revision: each change in its own statement.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("oauth_clients", sa.Column("user_id", sa.UUID(), nullable=True))
    op.create_foreign_key(
        op.f("fk_oauth_clients_organization_id_user_id_users"),
        "oauth_clients",
        "users",
        ["organization_id", "user_id"],
        ["organization_id", "id"],
    )


def downgrade() -> None:
    op.drop_constraint(
        op.f("fk_oauth_clients_organization_id_user_id_users"), "oauth_clients", type_="foreignkey"
    )
    op.drop_column("oauth_clients", "user_id")
