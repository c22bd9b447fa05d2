-- Migration 2026-12-02-500001: a stored transparency-log entry records which
-- log key verified it and with which signatures.
--
-- verified_key_sha256  SHA-256 of the SubjectPublicKeyInfo DER of the log key
--                      whose checkpoint (and SET) signatures verified; names the
--                      exact key even when a log id is reused across key windows.
-- evidence             'checkpoint' (an entry without an integrated time, Rekor v2)
--                      or 'set+checkpoint' (Rekor v1).
--
-- Both are set together or not at all: NULL marks a row stored without a
-- signature check (rows written before this migration, and the submission
-- queue's completions, which store the log's answer as received).

SET LOCAL ROLE attestor_owner;

ALTER TABLE attestor.rekor_entries
    ADD COLUMN verified_key_sha256 bytea,
    ADD COLUMN evidence text,
    ADD CONSTRAINT rekor_entries_verified_key_sha256_check
        CHECK (verified_key_sha256 IS NULL OR octet_length(verified_key_sha256) = 32),
    ADD CONSTRAINT rekor_entries_evidence_check
        CHECK (evidence IS NULL OR evidence IN ('checkpoint', 'set+checkpoint')),
    ADD CONSTRAINT rekor_entries_verified_together_check
        CHECK ((verified_key_sha256 IS NULL) = (evidence IS NULL));

COMMENT ON COLUMN attestor.rekor_entries.verified_key_sha256 IS
    'SHA-256 of the SPKI DER of the log key that verified the entry''s checkpoint (and SET); NULL = not signature-checked.';
COMMENT ON COLUMN attestor.rekor_entries.evidence IS
    'Signatures that verified: checkpoint (Rekor v2) or set+checkpoint (Rekor v1); NULL = not signature-checked.';

SET LOCAL ROLE NONE;
