//! The guard's contract under a disturbed wire (proptest): a pool of one
//! connection behind a proxy that splits, delays and interleaves notices and
//! notifications into what the server sends, while real cancel requests
//! (`pg_cancel_backend`) land at random points, over thousands of
//! operations: commits, failing and swallowed-error transactions, dropped
//! futures, guarded fetches. Asserts: no read returns a row of another
//! tenant; a transaction that returned `Err` committed nothing; one that
//! returned `Ok` committed everything (never `Ok` for one PostgreSQL rolled
//! back); no operation hangs; afterwards the pool hands out a clean
//! connection that works.
//!
//! `ATTESTOR_INTERLEAVING_CASES` (default 8) sets the number of cases, each
//! of 125–200 operations; the cases alternate between the two tenant
//! context modes (`set_config` and `SET LOCAL`), so both get half.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use attestor_repo::{
    sbom_entries, Database, DatabaseConfig, RepoError, TenantContext, TenantContextMode, TenantId,
};
use common::proxy::Rng;
use common::*;
use diesel::sql_types::{BigInt, Integer, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection as _};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Insert a probe row and an SBOM, commit.
    Commit,
    /// The same, the first statement a simple query.
    CommitSimple,
    /// Insert, then a failing statement whose error is returned.
    Fail,
    /// Insert, then swallow an error raised inside a row stream.
    SwallowStream,
    /// Insert, then `get_result` of a statement failing on its second row.
    SwallowSecondRow,
    /// Insert, then hang; the future is dropped after `ms` milliseconds.
    Drop { ms: u64 },
    /// Every SBOM's tenant, no filter, in a transaction.
    ReadAll,
    /// The same through `Database::fetch`.
    Fetch,
    /// A fetch that fails while its rows stream.
    FetchFail,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Commit),
        2 => Just(Op::CommitSimple),
        2 => Just(Op::Fail),
        2 => Just(Op::SwallowStream),
        2 => Just(Op::SwallowSecondRow),
        1 => (0u64..6).prop_map(|ms| Op::Drop { ms }),
        2 => Just(Op::ReadAll),
        3 => Just(Op::Fetch),
        1 => Just(Op::FetchFail),
    ]
}

#[derive(QueryableByName)]
struct Tenant {
    #[diesel(sql_type = SqlUuid)]
    tenant_id: uuid::Uuid,
}

