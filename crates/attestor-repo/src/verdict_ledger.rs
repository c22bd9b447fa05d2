//! The verdict ledger: an append-only, per-tenant hash chain of policy verdicts.
//!
//! Owns: [`append`] and [`verify_chain`]. An entry's `entry_hash` is
//! [`attestor_formats::entry_hash`] (SHA-256 over a documented RFC 8785
//! encoding of tenant, seq, subject digest, decision, policy ref, inputs and
//! `prev_hash`); entry `n` stores `prev_hash = entry_hash(n-1)`, the first
//! entry 32 zero bytes.
//!
//! Concurrency: `append` takes `pg_advisory_xact_lock(key(tenant))` first (the
//! key is the first 8 bytes of SHA-256 of `attestor.verdict_ledger/` + tenant
//! id), so appends of one tenant serialize until their transaction ends (no
//! gaps, no forks) while other tenants' appends proceed; the database backs
//! this with `UNIQUE (tenant_id, seq)` and the chain foreign key
//! `(tenant_id, prev_seq, prev_hash) → (tenant_id, seq, entry_hash)`, where
//! `prev_seq` is a generated column this module never writes. UPDATE, DELETE
//! and TRUNCATE are refused by trigger (`AT003`) for every role.
//!
//! Must never: write `prev_seq`, update or delete an entry, or compute the
//! hash over anything but the values that are stored.

use attestor_formats::ledger::{entry_hash, LedgerEntryContent, GENESIS_PREV_HASH};
use attestor_schema::schema::attestor::verdict_ledger;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use crate::page::{keyset_before, Cursor, Page, PageRequest};
use crate::{RepoError, TenantId, TenantTx};

/// A policy decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Pass,
    Fail,
    Warn,
}

impl Decision {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Pass => "pass",
            Decision::Fail => "fail",
            Decision::Warn => "warn",
        }
    }
}

impl std::str::FromStr for Decision {
    type Err = RepoError;
    fn from_str(s: &str) -> Result<Self, RepoError> {
        match s {
            "pass" => Ok(Decision::Pass),
            "fail" => Ok(Decision::Fail),
            "warn" => Ok(Decision::Warn),
            other => Err(RepoError::invalid(format!("unknown decision `{other}`"))),
        }
    }
}

/// A stored ledger entry.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = verdict_ledger, check_for_backend(diesel::pg::Pg))]
pub struct LedgerEntry {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub seq: i64,
    pub subject_digest: String,
    /// `pass`, `fail` or `warn`.
    pub decision: String,
    pub policy_ref: String,
    pub inputs: Value,
    pub prev_hash: Vec<u8>,
    pub entry_hash: Vec<u8>,
}

impl LedgerEntry {
    /// Cursor of this row for [`list`].
    pub fn cursor(&self) -> Cursor {
        Cursor {
            created_at: self.created_at,
            id: self.id,
        }
    }

    /// The entry hash recomputed from the stored values (`None` if `prev_hash` is not 32 bytes).
    pub fn recompute_hash(&self) -> Option<[u8; 32]> {
        Some(entry_hash(&LedgerEntryContent {
            tenant_id: self.tenant_id,
            seq: self.seq,
            subject_digest: &self.subject_digest,
            decision: &self.decision,
            policy_ref: &self.policy_ref,
            inputs: &self.inputs,
            prev_hash: self.prev_hash.as_slice().try_into().ok()?,
        }))
    }
}

/// A verdict to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewVerdict {
    /// E.g. `sha256:<hex>`.
    pub subject_digest: String,
    pub decision: Decision,
    pub policy_ref: String,
    pub inputs: Value,
}

/// Advisory-lock key of a tenant's ledger.
pub fn lock_key(tenant: TenantId) -> i64 {
    let mut h = Sha256::new();
    h.update(b"attestor.verdict_ledger/");
    h.update(tenant.to_string().as_bytes());
    let d = h.finalize();
    i64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

/// Appends a verdict to the tenant's chain and returns the stored entry.
pub async fn append(tx: &mut TenantTx, new: &NewVerdict) -> Result<LedgerEntry, RepoError> {
    for (field, v) in [
        ("subject_digest", &new.subject_digest),
        ("policy_ref", &new.policy_ref),
    ] {
        if v.contains('\0') {
            return Err(RepoError::invalid(format!("{field} contains a NUL character")));
        }
        if v.is_empty() && field == "subject_digest" {
            return Err(RepoError::invalid("subject_digest must not be empty"));
        }
    }
    attestor_formats::limits::check_no_nul(&new.inputs, "verdict inputs")?;
    let size = serde_json::to_vec(&new.inputs)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    tx.limits().check_size(size)?;

    let tenant = tx.tenant();
    tx.statement("verdict_ledger::lock", |_| {
        diesel::select(pg_advisory_xact_lock(lock_key(tenant)))
    })
    .execute()
    .await?;
    let head: Option<(i64, Vec<u8>)> = tx
        .statement("verdict_ledger::append_head", |s| {
            s.table(verdict_ledger::table)
                .order(verdict_ledger::seq.desc())
                .limit(1)
                .select((verdict_ledger::seq, verdict_ledger::entry_hash))
        })
        .optional()
        .await?;
    let (seq, prev_hash) = match head {
        None => (1, GENESIS_PREV_HASH),
        Some((seq, hash)) => (
            seq + 1,
            hash.as_slice()
                .try_into()
                .map_err(|_| RepoError::invalid("stored ledger head hash is not 32 bytes"))?,
        ),
    };
    let hash = entry_hash(&LedgerEntryContent {
        tenant_id: tenant.as_uuid(),
        seq,
        subject_digest: &new.subject_digest,
        decision: new.decision.as_str(),
        policy_ref: &new.policy_ref,
        inputs: &new.inputs,
        prev_hash,
    });
    tx.statement("verdict_ledger::append", |s| {
        s.insert(
            verdict_ledger::table,
            (
                verdict_ledger::seq.eq(seq),
                verdict_ledger::subject_digest.eq(&new.subject_digest),
                verdict_ledger::decision.eq(new.decision.as_str()),
                verdict_ledger::policy_ref.eq(&new.policy_ref),
                verdict_ledger::inputs.eq(&new.inputs),
                verdict_ledger::prev_hash.eq(prev_hash.to_vec()),
                verdict_ledger::entry_hash.eq(hash.to_vec()),
            ),
        )
        .returning(LedgerEntry::as_returning())
    })
    .one()
    .await
}

diesel::define_sql_function! {
    /// `pg_advisory_xact_lock(bigint)`.
    fn pg_advisory_xact_lock(key: diesel::sql_types::BigInt);
}

/// Where a chain first goes wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// The first `seq` that does not check out.
    pub seq: i64,
    pub reason: String,
}

