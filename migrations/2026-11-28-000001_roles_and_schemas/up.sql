-- Migration 1: roles and schemas of the `attestor` module.
--
-- Runs as a SUPERUSER (the only migration that does): it creates or normalises
-- the cluster-wide roles, grants CONNECT on the current database and creates
-- the two module schemas, both owned by attestor_owner. Every later migration
-- starts with `SET LOCAL ROLE attestor_owner` so that the owner owns every
-- object it creates.
--
--   attestor_owner   NOLOGIN; owns every object of the module.
--   attestor_app     LOGIN, NOINHERIT; the tenant-scoped application role.
--   attestor_worker  LOGIN, NOINHERIT; the Rekor submission queue worker.
--
-- None of them is SUPERUSER or BYPASSRLS, so Row-Level Security applies to all
-- of them. Passwords / authentication are the operator's business, never a
-- migration's.
--
-- Idempotent with respect to the roles: they are cluster-wide and may already
-- exist (another database of the cluster, or an earlier up/down cycle); when
-- they do, their attributes are reset to the ones below.

DO $$
BEGIN
    IF current_setting('is_superuser') <> 'on' THEN
        RAISE EXCEPTION 'migration 2026-11-28-000001_roles_and_schemas must run as a superuser (current_user = %)', current_user
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
            ('attestor_owner',  'NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION'),
            ('attestor_app',    'LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION NOINHERIT'),
            ('attestor_worker', 'LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION NOINHERIT')
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
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO attestor_app, attestor_worker',
                   current_database());
END
$$;

-- Schemas -----------------------------------------------------------------

-- `attestor` holds the tables, `attestor_app` the helper/trigger functions.
CREATE SCHEMA attestor AUTHORIZATION attestor_owner;
CREATE SCHEMA attestor_app AUTHORIZATION attestor_owner;

REVOKE ALL ON SCHEMA attestor FROM PUBLIC;
REVOKE ALL ON SCHEMA attestor_app FROM PUBLIC;

-- USAGE only: neither runtime role may create objects.
GRANT USAGE ON SCHEMA attestor TO attestor_app, attestor_worker;
GRANT USAGE ON SCHEMA attestor_app TO attestor_app, attestor_worker;

-- Functions created by the owner are not executable by PUBLIC unless granted.
ALTER DEFAULT PRIVILEGES FOR ROLE attestor_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
