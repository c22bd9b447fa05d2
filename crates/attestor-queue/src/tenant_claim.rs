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
//! 2. The tenants are taken in turn, as the one statement takes them: in
//!    tenant id order from just after the session setting
//!    `attestor.claim_cursor` (the last tenant the previous claim on this
//!    connection picked, or a random key on a connection's first claim),
//!    wrapping around; the first `ceil(batch / tenant_chunk)` are picked,
//!    and the cursor is set to the last of them ([`CURSOR_SQL`],
//!    [`SET_CURSOR_SQL`]: coordinator-local statements, no shard is
//!    touched). Each picked tenant gets an equal share `batch / #picked`
//!    (at least 1) of its oldest claimable jobs. So the claims of one
//!    connection serve every due tenant once per round, whatever its
//!    backlog, on either claim path.
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

/// The connection's claim cursor (NULL before its first claim). The same
/// setting as the one statement's, so the two claim paths share one turn
/// on a connection.
pub const CURSOR_SQL: &str =
    "SELECT nullif(current_setting('attestor.claim_cursor', true), '')::uuid AS cursor";

/// Move the connection's claim cursor to `$1` (session-wide, as the one
/// statement's `set_config(.., false)`; it carries no authority: it only
/// says where the next claim starts looking).
pub const SET_CURSOR_SQL: &str = "SELECT set_config('attestor.claim_cursor', $1::text, false) AS cursor";

#[derive(QueryableByName)]
struct CursorRow {
    #[diesel(sql_type = diesel::sql_types::Nullable<SqlUuid>)]
    cursor: Option<Uuid>,
}

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

/// The first `slots` of `tenants` in turn after `start`: tenant id order
/// from the first id greater than `start`, wrapping around to the lowest.
fn in_turn(mut tenants: Vec<TenantRow>, start: Uuid, slots: usize) -> Vec<TenantRow> {
    tenants.sort_unstable_by_key(|t| t.tenant_id);
    let after = tenants.partition_point(|t| t.tenant_id <= start);
    tenants.rotate_left(after);
    tenants.truncate(slots);
    tenants
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
    let CursorRow { cursor } = diesel::sql_query(CURSOR_SQL).get_result(conn).await?;
    let picked = in_turn(tenants, cursor.unwrap_or_else(Uuid::new_v4), slots);
    if let Some(last) = picked.last() {
        diesel::sql_query(SET_CURSOR_SQL)
            .bind::<Text, _>(last.tenant_id.to_string())
            .execute(conn)
            .await?;
    }
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
    use super::{in_turn, TenantRow};
    use chrono::Utc;
    use uuid::Uuid;

    fn ids(rows: &[TenantRow]) -> Vec<u128> {
        rows.iter().map(|t| t.tenant_id.as_u128()).collect()
    }

    fn rows(ids: &[u128]) -> Vec<TenantRow> {
        ids.iter()
            .map(|&i| TenantRow {
                tenant_id: Uuid::from_u128(i),
                head: Utc::now(),
            })
            .collect()
    }

    #[test]
    fn in_turn_starts_after_the_cursor_and_wraps_around() {
        let all = [50, 10, 40, 20, 30];
        // After 20: 30, 40, 50, then round to 10.
        assert_eq!(
            ids(&in_turn(rows(&all), Uuid::from_u128(20), 4)),
            [30, 40, 50, 10]
        );
        // A cursor between ids (its tenant has nothing due any more).
        assert_eq!(ids(&in_turn(rows(&all), Uuid::from_u128(35), 2)), [40, 50]);
        // Past the highest id: from the lowest.
        assert_eq!(ids(&in_turn(rows(&all), Uuid::from_u128(99), 3)), [10, 20, 30]);
        // More slots than tenants: each tenant once, none twice.
        assert_eq!(
            ids(&in_turn(rows(&all), Uuid::from_u128(0), 9)),
            [10, 20, 30, 40, 50]
        );
        assert!(in_turn(rows(&[]), Uuid::from_u128(1), 3).is_empty());
    }

    #[test]
    fn claims_in_turn_serve_every_tenant_once_per_round() {
        let all: Vec<u128> = (1..=7).map(|i| i * 1000).collect();
        let mut cursor = Uuid::from_u128(3500);
        let mut served = Vec::new();
        for _ in 0..14 {
            let picked = in_turn(rows(&all), cursor, 1);
            cursor = picked[0].tenant_id;
            served.push(cursor.as_u128());
        }
        let mut round: Vec<u128> = served[..7].to_vec();
        assert_eq!(round, [4000, 5000, 6000, 7000, 1000, 2000, 3000]);
        round.sort_unstable();
        assert_eq!(round, all);
        assert_eq!(served[7..], served[..7], "the second round repeats the first");
    }
}
