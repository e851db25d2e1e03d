"""``reserve_budget_holds``: an authorisation's whole write as one statement.

Raising every applicable budget counter under its cap and inserting the reservation used to
take a round trip per statement while the first counter's row lock was held, so concurrent
authorisations of one budget queued behind each other's network and event-loop latency. The
function does the same work inside the server: run as a statement of its own, the counter
locks are held only while it executes (and until its commit is flushed).

What it does, in order, all or nothing:

1. The reservation is inserted; when the idempotency key is already taken, the earlier
   reservation answers as a replay and nothing is written. (Inserting first lets the unique
   index find the key; the hold's refusal below undoes the insert.)
2. The caller's copy of the applicable budgets (``id@xmin`` of each budget on the event's
   scopes) must match the table, else SQLSTATE ``CGR01``: the caller reloads and retries, so
   a budget created or changed elsewhere is never enforced from a stale copy.
3. Held reservations of the organisation past their expiry are expired (bounded; one index
   probe when there are none) and their holds given back. Rows another authorisation is
   expiring are waited for, not skipped: skipping them let this one check a counter that
   still carried those holds and be refused though they no longer count. Every writer locks
   reservations before counters, so the wait cannot close a cycle.
4. Every touched counter — given back or raised — is updated once, in
   ``(budget_id, period_start)`` order (the order every writer of counters uses, so no
   deadlock), raising ``reserved`` only while ``spent + reserved`` stays within the cap;
   a refusal is SQLSTATE ``CGR02`` with ``DETAIL`` = budget id and what it holds, and undoes
   everything above. A missing counter is created first.

``CGR03``: the key's row vanished between the conflict and the read (the caller retries).

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SIGNATURE = (
    "reserve_budget_holds(uuid, timestamptz, text, bytea, uuid, uuid, text, text, text,"
    " numeric, numeric, timestamptz, jsonb, text[], uuid[], text[], uuid[], timestamptz[],"
    " timestamptz[], numeric[], numeric[], integer)"
)

CREATE_FUNCTION = """
CREATE FUNCTION reserve_budget_holds(
    p_org uuid,
    p_now timestamptz,
    p_key text,
    p_request_hash bytea,
    p_account_id uuid,
    p_user_id uuid,
    p_provider text,
    p_model text,
    p_currency text,
    p_ai_cost numeric,
    p_billed numeric,
    p_expires_at timestamptz,
    p_holds jsonb,
    p_scope_kinds text[],
    p_scope_ids uuid[],
    p_budget_versions text[],
    p_budget_ids uuid[],
    p_period_starts timestamptz[],
    p_period_ends timestamptz[],
    p_amounts numeric[],
    p_caps numeric[],
    p_sweep_limit integer
) RETURNS TABLE (
    o_id uuid, o_replayed boolean, o_request_hash bytea, o_created_at timestamptz,
    o_expired integer
)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_id uuid;
    v_hash bytea;
    v_created timestamptz;
    v_versions text[];
    v_expired integer;
    v_expired_ids uuid[];
    v_released_ids uuid[];
    v_released_starts timestamptz[];
    v_released_amounts numeric[];
    v_held numeric;
    v_done boolean;
    r record;
