//! Everything a lease holder may do with its job: heartbeat, complete,
//! fail, release; and the reclaim of expired leases.
//!
//! Owns the fencing rule: every state change names the job *and* its
//! current `attempt_token`, in the same statement that changes it, so a
//! worker whose lease expired and whose job was re-claimed gets
//! [`QueueError::LeaseLost`] and changes nothing. Heartbeat, fail, release
//! and reclaim run as `attestor_worker` and touch only the queue's
//! claim/lease/retry columns. [`complete`] runs in the job's *tenant*
//! transaction as `attestor_app` (through the guard), because only that
//! role may write the Rekor entry and the job's `result`; it takes only a
//! [`VerifiedTlogEntry`] (an entry that verified against a trusted root) and
//! writes the verifying key's SHA-256 and the evidence with it. Nothing here
//! may ever change a job without checking its token (reclaim excepted,
//! which only acts on expired leases and always rotates the token away), or
//! store an entry that did not verify.

use std::time::Duration;

use attestor_transparency::VerifiedTlogEntry;
use chrono::{DateTime, Utc};
use diesel::sql_types::{
    Array, BigInt, Bool, Bytea, Double, Int4, Int8, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::citus::{by_tenant, StatusCount, Topology};
use crate::claim::Lease;
use crate::error::{QueueError, Result};

pub(crate) fn lost(lease: &Lease) -> QueueError {
    QueueError::LeaseLost {
        tenant_id: lease.tenant_id,
        job_id: lease.job_id,
    }
}

#[derive(QueryableByName)]
struct ExpiresRow {
    #[diesel(sql_type = Timestamptz)]
    lease_expires_at: DateTime<Utc>,
}

/// Extend the lease to `now() + lease_for`, only while `lease.token` is
/// still the job's token (worker connection). Returns the updated lease.
pub async fn heartbeat(conn: &mut AsyncPgConnection, lease: &Lease, lease_for: Duration) -> Result<Lease> {
    let rows: Vec<ExpiresRow> = diesel::sql_query(
        "UPDATE attestor.rekor_submission_queue q
            SET lease_expires_at = now() + make_interval(secs => $4)
          WHERE q.tenant_id = $1 AND q.id = $2 AND q.attempt_token = $3 AND q.status = 'running'
      RETURNING q.lease_expires_at",
    )
    .bind::<SqlUuid, _>(lease.tenant_id)
    .bind::<SqlUuid, _>(lease.job_id)
    .bind::<SqlUuid, _>(lease.token)
    .bind::<Double, _>(lease_for.as_secs_f64())
    .load(conn)
    .await?;
    match rows.into_iter().next() {
        Some(r) => Ok(Lease {
            expires_at: r.lease_expires_at,
            ..*lease
        }),
        None => Err(lost(lease)),
    }
}

/// How a failed attempt should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Try again after `delay` (dead-letters anyway when attempts are exhausted).
    Retry {
        /// Backoff before the next attempt (see [`crate::backoff::Backoff`]).
        delay: Duration,
    },
    /// Do not retry: dead-letter now.
    Permanent,
}

/// What [`fail`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// Back in the queue, due at `run_at`.
    Retrying {
        /// When the next attempt is due.
        run_at: DateTime<Utc>,
        /// Attempts made so far.
        attempts: i32,
    },
    /// Dead-lettered (permanent failure or attempts exhausted).
    Dead {
        /// Attempts made.
        attempts: i32,
    },
}

#[derive(QueryableByName)]
struct FailRow {
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Timestamptz)]
    run_at: DateTime<Utc>,
    #[diesel(sql_type = Int4)]
    attempts: i32,
}

