//! Trust anchors: the verification keys a tenant trusts, with validity and revocation.
//!
//! Owns: creating a signing anchor (key id, algorithm, DER public key,
//! optional purl pattern, allowed predicate types, validity window), the
//! *active at time t* lookup by key id (valid_from ≤ t < valid_until, and not
//! revoked at or before t), and revocation (`revoked_at`; revoking again can
//! only move it earlier). A **log anchor** is a transparency log's key (log
//! id, base URL, ECDSA P-256 or Ed25519 key, validity window; [`create_log_key`])
//! and [`transparency_logs`] turns the tenant's log anchors into the
//! [`TrustedRoot`] its transparency-log entries are verified against: each
//! log's window ends at `valid_until` or at `revoked_at`, whichever is first.
//!
//! Must never: delete anchors (revocation keeps history for audits), verify
//! signatures, return an anchor that was revoked or outside its window at
//! the requested time, or let a log key pass for a signing key (or the
//! reverse).

use attestor_schema::schema::attestor::trust_anchors;
use attestor_transparency::{TransparencyLog, TrustedRoot};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::page::{keyset_before, Cursor, Page, PageRequest};
use crate::{RepoError, TenantTx};

/// A stored trust anchor.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = trust_anchors, check_for_backend(diesel::pg::Pg))]
pub struct TrustAnchor {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub key_id: String,
    /// One of `ecdsa-p256-sha256`, `ecdsa-p384-sha384`, `ed25519`, `rsa-pkcs1-sha256`, `rsa-pss-sha256`.
    pub algorithm: String,
    /// SubjectPublicKeyInfo, DER.
    pub public_key: Vec<u8>,
    pub purl_pattern: Option<String>,
    /// Empty = any predicate type.
    pub allowed_predicate_types: Vec<String>,
    pub valid_from: DateTime<Utc>,
    pub valid_until: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Set for a log anchor: the transparency log's id (`logId.keyId`).
    pub log_id: Option<Vec<u8>>,
    /// Set for a log anchor: the log's base URL (its host names the log on checkpoints).
    pub log_base_url: Option<String>,
}

impl TrustAnchor {
    /// Cursor of this row for [`list`].
    pub fn cursor(&self) -> Cursor {
        Cursor {
            created_at: self.created_at,
            id: self.id,
        }
    }

    /// Whether this anchor is trusted at `at`.
    pub fn is_active_at(&self, at: DateTime<Utc>) -> bool {
        self.valid_from <= at
            && self.valid_until.is_none_or(|u| at < u)
            && self.revoked_at.is_none_or(|r| at < r)
    }

    /// Whether this anchor may sign statements of `predicate_type`.
    pub fn allows_predicate_type(&self, predicate_type: &str) -> bool {
        self.allowed_predicate_types.is_empty()
            || self.allowed_predicate_types.iter().any(|p| p == predicate_type)
    }
}

/// A trust anchor to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTrustAnchor {
    pub key_id: String,
    pub algorithm: String,
    pub public_key: Vec<u8>,
    pub purl_pattern: Option<String>,
    pub allowed_predicate_types: Vec<String>,
    pub valid_from: DateTime<Utc>,
    pub valid_until: Option<DateTime<Utc>>,
}

fn no_nul(field: &str, value: &str) -> Result<(), RepoError> {
    if value.contains('\0') {
        Err(RepoError::invalid(format!("{field} contains a NUL character")))
    } else {
        Ok(())
    }
}

/// Creates an anchor. A second anchor with the same key id and `valid_from` is a
/// [`RepoError::Conflict`]; values the table's CHECKs refuse are [`RepoError::InvalidInput`].
pub async fn create(tx: &mut TenantTx, new: &NewTrustAnchor) -> Result<TrustAnchor, RepoError> {
    no_nul("key_id", &new.key_id)?;
    no_nul("algorithm", &new.algorithm)?;
    if let Some(p) = &new.purl_pattern {
        no_nul("purl_pattern", p)?;
    }
    for p in &new.allowed_predicate_types {
        no_nul("allowed_predicate_types", p)?;
    }
    tx.statement("trust_anchors::create", |s| {
        s.insert(
            trust_anchors::table,
            (
                trust_anchors::key_id.eq(&new.key_id),
                trust_anchors::algorithm.eq(&new.algorithm),
                trust_anchors::public_key.eq(&new.public_key),
                trust_anchors::purl_pattern.eq(new.purl_pattern.as_deref()),
                trust_anchors::allowed_predicate_types.eq(&new.allowed_predicate_types),
                trust_anchors::valid_from.eq(new.valid_from),
                trust_anchors::valid_until.eq(new.valid_until),
            ),
        )
        .returning(TrustAnchor::as_returning())
    })
    .one()
    .await
}

/// The anchor with this id.
pub async fn get(tx: &mut TenantTx, id: Uuid) -> Result<TrustAnchor, RepoError> {
    tx.statement("trust_anchors::get", |s| {
        s.table(trust_anchors::table)
            .filter(trust_anchors::id.eq(id))
            .select(TrustAnchor::as_select())
    })
    .optional()
    .await?
    .ok_or_else(|| RepoError::not_found("trust anchor", id.to_string()))
}

