//! Transparency-log (Rekor) entries: verified, then stored, linked to their envelope.
//!
//! Owns: storing a [`attestor_formats::TlogEntry`] read from a Rekor v1 API
//! response or a Sigstore bundle's tlog entry, **after** it verified as
//! evidence against the caller's [`TrustedRoot`]
//! ([`attestor_transparency::verify_entry`]: known log and a key valid at the
//! entry's time, inclusion proof, verified checkpoint for the proof's tree
//! head, and the SET of an entry with an integrated time). A missing or failing
//! proof is [`RepoError::InclusionProof`], any other refusal
//! [`RepoError::NotEvidence`]; either way nothing is written. The row records
//! the verifying key (`verified_key_sha256`, SHA-256 of its SPKI DER) and the
//! signatures that verified (`evidence`). Idempotent on `(log_id, log_index)`:
//! the same entry again returns the stored row; a *different* body under the
//! same index is a [`RepoError::Conflict`]. The optional link to a DSSE envelope
//! is the composite foreign key `(tenant_id, envelope_id)`, so it can only point
//! at the same tenant's envelope (another tenant's id is [`RepoError::InvalidInput`]).
//!
//! The trusted root is the caller's (a configured Sigstore trusted root), or
//! the tenant's own log anchors ([`ingest_bundle_trusting_tenant`],
//! [`store_trusting_tenant`]: [`crate::trust_anchors::transparency_logs`],
//! read in the same transaction).
//!
//! Must never: store an entry that did not verify against the trusted root it
//! was given, or trust a root hash, SET or checkpoint the entry merely states.

use attestor_formats::TlogEntry;
use attestor_schema::schema::attestor::rekor_entries;
use attestor_transparency::{verify_entry, TrustedRoot};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde_json::{json, Value};
use sha2::Digest as _;
use uuid::Uuid;

use crate::page::{keyset_before, Cursor, Page, PageRequest};
use crate::{Ingested, RepoError, TenantTx};

/// A stored transparency-log entry.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = rekor_entries, check_for_backend(diesel::pg::Pg))]
pub struct RekorEntry {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub envelope_id: Option<Uuid>,
    /// Lowercase hex.
    pub log_id: String,
    /// Global log index.
    pub log_index: i64,
    /// Shard-local index the inclusion proof is for.
    pub shard_log_index: Option<i64>,
    pub entry_uuid: Option<String>,
    pub kind: String,
    pub kind_version: String,
    pub integrated_time: Option<DateTime<Utc>>,
    pub canonical_body: Vec<u8>,
    /// `{"logIndex", "treeSize", "rootHash" (hex), "hashes" ([hex])}`.
    pub inclusion_proof: Option<Value>,
    pub checkpoint: Option<String>,
    pub signed_entry_timestamp: Option<Vec<u8>>,
    pub leaf_hash: Vec<u8>,
    /// SHA-256 of the SPKI DER of the log key that verified the entry.
    /// The table requires it for every row written since migration
    /// `2026-12-03-400001`; `None` only in older rows, stored without a
    /// signature check, which are not evidence ([`Self::is_evidence`]).
    pub verified_key_sha256: Option<Vec<u8>>,
    /// `checkpoint` or `set+checkpoint`; `None` with `verified_key_sha256`.
    pub evidence: Option<String>,
}

impl RekorEntry {
    /// Whether the row records the log key that verified it (every row
    /// written since the database requires it); a legacy row without one is
    /// not evidence of anything.
    pub fn is_evidence(&self) -> bool {
        self.verified_key_sha256.is_some() && self.evidence.is_some()
    }

    /// Cursor of this row for [`list`].
    pub fn cursor(&self) -> Cursor {
        Cursor {
            created_at: self.created_at,
            id: self.id,
        }
    }
}

/// Parses a Rekor v1 `GET /api/v1/log/entries/{uuid}` response, verifies it against `trust` and stores it.
pub async fn ingest_rekor_v1_response(
    tx: &mut TenantTx,
    bytes: &[u8],
    envelope_id: Option<Uuid>,
    trust: &TrustedRoot,
) -> Result<Ingested<RekorEntry>, RepoError> {
    let entry = TlogEntry::from_rekor_v1_response(bytes, tx.limits())?;
    store(tx, &entry, envelope_id, trust).await
}

