-- Migration 3: the eight tenant-scoped tables of schema `attestor`, their
-- constraints, indexes, triggers and grants.
--
-- Conventions of every tenant table, checked by `cargo xtask verify-rls`:
--   * first four columns: id, tenant_id, created_at, updated_at;
--   * PRIMARY KEY (tenant_id, id); every UNIQUE constraint and every btree
--     index leads with tenant_id; every foreign key is composite
--     (tenant_id, x_id) REFERENCES parent (tenant_id, id), so a row can never
--     point into another tenant (and the layout distributes by tenant_id);
--   * enumerations are text + CHECK (no enum types: adding a value is a
--     plain constraint swap); sha256 digests are bytea CHECKed to 32 bytes;
--   * signed bytes are bytea exactly as received; documents are jsonb;
--   * GIN jsonb_path_ops / array indexes cannot lead with tenant_id without
--     the btree_gin extension, so they are plain GIN on the column; queries
--     still filter by tenant_id (RLS adds it) and PostgreSQL combines the GIN
--     and the btree indexes with a BitmapAnd when worthwhile;
--   * trigger `set_updated_at` (BEFORE UPDATE) on every table;
--   * `audit_row` (AFTER INSERT/UPDATE/DELETE) on the five mutable
--     record tables; AFTER INSERT only on verdict_ledger (records who appended
--     each verdict; it is immutable otherwise); not on audit_log itself
--     (recursion) nor on rekor_submission_queue (operational churn, not a
--     record: its history is in attempts/last_error/result);
--   * append-only tables (verdict_ledger, audit_log) carry `append_only_guard`
--     (BEFORE UPDATE OR DELETE, row) and `append_only_truncate_guard` (BEFORE
--     TRUNCATE, statement); BEFORE triggers fire in name order, so the guard
--     fires before set_updated_at. They bind the owner and superusers too
--     (short of session_replication_role = replica or dropping the trigger).
--   * NO Row-Level Security here: ENABLE/FORCE RLS and the policies are
--     written by `cargo xtask gen-rls` into a later, generated migration.
--   * grants are least privilege: never TRUNCATE, REFERENCES or TRIGGER for
--     the runtime roles.

SET LOCAL ROLE attestor_owner;

-- dsse_envelopes ----------------------------------------------------------------

CREATE TABLE attestor.dsse_envelopes (
    id               uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id        uuid        NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    payload_type     text        NOT NULL,
    payload          bytea       NOT NULL,
    payload_sha256   bytea       NOT NULL,
    envelope_sha256  bytea       NOT NULL,
    signatures       jsonb       NOT NULL,
    envelope         jsonb       NOT NULL,
    statement        jsonb       NULL,
    statement_type   text        NULL,
    predicate_type   text        NULL,
    subject_digests  text[]      NOT NULL DEFAULT '{}',
    CONSTRAINT dsse_envelopes_pkey PRIMARY KEY (tenant_id, id),
    CONSTRAINT dsse_envelopes_envelope_sha256_key UNIQUE (tenant_id, envelope_sha256),
    CONSTRAINT dsse_envelopes_payload_type_check CHECK (payload_type <> ''),
    CONSTRAINT dsse_envelopes_payload_sha256_check
        CHECK (octet_length(payload_sha256) = 32 AND payload_sha256 = sha256(payload)),
    CONSTRAINT dsse_envelopes_envelope_sha256_check CHECK (octet_length(envelope_sha256) = 32),
    CONSTRAINT dsse_envelopes_signatures_check CHECK (jsonb_typeof(signatures) = 'array'),
    CONSTRAINT dsse_envelopes_envelope_check CHECK (jsonb_typeof(envelope) = 'object'),
    CONSTRAINT dsse_envelopes_statement_check
        CHECK (statement IS NULL OR jsonb_typeof(statement) = 'object'),
    CONSTRAINT dsse_envelopes_subject_digests_check
        CHECK (array_position(subject_digests, NULL) IS NULL)
);

