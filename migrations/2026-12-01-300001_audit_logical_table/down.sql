-- Revert migration 2026-12-01-300001: back to migration 2's audit_row()
-- and migration 3's column comments. Runs as the migrating superuser, for
-- the reason up.sql gives.

CREATE OR REPLACE FUNCTION attestor_app.audit_row()
    RETURNS trigger
    LANGUAGE plpgsql
    SECURITY INVOKER
    SET search_path = pg_catalog, attestor, pg_temp
AS $$
DECLARE
    rec     record;
    changes jsonb;
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

    INSERT INTO attestor.audit_log (tenant_id, table_name, row_id, action, actor, changes, txid)
    VALUES (rec.tenant_id, TG_TABLE_NAME, rec.id, TG_OP, attestor_app.current_actor(), changes,
            txid_current());

    RETURN NULL;  -- AFTER trigger: return value ignored
END
$$;

COMMENT ON FUNCTION attestor_app.audit_row() IS
    'AFTER INSERT OR UPDATE OR DELETE row trigger: appends to attestor.audit_log '
    '(INSERT: new row; DELETE: old row; UPDATE: {"col": {"old": .., "new": ..}} of changed columns '
    'except updated_at; a no-op UPDATE is not logged).';

COMMENT ON COLUMN attestor.audit_log.table_name IS 'Table name within schema attestor.';
COMMENT ON COLUMN attestor.audit_log.txid IS 'txid_current() of the writing transaction.';
