"""Defects an outside prober found in the second round's money paths (subscription billing,
pools, withdrawals), each pinned by the request sequence that showed it."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal as D

from costgraph.app.state import AppState
from tests.conftest import Tenant
from tests.dates import rfc
from tests.test_ledger import REFUND, usage
from tests.test_plan_tiers import ALLOWANCE, RECORD
from tests.test_subscription_billing import (
    PAY,
    PNL,
    SEATS,
    freeze,
    last_year,
    ok,
    plan,
    subscribe,
)
from tests.verify_support import assert_no_drift


async def test_refunding_an_overpayment_of_billed_fees_takes_no_revenue_never_counted(
    tenant: Tenant, state: AppState
) -> None:
    """A payment settling billed fees is not revenue (the fees earned are); its refund was
    subtracted all the same: billed 20, paid 1000, 980 given back read as revenue -960."""
    await plan(tenant, "basic", "20.00")
    start = last_year(8, 1)
    freeze(last_year(8, 2))
    await subscribe(tenant, "basic", "MONTHLY", start)
    account = str(tenant.account_id)
    paid = await ok(
        tenant,
        PAY,
        {
            "i": {
                "idempotencyKey": f"pay-{uuid.uuid4()}",
                "accountId": account,
                "amount": "1000.00",
                "currency": "USD",
            }
        },
    )
    payment = paid["recordSubscriptionPayment"]["entry"]
    assert payment["relatedEntryId"] is not None  # it settles the billed fee
    refund = {"idempotencyKey": f"r-{uuid.uuid4()}", "entryId": payment["id"], "amount": "980.00"}
    refunded = await ok(tenant, REFUND, {"input": refund})
    assert refunded["refund"]["__typename"] == "LedgerEntryRecorded", refunded
    august = {"start": rfc(start), "end": rfc(last_year(9, 1))}
    pnl = (await ok(tenant, PNL, {"a": account, "r": august}))["accountPnl"]
    # Earned: the month's fee. Cash: 1000 in, 980 out = 20. Never -960.
    assert D(pnl["revenue"]) == D("20.00")
    await assert_no_drift(state, tenant.org.id)


async def test_seats_removed_mid_cycle_are_not_credited_while_their_capacity_stays(
    tenant: Tenant, state: AppState
) -> None:
    """A pool's cycle keeps the capacity it opened with (billing/pools.py), yet seats removed
    in it were credited for the rest of the cycle: subscribe 10 seats, open the cycle with one
    token, drop to 1 seat, and the team got 9 seats' fee back while keeping 10 seats'
    capacity. Whatever the rule, the team is not paid back for capacity it keeps."""
    await plan(tenant, "atelier", "99.00", pooled=True, seatFee="10.00")
    start = last_year(6, 1)  # June: 30 days
    freeze(last_year(6, 2))
    await subscribe(tenant, "atelier", "MONTHLY", start, seats=10)
    account = str(tenant.account_id)
    one_token = usage(
        tenant,
        accountId=account,
        inputTokens=1,
        outputTokens=0,
        providerCost="0.01",
        occurredAt=rfc(last_year(6, 2) - timedelta(minutes=1)),
    )
    recorded = await ok(tenant, RECORD, {"input": one_token})
    assert recorded["recordUsage"]["__typename"] == "UsageRecorded", recorded
    opened = (await ok(tenant, ALLOWANCE, {"id": account}))["allowance"]
    assert opened["included"] == 10 * 1000
    removed = (await ok(tenant, SEATS, {"i": {"accountId": account, "seats": 1}}))["setSeats"]
    credited = sum(
        (D(e["amount"]) for e in removed["entries"] if e["type"] == "SUBSCRIPTION_CREDIT"), D(0)
    )
    kept = (await ok(tenant, ALLOWANCE, {"id": account}))["allowance"]["included"]
    # 9 seats' capacity kept this cycle -> nothing to credit; or the capacity follows the seats.
    assert credited == 0 or kept == 1 * 1000, (credited, kept)
    await assert_no_drift(state, tenant.org.id)