/// Record a failed attempt (worker connection): back to `queued` after the
/// backoff, or `dead` when `failure` is permanent or the attempts are
/// exhausted; `last_error` keeps `error`. Fenced by the token.
///
/// The statement's times come from its CTE, which also locks the row:
/// Citus refuses a non-immutable function (`now()`) inside a `CASE` of an
/// `UPDATE`, and a column of a CTE is a value.
pub async fn fail(
    conn: &mut AsyncPgConnection,
    lease: &Lease,
    error: &str,
    failure: Failure,
) -> Result<FailOutcome> {
    let (permanent, delay) = match failure {
        Failure::Retry { delay } => (false, delay),
        Failure::Permanent => (true, Duration::ZERO),
    };
    let rows: Vec<FailRow> = diesel::sql_query(
        "WITH t AS MATERIALIZED (
             SELECT q.id, now() AS at, now() + make_interval(secs => $5) AS retry_at
               FROM attestor.rekor_submission_queue q
              WHERE q.tenant_id = $1 AND q.id = $2 AND q.attempt_token = $3 AND q.status = 'running'
                FOR UPDATE)
         UPDATE attestor.rekor_submission_queue q
            SET status = CASE WHEN $4 OR q.attempts >= q.max_attempts THEN 'dead' ELSE 'queued' END,
                run_at = CASE WHEN $4 OR q.attempts >= q.max_attempts THEN q.run_at ELSE t.retry_at END,
                finished_at = CASE WHEN $4 OR q.attempts >= q.max_attempts THEN t.at END,
                last_error = $6,
                lease_expires_at = NULL,
                locked_by = NULL,
                attempt_token = NULL
           FROM t
          WHERE q.tenant_id = $1 AND q.id = t.id
      RETURNING q.status, q.run_at, q.attempts",
    )
    .bind::<SqlUuid, _>(lease.tenant_id)
    .bind::<SqlUuid, _>(lease.job_id)
    .bind::<SqlUuid, _>(lease.token)
    .bind::<Bool, _>(permanent)
    .bind::<Double, _>(delay.as_secs_f64())
    .bind::<Text, _>(truncate(error, 4000))
    .load(conn)
    .await?;
    match rows.into_iter().next() {
        Some(r) if r.status == "dead" => Ok(FailOutcome::Dead { attempts: r.attempts }),
        Some(r) => Ok(FailOutcome::Retrying {
            run_at: r.run_at,
            attempts: r.attempts,
        }),
        None => Err(lost(lease)),
    }
}

/// Give the job back without counting the attempt (graceful shutdown):
/// `queued`, `attempts - 1`, due at once (its `run_at` was due when it was
/// claimed and stays, so the job keeps its place; the update changes no
/// indexed column and is HOT). Fenced by the token.
pub async fn release(conn: &mut AsyncPgConnection, lease: &Lease) -> Result<()> {
    let n = diesel::sql_query(
        "UPDATE attestor.rekor_submission_queue q
            SET status = 'queued',
                attempts = greatest(q.attempts - 1, 0),
                lease_expires_at = NULL,
                locked_by = NULL,
                attempt_token = NULL
          WHERE q.tenant_id = $1 AND q.id = $2 AND q.attempt_token = $3 AND q.status = 'running'",
    )
    .bind::<SqlUuid, _>(lease.tenant_id)
    .bind::<SqlUuid, _>(lease.job_id)
    .bind::<SqlUuid, _>(lease.token)
    .execute(conn)
    .await?;
    if n == 1 {
        Ok(())
    } else {
        Err(lost(lease))
    }
}

/// What [`reclaim_expired`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reclaimed {
    /// Put back in the queue, due now.
    pub requeued: u64,
    /// Dead-lettered because their attempts were exhausted.
    pub dead: u64,
}

/// The tenants with expired leases, the oldest expiry first (read-only:
/// Citus runs it on every shard; no row is locked).
const EXPIRED_TENANTS_SQL: &str = "\
SELECT q.tenant_id
  FROM attestor.rekor_submission_queue q
 WHERE q.finished_at IS NULL AND q.run_at <= now()
   AND q.status = 'running' AND q.lease_expires_at < now()
 GROUP BY q.tenant_id
 ORDER BY min(q.lease_expires_at)";

/// The reclaim's `UPDATE`, over the rows of a CTE `e (tenant_id, id, at)`
/// that locked them; `at` is the statement's `now()`, read from the CTE
/// (Citus refuses `now()` inside a `CASE` of an `UPDATE`).
const RECLAIM_UPDATE_SQL: &str = "
UPDATE attestor.rekor_submission_queue q
   SET status = CASE WHEN q.attempts >= q.max_attempts THEN 'dead' ELSE 'queued' END,
       run_at = e.at,
       finished_at = CASE WHEN q.attempts >= q.max_attempts THEN e.at END,
       last_error = coalesce(q.last_error || '; ', '')
                    || 'lease expired (worker ' || coalesce(q.locked_by, '?') || ')',
       lease_expires_at = NULL,
       locked_by = NULL,
       attempt_token = NULL
  FROM e
 WHERE q.tenant_id = e.tenant_id AND q.id = e.id";

