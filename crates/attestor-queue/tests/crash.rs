//! Crash safety: worker processes SIGKILLed at random moments and restarted
//! until the queue drains; PostgreSQL restarted (`pg_ctl restart -m fast`)
//! in the middle of a run. Every job must be completed exactly once.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use attestor_queue::backoff::random_unit;
use attestor_queue::testing::{FakeBehavior, FakeSubmitter};
use attestor_queue::*;
use attestor_testdb::TestDatabase;
use common::*;
use diesel_async::AsyncPgConnection;

/// Kills every child it holds when dropped (also on panic).
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn_worker(tdb: &TestDatabase<'_>, id: usize) -> Child {
    Command::new(env!("CARGO_BIN_EXE_attestor-queue-crash-worker"))
        .arg(tdb.worker_url())
        .arg(tdb.app_url())
        .arg(format!("crash-worker-{id}"))
        .arg(match mode() {
            _ if attestor_testdb::shared().citus().is_some() => "citus",
            attestor_repo::TenantContextMode::SetConfig => "set_config",
            attestor_repo::TenantContextMode::SetLocal => "set_local",
        })
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn crash worker")
}

async fn assert_each_job_completed_once(admin: &mut AsyncPgConnection, jobs: i64) {
    let status = |s: &'static str| {
        format!("SELECT count(*) AS n FROM attestor.rekor_submission_queue WHERE status = '{s}'")
    };
    assert_eq!(
        count(admin, &status("succeeded")).await,
        jobs,
        "every job succeeded"
    );
    assert_eq!(count(admin, &status("dead")).await, 0);
    assert_eq!(
        count(admin, "SELECT count(*) AS n FROM attestor.rekor_entries").await,
        jobs
    );
    // Each completion inserted its entry exactly once (the audit trigger logs every INSERT).
    assert_eq!(
        count(
            admin,
            "SELECT count(*) AS n FROM attestor.audit_log WHERE table_name = 'rekor_entries' AND action = 'INSERT'"
        )
        .await,
        jobs
    );
    assert_eq!(
        count(
            admin,
            "SELECT count(DISTINCT (tenant_id, rekor_entry_id)) AS n FROM attestor.rekor_submission_queue"
        )
        .await,
        jobs
    );
}

async fn drained(worker_url: &str) -> bool {
    match <AsyncPgConnection as diesel_async::AsyncConnection>::establish(worker_url).await {
        Ok(mut c) => match backlog(&mut c).await {
            Ok(b) => b.count("queued") == 0 && b.count("running") == 0,
            Err(_) => false,
        },
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_workers_lose_nothing_and_complete_each_job_once() {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    const PER_TENANT: i64 = 200;
    for i in 0..3 {
        seed(&db, tenant(), &format!("crash{i}"), PER_TENANT as i32).await;
    }
    let jobs = 3 * PER_TENANT;
    let mut children = Children((0..3).map(|i| spawn_worker(&tdb, i)).collect());
    let mut next_id = 3;
    let mut kills = 0;
    let start = Instant::now();
    while !drained(&tdb.worker_url()).await {
        assert!(start.elapsed() < Duration::from_secs(180), "queue did not drain");
        tokio::time::sleep(Duration::from_millis(100 + (random_unit() * 400.0) as u64)).await;
        if kills < 12 {
            // SIGKILL a random worker at a random moment, start a fresh one.
            let victim = (random_unit() * children.0.len() as f64) as usize;
            let mut child = children.0.swap_remove(victim);
            // SAFETY: sending a signal to our own child process.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            let _ = child.wait();
            kills += 1;
            children.0.push(spawn_worker(&tdb, next_id));
            next_id += 1;
        }
    }
    drop(children);
    eprintln!("drained after {kills} SIGKILLs in {:?}", start.elapsed());
    assert!(kills >= 3, "the run was too short to kill workers");
    let mut admin = connect(&tdb.admin_url()).await;
    assert_each_job_completed_once(&mut admin, jobs).await;
}

fn postgres_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("postgres").unwrap();
    // SAFETY: getpwnam returns NULL or a pointer to static storage we read at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(!pw.is_null(), "no postgres user");
    // SAFETY: pw is non-null.
    Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

fn pg_ctl(server: &attestor_testdb::Server, args: &[&str]) {
    use std::os::unix::process::CommandExt;
    let cluster = server.cluster().expect("embedded cluster");
    let mut cmd = Command::new(cluster.binaries().program("pg_ctl"));
    cmd.arg("-D")
        .arg(cluster.data_dir())
        .arg("-l")
        .arg(cluster.root().join("restart.log"))
        .args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some((uid, gid)) = postgres_user() {
        cmd.uid(uid).gid(gid);
    }
    let status = cmd.status().expect("pg_ctl");
    assert!(status.success(), "pg_ctl {args:?} failed");
}

/// Stops the restarted postmaster (which the cluster's watchdog no longer
/// tracks) before the cluster directory is removed.
struct StopOnDrop<'a>(&'a attestor_testdb::Server);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        pg_ctl(self.0, &["-m", "immediate", "-w", "stop"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_recover_from_a_postgres_restart() {
    let server = attestor_testdb::Server::embedded(&Default::default()).expect("own cluster");
    let tdb = server.test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    const JOBS: i64 = 1500;
    for i in 0..3 {
        seed(&db, tenant(), &format!("restart{i}"), (JOBS / 3) as i32).await;
    }
    let sub = Arc::new(FakeSubmitter::new(FakeBehavior::Succeed).with_delay(Duration::from_millis(3)));
    let workers: Vec<_> = (0..2)
        .map(|i| {
            let cfg = WorkerConfig::new(format!("w{i}"), fake_root())
                .concurrency(8, 8)
                .lease(Duration::from_secs(5))
                .poll_interval(Duration::from_millis(100));
            Worker::new(cfg, tdb.worker_url(), db.clone(), sub.clone()).start()
        })
        .collect();
    let started = Instant::now();
    while workers.iter().map(|w| w.metrics().completed).sum::<u64>() < 200 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no progress before the restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _stop = StopOnDrop(&server);
    pg_ctl(&server, &["-m", "fast", "-w", "restart"]);
    let before = workers.iter().map(|w| w.metrics().completed).sum::<u64>();
    eprintln!("restarted PostgreSQL after {before} completions");

    let start = Instant::now();
    while !drained(&tdb.worker_url()).await {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "workers did not recover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut errors = 0;
    for w in workers {
        errors += w.shutdown(Duration::from_secs(5)).await.errors;
    }
    eprintln!(
        "drained {:?} after the restart; {errors} database errors seen",
        start.elapsed()
    );
    let mut admin = connect(&tdb.admin_url()).await;
    assert_each_job_completed_once(&mut admin, JOBS).await;
    drop(admin);
    drop(db);
    drop(tdb);
}
