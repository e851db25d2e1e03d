"""An account's allowance and balance, as the usage banner shows them."""

from __future__ import annotations

import datetime as dt
import decimal

import strawberry

from costgraph.billing.allowance_status import AllowanceStatus
from costgraph.billing.allowances import Banner
from costgraph.schema.scalars import CurrencyCode

strawberry.enum(
    Banner,
    name="AllowanceBanner",
    description="BUY_MORE at 75 % used (not while auto-top-up is on), EXHAUSTED at 100 %.",
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
    pooled: bool = strawberry.field(
        description="Shared by the accounts of a team (a pooled plan): the figures are the "
        "pool's, drawn by all of them."
    )
    seats: int = strawberry.field(description="The seats the allowance is for.")
    auto_top_up: bool = strawberry.field(
        default=False,
        description="Auto-top-up is on (setAutoTopUp): the banner does not prompt BUY_MORE; "
        "a top-up is requested (topUpRequested) when the prepaid balance falls below its "
        "threshold.",
    )

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
            pooled=status.pooled,
            seats=status.seats,
            auto_top_up=status.auto_top_up,
        )