/// The expired leases to reclaim; `$1` limit, and `$2` the one tenant in
/// the by-tenant form.
const RECLAIM_PICK_SQL: &str = "\
WITH e AS MATERIALIZED (
    SELECT q.tenant_id, q.id, now() AS at
      FROM attestor.rekor_submission_queue q
     WHERE q.finished_at IS NULL AND q.run_at <= now()
       AND q.status = 'running' AND q.lease_expires_at < now()";

/// Put up to `limit` jobs whose lease expired back into the queue (or
/// dead-letter them when attempts are exhausted), rotating their token away
/// so the stale holder is fenced off (worker connection). [`mod@crate::claim`]
/// does this by itself, tenant by tenant; this is for operators and
/// maintenance loops. No index is keyed by the lease (a claim and a
/// heartbeat would then not be HOT updates): it reads the claim index's
/// unfinished rows, so it costs a scan of the backlog.
///
/// It asks the server for its [`Topology`] first (one query on every call);
/// [`reclaim_expired_on`] takes the answer instead.
pub async fn reclaim_expired(conn: &mut AsyncPgConnection, limit: u32) -> Result<Reclaimed> {
    let topology = Topology::probe(conn).await?;
    reclaim_expired_on(conn, topology, limit).await
}

/// [`reclaim_expired`] on a server whose [`Topology`] the caller knows
/// (no probe). On plain PostgreSQL it is one statement, the oldest expiries
/// first. On a Citus coordinator, which refuses `FOR UPDATE` over several
/// shards, it is one read-only statement finding the tenants with expired
/// leases, then one statement per tenant (each naming its tenant, so it
/// runs on that tenant's shard), tenants with the oldest expiry first,
/// until `limit` jobs are reclaimed (the loop is [`crate::citus`]'s).
pub async fn reclaim_expired_on(
    conn: &mut AsyncPgConnection,
    topology: Topology,
    limit: u32,
) -> Result<Reclaimed> {
    let limit = i32::try_from(limit).unwrap_or(i32::MAX);
    let count = match topology {
        Topology::Plain => {
            let sql = format!(
                "{RECLAIM_PICK_SQL}\n     ORDER BY q.lease_expires_at LIMIT $1 FOR UPDATE SKIP LOCKED){RECLAIM_UPDATE_SQL}\n RETURNING q.status"
            );
            let mut count = StatusCount::default();
            count
                .run(conn, diesel::sql_query(sql).into_boxed().bind::<Int4, _>(limit))
                .await?;
            count
        }
        Topology::Citus => {
            let sql = format!(
                "{RECLAIM_PICK_SQL} AND q.tenant_id = $2\n     ORDER BY q.lease_expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)\
                 {RECLAIM_UPDATE_SQL} AND q.tenant_id = $2\n RETURNING q.status"
            );
            by_tenant(
                conn,
                diesel::sql_query(EXPIRED_TENANTS_SQL).into_boxed(),
                limit,
                |tenant, left| {
                    diesel::sql_query(sql.as_str())
                        .into_boxed()
                        .bind::<Int4, _>(left)
                        .bind::<SqlUuid, _>(tenant)
                },
            )
            .await?
        }
    };
    Ok(Reclaimed {
        requeued: count.other,
        dead: count.dead,
    })
}

#[derive(QueryableByName)]
struct CompleteRow {
    #[diesel(sql_type = BigInt)]
    held: i64,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    entry_id: Option<Uuid>,
    #[diesel(sql_type = BigInt)]
    completed: i64,
}

