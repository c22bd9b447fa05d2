-- Module `{{module}}`: its roles and schemas. Scaffolded by
-- `cargo xtask module new {{module}}` from the template that mirrors the
-- `attestor` module's first migration (same attributes, same grants).
--
-- Runs as a SUPERUSER (the only migration of the module that must): it
-- creates or normalises the cluster-wide roles, grants CONNECT on the current
-- database and creates the two module schemas, both owned by {{module}}_owner.
-- Every later migration of the module runs as the migrator, without a role
-- switch (on a Citus coordinator, DDL on distributed objects goes to the
-- workers as the current role, and {{module}}_owner may not log in), and
-- hands every object it creates to {{module}}_owner with ALTER … OWNER TO.
--
--   {{module}}_owner   NOLOGIN; owns every object of the module.
--   {{module}}_app     LOGIN, NOINHERIT; the tenant-scoped application role.
--   {{module}}_worker  LOGIN, NOINHERIT; the module's cross-tenant worker role
--                      (it sees nothing until a policy in rls.toml says so).
--
-- None of them is SUPERUSER or BYPASSRLS, so Row-Level Security applies to all
-- of them, and none is a member of another module's roles: modules are
-- isolated by their roles and privileges (verify-rls proves it). Passwords /
-- authentication are the operator's business, never a migration's.
--
-- Idempotent with respect to the roles: they are cluster-wide and may already
-- exist (another database of the cluster, or an earlier up/down cycle); when
-- they do, their attributes are reset to the ones below.

DO $$
BEGIN
    IF current_setting('is_superuser') <> 'on' THEN
        RAISE EXCEPTION 'migration {{migration}} must run as a superuser (current_user = %)', current_user
            USING ERRCODE = '42501';
    END IF;
END
$$;

-- Roles -------------------------------------------------------------------

DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT *
        FROM (VALUES
            ('{{module}}_owner',  'NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION'),
            ('{{module}}_app',    'LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION NOINHERIT'),
            ('{{module}}_worker', 'LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION NOINHERIT')
        ) AS t(role_name, attributes)
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r.role_name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I %s', r.role_name, r.attributes);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created concurrently by a migration in another database
            END;
        END IF;
        -- Always (re)assert the attributes: a pre-existing role may differ.
        EXECUTE format('ALTER ROLE %I %s', r.role_name, r.attributes);
    END LOOP;
END
$$;

-- Database ----------------------------------------------------------------

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO {{module}}_app, {{module}}_worker',
                   current_database());
END
$$;

-- Schemas -----------------------------------------------------------------

-- `{{module}}` holds the tables, `{{module}}_app` the helper/trigger functions.
CREATE SCHEMA {{module}} AUTHORIZATION {{module}}_owner;
CREATE SCHEMA {{module}}_app AUTHORIZATION {{module}}_owner;

REVOKE ALL ON SCHEMA {{module}} FROM PUBLIC;
REVOKE ALL ON SCHEMA {{module}}_app FROM PUBLIC;

-- USAGE only, and only for this module's runtime roles.
GRANT USAGE ON SCHEMA {{module}} TO {{module}}_app, {{module}}_worker;
GRANT USAGE ON SCHEMA {{module}}_app TO {{module}}_app, {{module}}_worker;

-- Functions created by the owner are not executable by PUBLIC unless granted.
ALTER DEFAULT PRIVILEGES FOR ROLE {{module}}_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
