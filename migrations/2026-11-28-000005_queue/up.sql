-- Migration 5: wake-ups for the Rekor submission queue.
--
--   attestor_app.notify_queue()   AFTER INSERT / AFTER UPDATE row trigger
--                                 function: pg_notify('attestor_queue', '')
--                                 when a job becomes due (queued, run_at <= now()).
--
-- Workers LISTEN on channel `attestor_queue` and claim as soon as the
-- enqueuing transaction commits (NOTIFY is delivered at commit and dropped on
-- rollback); they poll as well, so a lost notification only costs latency.
-- The payload is empty on purpose: PostgreSQL folds identical notifications
-- of one transaction into one, so a bulk enqueue sends a single wake-up.
--
-- The claim itself needs no new index: the loose index scan over tenants and
-- the per-tenant picks use rekor_submission_queue_queued_idx
-- (tenant_id, run_at) WHERE status = 'queued', and lease reclaims use
-- rekor_submission_queue_lease_idx; both lead with tenant_id.
--
-- No RLS policies here (the generated migration owns them). The function is
-- SECURITY INVOKER with a fixed search_path and no EXECUTE grant: trigger
-- functions are checked for EXECUTE only at CREATE TRIGGER (by the owner).

SET LOCAL ROLE attestor_owner;

CREATE FUNCTION attestor_app.notify_queue()
    RETURNS trigger
    LANGUAGE plpgsql
    SECURITY INVOKER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_notify('attestor_queue', '');
    RETURN NULL;  -- AFTER trigger: return value ignored
END
$$;

COMMENT ON FUNCTION attestor_app.notify_queue() IS
    'AFTER INSERT/UPDATE row trigger of rekor_submission_queue: NOTIFY attestor_queue when a job becomes due.';

REVOKE ALL ON FUNCTION attestor_app.notify_queue() FROM PUBLIC;

CREATE TRIGGER notify_queue_insert
    AFTER INSERT ON attestor.rekor_submission_queue
    FOR EACH ROW
    WHEN (NEW.status = 'queued' AND NEW.run_at <= now())
    EXECUTE FUNCTION attestor_app.notify_queue();

-- Requeued (dead-letter requeue, release at shutdown, retry due now).
CREATE TRIGGER notify_queue_update
    AFTER UPDATE OF status, run_at ON attestor.rekor_submission_queue
    FOR EACH ROW
    WHEN (NEW.status = 'queued' AND NEW.run_at <= now()
          AND (OLD.status IS DISTINCT FROM NEW.status OR OLD.run_at IS DISTINCT FROM NEW.run_at))
    EXECUTE FUNCTION attestor_app.notify_queue();

SET LOCAL ROLE NONE;
