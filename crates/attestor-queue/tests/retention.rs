//! Retention against a real PostgreSQL, as the worker role: the purge
//! removes exactly the finished jobs past their retention, never a queued or
//! running one, the tenant-by-tenant purge (Citus's form) keeps its limit
//! across tenants on any server, dead jobs stay re-queueable until theirs
//! ends, a purge holding its locks does not block a concurrent claim, and
//! the worker's purge task empties the table of finished jobs while the
//! entries stay; and the queue's lean hot path: claims, heartbeats and
//! releases change no indexed column and are HOT updates.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use attestor_queue::testing::{fake_log_index, fake_rekor_entry, fake_verified, FakeBehavior, FakeSubmitter};
use attestor_queue::worker::complete_in_tenant;
use attestor_queue::*;
use common::*;
use diesel::sql_types::{Text, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

fn retention() -> Retention {
    Retention {
        succeeded: HOUR,
        dead: DAY,
    }
}

fn opts(batch: u32) -> ClaimOptions {
    ClaimOptions::new("retention-test", batch, Duration::from_secs(30))
        .per_tenant(attestor_testdb::shared().citus().is_some())
}

/// The HOT updates the test's statements made, as this connection's
/// transaction counts them: on a Citus coordinator the rows live and are
/// updated on the workers, so the coordinator counts none there; its
/// shards' own counters ([`shard_updates`]) must count them instead.
fn expected_hot(n: i64) -> (i64, i64) {
    if on_citus() {
        (0, 0)
    } else {
        (n, n)
    }
}

fn on_citus() -> bool {
    attestor_testdb::shared().citus().is_some()
}

/// On a Citus coordinator: the queue table's updates (all, HOT) as its
/// shard placements on the workers count them (cumulative counters of
/// this database), read through `run_command_on_workers`. A shard's name
/// resolves with `to_regclass` even where Citus hides shards from catalog
/// queries; on a worker without the shard it is NULL.
async fn shard_updates(admin: &mut AsyncPgConnection) -> (i64, i64) {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        nodes: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        answered: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        upd: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        hot: i64,
    }
    let r: Row = diesel::sql_query(
        "WITH shards AS (
             SELECT string_agg('to_regclass(' || quote_literal(shard_name(logicalrelid, shardid)) || ')', ', ') AS list
               FROM pg_dist_shard WHERE logicalrelid = 'attestor.rekor_submission_queue'::regclass),
         answers AS (
             SELECT w.success, w.result
               FROM shards, run_command_on_workers(
                   format('SELECT concat_ws('','', coalesce(sum(pg_stat_get_tuples_updated(c)), 0), \
                                              coalesce(sum(pg_stat_get_tuples_hot_updated(c)), 0)) \
                             FROM unnest(ARRAY[%s]) AS c', shards.list)) AS w)
         SELECT count(*) AS nodes, count(*) FILTER (WHERE success) AS answered,
                coalesce(sum(split_part(result, ',', 1)::bigint) FILTER (WHERE success), 0)::bigint AS upd,
                coalesce(sum(split_part(result, ',', 2)::bigint) FILTER (WHERE success), 0)::bigint AS hot
           FROM answers",
    )
    .get_result(admin)
    .await
    .unwrap();
    assert!(r.nodes > 0, "no worker answered");
    assert_eq!(
        r.answered, r.nodes,
        "a worker failed to report its shards' counters"
    );
    (r.upd, r.hot)
}

