from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from costgraph.models.base import Base, CreatedAt, CurrencyColumn, Id


class Organization(Base):
    """A tenant. Its own id is the tenant key of every other table."""

    __tablename__ = "organizations"

    id: Mapped[Id] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    reporting_currency: Mapped[CurrencyColumn]
    created_at: Mapped[CreatedAt]

    def __repr__(self) -> str:
        return f"Organization({self.slug!r})"