/// The completion statement (one round trip): lock the job by its token,
/// store the entry (or find the identical one already stored; a legacy row
/// stored without a signature check gets the key and evidence that just
/// verified the same entry), mark the job succeeded. `$1..$3` tenant, job, token; `$4..$15` the entry; `$16` result;
/// `$17`, `$18` the verifying key's SHA-256 and the evidence (never NULL: the
/// table refuses a row without them).
pub const COMPLETE_SQL: &str = "\
WITH job AS MATERIALIZED (
    SELECT q.tenant_id, q.id, q.envelope_id
      FROM attestor.rekor_submission_queue q
     WHERE q.tenant_id = $1 AND q.id = $2 AND q.attempt_token = $3 AND q.status = 'running'
       AND q.tenant_id = (SELECT attestor_app.require_current_tenant())
       FOR UPDATE
),
upgrade AS (
    UPDATE attestor.rekor_entries e
       SET verified_key_sha256 = $17, evidence = $18
      FROM job
     WHERE e.tenant_id = $1 AND e.log_id = $4 AND e.log_index = $5 AND e.leaf_hash = $15
       AND e.verified_key_sha256 IS NULL
),
ins AS (
    INSERT INTO attestor.rekor_entries
        (tenant_id, envelope_id, log_id, log_index, shard_log_index, entry_uuid, kind, kind_version,
         integrated_time, canonical_body, inclusion_proof, checkpoint, signed_entry_timestamp, leaf_hash,
         verified_key_sha256, evidence)
    SELECT $1, job.envelope_id, $4, $5, $6, $7, $8, $9, to_timestamp($10), $11, $12, $13, $14, $15,
           $17, $18
      FROM job
    ON CONFLICT (tenant_id, log_id, log_index) DO NOTHING
    RETURNING id, leaf_hash
),
entry AS MATERIALIZED (
    SELECT ins.id, ins.leaf_hash FROM ins
    UNION ALL
    SELECT e.id, e.leaf_hash
      FROM attestor.rekor_entries e JOIN job ON e.tenant_id = job.tenant_id
     WHERE e.tenant_id = $1 AND e.log_id = $4 AND e.log_index = $5 AND NOT EXISTS (SELECT 1 FROM ins)
),
done AS (
    UPDATE attestor.rekor_submission_queue q
       SET status = 'succeeded',
           finished_at = now(),
           result = $16,
           rekor_entry_id = entry.id,
           last_error = NULL,
           lease_expires_at = NULL,
           locked_by = NULL,
           attempt_token = NULL
      FROM job, entry
     WHERE q.tenant_id = $1 AND q.id = job.id AND entry.leaf_hash = $15
 RETURNING q.id
)
SELECT (SELECT count(*) FROM job) AS held,
       (SELECT entry.id FROM entry LIMIT 1) AS entry_id,
       (SELECT count(*) FROM done) AS completed";

/// Complete the job: store its transparency-log entry and mark it
/// `succeeded` with `result`, in one statement of a tenant transaction.
///
/// `conn` must be inside the job's tenant transaction as `attestor_app`
/// (the guard's `TenantTx`); the job's tenant must be the transaction's
/// tenant. The job row is locked and its token checked in the same
/// statement: with a stale token this returns [`QueueError::LeaseLost`]
/// having written nothing. The entry is a [`VerifiedTlogEntry`]: it verified
/// against a trusted root before it got here, and the row records the key
/// that verified it and the evidence. Storing an entry that already exists
/// (same log and index, same leaf) reuses it (recording the key and evidence
/// on a legacy row that had none); the same index with a
/// different leaf is refused. On any error the caller must roll back (the
/// guard does). Returns the `rekor_entries` id.
pub async fn complete(
    conn: &mut AsyncPgConnection,
    lease: &Lease,
    verified: &VerifiedTlogEntry,
    result: &serde_json::Value,
) -> Result<Uuid> {
    let entry = verified.entry();
    let query = diesel::sql_query(COMPLETE_SQL)
        .into_boxed()
        .bind::<SqlUuid, _>(lease.tenant_id)
        .bind::<SqlUuid, _>(lease.job_id)
        .bind::<SqlUuid, _>(lease.token);
    let row: CompleteRow = bind_entry(query, entry)
        .bind::<Jsonb, _>(result)
        .bind::<Bytea, _>(verified.key_sha256().as_slice())
        .bind::<Text, _>(verified.evidence().as_str())
        .get_result(conn)
        .await?;
    match row {
        CompleteRow { held: 0, .. } => Err(lost(lease)),
        CompleteRow {
            entry_id: Some(id),
            completed: 1,
            ..
        } => Ok(id),
        CompleteRow { entry_id: None, .. } => Err(QueueError::InvalidInput(format!(
            "log {} index {} is being stored by a concurrent transaction; retry",
            entry.log_id, entry.log_index
        ))),
        CompleteRow { .. } => Err(QueueError::InvalidInput(format!(
            "log {} index {} already holds a different entry",
            entry.log_id, entry.log_index
        ))),
    }
}