/// Parses `verificationMaterial.tlogEntries[0]` of a Sigstore bundle, verifies it against `trust` and stores it.
pub async fn ingest_bundle(
    tx: &mut TenantTx,
    bundle: &[u8],
    envelope_id: Option<Uuid>,
    trust: &TrustedRoot,
) -> Result<Ingested<RekorEntry>, RepoError> {
    let entry = TlogEntry::from_bundle(bundle, tx.limits())?;
    store(tx, &entry, envelope_id, trust).await
}

/// [`ingest_bundle`] against the tenant's own log anchors.
pub async fn ingest_bundle_trusting_tenant(
    tx: &mut TenantTx,
    bundle: &[u8],
    envelope_id: Option<Uuid>,
) -> Result<Ingested<RekorEntry>, RepoError> {
    let entry = TlogEntry::from_bundle(bundle, tx.limits())?;
    store_trusting_tenant(tx, &entry, envelope_id).await
}

/// [`store`] against the tenant's own log anchors
/// ([`crate::trust_anchors::transparency_logs`]); a tenant with none trusts
/// no log, so every entry is [`RepoError::NotEvidence`].
pub async fn store_trusting_tenant(
    tx: &mut TenantTx,
    entry: &TlogEntry,
    envelope_id: Option<Uuid>,
) -> Result<Ingested<RekorEntry>, RepoError> {
    let trust = crate::trust_anchors::transparency_logs(tx).await?;
    store(tx, entry, envelope_id, &trust).await
}

/// Stores a whole Sigstore bundle: its `dsseEnvelope` (idempotent) and its
/// tlog entry (verified against `trust` first), linked to that envelope.
/// Nothing is written when the entry does not verify: it is checked before the
/// envelope is stored.
pub async fn ingest_bundle_with_envelope(
    tx: &mut TenantTx,
    bundle: &[u8],
    trust: &TrustedRoot,
) -> Result<
    (
        Ingested<crate::dsse_envelopes::DsseEnvelope>,
        Ingested<RekorEntry>,
    ),
    RepoError,
> {
    let entry = TlogEntry::from_bundle(bundle, tx.limits())?;
    verify_entry(&entry, trust, Utc::now())?;
    let envelope = attestor_formats::ParsedEnvelope::from_bundle(bundle, tx.limits())?;
    let stored_envelope = crate::dsse_envelopes::store(tx, &envelope).await?;
    let stored_entry = store(tx, &entry, Some(stored_envelope.row.id), trust).await?;
    Ok((stored_envelope, stored_entry))
}

