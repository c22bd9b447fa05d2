-- Revert migration 6: back to migration 2's PL/pgSQL require_current_tenant().

SET LOCAL ROLE attestor_owner;

CREATE OR REPLACE FUNCTION attestor_app.require_current_tenant()
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

DROP FUNCTION attestor_app.tenant_context_error(text);

SET LOCAL ROLE NONE;
