-- Migration 2026-12-01-300001: audit rows name the logical table and carry
-- a transaction id that means the same on every node.
--
-- On Citus the audit trigger fires on the shards, on the workers. There
-- TG_TABLE_NAME is the shard's name (`dsse_envelopes_102009`) and
-- txid_current() is the worker's own transaction, a different number on each
-- worker a transaction touches and unknown to the coordinator. audit_row()
-- now records:
--
--   table_name  the logical table: on a shard (pg_catalog.relation_is_a_known_shard)
--               the table that pg_dist_shard names for the shard id at the
--               end of the shard's name; TG_TABLE_NAME everywhere else;
--   txid        on a node running Citus, inside a distributed transaction:
--               its distributed transaction number (get_current_transaction_id(),
--               assigned by the node that started it and the same on every
--               node it touches; the coordinator reads the same number), plus
--               that node's group id times 2^48 when a worker started it;
--               otherwise txid_current(), as before. Citus numbers distributed
--               transactions from 1 again after the initiating node restarts:
--               (txid, created_at) identifies a transaction, txid alone only
--               between restarts.
--
-- On PostgreSQL without Citus the only new work per audited row is one
-- current_setting('citus.version', true), which is NULL there; the Citus
-- functions are looked up only where Citus is loaded, so the same function
-- runs on both.
--
-- Runs as the migrating superuser, without `SET LOCAL ROLE attestor_owner`:
-- on a Citus coordinator whose functions are already distributed, CREATE OR
-- REPLACE FUNCTION and COMMENT are sent to every worker over a connection as
-- the current role, and attestor_owner may not log in. CREATE OR REPLACE
-- keeps the function's owner (attestor_owner) and its privileges.

CREATE OR REPLACE FUNCTION attestor_app.audit_row()
    RETURNS trigger
    LANGUAGE plpgsql
    SECURITY INVOKER
    SET search_path = pg_catalog, attestor, pg_temp
AS $$
DECLARE
    rec           record;
    changes       jsonb;
    logical_table text := TG_TABLE_NAME;
    citus_tx      bigint;
BEGIN
    IF TG_WHEN <> 'AFTER' OR TG_LEVEL <> 'ROW' THEN
        RAISE EXCEPTION 'attestor_app.audit_row() must be an AFTER ... FOR EACH ROW trigger (on %.%)',
            TG_TABLE_SCHEMA, TG_TABLE_NAME;
    END IF;

    IF TG_OP = 'INSERT' THEN
        rec := NEW;
        changes := to_jsonb(NEW);
    ELSIF TG_OP = 'DELETE' THEN
        rec := OLD;
        changes := to_jsonb(OLD);
    ELSE  -- UPDATE: only the columns whose value changed, updated_at excluded
        rec := NEW;
        SELECT jsonb_object_agg(n.key, jsonb_build_object('old', o.value, 'new', n.value))
          INTO changes
          FROM jsonb_each(to_jsonb(NEW)) AS n
          JOIN jsonb_each(to_jsonb(OLD)) AS o ON o.key = n.key
         WHERE n.key <> 'updated_at'
           AND n.value IS DISTINCT FROM o.value;
        IF changes IS NULL THEN
            RETURN NULL;  -- no-op UPDATE: nothing changed, nothing to audit
        END IF;
    END IF;

    IF current_setting('citus.version', true) IS NOT NULL
       AND to_regprocedure('pg_catalog.relation_is_a_known_shard(regclass)') IS NOT NULL THEN
        IF pg_catalog.relation_is_a_known_shard(TG_RELID) THEN
            SELECT c.relname INTO STRICT logical_table
              FROM pg_catalog.pg_dist_shard s
              JOIN pg_catalog.pg_class c ON c.oid = s.logicalrelid
             WHERE s.shardid = substring(TG_TABLE_NAME FROM '_([0-9]+)$')::bigint;
        END IF;
        SELECT CASE WHEN d.transaction_number > 0
                    THEN (greatest(d.initiator_node_identifier, 0)::bigint << 48) | d.transaction_number
               END
          INTO citus_tx
          FROM pg_catalog.get_current_transaction_id() AS d;
    END IF;

    INSERT INTO attestor.audit_log (tenant_id, table_name, row_id, action, actor, changes, txid)
    VALUES (rec.tenant_id, logical_table, rec.id, TG_OP, attestor_app.current_actor(), changes,
            coalesce(citus_tx, txid_current()));

    RETURN NULL;  -- AFTER trigger: return value ignored
END
$$;

COMMENT ON FUNCTION attestor_app.audit_row() IS
    'AFTER INSERT OR UPDATE OR DELETE row trigger: appends to attestor.audit_log '
    '(INSERT: new row; DELETE: old row; UPDATE: {"col": {"old": .., "new": ..}} of changed columns '
    'except updated_at; a no-op UPDATE is not logged). On a Citus shard it records the logical '
    'table and the distributed transaction number.';

COMMENT ON COLUMN attestor.audit_log.table_name IS
    'Table name within schema attestor (the logical table, also when the row was written on a Citus shard).';
COMMENT ON COLUMN attestor.audit_log.txid IS
    'txid_current() of the writing transaction; on Citus, inside a distributed transaction, its '
    'distributed transaction number (plus the initiating group id times 2^48 when a worker started it).';
