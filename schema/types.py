"""Output types of the contract. Relations resolve through the request's DataLoaders."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import strawberry

from costgraph.billing.entries import Entry
from costgraph.kernel.pagination import encode_cursor
from costgraph.models.ledger import EntryType
from costgraph.schema.context import Context
from costgraph.schema.scalars import JSON, CurrencyCode

if TYPE_CHECKING:
    from costgraph.auth.principal import Principal as PrincipalModel
    from costgraph.billing.directory import OrgContext
    from costgraph.models import Account as AccountRow
    from costgraph.models import Customer as CustomerRow
    from costgraph.models import Department as DepartmentRow
    from costgraph.models import User as UserRow

Info = strawberry.Info[Context, None]


strawberry.enum(EntryType, name="LedgerEntryType", description="Kinds of ledger entries.")
LedgerEntryType = EntryType


@strawberry.type(description="The caller, as the verified token says.")
class Principal:
    subject: str
    organization_id: strawberry.ID | None
    roles: list[str]
    scopes: list[str] | None
    client_id: str | None
    expires_at: dt.datetime

    @classmethod
    def of(cls, p: PrincipalModel) -> Principal:
        return cls(
            subject=p.subject,
            organization_id=None
            if p.organization_id is None
            else strawberry.ID(str(p.organization_id)),
            roles=sorted(p.roles),
            scopes=None if p.scopes is None else sorted(p.scopes),
            client_id=p.client_id,
            expires_at=p.expires_at,
        )


@strawberry.type(description="A tenant: everything else belongs to one.")
class Organization:
    id: strawberry.ID
    name: str
    slug: str
    reporting_currency: CurrencyCode

    @classmethod
    def of(cls, org: OrgContext) -> Organization:
        return cls(
            id=strawberry.ID(str(org.id)),
            name=org.name,
            slug=org.slug,
            reporting_currency=CurrencyCode(org.reporting_currency),
        )


@strawberry.type(description="Who pays: a company or person buying the organisation's product.")
class Customer:
    id: strawberry.ID
    name: str
    external_id: str | None
    created_at: dt.datetime

    @classmethod
    def of(cls, row: CustomerRow) -> Customer:
        return cls(
            id=strawberry.ID(str(row.id)),
            name=row.name,
            external_id=row.external_id,
            created_at=row.created_at,
        )


@strawberry.type(description="Where usage lands and payments are credited.")
class Account:
    id: strawberry.ID
    customer_id: strawberry.ID
    name: str
    currency: CurrencyCode
    postpaid: bool
    created_at: dt.datetime

    @strawberry.field
    async def customer(self, info: Info) -> Customer:
        row = await info.context.loaders.customer.load(uuid.UUID(self.customer_id))
        assert row is not None  # the foreign key guarantees it
        return Customer.of(row)

    @classmethod
    def of(cls, row: AccountRow) -> Account:
        return cls(
            id=strawberry.ID(str(row.id)),
            customer_id=strawberry.ID(str(row.customer_id)),
            name=row.name,
            currency=CurrencyCode(row.currency),
            postpaid=row.postpaid,
            created_at=row.created_at,
        )


@strawberry.type
class Department:
    id: strawberry.ID
    name: str
    created_at: dt.datetime

    @classmethod
    def of(cls, row: DepartmentRow) -> Department:
        return cls(id=strawberry.ID(str(row.id)), name=row.name, created_at=row.created_at)


@strawberry.type(description="Who spends: a person in the organisation.")
class User:
    id: strawberry.ID
    email: str
    name: str | None
    department_id: strawberry.ID | None
    created_at: dt.datetime

    @strawberry.field
    async def department(self, info: Info) -> Department | None:
        if self.department_id is None:
            return None
        row = await info.context.loaders.department.load(uuid.UUID(self.department_id))
        return None if row is None else Department.of(row)

    @classmethod
    def of(cls, row: UserRow) -> User:
        return cls(
            id=strawberry.ID(str(row.id)),
            email=row.email,
            name=row.name,
            department_id=None
            if row.department_id is None
            else strawberry.ID(str(row.department_id)),
            created_at=row.created_at,
        )


@strawberry.type
class UnitUsage:
    kind: str
    quantity: decimal.Decimal
    weight: decimal.Decimal | None = strawberry.field(
        default=None,
        description="Budgeted tokens per unit this usage was weighed with (unit kind x "
        "feature weight); null: the unit drew nothing from the allowance.",
    )


def _id(value: uuid.UUID | None) -> strawberry.ID | None:
    return None if value is None else strawberry.ID(str(value))


def _weight_of(e: Entry) -> decimal.Decimal | None:
    """Usage written before weights existed counted its tokens at weight 1."""
    if e.type is not EntryType.USAGE_CHARGE:
        return None
    return decimal.Decimal(1) if e.allowance_weight is None else e.allowance_weight


def _budgeted_of(e: Entry) -> int | None:
    if e.type is not EntryType.USAGE_CHARGE:
        return None
    if e.budgeted_tokens is not None:
        return e.budgeted_tokens
    return e.input_tokens + e.output_tokens + e.cached_input_tokens + e.reasoning_tokens


@strawberry.type(description="One immutable ledger fact. Amounts are exact, at full precision.")
class LedgerEntry:
    id: strawberry.ID
    type: EntryType
    account_id: strawberry.ID | None
    customer_id: strawberry.ID | None
    occurred_at: dt.datetime
    recorded_at: dt.datetime | None
    currency: CurrencyCode
    amount: decimal.Decimal = strawberry.field(
        description="The entry's value in its currency; for usage, the billed price."
    )
    balance_delta: decimal.Decimal = strawberry.field(
        description="Its signed effect on the account's prepaid balance."
    )
    ai_cost: decimal.Decimal = strawberry.field(
        description="Provider cost of usage in the entry's currency."
    )
    provider_cost: decimal.Decimal | None
    provider_currency: CurrencyCode | None
    fx_rate: decimal.Decimal | None
    price_version_id: strawberry.ID | None
    caller_priced: bool
    provider: str | None
    model: str | None
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    reasoning_tokens: int
    cache_write_tokens: int
    markup_percent: decimal.Decimal | None = strawberry.field(
        description="The markup applied to this usage's AI cost, in percent."
    )
    allowance_weight: decimal.Decimal | None = strawberry.field(
        description="Usage: the multiplier on its tokens when it was written (model weight x "
        "feature weight of the organisation's allowance catalog; 1 when none is set)."
    )
    budgeted_tokens: int | None = strawberry.field(
        description="Usage: the budgeted tokens it consumes of a plan's allowance = ceil("
        "allowanceWeight x (input + output + cached input + reasoning tokens) + sum of "
        "quantity x weight of its units)."
    )
    units: list[UnitUsage]
    user_id: strawberry.ID | None
    department_id: strawberry.ID | None
    feature: str | None
    agent: str | None
    request_id: str | None
    related_entry_id: strawberry.ID | None
    description: str | None
    metadata: JSON | None
    idempotency_key: str

    @strawberry.field
    async def account(self, info: Info) -> Account | None:
        if self.account_id is None:
            return None
        row = await info.context.loaders.account.load(uuid.UUID(self.account_id))
        return None if row is None else Account.of(row)

    @strawberry.field
    async def user(self, info: Info) -> User | None:
        if self.user_id is None:
            return None
        row = await info.context.loaders.user.load(uuid.UUID(self.user_id))
        return None if row is None else User.of(row)

    @classmethod
    def of(cls, e: Entry) -> LedgerEntry:
        return cls(
            id=strawberry.ID(str(e.id)),
            type=e.type,
            account_id=_id(e.account_id),
            customer_id=_id(e.customer_id),
            occurred_at=e.occurred_at,
            recorded_at=e.recorded_at,
            currency=CurrencyCode(e.currency),
            amount=e.amount,
            balance_delta=e.balance_delta,
            ai_cost=e.ai_cost,
            provider_cost=e.provider_cost,
            provider_currency=None
            if e.provider_currency is None
            else CurrencyCode(e.provider_currency),
            fx_rate=e.fx_rate,
            price_version_id=_id(e.price_version_id),
            caller_priced=e.caller_priced,
            provider=e.provider,
            model=e.model,
            input_tokens=e.input_tokens,
            output_tokens=e.output_tokens,
            cached_input_tokens=e.cached_input_tokens,
            reasoning_tokens=e.reasoning_tokens,
            cache_write_tokens=e.cache_write_tokens,
            markup_percent=e.markup_percent,
            allowance_weight=_weight_of(e),
            budgeted_tokens=_budgeted_of(e),
            units=[
                UnitUsage(
                    kind=u["kind"],
                    quantity=decimal.Decimal(u["quantity"]),
                    weight=decimal.Decimal(u["weight"]) if "weight" in u else None,
                )
                for u in e.units or []
            ],
            user_id=_id(e.user_id),
            department_id=_id(e.department_id),
            feature=e.feature,
            agent=e.agent,
            request_id=e.request_id,
            related_entry_id=_id(e.related_entry_id),
            description=e.description,
            metadata=None if e.metadata is None else JSON(e.metadata),
            idempotency_key=e.idempotency_key,
        )


# --- connections (cursor pagination) ---

NodeT = TypeVar("NodeT")


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class Edge(Generic[NodeT]):
    cursor: str
    node: NodeT


@strawberry.type
class Connection(Generic[NodeT]):
    edges: list[Edge[NodeT]]
    page_info: PageInfo

    @strawberry.field
    def nodes(self) -> list[NodeT]:
        return [edge.node for edge in self.edges]


ItemT = TypeVar("ItemT")


def connection(
    items: Sequence[ItemT],
    has_next: bool,
    cursor_of: Callable[[ItemT], str],
    node_of: Callable[[ItemT], NodeT],
) -> Connection[NodeT]:
    edges = [Edge(cursor=cursor_of(item), node=node_of(item)) for item in items]
    return Connection(
        edges=edges,
        page_info=PageInfo(has_next_page=has_next, end_cursor=edges[-1].cursor if edges else None),
    )


def entry_cursor(entry: Entry) -> str:
    return encode_cursor(entry.occurred_at, entry.id)


def created_cursor(row: Any) -> str:
    return encode_cursor(row.created_at, row.id)