COMMENT ON TABLE attestor.dsse_envelopes IS
    'DSSE envelopes as received: payload bytes kept exactly (they were signed), the raw envelope as jsonb, '
    'and the decoded in-toto statement when the payload is one.';
COMMENT ON COLUMN attestor.dsse_envelopes.payload IS 'Payload bytes exactly as signed (base64-decoded).';
COMMENT ON COLUMN attestor.dsse_envelopes.payload_sha256 IS 'sha256(payload), 32 bytes; CHECKed against payload.';
COMMENT ON COLUMN attestor.dsse_envelopes.envelope_sha256 IS 'sha256 of the RFC 8785 canonical envelope JSON with payload and sigs as standard base64 (attestor_formats::dsse), 32 bytes; idempotency key.';
COMMENT ON COLUMN attestor.dsse_envelopes.envelope IS 'The raw envelope (keeps unknown fields).';
COMMENT ON COLUMN attestor.dsse_envelopes.statement IS 'Decoded in-toto statement, NULL when the payload is not one.';
COMMENT ON COLUMN attestor.dsse_envelopes.subject_digests IS 'Subject digests as "<alg>:<hex>", e.g. "sha256:ab..."; no NULL elements.';

CREATE INDEX dsse_envelopes_predicate_type_idx ON attestor.dsse_envelopes (tenant_id, predicate_type);
CREATE INDEX dsse_envelopes_created_at_idx ON attestor.dsse_envelopes (tenant_id, created_at, id);
CREATE INDEX dsse_envelopes_subject_digests_idx ON attestor.dsse_envelopes USING gin (subject_digests);
CREATE INDEX dsse_envelopes_statement_idx ON attestor.dsse_envelopes USING gin (statement jsonb_path_ops);

-- rekor_entries -----------------------------------------------------------------

CREATE TABLE attestor.rekor_entries (
    id                      uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id               uuid        NOT NULL,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    envelope_id             uuid        NULL,
    log_id                  text        NOT NULL,
    log_index               bigint      NOT NULL,
    shard_log_index         bigint      NULL,
    entry_uuid              text        NULL,
    kind                    text        NOT NULL,
    kind_version            text        NOT NULL,
    integrated_time         timestamptz NULL,
    canonical_body          bytea       NOT NULL,
    inclusion_proof         jsonb       NULL,
    checkpoint              text        NULL,
    signed_entry_timestamp  bytea       NULL,
    leaf_hash               bytea       NOT NULL,
    CONSTRAINT rekor_entries_pkey PRIMARY KEY (tenant_id, id),
    CONSTRAINT rekor_entries_log_index_key UNIQUE (tenant_id, log_id, log_index),
    CONSTRAINT rekor_entries_envelope_id_fkey FOREIGN KEY (tenant_id, envelope_id)
        REFERENCES attestor.dsse_envelopes (tenant_id, id),
    CONSTRAINT rekor_entries_log_id_check CHECK (log_id <> ''),
    CONSTRAINT rekor_entries_log_index_check CHECK (log_index >= 0),
    CONSTRAINT rekor_entries_shard_log_index_check CHECK (shard_log_index IS NULL OR shard_log_index >= 0),
    CONSTRAINT rekor_entries_kind_check CHECK (kind <> '' AND kind_version <> ''),
    CONSTRAINT rekor_entries_inclusion_proof_check
        CHECK (inclusion_proof IS NULL OR jsonb_typeof(inclusion_proof) = 'object'),
    -- RFC 6962 leaf hash: sha256(0x00 || canonical body).
    CONSTRAINT rekor_entries_leaf_hash_check
        CHECK (octet_length(leaf_hash) = 32 AND leaf_hash = sha256('\x00'::bytea || canonical_body))
);

COMMENT ON TABLE attestor.rekor_entries IS
    'Transparency-log (Rekor) entries: canonical body bytes, inclusion proof, checkpoint and SET; '
    'optionally linked to the DSSE envelope they log.';
