"""SQLAlchemy tables, one module per aggregate. Importing this package registers them all."""

from costgraph.models.base import Base, TenantScoped
from costgraph.models.directory import Account, Customer, Department, User
from costgraph.models.ledger import EntryType, LedgerEntry
from costgraph.models.organization import Organization

__all__ = [
    "Account",
    "Base",
    "Customer",
    "Department",
    "EntryType",
    "LedgerEntry",
    "Organization",
    "TenantScoped",
    "User",
]
