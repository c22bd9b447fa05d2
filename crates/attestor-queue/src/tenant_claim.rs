//! The claim by tenant group: the same fair, fenced claim as
//! [`mod@crate::claim`]'s one statement, as statements that each touch one
//! tenant, for a queue table distributed by `tenant_id` (Citus).
//!
//! Owns its crate-private `claim`, which [`crate::claim()`] runs when
//! [`crate::ClaimOptions::per_tenant`] is set or when Citus refuses the one
//! statement, and its SQL. Citus refuses the one statement: a recursive CTE
//! without a filter on the distribution column, `FOR UPDATE` across shards
//! and `gen_random_uuid()` inside an `UPDATE`. Here:
//!
//! 1. [`TENANTS_SQL`] finds the tenants with claimable jobs (queued, or
//!    running with an expired lease, and due) and each one's oldest
//!    `run_at`: one read-only `GROUP BY tenant_id`, which Citus runs on
//!    every shard in parallel; no row is locked. It reads every claimable
//!    row's index entry (the one statement's loose index scan reads one per
//!    tenant), which is why plain PostgreSQL keeps the one statement.
//! 2. The tenants are shuffled (random order, so each due tenant has the
//!    same chance of a slot when a batch is smaller than their number) and
//!    the first `ceil(batch / tenant_chunk)` are picked; each gets an equal
//!    share `batch / #picked` (at least 1) of its oldest claimable jobs.
//! 3. [`CLAIM_TENANT_SQL`] claims one tenant's share: every predicate names
//!    `tenant_id = $1`, so on Citus it is one shard's statement (its
//!    `FOR UPDATE SKIP LOCKED` and the `UPDATE` run there, and it commits on
//!    that node alone, no two-phase commit). The fencing token is
//!    `md5(nonce || id)::uuid`, an immutable function of a random nonce the
//!    client draws per claim ([`Uuid::new_v4`]) and the job id: fresh for
//!    every claim of every job, with no volatile function in the `UPDATE`.
//!    A reclaimed job whose attempts are exhausted is dead-lettered instead,
//!    as in the one statement. The `UPDATE` reads the time from its CTE
//!    (`c.at`, `c.expires`: the statement's `now()`, and the lease's end,
//!    `timestamptz + interval` being stable too): Citus refuses a
//!    non-immutable function inside a `CASE` of an `UPDATE`.
//! 4. The rest of the batch, if any, comes from the picked tenant whose head
//!    job has waited longest (a lone big backlog drains at full batch size).
//!
//! Each statement commits on its own (the connection is outside any
//! transaction), so the row locks last one statement; the lease protects a
//! job after that. Two claimers that found the same tenants skip each
//! other's rows. Must never lock rows in the tenant discovery, or run a
//! statement on the queue table that does not name its tenant.

use chrono::{DateTime, Utc};
use diesel::sql_types::{Bool, Bytea, Double, Int4, Text, Timestamptz, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::claim::{ClaimOptions, ClaimedJob, Lease};
use crate::error::Result;

/// The tenants with claimable jobs and each one's oldest claimable `run_at`.
pub const TENANTS_SQL: &str = "\
SELECT q.tenant_id, min(q.run_at) AS head
  FROM attestor.rekor_submission_queue q
 WHERE q.finished_at IS NULL AND q.run_at <= now()
   AND (q.status = 'queued' OR q.lease_expires_at < now())
 GROUP BY q.tenant_id";

/// One tenant's claim: `$1` tenant, `$2` at most this many jobs, `$3` lease
/// in seconds (float8), `$4` worker id, `$5` the claim's nonce (text).
/// Returns the dead-lettered rows too (`status = 'dead'`), which count
/// against the batch as in the one statement.
pub const CLAIM_TENANT_SQL: &str = "\
WITH chosen AS MATERIALIZED (
    SELECT q.tenant_id, q.id, q.status = 'running' AS reclaimed, now() AS at,
           now() + make_interval(secs => $3) AS expires
      FROM attestor.rekor_submission_queue q
     WHERE q.tenant_id = $1 AND q.finished_at IS NULL AND q.run_at <= now()
       AND (q.status = 'queued' OR q.lease_expires_at < now())
     ORDER BY q.run_at
     LIMIT $2
       FOR UPDATE SKIP LOCKED
)
UPDATE attestor.rekor_submission_queue q
   SET status = CASE WHEN c.reclaimed AND q.attempts >= q.max_attempts THEN 'dead' ELSE 'running' END,
       attempts = CASE WHEN c.reclaimed AND q.attempts >= q.max_attempts THEN q.attempts ELSE q.attempts + 1 END,
       lease_expires_at = CASE WHEN c.reclaimed AND q.attempts >= q.max_attempts THEN NULL
                               ELSE c.expires END,
       locked_by = CASE WHEN c.reclaimed AND q.attempts >= q.max_attempts THEN NULL ELSE $4 END,
       attempt_token = CASE WHEN c.reclaimed AND q.attempts >= q.max_attempts THEN NULL
                            ELSE md5($5 || q.id::text)::uuid END,
       finished_at = CASE WHEN c.reclaimed AND q.attempts >= q.max_attempts THEN c.at END,
       last_error = CASE WHEN c.reclaimed AND q.attempts >= q.max_attempts
                         THEN 'lease expired on the last attempt (worker ' || coalesce(q.locked_by, '?') || ')'
                         ELSE q.last_error END
  FROM chosen c
 WHERE q.tenant_id = $1 AND c.tenant_id = $1 AND q.id = c.id
