//! Backlog observation: how many jobs are in each status, overall and per
//! tenant.
//!
//! Owns the read-only queries operators and dashboards use. They run as
//! `attestor_worker` (the only role that may see every tenant's queue rows,
//! through the worker policy). It must never modify anything nor read any
//! table but the queue.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::error::Result;

/// Queue-wide backlog.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Job count per status (`queued`, `running`, `succeeded`, `dead`); every
    /// status is present, zero when empty.
    pub by_status: BTreeMap<String, i64>,
    /// Queued jobs that are due now.
    pub ready: i64,
    /// Running jobs whose lease has expired (awaiting reclaim).
    pub expired_leases: i64,
    /// `run_at` of the oldest due queued job (queue latency).
    pub oldest_ready_at: Option<DateTime<Utc>>,
}

impl Backlog {
    /// Count of `status` (0 when absent).
    pub fn count(&self, status: &str) -> i64 {
        self.by_status.get(status).copied().unwrap_or(0)
    }
}

/// One tenant's backlog.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantBacklog {
    /// The tenant.
    pub tenant_id: Uuid,
    /// Queued (due or delayed).
    pub queued: i64,
    /// Queued and due now.
    pub ready: i64,
    /// Running.
    pub running: i64,
    /// Succeeded.
    pub succeeded: i64,
    /// Dead-lettered.
    pub dead: i64,
}

/// The statuses a job can have (the table's CHECK).
pub const STATUSES: [&str; 4] = ["queued", "running", "succeeded", "dead"];

#[derive(QueryableByName)]
struct StatusCount {
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Extra {
    #[diesel(sql_type = BigInt)]
    ready: i64,
    #[diesel(sql_type = BigInt)]
    expired: i64,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    oldest: Option<DateTime<Utc>>,
}

/// Backlog per status across all tenants (worker connection).
pub async fn backlog(conn: &mut AsyncPgConnection) -> Result<Backlog> {
    let rows: Vec<StatusCount> = diesel::sql_query(
        "SELECT status, count(*) AS n FROM attestor.rekor_submission_queue GROUP BY status",
    )
    .load(conn)
    .await?;
    let mut by_status: BTreeMap<String, i64> = STATUSES.iter().map(|s| (s.to_string(), 0)).collect();
    for r in rows {
        by_status.insert(r.status, r.n);
    }
    let extra: Extra = diesel::sql_query(
        "SELECT count(*) FILTER (WHERE status = 'queued' AND run_at <= now()) AS ready,
                count(*) FILTER (WHERE status = 'running' AND lease_expires_at < now()) AS expired,
                min(run_at) FILTER (WHERE status = 'queued' AND run_at <= now()) AS oldest
           FROM attestor.rekor_submission_queue
          WHERE status IN ('queued', 'running')",
    )
    .get_result(conn)
    .await?;
    Ok(Backlog {
        by_status,
        ready: extra.ready,
        expired_leases: extra.expired,
        oldest_ready_at: extra.oldest,
    })
}

#[derive(QueryableByName)]
struct TenantRow {
    #[diesel(sql_type = SqlUuid)]
    tenant_id: Uuid,
    #[diesel(sql_type = BigInt)]
    queued: i64,
    #[diesel(sql_type = BigInt)]
    ready: i64,
    #[diesel(sql_type = BigInt)]
    running: i64,
    #[diesel(sql_type = BigInt)]
    succeeded: i64,
    #[diesel(sql_type = BigInt)]
    dead: i64,
}

/// Backlog per tenant, every tenant with at least one job, ordered by
/// tenant id (worker connection).
pub async fn backlog_by_tenant(conn: &mut AsyncPgConnection) -> Result<Vec<TenantBacklog>> {
    let rows: Vec<TenantRow> = diesel::sql_query(
        "SELECT tenant_id,
                count(*) FILTER (WHERE status = 'queued') AS queued,
                count(*) FILTER (WHERE status = 'queued' AND run_at <= now()) AS ready,
                count(*) FILTER (WHERE status = 'running') AS running,
                count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
                count(*) FILTER (WHERE status = 'dead') AS dead
           FROM attestor.rekor_submission_queue
          GROUP BY tenant_id
          ORDER BY tenant_id",
    )
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| TenantBacklog {
            tenant_id: r.tenant_id,
            queued: r.queued,
            ready: r.ready,
            running: r.running,
            succeeded: r.succeeded,
            dead: r.dead,
        })
        .collect())
}
