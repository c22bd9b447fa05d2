//! `Database::fetch`: one statement with the guard spliced into its own
//! message group. The query sees the tenant, the actor and the statement
//! timeout (cached and uncached statements alike), only the tenant's rows,
//! and every way out leaves a clean pool.

mod common;

use std::time::Duration;

use attestor_repo::{sbom_entries, RepoError, TenantContext, TenantContextMode, TenantId};
use attestor_schema::schema::attestor::sbom_entries as s;
use common::*;
use diesel::sql_types::{Nullable, Text};
use diesel::{ExpressionMethods, QueryDsl, QueryableByName};

#[derive(QueryableByName, Debug)]
struct Setting {
    #[diesel(sql_type = Nullable<Text>)]
    v: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_runs_inside_the_tenant_transaction() {
    in_both_modes(|| async {
        let tdb = test_db();
        let db = app(&tdb, 1).await;
        let (a, b) = (TenantId::new_random(), TenantId::new_random());
        for (t, n) in [(a, 3u8), (b, 2)] {
            for i in 0..n {
                let doc = gen::cyclonedx(i as usize);
                run!(db, t, |tx| { sbom_entries::ingest(tx, &doc).await }).unwrap();
            }
        }
        let pid = db.probe_idle().await.unwrap().backend_pid;
        // Uncacheable (sql_query) and cacheable (DSL) statements, each twice.
        for _ in 0..2 {
            let got: Vec<Setting> = db
                .fetch(
                    TenantContext::new(a).with_actor("reader"),
                    diesel::sql_query("SELECT current_setting('app.tenant_id', true) AS v"),
                )
                .await
                .unwrap();
            assert_eq!(got[0].v.as_deref(), Some(a.to_string().as_str()));
            // No tenant filter: RLS alone scopes the rows.
            let ids: Vec<uuid::Uuid> = db
                .fetch(TenantContext::new(b), s::table.select(s::tenant_id))
                .await
                .unwrap();
            assert_eq!(ids.len(), 2);
            assert!(ids.iter().all(|t| *t == b.as_uuid()));
            let newest: Vec<uuid::Uuid> = db
                .fetch(
                    TenantContext::new(a),
                    s::table
                        .filter(s::tenant_id.eq(a.as_uuid()))
                        .order((s::created_at.desc(), s::id.desc()))
                        .limit(2)
                        .select(s::id),
                )
                .await
                .unwrap();
            assert_eq!(newest.len(), 2);
        }
        let probe = db.probe_idle().await.unwrap();
        assert!(probe.is_clean(), "{probe:?}");
        assert_eq!(probe.backend_pid, pid);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_can_run_in_spawned_tasks() {
    in_both_modes(|| async {
        // Compiles only while fetch's future is Send for every caller (the queue
        // worker spawns its completions); runs tenants side by side on two
        // connections.
        let tdb = test_db();
        let db = app(&tdb, 2).await;
        let tenants: Vec<TenantId> = (0..4).map(|_| TenantId::new_random()).collect();
        let tasks: Vec<_> = tenants
            .iter()
            .map(|&t| {
                let db = db.clone();
                tokio::spawn(async move {
                    db.fetch(
                        TenantContext::new(t),
                        diesel::sql_query("SELECT current_setting('app.tenant_id', true) AS v"),
                    )
                    .await
                })
            })
            .collect();
        for (task, t) in tasks.into_iter().zip(&tenants) {
            let got: Vec<Setting> = task.await.unwrap().unwrap();
            assert_eq!(got[0].v.as_deref(), Some(t.to_string().as_str()));
        }
        assert!(db.probe_idle().await.unwrap().is_clean());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_errors_and_cancellation_leave_a_clean_pool() {
    in_both_modes(|| async {
        let tdb = test_db();
        let db = app(&tdb, 1).await;
        let t = TenantId::new_random();
        let pid = db.probe_idle().await.unwrap().backend_pid;
        let e = db
            .fetch::<_, Setting>(
                TenantContext::new(t),
                diesel::sql_query("SELECT 'x'::uuid::text AS v"),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, RepoError::InvalidInput { .. }), "{e:?}");
        let probe = db.probe_idle().await.unwrap();
        assert!(probe.is_clean() && probe.backend_pid == pid, "{probe:?}");

        let fut = db.fetch::<_, Setting>(
            TenantContext::new(t),
            diesel::sql_query("SELECT pg_sleep(2)::text AS v"),
        );
        assert!(tokio::time::timeout(Duration::from_millis(200), fut)
            .await
            .is_err());
        let probe = db.probe_idle().await.unwrap();
        assert!(probe.is_clean(), "{probe:?}");
        assert_ne!(
            probe.backend_pid, pid,
            "a cancelled fetch discards its connection"
        );

        let e = db
            .fetch::<_, Setting>(
                TenantContext::new(t).with_actor("a\0"),
                diesel::sql_query("SELECT '' AS v"),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, RepoError::InvalidInput { .. }), "{e:?}");
    })
    .await;
}

/// A statement that fails after its guard succeeded: the error is reported,
/// the Sync ends the failed implicit transaction, and the same connection
/// serves the next fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_statement_leaves_the_connection_clean() {
    in_both_modes(|| async {
        let tdb = test_db();
        let db = app(&tdb, 1).await;
        let t = TenantId::new_random();
        let doc = gen::cyclonedx(4);
        run!(db, t, |tx| { sbom_entries::ingest(tx, &doc).await }).unwrap();
        let pid = db.probe_idle().await.unwrap().backend_pid;
        // Filtered by tenant, as every repository statement is: a Citus
        // coordinator cannot plan a generic plan (the pools' default) of a
        // statement with a parameter that goes to every shard ("could not
        // create distributed plan"); this one goes to the tenant's shard.
        let quotient = |divisor: i32| {
            db.fetch::<_, i32>(
                TenantContext::new(t),
                s::table
                    .filter(s::tenant_id.eq(t.as_uuid()))
                    .select(s::component_count / divisor),
            )
        };
        assert_eq!(quotient(2).await.unwrap(), [2], "first run: prepared on the way");
        let e = quotient(0).await.unwrap_err();
        assert!(e.to_string().contains("division by zero"), "{e:?}");
        let probe = db.probe_idle().await.unwrap();
        assert!(probe.is_clean() && probe.backend_pid == pid, "{probe:?}");
        assert_eq!(quotient(1).await.unwrap(), [4]);
        let probe = db.probe_idle().await.unwrap();
        assert!(probe.is_clean() && probe.backend_pid == pid, "{probe:?}");
    })
    .await;
}

/// The actor and the configured statement timeout travel with the guard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_carries_the_actor_and_the_statement_timeout() {
    in_both_modes(|| async {
        let tdb = test_db();
        let mut config = config(tdb.app_url()).with_max_connections(1);
        config.statement_timeout = Some(Duration::from_millis(300));
        let db = attestor_repo::Database::connect(config).await.unwrap();
        let t = TenantId::new_random();
        let pid = db.probe_idle().await.unwrap().backend_pid;
        for q in ["app.actor", "statement_timeout", "app.tenant_id"] {
            let got: Vec<Setting> = db
                .fetch(
                    TenantContext::new(t).with_actor("auditor"),
                    diesel::sql_query(format!("SELECT current_setting('{q}', true) AS v")),
                )
                .await
                .unwrap();
            let want = match q {
                "app.actor" => "auditor".to_owned(),
                "statement_timeout" => "300ms".to_owned(),
                _ => t.to_string(),
            };
            assert_eq!(got[0].v.as_deref(), Some(want.as_str()), "{q}");
        }
        let e = db
            .fetch::<_, Setting>(
                TenantContext::new(t),
                diesel::sql_query("SELECT pg_sleep(2)::text AS v"),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, RepoError::Timeout { .. }), "{e:?}");
        let probe = db.probe_idle().await.unwrap();
        assert!(probe.is_clean() && probe.backend_pid == pid, "{probe:?}");
    })
    .await;
}

/// If the guard itself fails (here: its prepared statement was dropped by
/// hand), the statement does not run, the error is reported, and the
/// connection, which can no longer guard anything, is replaced. (Under
/// `SET LOCAL` there is no prepared guard; the commit check is dropped
/// instead: that transaction is refused and the connection replaced.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_guard_fails_the_statement_and_replaces_the_connection() {
    in_both_modes(|| async {
        let tdb = test_db();
        let db = app(&tdb, 1).await;
        let t = TenantId::new_random();
        let doc = gen::cyclonedx(3);
        run!(db, t, |tx| { sbom_entries::ingest(tx, &doc).await }).unwrap();
        let pid = db.probe_idle().await.unwrap().backend_pid;
        if mode() == TenantContextMode::SetLocal {
            let r = run!(db, t, |tx| {
                use diesel_async::SimpleAsyncConnection as _;
                sbom_entries::ingest(tx, &gen::cyclonedx(4)).await?;
                tx.conn()
                    .batch_execute("DEALLOCATE attestor_guard_check")
                    .await
                    .map_err(RepoError::from)
            });
            assert!(matches!(r, Err(RepoError::TransactionAborted)), "{r:?}");
            let probe = db.probe_idle().await.unwrap();
            assert!(probe.is_clean(), "{probe:?}");
            assert_ne!(
                probe.backend_pid, pid,
                "the connection without its check was dropped"
            );
            let ids: Vec<uuid::Uuid> = db
                .fetch(TenantContext::new(t), s::table.select(s::id))
                .await
                .unwrap();
            assert_eq!(ids.len(), 1, "the refused transaction stored nothing");
            return;
        }
        run!(db, t, |tx| {
            use diesel_async::SimpleAsyncConnection as _;
            tx.conn()
                .batch_execute("DEALLOCATE attestor_guard")
                .await
                .map_err(RepoError::from)
        })
        .unwrap();
        let e = db
            .fetch::<_, uuid::Uuid>(TenantContext::new(t), s::table.select(s::id))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("attestor_guard"), "{e:?}");
        let probe = db.probe_idle().await.unwrap();
        assert!(probe.is_clean(), "{probe:?}");
        assert_ne!(
            probe.backend_pid, pid,
            "the connection without its guard was dropped"
        );
        let ids: Vec<uuid::Uuid> = db
            .fetch(TenantContext::new(t), s::table.select(s::id))
            .await
            .unwrap();
        assert_eq!(ids.len(), 1);
    })
    .await;
}