/// Verifies the entry against `trust` (an entry without an integrated time is
/// checked at the current time: when it is handed in, see
/// attestor-transparency's *Reference time*), then stores it (idempotent on `(log_id, log_index)`).
pub async fn store(
    tx: &mut TenantTx,
    entry: &TlogEntry,
    envelope_id: Option<Uuid>,
    trust: &TrustedRoot,
) -> Result<Ingested<RekorEntry>, RepoError> {
    let verified = verify_entry(entry, trust, Utc::now())?;
    let verified_key = sha2::Sha256::digest(&verified.log.spki_der).to_vec();
    let proof = entry.inclusion_proof.as_ref().map(|p| {
        json!({
            "logIndex": p.log_index,
            "treeSize": p.tree_size,
            "rootHash": hex::encode(p.root_hash),
            "hashes": p.hashes.iter().map(hex::encode).collect::<Vec<_>>(),
        })
    });
    let checkpoint = entry.inclusion_proof.as_ref().and_then(|p| p.checkpoint.clone());
    if checkpoint.as_deref().is_some_and(|c| c.contains('\0')) {
        return Err(RepoError::invalid("checkpoint contains a NUL character"));
    }
    let integrated_time = match entry.integrated_time {
        None => None,
        Some(secs) => Some(
            DateTime::<Utc>::from_timestamp(secs, 0)
                .ok_or_else(|| RepoError::invalid(format!("integratedTime {secs} is out of range")))?,
        ),
    };
    let inserted = tx
        .statement("rekor_entries::store", |s| {
            s.insert(
                rekor_entries::table,
                (
                    rekor_entries::envelope_id.eq(envelope_id),
                    rekor_entries::log_id.eq(&entry.log_id),
                    rekor_entries::log_index.eq(entry.log_index),
                    rekor_entries::shard_log_index.eq(entry.shard_log_index),
                    rekor_entries::entry_uuid.eq(entry.entry_uuid.as_deref()),
                    rekor_entries::kind.eq(&entry.kind),
                    rekor_entries::kind_version.eq(&entry.kind_version),
                    rekor_entries::integrated_time.eq(integrated_time),
                    rekor_entries::canonical_body.eq(&entry.canonical_body),
                    rekor_entries::inclusion_proof.eq(&proof),
                    rekor_entries::checkpoint.eq(&checkpoint),
                    rekor_entries::signed_entry_timestamp.eq(entry.signed_entry_timestamp.as_deref()),
                    rekor_entries::leaf_hash.eq(entry.leaf_hash.to_vec()),
                    rekor_entries::verified_key_sha256.eq(&verified_key),
                    rekor_entries::evidence.eq(verified.evidence.as_str()),
                ),
            )
            .on_conflict((
                rekor_entries::tenant_id,
                rekor_entries::log_id,
                rekor_entries::log_index,
            ))
            .do_nothing()
            .returning(RekorEntry::as_returning())
        })
        .optional()
        .await?;
    if let Some(row) = inserted {
        return Ok(Ingested { row, created: true });
    }
    let row = find_by_log_index(tx, &entry.log_id, entry.log_index)
        .await?
        .ok_or_else(|| {
            RepoError::not_found("rekor entry", format!("{}/{}", entry.log_id, entry.log_index))
        })?;
    if row.leaf_hash != entry.leaf_hash {
        return Err(RepoError::Conflict {
            constraint: "rekor_entries_log_index_key".into(),
            message: format!(
                "log {} index {} is already stored with a different body",
                entry.log_id, entry.log_index
            ),
        });
    }
    Ok(Ingested { row, created: false })
}

/// The entry with this id.
pub async fn get(tx: &mut TenantTx, id: Uuid) -> Result<RekorEntry, RepoError> {
    tx.statement("rekor_entries::get", |s| {
        s.table(rekor_entries::table)
            .filter(rekor_entries::id.eq(id))
            .select(RekorEntry::as_select())
    })
    .optional()
    .await?
    .ok_or_else(|| RepoError::not_found("rekor entry", id.to_string()))
}

/// The entry at `log_index` (global) of log `log_id` (hex).
pub async fn find_by_log_index(
    tx: &mut TenantTx,
    log_id: &str,
    log_index: i64,
) -> Result<Option<RekorEntry>, RepoError> {
    let log_id = log_id.to_ascii_lowercase();
    tx.statement("rekor_entries::find_by_log_index", |s| {
        s.table(rekor_entries::table)
            .filter(rekor_entries::log_id.eq(&log_id))
            .filter(rekor_entries::log_index.eq(log_index))
            .select(RekorEntry::as_select())
    })
    .optional()
    .await
}

/// The entries that log this envelope, oldest first.
pub async fn find_by_envelope(tx: &mut TenantTx, envelope_id: Uuid) -> Result<Vec<RekorEntry>, RepoError> {
    tx.statement("rekor_entries::find_by_envelope", |s| {
        s.table(rekor_entries::table)
            .filter(rekor_entries::envelope_id.eq(envelope_id))
            .order((rekor_entries::created_at, rekor_entries::id))
            .select(RekorEntry::as_select())
    })
    .load()
    .await
}

/// The tenant's entries, newest first.
pub async fn list(tx: &mut TenantTx, page: PageRequest) -> Result<Page<RekorEntry>, RepoError> {
    let limit = page.checked_limit()?;
    let rows = tx
        .statement("rekor_entries::list", |s| {
            let q = s
                .table(rekor_entries::table)
                .select(RekorEntry::as_select())
                .into_boxed();
            keyset_before!(q, rekor_entries, page.after).limit(limit + 1)
        })
        .load()
        .await?;
    Ok(Page::from_rows(rows, limit, RekorEntry::cursor))
}
