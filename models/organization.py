from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from costgraph.models.base import Base, CreatedAt, CurrencyColumn, Id


class Organization(Base):
    """A tenant. Its own id is the tenant key of every other table."""

    __tablename__ = "organizations"

    id: Mapped[Id] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    reporting_currency: Mapped[CurrencyColumn]
    #: The first month whose books CostGraph keeps (and closes); earlier months hold history
    #: imported with backfillUsage and are never closed. None: from the first entry.
    books_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[CreatedAt]

    def __repr__(self) -> str:
        return f"Organization({self.slug!r})"
