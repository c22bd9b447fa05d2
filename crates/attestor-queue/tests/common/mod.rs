//! Shared test helpers: databases, tenants, seeded jobs, admin inspection.
#![allow(dead_code)]

use attestor_queue::{enqueue, Enqueued, NewJob, QueueError};
use attestor_repo::{Database, DatabaseConfig, TenantContext, TenantId};
use diesel::sql_types::{BigInt, Int4, Text, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use scoped_futures::ScopedFutureExt;
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub async fn app_db(url: &str) -> Database {
    Database::connect(DatabaseConfig::new(url.to_owned()).with_max_connections(16))
        .await
        .expect("app database")
}

pub async fn connect(url: &str) -> AsyncPgConnection {
    AsyncPgConnection::establish(url).await.expect("connect")
}

pub fn tenant() -> TenantId {
    TenantId::new_random()
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

/// Insert one envelope for the current tenant and return its id.
pub async fn insert_envelope(conn: &mut AsyncPgConnection, label: &str) -> Result<Uuid, QueueError> {
    let rows: Vec<IdRow> = diesel::sql_query(
        "INSERT INTO attestor.dsse_envelopes
             (tenant_id, payload_type, payload, payload_sha256, envelope_sha256, signatures, envelope)
         SELECT (SELECT attestor_app.require_current_tenant()), 'text/plain', p, sha256(p),
                sha256(p || '\\x01'::bytea), '[]', jsonb_build_object('payload', encode(p, 'base64'), 'signatures', '[]'::jsonb)
           FROM (SELECT convert_to($1, 'UTF8') AS p) s
         RETURNING id",
    )
    .bind::<Text, _>(label)
    .load(conn)
    .await?;
    Ok(rows[0].id)
}

pub fn key(label: &str) -> [u8; 32] {
    Sha256::digest(label.as_bytes()).into()
}

/// Enqueue one job (envelope + job in one tenant transaction).
pub async fn enqueue_one(db: &Database, tenant: TenantId, label: &str, max_attempts: i32) -> Enqueued {
    let label = label.to_owned();
    db.transaction(TenantContext::new(tenant), |tx| {
        async move {
            let env = insert_envelope(tx.conn(), &label).await?;
            enqueue(
                tx.conn(),
                &NewJob::new(env, key(&label)).max_attempts(max_attempts),
            )
            .await
        }
        .scope_boxed()
    })
    .await
    .expect("enqueue")
}

/// Enqueue `n` jobs for `tenant` in one transaction (bulk, set-based).
pub async fn seed(db: &Database, tenant: TenantId, prefix: &str, n: i32) {
    let prefix = prefix.to_owned();
    db.transaction(TenantContext::new(tenant), |tx| {
        async move {
            diesel::sql_query(
                "WITH env AS (
                     INSERT INTO attestor.dsse_envelopes
                         (tenant_id, payload_type, payload, payload_sha256, envelope_sha256, signatures, envelope)
                     SELECT (SELECT attestor_app.require_current_tenant()), 'text/plain', p, sha256(p),
                            sha256(p || '\\x01'::bytea), '[]', '{}'
                       FROM (SELECT convert_to($1 || g::text, 'UTF8') AS p FROM generate_series(1, $2) g) s
                     RETURNING id, envelope_sha256, created_at)
                 INSERT INTO attestor.rekor_submission_queue (tenant_id, envelope_id, bundle_sha256)
                 SELECT (SELECT attestor_app.require_current_tenant()), id, envelope_sha256 FROM env",
            )
            .bind::<Text, _>(prefix)
            .bind::<Int4, _>(n)
            .execute(tx.conn())
            .await?;
            Ok::<_, QueueError>(())
        }
        .scope_boxed()
    })
    .await
    .expect("seed");
}

#[derive(QueryableByName, Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Int4)]
    pub attempts: i32,
    #[diesel(sql_type = diesel::sql_types::Nullable<SqlUuid>)]
    pub attempt_token: Option<Uuid>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    pub last_error: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<SqlUuid>)]
    pub rekor_entry_id: Option<Uuid>,
}

/// Inspect a job as the superuser (setup/inspection only).
pub async fn job_state(admin: &mut AsyncPgConnection, job: Uuid) -> JobState {
    diesel::sql_query(
        "SELECT status, attempts, attempt_token, last_error, rekor_entry_id
           FROM attestor.rekor_submission_queue WHERE id = $1",
    )
    .bind::<SqlUuid, _>(job)
    .get_result(admin)
    .await
    .expect("job state")
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

pub async fn count(admin: &mut AsyncPgConnection, sql: &str) -> i64 {
    diesel::sql_query(sql)
        .get_result::<Count>(admin)
        .await
        .expect(sql)
        .n
}

/// Simulated time: make every running lease expire now.
pub async fn expire_leases(admin: &mut AsyncPgConnection) {
    diesel::sql_query(
        "UPDATE attestor.rekor_submission_queue
            SET lease_expires_at = now() - interval '1 second' WHERE status = 'running'",
    )
    .execute(admin)
    .await
    .unwrap();
}

/// Simulated time: make every queued job due now.
pub async fn make_due(admin: &mut AsyncPgConnection) {
    diesel::sql_query(
        "UPDATE attestor.rekor_submission_queue SET run_at = now() - interval '1 second' WHERE status = 'queued'",
    )
    .execute(admin)
    .await
    .unwrap();
}

/// The trusted root that lists the fakes' log (every worker needs one).
pub fn fake_root() -> std::sync::Arc<attestor_transparency::TrustedRoot> {
    std::sync::Arc::new(attestor_queue::testing::fake_trusted_root())
}