#[derive(QueryableByName, Debug)]
struct Big {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    n: i32,
    #[diesel(sql_type = Text)]
    body: String,
}

/// Answers far larger than one socket read (5 MB in 50 rows, then a run of
/// small ones) cross the splice intact, before and after a guarded statement
/// on the same connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answers_cross_the_splice_intact() {
    in_both_modes(|| async {
        let tdb = test_db();
        let db = app(&tdb, 1).await;
        let t = TenantId::new_random();
        for (rows, width) in [(50, 100_000), (5_000, 3), (1, 0)] {
            let got: Vec<Big> = db
                .fetch(
                    TenantContext::new(t),
                    diesel::sql_query(format!(
                        "SELECT g AS n, repeat(chr(65 + g % 26), {width}) || current_setting('app.tenant_id') AS body \
                         FROM generate_series(1, {rows}) g"
                    )),
                )
                .await
                .unwrap();
            assert_eq!(got.len(), rows);
            for (i, row) in got.iter().enumerate() {
                let n = i as i32 + 1;
                assert_eq!(row.n, n);
                let letter = char::from(65 + (n % 26) as u8);
                assert_eq!(row.body.len(), width + 36, "row {n}");
                assert!(row.body[..width].chars().all(|c| c == letter), "row {n}");
                assert_eq!(&row.body[width..], t.to_string(), "row {n}");
            }
        }
        let probe = db.probe_idle().await.unwrap();
        assert!(probe.is_clean(), "{probe:?}");
    })
    .await;
}

