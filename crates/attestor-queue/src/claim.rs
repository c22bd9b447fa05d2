//! Claiming a batch of due jobs across tenants, fairly, in one statement.
//!
//! Owns [`claim`] and the claim SQL ([`CLAIM_SQL`]), the [`Lease`] /
//! [`ClaimedJob`] values it hands out. A claim runs as `attestor_worker`
//! (cross-tenant, through the worker policy on the queue table only) and
//! touches no other table. It must never read or write tenant data other
//! than queue rows, never write `result`/`rekor_entry_id` (completion is the
//! tenant transaction's job, see [`crate::lease::complete`]), and never hand
//! out a job without a fresh fencing token.
//!
//! # How the statement works
//!
//! Every CTE that picks rows is `MATERIALIZED` and locks with
//! `FOR UPDATE SKIP LOCKED`, so the planner cannot re-run it inside the
//! UPDATE's join and `LIMIT` really bounds the batch; concurrent claimers
//! skip each other's rows instead of waiting.
//!
//! All of it walks one partial index, `(tenant_id, run_at) WHERE
//! finished_at IS NULL`: the unfinished jobs, queued and running. No index
//! names `status` or a lease column, so the claim's UPDATE changes no
//! indexed column and is a HOT update (no index entry written) when the
//! page has room.
//!
//! A claim does not visit every tenant: it goes round the tenants from
//! where the session's previous claim stopped and stops as soon as it has
//! found the tenants it serves, so its cost follows the batch, not the
//! number of tenants.
//!
//! 1. `walk`: a loose index scan (a recursive CTE over the claim index)
//!    that goes round the tenants with unfinished jobs. Its first row is
//!    the start key, not a tenant: the session setting
//!    `attestor.claim_cursor`, the last tenant the previous claim on this
//!    connection picked (step 3 stores it), or a random key on a
//!    connection's first claim. Each further row is the next tenant id
//!    after the previous row's, or the lowest one after the highest (the
//!    walk wraps around); the walk ends when it comes back to the first
//!    tenant it found. One index probe per tenant visited, not one per job:
//!    the previous row's id is a parameter of the probe, so
//!    `tenant_id > id` is an index condition, and the `coalesce` of "next"
//!    and "lowest" sits in an `OFFSET 0` sub-select so that it is computed
//!    once per step (inlined, it ran once for the stop test and again for
//!    the output). The walk runs only as far as step 2 reads it.
//! 2. `picked`: the first `ceil(batch / tenant_chunk)` tenants of the walk
//!    that have a *claimable* job (queued, or running with an expired
//!    lease: the lease reclaim is part of the claim) with
//!    `run_at <= now()`, and that job's `run_at` (`head`). A running job
//!    keeps the `run_at` it was claimed at, never in the future, so the
//!    probe passes at most the tenant's jobs in flight before it finds one;
//!    a tenant with nothing due is passed over. Once enough are found the
//!    walk stops; with fewer due tenants than that it goes once round.
//! 3. `share`: each picked tenant's equal share `batch / #picked` (at least
//!    1), and the session's cursor set to the last picked tenant of the walk
//!    (`set_config(.., false)`: it outlives the statement and is undone if
//!    the statement fails). So the claims of one connection serve the due
//!    tenants in turn, in tenant id order: every due tenant is picked once
//!    per round, whatever its backlog, and waits at most
//!    `ceil(#due tenants / #picked)` claims of a connection. Only a
//!    connection's first round starts at a random key (which favours the
//!    tenants after wide gaps between tenant ids, for that round only).
//! 4. `fair`: each picked tenant gets its share of its oldest claimable
//!    jobs. A tenant with 100k ready jobs gets the same share as one with
//!    10. Expired leases come first within a tenant (their `run_at` is
//!    older than its queued jobs').
//! 5. `filler`: the rest of the batch, if any, comes from the picked tenant
//!    whose head job has waited longest, so a lone big backlog still drains
//!    at full batch size.
//! 6. `claimed`: one UPDATE sets status `running`, `attempts + 1`, a lease,
//!    `locked_by` and a fresh `attempt_token = gen_random_uuid()`; a
//!    reclaimed job whose attempts are exhausted is dead-lettered instead
//!    (not returned). It sets `updated_at = now()` itself, the value the
//!    table's `set_updated_at` trigger would store, so the trigger's
//!    condition (`WHEN (NEW.updated_at IS DISTINCT FROM now())`) skips the
//!    PL/pgSQL call for its rows.
//!
//! # Prepared once per connection
//!
//! [`claim`] runs the statement through [`crate::prepared::Prepared`], so
//! diesel-async prepares it on a connection's first claim and later claims
//! send only the values: no parse, no rewrite, no Describe round trip. The
//! plan is left to the session's `plan_cache_mode` (`auto` by default):
//! the first five runs get custom plans, after that PostgreSQL keeps the
//! generic plan when its estimated cost is not worse than the custom ones'.
//! That is a deliberate choice: measured on 100 tenants × 1,000 jobs, B =
//! 100, the generic plan (`force_generic_plan`) has the same shape as the
//! custom one (the same index scans on the claim index, the same nested
//! loops, `LIMIT`s evaluated at run time) and runs as fast, without the
//! ~1.2 ms of planning per claim; when `auto` keeps custom plans instead,
//! a claim costs what it cost unprepared, never a worse plan. The values
//! change nothing in the plan's shape (batch, lease, worker id and chunk
//! only feed `LIMIT`s and the UPDATE's new values), which is why a plan
//! chosen without them is as good; the walk's start is the session
//! setting, read at run time, not a value of the plan either. Checked
//! again for the bounded walk (`EXPLAIN ANALYZE`, 100 tenants × 1,000
//! jobs, B = 100, chunk 10): the same shape in both plans, the walk's
//! probes index conditions on run-time values; the walk and `picked` took
//! 0.3 ms in either plan (11 rows: the start key and 10 tenants), where
//! the walk over all 100 tenants and their `due` probes took 1.2 ms.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::sql_types::{Bool, Bytea, Double, Int4, Text, Timestamptz, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::error::{QueueError, Result};
use crate::prepared::{Bind, Prepared};

