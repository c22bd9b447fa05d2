//! The dead-letter queue: listing dead jobs and putting them back.
//!
//! Owns [`list_dead`], [`requeue_dead`] and [`requeue_all_dead`]. They run as
//! `attestor_worker` (an operator path across tenants) and change only the
//! claim/retry columns of dead jobs. They must never touch a job that is not
//! `dead`, and never clear `last_error` (it is the job's history). A dead
//! job can be requeued until the retention purge deletes it
//! ([`crate::retention`]); requeueing clears its `finished_at`.

use chrono::{DateTime, Utc};
use diesel::sql_types::{Int4, Int8, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::error::{QueueError, Result};

/// A dead-lettered job.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct DeadJob {
    /// Tenant of the job.
    #[diesel(sql_type = SqlUuid)]
    pub tenant_id: Uuid,
    /// The job.
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    /// The envelope it was to submit.
    #[diesel(sql_type = SqlUuid)]
    pub envelope_id: Uuid,
    /// Attempts made.
    #[diesel(sql_type = Int4)]
    pub attempts: i32,
    /// Its attempt limit.
    #[diesel(sql_type = Int4)]
    pub max_attempts: i32,
    /// Why the last attempt failed.
    #[diesel(sql_type = Nullable<Text>)]
    pub last_error: Option<String>,
    /// When it died (last update).
    #[diesel(sql_type = Timestamptz)]
    pub updated_at: DateTime<Utc>,
    /// When it was dead-lettered: the retention purge deletes it
    /// [`crate::Retention::dead`] after this.
    #[diesel(sql_type = Timestamptz)]
    pub finished_at: DateTime<Utc>,
}

/// Dead jobs, most recently dead first, of one tenant or of all
/// (`tenant = None`), at most `limit` (worker connection).
pub async fn list_dead(
    conn: &mut AsyncPgConnection,
    tenant: Option<Uuid>,
    limit: i64,
) -> Result<Vec<DeadJob>> {
    Ok(diesel::sql_query(
        "SELECT tenant_id, id, envelope_id, attempts, max_attempts, last_error, updated_at, finished_at
           FROM attestor.rekor_submission_queue
          WHERE status = 'dead' AND finished_at IS NOT NULL AND ($1::uuid IS NULL OR tenant_id = $1)
          ORDER BY updated_at DESC, tenant_id, id
          LIMIT $2",
    )
    .bind::<Nullable<SqlUuid>, _>(tenant)
    .bind::<Int8, _>(limit.max(0))
    .load(conn)
    .await?)
}

#[derive(QueryableByName)]
struct StatusRow {
    #[diesel(sql_type = Text)]
    status: String,
}

/// Put one dead job back in the queue: `queued`, due now, attempts reset
/// to 0 (its `last_error` stays). [`QueueError::NotFound`] when there is no
/// such job, [`QueueError::WrongState`] when it is not dead.
pub async fn requeue_dead(conn: &mut AsyncPgConnection, tenant_id: Uuid, job_id: Uuid) -> Result<()> {
    let n = diesel::sql_query(
        "UPDATE attestor.rekor_submission_queue
            SET status = 'queued', attempts = 0, run_at = now(), finished_at = NULL
          WHERE tenant_id = $1 AND id = $2 AND status = 'dead'",
    )
    .bind::<SqlUuid, _>(tenant_id)
    .bind::<SqlUuid, _>(job_id)
    .execute(conn)
    .await?;
    if n == 1 {
        return Ok(());
    }
    let rows: Vec<StatusRow> = diesel::sql_query(
        "SELECT status FROM attestor.rekor_submission_queue WHERE tenant_id = $1 AND id = $2",
    )
    .bind::<SqlUuid, _>(tenant_id)
    .bind::<SqlUuid, _>(job_id)
    .load(conn)
    .await?;
    match rows.into_iter().next() {
        Some(r) => Err(QueueError::WrongState {
            job_id,
            status: r.status,
            expected: "dead",
        }),
        None => Err(QueueError::NotFound { tenant_id, job_id }),
    }
}

/// Requeue every dead job of `tenant` (or of all tenants); returns how many.
pub async fn requeue_all_dead(conn: &mut AsyncPgConnection, tenant: Option<Uuid>) -> Result<u64> {
    let n = diesel::sql_query(
        "UPDATE attestor.rekor_submission_queue
            SET status = 'queued', attempts = 0, run_at = now(), finished_at = NULL
          WHERE status = 'dead' AND ($1::uuid IS NULL OR tenant_id = $1)",
    )
    .bind::<Nullable<SqlUuid>, _>(tenant)
    .execute(conn)
    .await?;
    Ok(n as u64)
}