#[derive(QueryableByName)]
pub(crate) struct CompleteManyRow {
    #[diesel(sql_type = BigInt)]
    ord: i64,
    #[diesel(sql_type = Bool)]
    held: bool,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    entry_id: Option<Uuid>,
    #[diesel(sql_type = Bool)]
    completed: bool,
}

/// [`complete`] for many jobs of the transaction's tenant in one statement
/// (set-based over arrays). Each job is fenced by its own token; job-level
/// refusals (stale token, a different entry at the same index) write
/// nothing for that job and do not affect the others. `$16` (text, may be
/// NULL) is a transaction-local `synchronous_commit` for the statement's
/// transaction; `$17`, `$18` the verifying keys' SHA-256 and the evidence of
/// the (verified) entries; `$19` the jobs' tenant, named in every predicate
/// on a table (so that on Citus the statement runs on that tenant's shard;
/// the tenant helper still has to agree). Returns one
/// result per item, in order. A database error fails
/// the whole call (roll back).
pub const COMPLETE_MANY_SQL: &str = "\
WITH input AS MATERIALIZED (
    SELECT *
      FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::int8[], $5::int8[], $6::text[], $7::text[],
                  $8::text[], $9::float8[], $10::bytea[], $11::jsonb[], $12::text[], $13::bytea[],
                  $14::bytea[], $15::jsonb[], $17::bytea[], $18::text[])
           WITH ORDINALITY
           AS i(job_id, token, log_id, log_index, shard_log_index, entry_uuid, kind, kind_version,
                integrated_time, canonical_body, inclusion_proof, checkpoint, set, leaf_hash, result,
                verified_key_sha256, evidence, ord)
     WHERE $16::text IS NULL OR (SELECT set_config('synchronous_commit', $16, true)) IS NOT NULL
),
job AS MATERIALIZED (
    SELECT q.tenant_id, q.id, q.envelope_id, i.ord
      FROM attestor.rekor_submission_queue q
      JOIN input i ON q.id = i.job_id AND q.attempt_token = i.token
     WHERE q.tenant_id = $19 AND q.tenant_id = (SELECT attestor_app.require_current_tenant())
       AND q.status = 'running'
       FOR UPDATE OF q
),
upgrade AS (
    UPDATE attestor.rekor_entries e
       SET verified_key_sha256 = i.verified_key_sha256, evidence = i.evidence
      FROM job JOIN input i ON i.ord = job.ord
     WHERE e.tenant_id = $19 AND e.log_id = i.log_id AND e.log_index = i.log_index
       AND e.leaf_hash = i.leaf_hash AND e.verified_key_sha256 IS NULL
),
ins AS (
    INSERT INTO attestor.rekor_entries
        (tenant_id, envelope_id, log_id, log_index, shard_log_index, entry_uuid, kind, kind_version,
         integrated_time, canonical_body, inclusion_proof, checkpoint, signed_entry_timestamp, leaf_hash,
         verified_key_sha256, evidence)
    SELECT $19, job.envelope_id, i.log_id, i.log_index, i.shard_log_index, i.entry_uuid, i.kind,
           i.kind_version, to_timestamp(i.integrated_time), i.canonical_body, i.inclusion_proof, i.checkpoint,
           i.set, i.leaf_hash, i.verified_key_sha256, i.evidence
      FROM job JOIN input i ON i.ord = job.ord
     ORDER BY i.ord
    ON CONFLICT (tenant_id, log_id, log_index) DO NOTHING
    RETURNING id, log_id, log_index, leaf_hash
),
entry AS MATERIALIZED (
    SELECT job.ord, coalesce(ins.id, e.id) AS id, coalesce(ins.leaf_hash, e.leaf_hash) AS leaf_hash
      FROM job
      JOIN input i ON i.ord = job.ord
      LEFT JOIN ins ON ins.log_id = i.log_id AND ins.log_index = i.log_index
      LEFT JOIN attestor.rekor_entries e
             ON ins.id IS NULL AND e.tenant_id = $19 AND e.log_id = i.log_id AND e.log_index = i.log_index
),
done AS (
    UPDATE attestor.rekor_submission_queue q
       SET status = 'succeeded',
           finished_at = now(),
           result = i.result,
           rekor_entry_id = entry.id,
           last_error = NULL,
           lease_expires_at = NULL,
           locked_by = NULL,
           attempt_token = NULL
      FROM job
      JOIN input i ON i.ord = job.ord
      JOIN entry ON entry.ord = job.ord
     WHERE q.tenant_id = $19 AND q.id = job.id AND entry.leaf_hash = i.leaf_hash
 RETURNING q.id
)
SELECT i.ord, job.id IS NOT NULL AS held, entry.id AS entry_id, done.id IS NOT NULL AS completed
  FROM input i
  LEFT JOIN job ON job.ord = i.ord
  LEFT JOIN entry ON entry.ord = i.ord
  LEFT JOIN done ON done.id = job.id
 ORDER BY i.ord";

