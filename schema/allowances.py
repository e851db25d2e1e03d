"""An account's allowance and balance, as the usage banner shows them."""

from __future__ import annotations

import datetime as dt
import decimal

import strawberry

from costgraph.billing.allowance_status import AllowanceStatus
from costgraph.billing.allowances import Banner
from costgraph.schema.scalars import CurrencyCode

strawberry.enum(
    Banner, name="AllowanceBanner", description="BUY_MORE at 75 % used, EXHAUSTED at 100 %."
)
AllowanceBanner = Banner


@strawberry.type
class Allowance:
    account_id: strawberry.ID
    plan_code: str | None
    included: int = strawberry.field(description="Tokens included per cycle by the plan.")
    used: int
    remaining: int
    top_up_balance: decimal.Decimal = strawberry.field(description="Prepaid money left.")
    currency: CurrencyCode
    postpaid: bool
    cycle_start: dt.datetime | None
    resets_at: dt.datetime | None
    banner: AllowanceBanner

    @classmethod
    def of(cls, status: AllowanceStatus) -> Allowance:
        return cls(
            account_id=strawberry.ID(str(status.account_id)),
            plan_code=status.plan_code,
            included=status.included,
            used=status.used,
            remaining=status.remaining,
            top_up_balance=status.top_up_balance,
            currency=CurrencyCode(status.currency),
            postpaid=status.postpaid,
            cycle_start=status.cycle_start,
            resets_at=status.resets_at,
            banner=status.banner,
        )
