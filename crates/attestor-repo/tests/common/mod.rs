//! Shared helpers of the attestor-repo integration tests: a cloned test
//! database per test and pools on it as `attestor_app` (never a superuser for
//! tenant rows; the admin URL is used only to tamper with or kill things).
#![allow(dead_code)]

pub mod gen;
pub mod proxy;

use attestor_repo::scoped_futures::ScopedBoxFuture;
use attestor_repo::{
    Database, DatabaseConfig, RepoError, TenantContext, TenantContextMode, TenantId, TenantTx,
};
use attestor_testdb::{shared, TestDatabase};

pub fn test_db() -> TestDatabase<'static> {
    shared().test_database().expect("test database")
}

tokio::task_local! {
    /// The tenant context mode of the pools [`config`] builds, set by [`in_both_modes`].
    static MODE: TenantContextMode;
}

/// The mode the test server needs: `SetLocal` on a Citus coordinator (it
/// does not pass `set_config` on to the shards), `SetConfig` elsewhere.
pub fn server_mode() -> TenantContextMode {
    if shared().tenant_context_needs_set_local() {
        TenantContextMode::SetLocal
    } else {
        TenantContextMode::SetConfig
    }
}

/// The mode [`in_both_modes`] runs the current body in ([`server_mode`]
/// outside it).
pub fn mode() -> TenantContextMode {
    MODE.try_with(|m| *m).unwrap_or_else(|_| server_mode())
}

/// A pool configuration for `url` in the current [`mode`].
pub fn config(url: impl Into<String>) -> DatabaseConfig {
    DatabaseConfig::new(url).with_tenant_context_mode(mode())
}

/// The modes a test server can run a pool in: both on plain PostgreSQL,
/// only `SetLocal` on a Citus coordinator (under `SetConfig` its shards
/// see no tenant; `guard`'s `set_config_does_not_reach_the_shards_of_a_coordinator`
/// shows it).
pub fn modes() -> Vec<TenantContextMode> {
    match server_mode() {
        TenantContextMode::SetLocal => vec![TenantContextMode::SetLocal],
        TenantContextMode::SetConfig => vec![TenantContextMode::SetConfig, TenantContextMode::SetLocal],
    }
}

/// Runs `body` once per mode of [`modes`] (each run builds its pools with
/// [`config`] / [`app`], so it gets that mode), saying which one failed.
pub async fn in_both_modes<F, Fut>(body: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for mode in modes() {
        eprintln!("--- tenant context mode {mode:?}");
        MODE.scope(mode, body()).await;
    }
}

pub async fn app(db: &TestDatabase<'_>, pool: u32) -> Database {
    Database::connect(config(db.app_url()).with_max_connections(pool))
        .await
        .expect("connect as attestor_app")
}

pub fn ctx(t: TenantId) -> TenantContext {
    TenantContext::new(t).with_actor("tester")
}

/// Runs `f` in a tenant transaction with `RepoError` as the error type.
pub async fn tx<T, F>(db: &Database, tenant: TenantId, f: F) -> Result<T, RepoError>
where
    F: for<'r> FnOnce(&'r mut TenantTx) -> ScopedBoxFuture<'static, 'r, Result<T, RepoError>>
        + Send
        + 'static,
    T: Send + 'static,
{
    db.transaction(ctx(tenant), f).await
}

/// Whether RLS is enabled on the tenant tables yet (migration 000004 lands it).
pub fn rls_enabled(db: &TestDatabase<'_>) -> bool {
    use diesel::prelude::*;
    #[derive(QueryableByName)]
    struct R {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        on: bool,
    }
    let mut c = db.connect_admin().unwrap();
    diesel::sql_query(
        "SELECT coalesce(bool_and(relrowsecurity AND relforcerowsecurity), false) AS on FROM pg_class \
         WHERE relnamespace = 'attestor'::regnamespace AND relkind = 'r'",
    )
    .get_result::<R>(&mut c)
    .unwrap()
    .on
}

/// Row counts of every tenant table, as seen from `tenant`'s transaction.
pub async fn counts(db: &Database, tenant: TenantId) -> Vec<(String, i64)> {
    use attestor_repo::scoped_futures::ScopedFutureExt as _;
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    tx(db, tenant, |tx| {
        async move {
            let mut out = Vec::new();
            for t in TABLES {
                let n = diesel::sql_query(format!("SELECT count(*) AS n FROM attestor.{t}"))
                    .get_result::<N>(tx.conn())
                    .await?
                    .n;
                out.push((t.to_string(), n));
            }
            Ok(out)
        }
        .scope_boxed()
    })
    .await
    .unwrap()
}

pub const TABLES: [&str; 8] = [
    "dsse_envelopes",
    "rekor_entries",
    "sbom_entries",
    "spines",
    "trust_anchors",
    "verdict_ledger",
    "audit_log",
    "rekor_submission_queue",
];

/// Sum of [`counts`].
pub async fn total_rows(db: &Database, tenant: TenantId) -> i64 {
    counts(db, tenant).await.iter().map(|(_, n)| n).sum()
}

/// Reads a fixture if the shared folder is present.
pub fn fixture(relative: &str) -> Option<Vec<u8>> {
    let dir = attestor_formats::fixtures::fixtures_dir()?;
    Some(attestor_formats::fixtures::read(&dir, relative))
}

/// A trusted root from the fixtures folder (call only after [`fixture`] found it).
pub fn fixture_root(relative: &str) -> attestor_transparency::TrustedRoot {
    let dir = attestor_formats::fixtures::fixtures_dir().expect("fixtures present");
    attestor_transparency::TrustedRoot::from_json(&attestor_formats::fixtures::read(&dir, relative)).unwrap()
}

/// `run!(db, tenant, |tx| { …; Ok(x) })`: a tenant transaction whose body is an async block.
#[macro_export]
macro_rules! run {
    ($db:expr, $t:expr, |$tx:ident| $body:block) => {
        $crate::common::tx(&$db, $t, move |$tx| {
            attestor_repo::scoped_futures::ScopedFutureExt::scope_boxed(async move { $body })
        })
        .await
    };
}
