"""Where an organisation's books start: months before it hold imported history.

Revision ID: 0012
Revises: 0011

``organizations.books_start``: the first month the monthly close may close (set to the month
an organisation is created in, by the business clock). Months before it hold history brought
in with ``backfillUsage`` and are never closed, so an import of many batches is never cut off
halfway by a close between two of them. NULL (organisations created before this revision):
the books start with the organisation's first entry, as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "organizations", sa.Column("books_start", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("organizations", "books_start")
