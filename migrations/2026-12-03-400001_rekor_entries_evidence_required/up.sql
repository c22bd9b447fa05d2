-- Migration 2026-12-03-400001: every rekor_entries row written from now on
-- records the log key that verified it and the evidence; the database refuses
-- any other (the backstop behind the repository's and the queue's checks).
--
-- One constraint replaces the three of 2026-12-02-500001 ("both NULL or both
-- valid"):
--
--   verified_key_sha256  NOT NULL, 32 bytes (SHA-256 of the verifying key's SPKI DER)
--   evidence             NOT NULL, 'checkpoint' (Rekor v2) or 'set+checkpoint' (Rekor v1)
--
-- Legacy rows. Rows written before this migration may have both columns NULL
-- (the submission queue stored the log's answer after checking only its
-- inclusion proof). They cannot be verified here (SQL has no signature
-- checks), deleting them would delete the history of succeeded jobs that
-- point at them, and inventing a key for them would be a lie. So the
-- constraint is added NOT VALID: PostgreSQL checks it for every row inserted
-- and every row updated from now on, and not for the rows already there.
-- A legacy row therefore stays readable with NULLs, which means "not
-- evidence" (the repository's RekorEntry::is_evidence); it can only ever be
-- updated into a verified row. Once none is left (re-ingest them through the
-- verifying path, or delete them), `ALTER TABLE attestor.rekor_entries
-- VALIDATE CONSTRAINT rekor_entries_evidence_required_check` makes the
-- constraint hold for the whole table.

SET LOCAL ROLE attestor_owner;

ALTER TABLE attestor.rekor_entries
    DROP CONSTRAINT rekor_entries_verified_together_check,
    DROP CONSTRAINT rekor_entries_evidence_check,
    DROP CONSTRAINT rekor_entries_verified_key_sha256_check,
    ADD CONSTRAINT rekor_entries_evidence_required_check
        CHECK (verified_key_sha256 IS NOT NULL
               AND octet_length(verified_key_sha256) = 32
               AND evidence IS NOT NULL
               AND evidence IN ('checkpoint', 'set+checkpoint'))
        NOT VALID;

COMMENT ON COLUMN attestor.rekor_entries.verified_key_sha256 IS
    'SHA-256 of the SPKI DER of the log key that verified the entry''s checkpoint (and SET); required (CHECKed) for every row written since 2026-12-03-400001; NULL only in older rows, which are not evidence.';
COMMENT ON COLUMN attestor.rekor_entries.evidence IS
    'Signatures that verified: checkpoint (Rekor v2) or set+checkpoint (Rekor v1); required like verified_key_sha256; NULL only in older rows, which are not evidence.';

SET LOCAL ROLE NONE;
