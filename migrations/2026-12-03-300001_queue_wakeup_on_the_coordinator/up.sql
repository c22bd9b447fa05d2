-- Migration 2026-12-03-300001: the queue's wake-up comes from the node the
-- application talks to, never from a Citus shard.
--
-- On a Citus coordinator the queue table's rows live in shards on the
-- workers (tables named rekor_submission_queue_<shard id>), and the table's
-- triggers fire there: a NOTIFY sent on a worker reaches no LISTEN on the
-- coordinator, and a worker's transaction that has sent one cannot be
-- prepared, so every two-phase commit across shards after it fails
-- ("cannot PREPARE a transaction that has executed LISTEN, UNLISTEN, or
-- NOTIFY").
--
--   attestor_app.notify_queue()   now notifies only when it fires on the
--                                 logical table itself (TG_TABLE_NAME is
--                                 rekor_submission_queue): on plain
--                                 PostgreSQL, as before; on a shard it does
--                                 nothing.
--
-- The enqueue sends the wake-up itself, as a statement of the coordinator's
-- own in the enqueuing transaction (attestor-queue's enqueue), so it is
-- delivered at commit on every layout; on plain PostgreSQL it folds into
-- the trigger's (identical notifications of a transaction are one).
-- Requeues, releases and due-now retries wake workers through the trigger
-- on plain PostgreSQL and by polling on Citus.

SET LOCAL ROLE attestor_owner;

CREATE OR REPLACE FUNCTION attestor_app.notify_queue()
    RETURNS trigger
    LANGUAGE plpgsql
    SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_TABLE_NAME = 'rekor_submission_queue' THEN
        PERFORM pg_notify('attestor_queue', '');
    END IF;
    RETURN NULL;  -- AFTER trigger: return value ignored
END
$$;

COMMENT ON FUNCTION attestor_app.notify_queue() IS
    'AFTER INSERT/UPDATE row trigger of rekor_submission_queue: NOTIFY attestor_queue when a job becomes due, on the logical table only (never on a Citus shard).';

SET LOCAL ROLE NONE;
