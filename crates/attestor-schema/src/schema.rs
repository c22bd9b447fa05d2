// @generated automatically by Diesel CLI.

pub mod attestor {
    diesel::table! {
        attestor.audit_log (tenant_id, id) {
            id -> Uuid,
            tenant_id -> Uuid,
            created_at -> Timestamptz,
            updated_at -> Timestamptz,
            table_name -> Text,
            row_id -> Uuid,
            action -> Text,
            actor -> Nullable<Text>,
            changes -> Jsonb,
            txid -> Int8,
        }
    }

    diesel::table! {
        attestor.dsse_envelopes (tenant_id, id) {
            id -> Uuid,
            tenant_id -> Uuid,
            created_at -> Timestamptz,
            updated_at -> Timestamptz,
            payload_type -> Text,
            payload -> Bytea,
            payload_sha256 -> Bytea,
            envelope_sha256 -> Bytea,
            signatures -> Jsonb,
            envelope -> Jsonb,
            statement -> Nullable<Jsonb>,
            statement_type -> Nullable<Text>,
            predicate_type -> Nullable<Text>,
            subject_digests -> Array<Text>,
        }
    }

    diesel::table! {
        attestor.rekor_entries (tenant_id, id) {
            id -> Uuid,
            tenant_id -> Uuid,
            created_at -> Timestamptz,
            updated_at -> Timestamptz,
            envelope_id -> Nullable<Uuid>,
            log_id -> Text,
            log_index -> Int8,
            shard_log_index -> Nullable<Int8>,
            entry_uuid -> Nullable<Text>,
            kind -> Text,
            kind_version -> Text,
            integrated_time -> Nullable<Timestamptz>,
            canonical_body -> Bytea,
            inclusion_proof -> Nullable<Jsonb>,
            checkpoint -> Nullable<Text>,
            signed_entry_timestamp -> Nullable<Bytea>,
            leaf_hash -> Bytea,
            verified_key_sha256 -> Nullable<Bytea>,
            evidence -> Nullable<Text>,
        }
    }

    diesel::table! {
        attestor.rekor_submission_queue (tenant_id, id) {
            id -> Uuid,
            tenant_id -> Uuid,
            created_at -> Timestamptz,
            updated_at -> Timestamptz,
            envelope_id -> Uuid,
            bundle_sha256 -> Bytea,
            status -> Text,
            attempts -> Int4,
            max_attempts -> Int4,
            run_at -> Timestamptz,
            lease_expires_at -> Nullable<Timestamptz>,
            locked_by -> Nullable<Text>,
            attempt_token -> Nullable<Uuid>,
            last_error -> Nullable<Text>,
            result -> Nullable<Jsonb>,
            rekor_entry_id -> Nullable<Uuid>,
            finished_at -> Nullable<Timestamptz>,
        }
    }

    diesel::table! {
        attestor.sbom_entries (tenant_id, id) {
            id -> Uuid,
            tenant_id -> Uuid,
            created_at -> Timestamptz,
            updated_at -> Timestamptz,
            format -> Text,
            spec_version -> Text,
            sbom_digest -> Bytea,
            component_count -> Int4,
            document -> Jsonb,
        }
    }

    diesel::table! {
        attestor.spines (tenant_id, id) {
            id -> Uuid,
            tenant_id -> Uuid,
            created_at -> Timestamptz,
            updated_at -> Timestamptz,
            proof_bundle_id -> Bytea,
            sbom_entry_id -> Nullable<Uuid>,
            evidence_ids -> Array<Text>,
            reasoning_id -> Nullable<Text>,
            vex_verdict_id -> Nullable<Text>,
            policy_version -> Text,
            segment_count -> Int4,
            segments -> Jsonb,
        }
    }

    diesel::table! {
        attestor.trust_anchors (tenant_id, id) {
            id -> Uuid,
            tenant_id -> Uuid,
            created_at -> Timestamptz,
            updated_at -> Timestamptz,
            key_id -> Text,
            algorithm -> Text,
            public_key -> Bytea,
            purl_pattern -> Nullable<Text>,
            allowed_predicate_types -> Array<Text>,
            valid_from -> Timestamptz,
            valid_until -> Nullable<Timestamptz>,
            revoked_at -> Nullable<Timestamptz>,
            log_id -> Nullable<Bytea>,
            log_base_url -> Nullable<Text>,
        }
    }

    diesel::table! {
        attestor.verdict_ledger (tenant_id, id) {
            id -> Uuid,
            tenant_id -> Uuid,
            created_at -> Timestamptz,
            updated_at -> Timestamptz,
            seq -> Int8,
            subject_digest -> Text,
            decision -> Text,
            policy_ref -> Text,
            inputs -> Jsonb,
            prev_hash -> Bytea,
            entry_hash -> Bytea,
            prev_seq -> Nullable<Int8>,
        }
    }

    diesel::allow_tables_to_appear_in_same_query!(
        audit_log,
        dsse_envelopes,
        rekor_entries,
        rekor_submission_queue,
        sbom_entries,
        spines,
        trust_anchors,
        verdict_ledger,
    );
}
