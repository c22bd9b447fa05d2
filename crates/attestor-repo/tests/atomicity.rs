//! A tenant transaction commits everything or nothing, and says which: the
//! opening and the first statement share one fate, a transaction PostgreSQL
//! rolled back is never `Ok`, and `fetch` never leaves a transaction open.
//! Against a real PostgreSQL as `attestor_app`, pool of one connection.

mod common;

use attestor_repo::scoped_futures::ScopedFutureExt as _;
use attestor_repo::{RepoError, TenantContext, TenantId};
use common::*;
use diesel::sql_types::{BigInt, Integer};
use diesel::QueryableByName;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection as _};

#[derive(QueryableByName, Debug)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName, Debug)]
struct I {
    #[diesel(sql_type = Integer)]
    n: i32,
}

/// A table without RLS that `attestor_app` may write: a statement that ran
/// outside the transaction would stay committed here (RLS tables refuse a
/// statement without a tenant, which would hide the flaw).
fn probe_table(tdb: &attestor_testdb::TestDatabase<'_>) {
    diesel::connection::SimpleConnection::batch_execute(
        &mut tdb.connect_admin().unwrap(),
        "CREATE TABLE public.guard_probe (n int NOT NULL); \
         GRANT SELECT, INSERT ON public.guard_probe TO attestor_app",
    )
    .unwrap();
}

fn probe_rows(tdb: &attestor_testdb::TestDatabase<'_>) -> i64 {
    diesel::RunQueryDsl::get_result::<N>(
        diesel::sql_query("SELECT count(*) AS n FROM public.guard_probe"),
        &mut tdb.connect_admin().unwrap(),
    )
    .unwrap()
    .n
}

async fn insert_probe(tx: &mut attestor_repo::TenantTx, n: i32) -> Result<(), RepoError> {
    diesel::sql_query(format!("INSERT INTO public.guard_probe VALUES ({n})"))
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// The opening (`BEGIN` and the guard) fails as a whole: the actor cannot
/// be converted to the connection's client encoding. Neither the first
/// statement nor a later one may run outside the transaction, and the
/// closure's `Ok` must not become the transaction's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_opening_runs_nothing_and_is_never_ok() {
    let tdb = test_db();
    probe_table(&tdb);
    let db = app(&tdb, 1).await;
    let t = TenantId::new_random();
    let before = db.probe_idle().await.unwrap().backend_pid;
    for swallow in [false, true] {
        // A session setting that outlives the transaction: every later
        // message's text is read as EUC_JP, in which the actor's UTF-8 bytes
        // are invalid.
        tx(&db, t, |tx| {
            async move {
                tx.conn().batch_execute("SET client_encoding = 'EUC_JP'").await?;
                Ok(())
            }
            .scope_boxed()
        })
        .await
        .unwrap();
        let r = db
            .transaction(TenantContext::new(t).with_actor("\u{1F600}"), move |tx| {
                async move {
                    let first = insert_probe(tx, 1).await;
                    if !swallow {
                        first?;
                    }
                    insert_probe(tx, 2).await?;
                    Ok::<_, RepoError>(())
                }
                .scope_boxed()
            })
            .await;
        assert!(r.is_err(), "swallow={swallow}: {r:?}");
        assert_eq!(
            probe_rows(&tdb),
            0,
            "swallow={swallow}: nothing may stay committed"
        );
        let probe = db.probe_idle().await.unwrap();
        assert!(probe.is_clean(), "{probe:?}");
        assert_ne!(probe.backend_pid, before, "the connection was replaced");
    }
    // The next transaction works.
    tx(&db, t, |tx| {
        async move { insert_probe(tx, 3).await }.scope_boxed()
    })
    .await
    .unwrap();
    assert_eq!(probe_rows(&tdb), 1);
}

/// The guard statement is gone (dropped by hand): the opening fails after
/// `BEGIN`, the first statement fails with its error, nothing is written,
/// and the connection is replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_guard_statement_fails_the_transaction_and_replaces_the_connection() {
    let tdb = test_db();
    probe_table(&tdb);
    let db = app(&tdb, 1).await;
    let t = TenantId::new_random();
    let before = db.probe_idle().await.unwrap().backend_pid;
    tx(&db, t, |tx| {
        async move {
            tx.conn().batch_execute("DEALLOCATE attestor_guard_actor").await?;
            Ok(())
        }
        .scope_boxed()
    })
    .await
    .unwrap();
    let r = tx(&db, t, |tx| {
        async move {
            let _ = insert_probe(tx, 1).await;
            insert_probe(tx, 2).await
        }
        .scope_boxed()
    })
    .await;
    assert!(r.is_err(), "{r:?}");
    assert_eq!(probe_rows(&tdb), 0);
    let probe = db.probe_idle().await.unwrap();
    assert!(probe.is_clean() && probe.backend_pid != before, "{probe:?}");
    tx(&db, t, |tx| {
        async move { insert_probe(tx, 3).await }.scope_boxed()
    })
    .await
    .unwrap();
    assert_eq!(probe_rows(&tdb), 1);
}

