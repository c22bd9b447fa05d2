//! Retention: finished jobs leave the queue table after a configurable time.
//!
//! Owns [`Retention`], [`purge`] and [`purge_on`]. A succeeded job's
//! lasting history is its `rekor_entries` row and that row's audit entry;
//! its queue row is operational state, kept for [`Retention::succeeded`]
//! after `finished_at` (for dashboards and the backlog view) and then
//! deleted. A dead job stays listable and re-queueable ([`crate::dead`]) for
//! [`Retention::dead`] and is then deleted too. The purge runs as
//! `attestor_worker` in small batches (`LIMIT` + `FOR UPDATE SKIP LOCKED`,
//! one short statement each), locking only finished rows, which no claim
//! ever locks, so it never blocks a claim. It must never delete a queued or
//! running job: the statement names only finished statuses, and the
//! worker's DELETE policy passes nothing else.

use std::time::Duration;

use diesel::sql_types::{Double, Int4};
use diesel_async::AsyncPgConnection;

use crate::citus::{by_tenant, StatusCount, Topology};
use crate::error::{QueueError, Result};

/// How long finished jobs stay in the queue table after they finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Succeeded jobs (their entry and its audit row are the history).
    pub succeeded: Duration,
    /// Dead jobs (listable and re-queueable until then).
    pub dead: Duration,
}

impl Default for Retention {
    /// Succeeded jobs one hour, dead jobs seven days.
    fn default() -> Self {
        Retention {
            succeeded: Duration::from_secs(3600),
            dead: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// What one [`purge`] call deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Succeeded jobs deleted.
    pub succeeded: u64,
    /// Dead jobs deleted.
    pub dead: u64,
}

impl Purged {
    /// Jobs deleted in all.
    pub fn total(&self) -> u64 {
        self.succeeded + self.dead
    }
}

/// The rows past their retention; `$1` succeeded retention, `$2` dead
/// retention (both seconds, float8).
const DOOMED_SQL: &str = "
      FROM attestor.rekor_submission_queue q
     WHERE q.finished_at IS NOT NULL
       AND ((q.status = 'succeeded' AND q.finished_at < now() - make_interval(secs => $1))
         OR (q.status = 'dead' AND q.finished_at < now() - make_interval(secs => $2)))";

/// The purge statement, at most `$3` (int) rows; `tenant`: only tenant
/// `$4`'s (a Citus coordinator, where the statement then runs on that
/// tenant's node and its `FOR UPDATE` is allowed).
fn purge_sql(tenant: bool) -> String {
    let only = if tenant { " AND q.tenant_id = $4" } else { "" };
    format!(
        "WITH doomed AS MATERIALIZED (
    SELECT q.tenant_id, q.id{DOOMED_SQL}{only}
     LIMIT $3
       FOR UPDATE SKIP LOCKED
)
DELETE FROM attestor.rekor_submission_queue q
 USING doomed d
 WHERE q.tenant_id = d.tenant_id AND q.id = d.id AND q.status IN ('succeeded', 'dead'){only}
RETURNING q.status"
    )
}

/// Delete at most `limit` finished jobs whose retention has ended (worker
/// connection, outside a transaction: one short statement that commits on
/// its own). Call it in a loop until it returns fewer than `limit`.
///
/// It asks the server for its [`Topology`] first (one query on every call);
/// [`purge_on`] takes the answer instead.
pub async fn purge(conn: &mut AsyncPgConnection, retention: &Retention, limit: u32) -> Result<Purged> {
    if limit == 0 {
        return Err(QueueError::InvalidInput("purge limit must be at least 1".into()));
    }
    let topology = Topology::probe(conn).await?;
    purge_on(conn, topology, retention, limit).await
}

/// [`purge`] on a server whose [`Topology`] the caller knows (no probe). On
/// a Citus coordinator, which refuses `FOR UPDATE` over several shards, one
/// read-only statement finds the tenants with such jobs and the purge runs
/// tenant by tenant (the loop is [`crate::citus`]'s).
pub async fn purge_on(
    conn: &mut AsyncPgConnection,
    topology: Topology,
    retention: &Retention,
    limit: u32,
) -> Result<Purged> {
    if limit == 0 {
        return Err(QueueError::InvalidInput("purge limit must be at least 1".into()));
    }
    let limit = i32::try_from(limit).unwrap_or(i32::MAX);
    let (succeeded, dead) = (retention.succeeded.as_secs_f64(), retention.dead.as_secs_f64());
    let count = match topology {
        Topology::Plain => {
            let mut count = StatusCount::default();
            let statement = diesel::sql_query(purge_sql(false))
                .into_boxed()
                .bind::<Double, _>(succeeded)
                .bind::<Double, _>(dead)
                .bind::<Int4, _>(limit);
            count.run(conn, statement).await?;
            count
        }
        Topology::Citus => {
            let tenants = diesel::sql_query(format!("SELECT q.tenant_id{DOOMED_SQL}\n GROUP BY q.tenant_id"))
                .into_boxed()
                .bind::<Double, _>(succeeded)
                .bind::<Double, _>(dead);
            let sql = purge_sql(true);
            by_tenant(conn, tenants, limit, |tenant, left| {
                diesel::sql_query(sql.as_str())
                    .into_boxed()
                    .bind::<Double, _>(succeeded)
                    .bind::<Double, _>(dead)
                    .bind::<Int4, _>(left)
                    .bind::<diesel::sql_types::Uuid, _>(tenant)
            })
            .await?
        }
    };
    Ok(Purged {
        succeeded: count.other,
        dead: count.dead,
    })
}
