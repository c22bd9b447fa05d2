-- Revert migration 2026-12-03-400002.
SET LOCAL ROLE attestor_owner;

DROP INDEX attestor.trust_anchors_log_id_idx;
ALTER TABLE attestor.trust_anchors
    DROP CONSTRAINT trust_anchors_log_key_check,
    DROP COLUMN log_base_url,
    DROP COLUMN log_id;

SET LOCAL ROLE NONE;
