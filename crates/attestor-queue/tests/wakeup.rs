//! The queue's wake-up: the enqueue sends it itself, from the node the
//! application talks to, and the table's trigger sends one only on the
//! logical table, never on a Citus shard (a table named
//! `rekor_submission_queue_<shard id>`), where a NOTIFY reaches no listener
//! and makes the worker's transaction impossible to prepare.

mod common;

use std::time::Duration;

use attestor_queue::worker::NOTIFY_CHANNEL;
use attestor_queue::{enqueue_tx, NewJob};
use attestor_repo::TenantContext;
use common::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use scoped_futures::ScopedFutureExt;

/// A connection listening on the queue's channel.
async fn listener(url: &str) -> AsyncPgConnection {
    let mut conn = connect(url).await;
    diesel::sql_query(format!("LISTEN {NOTIFY_CHANNEL}"))
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

/// Whether a notification arrives on `conn` within `wait`.
async fn notified(conn: &mut AsyncPgConnection, wait: Duration) -> bool {
    let mut stream = std::pin::pin!(conn.notifications_stream());
    matches!(tokio::time::timeout(wait, stream.next()).await, Ok(Some(Ok(_))))
}

async fn admin_exec(admin: &mut AsyncPgConnection, sql: &str) {
    use diesel_async::SimpleAsyncConnection as _;
    admin.batch_execute(sql).await.unwrap();
}

#[tokio::test]
async fn enqueue_wakes_listeners_without_the_trigger() {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    let mut admin = connect(&tdb.admin_url()).await;
    // What a shard does: no notification from the table. On a Citus
    // coordinator that is so already (the rows, and their trigger, are on
    // the workers, which a listener on the coordinator does not hear; Citus
    // also refuses ALTER TABLE … TRIGGER on a distributed table); elsewhere
    // the trigger is disabled.
    if tdb.server().citus().is_none() {
        admin_exec(
            &mut admin,
            "ALTER TABLE attestor.rekor_submission_queue DISABLE TRIGGER notify_queue_insert",
        )
        .await;
    }
    let mut listen = listener(&tdb.worker_url()).await;
    let t = tenant();

    enqueue_one(&db, t, "due", 5).await;
    assert!(
        notified(&mut listen, Duration::from_secs(5)).await,
        "a due job wakes the listener"
    );

    // Not due yet, or rolled back: no wake-up.
    db.transaction(TenantContext::new(t), |tx| {
        async move {
            let env = insert_envelope(tx, "later").await?;
            let later = chrono::Utc::now() + chrono::Duration::hours(1);
            enqueue_tx(tx, &NewJob::new(env, key("later")).run_at(later)).await
        }
        .scope_boxed()
    })
    .await
    .unwrap();
    let rolled_back: Result<(), attestor_queue::QueueError> = db
        .transaction(TenantContext::new(t), |tx| {
            async move {
                let env = insert_envelope(tx, "rolled back").await?;
                enqueue_tx(tx, &NewJob::new(env, key("rolled back"))).await?;
                Err(attestor_queue::QueueError::InvalidInput("roll back".into()))
            }
            .scope_boxed()
        })
        .await;
    assert!(rolled_back.is_err());
    assert!(
        !notified(&mut listen, Duration::from_millis(700)).await,
        "no wake-up for a job that is not due or was rolled back"
    );
}

#[tokio::test]
async fn the_trigger_notifies_on_the_logical_table_only() {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let mut admin = connect(&tdb.admin_url()).await;
    let mut listen = listener(&tdb.admin_url()).await;
    // A shard's name, and the logical name in another schema, each with the
    // queue's trigger function.
    for table in [
        "attestor.rekor_submission_queue_102008",
        "scratch.rekor_submission_queue",
    ] {
        admin_exec(&mut admin, "CREATE SCHEMA IF NOT EXISTS scratch").await;
        admin_exec(
            &mut admin,
            &format!(
                "CREATE TABLE {table} (id int); \
                 CREATE TRIGGER notify AFTER INSERT ON {table} \
                 FOR EACH ROW EXECUTE FUNCTION attestor_app.notify_queue()"
            ),
        )
        .await;
    }
    admin_exec(
        &mut admin,
        "INSERT INTO attestor.rekor_submission_queue_102008 VALUES (1)",
    )
    .await;
    assert!(
        !notified(&mut listen, Duration::from_millis(700)).await,
        "a shard's trigger sends nothing"
    );
    admin_exec(
        &mut admin,
        "INSERT INTO scratch.rekor_submission_queue VALUES (1)",
    )
    .await;
    assert!(
        notified(&mut listen, Duration::from_secs(5)).await,
        "the logical table's trigger notifies"
    );
}