/// See [`COMPLETE_MANY_SQL`]. With any item, it asks the server for its
/// [`Topology`] first (one query on every call); [`complete_many_on`] takes
/// the answer instead.
pub async fn complete_many(
    conn: &mut AsyncPgConnection,
    items: &[(Lease, &VerifiedTlogEntry, &serde_json::Value)],
) -> Result<Vec<Result<Uuid>>> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let topology = Topology::probe(conn).await?;
    complete_many_on(conn, topology, items).await
}

/// [`complete_many`] on a server whose [`Topology`] the caller knows (no
/// probe). On a Citus coordinator it completes one item after the other in
/// the same transaction, each with router statements
/// ([`crate::routed_complete`]): Citus runs the one statement's CTEs as
/// separate subplans and fails reading their intermediate results back
/// (`invalid input syntax for type uuid: "PGCOPY"`, Citus 14.0).
pub async fn complete_many_on(
    conn: &mut AsyncPgConnection,
    topology: Topology,
    items: &[(Lease, &VerifiedTlogEntry, &serde_json::Value)],
) -> Result<Vec<Result<Uuid>>> {
    if topology.is_citus() {
        return complete_each(conn, items).await;
    }
    let mut plan = CompleteMany::plan(items);
    let rows = match plan.statement.take() {
        Some(statement) => statement.into_query().load(conn).await?,
        None => Vec::new(),
    };
    Ok(plan.finish(items, rows))
}

/// [`crate::routed_complete::complete_routed`] (a Citus coordinator's
/// [`complete`]) for each item in turn: a job-level refusal (lease lost, a
/// different entry) is that item's result and writes nothing; a database
/// error fails the whole call (roll back), as in [`complete_many`].
pub(crate) async fn complete_each(
    conn: &mut AsyncPgConnection,
    items: &[(Lease, &VerifiedTlogEntry, &serde_json::Value)],
) -> Result<Vec<Result<Uuid>>> {
    let mut out = Vec::with_capacity(items.len());
    for (lease, entry, value) in items {
        match crate::routed_complete::complete_routed(conn, lease, entry, value).await {
            Err(e @ QueueError::Repo(_)) => return Err(e),
            r => out.push(r),
        }
    }
    Ok(out)
}

/// [`complete_many`] in parts, for callers that run the statement their own
/// way (the worker sends it with `Database::fetch`, in one request): the
/// one statement for all items (each verified already, by its type).
pub(crate) struct CompleteMany {
    out: Vec<Option<Result<Uuid>>>,
    /// `None` when no item is left for the database.
    pub(crate) statement: Option<CompleteManyStatement>,
}