/// The right to work on one job: valid while `token` is the job's current
/// attempt token. Every state change of a claimed job is fenced by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease {
    /// Tenant of the job.
    pub tenant_id: Uuid,
    /// The job.
    pub job_id: Uuid,
    /// Fencing token of this claim.
    pub token: Uuid,
    /// When the lease runs out unless extended by a heartbeat.
    pub expires_at: DateTime<Utc>,
}

/// A job handed out by [`claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedJob {
    /// The lease (and fencing token) of this claim.
    pub lease: Lease,
    /// The envelope to submit.
    pub envelope_id: Uuid,
    /// The job's idempotency key.
    pub bundle_sha256: Vec<u8>,
    /// This attempt's number (1 = first try).
    pub attempt: i32,
    /// Attempts before the job is dead-lettered.
    pub max_attempts: i32,
    /// When the job was enqueued.
    pub created_at: DateTime<Utc>,
    /// True when the job was taken over from an expired lease.
    pub reclaimed: bool,
}

impl ClaimedJob {
    /// Tenant of the job.
    pub fn tenant_id(&self) -> Uuid {
        self.lease.tenant_id
    }

    /// The job id.
    pub fn job_id(&self) -> Uuid {
        self.lease.job_id
    }
}

/// Parameters of one claim.
#[derive(Debug, Clone)]
pub struct ClaimOptions {
    /// At most this many jobs (>= 1).
    pub batch: u32,
    /// Lease length given to each claimed job.
    pub lease: Duration,
    /// Recorded in `locked_by` (host/process/worker name).
    pub worker_id: String,
    /// Jobs per tenant a claim aims for when many tenants are due (>= 1):
    /// a claim serves the next `ceil(batch / tenant_chunk)` due tenants in
    /// turn (see the module docs). 1 (the default) spreads a batch over as
    /// many tenants as possible (lowest latency for small tenants); larger
    /// values give each tenant's jobs in a batch a chance to complete in one
    /// tenant transaction (higher throughput), at the price of coarser
    /// rotation.
    pub tenant_chunk: u32,
    /// Claim by tenant group ([`mod@crate::tenant_claim`]): one statement
    /// per picked tenant, each naming its tenant, instead of the one
    /// statement. For a queue table distributed by `tenant_id` (Citus),
    /// which refuses the one statement; same fairness and fencing. Left
    /// `false` there, each claim first has the one statement refused
    /// (while Citus plans it: nothing is locked) and then claims by tenant
    /// group.
    pub per_tenant: bool,
}

impl ClaimOptions {
    /// `batch` jobs with `lease`, claimed as `worker_id`.
    pub fn new(worker_id: impl Into<String>, batch: u32, lease: Duration) -> Self {
        ClaimOptions {
            batch,
            lease,
            worker_id: worker_id.into(),
            tenant_chunk: 1,
            per_tenant: false,
        }
    }

    /// Set [`Self::per_tenant`].
    pub fn per_tenant(mut self, per_tenant: bool) -> Self {
        self.per_tenant = per_tenant;
        self
    }