COMMENT ON COLUMN attestor.rekor_entries.log_id IS 'Log ID (hex sha256 of the log public key).';
COMMENT ON COLUMN attestor.rekor_entries.log_index IS 'Global (virtual) log index.';
COMMENT ON COLUMN attestor.rekor_entries.shard_log_index IS 'Index within the shard the inclusion proof refers to.';
COMMENT ON COLUMN attestor.rekor_entries.kind IS 'Rekor entry kind (hashedrekord, intoto, dsse, ...): an open set, not CHECKed.';
COMMENT ON COLUMN attestor.rekor_entries.canonical_body IS 'Canonicalized entry body exactly as logged (the Merkle leaf).';
COMMENT ON COLUMN attestor.rekor_entries.leaf_hash IS 'RFC 6962 leaf hash sha256(0x00 || canonical_body), 32 bytes; CHECKed.';

CREATE INDEX rekor_entries_envelope_id_idx ON attestor.rekor_entries (tenant_id, envelope_id);
CREATE INDEX rekor_entries_created_at_idx ON attestor.rekor_entries (tenant_id, created_at, id);

-- sbom_entries ------------------------------------------------------------------

CREATE TABLE attestor.sbom_entries (
    id               uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id        uuid        NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    format           text        NOT NULL,
    spec_version     text        NOT NULL,
    sbom_digest      bytea       NOT NULL,
    component_count  integer     NOT NULL,
    document         jsonb       NOT NULL,
    CONSTRAINT sbom_entries_pkey PRIMARY KEY (tenant_id, id),
    CONSTRAINT sbom_entries_sbom_digest_key UNIQUE (tenant_id, sbom_digest),
    CONSTRAINT sbom_entries_format_check CHECK (format IN ('cyclonedx', 'spdx')),
    CONSTRAINT sbom_entries_spec_version_check CHECK (spec_version <> ''),
    CONSTRAINT sbom_entries_sbom_digest_check CHECK (octet_length(sbom_digest) = 32),
    CONSTRAINT sbom_entries_component_count_check CHECK (component_count >= 0),
    CONSTRAINT sbom_entries_document_check CHECK (jsonb_typeof(document) = 'object')
);

COMMENT ON TABLE attestor.sbom_entries IS 'SBOM documents (CycloneDX or SPDX) as jsonb, keyed by the sha256 of their bytes.';
COMMENT ON COLUMN attestor.sbom_entries.sbom_digest IS 'sha256 of the SBOM bytes as received, 32 bytes.';

CREATE INDEX sbom_entries_created_at_idx ON attestor.sbom_entries (tenant_id, created_at, id);
CREATE INDEX sbom_entries_document_idx ON attestor.sbom_entries USING gin (document jsonb_path_ops);

-- spines ------------------------------------------------------------------------

CREATE TABLE attestor.spines (
    id               uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id        uuid        NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    proof_bundle_id  bytea       NOT NULL,
    sbom_entry_id    uuid        NULL,
    evidence_ids     text[]      NOT NULL DEFAULT '{}',
    reasoning_id     text        NULL,
    vex_verdict_id   text        NULL,
    policy_version   text        NOT NULL,
    segment_count    integer     NOT NULL,
    segments         jsonb       NOT NULL DEFAULT '[]',
    CONSTRAINT spines_pkey PRIMARY KEY (tenant_id, id),
    CONSTRAINT spines_proof_bundle_id_key UNIQUE (tenant_id, proof_bundle_id),
    CONSTRAINT spines_sbom_entry_id_fkey FOREIGN KEY (tenant_id, sbom_entry_id)
        REFERENCES attestor.sbom_entries (tenant_id, id),
    CONSTRAINT spines_proof_bundle_id_check CHECK (octet_length(proof_bundle_id) = 32),
    CONSTRAINT spines_evidence_ids_check CHECK (array_position(evidence_ids, NULL) IS NULL),
    CONSTRAINT spines_segment_count_check CHECK (segment_count >= 0),
    CONSTRAINT spines_segments_check CHECK (jsonb_typeof(segments) = 'array')
);

