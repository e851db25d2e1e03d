"""The priority class of an account's plan, on authorisation and usage results, for the
caller's scheduler. Resolved only when a client selects it (one read of the account's
subscription in force now), so writers that do not ask pay nothing for it."""

from __future__ import annotations

import uuid

import strawberry

from costgraph.billing import plans
from costgraph.billing.plans import PriorityClass as PriorityClassValue
from costgraph.kernel.clock import utcnow
from costgraph.schema.types import Info

strawberry.enum(
    PriorityClassValue,
    name="PriorityClass",
    description="How to queue an account's AI work, from its plan (a tier rule): STANDARD, "
    "or PRIORITY (e.g. Pro and Atelier). STANDARD without a plan.",
)
PriorityClass = PriorityClassValue

DESCRIPTION = "The priority class of the account's plan now, for the caller's scheduler."


async def priority_class_of(info: Info, account_id: str) -> PriorityClassValue:
    async with info.context.reading() as session:
        return await plans.priority_class(session, uuid.UUID(account_id), utcnow())
