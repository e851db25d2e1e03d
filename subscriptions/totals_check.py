"""``costgraph verify``'s check of live totals: what :func:`~costgraph.subscriptions.totals.
period_totals` answers (rollup rows + the tail the job has not reached - reprice corrections
+ the partial hours) equals a plain grouped SUM over the ledger, for every scope with usage
in the live period (the current calendar month, as the feeds read it).

Live totals store nothing of their own: this proves the composition exact on the data as it
stands (a correction written outside any recorded reprice run, or a rollup row the tail does
not make up for, shows here). It runs in the verifier's snapshot, on its connection.
"""

# ruff: noqa: S608

from __future__ import annotations

import uuid
from collections import defaultdict
from decimal import Decimal
from typing import Any

from costgraph.billing.scopes import Scope, ScopeKind
from costgraph.billing.verify import CHECKS, Drift, NamedCheck, Outcome, VerifyContext
from costgraph.billing.verify_repository import org_condition
from costgraph.kernel.clock import format_rfc3339
from costgraph.models.scoping import bind_platform, bind_tenant
from costgraph.subscriptions.totals import UsageTotals, current_period, period_totals

FIELDS = (
    "entries",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "ai_cost",
    "billed",
)

#: Planner settings ``period_totals`` sets for its transaction: restored after it.
_SETTINGS = ("enable_seqscan", "max_parallel_workers_per_gather", "jit")


def _plain(filtered: bool) -> str:
    sums = ", ".join(
        [
            "count(*)",
            *(f"sum(e.{name})" for name in FIELDS[1:6]),
            "sum(e.ai_cost)",
            "sum(e.amount)",
        ]
    )
    return (
        f"SELECT e.organization_id, s.kind, s.id, e.currency, {sums} "
        "FROM ledger_entries e CROSS JOIN LATERAL (VALUES ('ORGANIZATION', e.organization_id), "
        "('CUSTOMER', e.customer_id), ('ACCOUNT', e.account_id), "
        "('DEPARTMENT', e.department_id), ('USER', e.user_id)) AS s(kind, id) "
        f"WHERE {org_condition('e', filtered)} AND e.type = 'USAGE_CHARGE' "
        "AND e.occurred_at >= $2 AND e.occurred_at < $3 AND s.id IS NOT NULL "
        "GROUP BY 1, 2, 3, 4"
    )


PLAIN = {filtered: _plain(filtered) for filtered in (False, True)}

_Key = tuple[uuid.UUID, str, uuid.UUID]


def _values(totals: UsageTotals) -> tuple[Decimal, ...]:
    return tuple(Decimal(getattr(totals, name)) for name in FIELDS)


async def check_live_totals(ctx: VerifyContext) -> Outcome:
    period = current_period(ctx.now)
    expected: dict[_Key, dict[str, tuple[Decimal, ...]]] = defaultdict(dict)
    rows = await ctx.connection.fetch(
        PLAIN[ctx.organization_id is not None], ctx.organization_id, *period
    )
    for row in rows:
        values = tuple(Decimal(v) for v in row[4:])
        expected[(row[0], row[1], row[2])][row[3].strip()] = values
    saved: list[Any] = [await ctx.connection.fetchval(f"SHOW {name}") for name in _SETTINGS]
    found: list[Drift] = []
    try:
        for (organization_id, kind, ident), wanted in sorted(expected.items(), key=str):
            bind_tenant(ctx.session.sync_session, organization_id)
            live = {
                t.currency.strip(): _values(t)
                for t in await period_totals(ctx.session, Scope(ScopeKind(kind), ident), period)
            }
            for currency in sorted(wanted.keys() | live.keys()):
                scope = f"{kind} {ident} {currency} from {format_rfc3339(period[0])}"
                recomputed = wanted.get(currency, (Decimal(0),) * len(FIELDS))
                stored = live.get(currency)
                if stored is None:  # no live row at all: said once, by its count
                    found.append(
                        Drift("live_totals.entries", organization_id, scope, None, recomputed[0])
                    )
                    continue
                for name, value, sum_ in zip(FIELDS, stored, recomputed, strict=True):
                    if value != sum_:
                        found.append(
                            Drift(f"live_totals.{name}", organization_id, scope, value, sum_)
                        )
    finally:
        bind_platform(ctx.session.sync_session)
        for name, value in zip(_SETTINGS, saved, strict=True):
            await ctx.connection.execute("SELECT set_config($1, $2, true)", name, value)
    listed = found[: ctx.max_rows]
    return Outcome(len(expected), listed, len(found) - len(listed))


#: Every check of the ledger's derived numbers, live totals included (what the command line
#: and the operators' query run).
LEDGER_CHECKS: tuple[NamedCheck, ...] = (*CHECKS, NamedCheck("live totals", check_live_totals))
