"""The ledger partitioned by month, idempotency keys in their own table, P&L rollups.

Revision ID: 0006
Revises: 0005

- ``ledger_entries`` becomes ``PARTITION BY RANGE (occurred_at)``: monthly partitions in the
  ``ledger_partitions`` schema plus a DEFAULT partition, so every accepted ``occurredAt``
  (2000-01-01 .. now + 1 day) has a home even before its month's partition exists.
  ``ledger_ensure_partitions(from, to)`` creates the missing months (the rollup job calls it
  for the coming months; this migration for a window around now and for every month that
  already holds entries). A month whose rows already sit in the DEFAULT partition is left
  there (still correct, only not pruned).
- A unique key of a partitioned table must contain the partition key, which would let the
  same idempotency key with another ``occurredAt`` in: ``ledger_keys`` (unpartitioned, primary
  key ``(organization_id, idempotency_key)``) owns uniqueness; the ledger's insert writes
  both in one statement.
- ``txid`` (the writer's transaction id) is what the rollup job's high-water mark is made of.
  Copied entries get 0: the rollups below are filled from them here, and the initial mark
  ``1:1:`` says "everything with a txid below 1 is rolled up".
- Entries already in the ledger are copied; the append-only triggers move to the new table,
  each partition and ``ledger_keys``.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from costgraph.kernel.clock import utcnow

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PARTS = "ledger_partitions"

COLUMNS = """
    organization_id uuid NOT NULL,
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    type varchar(32) NOT NULL,
    account_id uuid,
    customer_id uuid,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    currency char(3) NOT NULL,
    amount numeric(38, 12) NOT NULL,
    balance_delta numeric(38, 12) NOT NULL DEFAULT 0,
    ai_cost numeric(38, 12) NOT NULL DEFAULT 0,
    provider_cost numeric(38, 12),
    provider_currency varchar(3),
    fx_rate numeric(38, 12),
    price_version_id uuid,
    caller_priced boolean NOT NULL DEFAULT false,
    provider varchar(100),
    model varchar(200),
    input_tokens bigint NOT NULL DEFAULT 0,
    output_tokens bigint NOT NULL DEFAULT 0,
    cached_input_tokens bigint NOT NULL DEFAULT 0,
    reasoning_tokens bigint NOT NULL DEFAULT 0,
    cache_write_tokens bigint NOT NULL DEFAULT 0,
    markup_percent numeric(38, 12),
    units jsonb,
    user_id uuid,
    department_id uuid,
    feature varchar(200),
    agent varchar(200),
    request_id varchar(200),
    related_entry_id uuid,
    description text,
    metadata jsonb,
    idempotency_key varchar(255) NOT NULL,
    request_hash bytea NOT NULL,
    txid bigint NOT NULL DEFAULT txid_current()
"""
COPIED = (
    "organization_id, id, type, account_id, customer_id, occurred_at, recorded_at, currency, "
    "amount, balance_delta, ai_cost, provider_cost, provider_currency, fx_rate, "
    "price_version_id, caller_priced, provider, model, input_tokens, output_tokens, "
    "cached_input_tokens, reasoning_tokens, cache_write_tokens, markup_percent, units, user_id, "
    "department_id, feature, agent, request_id, related_entry_id, description, metadata, "
    "idempotency_key, request_hash"
)

CONSTRAINTS = """
    CONSTRAINT pk_ledger_entries PRIMARY KEY (organization_id, id, occurred_at),
    CONSTRAINT fk_ledger_entries_organization_id_organizations
        FOREIGN KEY (organization_id) REFERENCES organizations (id),
    CONSTRAINT fk_ledger_entries_organization_id_account_id_accounts
        FOREIGN KEY (organization_id, account_id) REFERENCES accounts (organization_id, id),
    CONSTRAINT ck_ledger_entries_type CHECK (type IN ('USAGE_CHARGE', 'DEPOSIT',
        'SUBSCRIPTION_PAYMENT', 'REFUND', 'ADJUSTMENT', 'WITHDRAWAL', 'PLATFORM_FEE')),
    CONSTRAINT ck_ledger_entries_currency CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT ck_ledger_entries_amount_sign CHECK (amount >= 0 OR type = 'ADJUSTMENT'),
    CONSTRAINT ck_ledger_entries_tokens CHECK (input_tokens >= 0 AND output_tokens >= 0
        AND cached_input_tokens >= 0 AND reasoning_tokens >= 0),
    CONSTRAINT ck_ledger_entries_cache_write_tokens CHECK (cache_write_tokens >= 0)
