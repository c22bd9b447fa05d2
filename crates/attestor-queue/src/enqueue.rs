//! Enqueueing a submission job inside the caller's tenant transaction.
//!
//! Owns [`enqueue`]: one idempotent insert per `(tenant_id, bundle_sha256)`
//! that joins whatever tenant transaction the caller has open, so the
//! envelope row and its job commit (or roll back) together. The tenant is
//! the transaction's own (`attestor_app.require_current_tenant()`, or the
//! guard's tenant in [`enqueue_tx`]), never a caller's argument, and the
//! queue's policy refuses any other, so a job can never be filed under
//! another tenant. No statement has a subquery (Citus refuses one in an
//! `INSERT`), and the wake-up is a statement of the coordinator's own.
//! It must never open its own transaction, set the tenant GUC, or run as the
//! worker role.

use chrono::{DateTime, Utc};
use diesel::sql_types::{Bytea, Int4, Nullable, Timestamptz, Uuid as SqlUuid};
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
}

#[derive(QueryableByName)]
struct TenantRow {
    #[diesel(sql_type = SqlUuid)]
    tenant: Uuid,
}

/// The insert: the tenant is `$5` when the caller names the guard's tenant
/// ([`enqueue_tx`]), else the transaction's own (`require_current_tenant()`,
/// a plain expression, no subquery: Citus evaluates it on the coordinator
/// and sends the row to its tenant's shard). The policy's check refuses any
/// tenant but the transaction's.
const ENQUEUE_SQL: &str = "\
INSERT INTO attestor.rekor_submission_queue (tenant_id, envelope_id, bundle_sha256, max_attempts, run_at)
VALUES (coalesce($5, attestor_app.require_current_tenant()), $1, $2, $3, coalesce($4, now()))
ON CONFLICT (tenant_id, bundle_sha256) DO NOTHING
RETURNING id";

/// The wake-up, a statement of the coordinator's own (no table): sent in
/// the enqueuing transaction, so PostgreSQL delivers it at commit and drops
/// it on rollback. `$1` the job's `run_at` (NULL: now).
pub const WAKE_SQL: &str = "\
SELECT pg_notify('attestor_queue', '') AS sent WHERE coalesce($1, now()) <= now()";

/// The existing job of a key (`$1` tenant, `$2` key).
const EXISTING_SQL: &str = "\
SELECT q.id
  FROM attestor.rekor_submission_queue q
 WHERE q.tenant_id = $1 AND q.bundle_sha256 = $2";

/// Enqueue `job` in the tenant transaction `conn` belongs to (the caller's
/// `TenantTx`; `app.tenant_id` must be set, else SQLSTATE AT001).
///
/// Idempotent on `(tenant_id, bundle_sha256)`: when the key is already
/// queued (in any status) nothing is written and the existing job id is
/// returned with `created = false`. A job that is due wakes idle workers
/// when the caller commits: the wake-up ([`WAKE_SQL`]) travels in the same
/// flight as the insert (pipelined, no extra round trip), and the queue
/// table's trigger sends one too where the table is not distributed
/// (PostgreSQL folds a transaction's identical notifications into one).
pub async fn enqueue(conn: &mut AsyncPgConnection, job: &NewJob) -> Result<Enqueued> {
    enqueue_for(conn, None, job).await
}

async fn enqueue_for(conn: &mut AsyncPgConnection, tenant: Option<Uuid>, job: &NewJob) -> Result<Enqueued> {
    if job.max_attempts <= 0 {
        return Err(QueueError::InvalidInput(format!(
            "max_attempts must be positive, got {}",
            job.max_attempts
        )));
    }
    let insert = diesel::sql_query(ENQUEUE_SQL)
        .bind::<SqlUuid, _>(job.envelope_id)
        .bind::<Bytea, _>(job.bundle_sha256.to_vec())
        .bind::<Int4, _>(job.max_attempts)
        .bind::<Nullable<Timestamptz>, _>(job.run_at)
        .bind::<Nullable<SqlUuid>, _>(tenant);
    let wake = diesel::sql_query(WAKE_SQL).bind::<Nullable<Timestamptz>, _>(job.run_at);
    let (rows, _) = {
        let shared: &AsyncPgConnection = conn;
        let (mut a, mut b) = (shared, shared);
        futures_util::future::try_join(insert.load::<EnqueueRow>(&mut a), wake.execute(&mut b)).await?
    };
    if let Some(row) = rows.into_iter().next() {
        return Ok(Enqueued {
            job_id: row.id,
            created: true,
        });
    }
    // The key exists (perhaps committed by a concurrent transaction after
    // the insert's snapshot was taken: a new statement sees it).
    let tenant = match tenant {
        Some(t) => t,
        None => {
            diesel::sql_query("SELECT attestor_app.require_current_tenant() AS tenant")
                .get_result::<TenantRow>(conn)
                .await?
                .tenant
        }
    };
    let rows: Vec<EnqueueRow> = diesel::sql_query(EXISTING_SQL)
        .bind::<SqlUuid, _>(tenant)
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

/// [`enqueue`] in a tenant transaction of the attestor-repo guard, with the
/// guard's tenant named in every statement (on Citus each one then goes to
/// the tenant's shard alone).
pub async fn enqueue_tx(tx: &mut attestor_repo::TenantTx, job: &NewJob) -> Result<Enqueued> {
    let tenant = tx.tenant().as_uuid();
    enqueue_for(tx.conn(), Some(tenant), job).await
}