/// The parameters of [`COMPLETE_MANY_SQL`], one array per column, in the
/// statement's `ord` order; [`Self::into_query`] binds them.
pub(crate) struct CompleteManyStatement {
    job_ids: Vec<Uuid>,
    tokens: Vec<Uuid>,
    log_ids: Vec<String>,
    log_indexes: Vec<i64>,
    shards: Vec<Option<i64>>,
    uuids: Vec<Option<String>>,
    kinds: Vec<String>,
    versions: Vec<String>,
    times: Vec<Option<f64>>,
    bodies: Vec<Vec<u8>>,
    proofs: Vec<Option<serde_json::Value>>,
    checkpoints: Vec<Option<String>>,
    sets: Vec<Option<Vec<u8>>>,
    leaves: Vec<Vec<u8>>,
    results: Vec<serde_json::Value>,
    keys: Vec<Vec<u8>>,
    evidence: Vec<&'static str>,
    /// The tenant every predicate of the statement names: the first
    /// item's (a job of another tenant is not held, as in a transaction of
    /// another tenant).
    tenant: Uuid,
    /// `synchronous_commit` for this statement's transaction only
    /// (`set_config(…, true)`); `None` leaves the session's setting.
    synchronous_commit: Option<&'static str>,
}

/// The statement's row type, for loading it through any connection.
pub(crate) type CompleteManyRows = Vec<CompleteManyRow>;

impl CompleteManyStatement {
    /// Commit this statement's transaction without waiting for its WAL to
    /// reach disk (`synchronous_commit = off`, transaction-local). Only for
    /// a transaction that a later durable commit makes durable: the worker
    /// sends every group of a round but the last this way and reports them
    /// completed only once the last group's durable commit (which flushes
    /// the WAL up to its own record, theirs included) has returned.
    pub(crate) fn durable_later(mut self) -> Self {
        self.synchronous_commit = Some("off");
        self
    }

    /// The statement with its 17 array parameters (and two scalars) bound.
    pub(crate) fn into_query(
        self,
    ) -> diesel::query_builder::BoxedSqlQuery<'static, diesel::pg::Pg, diesel::query_builder::SqlQuery> {
        diesel::sql_query(COMPLETE_MANY_SQL)
            .into_boxed()
            .bind::<Array<SqlUuid>, _>(self.job_ids)
            .bind::<Array<SqlUuid>, _>(self.tokens)
            .bind::<Array<Text>, _>(self.log_ids)
            .bind::<Array<Int8>, _>(self.log_indexes)
            .bind::<Array<Nullable<Int8>>, _>(self.shards)
            .bind::<Array<Nullable<Text>>, _>(self.uuids)
            .bind::<Array<Text>, _>(self.kinds)
            .bind::<Array<Text>, _>(self.versions)
            .bind::<Array<Nullable<Double>>, _>(self.times)
            .bind::<Array<Bytea>, _>(self.bodies)
            .bind::<Array<Nullable<Jsonb>>, _>(self.proofs)
            .bind::<Array<Nullable<Text>>, _>(self.checkpoints)
            .bind::<Array<Nullable<Bytea>>, _>(self.sets)
            .bind::<Array<Bytea>, _>(self.leaves)
            .bind::<Array<Jsonb>, _>(self.results)
            .bind::<Nullable<Text>, _>(self.synchronous_commit)
            .bind::<Array<Bytea>, _>(self.keys)
            .bind::<Array<Text>, _>(self.evidence)
            .bind::<SqlUuid, _>(self.tenant)
    }
}

impl CompleteMany {
    pub(crate) fn plan(items: &[(Lease, &VerifiedTlogEntry, &serde_json::Value)]) -> CompleteMany {
        let out: Vec<Option<Result<Uuid>>> = items.iter().map(|_| None).collect();
        if items.is_empty() {
            return CompleteMany { out, statement: None };
        }
        let mut st = CompleteManyStatement {
            job_ids: vec![],
            tokens: vec![],
            log_ids: vec![],
            log_indexes: vec![],
            shards: vec![],
            uuids: vec![],
            kinds: vec![],
            versions: vec![],
            times: vec![],
            bodies: vec![],
            proofs: vec![],
            checkpoints: vec![],
            sets: vec![],
            leaves: vec![],
            results: vec![],
            keys: vec![],
            evidence: vec![],
            tenant: items[0].0.tenant_id,
            synchronous_commit: None,
        };
        for (lease, verified, result) in items {
            let entry = verified.entry();
            st.job_ids.push(lease.job_id);
            st.tokens.push(lease.token);
            st.log_ids.push(entry.log_id.clone());
            st.log_indexes.push(entry.log_index);
            st.shards.push(entry.shard_log_index);
            st.uuids.push(entry.entry_uuid.clone());
            st.kinds.push(entry.kind.clone());
            st.versions.push(entry.kind_version.clone());
            st.times.push(entry.integrated_time.map(|t| t as f64));
            st.bodies.push(entry.canonical_body.clone());
            st.proofs.push(entry.inclusion_proof.as_ref().map(proof_json));
            st.checkpoints
                .push(entry.inclusion_proof.as_ref().and_then(|p| p.checkpoint.clone()));
            st.sets.push(entry.signed_entry_timestamp.clone());
            st.leaves.push(entry.leaf_hash.to_vec());
            st.results.push((*result).clone());
            st.keys.push(verified.key_sha256().to_vec());
            st.evidence.push(verified.evidence().as_str());
        }
        CompleteMany {
            out,
            statement: Some(st),
        }
    }

