-- Reverts 2026-12-05-100001: the queue table's set_updated_at trigger
-- without a condition again.

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
        FOR EACH ROW EXECUTE FUNCTION attestor_app.set_updated_at();
END
$$;
