"""What a corrected usage entry charges the balance: the share the balance paid of it.

Ingestion draws each usage entry on the plan's allowance first (billing/drawdown.py): the
balance pays only the uncovered tokens' share of the billed price
(:func:`~costgraph.billing.allowances.balance_charge`); a prepaid balance and a postpaid
account's credit alike. A reprice changes the price, never the tokens nor how the allowance
covered them, so a corrected entry charges the balance what ingestion at the new price would
have charged with the same cover — not the whole change of billed usage. The revenue
attributed to the usage (``charged_usage``, ``-balance_delta``) moves with it.

The ledger keeps the cover in the entry itself: its ``balance_delta`` of its ``amount``.
The uncovered tokens are read back from that ratio (``allocate`` wrote ``-balance_delta`` =
``amount`` x uncovered / tokens, rounded to the stored 12 places), and kept only when they
give back the very ``balance_delta`` stored; otherwise (a price so small that the ratio
cannot name a whole number of tokens) the ratio itself is the share. An entry that cost
nothing recorded no share: it is charged in full, as an entry without an allowance is.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from costgraph.billing.allowances import balance_charge
from costgraph.billing.drawdown import tokens_of
from costgraph.billing.entries import Entry
from costgraph.kernel.money import quantize_stored


def uncovered_tokens(entry: Entry) -> int | None:
    """The entry's budgeted tokens the allowance did not cover, as its balance charge says
    (None: not recoverable exactly from the ledger)."""
    tokens = tokens_of(entry)
    paid = -entry.balance_delta
    if tokens == 0 or entry.amount <= 0:
        return None
    if paid == entry.amount:
        return tokens
    share = (tokens * paid / entry.amount).to_integral_value(ROUND_HALF_EVEN)
    uncovered = int(share)
    if 0 <= uncovered <= tokens and balance_charge(entry.amount, tokens, uncovered) == paid:
        return uncovered
    return None


def charge_at(entry: Entry, billed: Decimal) -> Decimal:
    """What ingestion of ``entry`` (a usage charge) billed at ``billed`` would have charged
    the balance, with the allowance covering the same tokens it did."""
    paid = -entry.balance_delta
    if entry.amount <= 0 or paid == entry.amount:  # charged in full (or no share recorded)
        return quantize_stored(billed)
    uncovered = uncovered_tokens(entry)
    if uncovered is not None:
        return balance_charge(billed, tokens_of(entry), uncovered)
    return quantize_stored(billed * paid / entry.amount)