/// A result column of a type the driver does not know yet (an enum) makes
/// it look the type up first, and the guard travels with that lookup: the
/// statement itself would run without a tenant. Its result is withheld; once
/// the type is known to the connection, the same fetch works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_lookup_never_carries_the_guard_away_from_the_statement() {
    in_both_modes(|| async {
        let tdb = test_db();
        diesel::connection::SimpleConnection::batch_execute(
            &mut tdb.connect_admin().unwrap(),
            "CREATE TYPE public.guard_mood AS ENUM ('calm', 'busy')",
        )
        .unwrap();
        let db = app(&tdb, 1).await;
        let t = TenantId::new_random();
        let query = || {
            diesel::sql_query(
                "SELECT current_setting('app.tenant_id', true) AS v, 'calm'::public.guard_mood AS m",
            )
        };
        let r = db.fetch::<_, Setting>(TenantContext::new(t), query()).await;
        match mode() {
            TenantContextMode::SetConfig => assert!(
                matches!(&r, Err(RepoError::Internal { .. })),
                "the result read without a tenant is withheld: {r:?}"
            ),
            // A one-statement transaction: the lookup runs inside it too.
            TenantContextMode::SetLocal => {
                assert_eq!(r.unwrap()[0].v.as_deref(), Some(t.to_string().as_str()))
            }
        }
        let got = db
            .fetch::<_, Setting>(TenantContext::new(t), query())
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].v.as_deref(), Some(t.to_string().as_str()));
        let probe = db.probe_idle().await.unwrap();
        assert!(probe.is_clean(), "{probe:?}");
    })
    .await;
}
