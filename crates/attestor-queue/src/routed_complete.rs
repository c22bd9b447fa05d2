//! Completion on a Citus coordinator: [`crate::lease::complete`]'s effect
//! as statements that each touch one table and name the job's tenant.
//!
//! Owns [`complete_routed`], which [`crate::lease::complete_many`] and the
//! worker use there. Citus runs the one-statement completion's CTEs as
//! separate subplans (several round trips to the node, intermediate
//! results), and the set-based one not at all; each statement here is a
//! router query Citus sends whole to the tenant's node. In order, inside
//! the caller's tenant transaction:
//!
//! 1. lock the job by its token (`FOR UPDATE`): no row, and the lease is
//!    lost, nothing written;
//! 2. find an entry already stored at the same log index: a different leaf
//!    is refused, nothing written; the same leaf is reused (and a legacy row
//!    stored without a signature check gets the key and evidence that just
//!    verified it);
//! 3. otherwise insert the entry (`ON CONFLICT DO NOTHING`: an entry a
//!    concurrent transaction committed meanwhile is read again, as in 2);
//! 4. mark the job succeeded with the entry.
//!
//! A refusal is decided before anything is written, so it leaves the
//! transaction as it was. Must never run a statement that does not name
//! the tenant, or write before the job is locked by its token.

use attestor_transparency::VerifiedTlogEntry;
use diesel::sql_types::{Bool, Bytea, Int8, Jsonb, Text, Uuid as SqlUuid};
use diesel::{OptionalExtension, QueryableByName};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::claim::Lease;
use crate::error::{QueueError, Result};

#[derive(QueryableByName)]
struct JobRow {
    #[diesel(sql_type = SqlUuid)]
    envelope_id: Uuid,
}

#[derive(QueryableByName)]
struct EntryRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Bytea)]
    leaf_hash: Vec<u8>,
    #[diesel(sql_type = Bool)]
    legacy: bool,
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

const LOCK_SQL: &str = "\
SELECT q.envelope_id
  FROM attestor.rekor_submission_queue q
 WHERE q.tenant_id = $1 AND q.id = $2 AND q.attempt_token = $3 AND q.status = 'running'
   FOR UPDATE";

const FIND_SQL: &str = "\
SELECT e.id, e.leaf_hash, e.verified_key_sha256 IS NULL AS legacy
  FROM attestor.rekor_entries e
 WHERE e.tenant_id = $1 AND e.log_id = $2 AND e.log_index = $3";

const UPGRADE_SQL: &str = "\
UPDATE attestor.rekor_entries e
   SET verified_key_sha256 = $3, evidence = $4
 WHERE e.tenant_id = $1 AND e.id = $2 AND e.verified_key_sha256 IS NULL";

const INSERT_SQL: &str = "\
INSERT INTO attestor.rekor_entries
    (tenant_id, envelope_id, log_id, log_index, shard_log_index, entry_uuid, kind, kind_version,
     integrated_time, canonical_body, inclusion_proof, checkpoint, signed_entry_timestamp, leaf_hash,
     verified_key_sha256, evidence)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, to_timestamp($9), $10, $11, $12, $13, $14, $15, $16)
ON CONFLICT (tenant_id, log_id, log_index) DO NOTHING
RETURNING id";

const DONE_SQL: &str = "\
UPDATE attestor.rekor_submission_queue q
   SET status = 'succeeded',
       finished_at = now(),
       result = $3,
       rekor_entry_id = $4,
       last_error = NULL,
       lease_expires_at = NULL,
       locked_by = NULL,
       attempt_token = NULL
 WHERE q.tenant_id = $1 AND q.id = $2";

/// [`crate::lease::complete`] for a Citus coordinator (see the module
/// docs): same contract, same errors.
pub async fn complete_routed(
    conn: &mut AsyncPgConnection,
    lease: &Lease,
    verified: &VerifiedTlogEntry,
    result: &serde_json::Value,
) -> Result<Uuid> {
    let entry = verified.entry();
    let job: Option<JobRow> = diesel::sql_query(LOCK_SQL)
        .bind::<SqlUuid, _>(lease.tenant_id)
        .bind::<SqlUuid, _>(lease.job_id)
        .bind::<SqlUuid, _>(lease.token)
        .get_result(conn)
        .await
        .optional()?;
    let Some(job) = job else {
        return Err(crate::lease::lost(lease));
    };
    let id = match stored(conn, lease, verified).await? {
        Some(id) => id,
        None => {
            let query = diesel::sql_query(INSERT_SQL)
                .into_boxed()
                .bind::<SqlUuid, _>(lease.tenant_id)
                .bind::<SqlUuid, _>(job.envelope_id);
            let inserted: Option<IdRow> = crate::lease::bind_entry(query, entry)
                .bind::<Bytea, _>(verified.key_sha256().as_slice())
                .bind::<Text, _>(verified.evidence().as_str())
                .get_result(conn)
                .await
                .optional()?;
            match inserted {
                Some(row) => row.id,
                // A concurrent transaction stored this index and committed.
                None => stored(conn, lease, verified).await?.ok_or_else(|| {
                    QueueError::InvalidInput(format!(
                        "log {} index {} is being stored by a concurrent transaction; retry",
                        entry.log_id, entry.log_index
                    ))
                })?,
            }
        }
    };
    diesel::sql_query(DONE_SQL)
        .bind::<SqlUuid, _>(lease.tenant_id)
        .bind::<SqlUuid, _>(lease.job_id)
        .bind::<Jsonb, _>(result)
        .bind::<SqlUuid, _>(id)
        .execute(conn)
        .await?;
    Ok(id)
}

/// The entry already stored at the verified entry's log index, if any:
/// refused when its leaf differs; a legacy row gets the key and evidence.
async fn stored(
    conn: &mut AsyncPgConnection,
    lease: &Lease,
    verified: &VerifiedTlogEntry,
) -> Result<Option<Uuid>> {
    let entry = verified.entry();
    let found: Option<EntryRow> = diesel::sql_query(FIND_SQL)
        .bind::<SqlUuid, _>(lease.tenant_id)
        .bind::<Text, _>(&entry.log_id)
        .bind::<Int8, _>(entry.log_index)
        .get_result(conn)
        .await
        .optional()?;
    let Some(found) = found else { return Ok(None) };
    if found.leaf_hash != entry.leaf_hash.as_slice() {
        return Err(QueueError::InvalidInput(format!(
            "log {} index {} already holds a different entry",
            entry.log_id, entry.log_index
        )));
    }
    if found.legacy {
        diesel::sql_query(UPGRADE_SQL)
            .bind::<SqlUuid, _>(lease.tenant_id)
            .bind::<SqlUuid, _>(found.id)
            .bind::<Bytea, _>(verified.key_sha256().as_slice())
            .bind::<Text, _>(verified.evidence().as_str())
            .execute(conn)
            .await?;
    }
    Ok(Some(found.id))
}
