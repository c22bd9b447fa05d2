SET LOCAL ROLE attestor_owner;

ALTER TABLE attestor.rekor_submission_queue RESET (fillfactor);

DROP INDEX attestor.rekor_submission_queue_rekor_entry_id_idx;
CREATE INDEX rekor_submission_queue_rekor_entry_id_idx
    ON attestor.rekor_submission_queue (tenant_id, rekor_entry_id);

DROP INDEX attestor.rekor_submission_queue_lease_idx;
CREATE INDEX rekor_submission_queue_lease_idx
    ON attestor.rekor_submission_queue (tenant_id, lease_expires_at) WHERE status = 'running';

CREATE INDEX rekor_submission_queue_created_at_idx
    ON attestor.rekor_submission_queue (tenant_id, created_at, id);
CREATE INDEX rekor_submission_queue_status_run_at_idx
    ON attestor.rekor_submission_queue (tenant_id, status, run_at);

SET LOCAL ROLE NONE;
