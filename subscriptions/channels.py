"""Channel names. One channel per organisation and kind: a tenant's events never share one."""

from __future__ import annotations

import uuid

PREFIX = "costgraph"


def usage_channel(organization_id: uuid.UUID) -> str:
    """Usage recorded in the organisation's ledger (:class:`~.events.UsageNotice`)."""
    return f"{PREFIX}.usage.{organization_id}"


def alerts_channel(organization_id: uuid.UUID) -> str:
    """Alerts raised in the organisation (:class:`~.events.AlertNotice`)."""
    return f"{PREFIX}.alerts.{organization_id}"


def accounts_channel(organization_id: uuid.UUID) -> str:
    """Money moved on accounts without usage: top-ups, refunds, adjustments, fees
    (:class:`~.events.AccountNotice`). Usage itself travels on :func:`usage_channel` only."""
    return f"{PREFIX}.accounts.{organization_id}"


def budgets_channel(organization_id: uuid.UUID) -> str:
    """Budgets set or holds taken and given back, without usage
    (:class:`~.events.BudgetNotice`). Usage itself travels on :func:`usage_channel` only."""
    return f"{PREFIX}.budgets.{organization_id}"
