-- Migration 2026-12-02-100001: retention of finished queue jobs.
--
-- Succeeded and dead jobs leave attestor.rekor_submission_queue after a
-- configurable time, so the hot table and its indexes stay bounded by the
-- throughput times the retention instead of growing with every job ever run.
-- The lasting history of a succeeded job is its rekor_entries row (which
-- names the envelope) and that row's audit_log entry (tenant, actor,
-- transaction); the queue row is operational state and is deleted, not
-- copied to a history table (a copy would double the write cost of every
-- job for data the entry already records). A dead job stays in the table,
-- listable and re-queueable, until its own (longer) retention ends.
--
--   finished_at   when the job became succeeded or dead; NULL while queued
--                 or running (CHECKed). Completion sets it (as attestor_app),
--                 dead-lettering sets it (as attestor_worker), requeueing a
--                 dead job clears it. The purge compares it with the
--                 retention; it is a column of its own, not updated_at,
--                 because updated_at changes on every update and an index on
--                 it would rule out HOT updates of the lease.
--   rekor_submission_queue_finished_idx
--                 (tenant_id, finished_at) WHERE finished_at IS NOT NULL:
--                 the purge's way to the expired rows; only finished rows
--                 are in it, so claims and lease updates never touch it.
--   DELETE for attestor_worker, and UPDATE of finished_at: the purge runs as
--                 the worker (across tenants). Its DELETE policy (declared
--                 in rls.toml, written by gen-rls) passes only rows whose
--                 status is succeeded or dead, so the database itself
--                 refuses to delete a queued or running job.

SET LOCAL ROLE attestor_owner;

ALTER TABLE attestor.rekor_submission_queue ADD COLUMN finished_at timestamptz NULL;

UPDATE attestor.rekor_submission_queue
   SET finished_at = updated_at
 WHERE status IN ('succeeded', 'dead');

ALTER TABLE attestor.rekor_submission_queue
    ADD CONSTRAINT rekor_submission_queue_finished_at_check
    CHECK ((status IN ('succeeded', 'dead')) = (finished_at IS NOT NULL));

COMMENT ON COLUMN attestor.rekor_submission_queue.finished_at IS
    'When the job became succeeded or dead (NULL while queued or running); the retention purge deletes it after its status''s retention.';

CREATE INDEX rekor_submission_queue_finished_idx
    ON attestor.rekor_submission_queue (tenant_id, finished_at) WHERE finished_at IS NOT NULL;

GRANT DELETE ON attestor.rekor_submission_queue TO attestor_worker;
GRANT UPDATE (finished_at) ON attestor.rekor_submission_queue TO attestor_worker;

SET LOCAL ROLE NONE;
