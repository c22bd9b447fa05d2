//! `queue soak`: the queue table's size and the claim's latency over a long
//! steady run.
//!
//! `--jobs` jobs (default 1,000,000) go through the queue at a steady rate:
//! an enqueuer inserts `--rate` jobs per second (an envelope and its job
//! each, spread over `--tenants` tenants, in one statement every 50 ms);
//! K tasks on `attestor_worker` connections drain them the `mechanics` way
//! (`attestor_queue::claim` of up to B jobs, each claim timed, then one
//! fenced completion; an empty claim waits 20 ms, the bench workers'
//! polling interval); and the retention purge runs as a worker runs it
//! (`attestor_queue::purge` every `purge_interval` in batches of
//! `purge_batch`, the worker's defaults) with `--retention` for succeeded
//! and dead jobs, short enough that finished jobs leave the table during
//! the run (the production default, one hour, would keep every job of a
//! soak of this length).
//!
//! Three checkpoints, by jobs completed: after the first window (`--window`
//! jobs, default 100,000, at most a quarter of the run), at half of the run
//! and at its end. At each the table's size with its indexes
//! (`pg_total_relation_size`) is read, and the p99 of the claims made while
//! the window of jobs before it completed is reported. Target: the end
//! size at most 1.5× the first, the p99 flat.
//!
//! Like `queue`, it must never run against a production server: it bulk
//! loads and deletes in a database of its own.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use attestor_queue::testing::fake_trusted_root;
use attestor_queue::{ClaimOptions, Retention, WorkerConfig};
use diesel::sql_types::{Array, BigInt, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use uuid::Uuid;

/// `queue soak`'s options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Jobs pushed through the queue.
    #[arg(long, default_value_t = 1_000_000)]
    jobs: u64,
    /// Jobs enqueued per second.
    #[arg(long, default_value_t = 1_000)]
    rate: u64,
    /// Tenants the jobs are spread over.
    #[arg(long, default_value_t = 100)]
    tenants: usize,
    /// Concurrent draining tasks (K).
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Jobs per claim at most (B).
    #[arg(long, default_value_t = 100)]
    batch: u32,
    /// Jobs per tenant a claim aims for.
    #[arg(long, default_value_t = 10)]
    tenant_chunk: u32,
    /// Retention of succeeded and dead jobs, seconds.
    #[arg(long, default_value_t = 10)]
    retention: u64,
    /// Jobs of the first checkpoint's window (the claims timed for each
    /// checkpoint are those of the window of jobs before it).
    #[arg(long, default_value_t = 100_000)]
    window: u64,
    /// One JSON object per line instead of the text line.
    #[arg(long)]
    json: bool,
    /// Diagnosis only: non-durable commits (synchronous_commit off).
    #[arg(long)]
    no_fsync: bool,
}

/// The three checkpoints of a run (jobs completed) and the window of jobs
/// before each whose claims are timed for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoints {
    /// Jobs completed at the start, middle and end checkpoint.
    pub at: [u64; 3],
    /// Jobs in each checkpoint's window.
    pub window: u64,
}

impl Checkpoints {
    /// Checkpoints for `jobs` jobs: after `window` jobs (at most a quarter
    /// of the run, so that the windows never overlap), at half, at the end.
    pub fn new(jobs: u64, window: u64) -> Result<Self> {
        if jobs < 4 {
            bail!("--jobs: at least 4");
        }
        let window = window.clamp(1, jobs / 4);
        Ok(Checkpoints {
            at: [window, jobs / 2, jobs],
            window,
        })
    }

    /// The checkpoint whose window holds a claim made when `done` jobs had
    /// completed: the window of checkpoint `i` is `[at[i] - window, at[i])`.
    pub fn phase_of(&self, done: u64) -> Option<usize> {
        self.at
            .iter()
            .position(|&at| done < at && done + self.window >= at)
    }
}

/// Claim latencies, per checkpoint window.
#[derive(Debug, Default)]
pub struct Latencies {
    /// Milliseconds of every claim in each window.
    all: [Vec<f64>; 3],
    /// Milliseconds of the claims that returned at least one job.
    nonempty: [Vec<f64>; 3],
}

impl Latencies {
    /// Record a claim that took `ms` and returned `claimed` jobs, made when
    /// `done` jobs had completed (ignored outside every window).
    pub fn record(&mut self, checkpoints: &Checkpoints, done: u64, ms: f64, claimed: usize) {
        if let Some(i) = checkpoints.phase_of(done) {
            self.all[i].push(ms);
            if claimed > 0 {
                self.nonempty[i].push(ms);
            }
        }
    }

