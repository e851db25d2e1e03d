"""Pricing catalog, exchange rates, markup and plans.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Versions of one provider/model/owner must not overlap, and a version is never changed
# except that its open end may be closed once. The embedded PostgreSQL ships without the
# btree_gist extension an exclusion constraint on (provider, model, owner, tstzrange) would
# need, so a trigger enforces it: it takes a transaction-scoped advisory lock on the
# provider/model/owner (serialising concurrent writers of one model, under READ COMMITTED),
# then looks for an overlapping version. Every writer goes through it, whatever the code.
GUARDS_SQL = (
    """
CREATE FUNCTION model_prices_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'price versions are kept: DELETE refused'
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF TG_OP = 'UPDATE' AND (
        OLD.effective_to IS NOT NULL OR NEW.effective_to IS NULL
        OR (to_jsonb(NEW) - 'effective_to') IS DISTINCT FROM (to_jsonb(OLD) - 'effective_to')
    ) THEN
        RAISE EXCEPTION 'a price version is immutable; only its open end may be closed'
            USING ERRCODE = 'restrict_violation';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended(
        concat_ws('|', 'model_prices', NEW.organization_id::text, NEW.provider, NEW.model), 0));
    IF EXISTS (
        SELECT 1 FROM model_prices p
        WHERE p.provider = NEW.provider AND p.model = NEW.model
          AND p.organization_id IS NOT DISTINCT FROM NEW.organization_id
          AND p.id <> NEW.id
          AND tstzrange(p.effective_from, p.effective_to) && tstzrange(NEW.effective_from, NEW.effective_to)
    ) THEN
        RAISE EXCEPTION 'price versions of %/% overlap', NEW.provider, NEW.model
            USING ERRCODE = 'exclusion_violation';
    END IF;
    RETURN NEW;
END
$$
""",
    """CREATE TRIGGER model_prices_guard BEFORE INSERT OR UPDATE OR DELETE ON model_prices
    FOR EACH ROW EXECUTE FUNCTION model_prices_guard()""",
    # An exchange rate that priced entries is a fact too: rates are only ever added.
    """
