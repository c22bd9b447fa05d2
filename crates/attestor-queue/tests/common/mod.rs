//! Shared test helpers: databases, tenants, seeded jobs, admin inspection.
#![allow(dead_code)]

use attestor_queue::{enqueue_tx, Enqueued, NewJob, QueueError};
use attestor_repo::{Database, DatabaseConfig, TenantContext, TenantContextMode, TenantId, TenantTx};
use diesel::sql_types::{BigInt, Int4, Text, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use scoped_futures::ScopedFutureExt;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The tenant context mode the test server needs: `SetLocal` on a Citus
/// coordinator (it does not pass `set_config` on to the shards),
/// `SetConfig` on plain PostgreSQL.
pub fn mode() -> TenantContextMode {
    if attestor_testdb::shared().tenant_context_needs_set_local() {
        TenantContextMode::SetLocal
    } else {
        TenantContextMode::SetConfig
    }
}

/// The app pool's configuration for the test server
/// ([`DatabaseConfig::on_citus`] on a coordinator).
pub fn app_config(url: &str) -> DatabaseConfig {
    let config = DatabaseConfig::new(url.to_owned()).with_max_connections(16);
    if attestor_testdb::shared().citus().is_some() {
        config.on_citus()
    } else {
        config.with_tenant_context_mode(mode())
    }
}

pub async fn app_db(url: &str) -> Database {
    Database::connect(app_config(url)).await.expect("app database")
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

/// Insert one envelope for the transaction's tenant and return its id. The
/// tenant is named in the statement (a `VALUES` row), so that on a Citus
/// coordinator it goes to the tenant's shard, also as a generic plan.
pub async fn insert_envelope(tx: &mut TenantTx, label: &str) -> Result<Uuid, QueueError> {
    let tenant = tx.tenant().as_uuid();
    let rows: Vec<IdRow> = diesel::sql_query(
        "INSERT INTO attestor.dsse_envelopes
             (tenant_id, payload_type, payload, payload_sha256, envelope_sha256, signatures, envelope)
         VALUES ($2, 'text/plain', convert_to($1, 'UTF8'), sha256(convert_to($1, 'UTF8')),
                 sha256(convert_to($1, 'UTF8') || '\\x01'::bytea), '[]',
                 jsonb_build_object('payload', encode(convert_to($1, 'UTF8'), 'base64'), 'signatures', '[]'::jsonb))
         RETURNING id",
    )
    .bind::<Text, _>(label)
    .bind::<SqlUuid, _>(tenant)
    .load(tx.conn())
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
            let env = insert_envelope(tx, &label).await?;
            enqueue_tx(tx, &NewJob::new(env, key(&label)).max_attempts(max_attempts)).await
        }
        .scope_boxed()
    })
    .await
    .expect("enqueue")
}

#[derive(QueryableByName)]
struct EnvelopeRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Bytea)]
    envelope_sha256: Vec<u8>,
}

/// Enqueue `n` jobs for `tenant` in one transaction (bulk, set-based): the
/// envelopes in one statement, their jobs in a second. Not one statement
/// writing both tables: a Citus coordinator would pull the first insert's
/// rows to itself and `COPY` them into the second table's shards, which
/// row-level security refuses. The envelopes' `INSERT … SELECT` has
/// parameters, which a coordinator cannot plan as a generic plan (the pools'
/// default): the transaction plans it as a custom plan.
pub async fn seed(db: &Database, tenant: TenantId, prefix: &str, n: i32) {
    let prefix = prefix.to_owned();
    db.transaction(TenantContext::new(tenant), |tx| {
        async move {
            diesel::sql_query("SELECT set_config('plan_cache_mode', 'force_custom_plan', true)")
                .execute(tx.conn())
                .await?;
            let envelopes: Vec<EnvelopeRow> = diesel::sql_query(
                "INSERT INTO attestor.dsse_envelopes
                     (tenant_id, payload_type, payload, payload_sha256, envelope_sha256, signatures, envelope)
                 SELECT (SELECT attestor_app.require_current_tenant()), 'text/plain', p, sha256(p),
                        sha256(p || '\\x01'::bytea), '[]', '{}'
                   FROM (SELECT convert_to($1 || g::text, 'UTF8') AS p FROM generate_series(1, $2) g) s
                 RETURNING id, envelope_sha256",
            )
            .bind::<Text, _>(prefix)
            .bind::<Int4, _>(n)
            .load(tx.conn())
            .await?;
            if envelopes.is_empty() {
                return Ok(());
            }
            // The jobs as one multi-row `VALUES` of literals (ids and digests
            // the database just returned): a coordinator sends it to the
            // tenant's shard, where an `INSERT … SELECT` from arrays would be
            // copied there (`COPY`, which row-level security refuses).
            let tenant = tx.tenant().as_uuid();
            let rows: Vec<String> = envelopes
                .iter()
                .map(|e| {
                    let hex: String = e.envelope_sha256.iter().map(|b| format!("{b:02x}")).collect();
                    format!("('{tenant}', '{}', '\\x{hex}'::bytea)", e.id)
                })
                .collect();
            diesel::sql_query(format!(
                "INSERT INTO attestor.rekor_submission_queue (tenant_id, envelope_id, bundle_sha256) VALUES {}",
                rows.join(", ")
            ))
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
