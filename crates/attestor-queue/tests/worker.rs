//! The worker runtime against a real PostgreSQL: draining, envelopes,
//! retries, dead letters, NOTIFY wake-up, graceful shutdown, fairness across
//! tenants and 8 concurrent workers.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use attestor_queue::submitter::BoxFuture;
use attestor_queue::testing::{FakeBehavior, FakeSubmitter};
use attestor_queue::*;
use common::*;
use uuid::Uuid;

fn config(id: &str) -> WorkerConfig {
    WorkerConfig::new(id, fake_root())
        .concurrency(8, 8)
        .lease(Duration::from_secs(30))
        .poll_interval(Duration::from_millis(50))
        .backoff(Backoff {
            base: Duration::from_millis(5),
            factor: 2.0,
            max: Duration::from_millis(50),
            jitter: 0.5,
        })
}

async fn wait_until(what: &str, timeout: Duration, mut f: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn drained(url: &str) -> bool {
    let mut c = connect(url).await;
    let b = backlog(&mut c).await.unwrap();
    b.count("queued") == 0 && b.count("running") == 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_drains_reads_envelopes_and_stores_entries() {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    let (a, b) = (tenant(), tenant());
    for i in 0..20 {
        enqueue_one(&db, if i % 2 == 0 { a } else { b }, &format!("job{i}"), 5).await;
    }
    let sub = Arc::new(FakeSubmitter::new(FakeBehavior::Succeed).with_envelope());
    let h = Worker::new(config("w1"), tdb.worker_url(), db.clone(), sub.clone()).start();
    let url = tdb.worker_url();
    wait_until("drain", Duration::from_secs(30), async || drained(&url).await).await;
    let m = h.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        (m.claimed, m.completed, m.retried, m.dead_lettered),
        (20, 20, 0, 0)
    );
    let mut admin = connect(&tdb.admin_url()).await;
    assert_eq!(
        count(&mut admin, "SELECT count(*) AS n FROM attestor.rekor_entries").await,
        20
    );
    assert_eq!(
        count(
            &mut admin,
            "SELECT count(*) AS n FROM attestor.rekor_submission_queue q
               JOIN attestor.rekor_entries e ON e.tenant_id = q.tenant_id AND e.id = q.rekor_entry_id
              WHERE q.status = 'succeeded' AND q.result IS NOT NULL AND e.envelope_id = q.envelope_id"
        )
        .await,
        20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_chunks_complete_together_exactly_once() {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    for i in 0..6 {
        seed(&db, tenant(), &format!("chunk{i}"), 200).await;
    }
    let sub = Arc::new(FakeSubmitter::new(FakeBehavior::Succeed));
    let handles: Vec<_> = (0..2)
        .map(|i| {
            let mut cfg = config(&format!("w{i}")).concurrency(40, 40);
            cfg.tenant_chunk = 10;
            Worker::new(cfg, tdb.worker_url(), db.clone(), sub.clone()).start()
        })
        .collect();
    let url = tdb.worker_url();
    wait_until("drain", Duration::from_secs(120), async || drained(&url).await).await;
    let mut completed = 0;
    for h in handles {
        let m = h.shutdown(Duration::from_secs(5)).await;
        assert_eq!((m.lease_lost, m.retried, m.dead_lettered), (0, 0, 0));
        completed += m.completed;
    }
    assert_eq!(completed, 1200);
    let mut admin = connect(&tdb.admin_url()).await;
    assert_eq!(
        count(&mut admin, "SELECT count(*) AS n FROM attestor.rekor_entries").await,
        1200
    );
    // Grouped completions share transactions: fewer distinct commit
    // transactions (audit txids, per tenant: on Citus each node counts its
    // own) than entries.
    let txs = count(
        &mut admin,
        "SELECT count(DISTINCT (tenant_id, txid)) AS n FROM attestor.audit_log WHERE table_name = 'rekor_entries'",
    )
    .await;
    eprintln!("1200 completions in {txs} tenant transactions");
    assert!(txs < 600, "completions were not grouped ({txs} transactions)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_retries_with_backoff_then_dead_letters() {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    let t = tenant();
    for i in 0..5 {
        enqueue_one(&db, t, &format!("flaky{i}"), 5).await;
    }
    let sub = Arc::new(FakeSubmitter::new(FakeBehavior::FailTimes(2)));
    let h = Worker::new(config("w1"), tdb.worker_url(), db.clone(), sub.clone()).start();
    let url = tdb.worker_url();
    wait_until("drain", Duration::from_secs(30), async || drained(&url).await).await;
    let m = h.shutdown(Duration::from_secs(5)).await;
    assert_eq!((m.completed, m.retried, m.dead_lettered), (5, 10, 0));

    for i in 0..3 {
        enqueue_one(&db, t, &format!("hopeless{i}"), 3).await;
    }
    let always = Arc::new(FakeSubmitter::new(FakeBehavior::AlwaysRetryable));
    let h = Worker::new(config("w2"), tdb.worker_url(), db.clone(), always).start();
    wait_until("drain", Duration::from_secs(30), async || drained(&url).await).await;
    let m = h.shutdown(Duration::from_secs(5)).await;
    assert_eq!((m.completed, m.retried, m.dead_lettered), (0, 6, 3));

    enqueue_one(&db, t, "refused", 10).await;
    let refuse = Arc::new(FakeSubmitter::new(FakeBehavior::AlwaysPermanent));
    let h = Worker::new(config("w3"), tdb.worker_url(), db.clone(), refuse).start();
    wait_until("drain", Duration::from_secs(30), async || drained(&url).await).await;
    let m = h.shutdown(Duration::from_secs(5)).await;
    assert_eq!((m.claimed, m.retried, m.dead_lettered), (1, 0, 1));
    let mut w = connect(&url).await;
    let dead = list_dead(&mut w, None, 100).await.unwrap();
    assert_eq!(dead.len(), 4);
    assert!(dead
        .iter()
        .any(|d| d.last_error.as_deref() == Some("fake: entry refused")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_wakes_an_idle_worker_long_before_the_poll() {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    let sub = Arc::new(FakeSubmitter::new(FakeBehavior::Succeed));
    let cfg = config("w1").poll_interval(Duration::from_secs(600));
    let h = Worker::new(cfg, tdb.worker_url(), db.clone(), sub.clone()).start();
    // Let it go idle (first claim finds nothing, listener connected).
    tokio::time::sleep(Duration::from_millis(700)).await;
    let t = tenant();
    let start = Instant::now();
    enqueue_one(&db, t, "wake", 5).await;
    let url = tdb.worker_url();
    wait_until("notify", Duration::from_secs(10), async || drained(&url).await).await;
    assert!(start.elapsed() < Duration::from_secs(10));
    // And a requeued dead job wakes it too.
    let mut w = connect(&url).await;
    let m = h.shutdown(Duration::from_secs(5)).await;
    assert_eq!(m.completed, 1);
    assert_eq!(backlog(&mut w).await.unwrap().count("succeeded"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_releases_in_flight_jobs() {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    let t = tenant();
    for i in 0..4 {
        enqueue_one(&db, t, &format!("slow{i}"), 5).await;
    }
    let slow = Arc::new(FakeSubmitter::new(FakeBehavior::Succeed).with_delay(Duration::from_secs(60)));
    let h = Worker::new(config("w1"), tdb.worker_url(), db.clone(), slow.clone()).start();
    wait_until("claims", Duration::from_secs(10), async || slow.calls() == 4).await;
    let m = h.shutdown(Duration::from_millis(200)).await;
    assert_eq!((m.claimed, m.released, m.completed), (4, 4, 0));
    let mut admin = connect(&tdb.admin_url()).await;
    assert_eq!(
        count(
            &mut admin,
            "SELECT count(*) AS n FROM attestor.rekor_submission_queue
              WHERE status = 'queued' AND attempts = 0 AND attempt_token IS NULL"
        )
        .await,
        4
    );

    // Fast jobs finish within the deadline instead of being released.
    let quick = Arc::new(FakeSubmitter::new(FakeBehavior::Succeed).with_delay(Duration::from_millis(300)));
    let h = Worker::new(config("w2"), tdb.worker_url(), db.clone(), quick.clone()).start();
    wait_until("claims", Duration::from_secs(10), async || quick.calls() == 4).await;
    let m = h.shutdown(Duration::from_secs(10)).await;
    assert_eq!((m.completed, m.released), (4, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_tenants_finish_long_before_a_big_backlog() {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    let big = tenant();
    const BIG: usize = 3000;
    const SMALL: usize = 100;
    seed(&db, big, "big", BIG as i32).await; // enqueued first: the oldest jobs
    let small: Vec<_> = (0..9).map(|_| tenant()).collect();
    for (i, t) in small.iter().enumerate() {
        seed(&db, *t, &format!("small{i}"), SMALL as i32).await;
    }
    let sub = Arc::new(FakeSubmitter::new(FakeBehavior::Succeed));
    let h = Worker::new(
        config("w1").concurrency(32, 32),
        tdb.worker_url(),
        db.clone(),
        sub.clone(),
    )
    .start();
    let url = tdb.worker_url();
    wait_until("drain", Duration::from_secs(120), async || drained(&url).await).await;
    h.shutdown(Duration::from_secs(5)).await;

    let order = sub.successes();
    assert_eq!(order.len(), BIG + 9 * SMALL);
    let last_small = order.iter().rposition(|(t, _)| *t != big.as_uuid()).unwrap();
    let big_done_before = order[..=last_small]
        .iter()
        .filter(|(t, _)| *t == big.as_uuid())
        .count();
    eprintln!(
        "last small-tenant job at position {last_small}; big tenant had {big_done_before} of {BIG} done"
    );
    // FIFO would finish the small tenants at position >= 3000; fair claims
    // finish them while most of the big backlog is still waiting.
    assert!(
        last_small < order.len() / 2,
        "small tenants finished at {last_small}"
    );
    assert!(
        big_done_before < BIG / 2,
        "big tenant got {big_done_before} first"
    );
    for t in &small {
        assert_eq!(order.iter().filter(|(x, _)| *x == t.as_uuid()).count(), SMALL);
    }
}

/// Records jobs in flight; flags any job being worked on twice at once.
struct Tracking {
    inner: FakeSubmitter,
    in_flight: Mutex<HashSet<Uuid>>,
    overlaps: Mutex<Vec<Uuid>>,
    per_job: Mutex<HashMap<Uuid, u32>>,
}

impl Submitter for Tracking {
    fn needs_envelope(&self) -> bool {
        false
    }
    fn submit<'a>(
        &'a self,
        request: &'a SubmitRequest,
    ) -> BoxFuture<'a, Result<serde_json::Value, SubmitError>> {
        Box::pin(async move {
            let id = request.job.job_id();
            if !self.in_flight.lock().unwrap().insert(id) {
                self.overlaps.lock().unwrap().push(id);
            }
            *self.per_job.lock().unwrap().entry(id).or_default() += 1;
            let r = self.inner.submit(request).await;
            self.in_flight.lock().unwrap().remove(&id);
            r
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_workers_never_hold_the_same_job() {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    for i in 0..5 {
        seed(&db, tenant(), &format!("t{i}"), 300).await;
    }
    let sub = Arc::new(Tracking {
        inner: FakeSubmitter::new(FakeBehavior::Succeed).with_delay(Duration::from_millis(1)),
        in_flight: Mutex::new(HashSet::new()),
        overlaps: Mutex::new(Vec::new()),
        per_job: Mutex::new(HashMap::new()),
    });
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let mut cfg = config(&format!("w{i}")).concurrency(4, 4);
            cfg.pool_size = 3;
            Worker::new(cfg, tdb.worker_url(), db.clone(), sub.clone()).start()
        })
        .collect();
    let url = tdb.worker_url();
    wait_until("drain", Duration::from_secs(120), async || drained(&url).await).await;
    let mut completed = 0;
    let mut busy_workers = 0;
    for h in handles {
        let m = h.shutdown(Duration::from_secs(5)).await;
        completed += m.completed;
        busy_workers += usize::from(m.completed > 0);
        assert_eq!(m.lease_lost, 0);
    }
    assert!(
        sub.overlaps.lock().unwrap().is_empty(),
        "a job was held by two workers at once"
    );
    assert_eq!(completed, 1500);
    assert!(busy_workers >= 2, "work was shared");
    {
        let per_job = sub.per_job.lock().unwrap();
        assert_eq!(per_job.len(), 1500);
        assert!(
            per_job.values().all(|n| *n == 1),
            "each job submitted exactly once"
        );
    }
    let mut admin = connect(&tdb.admin_url()).await;
    assert_eq!(
        count(&mut admin, "SELECT count(*) AS n FROM attestor.rekor_entries").await,
        1500
    );
}

/// Holds every submission until `n` have arrived (or `patience` passed),
/// then lets them all return at once: their completions are ready together.
struct AllAtOnce {
    n: usize,
    arrived: Mutex<usize>,
    all_here: tokio::sync::Notify,
    patience: Duration,
    inner: FakeSubmitter,
}

impl Submitter for AllAtOnce {
    fn needs_envelope(&self) -> bool {
        false
    }
    fn submit<'a>(
        &'a self,
        request: &'a SubmitRequest,
    ) -> BoxFuture<'a, Result<serde_json::Value, SubmitError>> {
        Box::pin(async move {
            let notified = self.all_here.notified();
            let here = {
                let mut a = self.arrived.lock().unwrap();
                *a += 1;
                *a
            };
            if here >= self.n {
                self.all_here.notify_waiters();
            } else {
                let _ = tokio::time::timeout(self.patience, notified).await;
            }
            self.inner.submit(request).await
        })
    }
}

#[derive(diesel::QueryableByName)]
struct Commits {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    transactions: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    durable: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    jobs: i64,
}

/// Records, at the commit of every transaction that completes a job, the
/// transaction and its `synchronous_commit` (a deferred constraint trigger
/// fires just before the commit, when the transaction-local setting is the
/// one the commit obeys). Test instrumentation, installed as the superuser.
const COMMIT_PROBE: [&str; 3] = [
    "CREATE TABLE public.commit_probe (
         xid  xid8 PRIMARY KEY,
         sync text NOT NULL,
         jobs int NOT NULL DEFAULT 1)",
    "CREATE FUNCTION public.commit_probe() RETURNS trigger
         LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog
     AS $$
     BEGIN
         INSERT INTO public.commit_probe (xid, sync)
              VALUES (pg_current_xact_id(), current_setting('synchronous_commit'))
         ON CONFLICT (xid) DO UPDATE SET jobs = public.commit_probe.jobs + 1;
         RETURN NULL;
     END
     $$",
    "CREATE CONSTRAINT TRIGGER commit_probe
         AFTER UPDATE ON attestor.rekor_submission_queue
         DEFERRABLE INITIALLY DEFERRED
         FOR EACH ROW WHEN (NEW.status = 'succeeded')
         EXECUTE FUNCTION public.commit_probe()",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_spanning_tenants_has_one_durable_commit() {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let mut admin = connect(&tdb.admin_url()).await;
    // The shared test cluster commits without waiting for the flush; this
    // database's sessions wait, as in production (set before any connects).
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(format!(
            "ALTER DATABASE \"{}\" SET synchronous_commit = on",
            tdb.name()
        )),
        &mut admin,
    )
    .await
    .unwrap();
    let db = app_db(&tdb.app_url()).await;
    // Citus refuses triggers on distributed tables: there the probe is the
    // audit log, and every group commits durably on its own node.
    let citus = attestor_testdb::shared().citus().is_some();
    for sql in COMMIT_PROBE.iter().filter(|_| !citus) {
        diesel_async::RunQueryDsl::execute(diesel::sql_query(*sql), &mut admin)
            .await
            .unwrap();
    }
    // Two tenants with several jobs, three with one: five tenant groups,
    // two set-based and three of a single job.
    let sizes = [4, 3, 1, 1, 1];
    for (i, n) in sizes.iter().enumerate() {
        seed(&db, tenant(), &format!("round{i}-"), *n).await;
    }
    let total: usize = sizes.iter().map(|&n| n as usize).sum();
    let sub = Arc::new(AllAtOnce {
        n: total,
        arrived: Mutex::new(0),
        all_here: tokio::sync::Notify::new(),
        patience: Duration::from_secs(30),
        inner: FakeSubmitter::new(FakeBehavior::Succeed),
    });
    let mut cfg = config("round").concurrency(64, 64);
    // Long enough that the completions released together are one round
    // even on a loaded machine.
    cfg.completion_linger = Duration::from_millis(500);
    let h = Worker::new(cfg, tdb.worker_url(), db.clone(), sub).start();
    let url = tdb.worker_url();
    wait_until("drain", Duration::from_secs(60), async || drained(&url).await).await;
    let m = h.shutdown(Duration::from_secs(5)).await;
    assert_eq!((m.completed, m.lease_lost, m.errors), (total as u64, 0, 0));
    if citus {
        let per_group = count(
            &mut admin,
            "SELECT count(DISTINCT (tenant_id, txid)) AS n FROM attestor.audit_log
              WHERE table_name = 'rekor_entries'",
        )
        .await;
        assert_eq!(per_group, sizes.len() as i64, "one transaction per tenant group");
        return;
    }

    let c: Commits = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query(
            "SELECT count(*) AS transactions,
                    count(*) FILTER (WHERE sync <> 'off') AS durable,
                    coalesce(sum(jobs), 0)::int8 AS jobs
               FROM public.commit_probe",
        ),
        &mut admin,
    )
    .await
    .unwrap();
    assert_eq!(c.jobs, total as i64, "every completion was seen once");
    assert_eq!(
        c.transactions,
        sizes.len() as i64,
        "one transaction per tenant group"
    );
    assert_eq!(c.durable, 1, "the round waited for the WAL flush more than once");
}

/// An app pool with the plain-PostgreSQL defaults (`set_config`, generic
/// plans) completes jobs on plain PostgreSQL; on a Citus coordinator it
/// could store no entry (the shards see no tenant, and Citus cannot plan the
/// completion generically), so the worker claims nothing there: no job is
/// submitted to the log only to fail at completion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_claims_only_with_an_app_pool_that_can_complete() {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    let t = tenant();
    enqueue_one(&db, t, "defaults", 5).await;
    let defaults = attestor_repo::Database::connect(attestor_repo::DatabaseConfig::new(tdb.app_url()))
        .await
        .unwrap();
    let sub = Arc::new(FakeSubmitter::new(FakeBehavior::Succeed));
    let h = Worker::new(config("defaults"), tdb.worker_url(), defaults, sub.clone()).start();
    let url = tdb.worker_url();
    if attestor_testdb::shared().citus().is_none() {
        wait_until("drain", Duration::from_secs(30), async || drained(&url).await).await;
        let m = h.shutdown(Duration::from_secs(5)).await;
        assert_eq!((m.claimed, m.completed), (1, 1));
        return;
    }
    // Several poll intervals: each claim attempt is refused.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let m = h.shutdown(Duration::from_secs(5)).await;
    assert_eq!((m.claimed, m.completed), (0, 0));
    assert!(m.errors >= 2, "each refused claim counts as an error: {m:?}");
    let mut c = connect(&url).await;
    assert_eq!(backlog(&mut c).await.unwrap().count("queued"), 1);
}
