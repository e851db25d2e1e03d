"""The tenant a unit of work writes for: an organisation as resolved from a verified token."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from costgraph.models import Organization


@dataclass(frozen=True, slots=True)
class OrgContext:
    """The caller's tenant, as resolved from a verified token."""

    id: uuid.UUID
    slug: str
    name: str
    reporting_currency: str

    @classmethod
    def of(cls, org: Organization) -> OrgContext:
        return cls(org.id, org.slug, org.name, org.reporting_currency)
