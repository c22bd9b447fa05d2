-- Migration 2: tenant-context helpers and generic trigger functions in
-- schema `attestor_app`.
--
--   require_current_tenant()  the tenant of the current transaction (RLS policies)
--   current_actor()           the actor of the current transaction (audit log)
--   set_updated_at()          BEFORE UPDATE row trigger: keeps updated_at current
--   refuse_mutation()         BEFORE UPDATE/DELETE row + BEFORE TRUNCATE statement
--                             trigger of append-only tables
--   audit_row()               AFTER INSERT/UPDATE/DELETE row trigger writing
--                             attestor.audit_log (table created in migration 3;
--                             PL/pgSQL resolves it at run time)
--
-- Custom SQLSTATEs raised by the module (class "AT", attestor):
--   AT001  app.tenant_id is not set (missing or empty) in this transaction
--   AT002  app.tenant_id is set but is not a valid tenant: not a UUID, or the nil UUID
--   AT003  UPDATE / DELETE / TRUNCATE on an append-only table
--
-- Every function is SECURITY INVOKER with a fixed search_path, so none of them
-- lends privileges and none can be hijacked through the caller's search_path.
-- EXECUTE: only require_current_tenant() and current_actor() are granted (to
-- attestor_app and attestor_worker; RLS policy expressions run as the querying
-- role). Trigger functions need no grant: PostgreSQL checks EXECUTE on a
-- trigger function only when CREATE TRIGGER runs (done by the owner), never
-- when the trigger fires.

SET LOCAL ROLE attestor_owner;

-- require_current_tenant --------------------------------------------------

CREATE FUNCTION attestor_app.require_current_tenant()
    RETURNS uuid
    LANGUAGE plpgsql
    STABLE
    SECURITY INVOKER
    -- Restricted, not unsafe: as the InitPlan of an RLS policy it runs once in
    -- the leader, and parallel plans stay possible for the rest of the query.
    -- (The EXCEPTION block below needs a subtransaction, forbidden in workers.)
    PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    raw    text := NULLIF(current_setting('app.tenant_id', true), '');
    tenant uuid;
BEGIN
    IF raw IS NULL THEN
        RAISE EXCEPTION 'app.tenant_id is not set: open a tenant transaction (set_config(''app.tenant_id'', <uuid>, true))'
            USING ERRCODE = 'AT001';
    END IF;

    IF raw ~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' THEN
        -- Canonical form (the only one the Rust side writes): cast directly,
        -- without the subtransaction an EXCEPTION block costs.
        tenant := raw::uuid;
    ELSE
        -- Any other spelling uuid_in accepts (braces, no hyphens, ...).
        BEGIN
            tenant := raw::uuid;
        EXCEPTION WHEN invalid_text_representation THEN
            RAISE EXCEPTION 'app.tenant_id is not a valid UUID: "%"', raw
                USING ERRCODE = 'AT002';
        END;
    END IF;

    IF tenant = '00000000-0000-0000-0000-000000000000'::uuid THEN
        RAISE EXCEPTION 'app.tenant_id is not a valid UUID: "%"', raw
            USING ERRCODE = 'AT002',
                  DETAIL = 'The nil UUID is never a tenant.';
    END IF;

    RETURN tenant;
END
$$;

COMMENT ON FUNCTION attestor_app.require_current_tenant() IS
    'Tenant of the current transaction (GUC app.tenant_id, set with set_config(..., true)). '
    'Raises AT001 when unset, AT002 when not a UUID or the nil UUID.';

-- current_actor -------------------------------------------------------------

CREATE FUNCTION attestor_app.current_actor()
    RETURNS text
    LANGUAGE sql
    STABLE
    SECURITY INVOKER
    PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT NULLIF(current_setting('app.actor', true), '')
$$;

COMMENT ON FUNCTION attestor_app.current_actor() IS
    'Actor of the current transaction (GUC app.actor, set with set_config(..., true)); NULL when unset.';

-- set_updated_at ------------------------------------------------------------

CREATE FUNCTION attestor_app.set_updated_at()
    RETURNS trigger
    LANGUAGE plpgsql
    SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_WHEN <> 'BEFORE' OR TG_LEVEL <> 'ROW' OR TG_OP <> 'UPDATE' THEN
        RAISE EXCEPTION 'attestor_app.set_updated_at() must be a BEFORE UPDATE FOR EACH ROW trigger (on %.%)',
            TG_TABLE_SCHEMA, TG_TABLE_NAME;
    END IF;
    -- now() is the transaction start time: every row a transaction touches
    -- gets the same updated_at.
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION attestor_app.set_updated_at() IS
    'BEFORE UPDATE row trigger: sets NEW.updated_at := now().';

-- refuse_mutation -----------------------------------------------------------

CREATE FUNCTION attestor_app.refuse_mutation()
    RETURNS trigger
    LANGUAGE plpgsql
    SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'AT003',
              DETAIL  = format('%I.%I accepts INSERT only; UPDATE, DELETE and TRUNCATE are refused.',
                               TG_TABLE_SCHEMA, TG_TABLE_NAME);
    RETURN NULL;  -- not reached
END
$$;

COMMENT ON FUNCTION attestor_app.refuse_mutation() IS
    'Guard of append-only tables: BEFORE UPDATE OR DELETE FOR EACH ROW and BEFORE TRUNCATE '
    'FOR EACH STATEMENT; always raises AT003.';

-- audit_row -----------------------------------------------------------------

CREATE FUNCTION attestor_app.audit_row()
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

-- Privileges ------------------------------------------------------------------

REVOKE ALL ON FUNCTION attestor_app.require_current_tenant() FROM PUBLIC;
REVOKE ALL ON FUNCTION attestor_app.current_actor()          FROM PUBLIC;
REVOKE ALL ON FUNCTION attestor_app.set_updated_at()         FROM PUBLIC;
REVOKE ALL ON FUNCTION attestor_app.refuse_mutation()        FROM PUBLIC;
REVOKE ALL ON FUNCTION attestor_app.audit_row()              FROM PUBLIC;

GRANT EXECUTE ON FUNCTION attestor_app.require_current_tenant() TO attestor_app, attestor_worker;
GRANT EXECUTE ON FUNCTION attestor_app.current_actor()          TO attestor_app, attestor_worker;

-- Diesel records the migration in this same transaction, as the connecting
-- user: give the role back before it does.
SET LOCAL ROLE NONE;