/// The signing anchor for `key_id` trusted at `at` (the latest `valid_from`
/// when windows overlap); log anchors are never returned.
pub async fn find_active(
    tx: &mut TenantTx,
    key_id: &str,
    at: DateTime<Utc>,
) -> Result<Option<TrustAnchor>, RepoError> {
    no_nul("key_id", key_id)?;
    tx.statement("trust_anchors::find_active", |s| {
        s.table(trust_anchors::table)
            .filter(trust_anchors::key_id.eq(key_id))
            .filter(trust_anchors::log_id.is_null())
            .filter(trust_anchors::valid_from.le(at))
            .filter(
                trust_anchors::valid_until
                    .is_null()
                    .or(trust_anchors::valid_until.gt(at)),
            )
            .filter(
                trust_anchors::revoked_at
                    .is_null()
                    .or(trust_anchors::revoked_at.gt(at)),
            )
            .order(trust_anchors::valid_from.desc())
            .limit(1)
            .select(TrustAnchor::as_select())
    })
    .optional()
    .await
}

/// Revokes the anchor as of `at`. Revoking again keeps the earlier time.
pub async fn revoke(tx: &mut TenantTx, id: Uuid, at: DateTime<Utc>) -> Result<TrustAnchor, RepoError> {
    let current = get(tx, id).await?;
    let when = current.revoked_at.map_or(at, |r| r.min(at));
    if current.revoked_at == Some(when) {
        return Ok(current);
    }
    tx.statement("trust_anchors::revoke", |s| {
        s.update(trust_anchors::table)
            .filter(trust_anchors::id.eq(id))
            .set(trust_anchors::revoked_at.eq(when))
            .returning(TrustAnchor::as_returning())
    })
    .one()
    .await
}

/// The tenant's anchors, newest first.
pub async fn list(tx: &mut TenantTx, page: PageRequest) -> Result<Page<TrustAnchor>, RepoError> {
    let limit = page.checked_limit()?;
    let rows = tx
        .statement("trust_anchors::list", |s| {
            let q = s
                .table(trust_anchors::table)
                .select(TrustAnchor::as_select())
                .into_boxed();
            keyset_before!(q, trust_anchors, page.after).limit(limit + 1)
        })
        .load()
        .await?;
    Ok(Page::from_rows(rows, limit, TrustAnchor::cursor))
}

/// A transparency log's key to trust ([`create_log_key`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLogKey {
    /// The log's base URL, e.g. `https://rekor.sigstore.dev`.
    pub base_url: String,
    /// The log id its entries name (`logId.keyId`).
    pub log_id: Vec<u8>,
    /// `ecdsa-p256-sha256` or `ed25519`.
    pub algorithm: String,
    /// SubjectPublicKeyInfo, DER.
    pub public_key: Vec<u8>,
    pub valid_from: DateTime<Utc>,
    pub valid_until: Option<DateTime<Utc>>,
}

/// Creates a log anchor; its key id is the log id in lowercase hex. The key
/// must decode as `algorithm` and the base URL name a host, else
/// [`RepoError::InvalidInput`] and nothing is written; the same log id and
/// `valid_from` twice is a [`RepoError::Conflict`].
pub async fn create_log_key(tx: &mut TenantTx, new: &NewLogKey) -> Result<TrustAnchor, RepoError> {
    no_nul("base_url", &new.base_url)?;
    TransparencyLog::new(
        &new.base_url,
        new.log_id.clone(),
        &new.algorithm,
        new.public_key.clone(),
        new.valid_from,
        new.valid_until,
    )
    .map_err(|e| RepoError::invalid(format!("log key: {e}")))?;
    tx.statement("trust_anchors::create_log_key", |s| {
        s.insert(
            trust_anchors::table,
            (
                trust_anchors::key_id.eq(hex::encode(&new.log_id)),
                trust_anchors::algorithm.eq(&new.algorithm),
                trust_anchors::public_key.eq(&new.public_key),
                trust_anchors::valid_from.eq(new.valid_from),
                trust_anchors::valid_until.eq(new.valid_until),
                trust_anchors::log_id.eq(&new.log_id),
                trust_anchors::log_base_url.eq(&new.base_url),
            ),
        )
        .returning(TrustAnchor::as_returning())
    })
    .one()
    .await
}

/// The tenant's log anchors as a trusted root: one [`TransparencyLog`] per
/// anchor, valid from `valid_from` until `valid_until` or `revoked_at`,
/// whichever comes first (an anchor revoked before its window opened is left
/// out: it never vouched for anything). A stored anchor whose key no longer
/// decodes is [`RepoError::InvalidInput`] naming it, never skipped.
pub async fn transparency_logs(tx: &mut TenantTx) -> Result<TrustedRoot, RepoError> {
    let rows: Vec<TrustAnchor> = tx
        .statement("trust_anchors::transparency_logs", |s| {
            s.table(trust_anchors::table)
                .filter(trust_anchors::log_id.is_not_null())
                .order((trust_anchors::valid_from, trust_anchors::id))
                .select(TrustAnchor::as_select())
        })
        .load()
        .await?;
    let mut logs = Vec::with_capacity(rows.len());
    for row in rows {
        let until = match (row.valid_until, row.revoked_at) {
            (Some(u), Some(r)) => Some(u.min(r)),
            (u, r) => u.or(r),
        };
        if until.is_some_and(|end| end <= row.valid_from) {
            continue;
        }
        let (Some(log_id), Some(base_url)) = (row.log_id, row.log_base_url) else {
            continue; // the query selects log anchors only, which have both
        };
        let log = TransparencyLog::new(
            &base_url,
            log_id,
            &row.algorithm,
            row.public_key,
            row.valid_from,
            until,
        )
        .map_err(|e| RepoError::invalid(format!("stored log anchor {}: {e}", row.id)))?;
        logs.push(log);
    }
    Ok(TrustedRoot::from_logs(logs))
}