/// A statement fails while its rows stream (its error raised after the row
/// stream opened): the closure swallows it and returns `Ok`. PostgreSQL
/// rolls the transaction back, so the guard must not say `Ok`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_inside_a_row_stream_is_never_committed_as_ok() {
    let tdb = test_db();
    probe_table(&tdb);
    let db = app(&tdb, 1).await;
    let t = TenantId::new_random();
    let pid = db.probe_idle().await.unwrap().backend_pid;
    let r = tx(&db, t, |tx| {
        async move {
            insert_probe(tx, 1).await?;
            let rows = diesel::sql_query("SELECT (1 / (3 - g))::int AS n FROM generate_series(1, 4) g")
                .load::<I>(tx.conn())
                .await;
            assert!(rows.is_err(), "{rows:?}");
            Ok(())
        }
        .scope_boxed()
    })
    .await;
    assert!(matches!(r, Err(RepoError::TransactionAborted)), "{r:?}");
    assert_eq!(probe_rows(&tdb), 0);
    let probe = db.probe_idle().await.unwrap();
    assert!(probe.is_clean() && probe.backend_pid == pid, "{probe:?}");
}

/// `get_result` reads the first row; the statement fails on its second, and
/// the server aborts the transaction. The closure sees `Ok`; the guard must not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_failing_after_its_first_row_is_never_committed_as_ok() {
    let tdb = test_db();
    probe_table(&tdb);
    let db = app(&tdb, 1).await;
    let t = TenantId::new_random();
    let r = tx(&db, t, |tx| {
        async move {
            insert_probe(tx, 1).await?;
            let _ = diesel::sql_query("SELECT (1 / (2 - g))::int AS n FROM generate_series(1, 3) g")
                .get_result::<I>(tx.conn())
                .await;
            Ok(())
        }
        .scope_boxed()
    })
    .await;
    assert!(matches!(r, Err(RepoError::TransactionAborted)), "{r:?}");
    assert_eq!(probe_rows(&tdb), 0);
    let probe = db.probe_idle().await.unwrap();
    assert!(probe.is_clean(), "{probe:?}");
    // A transaction that really committed still says Ok.
    tx(&db, t, |tx| {
        async move { insert_probe(tx, 2).await }.scope_boxed()
    })
    .await
    .unwrap();
    assert_eq!(probe_rows(&tdb), 1);
}

/// `fetch` of a statement that leaves a transaction open fails, and the
/// connection (inside that transaction) is discarded, not pooled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_never_leaves_a_transaction_open() {
    let tdb = test_db();
    let db = app(&tdb, 1).await;
    let t = TenantId::new_random();
    let pid = db.probe_idle().await.unwrap().backend_pid;
    let r = db
        .fetch::<_, I>(TenantContext::new(t), diesel::sql_query("BEGIN"))
        .await;
    assert!(r.is_err(), "{r:?}");
    let probe = db.probe_idle().await.unwrap();
    assert!(probe.is_clean(), "{probe:?}");
    assert_ne!(
        probe.backend_pid, pid,
        "the connection left in a transaction was discarded"
    );
    let one: Vec<I> = db
        .fetch(TenantContext::new(t), diesel::sql_query("SELECT 1 AS n"))
        .await
        .unwrap();
    assert_eq!(one.iter().map(|r| r.n).collect::<Vec<_>>(), [1]);
}

/// The worker pool's transactions are checked the same way: an error raised
/// inside a row stream, swallowed by the closure, is never `Ok`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_transaction_postgres_aborted_is_never_ok() {
    let tdb = test_db();
    let worker =
        attestor_repo::WorkerDatabase::connect(common::config(tdb.worker_url()).with_max_connections(1))
            .await
            .unwrap();
    let r = worker
        .transaction(Some("worker"), |tx| {
            async move {
                let _ = diesel::sql_query("SELECT (1 / (2 - g))::int AS n FROM generate_series(1, 3) g")
                    .get_result::<I>(tx.conn())
                    .await;
                Ok::<_, RepoError>(())
            }
            .scope_boxed()
        })
        .await;
    assert!(matches!(r, Err(RepoError::TransactionAborted)), "{r:?}");
    let probe = worker.probe_idle().await.unwrap();
    assert!(probe.is_clean(), "{probe:?}");
    let ok = worker
        .transaction(None, |tx| {
            async move {
                Ok::<_, RepoError>(
                    diesel::sql_query("SELECT 1 AS n")
                        .get_result::<I>(tx.conn())
                        .await?
                        .n,
                )
            }
            .scope_boxed()
        })
        .await;
    assert_eq!(ok.unwrap(), 1);
}
