"""The ledger's parents checked once per statement, not once per row; parents are permanent.

Revision ID: 0010
Revises: 0009

A batch insert into the ledger checked three foreign keys for every row it wrote (entry ->
organization, entry -> account, key -> organization): each a lookup and a row lock, about a
quarter of the insert's server time (measured 35 -> 27 ms per 1,000 rows without them). The
same guarantee now costs one query per statement:

- ``ledger_entries`` and ``ledger_keys`` have an ``AFTER INSERT … FOR EACH STATEMENT``
  trigger that looks up the *distinct* organisations (and accounts) of the rows just written
  (a transition table) and refuses the whole statement with SQLSTATE 23503
  (``foreign_key_violation``, as before) when one does not exist.
- A foreign key also stops its parent from going away later. Organisations and accounts are
  never deleted (no code path does, and the append-only ledger pins them anyway), so the
  database now refuses it outright: ``DELETE`` and ``TRUNCATE`` of either table, and changing
  an organisation's or account's id (or an account's organisation), raise SQLSTATE 23001
  (``restrict_violation``). A parent the check saw can therefore never disappear, so the
  check needs no row lock and holds for every isolation level.

Writes go through the partitioned parent (the partitions live in the ``ledger_partitions``
schema); statement triggers fire for the table a statement names.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FOREIGN_KEYS = (
    (
        "ledger_entries",
        "fk_ledger_entries_organization_id_organizations",
        "FOREIGN KEY (organization_id) REFERENCES organizations (id)",
    ),
    (
        "ledger_entries",
        "fk_ledger_entries_organization_id_account_id_accounts",
        "FOREIGN KEY (organization_id, account_id) REFERENCES accounts (organization_id, id)",
    ),
    (
        "ledger_keys",
        "fk_ledger_keys_organization_id_organizations",
        "FOREIGN KEY (organization_id) REFERENCES organizations (id)",
    ),
)

CHECK_ENTRIES = """
CREATE FUNCTION ledger_entries_check_parents() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing record;
BEGIN
    SELECT n.organization_id, n.account_id INTO missing
    FROM (SELECT DISTINCT organization_id, account_id FROM new_rows) AS n
    WHERE NOT EXISTS (SELECT 1 FROM organizations o WHERE o.id = n.organization_id)
       OR (n.account_id IS NOT NULL AND NOT EXISTS (
               SELECT 1 FROM accounts a
               WHERE a.organization_id = n.organization_id AND a.id = n.account_id))
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'no such organization % or account %',
            missing.organization_id, missing.account_id
            USING ERRCODE = 'foreign_key_violation', TABLE = 'ledger_entries';
    END IF;
    RETURN NULL;
END
$$
"""

CHECK_KEYS = """
CREATE FUNCTION ledger_keys_check_parents() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing uuid;
BEGIN
    SELECT n.organization_id INTO missing
    FROM (SELECT DISTINCT organization_id FROM new_rows) AS n
    WHERE NOT EXISTS (SELECT 1 FROM organizations o WHERE o.id = n.organization_id)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'no such organization %', missing
            USING ERRCODE = 'foreign_key_violation', TABLE = 'ledger_keys';
    END IF;
    RETURN NULL;
END
$$
"""

PERMANENT = """
CREATE FUNCTION ledger_parent_is_permanent() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rows are permanent (the ledger refers to them): % refused',
        TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation', TABLE = TG_TABLE_NAME;
END
$$
"""

TRIGGERS = (
    """CREATE TRIGGER ledger_entries_check_parents AFTER INSERT ON ledger_entries
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_check_parents()""",
    """CREATE TRIGGER ledger_keys_check_parents AFTER INSERT ON ledger_keys
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_keys_check_parents()""",
    """CREATE TRIGGER organizations_permanent BEFORE DELETE ON organizations
    FOR EACH ROW EXECUTE FUNCTION ledger_parent_is_permanent()""",
    """CREATE TRIGGER organizations_permanent_id BEFORE UPDATE OF id ON organizations
    FOR EACH ROW WHEN (NEW.id IS DISTINCT FROM OLD.id)
    EXECUTE FUNCTION ledger_parent_is_permanent()""",
    """CREATE TRIGGER organizations_no_truncate BEFORE TRUNCATE ON organizations
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_parent_is_permanent()""",
    """CREATE TRIGGER accounts_permanent BEFORE DELETE ON accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_parent_is_permanent()""",
    """CREATE TRIGGER accounts_permanent_id BEFORE UPDATE OF id, organization_id ON accounts
    FOR EACH ROW WHEN (NEW.id IS DISTINCT FROM OLD.id
                       OR NEW.organization_id IS DISTINCT FROM OLD.organization_id)
    EXECUTE FUNCTION ledger_parent_is_permanent()""",
    """CREATE TRIGGER accounts_no_truncate BEFORE TRUNCATE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_parent_is_permanent()""",
)

DROPPED_TRIGGERS = (
    ("ledger_entries", "ledger_entries_check_parents"),
    ("ledger_keys", "ledger_keys_check_parents"),
    ("organizations", "organizations_permanent"),
    ("organizations", "organizations_permanent_id"),
    ("organizations", "organizations_no_truncate"),
    ("accounts", "accounts_permanent"),
    ("accounts", "accounts_permanent_id"),
    ("accounts", "accounts_no_truncate"),
)
FUNCTIONS = (
    "ledger_entries_check_parents()",
    "ledger_keys_check_parents()",
    "ledger_parent_is_permanent()",
)


def upgrade() -> None:
    for table, name, _ in FOREIGN_KEYS:  # on the partitioned parent: its partitions' go too
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
    for statement in (CHECK_ENTRIES, CHECK_KEYS, PERMANENT, *TRIGGERS):
        op.execute(statement)


def downgrade() -> None:
    for table, trigger in DROPPED_TRIGGERS:
        op.execute(f"DROP TRIGGER {trigger} ON {table}")
    for function in FUNCTIONS:
        op.execute(f"DROP FUNCTION {function}")
    for table, name, definition in FOREIGN_KEYS:
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")
