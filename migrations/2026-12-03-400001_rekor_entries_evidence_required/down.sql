-- Revert migration 2026-12-03-400001.
SET LOCAL ROLE attestor_owner;

ALTER TABLE attestor.rekor_entries
    DROP CONSTRAINT rekor_entries_evidence_required_check,
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
