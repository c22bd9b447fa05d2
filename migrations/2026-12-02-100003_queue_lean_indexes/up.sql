-- Migration 2026-12-02-100003: a lean hot path for the queue table.
--
-- Every non-HOT update of a row inserts a new entry into each index of the
-- table whose predicate the new row version satisfies, so each index costs
-- every claim and every completion. The table keeps only the indexes its
-- statements need:
--
--   rekor_submission_queue_pkey           (tenant_id, id): fenced updates by id
--   rekor_submission_queue_bundle_sha256_key
--                                         idempotent enqueue (ON CONFLICT)
--   rekor_submission_queue_queued_idx     (tenant_id, run_at) WHERE queued: the claim
--   rekor_submission_queue_lease_idx      now (tenant_id, id) WHERE running: the lease
--                                         reclaim reads the few running rows and tests
--                                         lease_expires_at on them, so a heartbeat,
--                                         which changes only lease_expires_at and
--                                         updated_at, touches no indexed column and
--                                         is a HOT update
--   rekor_submission_queue_finished_idx   the retention purge (finished rows only)
--   rekor_submission_queue_envelope_id_idx
--                                         the foreign key to dsse_envelopes (an envelope
--                                         delete looks up its jobs)
--   rekor_submission_queue_rekor_entry_id_idx
--                                         now partial, WHERE rekor_entry_id IS NOT NULL:
--                                         the foreign key's look-up (rekor_entry_id = x)
--                                         implies the predicate; queued and running rows
--                                         are not in it
--
-- Dropped: (tenant_id, status, run_at), which no statement needs since the
-- claim has its partial index and the backlog counts scan the table, and
-- (tenant_id, created_at, id), which no query pages the queue by.
--
-- fillfactor 80 leaves room on each page so that a HOT update finds space
-- for the new row version on the same page (it applies to pages written
-- from now on).

SET LOCAL ROLE attestor_owner;

DROP INDEX attestor.rekor_submission_queue_status_run_at_idx;
DROP INDEX attestor.rekor_submission_queue_created_at_idx;

DROP INDEX attestor.rekor_submission_queue_lease_idx;
CREATE INDEX rekor_submission_queue_lease_idx
    ON attestor.rekor_submission_queue (tenant_id, id) WHERE status = 'running';

DROP INDEX attestor.rekor_submission_queue_rekor_entry_id_idx;
CREATE INDEX rekor_submission_queue_rekor_entry_id_idx
    ON attestor.rekor_submission_queue (tenant_id, rekor_entry_id) WHERE rekor_entry_id IS NOT NULL;

ALTER TABLE attestor.rekor_submission_queue SET (fillfactor = 80);

SET LOCAL ROLE NONE;