#[derive(QueryableByName, Debug)]
struct I {
    #[diesel(sql_type = Integer)]
    #[allow(dead_code)]
    n: i32,
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

const ALL_TENANTS: &str = "SELECT tenant_id FROM attestor.sbom_entries";

async fn insert_probe(tx: &mut attestor_repo::TenantTx, id: i64) -> Result<(), RepoError> {
    diesel::sql_query(format!("INSERT INTO public.guard_probe VALUES ({id})"))
        .execute(tx.conn())
        .await?;
    Ok(())
}

fn only(t: TenantId, rows: &[Tenant], what: &str) {
    for r in rows {
        assert_eq!(r.tenant_id, t.as_uuid(), "{what}: a row of another tenant");
    }
}

/// Runs `op` as operation `id` for `t`: `Some(committed)` for a transaction
/// that wrote probe row `id` and returned, `None` otherwise.
async fn apply(db: &Database, t: TenantId, id: i64, op: &Op) -> Option<bool> {
    let ctx = TenantContext::new(t).with_actor("interleaver");
    let doc = gen::cyclonedx(1);
    let r: Result<(), RepoError> = match op {
        Op::Commit => {
            db.transaction(ctx, move |tx| {
                attestor_repo::scoped_futures::ScopedFutureExt::scope_boxed(async move {
                    insert_probe(tx, id).await?;
                    sbom_entries::ingest(tx, &doc).await?;
                    Ok(())
                })
            })
            .await
        }
        Op::CommitSimple => {
            db.transaction(ctx, move |tx| {
                attestor_repo::scoped_futures::ScopedFutureExt::scope_boxed(async move {
                    tx.conn()
                        .batch_execute(&format!("INSERT INTO public.guard_probe VALUES ({id})"))
                        .await?;
                    sbom_entries::ingest(tx, &doc).await?;
                    Ok(())
                })
            })
            .await
        }
        Op::Fail => {
            db.transaction(ctx, move |tx| {
                attestor_repo::scoped_futures::ScopedFutureExt::scope_boxed(async move {
                    insert_probe(tx, id).await?;
                    diesel::sql_query("SELECT 'x'::uuid").execute(tx.conn()).await?;
                    Ok(())
                })
            })
            .await
        }
        Op::SwallowStream => {
            db.transaction(ctx, move |tx| {
                attestor_repo::scoped_futures::ScopedFutureExt::scope_boxed(async move {
                    insert_probe(tx, id).await?;
                    let _ = diesel::sql_query("SELECT (1 / (3 - g))::int AS n FROM generate_series(1, 4) g")
                        .load::<I>(tx.conn())
                        .await;
                    Ok(())
                })
            })
            .await
        }
        Op::SwallowSecondRow => {
            db.transaction(ctx, move |tx| {
                attestor_repo::scoped_futures::ScopedFutureExt::scope_boxed(async move {
                    insert_probe(tx, id).await?;
                    let _ = diesel::sql_query("SELECT (1 / (2 - g))::int AS n FROM generate_series(1, 3) g")
                        .get_result::<I>(tx.conn())
                        .await;
                    Ok(())
                })
            })
            .await
        }
        Op::Drop { ms } => {
            let fut = db.transaction(ctx, move |tx| {
                attestor_repo::scoped_futures::ScopedFutureExt::scope_boxed(async move {
                    insert_probe(tx, id).await?;
                    diesel::sql_query("SELECT pg_sleep(0.05)")
                        .execute(tx.conn())
                        .await?;
                    Ok::<(), RepoError>(())
                })
            });
            match tokio::time::timeout(Duration::from_millis(*ms), fut).await {
                // Finished in time: an ordinary outcome.
                Ok(r) => r,
                // Dropped: whatever it sent is rolled back with the discarded connection.
                Err(_) => return Some(false),
            }
        }
        Op::ReadAll => {
            if let Ok(rows) = db
                .transaction(ctx, |tx| {
                    attestor_repo::scoped_futures::ScopedFutureExt::scope_boxed(async move {
                        Ok::<_, RepoError>(diesel::sql_query(ALL_TENANTS).load::<Tenant>(tx.conn()).await?)
                    })
                })
                .await
            {
                only(t, &rows, "transaction");
            }
            return None;
        }
        Op::Fetch => {
            if let Ok(rows) = db.fetch::<_, Tenant>(ctx, diesel::sql_query(ALL_TENANTS)).await {
                only(t, &rows, "fetch");
            }
            return None;
        }
        Op::FetchFail => {
            let r = db
                .fetch::<_, I>(
                    ctx,
                    diesel::sql_query("SELECT (1 / (3 - g))::int AS n FROM generate_series(1, 4) g"),
                )
                .await;
            assert!(r.is_err(), "{r:?}");
            return None;
        }
    };
    Some(r.is_ok())
}

/// Sends cancel requests to every `attestor_app` backend of the database at
/// random moments until stopped.
fn canceller(admin_url: String, seed: u64, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        use diesel::Connection as _;
        let mut c = diesel::PgConnection::establish(&admin_url).unwrap();
        let mut rng = Rng::new(seed);
        let mut sent = 0;
        while !AtomicBool::load(&stop, Ordering::Relaxed) {
            std::thread::sleep(Duration::from_micros(3000 + rng.below(12000)));
            let n = diesel::RunQueryDsl::get_result::<Id>(
                diesel::sql_query(
                    "SELECT count(pg_cancel_backend(pid)) AS id FROM pg_stat_activity \
                     WHERE datname = current_database() AND usename = 'attestor_app'",
                ),
                &mut c,
            )
            .map(|r| r.id)
            .unwrap_or(0);
            sent += n as u64;
        }
        sent
    })
}

