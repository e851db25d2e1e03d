"""Who pays (customers and their accounts) and who spends (departments and users)."""

from __future__ import annotations

import uuid

from sqlalchemy import (
    Boolean,
    ForeignKeyConstraint,
    Index,
    String,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from costgraph.models.base import Base, CreatedAt, CurrencyColumn, Id, TenantScoped


class Customer(TenantScoped, Base):
    __tablename__ = "customers"
    __table_args__ = (UniqueConstraint("organization_id", "external_id"),)

    id: Mapped[Id] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    external_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[CreatedAt]


class Account(TenantScoped, Base):
    __tablename__ = "accounts"
    __table_args__ = (
        ForeignKeyConstraint(
            ["organization_id", "customer_id"], ["customers.organization_id", "customers.id"]
        ),
        Index("ix_accounts_org_customer", "organization_id", "customer_id"),
    )

    id: Mapped[Id] = mapped_column(primary_key=True)
    customer_id: Mapped[uuid.UUID]
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[CurrencyColumn]
    postpaid: Mapped[bool] = mapped_column(Boolean, server_default=false())
    created_at: Mapped[CreatedAt]


class Department(TenantScoped, Base):
    __tablename__ = "departments"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    id: Mapped[Id] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[CreatedAt]


class User(TenantScoped, Base):
    """A person who spends; ``email`` is stored lower-cased so it is unique per organisation."""

    __tablename__ = "users"
    __table_args__ = (
        ForeignKeyConstraint(
            ["organization_id", "department_id"],
            ["departments.organization_id", "departments.id"],
        ),
        UniqueConstraint("organization_id", "email"),
    )

    id: Mapped[Id] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(200))
    department_id: Mapped[uuid.UUID | None]
    created_at: Mapped[CreatedAt]