    /// Set [`Self::tenant_chunk`].
    pub fn tenant_chunk(mut self, chunk: u32) -> Self {
        self.tenant_chunk = chunk.max(1);
        self
    }
}

/// The claim statement; `$1` batch size (int), `$2` lease in seconds
/// (float8), `$3` worker id (text), `$4` tenant chunk (int). Exposed for
/// the benchmark baseline.
pub const CLAIM_SQL: &str = "\
WITH RECURSIVE
walk AS (
    SELECT coalesce(nullif(current_setting('attestor.claim_cursor', true), '')::uuid, gen_random_uuid())
               AS tenant_id,
           NULL::uuid AS first, 0 AS step
    UNION ALL
    SELECT n.tenant_id, coalesce(w.first, n.tenant_id), w.step + 1
      FROM walk w
     CROSS JOIN LATERAL (
           SELECT coalesce(
                  (SELECT q.tenant_id
                     FROM attestor.rekor_submission_queue q
                    WHERE q.finished_at IS NULL AND q.tenant_id > w.tenant_id
                    ORDER BY q.tenant_id
                    LIMIT 1),
                  (SELECT q.tenant_id
                     FROM attestor.rekor_submission_queue q
                    WHERE q.finished_at IS NULL
                    ORDER BY q.tenant_id
                    LIMIT 1)) AS tenant_id
            OFFSET 0) n
     WHERE n.tenant_id IS NOT NULL AND n.tenant_id IS DISTINCT FROM w.first
),
picked AS MATERIALIZED (
    SELECT w.tenant_id, w.step, h.run_at AS head
      FROM walk w
     CROSS JOIN LATERAL (
           SELECT q.run_at
             FROM attestor.rekor_submission_queue q
            WHERE q.tenant_id = w.tenant_id AND q.finished_at IS NULL AND q.run_at <= now()
              AND (q.status = 'queued' OR q.lease_expires_at < now())
            ORDER BY q.run_at
            LIMIT 1) h
     WHERE w.step > 0
     LIMIT ceil($1::numeric / greatest(least($4, $1), 1))::int
),
share AS MATERIALIZED (
    SELECT CASE WHEN count(*) = 0 THEN 0 ELSE greatest($1 / count(*), 1) END::int AS per_tenant,
           set_config('attestor.claim_cursor',
                      (SELECT p.tenant_id FROM picked p ORDER BY p.step DESC LIMIT 1)::text, false) AS cursor
      FROM picked
),
fair AS MATERIALIZED (
    SELECT j.tenant_id, j.id, j.reclaimed
      FROM picked p
     CROSS JOIN LATERAL (
           SELECT q.tenant_id, q.id, q.status = 'running' AS reclaimed
             FROM attestor.rekor_submission_queue q
            WHERE q.tenant_id = p.tenant_id AND q.finished_at IS NULL AND q.run_at <= now()
              AND (q.status = 'queued' OR q.lease_expires_at < now())
            ORDER BY q.run_at
            LIMIT (SELECT per_tenant FROM share)
              FOR UPDATE SKIP LOCKED) j
),
filler AS MATERIALIZED (
    SELECT j.tenant_id, j.id, j.reclaimed
      FROM (SELECT p.tenant_id FROM picked p ORDER BY p.head LIMIT 1) p
     CROSS JOIN LATERAL (
           SELECT q.tenant_id, q.id, q.status = 'running' AS reclaimed
             FROM attestor.rekor_submission_queue q
            WHERE q.tenant_id = p.tenant_id AND q.finished_at IS NULL AND q.run_at <= now()
              AND (q.status = 'queued' OR q.lease_expires_at < now())
              AND NOT EXISTS (SELECT 1 FROM fair f WHERE f.tenant_id = q.tenant_id AND f.id = q.id)
            ORDER BY q.run_at
            LIMIT greatest($1 - (SELECT count(*) FROM fair), 0)
              FOR UPDATE SKIP LOCKED) j
),
chosen AS MATERIALIZED (
    SELECT f.tenant_id, f.id, f.reclaimed FROM fair f
    UNION ALL
    SELECT f.tenant_id, f.id, f.reclaimed FROM filler f
),
claimed AS (
    UPDATE attestor.rekor_submission_queue q
       SET updated_at = now(),
           status = CASE WHEN c.reclaimed AND q.attempts >= q.max_attempts THEN 'dead' ELSE 'running' END,
           attempts = CASE WHEN c.reclaimed AND q.attempts >= q.max_attempts THEN q.attempts ELSE q.attempts + 1 END,
           lease_expires_at = CASE WHEN c.reclaimed AND q.attempts >= q.max_attempts THEN NULL
                                   ELSE now() + make_interval(secs => $2) END,
           locked_by = CASE WHEN c.reclaimed AND q.attempts >= q.max_attempts THEN NULL ELSE $3 END,
           attempt_token = CASE WHEN c.reclaimed AND q.attempts >= q.max_attempts THEN NULL
                                ELSE gen_random_uuid() END,
           finished_at = CASE WHEN c.reclaimed AND q.attempts >= q.max_attempts THEN now() END,
           last_error = CASE WHEN c.reclaimed AND q.attempts >= q.max_attempts
                             THEN 'lease expired on the last attempt (worker ' || coalesce(q.locked_by, '?') || ')'
                             ELSE q.last_error END
      FROM chosen c
     WHERE q.tenant_id = c.tenant_id AND q.id = c.id
 RETURNING q.tenant_id, q.id, q.envelope_id, q.bundle_sha256, q.status, q.attempts, q.max_attempts,
           q.lease_expires_at, q.attempt_token, q.created_at, c.reclaimed
)
SELECT c.tenant_id, c.id, c.envelope_id, c.bundle_sha256, c.attempts, c.max_attempts,
       c.lease_expires_at, c.attempt_token, c.created_at, c.reclaimed
  FROM claimed c
 WHERE c.status = 'running'";

