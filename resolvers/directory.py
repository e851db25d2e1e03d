"""Organisation, customers, accounts, departments and users."""

from __future__ import annotations

from datetime import datetime

import strawberry

from costgraph.auth.permissions import Right
from costgraph.billing import directory
from costgraph.kernel.clock import utcnow
from costgraph.kernel.pagination import page_size
from costgraph.resolvers.access import needs
from costgraph.resolvers.ids import decode_id, decode_optional
from costgraph.schema import inputs
from costgraph.schema.types import (
    Account,
    Connection,
    Customer,
    Department,
    Info,
    Organization,
    Principal,
    User,
    connection,
    created_cursor,
)


@strawberry.type
class DirectoryQuery:
    @strawberry.field(description="The caller: subject, organisation, roles and scopes.")
    def me(self, info: Info) -> Principal:
        return Principal.of(info.context.require_principal())

    @strawberry.field(
        description="The server's current time (UTC): the instant budget periods, allowance "
        "cycles and the late-arrival window are measured from. A client computing 'this "
        "month' or 'the last 30 days' should start from it rather than its own clock."
    )
    def now(self, info: Info) -> datetime:
        info.context.require_principal()
        return utcnow()

    @strawberry.field(description="The caller's tenant.", extensions=[needs(Right.READ_DIRECTORY)])
    async def organization(self, info: Info) -> Organization:
        return Organization.of(await info.context.org())

    @strawberry.field(extensions=[needs(Right.READ_DIRECTORY)])
    async def customers(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[Customer]:
        limits = info.context.app.limits
        size = page_size(first, 50, limits.max_page_size)
        async with info.context.reading() as session:
            rows, more = await directory.list_customers(session, size, after)
        return connection(rows, more, created_cursor, Customer.of)

    @strawberry.field(extensions=[needs(Right.READ_DIRECTORY)])
    async def accounts(
        self,
        info: Info,
        customer_id: strawberry.ID | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[Account]:
        limits = info.context.app.limits
        size = page_size(first, 50, limits.max_page_size)
        customer = decode_optional(customer_id, "customer", "customerId")
        async with info.context.reading() as session:
            rows, more = await directory.list_accounts(session, customer, size, after)
        return connection(rows, more, created_cursor, Account.of)

    @strawberry.field(
        description="The organisation's departments, oldest first.",
        extensions=[needs(Right.READ_DIRECTORY)],
    )
    async def departments(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[Department]:
        size = page_size(first, 50, info.context.app.limits.max_page_size)
        async with info.context.reading() as session:
            rows, more = await directory.list_departments(session, size, after)
        return connection(rows, more, created_cursor, Department.of)

    @strawberry.field(
        description="The organisation's users (of one department, with `departmentId`), "
        "oldest first.",
        extensions=[needs(Right.READ_DIRECTORY)],
    )
    async def users(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        department_id: strawberry.ID | None = None,
    ) -> Connection[User]:
        size = page_size(first, 50, info.context.app.limits.max_page_size)
        department = decode_optional(department_id, "department", "departmentId")
        async with info.context.reading() as session:
            rows, more = await directory.list_users(session, department, size, after)
        return connection(rows, more, created_cursor, User.of)


@strawberry.type
class DirectoryMutation:
    @strawberry.mutation(
        description="A new tenant (platform_admin).", extensions=[needs(Right.PLATFORM)]
    )
    async def create_organization(
        self, info: Info, input: inputs.OrganizationInput
    ) -> Organization:
        org = await info.context.write_untenanted(
            lambda uow: directory.create_organization(
                uow.session, input.name, input.slug, input.reporting_currency
            )
        )
        return Organization.of(directory.OrgContext.of(org))

    @strawberry.mutation(extensions=[needs(Right.MANAGE_ORGANIZATION)])
    async def create_customer(self, info: Info, input: inputs.CustomerInput) -> Customer:
        row = await info.context.write(
            lambda uow: directory.create_customer(
                uow.session, uow.org, input.name, input.external_id
            )
        )
        return Customer.of(row)

    @strawberry.mutation(extensions=[needs(Right.MANAGE_ORGANIZATION)])
    async def create_account(self, info: Info, input: inputs.AccountInput) -> Account:
        customer_id = decode_id(input.customer_id, "customer", "input.customerId")
        row = await info.context.write(
            lambda uow: directory.create_account(
                uow.session, uow.org, customer_id, input.name, input.postpaid, input.currency
            )
        )
        return Account.of(row)

    @strawberry.mutation(extensions=[needs(Right.MANAGE_ORGANIZATION)])
    async def create_department(self, info: Info, input: inputs.DepartmentInput) -> Department:
        row = await info.context.write(
            lambda uow: directory.create_department(uow.session, uow.org, input.name)
        )
        return Department.of(row)

    @strawberry.mutation(extensions=[needs(Right.MANAGE_ORGANIZATION)])
    async def create_user(self, info: Info, input: inputs.UserInput) -> User:
        department_id = decode_optional(input.department_id, "department", "input.departmentId")
        row = await info.context.write(
            lambda uow: directory.create_user(
                uow.session, uow.org, input.email, input.name, department_id
            )
        )
        return User.of(row)