COMMENT ON TABLE attestor.spines IS
    'Proof spines: a proof bundle (Merkle root over its segments) tying an SBOM, evidence, reasoning '
    'and a VEX verdict to a policy version.';
COMMENT ON COLUMN attestor.spines.proof_bundle_id IS 'Merkle root of the proof bundle, 32 bytes.';

CREATE INDEX spines_sbom_entry_id_idx ON attestor.spines (tenant_id, sbom_entry_id);
CREATE INDEX spines_created_at_idx ON attestor.spines (tenant_id, created_at, id);

-- trust_anchors -----------------------------------------------------------------

CREATE TABLE attestor.trust_anchors (
    id                       uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id                uuid        NOT NULL,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    key_id                   text        NOT NULL,
    algorithm                text        NOT NULL,
    public_key               bytea       NOT NULL,
    purl_pattern             text        NULL,
    allowed_predicate_types  text[]      NOT NULL DEFAULT '{}',
    valid_from               timestamptz NOT NULL,
    valid_until              timestamptz NULL,
    revoked_at               timestamptz NULL,
    CONSTRAINT trust_anchors_pkey PRIMARY KEY (tenant_id, id),
    -- Also serves lookups by (tenant_id, key_id): no separate index needed.
    CONSTRAINT trust_anchors_key_id_valid_from_key UNIQUE (tenant_id, key_id, valid_from),
    CONSTRAINT trust_anchors_key_id_check CHECK (key_id <> ''),
    CONSTRAINT trust_anchors_algorithm_check CHECK (algorithm IN (
        'ecdsa-p256-sha256', 'ecdsa-p384-sha384', 'ed25519', 'rsa-pkcs1-sha256', 'rsa-pss-sha256')),
    CONSTRAINT trust_anchors_public_key_check CHECK (octet_length(public_key) > 0),
    CONSTRAINT trust_anchors_allowed_predicate_types_check
        CHECK (array_position(allowed_predicate_types, NULL) IS NULL),
    CONSTRAINT trust_anchors_validity_check CHECK (valid_until IS NULL OR valid_until > valid_from)
);

COMMENT ON TABLE attestor.trust_anchors IS
    'Verification keys trusted by a tenant, with algorithm, scope (purl pattern, allowed predicate types), '
    'validity window and revocation.';
COMMENT ON COLUMN attestor.trust_anchors.public_key IS 'SubjectPublicKeyInfo, DER.';
COMMENT ON COLUMN attestor.trust_anchors.allowed_predicate_types IS 'Predicate types this key may sign; empty = any.';

CREATE INDEX trust_anchors_created_at_idx ON attestor.trust_anchors (tenant_id, created_at, id);

-- verdict_ledger ----------------------------------------------------------------

