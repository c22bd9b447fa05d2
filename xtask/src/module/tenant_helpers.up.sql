-- Module `{{module}}`: tenant-context helpers and generic trigger functions
-- in schema `{{module}}_app`. Scaffolded by `cargo xtask module new
-- {{module}}` from the template that mirrors the `attestor` module's helpers
-- as its newest migrations define them.
--
--   require_current_tenant()    the tenant of the current transaction (RLS
--                               policies): one inlinable SQL expression
--   tenant_context_error(raw)   its PL/pgSQL slow path
--   current_actor()             the actor of the current transaction
--   set_updated_at()            BEFORE UPDATE row trigger: keeps updated_at current
--   refuse_mutation()           BEFORE UPDATE/DELETE row + BEFORE TRUNCATE
--                               statement trigger of append-only tables
--
-- The tenant GUC is the service's one `app.tenant_id`: a tenant is the same
-- tenant in every module, and what keeps modules apart is their roles, not
-- the name of a setting any role may set. The SQLSTATEs are the service's:
--   AT001  app.tenant_id is not set (missing or empty) in this transaction
--   AT002  app.tenant_id is set but is not a valid tenant: not a UUID, or the nil UUID
--   AT003  UPDATE / DELETE / TRUNCATE on an append-only table
--
-- Every function is SECURITY INVOKER; the helper and current_actor() have
-- SQL-standard bodies, which bind their names when they are created (and are
-- inlined), the others a fixed search_path. EXECUTE: only the helper, its slow path and current_actor() are
-- granted, to this module's runtime roles only. Trigger functions need no
-- grant: PostgreSQL checks EXECUTE on a trigger function only when CREATE
-- TRIGGER runs (done by the owner).
--
-- verify-rls's tenant-helper rule compares the helper and its slow path with
-- crates/attestor-rls/src/require_current_tenant.sql and
-- tenant_context_error.plpgsql, the texts this file was made from.

-- Runs as the migrator (the role that runs `db up`), without a role switch:
-- on a Citus coordinator whose objects are already distributed, DDL is sent
-- to the workers as the current role, and {{module}}_owner may not log in.
-- Every function is handed to {{module}}_owner below. The migrator's default
-- privileges would let PUBLIC execute them: the revokes below take that back.

-- tenant_context_error ------------------------------------------------------

CREATE FUNCTION {{module}}_app.tenant_context_error(raw text)
    RETURNS uuid
    LANGUAGE plpgsql
    STABLE
    SECURITY INVOKER
    -- The EXCEPTION block needs a subtransaction, which parallel workers cannot start.
    PARALLEL RESTRICTED
    SET search_path = pg_catalog, pg_temp
AS $$
{{slow_path_body}}
$$;

COMMENT ON FUNCTION {{module}}_app.tenant_context_error(text) IS
    'Slow path of require_current_tenant(): raises AT001 (unset) or AT002 (not a UUID, nil UUID); '
    'returns the UUID for non-canonical spellings.';

-- require_current_tenant ----------------------------------------------------

CREATE FUNCTION {{module}}_app.require_current_tenant()
    RETURNS uuid
    LANGUAGE sql
    STABLE
    SECURITY INVOKER
    PARALLEL RESTRICTED
{{helper_body}};

COMMENT ON FUNCTION {{module}}_app.require_current_tenant() IS
    'Tenant of the current transaction (GUC app.tenant_id, set with set_config(..., true)). '
    'Raises AT001 when unset, AT002 when not a UUID or the nil UUID (22P02 for a hyphenated '
    '36-character value with a non-hex digit). Inlinable: keep it a single SQL-standard '
    'expression without SET clauses.';

-- current_actor -------------------------------------------------------------

CREATE FUNCTION {{module}}_app.current_actor()
    RETURNS text
    LANGUAGE sql
    STABLE
    SECURITY INVOKER
    PARALLEL SAFE
RETURN NULLIF(pg_catalog.current_setting('app.actor', true), '');

COMMENT ON FUNCTION {{module}}_app.current_actor() IS
    'Actor of the current transaction (GUC app.actor, set with set_config(..., true) or SET LOCAL); '
    'NULL when unset. Inlinable: keep it a single SQL-standard expression without SET clauses.';

-- set_updated_at ------------------------------------------------------------

CREATE FUNCTION {{module}}_app.set_updated_at()
    RETURNS trigger
    LANGUAGE plpgsql
    SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_WHEN <> 'BEFORE' OR TG_LEVEL <> 'ROW' OR TG_OP <> 'UPDATE' THEN
        RAISE EXCEPTION '{{module}}_app.set_updated_at() must be a BEFORE UPDATE FOR EACH ROW trigger (on %.%)',
            TG_TABLE_SCHEMA, TG_TABLE_NAME;
    END IF;
    -- now() is the transaction start time: every row a transaction touches
    -- gets the same updated_at.
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION {{module}}_app.set_updated_at() IS
    'BEFORE UPDATE row trigger: sets NEW.updated_at := now().';

-- refuse_mutation -----------------------------------------------------------

CREATE FUNCTION {{module}}_app.refuse_mutation()
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

COMMENT ON FUNCTION {{module}}_app.refuse_mutation() IS
    'Guard of append-only tables: BEFORE UPDATE OR DELETE FOR EACH ROW and BEFORE TRUNCATE '
    'FOR EACH STATEMENT; always raises AT003.';

-- Privileges ------------------------------------------------------------------

REVOKE ALL ON FUNCTION {{module}}_app.tenant_context_error(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION {{module}}_app.require_current_tenant()   FROM PUBLIC;
REVOKE ALL ON FUNCTION {{module}}_app.current_actor()            FROM PUBLIC;
REVOKE ALL ON FUNCTION {{module}}_app.set_updated_at()           FROM PUBLIC;
REVOKE ALL ON FUNCTION {{module}}_app.refuse_mutation()          FROM PUBLIC;

GRANT EXECUTE ON FUNCTION {{module}}_app.tenant_context_error(text) TO {{module}}_app, {{module}}_worker;
GRANT EXECUTE ON FUNCTION {{module}}_app.require_current_tenant()   TO {{module}}_app, {{module}}_worker;
GRANT EXECUTE ON FUNCTION {{module}}_app.current_actor()            TO {{module}}_app, {{module}}_worker;

-- Ownership ---------------------------------------------------------------------

ALTER FUNCTION {{module}}_app.tenant_context_error(text) OWNER TO {{module}}_owner;
ALTER FUNCTION {{module}}_app.require_current_tenant()   OWNER TO {{module}}_owner;
ALTER FUNCTION {{module}}_app.current_actor()            OWNER TO {{module}}_owner;
ALTER FUNCTION {{module}}_app.set_updated_at()           OWNER TO {{module}}_owner;
ALTER FUNCTION {{module}}_app.refuse_mutation()          OWNER TO {{module}}_owner;
