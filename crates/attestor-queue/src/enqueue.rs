//! Enqueueing a submission job inside the caller's tenant transaction.
//!
//! Owns [`enqueue`]: one idempotent insert per `(tenant_id, bundle_sha256)`
//! that joins whatever tenant transaction the caller has open, so the
//! envelope row and its job commit (or roll back) together. The tenant is
//! taken from the transaction itself (`attestor_app.require_current_tenant()`),
//! never from an argument, so a job can never be filed under another tenant.
//! It must never open its own transaction, set the tenant GUC, or run as the
//! worker role.

use chrono::{DateTime, Utc};
use diesel::sql_types::{Bool, Bytea, Int4, Nullable, Timestamptz, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::error::{QueueError, Result};

/// Default `max_attempts` of a new job (the column default).
pub const DEFAULT_MAX_ATTEMPTS: i32 = 10;

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// The `dsse_envelopes` row (same tenant) to submit.
    pub envelope_id: Uuid,
    /// SHA-256 of the bundle/envelope bytes: the idempotency key.
    pub bundle_sha256: [u8; 32],
    /// Attempts before the job is dead-lettered.
    pub max_attempts: i32,
    /// Earliest time to run; `None` = now.
    pub run_at: Option<DateTime<Utc>>,
}

impl NewJob {
    /// A job for `envelope_id` keyed by `bundle_sha256`, runnable now.
    pub fn new(envelope_id: Uuid, bundle_sha256: [u8; 32]) -> Self {
        NewJob {
            envelope_id,
            bundle_sha256,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            run_at: None,
        }
    }

    /// Override `max_attempts` (must be positive).
    pub fn max_attempts(mut self, max_attempts: i32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Delay the first run until `at`.
    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = Some(at);
        self
    }
}

/// What [`enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    /// The job's id (the existing one when the key was already queued).
    pub job_id: Uuid,
    /// True when this call created the job, false when it already existed.
    pub created: bool,
}

#[derive(QueryableByName)]
struct EnqueueRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Bool)]
    created: bool,
}

const ENQUEUE_SQL: &str = "\
WITH ins AS (
    INSERT INTO attestor.rekor_submission_queue (tenant_id, envelope_id, bundle_sha256, max_attempts, run_at)
    VALUES ((SELECT attestor_app.require_current_tenant()), $1, $2, $3, coalesce($4, now()))
    ON CONFLICT (tenant_id, bundle_sha256) DO NOTHING
    RETURNING id
)
SELECT id, true AS created FROM ins
UNION ALL
SELECT q.id, false AS created
  FROM attestor.rekor_submission_queue q
 WHERE q.tenant_id = (SELECT attestor_app.require_current_tenant())
   AND q.bundle_sha256 = $2
   AND NOT EXISTS (SELECT 1 FROM ins)";

const EXISTING_SQL: &str = "\
SELECT q.id, false AS created
  FROM attestor.rekor_submission_queue q
 WHERE q.tenant_id = (SELECT attestor_app.require_current_tenant())
   AND q.bundle_sha256 = $1";

/// Enqueue `job` in the tenant transaction `conn` belongs to (the caller's
/// `TenantTx`; `app.tenant_id` must be set, else SQLSTATE AT001).
///
/// Idempotent on `(tenant_id, bundle_sha256)`: when the key is already
/// queued (in any status) nothing is written and the existing job id is
/// returned with `created = false`. A NOTIFY (trigger of migration
/// 000005) wakes idle workers when the caller commits.
pub async fn enqueue(conn: &mut AsyncPgConnection, job: &NewJob) -> Result<Enqueued> {
    if job.max_attempts <= 0 {
        return Err(QueueError::InvalidInput(format!(
            "max_attempts must be positive, got {}",
            job.max_attempts
        )));
    }
    let rows: Vec<EnqueueRow> = diesel::sql_query(ENQUEUE_SQL)
        .bind::<SqlUuid, _>(job.envelope_id)
        .bind::<Bytea, _>(job.bundle_sha256.to_vec())
        .bind::<Int4, _>(job.max_attempts)
        .bind::<Nullable<Timestamptz>, _>(job.run_at)
        .load(conn)
        .await?;
    if let Some(row) = rows.into_iter().next() {
        return Ok(Enqueued {
            job_id: row.id,
            created: row.created,
        });
    }
    // The conflicting row was committed by a concurrent transaction after
    // this statement's snapshot was taken: a new statement sees it.
    let rows: Vec<EnqueueRow> = diesel::sql_query(EXISTING_SQL)
        .bind::<Bytea, _>(job.bundle_sha256.to_vec())
        .load(conn)
        .await?;
    rows.into_iter()
        .next()
        .map(|row| Enqueued {
            job_id: row.id,
            created: false,
        })
        .ok_or_else(|| {
            QueueError::InvalidInput(
                "enqueue conflicted but the existing job is not visible in this transaction".into(),
            )
        })
}

/// [`enqueue`] in a tenant transaction of the attestor-repo guard.
pub async fn enqueue_tx(tx: &mut attestor_repo::TenantTx, job: &NewJob) -> Result<Enqueued> {
    enqueue(tx.conn(), job).await
}