"""

ENSURE_PARTITIONS_SQL = """
CREATE FUNCTION ledger_ensure_partitions(first_month timestamptz, last_month timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    lower_bound timestamptz := date_trunc('month', first_month, 'UTC');
    upper_bound timestamptz;
    part text;
    created integer := 0;
BEGIN
    -- One creator at a time. CREATE + ATTACH PARTITION takes SHARE UPDATE EXCLUSIVE on the
    -- parent, which does not block writers (CREATE TABLE ... PARTITION OF would).
    PERFORM pg_advisory_xact_lock(hashtextextended('ledger_ensure_partitions', 0));
    WHILE lower_bound <= last_month LOOP
        upper_bound := lower_bound + interval '1 month';
        part := 'ledger_entries_p' || to_char(lower_bound AT TIME ZONE 'UTC', 'YYYY_MM');
        IF to_regclass(format('ledger_partitions.%I', part)) IS NULL
           AND NOT EXISTS (SELECT 1 FROM ledger_partitions.ledger_entries_default d
                           WHERE d.occurred_at >= lower_bound AND d.occurred_at < upper_bound)
        THEN
            EXECUTE format(
                'CREATE TABLE ledger_partitions.%I (LIKE ledger_entries INCLUDING DEFAULTS '
                'INCLUDING CONSTRAINTS, CHECK (occurred_at >= %L AND occurred_at < %L))',
                part, lower_bound, upper_bound);
            EXECUTE format(
                'ALTER TABLE ledger_entries ATTACH PARTITION ledger_partitions.%I '
                'FOR VALUES FROM (%L) TO (%L)', part, lower_bound, upper_bound);
            EXECUTE format(
                'CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_partitions.%I '
                'FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_append_only()', part);
            created := created + 1;
        END IF;
        lower_bound := upper_bound;
    END LOOP;
    RETURN created;
END
$$
"""

APPEND_ONLY = (
    """CREATE TRIGGER ledger_entries_no_change BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only()""",
    """CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_append_only()""",
    f"""CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE
    ON {PARTS}.ledger_entries_default
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_append_only()""",
    """CREATE TRIGGER ledger_keys_no_change BEFORE UPDATE OR DELETE ON ledger_keys
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only()""",
    """CREATE TRIGGER ledger_keys_no_truncate BEFORE TRUNCATE ON ledger_keys
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_append_only()""",
)

MONEY = sa.Numeric(precision=38, scale=12)
NIL = sa.text("'00000000-0000-0000-0000-000000000000'::uuid")
EMPTY = sa.text("''")
ZERO = sa.text("0")


def _measures() -> list[sa.Column[Any]]:
    counts = [
        "entries",
        "events",
        "input_tokens",
        "output_tokens",
        "cached_input_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
    ]
    money = [
        "ai_cost",
        "billed_usage",
        "postpaid_usage",
        "subscriptions",
        "top_ups",
        "refunds",
        "withdrawals",
        "platform_fees",
        "balance_adjustments",
    ]
    return [
        *(sa.Column(n, sa.BigInteger(), server_default=ZERO, nullable=False) for n in counts),
        *(sa.Column(n, MONEY, server_default=ZERO, nullable=False) for n in money),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
    ]


def _rollup(
    name: str, key: list[sa.Column[Any]], extra: list[sa.Column[Any]] | None = None
) -> None:
    key_names = [c.name for c in key]
    op.create_table(
        name,
        sa.Column("organization_id", sa.UUID(), nullable=False),
        *key,
        *(extra or []),
        *_measures(),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f(f"fk_{name}_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("organization_id", *key_names, name=op.f(f"pk_{name}")),
    )


def _bucket() -> list[sa.Column[Any]]:
    return [
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("currency", sa.CHAR(length=3), nullable=False),
    ]


def _tag(name: str, length: int) -> sa.Column[Any]:
    return sa.Column(name, sa.String(length=length), server_default=EMPTY, nullable=False)


def _ref(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.Uuid(), server_default=NIL, nullable=False)


ROLLUP_FILL = """
INSERT INTO {table} (organization_id, {keys}, entries, events, input_tokens, output_tokens,
    cached_input_tokens, cache_write_tokens, reasoning_tokens, ai_cost, billed_usage,
    postpaid_usage, subscriptions, top_ups, refunds, withdrawals, platform_fees,
    balance_adjustments, last_at)
SELECT e.organization_id, {exprs}, count(*),
    sum(CASE WHEN e.type = 'USAGE_CHARGE' THEN 1 ELSE 0 END),
    sum(e.input_tokens), sum(e.output_tokens), sum(e.cached_input_tokens),
    sum(e.cache_write_tokens), sum(e.reasoning_tokens),
    sum(CASE WHEN {usage} THEN e.ai_cost ELSE 0 END),
    sum(CASE WHEN {usage} THEN e.amount ELSE 0 END),
    sum(CASE WHEN {usage} AND a.postpaid THEN e.amount ELSE 0 END),
    sum(CASE WHEN e.type = 'SUBSCRIPTION_PAYMENT' THEN e.amount ELSE 0 END),
    sum(CASE WHEN e.type = 'DEPOSIT' THEN e.amount ELSE 0 END),
    sum(CASE WHEN e.type = 'REFUND' THEN e.amount ELSE 0 END),
    sum(CASE WHEN e.type = 'WITHDRAWAL' THEN e.amount ELSE 0 END),
    sum(CASE WHEN e.type = 'PLATFORM_FEE' THEN e.amount ELSE 0 END),
    sum(CASE WHEN e.type = 'ADJUSTMENT' AND e.related_entry_id IS NULL THEN e.amount ELSE 0 END),
    max(e.occurred_at)
FROM ledger_entries e
LEFT JOIN accounts a ON a.organization_id = e.organization_id AND a.id = e.account_id
GROUP BY e.organization_id, {exprs}
ORDER BY e.organization_id, {exprs}
"""
USAGE = "(e.type = 'USAGE_CHARGE' OR (e.type = 'ADJUSTMENT' AND e.related_entry_id IS NOT NULL))"
NIL_SQL = "'00000000-0000-0000-0000-000000000000'::uuid"
BUCKET = "date_trunc('hour', e.occurred_at, 'UTC')"
FILLS: dict[str, tuple[list[str], list[str]]] = {
    "rollup_org_hourly": (["bucket", "currency"], [BUCKET, "e.currency"]),
    "rollup_account_hourly": (
        ["account_id", "bucket", "currency", "customer_id"],
        [
            f"coalesce(e.account_id, {NIL_SQL})",
            BUCKET,
            "e.currency",
            f"coalesce(e.customer_id, {NIL_SQL})",
        ],
    ),
    "rollup_model_hourly": (
        ["bucket", "currency", "provider", "model"],
        [BUCKET, "e.currency", "coalesce(e.provider, '')", "coalesce(e.model, '')"],
    ),
    "rollup_agent_hourly": (
        ["bucket", "currency", "agent", "provider", "model"],
        [
            BUCKET,
            "e.currency",
            "coalesce(e.agent, '')",
            "coalesce(e.provider, '')",
            "coalesce(e.model, '')",
        ],
    ),
    "rollup_user_hourly": (
        ["bucket", "currency", "user_id", "department_id"],
        [
            BUCKET,
            "e.currency",
            f"coalesce(e.user_id, {NIL_SQL})",
            f"coalesce(e.department_id, {NIL_SQL})",
        ],
    ),
    "rollup_feature_hourly": (
        ["bucket", "currency", "feature"],
        [BUCKET, "e.currency", "coalesce(e.feature, '')"],
    ),
}


def upgrade() -> None:
    # 1. The old table steps aside (its index names are needed by the new one).
    op.execute("DROP TRIGGER ledger_entries_no_truncate ON ledger_entries")
    op.execute("DROP TRIGGER ledger_entries_no_change ON ledger_entries")
    op.execute("ALTER TABLE ledger_entries RENAME TO ledger_entries_v5")
    for old in (
        "pk_ledger_entries",
        "uq_ledger_entries_organization_id_idempotency_key",
        "ix_ledger_entries_org_occurred",
        "ix_ledger_entries_org_account_occurred",
    ):
        op.execute(f"ALTER INDEX {old} RENAME TO {old}_v5")

    # 2. The partitioned ledger and its DEFAULT partition.
    op.execute(f"CREATE SCHEMA IF NOT EXISTS {PARTS}")
    op.execute(
        f"CREATE TABLE ledger_entries ({COLUMNS}, {CONSTRAINTS}) PARTITION BY RANGE (occurred_at)"
    )
    op.execute(
        "CREATE INDEX ix_ledger_entries_org_occurred ON ledger_entries "
        "(organization_id, occurred_at, id)"
    )
    op.execute(
        "CREATE INDEX ix_ledger_entries_org_account_occurred ON ledger_entries "
        "(organization_id, account_id, occurred_at)"
    )
    # Small ranges: the not-yet-rolled-up tail sits in the newest pages of each partition,
    # and a reader scans every page of a range that holds part of it.
    op.execute(
        "CREATE INDEX ix_ledger_entries_txid ON ledger_entries USING brin (txid) "
        "WITH (pages_per_range = 16, autosummarize = on)"
    )
    op.execute(f"CREATE TABLE {PARTS}.ledger_entries_default PARTITION OF ledger_entries DEFAULT")
    op.execute(ENSURE_PARTITIONS_SQL)
    # Months that hold entries, and a window around now (a year back, three months ahead):
    # the business clock's now, so a database created for a clock set elsewhere (tests at
    # COSTGRAPH_TEST_NOW, a demo at COSTGRAPH_CLOCK_START) has that year's partitions.
    op.execute(
        """SELECT ledger_ensure_partitions(m, m) FROM (
               SELECT DISTINCT date_trunc('month', occurred_at, 'UTC') AS m
               FROM ledger_entries_v5) months"""
    )
    op.execute(
        sa.text(
            "SELECT ledger_ensure_partitions("
            "CAST(:now AS timestamptz) - interval '12 months', "
            "CAST(:now AS timestamptz) + interval '3 months')"
        ).bindparams(now=utcnow())
    )

    # 3. Idempotency keys.
    op.create_table(
        "ledger_keys",
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("entry_id", sa.Uuid(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_ledger_keys_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("organization_id", "idempotency_key", name=op.f("pk_ledger_keys")),
    )

    # 4. Copy what is there; then the old table goes.
    op.execute(
        f"INSERT INTO ledger_entries ({COPIED}, txid) SELECT {COPIED}, 0 FROM ledger_entries_v5"  # noqa: S608
    )
    op.execute(
        """INSERT INTO ledger_keys (organization_id, idempotency_key, entry_id, occurred_at)
           SELECT organization_id, idempotency_key, id, occurred_at FROM ledger_entries_v5"""
    )
    op.execute("DROP TABLE ledger_entries_v5")
    for statement in APPEND_ONLY:
        op.execute(statement)

    # 5. Rollups, filled from the copied entries; the job takes over from the mark "1:1:".
    _rollup("rollup_org_hourly", _bucket())
    _rollup(
        "rollup_account_hourly",
        [sa.Column("account_id", sa.Uuid(), nullable=False), *_bucket()],
        [_ref("customer_id")],
    )
    op.create_index(
        "ix_rollup_account_hourly_customer",
        "rollup_account_hourly",
        ["organization_id", "customer_id", "bucket"],
    )
    op.create_index(
        "ix_rollup_account_hourly_bucket", "rollup_account_hourly", ["organization_id", "bucket"]
    )
    _rollup("rollup_model_hourly", [*_bucket(), _tag("provider", 100), _tag("model", 200)])
    _rollup(
        "rollup_agent_hourly",
        [*_bucket(), _tag("agent", 200), _tag("provider", 100), _tag("model", 200)],
    )
    op.create_index(
        "ix_rollup_agent_hourly_agent",
        "rollup_agent_hourly",
        ["organization_id", "agent", "bucket"],
    )
    _rollup("rollup_user_hourly", [*_bucket(), _ref("user_id"), _ref("department_id")])
    op.create_index(
        "ix_rollup_user_hourly_user", "rollup_user_hourly", ["organization_id", "user_id", "bucket"]
    )
    _rollup("rollup_feature_hourly", [*_bucket(), _tag("feature", 200)])
    for table, (keys, exprs) in FILLS.items():
        # Room on each page for the job's updates of a row to stay on it (HOT updates).
        op.execute(f"ALTER TABLE {table} SET (fillfactor = 80)")
        op.execute(
            ROLLUP_FILL.format(
                table=table, keys=", ".join(keys), exprs=", ".join(exprs), usage=USAGE
            )
        )
    op.create_table(
        "rollup_state",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("snapshot", sa.Text(), nullable=False),
        sa.Column("txid", sa.BigInteger(), server_default=ZERO, nullable=False),
        sa.Column("runs", sa.BigInteger(), server_default=ZERO, nullable=False),
        sa.Column("rolled_up", sa.BigInteger(), server_default=ZERO, nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_rollup_state")),
    )
    op.execute("INSERT INTO rollup_state (name, snapshot) VALUES ('ledger', '1:1:')")

    # 6. The monthly close and liability estimates.
    op.create_table(
        "pnl_month_closes",
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("month", sa.DateTime(timezone=True), nullable=False),
        sa.Column("scope_kind", sa.String(length=16), nullable=False),
        sa.Column("scope_id", sa.Uuid(), nullable=False),
        sa.Column("currency", sa.CHAR(length=3), nullable=False),
        sa.Column("entries", sa.BigInteger(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        *(
            sa.Column(n, MONEY, nullable=False)
            for n in (
                "ai_cost",
                "billed_usage",
                "postpaid_usage",
                "subscriptions",
                "top_ups",
                "refunds",
                "withdrawals",
                "platform_fees",
                "balance_adjustments",
            )
        ),
        sa.Column(
            "closed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.CheckConstraint(
            "scope_kind IN ('ORGANIZATION', 'CUSTOMER', 'ACCOUNT')",
            name=op.f("ck_pnl_month_closes_scope_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_pnl_month_closes_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint(
            "organization_id",
            "month",
            "scope_kind",
            "scope_id",
            "currency",
            name=op.f("pk_pnl_month_closes"),
        ),
    )
    op.create_table(
        "liability_estimates",
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.LargeBinary(), nullable=False),
        sa.Column("agent", sa.String(length=200), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("currency", sa.CHAR(length=3), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_liability_estimates_currency")),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_liability_estimates_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_liability_estimates")),
        sa.UniqueConstraint(
            "organization_id",
            "idempotency_key",
            name=op.f("uq_liability_estimates_organization_id_idempotency_key"),
        ),
    )
    op.create_index(
        "ix_liability_estimates_org_occurred",
        "liability_estimates",
        ["organization_id", "occurred_at"],
    )


def downgrade() -> None:
    op.drop_table("liability_estimates")
    op.drop_table("pnl_month_closes")
    op.drop_table("rollup_state")
    for table in FILLS:
        op.drop_table(table)
    # Back to one plain table with the unique key, entries copied back.
    op.execute(
        "CREATE TABLE ledger_entries_v5 (LIKE ledger_entries INCLUDING DEFAULTS "
        "INCLUDING CONSTRAINTS)"
    )
    op.execute("INSERT INTO ledger_entries_v5 SELECT * FROM ledger_entries")
    op.execute("DROP TABLE ledger_keys")
    op.execute("DROP TABLE ledger_entries")
    op.execute("DROP FUNCTION ledger_ensure_partitions(timestamptz, timestamptz)")
    op.execute(f"DROP SCHEMA {PARTS} CASCADE")
    op.execute("ALTER TABLE ledger_entries_v5 RENAME TO ledger_entries")
    op.execute("ALTER TABLE ledger_entries DROP COLUMN txid")
    op.execute(
        "ALTER TABLE ledger_entries ADD CONSTRAINT pk_ledger_entries PRIMARY KEY (organization_id, id)"
    )
    op.execute(
        "ALTER TABLE ledger_entries ADD CONSTRAINT uq_ledger_entries_organization_id_idempotency_key "
        "UNIQUE (organization_id, idempotency_key)"
    )
    op.execute(
        "ALTER TABLE ledger_entries ADD CONSTRAINT fk_ledger_entries_organization_id_organizations "
        "FOREIGN KEY (organization_id) REFERENCES organizations (id)"
    )
    op.execute(
        "ALTER TABLE ledger_entries ADD CONSTRAINT fk_ledger_entries_organization_id_account_id_accounts "
        "FOREIGN KEY (organization_id, account_id) REFERENCES accounts (organization_id, id)"
    )
    op.execute(
        "CREATE INDEX ix_ledger_entries_org_occurred ON ledger_entries (organization_id, occurred_at, id)"
    )
    op.execute(
        "CREATE INDEX ix_ledger_entries_org_account_occurred ON ledger_entries "
        "(organization_id, account_id, occurred_at)"
    )
    op.execute(
        """CREATE TRIGGER ledger_entries_no_change BEFORE UPDATE OR DELETE ON ledger_entries
        FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only()"""
    )
    op.execute(
        """CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_append_only()"""
    )
