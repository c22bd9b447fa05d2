-- Migration 6: require_current_tenant() becomes an inlinable SQL function.
--
-- Every RLS policy calls it once per statement (as an InitPlan). The PL/pgSQL
-- version of migration 2 costs a PL/pgSQL call plus the save/restore of its
-- `SET search_path` on every statement; this one is a single expression that
-- the planner inlines into the policy's InitPlan:
--
--   * the common case, a canonical lower-case UUID that is not nil (the only
--     form the Rust guard writes), is checked with one regular expression and
--     cast in place;
--   * everything else goes to tenant_context_error(raw), the PL/pgSQL slow
--     path, which raises exactly what migration 2's helper raised (AT001 when
--     unset or empty, AT002 when not a UUID or the nil UUID) and returns the
--     UUID for the other spellings uuid_in accepts (upper case, braces, ...).
--
-- The body is SQL-standard (`RETURN …`): PostgreSQL parses it and binds every
-- name when the function is created, so no caller's search_path can redirect
-- it, which is what `SET search_path` was for (and a function with a SET clause
-- is never inlined). verify-rls check 3 compares this definition with
-- xtask/src/rls/require_current_tenant.sql.

SET LOCAL ROLE attestor_owner;

CREATE FUNCTION attestor_app.tenant_context_error(raw text)
    RETURNS uuid
    LANGUAGE plpgsql
    STABLE
    SECURITY INVOKER
    -- The EXCEPTION block needs a subtransaction, which parallel workers cannot start.
    PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant uuid;
BEGIN
    IF NULLIF(raw, '') IS NULL THEN
        RAISE EXCEPTION 'app.tenant_id is not set: open a tenant transaction (set_config(''app.tenant_id'', <uuid>, true))'
            USING ERRCODE = 'AT001';
    END IF;
    BEGIN
        tenant := raw::uuid;
    EXCEPTION WHEN invalid_text_representation THEN
        RAISE EXCEPTION 'app.tenant_id is not a valid UUID: "%"', raw
            USING ERRCODE = 'AT002';
    END;
    IF tenant = '00000000-0000-0000-0000-000000000000'::uuid THEN
        RAISE EXCEPTION 'app.tenant_id is not a valid UUID: "%"', raw
            USING ERRCODE = 'AT002',
                  DETAIL = 'The nil UUID is never a tenant.';
    END IF;
    RETURN tenant;
END
$$;

COMMENT ON FUNCTION attestor_app.tenant_context_error(text) IS
    'Slow path of require_current_tenant(): raises AT001 (unset) or AT002 (not a UUID, nil UUID); '
    'returns the UUID for non-canonical spellings.';

CREATE OR REPLACE FUNCTION attestor_app.require_current_tenant()
    RETURNS uuid
    LANGUAGE sql
    STABLE
    SECURITY INVOKER
    PARALLEL RESTRICTED
RETURN CASE
    WHEN current_setting('app.tenant_id', true) ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
     AND current_setting('app.tenant_id', true) <> '00000000-0000-0000-0000-000000000000'
    THEN current_setting('app.tenant_id', true)::uuid
    ELSE attestor_app.tenant_context_error(current_setting('app.tenant_id', true))
END;

COMMENT ON FUNCTION attestor_app.require_current_tenant() IS
    'Tenant of the current transaction (GUC app.tenant_id, set with set_config(..., true)). '
    'Raises AT001 when unset, AT002 when not a UUID or the nil UUID. Inlinable: keep it a single '
    'SQL-standard expression without SET clauses.';

REVOKE ALL ON FUNCTION attestor_app.tenant_context_error(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION attestor_app.tenant_context_error(text) TO attestor_app, attestor_worker;

SET LOCAL ROLE NONE;
