//! Proof spines: a proof bundle tying an SBOM, evidence, reasoning and a VEX
//! verdict to a policy version, identified by the Merkle root of its segments.
//!
//! Owns: computing `proof_bundle_id` = RFC 6962 Merkle root over the RFC 8785
//! (JCS) encoding of each segment, in order (`attestor_formats::merkle::root`),
//! and storing the spine idempotently on that id: the same segments again
//! return the stored row if every other field matches, a
//! [`RepoError::Conflict`] otherwise. The SBOM link is the composite foreign
//! key `(tenant_id, sbom_entry_id)`.
//!
//! Must never: accept a caller-supplied bundle id that was not computed from
//! the segments, or link an SBOM of another tenant.

use attestor_formats::merkle;
use attestor_schema::schema::attestor::spines;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde_json::Value;
use uuid::Uuid;

use crate::page::{keyset_before, Cursor, Page, PageRequest};
use crate::{Ingested, RepoError, TenantTx};

/// A stored proof spine.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = spines, check_for_backend(diesel::pg::Pg))]
pub struct Spine {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Merkle root of the segments, 32 bytes.
    pub proof_bundle_id: Vec<u8>,
    pub sbom_entry_id: Option<Uuid>,
    pub evidence_ids: Vec<String>,
    pub reasoning_id: Option<String>,
    pub vex_verdict_id: Option<String>,
    pub policy_version: String,
    pub segment_count: i32,
    pub segments: Value,
}

impl Spine {
    /// Cursor of this row for [`list`].
    pub fn cursor(&self) -> Cursor {
        Cursor {
            created_at: self.created_at,
            id: self.id,
        }
    }
}

/// A spine to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSpine {
    pub sbom_entry_id: Option<Uuid>,
    pub evidence_ids: Vec<String>,
    pub reasoning_id: Option<String>,
    pub vex_verdict_id: Option<String>,
    pub policy_version: String,
    /// The proof segments, in order (any JSON values).
    pub segments: Vec<Value>,
}

/// `proof_bundle_id` of these segments: Merkle root over JCS(segment).
pub fn proof_bundle_id(segments: &[Value]) -> [u8; 32] {
    let leaves: Vec<Vec<u8>> = segments
        .iter()
        .map(|s| serde_json_canonicalizer::to_vec(s).expect("a serde_json::Value always canonicalizes"))
        .collect();
    merkle::root(&leaves)
}

fn check_text(field: &str, value: &str) -> Result<(), RepoError> {
    if value.contains('\0') {
        return Err(RepoError::invalid(format!("{field} contains a NUL character")));
    }
    Ok(())
}

/// Creates the spine (idempotent on its proof bundle id).
pub async fn create(tx: &mut TenantTx, new: &NewSpine) -> Result<Ingested<Spine>, RepoError> {
    check_text("policy_version", &new.policy_version)?;
    for e in &new.evidence_ids {
        check_text("evidence_ids", e)?;
    }
    for v in [&new.reasoning_id, &new.vex_verdict_id].into_iter().flatten() {
        check_text("reasoning_id/vex_verdict_id", v)?;
    }
    let segments = Value::Array(new.segments.clone());
    attestor_formats::limits::check_no_nul(&segments, "proof spine segments")?;
    let size = serde_json::to_vec(&segments)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    tx.limits().check_size(size)?;
    let count = i32::try_from(new.segments.len()).map_err(|_| RepoError::invalid("too many segments"))?;
    let bundle_id = proof_bundle_id(&new.segments);
    let inserted = tx
        .statement("spines::create", |s| {
            s.insert(
                spines::table,
                (
                    spines::proof_bundle_id.eq(bundle_id.to_vec()),
                    spines::sbom_entry_id.eq(new.sbom_entry_id),
                    spines::evidence_ids.eq(&new.evidence_ids),
                    spines::reasoning_id.eq(new.reasoning_id.as_deref()),
                    spines::vex_verdict_id.eq(new.vex_verdict_id.as_deref()),
                    spines::policy_version.eq(&new.policy_version),
                    spines::segment_count.eq(count),
                    spines::segments.eq(&segments),
                ),
            )
            .on_conflict((spines::tenant_id, spines::proof_bundle_id))
            .do_nothing()
            .returning(Spine::as_returning())
        })
        .optional()
        .await?;
    if let Some(row) = inserted {
        return Ok(Ingested { row, created: true });
    }
    let row = find_by_bundle_id(tx, &bundle_id)
        .await?
        .ok_or_else(|| RepoError::not_found("spine", hex::encode(bundle_id)))?;
    let same = row.sbom_entry_id == new.sbom_entry_id
        && row.evidence_ids == new.evidence_ids
        && row.reasoning_id == new.reasoning_id
        && row.vex_verdict_id == new.vex_verdict_id
        && row.policy_version == new.policy_version;
    if !same {
        return Err(RepoError::Conflict {
            constraint: "spines_proof_bundle_id_key".into(),
            message: format!(
                "proof bundle {} is already stored with different links",
                hex::encode(bundle_id)
            ),
        });
    }
    Ok(Ingested { row, created: false })
}

/// The spine with this id.
pub async fn get(tx: &mut TenantTx, id: Uuid) -> Result<Spine, RepoError> {
    tx.statement("spines::get", |s| {
        s.table(spines::table)
            .filter(spines::id.eq(id))
            .select(Spine::as_select())
    })
    .optional()
    .await?
    .ok_or_else(|| RepoError::not_found("spine", id.to_string()))
}

/// The spine with this proof bundle id.
pub async fn find_by_bundle_id(tx: &mut TenantTx, bundle_id: &[u8; 32]) -> Result<Option<Spine>, RepoError> {
    tx.statement("spines::find_by_bundle_id", |s| {
        s.table(spines::table)
            .filter(spines::proof_bundle_id.eq(bundle_id.to_vec()))
            .select(Spine::as_select())
    })
    .optional()
    .await
}

/// The tenant's spines, newest first.
pub async fn list(tx: &mut TenantTx, page: PageRequest) -> Result<Page<Spine>, RepoError> {
    let limit = page.checked_limit()?;
    let rows = tx
        .statement("spines::list", |s| {
            let q = s.table(spines::table).select(Spine::as_select()).into_boxed();
            keyset_before!(q, spines, page.after).limit(limit + 1)
        })
        .load()
        .await?;
    Ok(Page::from_rows(rows, limit, Spine::cursor))
}
