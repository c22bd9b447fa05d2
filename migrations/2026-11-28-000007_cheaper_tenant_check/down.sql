-- Revert migration 7: back to migration 6's regular-expression fast path.

SET LOCAL ROLE attestor_owner;

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

SET LOCAL ROLE NONE;