#[derive(QueryableByName)]
struct ClaimRow {
    #[diesel(sql_type = SqlUuid)]
    tenant_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    envelope_id: Uuid,
    #[diesel(sql_type = Bytea)]
    bundle_sha256: Vec<u8>,
    #[diesel(sql_type = Int4)]
    attempts: i32,
    #[diesel(sql_type = Int4)]
    max_attempts: i32,
    #[diesel(sql_type = Timestamptz)]
    lease_expires_at: DateTime<Utc>,
    #[diesel(sql_type = SqlUuid)]
    attempt_token: Uuid,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Bool)]
    reclaimed: bool,
}

/// Claim up to `options.batch` due jobs (queued with `run_at <= now()`, or
/// running with an expired lease) across all tenants, fairly; see the
/// module docs. `conn` must be an `attestor_worker` connection outside any
/// transaction (the statement commits on its own, so the row locks are
/// held only for its duration; the lease is what protects the job after).
///
/// Returns fewer jobs than asked when fewer are due or some are locked by
/// concurrent claimers; never more.
pub async fn claim(conn: &mut AsyncPgConnection, options: &ClaimOptions) -> Result<Vec<ClaimedJob>> {
    if options.batch == 0 {
        return Err(QueueError::InvalidInput("batch must be at least 1".into()));
    }
    if options.lease.is_zero() {
        return Err(QueueError::InvalidInput("lease must be positive".into()));
    }
    let batch = i32::try_from(options.batch)
        .map_err(|_| QueueError::InvalidInput(format!("batch {} too large", options.batch)))?;
    if options.per_tenant {
        return crate::tenant_claim::claim(conn, options, batch).await;
    }
    let rows: Vec<ClaimRow> = match Prepared::new(
        CLAIM_SQL,
        (
            Bind::<Int4, _>::new(batch),
            Bind::<Double, _>::new(options.lease.as_secs_f64()),
            Bind::<Text, _>::new(options.worker_id.as_str()),
            Bind::<Int4, _>::new(i32::try_from(options.tenant_chunk.max(1)).unwrap_or(i32::MAX)),
        ),
    )
    .load(conn)
    .await
    {
        Ok(rows) => rows,
        Err(e) if refused_by_citus(&e) => return crate::tenant_claim::claim(conn, options, batch).await,
        Err(e) => return Err(e.into()),
    };
    Ok(rows
        .into_iter()
        .map(|r| ClaimedJob {
            lease: Lease {
                tenant_id: r.tenant_id,
                job_id: r.id,
                token: r.attempt_token,
                expires_at: r.lease_expires_at,
            },
            envelope_id: r.envelope_id,
            bundle_sha256: r.bundle_sha256,
            attempt: r.attempts,
            max_attempts: r.max_attempts,
            created_at: r.created_at,
            reclaimed: r.reclaimed,
        })
        .collect())
}

/// Whether `e` is Citus's refusal of the one statement (a recursive CTE
/// without a filter on the distribution column): the queue table is
/// distributed, and the claim by tenant group is the one that runs there.
/// Citus refuses it while planning, before anything is locked or written.
fn refused_by_citus(e: &diesel::result::Error) -> bool {
    matches!(e, diesel::result::Error::DatabaseError(_, info)
        if info.message().contains("recursive CTEs are only supported when they contain a filter"))
}
