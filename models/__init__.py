"""SQLAlchemy tables, one module per aggregate. Importing this package registers them all."""

from costgraph.models.alerts import Alert, AlertDelivery, DeliveryAttempt, NotificationChannel
from costgraph.models.balance import AccountBalance, AllowanceCounter
from costgraph.models.base import Base, TenantScoped
from costgraph.models.budget import Budget, BudgetCounter, Reservation
from costgraph.models.directory import Account, Customer, Department, User
from costgraph.models.ledger import EntryType, LedgerEntry
from costgraph.models.oauth import OAuthClient, RevokedToken
from costgraph.models.organization import Organization
from costgraph.models.pricing import (
    AccountSubscription,
    ExchangeRate,
    MarkupRule,
    ModelAlias,
    ModelPrice,
    Plan,
    RepriceRun,
)

__all__ = [
    "AccountBalance",
    "AllowanceCounter",
    "Account",
    "AccountSubscription",
    "Alert",
    "AlertDelivery",
    "Base",
    "Budget",
    "BudgetCounter",
    "Customer",
    "DeliveryAttempt",
    "Department",
    "EntryType",
    "ExchangeRate",
    "LedgerEntry",
    "MarkupRule",
    "ModelAlias",
    "ModelPrice",
    "NotificationChannel",
    "OAuthClient",
    "Organization",
    "Plan",
    "RepriceRun",
    "Reservation",
    "RevokedToken",
    "TenantScoped",
    "User",
]