RETURNING q.tenant_id, q.id, q.envelope_id, q.bundle_sha256, q.status, q.attempts, q.max_attempts,
          q.lease_expires_at, q.attempt_token, q.created_at, c.reclaimed";

#[derive(QueryableByName)]
struct TenantRow {
    #[diesel(sql_type = SqlUuid)]
    tenant_id: Uuid,
    #[diesel(sql_type = Timestamptz)]
    head: DateTime<Utc>,
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = SqlUuid)]
    tenant_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    envelope_id: Uuid,
    #[diesel(sql_type = Bytea)]
    bundle_sha256: Vec<u8>,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Int4)]
    attempts: i32,
    #[diesel(sql_type = Int4)]
    max_attempts: i32,
    #[diesel(sql_type = diesel::sql_types::Nullable<Timestamptz>)]
    lease_expires_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = diesel::sql_types::Nullable<SqlUuid>)]
    attempt_token: Option<Uuid>,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Bool)]
    reclaimed: bool,
}

/// A uniformly random permutation of `items` (sorted by random keys).
fn shuffle<T>(items: Vec<T>) -> Vec<T> {
    let mut keyed: Vec<(u128, T)> = items.into_iter().map(|t| (Uuid::new_v4().as_u128(), t)).collect();
    keyed.sort_unstable_by_key(|(k, _)| *k);
    keyed.into_iter().map(|(_, t)| t).collect()
}

/// See the module docs; `batch` is the validated `options.batch`.
pub(crate) async fn claim(
    conn: &mut AsyncPgConnection,
    options: &ClaimOptions,
    batch: i32,
) -> Result<Vec<ClaimedJob>> {
    let tenants: Vec<TenantRow> = diesel::sql_query(TENANTS_SQL).load(conn).await?;
    if tenants.is_empty() {
        return Ok(Vec::new());
    }
    let chunk = i32::try_from(options.tenant_chunk.max(1))
        .unwrap_or(i32::MAX)
        .min(batch);
    let slots = usize::try_from((batch + chunk - 1) / chunk).unwrap_or(usize::MAX);
    let mut picked = shuffle(tenants);
    picked.truncate(slots);
    let share = (batch / i32::try_from(picked.len()).unwrap_or(i32::MAX)).max(1);
    let nonce = Uuid::new_v4().to_string();
    let mut taken = 0;
    let mut jobs = Vec::new();
    for t in &picked {
        let rows = claim_tenant(conn, options, &nonce, t.tenant_id, share.min(batch - taken)).await?;
        taken += i32::try_from(rows.len()).unwrap_or(i32::MAX);
        jobs.extend(rows);
    }
    if let Some(oldest) = picked.iter().min_by_key(|t| t.head) {
        if taken < batch {
            let rows = claim_tenant(conn, options, &nonce, oldest.tenant_id, batch - taken).await?;
            jobs.extend(rows);
        }
    }
    Ok(jobs
        .into_iter()
        .filter_map(|r| {
            let (Some(token), Some(expires_at)) = (r.attempt_token, r.lease_expires_at) else {
                return None;
            };
            (r.status == "running").then_some(ClaimedJob {
                lease: Lease {
                    tenant_id: r.tenant_id,
                    job_id: r.id,
                    token,
                    expires_at,
                },
                envelope_id: r.envelope_id,
                bundle_sha256: r.bundle_sha256,
                attempt: r.attempts,
                max_attempts: r.max_attempts,
                created_at: r.created_at,
                reclaimed: r.reclaimed,
            })
        })
        .collect())
}

async fn claim_tenant(
    conn: &mut AsyncPgConnection,
    options: &ClaimOptions,
    nonce: &str,
    tenant: Uuid,
    limit: i32,
) -> Result<Vec<Row>> {
    if limit <= 0 {
        return Ok(Vec::new());
    }
    Ok(diesel::sql_query(CLAIM_TENANT_SQL)
        .bind::<SqlUuid, _>(tenant)
        .bind::<Int4, _>(limit)
        .bind::<Double, _>(options.lease.as_secs_f64())
        .bind::<Text, _>(&options.worker_id)
        .bind::<Text, _>(nonce)
        .load(conn)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::shuffle;

    #[test]
    fn shuffle_permutes_and_moves_every_position() {
        let items: Vec<u32> = (0..8).collect();
        let mut first_seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let s = shuffle(items.clone());
            let mut sorted = s.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, items);
            first_seen.insert(s[0]);
        }
        // 200 draws of the first of 8: every item comes first at some point.
        assert_eq!(first_seen.len(), 8);
    }
}