/// Result of [`verify_chain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainVerification {
    /// Entries read.
    pub entries: u64,
    /// `entry_hash` of the last entry that checked out.
    pub head: Option<[u8; 32]>,
    /// `None` when the whole chain is valid.
    pub first_bad: Option<ChainBreak>,
}

impl ChainVerification {
    /// No break found.
    pub fn is_valid(&self) -> bool {
        self.first_bad.is_none()
    }
}

/// Recomputes the tenant's chain from the stored rows: `seq` contiguous from 1,
/// each `prev_hash` equal to the previous `entry_hash` (zero for seq 1), each
/// `entry_hash` equal to the recomputed hash. Names the first bad `seq`.
pub async fn verify_chain(tx: &mut TenantTx) -> Result<ChainVerification, RepoError> {
    const BATCH: i64 = 1000;
    let mut expected_seq = 1i64;
    let mut prev = GENESIS_PREV_HASH;
    let mut entries = 0u64;
    let mut head = None;
    loop {
        let rows: Vec<LedgerEntry> = tx
            .statement("verdict_ledger::verify_chain", |s| {
                s.table(verdict_ledger::table)
                    .filter(verdict_ledger::seq.ge(expected_seq))
                    .order(verdict_ledger::seq.asc())
                    .limit(BATCH)
                    .select(LedgerEntry::as_select())
            })
            .load()
            .await?;
        let n = rows.len();
        for row in rows {
            entries += 1;
            let bad = |reason: String| ChainVerification {
                entries,
                head,
                first_bad: Some(ChainBreak { seq: row.seq, reason }),
            };
            if row.seq != expected_seq {
                return Ok(ChainVerification {
                    entries,
                    head,
                    first_bad: Some(ChainBreak {
                        seq: expected_seq,
                        reason: format!("missing: the next stored entry is seq {}", row.seq),
                    }),
                });
            }
            if row.prev_hash.as_slice() != prev {
                return Ok(bad(format!(
                    "prev_hash {} is not the previous entry_hash {}",
                    hex::encode(&row.prev_hash),
                    hex::encode(prev)
                )));
            }
            let Some(recomputed) = row.recompute_hash() else {
                return Ok(bad("prev_hash is not 32 bytes".into()));
            };
            if row.entry_hash.as_slice() != recomputed {
                return Ok(bad(format!(
                    "entry_hash {} does not match the recomputed {}",
                    hex::encode(&row.entry_hash),
                    hex::encode(recomputed)
                )));
            }
            prev = recomputed;
            head = Some(recomputed);
            expected_seq += 1;
        }
        if (n as i64) < BATCH {
            break;
        }
    }
    Ok(ChainVerification {
        entries,
        head,
        first_bad: None,
    })
}

/// The entry with this `seq`.
pub async fn get_by_seq(tx: &mut TenantTx, seq: i64) -> Result<LedgerEntry, RepoError> {
    tx.statement("verdict_ledger::get_by_seq", |s| {
        s.table(verdict_ledger::table)
            .filter(verdict_ledger::seq.eq(seq))
            .select(LedgerEntry::as_select())
    })
    .optional()
    .await?
    .ok_or_else(|| RepoError::not_found("verdict ledger entry", format!("seq {seq}")))
}

/// The latest entry, if any.
pub async fn head(tx: &mut TenantTx) -> Result<Option<LedgerEntry>, RepoError> {
    tx.statement("verdict_ledger::head", |s| {
        s.table(verdict_ledger::table)
            .order(verdict_ledger::seq.desc())
            .limit(1)
            .select(LedgerEntry::as_select())
    })
    .optional()
    .await
}

/// The tenant's entries, newest first.
pub async fn list(tx: &mut TenantTx, page: PageRequest) -> Result<Page<LedgerEntry>, RepoError> {
    let limit = page.checked_limit()?;
    let rows = tx
        .statement("verdict_ledger::list", |s| {
            let q = s
                .table(verdict_ledger::table)
                .select(LedgerEntry::as_select())
                .into_boxed();
            keyset_before!(q, verdict_ledger, page.after).limit(limit + 1)
        })
        .load()
        .await?;
    Ok(Page::from_rows(rows, limit, LedgerEntry::cursor))
}
