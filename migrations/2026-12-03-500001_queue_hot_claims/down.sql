SET LOCAL ROLE attestor_owner;

ALTER TABLE attestor.rekor_submission_queue SET (fillfactor = 80);

CREATE INDEX rekor_submission_queue_lease_idx
    ON attestor.rekor_submission_queue (tenant_id, id) WHERE status = 'running';
CREATE INDEX rekor_submission_queue_queued_idx
    ON attestor.rekor_submission_queue (tenant_id, run_at) WHERE status = 'queued';

DROP INDEX attestor.rekor_submission_queue_claim_idx;

SET LOCAL ROLE NONE;
