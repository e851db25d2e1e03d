"""SQLAlchemy tables, one module per aggregate. Importing this package registers them all."""

from costgraph.models.alerts import Alert, AlertDelivery, DeliveryAttempt, NotificationChannel
from costgraph.models.balance import AccountBalance, AllowanceCounter, PoolAllowanceCounter
from costgraph.models.base import Base, TenantScoped
from costgraph.models.budget import Budget, BudgetCounter, Reservation
from costgraph.models.directory import Account, Customer, Department, User
from costgraph.models.ledger import EntryType, LedgerEntry, LedgerKey
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
from costgraph.models.reports import ReportRun, ReportTemplate
from costgraph.models.rollups import (
    AccountHourly,
    AgentHourly,
    FeatureHourly,
    LiabilityEstimate,
    ModelHourly,
    MonthClose,
    OrgHourly,
    RollupState,
    UserHourly,
)
from costgraph.models.top_ups import AllowanceWeight, AutoTopUp

__all__ = [
    "Account",
    "AccountBalance",
    "AccountHourly",
    "AccountSubscription",
    "AgentHourly",
    "Alert",
    "AlertDelivery",
    "AllowanceCounter",
    "AllowanceWeight",
    "AutoTopUp",
    "Base",
    "Budget",
    "BudgetCounter",
    "Customer",
    "DeliveryAttempt",
    "Department",
    "EntryType",
    "ExchangeRate",
    "FeatureHourly",
    "LedgerEntry",
    "LedgerKey",
    "LiabilityEstimate",
    "MarkupRule",
    "ModelAlias",
    "ModelHourly",
    "ModelPrice",
    "MonthClose",
    "NotificationChannel",
    "OAuthClient",
    "OrgHourly",
    "Organization",
    "Plan",
    "PoolAllowanceCounter",
    "ReportRun",
    "ReportTemplate",
    "RepriceRun",
    "Reservation",
    "RevokedToken",
    "RollupState",
    "TenantScoped",
    "User",
    "UserHourly",
]
