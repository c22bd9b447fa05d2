-- Migration 2026-12-05-100001: the queue table's set_updated_at trigger is
-- not called for a row whose new updated_at is already now().
--
-- set_updated_at() is a PL/pgSQL row trigger that sets NEW.updated_at :=
-- now(). On the queue table it ran for every row of every claim and every
-- completion, about 1 ms per claim of 100 jobs: the call of a PL/pgSQL
-- function per row, not the assignment. The trigger now has the condition
--
--   WHEN (NEW.updated_at IS DISTINCT FROM now())
--
-- which PostgreSQL evaluates, for a BEFORE trigger, just before it would
-- call the function (after the triggers that fire earlier). It skips the
-- call exactly when the call would change nothing: the row's new
-- updated_at is already the value the function would store. Any other new
-- value, NULL, an old one, one in the future, a statement that does not set
-- the column at all (NEW keeps the old value), still goes through the
-- function and becomes now(); no value but now() survives an UPDATE, as
-- before. The claim and the benchmark's fenced completion set
-- `updated_at = now()` themselves, so their rows skip the call; the
-- other statements on the queue are unchanged.
--
-- TI005 (verify-rls) accepts the updated_at trigger unconditional or with
-- exactly this condition, and nothing else.
--
-- In the migrator's form (DDL_AS_MIGRATOR_SINCE): no role switch. A
-- trigger has no owner of its own; the table's stays attestor_owner.

-- On a Citus coordinator whose queue is already distributed, Citus takes
-- trigger DDL on it only with citus.enable_unsafe_triggers on (as the
-- distribution step has it; elsewhere the setting is an unused placeholder
-- for this transaction), and refuses DDL on a distributed table among
-- several commands of one query string: the migration is one statement.
DO $$
BEGIN
    PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);
    DROP TRIGGER set_updated_at ON attestor.rekor_submission_queue;
    CREATE TRIGGER set_updated_at BEFORE UPDATE ON attestor.rekor_submission_queue
        FOR EACH ROW WHEN (NEW.updated_at IS DISTINCT FROM now())
            EXECUTE FUNCTION attestor_app.set_updated_at();
END
$$;
