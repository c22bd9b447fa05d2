//! DSSE envelopes: ingest, idempotent on the envelope digest, and lookups.
//!
//! Owns: storing an envelope parsed by [`attestor_formats::ParsedEnvelope`]
//! (bare JSON or the `dsseEnvelope` of a Sigstore bundle; standard or URL-safe
//! base64): the payload bytes exactly as signed, its SHA-256, the envelope
//! SHA-256 (the idempotency key: the same envelope in any spelling is one
//! row), the raw envelope and signatures as `jsonb`, and, for in-toto
//! payloads, the decoded statement, its type, predicate type and the
//! `"alg:hex"` subject digests. Lookups by id, envelope digest, subject
//! digest (the `subject_digests` GIN array), predicate type and any JSONB
//! containment on the statement (the `statement` GIN `jsonb_path_ops` index).
//!
//! Must never: re-encode the payload, verify signatures (the caller owns
//! keys), or store an envelope the parser refused.

use attestor_formats::ParsedEnvelope;
use attestor_schema::schema::attestor::dsse_envelopes;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::{PgArrayExpressionMethods, PgJsonbExpressionMethods};
use serde_json::Value;
use uuid::Uuid;

use crate::page::{keyset_before, Cursor, Page, PageRequest};
use crate::{Ingested, RepoError, TenantTx};

/// A stored DSSE envelope.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = dsse_envelopes, check_for_backend(diesel::pg::Pg))]
pub struct DsseEnvelope {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub payload_type: String,
    /// The payload bytes exactly as signed.
    pub payload: Vec<u8>,
    pub payload_sha256: Vec<u8>,
    /// See `attestor_formats::dsse` for the exact definition.
    pub envelope_sha256: Vec<u8>,
    pub signatures: Value,
    /// The envelope as received (original base64 spellings, unknown members kept).
    pub envelope: Value,
    /// The decoded in-toto statement, when the payload is one.
    pub statement: Option<Value>,
    pub statement_type: Option<String>,
    pub predicate_type: Option<String>,
    /// `"alg:hex"`, sorted.
    pub subject_digests: Vec<String>,
}

impl DsseEnvelope {
    /// Cursor of this row for the list functions.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            created_at: self.created_at,
            id: self.id,
        }
    }

    /// The statement's `predicate` member (`None` without a statement or predicate).
    pub fn predicate(&self) -> Option<&Value> {
        self.statement.as_ref()?.get("predicate")
    }
}

/// Parses a DSSE JSON envelope and stores it (idempotent on its digest).
pub async fn ingest(tx: &mut TenantTx, bytes: &[u8]) -> Result<Ingested<DsseEnvelope>, RepoError> {
    let parsed = ParsedEnvelope::parse(bytes, tx.limits())?;
    store(tx, &parsed).await
}

/// Extracts the `dsseEnvelope` of a Sigstore bundle and stores it (idempotent).
pub async fn ingest_bundle(tx: &mut TenantTx, bundle: &[u8]) -> Result<Ingested<DsseEnvelope>, RepoError> {
    let parsed = ParsedEnvelope::from_bundle(bundle, tx.limits())?;
    store(tx, &parsed).await
}

/// Stores an already parsed envelope (idempotent on `envelope_sha256`).
pub async fn store(tx: &mut TenantTx, env: &ParsedEnvelope) -> Result<Ingested<DsseEnvelope>, RepoError> {
    let signatures = env.raw.get("signatures").cloned().unwrap_or(Value::Array(vec![]));
    let statement = env.statement.as_ref();
    let inserted = tx
        .statement("dsse_envelopes::store", |s| {
            s.insert(
                dsse_envelopes::table,
                (
                    dsse_envelopes::payload_type.eq(&env.payload_type),
                    dsse_envelopes::payload.eq(&env.payload),
                    dsse_envelopes::payload_sha256.eq(env.payload_sha256.to_vec()),
                    dsse_envelopes::envelope_sha256.eq(env.envelope_sha256.to_vec()),
                    dsse_envelopes::signatures.eq(&signatures),
                    dsse_envelopes::envelope.eq(&env.raw),
                    dsse_envelopes::statement.eq(statement.map(|s| &s.raw)),
                    dsse_envelopes::statement_type.eq(statement.map(|s| s.statement_type.as_str())),
                    dsse_envelopes::predicate_type.eq(statement.map(|s| s.predicate_type.as_str())),
                    dsse_envelopes::subject_digests.eq(env.subject_digests()),
                ),
            )
            .on_conflict((dsse_envelopes::tenant_id, dsse_envelopes::envelope_sha256))
            .do_nothing()
            .returning(DsseEnvelope::as_returning())
        })
        .optional()
        .await?;
    match inserted {
        Some(row) => Ok(Ingested { row, created: true }),
        None => {
            let row = find_by_digest(tx, &env.envelope_sha256)
                .await?
                .ok_or_else(|| RepoError::not_found("dsse envelope", hex::encode(env.envelope_sha256)))?;
            Ok(Ingested { row, created: false })
        }
    }
}