CREATE TABLE attestor.verdict_ledger (
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id       uuid        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    seq             bigint      NOT NULL,
    subject_digest  text        NOT NULL,
    decision        text        NOT NULL,
    policy_ref      text        NOT NULL,
    inputs          jsonb       NOT NULL,
    prev_hash       bytea       NOT NULL,
    entry_hash      bytea       NOT NULL,
    -- seq - 1, NULL for the first entry: lets the database itself enforce the
    -- hash chain with the foreign key below.
    prev_seq        bigint      GENERATED ALWAYS AS (NULLIF(seq - 1, 0)) STORED,
    CONSTRAINT verdict_ledger_pkey PRIMARY KEY (tenant_id, id),
    CONSTRAINT verdict_ledger_seq_key UNIQUE (tenant_id, seq),
    CONSTRAINT verdict_ledger_entry_hash_key UNIQUE (tenant_id, entry_hash),
    -- Target of the chain foreign key (a FK needs a unique key on exactly its columns).
    CONSTRAINT verdict_ledger_seq_entry_hash_key UNIQUE (tenant_id, seq, entry_hash),
    -- Entry n must follow entry n-1 of the same tenant and carry its hash:
    -- the chain is gapless and linked. MATCH SIMPLE skips the first entry (prev_seq NULL).
    CONSTRAINT verdict_ledger_prev_fkey FOREIGN KEY (tenant_id, prev_seq, prev_hash)
        REFERENCES attestor.verdict_ledger (tenant_id, seq, entry_hash),
    CONSTRAINT verdict_ledger_seq_check CHECK (seq >= 1),
    CONSTRAINT verdict_ledger_subject_digest_check CHECK (subject_digest <> ''),
    CONSTRAINT verdict_ledger_decision_check CHECK (decision IN ('pass', 'fail', 'warn')),
    CONSTRAINT verdict_ledger_prev_hash_check CHECK (
        octet_length(prev_hash) = 32
        AND (seq <> 1 OR prev_hash = '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)),
    CONSTRAINT verdict_ledger_entry_hash_check CHECK (octet_length(entry_hash) = 32)
);

COMMENT ON TABLE attestor.verdict_ledger IS
    'Append-only, per-tenant hash chain of policy verdicts: entry seq links to entry seq-1 through '
    'prev_hash = its entry_hash (enforced by verdict_ledger_prev_fkey); prev_hash of seq 1 is 32 zero bytes.';
COMMENT ON COLUMN attestor.verdict_ledger.prev_seq IS 'Generated: seq - 1, NULL for seq 1. Never written.';

CREATE INDEX verdict_ledger_created_at_idx ON attestor.verdict_ledger (tenant_id, created_at, id);

-- audit_log ---------------------------------------------------------------------

CREATE TABLE attestor.audit_log (
    id          uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id   uuid        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    table_name  text        NOT NULL,
    row_id      uuid        NOT NULL,
    action      text        NOT NULL,
    actor       text        NULL,
    changes     jsonb       NOT NULL,
    txid        bigint      NOT NULL,
    CONSTRAINT audit_log_pkey PRIMARY KEY (tenant_id, id),
    CONSTRAINT audit_log_action_check CHECK (action IN ('INSERT', 'UPDATE', 'DELETE')),
    CONSTRAINT audit_log_changes_check CHECK (jsonb_typeof(changes) = 'object')
);

COMMENT ON TABLE attestor.audit_log IS
    'Append-only audit trail written by attestor_app.audit_row(): INSERT = new row, DELETE = old row, '
    'UPDATE = {"col": {"old": .., "new": ..}} of the changed columns (updated_at excluded).';
COMMENT ON COLUMN attestor.audit_log.table_name IS 'Table name within schema attestor.';
COMMENT ON COLUMN attestor.audit_log.actor IS 'GUC app.actor of the writing transaction, NULL when unset.';
COMMENT ON COLUMN attestor.audit_log.txid IS 'txid_current() of the writing transaction.';

CREATE INDEX audit_log_row_idx ON attestor.audit_log (tenant_id, table_name, row_id);
CREATE INDEX audit_log_created_at_idx ON attestor.audit_log (tenant_id, created_at, id);

-- rekor_submission_queue --------------------------------------------------------

CREATE TABLE attestor.rekor_submission_queue (
    id                uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id         uuid        NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    envelope_id       uuid        NOT NULL,
    bundle_sha256     bytea       NOT NULL,
    status            text        NOT NULL DEFAULT 'queued',
    attempts          integer     NOT NULL DEFAULT 0,
    max_attempts      integer     NOT NULL DEFAULT 10,
    run_at            timestamptz NOT NULL DEFAULT now(),
    lease_expires_at  timestamptz NULL,
    locked_by         text        NULL,
    attempt_token     uuid        NULL,
    last_error        text        NULL,
    result            jsonb       NULL,
    rekor_entry_id    uuid        NULL,
    CONSTRAINT rekor_submission_queue_pkey PRIMARY KEY (tenant_id, id),
    CONSTRAINT rekor_submission_queue_bundle_sha256_key UNIQUE (tenant_id, bundle_sha256),
    CONSTRAINT rekor_submission_queue_envelope_id_fkey FOREIGN KEY (tenant_id, envelope_id)
        REFERENCES attestor.dsse_envelopes (tenant_id, id),
    CONSTRAINT rekor_submission_queue_rekor_entry_id_fkey FOREIGN KEY (tenant_id, rekor_entry_id)
        REFERENCES attestor.rekor_entries (tenant_id, id),
    CONSTRAINT rekor_submission_queue_bundle_sha256_check CHECK (octet_length(bundle_sha256) = 32),
    CONSTRAINT rekor_submission_queue_status_check
        CHECK (status IN ('queued', 'running', 'succeeded', 'dead')),
    CONSTRAINT rekor_submission_queue_attempts_check CHECK (attempts >= 0),
    CONSTRAINT rekor_submission_queue_max_attempts_check CHECK (max_attempts > 0),
    CONSTRAINT rekor_submission_queue_lease_check
        CHECK (status <> 'running' OR (lease_expires_at IS NOT NULL AND attempt_token IS NOT NULL))
);

COMMENT ON TABLE attestor.rekor_submission_queue IS
    'Durable queue of envelopes to submit to Rekor: claimed with FOR UPDATE SKIP LOCKED under a lease, '
    'fenced by attempt_token, retried with backoff up to max_attempts, then dead. Enqueue is idempotent '
    'per (tenant_id, bundle_sha256).';
COMMENT ON COLUMN attestor.rekor_submission_queue.attempt_token IS
    'Fencing token of the current claim; completion/failure must match it.';

CREATE INDEX rekor_submission_queue_status_run_at_idx
    ON attestor.rekor_submission_queue (tenant_id, status, run_at);
-- Small partial indexes over the live jobs only, so that cross-tenant claims
-- (due queued jobs) and lease reclaims (expired running jobs) stay cheap
-- however much succeeded/dead history accumulates.
CREATE INDEX rekor_submission_queue_queued_idx
    ON attestor.rekor_submission_queue (tenant_id, run_at) WHERE status = 'queued';
CREATE INDEX rekor_submission_queue_lease_idx
    ON attestor.rekor_submission_queue (tenant_id, lease_expires_at) WHERE status = 'running';
CREATE INDEX rekor_submission_queue_envelope_id_idx
    ON attestor.rekor_submission_queue (tenant_id, envelope_id);
CREATE INDEX rekor_submission_queue_rekor_entry_id_idx
    ON attestor.rekor_submission_queue (tenant_id, rekor_entry_id);
CREATE INDEX rekor_submission_queue_created_at_idx
    ON attestor.rekor_submission_queue (tenant_id, created_at, id);

-- Triggers ----------------------------------------------------------------------

CREATE TRIGGER set_updated_at BEFORE UPDATE ON attestor.dsse_envelopes
    FOR EACH ROW EXECUTE FUNCTION attestor_app.set_updated_at();
CREATE TRIGGER set_updated_at BEFORE UPDATE ON attestor.rekor_entries
    FOR EACH ROW EXECUTE FUNCTION attestor_app.set_updated_at();
CREATE TRIGGER set_updated_at BEFORE UPDATE ON attestor.sbom_entries
    FOR EACH ROW EXECUTE FUNCTION attestor_app.set_updated_at();
CREATE TRIGGER set_updated_at BEFORE UPDATE ON attestor.spines
    FOR EACH ROW EXECUTE FUNCTION attestor_app.set_updated_at();
CREATE TRIGGER set_updated_at BEFORE UPDATE ON attestor.trust_anchors
    FOR EACH ROW EXECUTE FUNCTION attestor_app.set_updated_at();
CREATE TRIGGER set_updated_at BEFORE UPDATE ON attestor.verdict_ledger
    FOR EACH ROW EXECUTE FUNCTION attestor_app.set_updated_at();
CREATE TRIGGER set_updated_at BEFORE UPDATE ON attestor.audit_log
    FOR EACH ROW EXECUTE FUNCTION attestor_app.set_updated_at();
CREATE TRIGGER set_updated_at BEFORE UPDATE ON attestor.rekor_submission_queue
    FOR EACH ROW EXECUTE FUNCTION attestor_app.set_updated_at();

-- Append-only guards ("append_only_*" < "set_updated_at": they fire first).
CREATE TRIGGER append_only_guard BEFORE UPDATE OR DELETE ON attestor.verdict_ledger
    FOR EACH ROW EXECUTE FUNCTION attestor_app.refuse_mutation();
CREATE TRIGGER append_only_truncate_guard BEFORE TRUNCATE ON attestor.verdict_ledger
    FOR EACH STATEMENT EXECUTE FUNCTION attestor_app.refuse_mutation();
CREATE TRIGGER append_only_guard BEFORE UPDATE OR DELETE ON attestor.audit_log
    FOR EACH ROW EXECUTE FUNCTION attestor_app.refuse_mutation();
CREATE TRIGGER append_only_truncate_guard BEFORE TRUNCATE ON attestor.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION attestor_app.refuse_mutation();

-- Audit trail.
CREATE TRIGGER audit_row AFTER INSERT OR UPDATE OR DELETE ON attestor.dsse_envelopes
    FOR EACH ROW EXECUTE FUNCTION attestor_app.audit_row();
CREATE TRIGGER audit_row AFTER INSERT OR UPDATE OR DELETE ON attestor.rekor_entries
    FOR EACH ROW EXECUTE FUNCTION attestor_app.audit_row();
CREATE TRIGGER audit_row AFTER INSERT OR UPDATE OR DELETE ON attestor.sbom_entries
    FOR EACH ROW EXECUTE FUNCTION attestor_app.audit_row();
CREATE TRIGGER audit_row AFTER INSERT OR UPDATE OR DELETE ON attestor.spines
    FOR EACH ROW EXECUTE FUNCTION attestor_app.audit_row();
CREATE TRIGGER audit_row AFTER INSERT OR UPDATE OR DELETE ON attestor.trust_anchors
    FOR EACH ROW EXECUTE FUNCTION attestor_app.audit_row();
CREATE TRIGGER audit_row AFTER INSERT ON attestor.verdict_ledger
    FOR EACH ROW EXECUTE FUNCTION attestor_app.audit_row();

-- Grants ------------------------------------------------------------------------

-- attestor_app: full DML on the mutable tables ...
GRANT SELECT, INSERT, UPDATE, DELETE ON
    attestor.dsse_envelopes,
    attestor.rekor_entries,
    attestor.sbom_entries,
    attestor.spines,
    attestor.trust_anchors,
    attestor.rekor_submission_queue
    TO attestor_app;
-- ... append-only tables: read and append only. (INSERT on audit_log is what
-- the SECURITY INVOKER audit trigger needs.)
GRANT SELECT, INSERT ON
    attestor.verdict_ledger,
    attestor.audit_log
    TO attestor_app;

-- attestor_worker: read the queue, update only the claim/lease/retry columns
-- (SELECT ... FOR UPDATE needs UPDATE on at least one column). Nothing else.
GRANT SELECT ON attestor.rekor_submission_queue TO attestor_worker;
GRANT UPDATE (status, attempts, run_at, lease_expires_at, locked_by, attempt_token, last_error, updated_at)
    ON attestor.rekor_submission_queue TO attestor_worker;

-- Diesel records the migration in this same transaction, as the connecting
-- user: give the role back before it does.
SET LOCAL ROLE NONE;
