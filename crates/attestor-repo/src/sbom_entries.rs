//! SBOM entries: CycloneDX and SPDX JSON documents, idempotent on their digest.
//!
//! Owns: storing a parsed SBOM ([`attestor_formats::ParsedSbom`]: format, spec
//! version, component count, SHA-256 of the exact bytes) as `jsonb`, finding it
//! by id or digest, and listing a tenant's SBOMs newest first.
//!
//! Must never: parse SBOMs itself (attestor-formats does), store a document
//! the parser refused, or write another tenant's `tenant_id`.

use attestor_formats::{ParsedSbom, SbomFormat};
use attestor_schema::schema::attestor::sbom_entries;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde_json::Value;
use uuid::Uuid;

use crate::page::{keyset_before, Cursor, Page, PageRequest};
use crate::{Ingested, RepoError, TenantTx};

/// A stored SBOM.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = sbom_entries, check_for_backend(diesel::pg::Pg))]
pub struct SbomEntry {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// `cyclonedx` or `spdx`.
    pub format: String,
    pub spec_version: String,
    /// SHA-256 of the document bytes as received.
    pub sbom_digest: Vec<u8>,
    pub component_count: i32,
    pub document: Value,
}

impl SbomEntry {
    /// The format as an enum.
    pub fn sbom_format(&self) -> SbomFormat {
        self.format.parse().unwrap_or(SbomFormat::Cyclonedx)
    }

    /// Cursor of this row for [`list`].
    pub fn cursor(&self) -> Cursor {
        Cursor {
            created_at: self.created_at,
            id: self.id,
        }
    }
}

/// Parses `bytes` as CycloneDX or SPDX JSON and stores it; storing the same
/// bytes again returns the existing row (`created == false`).
pub async fn ingest(tx: &mut TenantTx, bytes: &[u8]) -> Result<Ingested<SbomEntry>, RepoError> {
    let parsed = ParsedSbom::parse(bytes, tx.limits())?;
    store(tx, &parsed).await
}

/// Stores an already parsed SBOM (idempotent on its digest).
pub async fn store(tx: &mut TenantTx, sbom: &ParsedSbom) -> Result<Ingested<SbomEntry>, RepoError> {
    let count = i32::try_from(sbom.component_count)
        .map_err(|_| RepoError::invalid("the SBOM has more components than can be counted"))?;
    let inserted = tx
        .statement("sbom_entries::store", |s| {
            s.insert(
                sbom_entries::table,
                (
                    sbom_entries::format.eq(sbom.format.as_str()),
                    sbom_entries::spec_version.eq(&sbom.spec_version),
                    sbom_entries::sbom_digest.eq(sbom.digest.to_vec()),
                    sbom_entries::component_count.eq(count),
                    sbom_entries::document.eq(&sbom.document),
                ),
            )
            .on_conflict((sbom_entries::tenant_id, sbom_entries::sbom_digest))
            .do_nothing()
            .returning(SbomEntry::as_returning())
        })
        .optional()
        .await?;
    match inserted {
        Some(row) => Ok(Ingested { row, created: true }),
        None => {
            let row = find_by_digest(tx, &sbom.digest)
                .await?
                .ok_or_else(|| RepoError::not_found("sbom entry", hex::encode(sbom.digest)))?;
            Ok(Ingested { row, created: false })
        }
    }
}

/// The SBOM with this id.
pub async fn get(tx: &mut TenantTx, id: Uuid) -> Result<SbomEntry, RepoError> {
    tx.statement("sbom_entries::get", |s| {
        s.table(sbom_entries::table)
            .filter(sbom_entries::id.eq(id))
            .select(SbomEntry::as_select())
    })
    .optional()
    .await?
    .ok_or_else(|| RepoError::not_found("sbom entry", id.to_string()))
}

/// The SBOM whose bytes hash to `digest`, if stored.
pub async fn find_by_digest(tx: &mut TenantTx, digest: &[u8; 32]) -> Result<Option<SbomEntry>, RepoError> {
    tx.statement("sbom_entries::find_by_digest", |s| {
        s.table(sbom_entries::table)
            .filter(sbom_entries::sbom_digest.eq(digest.to_vec()))
            .select(SbomEntry::as_select())
    })
    .optional()
    .await
}

/// The tenant's SBOMs, newest first.
pub async fn list(tx: &mut TenantTx, page: PageRequest) -> Result<Page<SbomEntry>, RepoError> {
    let limit = page.checked_limit()?;
    let rows = tx
        .statement("sbom_entries::list", |s| {
            let q = s
                .table(sbom_entries::table)
                .select(SbomEntry::as_select())
                .into_boxed();
            keyset_before!(q, sbom_entries, page.after).limit(limit + 1)
        })
        .load()
        .await?;
    Ok(Page::from_rows(rows, limit, SbomEntry::cursor))
}