/// The envelope with this id.
pub async fn get(tx: &mut TenantTx, id: Uuid) -> Result<DsseEnvelope, RepoError> {
    tx.statement("dsse_envelopes::get", |s| {
        s.table(dsse_envelopes::table)
            .filter(dsse_envelopes::id.eq(id))
            .select(DsseEnvelope::as_select())
    })
    .optional()
    .await?
    .ok_or_else(|| RepoError::not_found("dsse envelope", id.to_string()))
}

/// The envelope whose `envelope_sha256` is `digest`.
pub async fn find_by_digest(tx: &mut TenantTx, digest: &[u8; 32]) -> Result<Option<DsseEnvelope>, RepoError> {
    tx.statement("dsse_envelopes::find_by_digest", |s| {
        s.table(dsse_envelopes::table)
            .filter(dsse_envelopes::envelope_sha256.eq(digest.to_vec()))
            .select(DsseEnvelope::as_select())
    })
    .optional()
    .await
}

/// `alg:value` with a hex value lowercased (the stored spelling).
fn normalize_subject_digest(digest: &str) -> Result<String, RepoError> {
    if digest.contains('\0') {
        return Err(RepoError::invalid("subject digest contains a NUL character"));
    }
    match digest.split_once(':') {
        Some((alg, value)) if !alg.is_empty() && !value.is_empty() => {
            if value.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(format!("{alg}:{}", value.to_ascii_lowercase()))
            } else {
                Ok(digest.to_owned())
            }
        }
        _ => Err(RepoError::invalid(format!(
            "subject digest `{digest}` is not of the form <alg>:<value>"
        ))),
    }
}

/// Envelopes with a subject of this digest (`"sha256:<hex>"`), newest first.
pub async fn find_by_subject_digest(
    tx: &mut TenantTx,
    digest: &str,
    page: PageRequest,
) -> Result<Page<DsseEnvelope>, RepoError> {
    let digest = normalize_subject_digest(digest)?;
    page_of(tx, "dsse_envelopes::find_by_subject_digest", page, |q| {
        q.filter(dsse_envelopes::subject_digests.contains(vec![digest.clone()]))
    })
    .await
}

/// Envelopes whose statement has this `predicateType` (JSONB containment), newest first.
pub async fn find_by_predicate_type(
    tx: &mut TenantTx,
    predicate_type: &str,
    page: PageRequest,
) -> Result<Page<DsseEnvelope>, RepoError> {
    find_by_statement(tx, &serde_json::json!({ "predicateType": predicate_type }), page).await
}

/// Envelopes whose statement contains `pattern` (`statement @> pattern`), newest first.
pub async fn find_by_statement(
    tx: &mut TenantTx,
    pattern: &Value,
    page: PageRequest,
) -> Result<Page<DsseEnvelope>, RepoError> {
    attestor_formats::limits::check_no_nul(pattern, "statement pattern")?;
    page_of(tx, "dsse_envelopes::find_by_statement", page, |q| {
        q.filter(dsse_envelopes::statement.contains(pattern.clone()))
    })
    .await
}

/// The tenant's envelopes, newest first.
pub async fn list(tx: &mut TenantTx, page: PageRequest) -> Result<Page<DsseEnvelope>, RepoError> {
    page_of(tx, "dsse_envelopes::list", page, |q| q).await
}

type Boxed = dsse_envelopes::BoxedQuery<'static, diesel::pg::Pg>;

/// One page, newest first, of the transaction tenant's envelopes that
/// `refine` (a filter on the scoped table) lets through.
async fn page_of(
    tx: &mut TenantTx,
    name: &'static str,
    page: PageRequest,
    refine: impl Fn(Boxed) -> Boxed + Send + Sync,
) -> Result<Page<DsseEnvelope>, RepoError> {
    let limit = page.checked_limit()?;
    let rows = tx
        .statement(name, |s| {
            let q = refine(s.table(dsse_envelopes::table).into_boxed()).select(DsseEnvelope::as_select());
            keyset_before!(q, dsse_envelopes, page.after).limit(limit + 1)
        })
        .load()
        .await?;
    Ok(Page::from_rows(rows, limit, DsseEnvelope::cursor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_digests_are_normalised() {
        assert_eq!(normalize_subject_digest("sha256:ABcd").unwrap(), "sha256:abcd");
        assert_eq!(
            normalize_subject_digest("gitCommit:XYZ").unwrap(),
            "gitCommit:XYZ"
        );
        assert!(normalize_subject_digest("nocolon").is_err());
        assert!(normalize_subject_digest("sha256:a\0").is_err());
    }
}