    /// Each item's result, from the statement's rows (none if it did not run).
    pub(crate) fn finish(
        mut self,
        items: &[(Lease, &VerifiedTlogEntry, &serde_json::Value)],
        rows: CompleteManyRows,
    ) -> Vec<Result<Uuid>> {
        for row in rows {
            let Some(k) = usize::try_from(row.ord - 1).ok().filter(|&k| k < items.len()) else {
                continue;
            };
            let (lease, verified, _) = &items[k];
            let entry = verified.entry();
            self.out[k] = Some(match row {
                CompleteManyRow { held: false, .. } => Err(lost(lease)),
                CompleteManyRow {
                    entry_id: Some(id),
                    completed: true,
                    ..
                } => Ok(id),
                CompleteManyRow { entry_id: None, .. } => Err(QueueError::InvalidInput(format!(
                    "log {} index {} is being stored by a concurrent transaction; retry",
                    entry.log_id, entry.log_index
                ))),
                CompleteManyRow { .. } => Err(QueueError::InvalidInput(format!(
                    "log {} index {} already holds a different entry",
                    entry.log_id, entry.log_index
                ))),
            });
        }
        self.out
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(QueueError::InvalidInput("job missing from the result".into()))))
            .collect()
    }
}

/// `query` with the entry's twelve columns bound in the table's order:
/// `log_id, log_index, shard_log_index, entry_uuid, kind, kind_version,
/// integrated_time` (seconds, for `to_timestamp`), `canonical_body,
/// inclusion_proof, checkpoint, signed_entry_timestamp, leaf_hash`.
pub(crate) fn bind_entry<'a>(
    query: diesel::query_builder::BoxedSqlQuery<'a, diesel::pg::Pg, diesel::query_builder::SqlQuery>,
    entry: &'a attestor_formats::TlogEntry,
) -> diesel::query_builder::BoxedSqlQuery<'a, diesel::pg::Pg, diesel::query_builder::SqlQuery> {
    let proof = entry.inclusion_proof.as_ref().map(proof_json);
    let checkpoint = entry.inclusion_proof.as_ref().and_then(|p| p.checkpoint.clone());
    query
        .bind::<Text, _>(&entry.log_id)
        .bind::<Int8, _>(entry.log_index)
        .bind::<Nullable<Int8>, _>(entry.shard_log_index)
        .bind::<Nullable<Text>, _>(entry.entry_uuid.as_deref())
        .bind::<Text, _>(&entry.kind)
        .bind::<Text, _>(&entry.kind_version)
        .bind::<Nullable<Double>, _>(entry.integrated_time.map(|t| t as f64))
        .bind::<Bytea, _>(&entry.canonical_body)
        .bind::<Nullable<Jsonb>, _>(proof)
        .bind::<Nullable<Text>, _>(checkpoint)
        .bind::<Nullable<Bytea>, _>(entry.signed_entry_timestamp.as_deref())
        .bind::<Bytea, _>(entry.leaf_hash.to_vec())
}

fn proof_json(p: &attestor_formats::InclusionProof) -> serde_json::Value {
    serde_json::json!({
        "logIndex": p.log_index,
        "treeSize": p.tree_size,
        "rootHash": hex::encode(p.root_hash),
        "hashes": p.hashes.iter().map(hex::encode).collect::<Vec<_>>(),
        "checkpoint": p.checkpoint,
    })
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
