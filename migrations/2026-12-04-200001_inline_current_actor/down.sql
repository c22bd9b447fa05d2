-- Reverts 2026-12-04-200001: current_actor() with its string body and fixed
-- search_path again, and the helpers' comments of before. Runs as the
-- migrator, like its up.sql.

CREATE OR REPLACE FUNCTION attestor_app.current_actor()
    RETURNS text
    LANGUAGE sql
    STABLE
    SECURITY INVOKER
    PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT NULLIF(current_setting('app.actor', true), '')
$$;

ALTER FUNCTION attestor_app.current_actor() OWNER TO attestor_owner;

COMMENT ON FUNCTION attestor_app.current_actor() IS
    'Actor of the current transaction (GUC app.actor, set with set_config(..., true)); NULL when unset.';

COMMENT ON FUNCTION attestor_app.require_current_tenant() IS
    'Tenant of the current transaction (GUC app.tenant_id, set with set_config(..., true)). '
    'Raises AT001 when unset, AT002 when not a UUID or the nil UUID (22P02 for a hyphenated '
    '36-character value with a non-hex digit). Inlinable: keep it a single SQL-standard '
    'expression without SET clauses.';
