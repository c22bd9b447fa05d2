SET LOCAL ROLE attestor_owner;

REVOKE UPDATE (finished_at) ON attestor.rekor_submission_queue FROM attestor_worker;
REVOKE DELETE ON attestor.rekor_submission_queue FROM attestor_worker;
DROP INDEX attestor.rekor_submission_queue_finished_idx;
ALTER TABLE attestor.rekor_submission_queue DROP CONSTRAINT rekor_submission_queue_finished_at_check;
ALTER TABLE attestor.rekor_submission_queue DROP COLUMN finished_at;

SET LOCAL ROLE NONE;
