-- Migration 2026-12-03-400002: a trust anchor can be a transparency log's key,
-- so a tenant's own anchors can say which logs' entries are evidence.
--
-- log_id        the log id (Sigstore TrustedRoot `logId.keyId`; what a tlog entry
--               names as its log), 1..64 bytes. Set = this anchor is a log key.
-- log_base_url  the log's base URL (`baseUrl`); its host is the signer name on
--               the log's checkpoints.
--
-- A log anchor's key is `public_key` (SPKI DER) of `algorithm` ecdsa-p256-sha256
-- or ed25519 (the key types logs use), its window `valid_from`..`valid_until`,
-- cut short by `revoked_at`; purl_pattern and allowed_predicate_types scope
-- signing keys and must stay empty. A signing anchor has neither column.
-- Existing rows are signing anchors: both columns NULL, the constraint holds.

SET LOCAL ROLE attestor_owner;

ALTER TABLE attestor.trust_anchors
    ADD COLUMN log_id bytea,
    ADD COLUMN log_base_url text,
    ADD CONSTRAINT trust_anchors_log_key_check CHECK (
        (log_id IS NULL AND log_base_url IS NULL)
        OR (log_id IS NOT NULL
            AND octet_length(log_id) >= 1 AND octet_length(log_id) <= 64
            AND log_base_url IS NOT NULL
            AND log_base_url ~ '^https?://[^/?#:@]+'
            AND algorithm IN ('ecdsa-p256-sha256', 'ed25519')
            AND purl_pattern IS NULL
            AND cardinality(allowed_predicate_types) = 0));

COMMENT ON COLUMN attestor.trust_anchors.log_id IS
    'Transparency-log id (TrustedRoot logId.keyId) when this anchor is a log''s key; NULL for a signing key.';
COMMENT ON COLUMN attestor.trust_anchors.log_base_url IS
    'The log''s base URL (its host names the log on checkpoints); set exactly when log_id is.';

-- The tenant's log keys, read whenever an entry is verified against them.
CREATE INDEX trust_anchors_log_id_idx ON attestor.trust_anchors (tenant_id, log_id) WHERE log_id IS NOT NULL;

SET LOCAL ROLE NONE;
