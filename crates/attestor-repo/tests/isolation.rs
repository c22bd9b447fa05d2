//! Tenant isolation under random interleavings (proptest): tenants,
//! operations and cancellation/panic/rollback points over a pool of 1–2
//! connections. Invariants after every step: a tenant never sees a row of
//! another tenant (raw SQL without any tenant filter, so this is RLS's doing),
//! no idle connection carries a tenant, an actor or an open transaction, and
//! only committed operations are visible (each tenant's counts match its
//! committed operations; its ledger is one valid chain).
//!
//! Needs migration `2026-11-28-000004_rls` (ENABLE + FORCE RLS and the
//! `<table>_tenant_isolation` policies); without it the first check fails
//! with a message saying so.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use attestor_repo::verdict_ledger::{Decision, NewVerdict};
use attestor_repo::{sbom_entries, verdict_ledger, Database, TenantId};
use common::*;
use diesel::sql_types::Uuid as SqlUuid;
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use proptest::prelude::*;
use serde_json::json;

#[derive(Debug, Clone)]
enum Op {
    /// Commit one SBOM.
    Sbom,
    /// Commit one ledger entry.
    Ledger,
    /// Insert, then fail: rolled back.
    Rollback,
    /// Insert, then hang; the future is dropped after `ms` milliseconds.
    Cancel { ms: u64 },
    /// Insert, then panic inside the closure.
    Panic,
    /// Read every table without a tenant filter.
    ReadAll,
    /// `Database::fetch` (pipelined guard) of every SBOM's tenant, no filter.
    Fetch,
    /// `Database::fetch` of a slow query, dropped after `ms` milliseconds.
    FetchCancel { ms: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Sbom),
        2 => Just(Op::Ledger),
        1 => Just(Op::Rollback),
        2 => (0u64..40).prop_map(|ms| Op::Cancel { ms }),
        1 => Just(Op::Panic),
        2 => Just(Op::ReadAll),
        2 => Just(Op::Fetch),
        1 => (0u64..20).prop_map(|ms| Op::FetchCancel { ms }),
    ]
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = SqlUuid)]
    tenant_id: uuid::Uuid,
}

#[derive(Default, Debug, Clone, Copy)]
struct Committed {
    sboms: i64,
    ledger: u64,
}

/// Runs `op` for `t`; returns what it committed.
async fn apply(db: &Database, t: TenantId, op: &Op) -> Committed {
    let doc = gen::cyclonedx(1);
    match op {
        Op::Sbom => {
            run!(db, t, |tx| { sbom_entries::ingest(tx, &doc).await }).unwrap();
            Committed { sboms: 1, ledger: 0 }
        }
        Op::Ledger => {
            let v = NewVerdict {
                subject_digest: "sha256:ab".into(),
                decision: Decision::Fail,
                policy_ref: "p".into(),
                inputs: json!({"t": t}),
            };
            run!(db, t, |tx| { verdict_ledger::append(tx, &v).await }).unwrap();
            Committed { sboms: 0, ledger: 1 }
        }
        Op::Rollback => {
            let e = run!(db, t, |tx| {
                sbom_entries::ingest(tx, &doc).await?;
                Err::<(), _>(attestor_repo::RepoError::invalid("roll back"))
            });
            assert!(e.is_err());
            Committed::default()
        }
        Op::Cancel { ms } => {
            let fut = run_cancellable(db, t, doc);
            let r = tokio::time::timeout(Duration::from_millis(*ms), fut).await;
            assert!(r.is_err(), "the hanging transaction cannot finish");
            Committed::default()
        }
        Op::Panic => {
            let db = db.clone();
            let r = tokio::spawn(async move {
                let _ = run!(db, t, |tx| {
                    sbom_entries::ingest(tx, &doc).await?;
                    panic!("injected panic");
                    #[allow(unreachable_code)]
                    Ok(())
                });
            })
            .await;
            assert!(r.unwrap_err().is_panic());
            Committed::default()
        }
        Op::ReadAll => {
            let rows = run!(db, t, |tx| {
                let mut all = Vec::new();
                for table in TABLES {
                    let rows: Vec<Row> = diesel::sql_query(format!("SELECT tenant_id FROM attestor.{table}"))
                        .load(tx.conn())
                        .await?;
                    all.extend(rows.into_iter().map(|r| (table, r.tenant_id)));
                }
                Ok(all)
            })
            .unwrap();
            for (table, tenant) in rows {
                assert_eq!(
                    tenant,
                    t.as_uuid(),
                    "tenant {t} saw a row of tenant {tenant} in {table}"
                );
            }
            Committed::default()
        }
        Op::Fetch => {
            use attestor_schema::schema::attestor::sbom_entries as s;
            use diesel::QueryDsl;
            let tenants: Vec<uuid::Uuid> = db
                .fetch(
                    attestor_repo::TenantContext::new(t),
                    s::table.select(s::tenant_id),
                )
                .await
                .unwrap();
            assert!(
                tenants.iter().all(|x| *x == t.as_uuid()),
                "fetch for {t} saw another tenant"
            );
            Committed::default()
        }
        Op::FetchCancel { ms } => {
            let fut = db.fetch::<_, Row>(
                attestor_repo::TenantContext::new(t),
                // The sleep runs whether or not the tenant has rows (the
                // subquery runs first: an initplan on PostgreSQL, a subplan
                // on the coordinator before the shards are asked).
                diesel::sql_query(
                    "SELECT x.tenant_id FROM attestor.sbom_entries x \
                      WHERE x.tenant_id = (SELECT attestor_app.require_current_tenant() FROM pg_sleep(0.5))",
                ),
            );
            let r = tokio::time::timeout(Duration::from_millis(*ms), fut).await;
            assert!(r.is_err(), "the slow fetch cannot finish in {ms} ms");
            Committed::default()
        }
    }
}