CREATE FUNCTION exchange_rates_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'exchange rates are append-only: % refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$
""",
    """CREATE TRIGGER exchange_rates_no_change BEFORE UPDATE OR DELETE ON exchange_rates
    FOR EACH ROW EXECUTE FUNCTION exchange_rates_append_only()""",
)


def upgrade() -> None:
    op.create_table(
        "exchange_rates",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=True),
        sa.Column("base", sa.CHAR(length=3), nullable=False),
        sa.Column("quote", sa.CHAR(length=3), nullable=False),
        sa.Column("rate", sa.Numeric(precision=38, scale=12), nullable=False),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "base ~ '^[A-Z]{3}$' AND quote ~ '^[A-Z]{3}$'",
            name=op.f("ck_exchange_rates_currencies"),
        ),
        sa.CheckConstraint("base <> quote", name=op.f("ck_exchange_rates_distinct_pair")),
        sa.CheckConstraint("rate > 0", name=op.f("ck_exchange_rates_rate_positive")),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_exchange_rates_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exchange_rates")),
        sa.UniqueConstraint(
            "organization_id",
            "base",
            "quote",
            "effective_from",
            name=op.f("uq_exchange_rates_organization_id_base_quote_effective_from"),
            postgresql_nulls_not_distinct=True,
        ),
    )
    op.create_table(
        "model_aliases",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=True),
        sa.Column("provider", sa.String(length=100), nullable=False),
        sa.Column("alias", sa.String(length=200), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("alias <> model", name=op.f("ck_model_aliases_not_self")),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_model_aliases_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_aliases")),
        sa.UniqueConstraint(
            "organization_id",
            "provider",
            "alias",
            name=op.f("uq_model_aliases_organization_id_provider_alias"),
            postgresql_nulls_not_distinct=True,
        ),
    )
    op.create_table(
        "model_prices",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=True),
        sa.Column("provider", sa.String(length=100), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("currency", sa.CHAR(length=3), nullable=False),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("effective_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("input_per_million", sa.Numeric(precision=38, scale=12), nullable=True),
        sa.Column("output_per_million", sa.Numeric(precision=38, scale=12), nullable=True),
        sa.Column("cached_input_per_million", sa.Numeric(precision=38, scale=12), nullable=True),
        sa.Column("cache_write_per_million", sa.Numeric(precision=38, scale=12), nullable=True),
        sa.Column("reasoning_per_million", sa.Numeric(precision=38, scale=12), nullable=True),
        sa.Column("long_context_threshold", sa.BigInteger(), nullable=True),
        sa.Column(
            "input_per_million_above_threshold", sa.Numeric(precision=38, scale=12), nullable=True
        ),
        sa.Column(
            "output_per_million_above_threshold", sa.Numeric(precision=38, scale=12), nullable=True
        ),
        sa.Column("image_price", sa.Numeric(precision=38, scale=12), nullable=True),
        sa.Column("audio_second_price", sa.Numeric(precision=38, scale=12), nullable=True),
        sa.Column("video_second_price", sa.Numeric(precision=38, scale=12), nullable=True),
        sa.Column("request_price", sa.Numeric(precision=38, scale=12), nullable=True),
        sa.Column("character_price", sa.Numeric(precision=38, scale=12), nullable=True),
        sa.Column("source_url", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=255), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_model_prices_currency")),
        sa.CheckConstraint(
            "(input_per_million IS NULL OR input_per_million >= 0) AND (output_per_million IS NULL OR output_per_million >= 0) AND (cached_input_per_million IS NULL OR cached_input_per_million >= 0) AND (cache_write_per_million IS NULL OR cache_write_per_million >= 0) AND (reasoning_per_million IS NULL OR reasoning_per_million >= 0) AND (input_per_million_above_threshold IS NULL OR input_per_million_above_threshold >= 0) AND (output_per_million_above_threshold IS NULL OR output_per_million_above_threshold >= 0) AND (image_price IS NULL OR image_price >= 0) AND (audio_second_price IS NULL OR audio_second_price >= 0) AND (video_second_price IS NULL OR video_second_price >= 0) AND (request_price IS NULL OR request_price >= 0) AND (character_price IS NULL OR character_price >= 0)",
            name=op.f("ck_model_prices_prices_not_negative"),
        ),
        sa.CheckConstraint(
            "effective_to IS NULL OR effective_to > effective_from",
            name=op.f("ck_model_prices_effective_range"),
        ),
        sa.CheckConstraint(
            "long_context_threshold IS NULL OR long_context_threshold > 0",
            name=op.f("ck_model_prices_threshold_positive"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_model_prices_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_prices")),
    )
    op.create_index(
        "ix_model_prices_provider_model",
        "model_prices",
        ["provider", "model", "organization_id", "effective_from"],
        unique=False,
    )
    op.create_table(
        "plans",
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("monthly_fee", sa.Numeric(precision=38, scale=12), nullable=False),
        sa.Column("annual_fee", sa.Numeric(precision=38, scale=12), nullable=True),
        sa.Column("currency", sa.CHAR(length=3), nullable=False),
        sa.Column("included_tokens", sa.BigInteger(), nullable=False),
        sa.Column("seats", sa.Integer(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "annual_fee IS NULL OR annual_fee >= 0", name=op.f("ck_plans_annual_fee")
        ),
        sa.CheckConstraint("included_tokens >= 0", name=op.f("ck_plans_included_tokens")),
        sa.CheckConstraint("monthly_fee >= 0", name=op.f("ck_plans_monthly_fee")),
        sa.CheckConstraint("seats IS NULL OR seats > 0", name=op.f("ck_plans_seats")),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_plans_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_plans")),
        sa.UniqueConstraint("organization_id", "code", name=op.f("uq_plans_organization_id_code")),
    )
    op.create_table(
        "reprice_runs",
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("requested_by", sa.String(length=255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("range_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("range_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("filters", postgresql.JSONB(astext_type=Text()), nullable=False),
        sa.Column("examined", sa.Integer(), nullable=False),
        sa.Column("adjusted", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_reprice_runs_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_reprice_runs")),
    )
    op.create_table(
        "markup_rules",
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=True),
        sa.Column("provider", sa.String(length=100), nullable=True),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("percent", sa.Numeric(precision=38, scale=12), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("percent >= -100", name=op.f("ck_markup_rules_percent_floor")),
        sa.ForeignKeyConstraint(
            ["organization_id", "customer_id"],
            ["customers.organization_id", "customers.id"],
            name=op.f("fk_markup_rules_organization_id_customer_id_customers"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_markup_rules_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_markup_rules")),
        sa.UniqueConstraint(
            "organization_id",
            "customer_id",
            "provider",
            "model",
            name=op.f("uq_markup_rules_organization_id_customer_id_provider_model"),
            postgresql_nulls_not_distinct=True,
        ),
    )
    op.create_table(
        "account_subscriptions",
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("plan_id", sa.Uuid(), nullable=False),
        sa.Column("plan_code", sa.String(length=64), nullable=False),
        sa.Column("billing", sa.String(length=16), nullable=False),
        sa.Column("fee", sa.Numeric(precision=38, scale=12), nullable=False),
        sa.Column("currency", sa.CHAR(length=3), nullable=False),
        sa.Column("included_tokens", sa.BigInteger(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "billing IN ('MONTHLY', 'ANNUAL')", name=op.f("ck_account_subscriptions_billing")
        ),
        sa.CheckConstraint(
            "ends_at IS NULL OR ends_at > starts_at", name=op.f("ck_account_subscriptions_period")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "account_id"],
            ["accounts.organization_id", "accounts.id"],
            name=op.f("fk_account_subscriptions_organization_id_account_id_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "plan_id"],
            ["plans.organization_id", "plans.id"],
            name=op.f("fk_account_subscriptions_organization_id_plan_id_plans"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_account_subscriptions_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_account_subscriptions")),
    )
    op.create_index(
        "ix_account_subscriptions_org_account",
        "account_subscriptions",
        ["organization_id", "account_id", "starts_at"],
        unique=False,
    )
    op.add_column(
        "ledger_entries",
        sa.Column(
            "cache_write_tokens", sa.BigInteger(), server_default=sa.text("0"), nullable=False
        ),
    )
    op.add_column(
        "ledger_entries",
        sa.Column("markup_percent", sa.Numeric(precision=38, scale=12), nullable=True),
    )
    op.create_check_constraint(
        op.f("ck_ledger_entries_cache_write_tokens"), "ledger_entries", "cache_write_tokens >= 0"
    )
    for statement in GUARDS_SQL:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER exchange_rates_no_change ON exchange_rates")
    op.execute("DROP FUNCTION exchange_rates_append_only()")
    op.execute("DROP TRIGGER model_prices_guard ON model_prices")
    op.execute("DROP FUNCTION model_prices_guard()")
    op.drop_constraint(
        op.f("ck_ledger_entries_cache_write_tokens"), "ledger_entries", type_="check"
    )
    op.drop_column("ledger_entries", "markup_percent")
    op.drop_column("ledger_entries", "cache_write_tokens")
    op.drop_index("ix_account_subscriptions_org_account", table_name="account_subscriptions")
    op.drop_table("account_subscriptions")
    op.drop_table("markup_rules")
    op.drop_table("reprice_runs")
    op.drop_table("plans")
    op.drop_index("ix_model_prices_provider_model", table_name="model_prices")
    op.drop_table("model_prices")
    op.drop_table("model_aliases")
    op.drop_table("exchange_rates")
