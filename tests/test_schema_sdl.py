"""The committed SDL is the contract: code and file must agree."""

from __future__ import annotations

from importlib.resources import files

from costgraph.app.graphql_schema import build_schema


def test_committed_sdl_matches_the_code() -> None:
    committed = files("costgraph.schema").joinpath("schema.graphql").read_text(encoding="utf-8")
    assert committed == build_schema().as_str() + "\n", (
        "schema/schema.graphql is stale: run `python scripts/export_schema.py` and commit it"
    )


def test_contract_names_are_present() -> None:
    sdl = build_schema().as_str()
    for name in (
        "recordUsage(input: UsageEventInput!): RecordUsageResult!",
        "recordUsageBatch(input: [UsageEventInput!]!): RecordUsageBatchResult!",
        "deposit(input: DepositInput!): LedgerEntryResult!",
        "refund(input: RefundInput!): LedgerEntryResult!",
        "scalar Decimal",
        "scalar DateTime",
        "scalar CurrencyCode",
    ):
        assert name in sdl, name
