-- Migration 2026-12-04-200001: current_actor() becomes an inlinable SQL
-- function, and the tenant helpers' comments name both ways a transaction
-- sets its context.
--
-- The audit trigger calls current_actor() once per audited row. With its
-- `SET search_path` clause every call was a real function call that saved,
-- set and restored the setting (a function with a SET clause is never
-- inlined); now its body is SQL-standard (`RETURN …`), which PostgreSQL
-- parses and binds when the function is created, so no caller's search_path
-- can redirect it (TI014 accepts such a body without a fixed search_path),
-- and the planner inlines it into audit_row()'s INSERT as one expression.
-- It returns what it returned before: app.actor, NULL when unset or empty.
--
-- The first migration in the migrator's form (DDL_AS_MIGRATOR_SINCE): it
-- runs as the role that runs `db up`, without a role switch, because on a
-- Citus coordinator whose functions are already distributed, CREATE OR
-- REPLACE FUNCTION and COMMENT are sent to every worker over a connection as
-- the current role, and attestor_owner may not log in. CREATE OR REPLACE
-- keeps the function's owner and privileges; the ALTER … OWNER TO below
-- states the hand-over every migration of this form makes for what it
-- creates (here a no-op: the function was attestor_owner's and stays so).

CREATE OR REPLACE FUNCTION attestor_app.current_actor()
    RETURNS text
    LANGUAGE sql
    STABLE
    SECURITY INVOKER
    PARALLEL SAFE
RETURN NULLIF(pg_catalog.current_setting('app.actor', true), '');

ALTER FUNCTION attestor_app.current_actor() OWNER TO attestor_owner;

COMMENT ON FUNCTION attestor_app.current_actor() IS
    'Actor of the current transaction (GUC app.actor, set with set_config(..., true) or SET LOCAL); '
    'NULL when unset. Inlinable: keep it a single SQL-standard expression without SET clauses.';

COMMENT ON FUNCTION attestor_app.require_current_tenant() IS
    'Tenant of the current transaction (GUC app.tenant_id, set with set_config(..., true) or, on a '
    'pool that Citus forwards to the shards, SET LOCAL). Raises AT001 when unset, AT002 when not a '
    'UUID or the nil UUID (22P02 for a hyphenated 36-character value with a non-hex digit). '
    'Inlinable: keep it a single SQL-standard expression without SET clauses.';