/// On a Citus coordinator: waits until the shards' counters (which a
/// worker's backend reports about a second after its transaction) have
/// moved by `n` updates since `before`, and returns the (all, HOT) delta.
/// Elsewhere `(n, n)`, which the caller's own assertion already proved.
async fn shard_delta(admin: &mut AsyncPgConnection, before: (i64, i64), n: i64) -> (i64, i64) {
    if !on_citus() {
        return (n, n);
    }
    let started = Instant::now();
    loop {
        let now = shard_updates(admin).await;
        let delta = (now.0 - before.0, now.1 - before.1);
        if delta.0 >= n || started.elapsed() > Duration::from_secs(15) {
            return delta;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Claim exactly `job` (the only queued job of the database when called).
async fn claim_one(w: &mut AsyncPgConnection) -> ClaimedJob {
    let mut c = claim(w, &opts(1)).await.unwrap();
    assert_eq!(c.len(), 1);
    c.pop().unwrap()
}

async fn succeed(db: &attestor_repo::Database, job: &ClaimedJob) {
    let value = fake_rekor_entry(job.job_id(), fake_log_index(job.job_id()));
    let entry = fake_verified(&value);
    complete_in_tenant(db, "retention-test", &job.lease, &entry, &value)
        .await
        .unwrap();
}

/// Simulated time: the job finished `ago` ago.
async fn finished_ago(admin: &mut AsyncPgConnection, job: Uuid, ago: &str) {
    diesel::sql_query(format!(
        "UPDATE attestor.rekor_submission_queue SET finished_at = now() - interval '{ago}' WHERE id = $1"
    ))
    .bind::<SqlUuid, _>(job)
    .execute(admin)
    .await
    .unwrap();
}

/// Simulated time: every job was enqueued and last touched long ago.
async fn age_everything(admin: &mut AsyncPgConnection) {
    diesel::sql_query(
        "UPDATE attestor.rekor_submission_queue
            SET created_at = now() - interval '30 days', run_at = least(run_at, now() - interval '30 days')",
    )
    .execute(admin)
    .await
    .unwrap();
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    status: String,
}

async fn jobs(admin: &mut AsyncPgConnection) -> HashSet<(Uuid, String)> {
    diesel::sql_query("SELECT id, status FROM attestor.rekor_submission_queue")
        .load::<Row>(admin)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r.status))
        .collect()
}

/// One job in each state: queued, running, succeeded (old and fresh), dead
/// (past the dead retention, and past only the succeeded one).
struct Fixture {
    queued: Uuid,
    running: Uuid,
    old_success: Uuid,
    fresh_success: Uuid,
    old_dead: Uuid,
    young_dead: Uuid,
}

async fn fixture(
    db: &attestor_repo::Database,
    w: &mut AsyncPgConnection,
    admin: &mut AsyncPgConnection,
) -> Fixture {
    let t = tenant();
    let next = async |label: &str| enqueue_one(db, t, label, 3).await.job_id;

    let old_success = next("old-success").await;
    let j = claim_one(w).await;
    succeed(db, &j).await;
    let fresh_success = next("fresh-success").await;
    let j = claim_one(w).await;
    succeed(db, &j).await;
    let old_dead = next("old-dead").await;
    let j = claim_one(w).await;
    fail(w, &j.lease, "refused", Failure::Permanent).await.unwrap();
    let young_dead = next("young-dead").await;
    let j = claim_one(w).await;
    fail(w, &j.lease, "refused", Failure::Permanent).await.unwrap();
    let running = next("running").await;
    assert_eq!(claim_one(w).await.job_id(), running);
    let queued = next("queued").await;

    age_everything(admin).await;
    finished_ago(admin, old_success, "2 hours").await;
    finished_ago(admin, fresh_success, "10 minutes").await;
    finished_ago(admin, old_dead, "2 days").await;
    finished_ago(admin, young_dead, "2 hours").await;
    Fixture {
        queued,
        running,
        old_success,
        fresh_success,
        old_dead,
        young_dead,
    }
}

#[tokio::test]
async fn purge_removes_exactly_the_expired_finished_jobs() {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    let mut w = connect(&tdb.worker_url()).await;
    let mut admin = connect(&tdb.admin_url()).await;
    let f = fixture(&db, &mut w, &mut admin).await;

    // Small batches: one row per statement, until nothing is left.
    let mut purged = Purged::default();
    loop {
        let p = purge(&mut w, &retention(), 1).await.unwrap();
        assert!(p.total() <= 1, "a purge never deletes more than its limit");
        if p.total() == 0 {
            break;
        }
        purged.succeeded += p.succeeded;
        purged.dead += p.dead;
    }
    assert_eq!(
        purged,
        Purged {
            succeeded: 1,
            dead: 1
        }
    );
    let expected: HashSet<(Uuid, String)> = [
        (f.queued, "queued"),
        (f.running, "running"),
        (f.fresh_success, "succeeded"),
        (f.young_dead, "dead"),
    ]
    .into_iter()
    .map(|(id, s)| (id, s.to_owned()))
    .collect();
    assert_eq!(jobs(&mut admin).await, expected);
    assert!(!expected
        .iter()
        .any(|(id, _)| *id == f.old_success || *id == f.old_dead));

    // The history of the purged success stays: its entry and the entry's audit row.
    assert_eq!(
        count(&mut admin, "SELECT count(*) AS n FROM attestor.rekor_entries").await,
        2
    );
    assert_eq!(
        count(
            &mut admin,
            "SELECT count(*) AS n FROM attestor.audit_log WHERE table_name = 'rekor_entries' AND actor = 'retention-test'"
        )
        .await,
        2
    );
    // The backlog view still counts what is left, per status.
    let b = backlog(&mut w).await.unwrap();
    assert_eq!(
        (
            b.count("queued"),
            b.count("running"),
            b.count("succeeded"),
            b.count("dead")
        ),
        (1, 1, 1, 1)
    );
    assert!(matches!(
        purge(&mut w, &retention(), 0).await,
        Err(QueueError::InvalidInput(_))
    ));
}

#[tokio::test]
async fn the_worker_role_cannot_delete_unfinished_jobs() {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    let mut w = connect(&tdb.worker_url()).await;
    let mut admin = connect(&tdb.admin_url()).await;
    let f = fixture(&db, &mut w, &mut admin).await;

    // A blanket DELETE by the worker: its policy passes finished rows only.
    let n = diesel::sql_query("DELETE FROM attestor.rekor_submission_queue")
        .execute(&mut w)
        .await
        .unwrap();
    assert_eq!(n, 4);
    let left: HashSet<Uuid> = jobs(&mut admin).await.into_iter().map(|(id, _)| id).collect();
    assert_eq!(left, HashSet::from([f.queued, f.running]));
}

#[tokio::test]
async fn dead_jobs_are_requeueable_until_their_retention_ends() {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    let mut w = connect(&tdb.worker_url()).await;
    let mut admin = connect(&tdb.admin_url()).await;
    let f = fixture(&db, &mut w, &mut admin).await;
    let t = job_tenant(&mut admin, f.young_dead).await;

    // Inspectable with the time its retention counts from.
    let dead = list_dead(&mut w, Some(t), 10).await.unwrap();
    assert_eq!(dead.len(), 2);
    let young = dead.iter().find(|d| d.id == f.young_dead).unwrap();
    assert!(young.finished_at < chrono::Utc::now() - chrono::Duration::minutes(110));

    purge(&mut w, &retention(), 100).await.unwrap();
    assert_eq!(
        list_dead(&mut w, Some(t), 10)
            .await
            .unwrap()
            .iter()
            .map(|d| d.id)
            .collect::<Vec<_>>(),
        vec![f.young_dead]
    );
    // Past the succeeded retention but within the dead one: still requeueable.
    requeue_dead(&mut w, t, f.young_dead).await.unwrap();
    let s = job_state(&mut admin, f.young_dead).await;
    assert_eq!((s.status.as_str(), s.attempts), ("queued", 0));
    assert_eq!(
        count(
            &mut admin,
            &format!(
                "SELECT count(*) AS n FROM attestor.rekor_submission_queue WHERE id = '{}' AND finished_at IS NULL",
                f.young_dead
            )
        )
        .await,
        1,
        "requeue restarts the job's life"
    );
    // Past its retention: gone.
    assert!(matches!(
        requeue_dead(&mut w, t, f.old_dead).await,
        Err(QueueError::NotFound { .. })
    ));
    // A requeued job is never purged, however old its history.
    assert_eq!(
        purge(
            &mut w,
            &Retention {
                succeeded: Duration::ZERO,
                dead: Duration::ZERO
            },
            100
        )
        .await
        .unwrap(),
        Purged {
            succeeded: 1,
            dead: 0
        }
    );
    assert!(jobs(&mut admin)
        .await
        .contains(&(f.young_dead, "queued".to_owned())));
}

async fn job_tenant(admin: &mut AsyncPgConnection, job: Uuid) -> Uuid {
    #[derive(QueryableByName)]
    struct T {
        #[diesel(sql_type = SqlUuid)]
        tenant_id: Uuid,
    }
    diesel::sql_query("SELECT tenant_id FROM attestor.rekor_submission_queue WHERE id = $1")
        .bind::<SqlUuid, _>(job)
        .get_result::<T>(admin)
        .await
        .unwrap()
        .tenant_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_purge_does_not_block_a_concurrent_claim() {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    let mut w = connect(&tdb.worker_url()).await;
    let mut admin = connect(&tdb.admin_url()).await;
    let t = tenant();
    seed(&db, t, "done", 50).await;
    let claimed = claim(&mut w, &opts(50)).await.unwrap();
    for j in &claimed {
        succeed(&db, j).await;
    }
    seed(&db, t, "todo", 20).await;

    // The purge deletes the 50 finished jobs and keeps its transaction open.
    let mut purger = connect(&tdb.worker_url()).await;
    diesel::sql_query("BEGIN").execute(&mut purger).await.unwrap();
    let zero = Retention {
        succeeded: Duration::ZERO,
        dead: Duration::ZERO,
    };
    assert_eq!(purge(&mut purger, &zero, 1000).await.unwrap().succeeded, 50);

    // Meanwhile a claim (with a short statement timeout) gets every queued job.
    let mut claimer = connect(&tdb.worker_url()).await;
    diesel::sql_query("SET statement_timeout = '3s'")
        .execute(&mut claimer)
        .await
        .unwrap();
    let started = Instant::now();
    let got = claim(&mut claimer, &opts(100)).await.unwrap();
    assert_eq!(got.len(), 20);
    assert!(started.elapsed() < Duration::from_secs(2));
    // And a second purge does not wait for the first either: it skips its rows.
    assert_eq!(purge(&mut claimer, &zero, 1000).await.unwrap().total(), 0);

    diesel::sql_query("COMMIT").execute(&mut purger).await.unwrap();
    assert_eq!(
        count(
            &mut admin,
            "SELECT count(*) AS n FROM attestor.rekor_submission_queue"
        )
        .await,
        20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_purges_finished_jobs_and_keeps_their_entries() {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    seed(&db, tenant(), "a", 30).await;
    seed(&db, tenant(), "b", 30).await;
    let mut cfg = WorkerConfig::new("purging-worker", fake_root())
        .concurrency(8, 8)
        .poll_interval(Duration::from_millis(50))
        .retention(Some(Retention {
            succeeded: Duration::ZERO,
            dead: DAY,
        }));
    cfg.purge_interval = Duration::from_millis(100);
    cfg.purge_batch = 7;
    let sub = Arc::new(FakeSubmitter::new(FakeBehavior::Succeed));
    let h = Worker::new(cfg, tdb.worker_url(), db.clone(), sub).start();
    let mut admin = connect(&tdb.admin_url()).await;
    let started = Instant::now();
    while count(
        &mut admin,
        "SELECT count(*) AS n FROM attestor.rekor_submission_queue",
    )
    .await
        > 0
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the table never emptied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = h.shutdown(Duration::from_secs(5)).await;
    assert_eq!((m.completed, m.purged), (60, 60));
    assert_eq!(
        count(&mut admin, "SELECT count(*) AS n FROM attestor.rekor_entries").await,
        60
    );
}

#[derive(QueryableByName)]
struct Updates {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    upd: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    hot: i64,
}

/// The queue table's updates so far in this transaction (all, HOT).
async fn xact_updates(conn: &mut AsyncPgConnection) -> (i64, i64) {
    let u: Updates = diesel::sql_query(
        "SELECT n_tup_upd AS upd, n_tup_hot_upd AS hot FROM pg_stat_xact_user_tables
          WHERE schemaname = 'attestor' AND relname = 'rekor_submission_queue'",
    )
    .get_result(conn)
    .await
    .unwrap();
    (u.upd, u.hot)
}

/// Ten jobs: their row versions from enqueue, claim and one more update
/// fit on one page with room to spare, so a non-HOT update here can only
/// mean that the update changed an indexed column.
const HOT_JOBS: i32 = 10;

#[tokio::test]
async fn a_claim_and_a_release_are_hot_updates() {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    let mut w = connect(&tdb.worker_url()).await;
    let mut admin = connect(&tdb.admin_url()).await;
    seed(&db, tenant(), "hot", HOT_JOBS).await;
    let on_shards = if on_citus() {
        shard_updates(&mut admin).await
    } else {
        (0, 0)
    };

    // The view counts this backend's updates not yet reported: compare
    // before and after, inside one transaction.
    diesel::sql_query("BEGIN").execute(&mut w).await.unwrap();
    let before = xact_updates(&mut w).await;
    let jobs = claim(&mut w, &opts(HOT_JOBS as u32)).await.unwrap();
    assert_eq!(jobs.len(), HOT_JOBS as usize);
    let claimed = xact_updates(&mut w).await;
    assert_eq!(
        (claimed.0 - before.0, claimed.1 - before.1),
        expected_hot(HOT_JOBS as i64),
        "a claim changes no indexed column: every row is updated in place"
    );
    for j in &jobs {
        release(&mut w, &j.lease).await.unwrap();
    }
    let released = xact_updates(&mut w).await;
    assert_eq!(
        (released.0 - claimed.0, released.1 - claimed.1),
        expected_hot(HOT_JOBS as i64),
        "a release keeps run_at and changes no indexed column"
    );
    diesel::sql_query("COMMIT").execute(&mut w).await.unwrap();
    // On a coordinator, the shards counted the claims and the releases.
    let n = 2 * HOT_JOBS as i64;
    assert_eq!(
        shard_delta(&mut admin, on_shards, n).await,
        (n, n),
        "every claim and release is HOT on the shard placements"
    );
    // Released jobs are claimable again at once.
    assert_eq!(
        claim(&mut w, &opts(HOT_JOBS as u32)).await.unwrap().len(),
        HOT_JOBS as usize
    );
}

#[tokio::test]
async fn a_heartbeat_is_a_hot_update() {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    let mut w = connect(&tdb.worker_url()).await;
    seed(&db, tenant(), "hb", HOT_JOBS).await;
    let mut admin = connect(&tdb.admin_url()).await;
    // The shards report a transaction's counts about a second after it, so
    // the claim's come in with the heartbeats': count from before it.
    let on_shards = if on_citus() {
        shard_updates(&mut admin).await
    } else {
        (0, 0)
    };
    let jobs = claim(&mut w, &opts(HOT_JOBS as u32)).await.unwrap();
    assert_eq!(jobs.len(), HOT_JOBS as usize);
    // The enqueued row versions are dead: reclaim their space now (page
    // pruning does the same in a running queue, at its own moment).
    diesel::sql_query("VACUUM attestor.rekor_submission_queue")
        .execute(&mut admin)
        .await
        .unwrap();

    diesel::sql_query("BEGIN").execute(&mut w).await.unwrap();
    let before = xact_updates(&mut w).await;
    for j in &jobs {
        heartbeat(&mut w, &j.lease, Duration::from_secs(60))
            .await
            .unwrap();
    }
    let after = xact_updates(&mut w).await;
    // No indexed column changes and room on the page: every heartbeat is HOT.
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        expected_hot(HOT_JOBS as i64)
    );
    diesel::sql_query("ROLLBACK").execute(&mut w).await.unwrap();
    // The shards count a rolled-back transaction's updates too: the claim's
    // and the heartbeats'.
    let n = 2 * HOT_JOBS as i64;
    assert_eq!(
        shard_delta(&mut admin, on_shards, n).await,
        (n, n),
        "every claim and heartbeat is HOT on the shard placements"
    );
}

/// The purge's tenant-by-tenant form (the one a Citus coordinator takes)
/// runs on any server, and its limit counts across tenants: three tenants
/// with two expired successes each, purged three at a time, go in two
/// calls of exactly three. The probe tells the servers apart.
#[tokio::test]
async fn the_tenant_by_tenant_purge_keeps_its_limit_across_tenants() {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    let mut w = connect(&tdb.worker_url()).await;
    let mut admin = connect(&tdb.admin_url()).await;

    let expected = if attestor_testdb::shared().citus().is_some() {
        Topology::Citus
    } else {
        Topology::Plain
    };
    assert_eq!(Topology::probe(&mut w).await.unwrap(), expected);

    for _ in 0..3 {
        let t = tenant();
        for label in ["a", "b"] {
            let job = enqueue_one(&db, t, label, 3).await.job_id;
            let j = claim_one(&mut w).await;
            assert_eq!(j.job_id(), job);
            succeed(&db, &j).await;
            finished_ago(&mut admin, job, "2 hours").await;
        }
    }

    let three = Purged {
        succeeded: 3,
        dead: 0,
    };
    assert_eq!(
        purge_on(&mut w, Topology::Citus, &retention(), 3).await.unwrap(),
        three
    );
    assert_eq!(
        purge_on(&mut w, Topology::Citus, &retention(), 3).await.unwrap(),
        three
    );
    let none = purge_on(&mut w, Topology::Citus, &retention(), 3).await.unwrap();
    assert_eq!(none.total(), 0);
    assert!(jobs(&mut admin).await.is_empty());
}