async fn run_cancellable(db: &Database, t: TenantId, doc: Vec<u8>) {
    let _ = run!(db, t, |tx| {
        sbom_entries::ingest(tx, &doc).await?;
        std::future::pending::<()>().await;
        Ok(())
    });
}

/// Checks out every connection at once and probes it.
async fn assert_pool_clean(db: &Database, pool: u32) {
    let probes = futures_util::future::join_all((0..pool).map(|_| db.probe_idle())).await;
    for p in probes {
        let p = p.unwrap();
        assert!(p.is_clean(), "an idle connection carries state: {p:?}");
    }
}

async fn check_counts(db: &Database, t: TenantId, c: Committed) {
    let (sboms, chain) = run!(db, t, |tx| {
        let n = sbom_entries::list(tx, attestor_repo::PageRequest::first(1000))
            .await?
            .items
            .len() as i64;
        Ok((n, verdict_ledger::verify_chain(tx).await?))
    })
    .unwrap();
    assert_eq!(sboms, c.sboms, "tenant {t}: committed SBOMs");
    assert!(chain.is_valid(), "{chain:?}");
    assert_eq!(chain.entries, c.ledger, "tenant {t}: committed ledger entries");
}

#[test]
fn random_interleavings_never_leak_rows_or_tenants() {
    let tdb = test_db();
    assert!(
        rls_enabled(&tdb),
        "RLS is not enabled and forced on every attestor table: migration 2026-11-28-000004_rls \
         (generated by `cargo xtask gen-rls`) is missing, so tenant isolation cannot hold"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let url = tdb.app_url();
    let config = ProptestConfig {
        cases: 32,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(
        pool in 1u32..=2,
        steps in proptest::collection::vec((0usize..3, op(), any::<bool>()), 1..10),
    )| {
        rt.block_on(async {
            let db = Database::connect(common::config(url.clone()).with_max_connections(pool))
                .await
                .unwrap();
            let tenants = [TenantId::new_random(), TenantId::new_random(), TenantId::new_random()];
            let mut committed: HashMap<TenantId, Committed> = HashMap::new();
            let mut i = 0;
            while i < steps.len() {
                let (ti, ref op, concurrent) = steps[i];
                let t = tenants[ti];
                if concurrent && i + 1 < steps.len() {
                    // Two operations interleaved on the same pool.
                    let (tj, ref op2, _) = steps[i + 1];
                    let t2 = tenants[tj];
                    let (a, b) = tokio::join!(apply(&db, t, op), apply(&db, t2, op2));
                    for (t, c) in [(t, a), (t2, b)] {
                        let e = committed.entry(t).or_default();
                        e.sboms += c.sboms;
                        e.ledger += c.ledger;
                    }
                    i += 2;
                } else {
                    let c = apply(&db, t, op).await;
                    let e = committed.entry(t).or_default();
                    e.sboms += c.sboms;
                    e.ledger += c.ledger;
                    i += 1;
                }
                assert_pool_clean(&db, pool).await;
            }
            for t in tenants {
                apply(&db, t, &Op::ReadAll).await;
                check_counts(&db, t, committed.get(&t).copied().unwrap_or_default()).await;
            }
            assert_pool_clean(&db, pool).await;
        });
    });
}
