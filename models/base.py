"""Declarative base, the constraint naming convention and shared column types."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated

from sqlalchemy import CHAR, DateTime, ForeignKey, MetaData, Numeric, func
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Money is NUMERIC(38, 12): per-token costs are fractions of a cent and keep full precision.
MONEY_SCALE = 12
Money = Annotated[Decimal, mapped_column(Numeric(38, MONEY_SCALE))]
CurrencyColumn = Annotated[str, mapped_column(CHAR(3))]
Timestamp = Annotated[datetime, mapped_column(DateTime(timezone=True))]
CreatedAt = Annotated[datetime, mapped_column(DateTime(timezone=True), server_default=func.now())]
Id = Annotated[
    uuid.UUID,
    mapped_column(UUID(as_uuid=True), server_default=func.gen_random_uuid()),
]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TenantScoped:
    """Tables whose rows belong to one organisation: ``organization_id`` leads every key.

    Every ORM statement on such a table is filtered to the session's tenant in one place:
    :mod:`costgraph.models.scoping`.
    """

    @declared_attr
    def organization_id(cls) -> Mapped[uuid.UUID]:
        return mapped_column(
            UUID(as_uuid=True), ForeignKey("organizations.id"), primary_key=True, sort_order=-100
        )
