-- Revert migration 2026-12-02-500001.
SET LOCAL ROLE attestor_owner;

ALTER TABLE attestor.rekor_entries
    DROP CONSTRAINT rekor_entries_verified_together_check,
    DROP CONSTRAINT rekor_entries_evidence_check,
    DROP CONSTRAINT rekor_entries_verified_key_sha256_check,
    DROP COLUMN evidence,
    DROP COLUMN verified_key_sha256;

SET LOCAL ROLE NONE;