    /// Claims recorded in each window.
    pub fn counts(&self) -> [usize; 3] {
        [self.all[0].len(), self.all[1].len(), self.all[2].len()]
    }

    /// The `q` quantile of every window's claims (`None` for an empty one).
    pub fn quantiles(&self, q: f64, nonempty_only: bool) -> [Option<f64>; 3] {
        let v = if nonempty_only { &self.nonempty } else { &self.all };
        [quantile(&v[0], q), quantile(&v[1], q), quantile(&v[2], q)]
    }
}

/// The nearest-rank `q` quantile (0 < q <= 1): the smallest value with at
/// least `q` of the values at or below it. `None` when there is none.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() || !(q > 0.0 && q <= 1.0) {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// `end / start`, `None` when `start` is not positive.
pub fn growth(start: f64, end: f64) -> Option<f64> {
    (start > 0.0).then(|| end / start)
}

/// One statement enqueuing jobs `$2..=$3` (an envelope and a job each; job
/// `g` of the run goes to tenant `g mod n` of `$1`), as the superuser.
const ENQUEUE_SQL: &str = "\
WITH env AS (
    INSERT INTO attestor.dsse_envelopes
        (tenant_id, payload_type, payload, payload_sha256, envelope_sha256, signatures, envelope)
    SELECT t.ids[1 + (g % cardinality(t.ids))], 'text/plain', x.p, sha256(x.p), sha256(x.p || '\\x01'::bytea),
           '[]', '{}'
      FROM (SELECT $1::uuid[] AS ids) t
     CROSS JOIN generate_series($2::bigint, $3::bigint) g
     CROSS JOIN LATERAL (SELECT convert_to('soak:' || g::text, 'UTF8') AS p) x
    RETURNING tenant_id, id, envelope_sha256)
INSERT INTO attestor.rekor_submission_queue (tenant_id, envelope_id, bundle_sha256)
SELECT tenant_id, id, envelope_sha256 FROM env";

/// What a checkpoint reads from the server.
#[derive(Debug, Clone, Copy, QueryableByName)]
struct Sample {
    /// Table, indexes and TOAST.
    #[diesel(sql_type = BigInt)]
    total_bytes: i64,
    /// Rows in the table (queued, running and finished not yet purged).
    #[diesel(sql_type = BigInt)]
    rows: i64,
    /// Of them queued or running.
    #[diesel(sql_type = BigInt)]
    unfinished: i64,
    /// Autovacuum runs on the table so far.
    #[diesel(sql_type = BigInt)]
    autovacuums: i64,
}

const SAMPLE_SQL: &str = "\
SELECT pg_total_relation_size('attestor.rekor_submission_queue') AS total_bytes,
       (SELECT count(*) FROM attestor.rekor_submission_queue) AS rows,
       (SELECT count(*) FROM attestor.rekor_submission_queue WHERE finished_at IS NULL) AS unfinished,
       (SELECT autovacuum_count FROM pg_stat_user_tables
         WHERE schemaname = 'attestor' AND relname = 'rekor_submission_queue') AS autovacuums";

const MIB: f64 = 1024.0 * 1024.0;

