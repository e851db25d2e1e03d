"""Tenancy: organisations, their customers and accounts, departments and users."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from typing import TypeVar

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from costgraph.billing import tier_rules
from costgraph.billing.pnl_ranges import TimeBucket, truncate
from costgraph.kernel.clock import utcnow
from costgraph.kernel.errors import NotFound, ValidationFailed
from costgraph.kernel.money import require_currency
from costgraph.kernel.pagination import decode_cursor
from costgraph.kernel.tenancy import OrgContext as OrgContext  # the tenant (re-exported)
from costgraph.models import Account, Customer, Department, Organization, User

_SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s.]{2,63}$")
NAME_MAX = 200


def _require_name(value: str, field: str) -> str:
    value = value.strip()
    if not value or len(value) > NAME_MAX:
        raise ValidationFailed(f"must be 1 to {NAME_MAX} characters", field)
    return value


async def _flush_unique(session: AsyncSession, message: str, field: str) -> None:
    """Flush inside a savepoint; a unique violation becomes a validation error."""
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise ValidationFailed(message, field) from exc


# --- organisations (platform level) ---


async def create_organization(
    session: AsyncSession, name: str, slug: str, reporting_currency: str
) -> Organization:
    if not _SLUG_RE.fullmatch(slug):
        raise ValidationFailed(
            "slug must be 1 to 63 lower-case letters, digits or inner hyphens", "input.slug"
        )
    org = Organization(
        name=_require_name(name, "input.name"),
        slug=slug,
        reporting_currency=require_currency(reporting_currency, "input.reportingCurrency"),
        # Its books start this month: earlier months are history (see billing/month_close.py).
        books_start=truncate(utcnow(), TimeBucket.MONTH),
    )
    session.add(org)
    await _flush_unique(session, f"slug {slug!r} is taken", "input.slug")
    return org


async def get_organization(session: AsyncSession, org_id: uuid.UUID) -> Organization | None:
    return await session.get(Organization, org_id)


async def find_organization(session: AsyncSession, id_or_slug: str) -> Organization | None:
    try:
        return await session.get(Organization, uuid.UUID(id_or_slug))
    except ValueError:
        return await session.scalar(select(Organization).where(Organization.slug == id_or_slug))


# --- customers and accounts ---


async def create_customer(
    session: AsyncSession, org: OrgContext, name: str, external_id: str | None
) -> Customer:
    if external_id is not None and not (0 < len(external_id) <= NAME_MAX):
        raise ValidationFailed(f"must be 1 to {NAME_MAX} characters", "input.externalId")
    customer = Customer(
        organization_id=org.id, name=_require_name(name, "input.name"), external_id=external_id
    )
    session.add(customer)
    await _flush_unique(session, f"external id {external_id!r} is taken", "input.externalId")
    return customer


async def create_account(
    session: AsyncSession,
    org: OrgContext,
    customer_id: uuid.UUID,
    name: str,
    postpaid: bool,
    currency: str | None = None,
) -> Account:
    if await session.get(Customer, (org.id, customer_id)) is None:
        raise NotFound("customer", customer_id, "input.customerId")
    # A plan of the customer's may cap its accounts (PLAN_LIMIT): counted under its lock.
    await tier_rules.lock(session, org.id, customer_id)
    await tier_rules.require_room_for_account(session, customer_id, utcnow(), "input.customerId")
    account = Account(
        organization_id=org.id,
        customer_id=customer_id,
        name=_require_name(name, "input.name"),
        postpaid=postpaid,
        currency=require_currency(currency or org.reporting_currency, "input.currency"),
    )
    session.add(account)
    await session.flush()
    return account


async def create_department(session: AsyncSession, org: OrgContext, name: str) -> Department:
    department = Department(organization_id=org.id, name=_require_name(name, "input.name"))
    session.add(department)
    await _flush_unique(session, f"department {name!r} exists", "input.name")
    return department


async def create_user(
    session: AsyncSession,
    org: OrgContext,
    email: str,
    name: str | None,
    department_id: uuid.UUID | None,
) -> User:
    email = email.strip().lower()
    if not _EMAIL_RE.fullmatch(email):
        raise ValidationFailed("not an email address", "input.email")
    if department_id is not None and await session.get(Department, (org.id, department_id)) is None:
        raise NotFound("department", department_id, "input.departmentId")
    user = User(
        organization_id=org.id,
        email=email,
        name=None if name is None else _require_name(name, "input.name"),
        department_id=department_id,
    )
    session.add(user)
    await _flush_unique(session, f"user {email!r} exists", "input.email")
    return user


# --- reads (tenant-scoped by the session) ---

T = TypeVar("T", Customer, Account, Department, User)


async def get_many(
    session: AsyncSession, model: type[T], ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, T]:
    wanted = list(set(ids))
    if not wanted:
        return {}
    rows = await session.scalars(select(model).where(model.id.in_(wanted)))
    return {row.id: row for row in rows}


async def list_page(
    session: AsyncSession,
    model: type[T],
    first: int,
    after: str | None,
    *conditions: ColumnElement[bool],
) -> tuple[Sequence[T], bool]:
    """A keyset page ordered by (created_at, id)."""
    where: list[ColumnElement[bool]] = list(conditions)
    if after is not None:
        at, ident = decode_cursor(after)
        where.append(or_(model.created_at > at, and_(model.created_at == at, model.id > ident)))
    rows = (
        await session.scalars(
            select(model).where(*where).order_by(model.created_at, model.id).limit(first + 1)
        )
    ).all()
    return rows[:first], len(rows) > first


async def list_customers(
    session: AsyncSession, first: int, after: str | None
) -> tuple[Sequence[Customer], bool]:
    return await list_page(session, Customer, first, after)


async def list_accounts(
    session: AsyncSession, customer_id: uuid.UUID | None, first: int, after: str | None
) -> tuple[Sequence[Account], bool]:
    conditions = [] if customer_id is None else [Account.customer_id == customer_id]
    return await list_page(session, Account, first, after, *conditions)


def user_label(user: User) -> str:
    """How a person is named beside their id: ``Name <email>``, or the email alone."""
    return user.email if not user.name else f"{user.name} <{user.email}>"


async def scope_labels(
    session: AsyncSession, org: OrgContext, refs: Iterable[tuple[str, uuid.UUID]]
) -> dict[tuple[str, uuid.UUID], str]:
    """Names of ``(kind, id)`` scopes (``ORGANIZATION``, ``CUSTOMER``, ``ACCOUNT``,
    ``DEPARTMENT``, ``USER``): one query per kind asked for; an unknown id has no entry."""
    wanted: dict[str, set[uuid.UUID]] = {}
    for kind, ident in refs:
        wanted.setdefault(kind.upper(), set()).add(ident)
    labels: dict[tuple[str, uuid.UUID], str] = {}
    if org.id in wanted.pop("ORGANIZATION", set()):
        labels["ORGANIZATION", org.id] = org.name
    if wanted.get("CUSTOMER"):
        for ident, customer in (await get_many(session, Customer, wanted["CUSTOMER"])).items():
            labels["CUSTOMER", ident] = customer.name
    if wanted.get("ACCOUNT"):
        for ident, account in (await get_many(session, Account, wanted["ACCOUNT"])).items():
            labels["ACCOUNT", ident] = account.name
    if wanted.get("DEPARTMENT"):
        for ident, dept in (await get_many(session, Department, wanted["DEPARTMENT"])).items():
            labels["DEPARTMENT", ident] = dept.name
    if wanted.get("USER"):
        for ident, user in (await get_many(session, User, wanted["USER"])).items():
            labels["USER", ident] = user_label(user)
    return labels


async def list_departments(
    session: AsyncSession, first: int, after: str | None
) -> tuple[Sequence[Department], bool]:
    return await list_page(session, Department, first, after)


async def list_users(
    session: AsyncSession, department_id: uuid.UUID | None, first: int, after: str | None
) -> tuple[Sequence[User], bool]:
    conditions = [] if department_id is None else [User.department_id == department_id]
    return await list_page(session, User, first, after, *conditions)
