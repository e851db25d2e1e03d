"""TOP_UP_REQUESTED: auto-top-up requests raised before commit, delivered like alerts.

The unit of work's before-commit hook (:func:`raise_top_up_requests`) collects the accounts
whose prepaid balance the unit moved (usage charged to the balance, money entries) or whose
auto-top-up setting it made, asks :func:`costgraph.billing.top_ups.evaluate` which of them
cross their threshold now (once per crossing, under the balance's row lock), and raises one
alert per request, with its outbox rows: the organisation's channels (and those of the
account's customer and the account) hear it — a webhook ``account.top_up_requested`` signed
as every delivery is, its ``data.requestedAmount`` the amount to charge — and
``topUpRequested`` / ``alertRaised`` subscribers get it after commit. The alert's subject
(account and request number) makes it once per crossing however often it is evaluated.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from costgraph.alerts import outbox, repository
from costgraph.alerts.events import AlertsRaised
from costgraph.alerts.rules import AlertKind
from costgraph.billing import events, top_ups
from costgraph.billing.directory import OrgContext, scope_labels
from costgraph.billing.scopes import ScopeKind
from costgraph.kernel.money import format_money
from costgraph.kernel.unit_of_work import UnitOfWork, emit


def touched_accounts(unit: UnitOfWork) -> set[uuid.UUID]:
    """Accounts whose prepaid balance the unit moved, or whose setting it made; less those
    whose balance row, locked by the move until commit, said no auto-top-up is on
    (:class:`~costgraph.billing.events.NoAutoTopUp`): their evaluation would find no setting."""
    found: set[uuid.UUID] = set()
    unset: set[uuid.UUID] = set()
    made: set[uuid.UUID] = set()
    for event in unit.events:
        if isinstance(event, events.UsageRecorded):
            found.update(
                e.account_id for e in event.entries if e.balance_delta and e.account_id is not None
            )
        elif isinstance(event, events.BalancesChanged):
            found.update(event.account_ids)
        elif isinstance(event, events.AutoTopUpSet):
            made.add(event.account_id)
        elif isinstance(event, events.NoAutoTopUp):
            unset.update(event.account_ids)
    return (found - unset) | made


def message(request: top_ups.TopUpRequest, name: str | None) -> str:
    def money(value: Decimal) -> str:
        return format_money(value, request.currency)

    who = f"account {request.account_id}" if not name else f"account {name} ({request.account_id})"
    return (
        f"Auto-top-up of {who}: its prepaid balance is {money(request.balance)}, below its "
        f"threshold of {money(request.threshold)}; a top-up of {money(request.amount)} is "
        "requested (request "
        f"{request.number}). Charge it and record it as a deposit (or let the Stripe webhook)."
    )


async def raise_top_up_requests(unit: UnitOfWork) -> None:
    """The before-commit hook (see the module doc)."""
    if unit.tenant is None:
        return
    accounts = touched_accounts(unit)
    if not accounts:
        return
    requests = await top_ups.evaluate(unit.session, unit.tenant.id, accounts)
    if requests:
        await raise_alerts(unit, unit.tenant, requests)


async def raise_alerts(
    unit: UnitOfWork, org: OrgContext, requests: list[top_ups.TopUpRequest]
) -> None:
    names = await scope_labels(
        unit.session, org, {(ScopeKind.ACCOUNT.value, r.account_id) for r in requests}
    )
    rows: list[dict[str, Any]] = []
    for request in requests:
        name = names.get((ScopeKind.ACCOUNT.value, request.account_id))
        rows.append(
            {
                "organization_id": org.id,
                "budget_id": None,
                "subject": f"top-up:{request.account_id}:{request.number}",
                "kind": AlertKind.TOP_UP_REQUESTED.value,
                "stage": 0,
                "period_start": request.requested_at,
                "period_end": request.requested_at,
                "raised_at": request.requested_at,
                "scope_kind": ScopeKind.ACCOUNT.value,
                "scope_id": request.account_id,
                "scope_name": name,
                "spent": request.balance,
                "limit_amount": request.threshold,
                "requested_amount": request.amount,
                "currency": request.currency,
                "message": message(request, name),
            }
        )
    raised = await repository.insert_subject_alerts(unit.session, rows)
    if raised:
        await outbox.enqueue(unit.session, org.id, raised)
        emit(unit.session, AlertsRaised(tuple(raised)))