BEGIN
    INSERT INTO reservations AS x (
        organization_id, idempotency_key, request_hash, account_id, user_id, provider, model,
        currency, ai_cost, billed, holds, expires_at)
    VALUES (
        p_org, p_key, p_request_hash, p_account_id, p_user_id, p_provider, p_model,
        p_currency, p_ai_cost, p_billed, p_holds, p_expires_at)
    ON CONFLICT (organization_id, idempotency_key) DO NOTHING
    RETURNING x.id, x.created_at INTO v_id, v_created;
    IF NOT FOUND THEN
        SELECT x.id, x.request_hash, x.created_at INTO v_id, v_hash, v_created
          FROM reservations x
         WHERE x.organization_id = p_org AND x.idempotency_key = p_key;
        IF NOT FOUND THEN  -- the other one was rolled back after all: the caller tries again
            RAISE EXCEPTION 'the idempotency key was taken concurrently' USING ERRCODE = 'CGR03';
        END IF;
        RETURN QUERY SELECT v_id, true, v_hash, v_created, 0;
        RETURN;
    END IF;

    SELECT coalesce(array_agg(b.id::text || '@' || b.xmin::text ORDER BY b.id), '{}')
      INTO v_versions
      FROM budgets b
      JOIN unnest(p_scope_kinds, p_scope_ids) AS s(kind, id)
        ON b.scope_kind = s.kind AND b.scope_id = s.id
     WHERE b.organization_id = p_org;
    IF v_versions IS DISTINCT FROM p_budget_versions THEN
        RAISE EXCEPTION 'the applicable budgets changed' USING ERRCODE = 'CGR01';
    END IF;

    SELECT array_agg(e.id) INTO v_expired_ids
      FROM (SELECT e.id FROM reservations e
             WHERE e.organization_id = p_org AND e.state = 'HELD' AND e.expires_at <= p_now
             ORDER BY e.expires_at, e.id
             LIMIT p_sweep_limit
               FOR UPDATE) AS e;
    v_expired := coalesce(cardinality(v_expired_ids), 0);
    IF v_expired > 0 THEN
        WITH expired AS (
            UPDATE reservations x
               SET state = 'EXPIRED', closed_at = p_now
             WHERE x.organization_id = p_org AND x.id = ANY (v_expired_ids)
            RETURNING x.holds
        )
        SELECT array_agg(g.budget_id), array_agg(g.period_start), array_agg(g.amount)
          INTO v_released_ids, v_released_starts, v_released_amounts
          FROM (SELECT (h ->> 'budget_id')::uuid AS budget_id,
                       (h ->> 'period_start')::timestamptz AS period_start,
                       sum((h ->> 'amount')::numeric) AS amount
                  FROM expired, jsonb_array_elements(expired.holds) AS h
                 GROUP BY 1, 2) AS g;
    END IF;

    FOR r IN
        SELECT c.budget_id, c.period_start, max(c.period_end) AS period_end,
               sum(c.released) AS released, sum(c.amount) AS amount, max(c.cap) AS cap,
               bool_or(c.own) AS own
          FROM (
              SELECT u.budget_id, u.period_start, u.period_end, 0::numeric AS released,
                     u.amount, u.cap, true AS own
                FROM unnest(p_budget_ids, p_period_starts, p_period_ends, p_amounts, p_caps)
                     AS u(budget_id, period_start, period_end, amount, cap)
              UNION ALL
              SELECT g.budget_id, g.period_start, NULL, g.amount, 0, NULL, false
                FROM unnest(v_released_ids, v_released_starts, v_released_amounts)
                     AS g(budget_id, period_start, amount)
          ) AS c
         GROUP BY c.budget_id, c.period_start
         ORDER BY c.budget_id, c.period_start
    LOOP
        v_done := false;
        FOR attempt IN 1..5 LOOP
            UPDATE budget_counters k
               SET reserved = k.reserved - r.released + r.amount
             WHERE k.organization_id = p_org AND k.budget_id = r.budget_id
               AND k.period_start = r.period_start
               AND (r.cap IS NULL OR k.spent + k.reserved - r.released + r.amount <= r.cap);
            v_done := FOUND OR NOT r.own;
            EXIT WHEN v_done;
            -- Not updated: over the cap, or no counter yet (or one created since the UPDATE
            -- looked, by a concurrent first hold of the period). Tell them apart.
            SELECT k.spent + k.reserved - r.released INTO v_held
              FROM budget_counters k
             WHERE k.organization_id = p_org AND k.budget_id = r.budget_id
               AND k.period_start = r.period_start;
            IF FOUND THEN
                IF r.cap IS NOT NULL AND v_held + r.amount > r.cap THEN
                    RAISE EXCEPTION 'budget limit reached' USING
                        ERRCODE = 'CGR02', DETAIL = r.budget_id::text || ' ' || v_held::text;
                END IF;
            ELSE
                INSERT INTO budget_counters (organization_id, budget_id, period_start, period_end)
                VALUES (p_org, r.budget_id, r.period_start, r.period_end)
                ON CONFLICT DO NOTHING;
            END IF;
        END LOOP;
        IF NOT v_done THEN  -- the counter kept changing under a full cap: refuse, as it is
            RAISE EXCEPTION 'budget limit reached' USING
                ERRCODE = 'CGR02',
                DETAIL = r.budget_id::text || ' ' || coalesce(v_held, 0)::text;
        END IF;
    END LOOP;

    RETURN QUERY SELECT v_id, false, p_request_hash, v_created, v_expired;
END
$fn$
"""


def upgrade() -> None:
    op.execute(CREATE_FUNCTION)


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {SIGNATURE}")