#[test]
fn the_guard_keeps_its_contract_under_a_disturbed_wire() {
    let tdb = test_db();
    diesel::connection::SimpleConnection::batch_execute(
        &mut tdb.connect_admin().unwrap(),
        "CREATE TABLE public.guard_probe (id bigint PRIMARY KEY); \
         GRANT SELECT, INSERT ON public.guard_probe TO attestor_app",
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cases = std::env::var("ATTESTOR_INTERLEAVING_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 16,
        ..ProptestConfig::default()
    };
    let app_url = tdb.app_url();
    let admin_url = tdb.admin_url();
    let next_id = std::sync::atomic::AtomicI64::new(1);
    let totals = std::sync::Mutex::new((0u64, 0u64, 0u64));
    let case = std::sync::atomic::AtomicU64::new(0);
    proptest!(config, |(
        seed in any::<u64>(),
        test_on_checkout in any::<bool>(),
        ops in proptest::collection::vec((0usize..2, op()), 125..200),
    )| {
        let mut expected: BTreeMap<i64, bool> = BTreeMap::new();
        let stop = Arc::new(AtomicBool::new(false));
        let (disturbed, cancels) = rt.block_on(async {
            let proxy = common::proxy::start(&app_url, seed).await;
            let mode = match case.fetch_add(1, Ordering::Relaxed) % 2 {
                0 => TenantContextMode::SetConfig,
                _ => TenantContextMode::SetLocal,
            };
            let mut cfg = DatabaseConfig::new(proxy.url.clone())
                .with_max_connections(1)
                .with_tenant_context_mode(mode);
            cfg.test_on_checkout = test_on_checkout;
            cfg.connection_timeout = Duration::from_secs(10);
            let db = Database::connect(cfg).await.unwrap();
            let tenants = [TenantId::new_random(), TenantId::new_random()];
            let cancel = canceller(admin_url.clone(), seed ^ 0x5eed, stop.clone());
            for (ti, op) in &ops {
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                let outcome = tokio::time::timeout(Duration::from_secs(20), apply(&db, tenants[*ti], id, op))
                    .await
                    .unwrap_or_else(|_| panic!("operation {id} {op:?} hung"));
                if let Some(committed) = outcome {
                    expected.insert(id, committed);
                }
            }
            stop.store(true, Ordering::Relaxed);
            let cancels = cancel.join().unwrap();
            // The pool recovers: within a couple of checkouts a clean
            // connection that runs a transaction and a fetch.
            let mut clean = None;
            for _ in 0..3 {
                match db.probe_idle().await {
                    Ok(p) if p.is_clean() => {
                        clean = Some(p);
                        break;
                    }
                    _ => {}
                }
            }
            assert!(clean.is_some(), "the pool never handed out a clean connection again");
            let id = next_id.fetch_add(1, Ordering::Relaxed);
            assert_eq!(apply(&db, tenants[0], id, &Op::Commit).await, Some(true), "after the run");
            expected.insert(id, true);
            let rows = db
                .fetch::<_, Tenant>(TenantContext::new(tenants[1]), diesel::sql_query(ALL_TENANTS))
                .await
                .unwrap();
            only(tenants[1], &rows, "fetch after the run");
            (std::sync::atomic::AtomicU64::load(&proxy.disturbed, Ordering::Relaxed), cancels)
        });
        let stored: std::collections::BTreeSet<i64> = diesel::RunQueryDsl::load::<Id>(
            diesel::sql_query("SELECT id FROM public.guard_probe"),
            &mut tdb.connect_admin().unwrap(),
        )
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
        for (id, committed) in &expected {
            prop_assert_eq!(
                stored.contains(id),
                *committed,
                "operation {} returned {}, but its row is {}",
                id,
                if *committed { "Ok" } else { "Err" },
                if stored.contains(id) { "committed" } else { "absent" }
            );
        }
        let mut t = totals.lock().unwrap();
        t.0 += ops.len() as u64;
        t.1 += disturbed;
        t.2 += cancels;
    });
    let (ops, disturbed, cancels) = *totals.lock().unwrap();
    eprintln!("{ops} operations, {disturbed} disturbed server messages, {cancels} cancel requests");
    assert!(
        ops >= 1000 && disturbed > 0 && cancels > 0,
        "the run disturbed nothing"
    );
}