pub fn run(args: Args) -> Result<()> {
    let Args {
        jobs,
        rate,
        tenants,
        workers,
        batch,
        tenant_chunk,
        retention,
        window,
        json,
        no_fsync,
    } = args;
    if rate == 0 || tenants == 0 || workers == 0 || batch == 0 {
        bail!("--rate, --tenants, --workers and --batch must be positive");
    }
    let checkpoints = Checkpoints::new(jobs, window)?;
    let server = crate::queue::bench_server(no_fsync)?;
    let pg = server.version()?.to_string();
    let db = server.test_database()?;
    // The purge as a worker runs it: its interval and batch are the
    // worker's defaults, only the retention is the soak's.
    let defaults = WorkerConfig::new("soak", Arc::new(fake_trusted_root()));
    let retention = Retention {
        succeeded: Duration::from_secs(retention),
        dead: Duration::from_secs(retention),
    };
    let plan = Plan {
        jobs,
        rate,
        tenants,
        workers,
        batch,
        tenant_chunk,
        retention,
        purge_interval: defaults.purge_interval,
        purge_batch: defaults.purge_batch,
        checkpoints,
    };
    if !json {
        println!(
            "queue soak on {pg}: {jobs} jobs at {rate} jobs/s over {tenants} tenants, K={workers} B={batch}, \
             retention {}s, purge every {:?} by {}",
            retention.succeeded.as_secs(),
            plan.purge_interval,
            plan.purge_batch
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let out = runtime.block_on(soak(&db, &plan))?;

    let mib = out.samples.map(|s| s.total_bytes as f64 / MIB);
    let p99 = out.latencies.quantiles(0.99, false);
    let p99_nonempty = out.latencies.quantiles(0.99, true);
    let p50 = out.latencies.quantiles(0.5, false);
    let ms = |v: [Option<f64>; 3]| v.map(|x| x.map(round3));
    let growth_ratio = growth(mib[0], mib[2]);
    let p99_ratio = match (p99[0], p99[2]) {
        (Some(a), Some(b)) => growth(a, b),
        _ => None,
    };
    if json {
        println!(
            "{}",
            serde_json::json!({
                "bench": "queue-soak", "server_version": pg, "jobs": out.completed,
                "checkpoints": checkpoints.at, "window": checkpoints.window,
                "rate_jobs_per_s": rate, "achieved_jobs_per_s": crate::queue::round(out.completed as f64 / out.elapsed.as_secs_f64()),
                "tenants": tenants, "workers": workers, "batch": batch, "tenant_chunk": tenant_chunk,
                "retention_s": retention.succeeded.as_secs(), "purge_interval_s": plan.purge_interval.as_secs_f64(),
                "purge_batch": plan.purge_batch, "purged": out.purged,
                "table_mib": mib.map(crate::queue::round),
                "growth_end_over_start": growth_ratio.map(round3),
                "claim_p99_ms": ms(p99), "claim_p99_nonempty_ms": ms(p99_nonempty), "claim_p50_ms": ms(p50),
                "claim_p99_end_over_start": p99_ratio.map(round3),
                "claims": out.latencies.counts(),
                "rows": out.samples.map(|s| s.rows), "unfinished": out.samples.map(|s| s.unfinished),
                "autovacuums": out.samples.map(|s| s.autovacuums),
                "max_backlog": out.max_backlog,
                "elapsed_s": crate::queue::round(out.elapsed.as_secs_f64()),
            })
        );
    } else {
        let f = |v: [Option<f64>; 3]| {
            v.map(|x| x.map_or("-".to_string(), |x| format!("{x:.2}")))
                .join(" / ")
        };
        println!(
            "queue soak  {} jobs in {:.0} s ({:.0} jobs/s), checkpoints {:?}\n  \
             queue table+indexes {:.1} / {:.1} / {:.1} MiB (end/start {})   rows {:?}   autovacuums {:?}\n  \
             claim p99 {} ms (claims that took jobs: {}), p50 {} ms, claims {:?}   purged {}   max backlog {}",
            out.completed,
            out.elapsed.as_secs_f64(),
            out.completed as f64 / out.elapsed.as_secs_f64(),
            checkpoints.at,
            mib[0],
            mib[1],
            mib[2],
            growth_ratio.map_or("-".into(), |g| format!("{g:.3}")),
            out.samples.map(|s| s.rows),
            out.samples.map(|s| s.autovacuums),
            f(p99),
            f(p99_nonempty),
            f(p50),
            out.latencies.counts(),
            out.purged,
            out.max_backlog,
        );
    }
    Ok(())
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

struct Plan {
    jobs: u64,
    rate: u64,
    tenants: usize,
    workers: usize,
    batch: u32,
    tenant_chunk: u32,
    retention: Retention,
    purge_interval: Duration,
    purge_batch: u32,
    checkpoints: Checkpoints,
}

struct Outcome {
    completed: u64,
    elapsed: Duration,
    samples: [Sample; 3],
    latencies: Latencies,
    purged: u64,
    max_backlog: u64,
}

async fn soak(db: &attestor_testdb::TestDatabase<'_>, plan: &Plan) -> Result<Outcome> {
    let done = Arc::new(AtomicU64::new(0));
    let enqueued = Arc::new(AtomicU64::new(0));
    let purged = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Latencies::default()));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();

    // The enqueuer: every 50 ms, what the rate owes so far.
    {
        let url = db.admin_url();
        let enqueued = enqueued.clone();
        let (jobs, rate) = (plan.jobs, plan.rate);
        let ids: Vec<Uuid> = (0..plan.tenants).map(|_| Uuid::new_v4()).collect();
        tasks.spawn(async move {
            let mut conn = AsyncPgConnection::establish(&url).await?;
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut next = 0u64;
            while next < jobs {
                tick.tick().await;
                // At most a second's worth per statement: one that fell
                // behind catches up in short statements, not one huge one.
                let owed = ((started.elapsed().as_secs_f64() * rate as f64) as u64)
                    .min(jobs)
                    .min(next + rate.max(1));
                if owed <= next {
                    continue;
                }
                diesel_async::RunQueryDsl::execute(
                    diesel::sql_query(ENQUEUE_SQL)
                        .bind::<Array<SqlUuid>, _>(&ids)
                        .bind::<BigInt, _>(next as i64)
                        .bind::<BigInt, _>(owed as i64 - 1),
                    &mut conn,
                )
                .await
                .context("enqueueing")?;
                next = owed;
                enqueued.store(next, Ordering::Relaxed);
            }
            anyhow::Ok(())
        });
    }

    // The draining tasks.
    for i in 0..plan.workers {
        let url = db.worker_url();
        let (done, stop, latencies) = (done.clone(), stop.clone(), latencies.clone());
        let checkpoints = plan.checkpoints;
        let options = ClaimOptions::new(format!("soak-{i}"), plan.batch, Duration::from_secs(120))
            .tenant_chunk(plan.tenant_chunk);
        tasks.spawn(async move {
            let mut conn = AsyncPgConnection::establish(&url).await?;
            while !stop.load(Ordering::Relaxed) {
                let before = done.load(Ordering::Relaxed);
                let t0 = Instant::now();
                let claimed = attestor_queue::claim(&mut conn, &options).await?;
                let ms = t0.elapsed().as_secs_f64() * 1000.0;
                latencies
                    .lock()
                    .expect("latencies")
                    .record(&checkpoints, before, ms, claimed.len());
                if claimed.is_empty() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                let n = crate::queue::complete_fenced(&mut conn, &claimed).await?;
                done.fetch_add(n, Ordering::Relaxed);
            }
            anyhow::Ok(())
        });
    }

    // The retention purge, as the worker's purge loop runs it.
    {
        let url = db.worker_url();
        let (purged, stop) = (purged.clone(), stop.clone());
        let (retention, interval, limit) = (plan.retention, plan.purge_interval, plan.purge_batch.max(1));
        tasks.spawn(async move {
            let mut conn = AsyncPgConnection::establish(&url).await?;
            'outer: while !stop.load(Ordering::Relaxed) {
                let slept = Instant::now();
                while slept.elapsed() < interval {
                    if stop.load(Ordering::Relaxed) {
                        break 'outer;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                loop {
                    let p = attestor_queue::purge(&mut conn, &retention, limit).await?;
                    purged.fetch_add(p.total(), Ordering::Relaxed);
                    if p.total() < u64::from(limit) {
                        break;
                    }
                }
            }
            anyhow::Ok(())
        });
    }

    // The monitor: samples the table at each checkpoint.
    let mut admin = AsyncPgConnection::establish(&db.admin_url()).await?;
    let mut samples = Vec::new();
    let mut max_backlog = 0u64;
    let mut last_report = Instant::now();
    // The whole run at the rate, plus as much again for a slow machine.
    let deadline = Duration::from_secs_f64(2.0 * plan.jobs as f64 / plan.rate as f64 + 300.0);
    while samples.len() < 3 {
        if let Some(r) = tasks.try_join_next() {
            r??;
            // The enqueuer ends when everything is enqueued; nothing else
            // ends before the stop.
        }
        let d = done.load(Ordering::Relaxed);
        max_backlog = max_backlog.max(enqueued.load(Ordering::Relaxed).saturating_sub(d));
        if d >= plan.checkpoints.at[samples.len()] {
            let s: Sample = diesel_async::RunQueryDsl::get_result(diesel::sql_query(SAMPLE_SQL), &mut admin)
                .await
                .context("sampling the queue table")?;
            eprintln!(
                "soak: {d} jobs done at {:.0} s, table+indexes {:.1} MiB, {} rows ({} unfinished)",
                started.elapsed().as_secs_f64(),
                s.total_bytes as f64 / MIB,
                s.rows,
                s.unfinished
            );
            samples.push(s);
            continue;
        }
        if started.elapsed() > deadline {
            stop.store(true, Ordering::Relaxed);
            bail!("soak did not finish in {deadline:?} ({d} of {} jobs)", plan.jobs);
        }
        if last_report.elapsed() > Duration::from_secs(60) {
            last_report = Instant::now();
            eprintln!(
                "soak: {d} of {} jobs done at {:.0} s, {} enqueued, {} purged",
                plan.jobs,
                started.elapsed().as_secs_f64(),
                enqueued.load(Ordering::Relaxed),
                purged.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let latencies = std::mem::take(&mut *latencies.lock().expect("latencies"));
    Ok(Outcome {
        completed: done.load(Ordering::Relaxed),
        elapsed,
        samples: [samples[0], samples[1], samples[2]],
        latencies,
        purged: purged.load(Ordering::Relaxed),
        max_backlog,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_are_the_first_window_the_half_and_the_end() {
        let c = Checkpoints::new(1_000_000, 100_000).unwrap();
        assert_eq!(c.at, [100_000, 500_000, 1_000_000]);
        assert_eq!(c.window, 100_000);
        // A short run: the window shrinks to a quarter, windows never overlap.
        let c = Checkpoints::new(50_000, 100_000).unwrap();
        assert_eq!(c.at, [12_500, 25_000, 50_000]);
        assert_eq!(c.window, 12_500);
        assert!(Checkpoints::new(3, 1).is_err());
    }

    #[test]
    fn a_claim_belongs_to_the_window_before_its_checkpoint() {
        let c = Checkpoints::new(1_000_000, 100_000).unwrap();
        assert_eq!(c.phase_of(0), Some(0));
        assert_eq!(c.phase_of(99_999), Some(0));
        assert_eq!(c.phase_of(100_000), None);
        assert_eq!(c.phase_of(399_999), None);
        assert_eq!(c.phase_of(400_000), Some(1));
        assert_eq!(c.phase_of(499_999), Some(1));
        assert_eq!(c.phase_of(500_000), None);
        assert_eq!(c.phase_of(899_999), None);
        assert_eq!(c.phase_of(900_000), Some(2));
        assert_eq!(c.phase_of(999_999), Some(2));
        assert_eq!(c.phase_of(1_000_000), None);
        // Every window holds exactly `window` values of `done`.
        let c = Checkpoints::new(40, 100).unwrap();
        let mut per = [0; 3];
        for d in 0..50 {
            if let Some(i) = c.phase_of(d) {
                per[i] += 1;
            }
        }
        assert_eq!(per, [10, 10, 10]);
    }

    #[test]
    fn quantile_is_nearest_rank() {
        let v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(quantile(&v, 0.99), Some(99.0));
        assert_eq!(quantile(&v, 0.5), Some(50.0));
        assert_eq!(quantile(&v, 1.0), Some(100.0));
        assert_eq!(quantile(&[7.0], 0.99), Some(7.0));
        // 1,000 values: the 990th smallest.
        let v: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.99), Some(990.0));
        assert_eq!(quantile(&[], 0.99), None);
        assert_eq!(quantile(&v, 0.0), None);
    }

    #[test]
    fn latencies_go_to_their_window_and_empty_claims_count_only_in_all() {
        let c = Checkpoints::new(800, 100).unwrap();
        assert_eq!(c.at, [100, 400, 800]);
        let mut l = Latencies::default();
        l.record(&c, 0, 1.0, 5);
        l.record(&c, 50, 9.0, 0);
        l.record(&c, 150, 100.0, 5); // between windows: dropped
        l.record(&c, 300, 2.0, 1);
        l.record(&c, 799, 3.0, 2);
        l.record(&c, 800, 100.0, 2); // after the end: dropped
        assert_eq!(l.counts(), [2, 1, 1]);
        assert_eq!(l.quantiles(0.99, false), [Some(9.0), Some(2.0), Some(3.0)]);
        assert_eq!(l.quantiles(0.99, true), [Some(1.0), Some(2.0), Some(3.0)]);
        let empty = Latencies::default();
        assert_eq!(empty.quantiles(0.99, false), [None, None, None]);
    }

    #[test]
    fn growth_is_end_over_start() {
        assert_eq!(growth(10.0, 15.0), Some(1.5));
        assert_eq!(growth(0.0, 15.0), None);
    }
}
