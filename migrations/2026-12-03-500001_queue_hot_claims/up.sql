-- Migration 2026-12-03-500001: claims and heartbeats as HOT updates.
--
-- PostgreSQL updates a row in place on its page, without a new entry in
-- any index (a HOT update), only when no column that an index names, in
-- its key or in its predicate, changes. Every index of the queue table
-- named `status` (the claim index in its predicate `status = 'queued'`,
-- the lease index in `status = 'running'`), so every claim and every
-- completion wrote an entry into each index. Now no index names `status`
-- or a lease column:
--
--   rekor_submission_queue_claim_idx  (tenant_id, run_at) WHERE finished_at IS NULL
--                 the unfinished jobs (queued and running). The claim walks
--                 it per tenant in run_at order and takes the rows that are
--                 queued, or running with an expired lease (the lease
--                 reclaim is part of the claim: a running job's run_at is
--                 the one it was claimed at, never in the future, so it sits
--                 among the due rows and the walk passes at most the
--                 tenant's jobs in flight). A claim changes status,
--                 attempts, the lease columns, locked_by, attempt_token and
--                 updated_at, none of them indexed: a HOT update, when the
--                 page has room. A heartbeat (lease_expires_at, updated_at)
--                 is HOT as before, and so is a release that keeps run_at.
--   dropped       rekor_submission_queue_queued_idx (status predicate) and
--                 rekor_submission_queue_lease_idx (status predicate), both
--                 replaced by the index above.
--
-- A completion (and a dead-letter) sets finished_at and rekor_entry_id: the
-- row must leave the claim index and enter the purge index, so it is never
-- HOT; it writes entries into the indexes its new version belongs to (the
-- primary key, the idempotency key, the envelope foreign key's index, the
-- purge index and, for a succeeded job, the Rekor entry foreign key's
-- partial index), none into the claim index. A retry moves run_at and is not
-- HOT either; it is the rare path.
--
-- fillfactor 50: a claim updates up to a batch of rows that were enqueued
-- together and so share pages; each HOT update needs room for the new row
-- version on the same page, and with half of each page free a page's rows
-- can all be claimed in place. Page pruning (at the next access of a page
-- whose free space fell under the fillfactor's) makes the old versions'
-- room reusable. It applies to pages written from now on.

SET LOCAL ROLE attestor_owner;

CREATE INDEX rekor_submission_queue_claim_idx
    ON attestor.rekor_submission_queue (tenant_id, run_at) WHERE finished_at IS NULL;

DROP INDEX attestor.rekor_submission_queue_queued_idx;
DROP INDEX attestor.rekor_submission_queue_lease_idx;

ALTER TABLE attestor.rekor_submission_queue SET (fillfactor = 50);

SET LOCAL ROLE NONE;
