//! `queue`: throughput, fairness and memory of the Rekor submission queue.
//!
//! Two modes per batch size B (`--batches`, default 1 and 100; `--modes`
//! picks one or both, default both), each on the
//! same `--jobs` jobs over `--tenants` tenants, on a cluster with durable
//! commits (`fsync`/`synchronous_commit` on), each against its own pgbench
//! speed-of-light baseline (the same SQL from `pgbench` of the same
//! PostgreSQL installation, K clients, as the superuser, prepared, run
//! once under each `plan_cache_mode` and the fastest run taken: which mode
//! is fastest depends on the script, and under `auto` the server settles on
//! custom or generic plans from one run to the next; the line lists every
//! mode's figure):
//!
//! * **mechanics**: K tasks on `attestor_worker` connections claim B jobs
//!   (`attestor_queue::claim`: lease, fresh fencing token) and complete them
//!   in one fenced statement that stores nothing; the figure comparable with
//!   other queues. Baseline: the claim statement plus the same fenced
//!   completion, naming the jobs the claim returned.
//! * **pipeline**: K `attestor_queue::Worker`s, each keeping B jobs in
//!   flight, with a submitter that answers at once with a log answer signed
//!   before the run (`StandInLog`: the stand-in log's signing is not the
//!   workers' work); each job's answer verified against the trusted root and
//!   the job completed the real way (its
//!   Rekor entry and the entry's audit row stored, the job marked done, in
//!   the job's tenant transaction through the attestor-repo guard).
//!   Baseline: the claim statement plus one set-based statement storing an
//!   entry per claimed job and marking them succeeded, fenced by their
//!   tokens (same tables, triggers and audit rows, without tenant
//!   transactions).
//!
//! In both baselines the claim ends in one row, the claimed jobs' tenants,
//! ids and tokens as arrays, which pgbench's `\gset` keeps for the
//! completion: pgbench cannot carry a result set from one statement to the
//! next, and finding the jobs again by `locked_by` would scan every
//! unfinished row, which the worker never does.
//!
//! Each line also gives the HOT share of the queue table's updates during
//! the run (`n_tup_hot_upd / n_tup_upd` of `pg_stat_user_tables`) and the
//! table's size with its indexes after it (`pg_total_relation_size`).
//! * **Fairness**: one tenant with `--big-backlog` ready jobs draining while 9
//!   small tenants enqueue 100 jobs each in waves; the p99 of their
//!   enqueue-to-completion latency.
//! * **Memory**: peak resident set of this process (the workers), `VmHWM`.
//!
//! It must never run against a production server: it bulk-loads and resets
//! a database of its own.

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use attestor_queue::prepared::{Bind, Prepared};
use attestor_queue::submitter::BoxFuture;
use attestor_queue::testing::{fake_rekor_entry, fake_trusted_root};
use attestor_queue::{SubmitError, SubmitRequest, Submitter, Worker, WorkerConfig};
use attestor_repo::{Database, DatabaseConfig, TenantContext, TenantId};
use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Double, Nullable};
use diesel::{QueryableByName, RunQueryDsl};
use scoped_futures::ScopedFutureExt;

/// The stand-in log behind the benchmark's submitter: a valid answer for
/// every job at once, which the worker verifies as it verifies every entry
/// before storing it.
///
/// A real log signs on its own servers, so the pipeline's timed part should
/// not spend the workers' CPU on the stand-in's signing (about 140 µs per
/// answer, measured: more than the worker's own verification of it).
/// [`StandInLog::presign`] signs one answer per queued job before the run
/// and keeps them in files, not in memory, so they stay out of the
/// workers' resident set (each job's offset is in memory: a few MiB for
/// 100k jobs). A job without a signed answer (the fairness run's, enqueued
/// while it runs) gets one signed at once (Ed25519).
#[derive(Default)]
struct StandInLog {
    files: Vec<std::fs::File>,
    at: std::collections::HashMap<uuid::Uuid, (usize, u64, u32)>,
    dir: std::path::PathBuf,
    next_index: AtomicU64,
}

impl StandInLog {
    /// One answer per job of `database` (`fake_rekor_entry` with the job's
    /// position as its log index), signed on every core, streamed to files
    /// under the temporary directory.
    fn presign(server: &attestor_testdb::Server, database: &str) -> Result<StandInLog> {
        #[derive(QueryableByName)]
        struct Job {
            #[diesel(sql_type = diesel::sql_types::Uuid)]
            id: uuid::Uuid,
        }
        let mut conn = server.connect_admin(database)?;
        let jobs: Vec<Job> = diesel::sql_query("SELECT id FROM attestor.rekor_submission_queue ORDER BY id")
            .load(&mut conn)?;
        Self::presign_jobs(&jobs.into_iter().map(|j| j.id).collect::<Vec<_>>())
    }

    /// One answer per job of `jobs`, the job's position its log index.
    fn presign_jobs(jobs: &[uuid::Uuid]) -> Result<StandInLog> {
        use std::io::Write;
        static DIRS: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "attestor-bench-answers-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        // Owns the directory from here: an error below removes it.
        let mut log = StandInLog::default();
        log.dir = dir.clone();
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let per = jobs.len().div_ceil(threads).max(1);
        let parts = std::thread::scope(|scope| {
            let handles: Vec<_> = jobs
                .chunks(per)
                .enumerate()
                .map(|(part, chunk)| {
                    let path = dir.join(format!("part-{part}"));
                    scope.spawn(move || -> Result<_> {
                        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
                        let mut at = Vec::with_capacity(chunk.len());
                        let mut offset = 0u64;
                        for (i, job) in chunk.iter().enumerate() {
                            let index = (part * per + i) as i64;
                            let bytes = serde_json::to_vec(&fake_rekor_entry(*job, index))?;
                            out.write_all(&bytes)?;
                            at.push((*job, (part, offset, u32::try_from(bytes.len())?)));
                            offset += bytes.len() as u64;
                        }
                        out.flush()?;
                        Ok((path, at))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a signing thread panicked"))
                .collect::<Result<Vec<_>>>()
        })?;
        log.next_index = AtomicU64::new(jobs.len() as u64);
        for (path, offsets) in parts {
            log.files.push(std::fs::File::open(path)?);
            log.at.extend(offsets);
        }
        Ok(log)
    }

    /// `job`'s answer: the one signed before the run, or one signed now.
    fn answer(&self, job: uuid::Uuid) -> Result<serde_json::Value, SubmitError> {
        use std::os::unix::fs::FileExt;
        let Some(&(file, offset, len)) = self.at.get(&job) else {
            let index = self.next_index.fetch_add(1, Ordering::Relaxed) as i64;
            return Ok(fake_rekor_entry(job, index));
        };
        let mut bytes = vec![0; len as usize];
        self.files[file]
            .read_exact_at(&mut bytes, offset)
            .map_err(|e| SubmitError::Retryable(format!("reading the signed answer: {e}")))?;
        serde_json::from_slice(&bytes).map_err(|e| SubmitError::Permanent(e.to_string()))
    }
}

impl Drop for StandInLog {
    fn drop(&mut self) {
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Submitter for StandInLog {
    fn needs_envelope(&self) -> bool {
        false
    }

    fn submit<'a>(
        &'a self,
        request: &'a SubmitRequest,
    ) -> BoxFuture<'a, Result<serde_json::Value, SubmitError>> {
        Box::pin(async move { self.answer(request.job.job_id()) })
    }
}

/// `queue`'s options (the burn-down), or the `soak` mode with its own.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    mode: Option<Mode>,
    /// Jobs burnt down per batch size.
    #[arg(long, default_value_t = 100_000)]
    jobs: i64,
    /// Tenants the jobs are spread over.
    #[arg(long, default_value_t = 100)]
    tenants: i64,
    /// Concurrent workers (K).
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Jobs of one big tenant queued ahead of the small ones in the fairness run.
    #[arg(long, default_value_t = 100_000)]
    big_backlog: i64,
    /// Batch sizes (B) to run, comma-separated.
    #[arg(long, default_value = "1,100")]
    batches: String,
    /// Modes to run, comma-separated (`mechanics`, `pipeline`).
    #[arg(long, default_value = "mechanics,pipeline")]
    modes: String,
    /// One JSON object per line instead of the table.
    #[arg(long)]
    json: bool,
    /// Tenants per completion group.
    #[arg(long, default_value_t = 10)]
    tenant_chunk: u32,
    /// Diagnosis only: non-durable commits (synchronous_commit off).
    #[arg(long)]
    no_fsync: bool,
    #[command(flatten)]
    pub(crate) peers: crate::peers::PeerArgs,
}

/// `queue`'s other modes.
#[derive(Debug, clap::Subcommand)]
enum Mode {
    /// A steady run (default 1,000,000 jobs at 1,000 jobs/s, enqueue paced,
    /// mechanics draining, retention purging): the queue table's size with
    /// its indexes and the claim's p99 after the first 100k jobs, at the
    /// middle and at the end (module `soak`).
    Soak(crate::soak::Args),
}

pub fn run(args: Args) -> Result<()> {
    let Args {
        mode,
        jobs,
        tenants,
        workers,
        big_backlog: big,
        batches,
        modes,
        json,
        tenant_chunk: chunk,
        no_fsync,
        peers,
    } = args;
    if let Some(Mode::Soak(soak)) = mode {
        return crate::soak::run(soak);
    }
    let batches: Vec<u32> = batches
        .split(',')
        .map(|b| b.trim().parse().context("--batches: comma-separated integers"))
        .collect::<Result<_>>()?;
    let modes: Vec<&str> = modes.split(',').map(str::trim).collect();
    if let Some(m) = modes.iter().find(|m| !matches!(**m, "mechanics" | "pipeline")) {
        bail!("--modes: unknown mode {m:?} (mechanics, pipeline)");
    }
    let run_mode = |m: &str| modes.contains(&m);

    // Installed (or found) before anything runs: a missing tool fails fast.
    let peers = crate::peers::prepare(&peers)?;
    let mut ours = Vec::new();
    let server = bench_server(no_fsync)?;
    let pgbench = server
        .cluster()
        .map(|c| c.binaries().program("pgbench"))
        .unwrap_or_else(|| "pgbench".into());
    let pg = server.version()?.to_string();
    if !json {
        println!("queue on {pg}:");
    }
    let db = server.test_database()?;
    let started = Instant::now();
    load(&server, db.name(), tenants, jobs / tenants)?;
    let jobs = (jobs / tenants) * tenants;
    eprintln!(
        "loaded {jobs} jobs over {tenants} tenants in {:.1?}",
        started.elapsed()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // Signed after the mechanics runs, so their peak RSS does not hold the
    // signing's buffers.
    let mut answers: Option<Arc<StandInLog>> = None;
    for mode in ["mechanics", "pipeline"].into_iter().filter(|m| run_mode(m)) {
        for &batch in &batches {
            if mode == "pipeline" && answers.is_none() {
                let started = Instant::now();
                let log = StandInLog::presign(&server, db.name())?;
                eprintln!("signed {} log answers in {:.1?}", log.at.len(), started.elapsed());
                answers = Some(Arc::new(log));
            }
            reset(&server, db.name())?;
            let before = table_stats(&server, db.name())?;
            let (done, elapsed) = runtime.block_on(async {
                match mode {
                    // Claim with lease and token, fenced completion, nothing stored.
                    "mechanics" => mechanics(&db, workers, batch, chunk).await,
                    _ => {
                        burn_down(
                            &db,
                            workers,
                            batch,
                            chunk,
                            jobs,
                            answers.clone().unwrap_or_default(),
                        )
                        .await
                    }
                }
            })?;
            let jobs_per_s = done as f64 / elapsed.as_secs_f64();
            let after = table_stats(&server, db.name())?;
            let hot_ratio = after.hot_ratio_since(&before);
            let table_mib = after.total_bytes as f64 / (1024.0 * 1024.0);
            let script = match mode {
                "mechanics" => mechanics_script(batch, chunk)?,
                _ => pipeline_script(batch, chunk)?,
            };
            let baseline = Baseline {
                server: &server,
                db: &db,
                pgbench: &pgbench,
                clients: workers,
                batch,
                jobs,
            }
            .speed_of_light(&script)?;
            report(
                json, mode, batch, workers, chunk, jobs_per_s, baseline, hot_ratio, table_mib,
            );
            ours.push(crate::peers::Ours {
                mode,
                batch,
                jobs_per_s,
            });
        }
    }
    if let Some(installed) = &peers {
        crate::peers::run(installed, &server, jobs, tenants, workers, &ours, json)?;
    }

    let fairness_db = server.test_database()?;
    load(&server, fairness_db.name(), 1, big)?;
    let p99 = runtime.block_on(fairness(&fairness_db, workers))?;
    if json {
        println!(
            "{}",
            serde_json::json!({"bench": "queue-fairness", "server_version": pg, "small_tenant_p99_ms": round(p99), "big_backlog": big})
        );
    } else {
        println!("queue-fairness  small tenants' p99 enqueue-to-completion {p99:.0} ms with {big} jobs queued ahead");
        println!("peak RSS of the workers' process: {:.1} MiB", peak_rss_mib());
    }
    Ok(())
}

/// Prints one mode's result line (text, or the JSON line with `--json`).
#[allow(clippy::too_many_arguments)]
fn report(
    json: bool,
    mode: &str,
    batch: u32,
    workers: usize,
    chunk: u32,
    jobs_per_s: f64,
    (baseline, plans): (f64, String),
    hot_ratio: f64,
    table_mib: f64,
) {
    let ratio = jobs_per_s / baseline;
    let rss = peak_rss_mib();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "bench": "queue", "mode": mode, "batch": batch, "workers": workers,
                "tenant_chunk": chunk, "jobs_per_s": round(jobs_per_s), "baseline_jobs_per_s": round(baseline),
                "baseline_plans": plans,
                "ratio": round3(ratio), "hot_ratio": round3(hot_ratio), "table_mib": round(table_mib),
                "peak_rss_mib": round(rss),
            })
        );
    } else {
        println!(
            "queue {mode:<9} B={batch:<4} K={workers:<3} chunk={chunk:<3} {jobs_per_s:>9.0} jobs/s   \
             pgbench same SQL {baseline:>9.0} jobs/s ({plans})   ratio {ratio:.3}   HOT {hot_ratio:.3}   \
             queue table+indexes {table_mib:.1} MiB   peak RSS {rss:.1} MiB"
        );
    }
}

/// The fenced completion of the `mechanics` mode, as the worker role: the
/// claimed jobs whose token still matches become succeeded; nothing else
/// is stored. It sets `updated_at = now()` itself, as the claim does, so
/// the table's updated_at trigger skips its call. `$1..$3` tenants, jobs,
/// tokens.
const MECHANICS_COMPLETE_SQL: &str = "\
UPDATE attestor.rekor_submission_queue q
   SET status = 'succeeded', finished_at = now(), updated_at = now(), lease_expires_at = NULL, locked_by = NULL,
       attempt_token = NULL
  FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) AS c(tenant_id, id, token)
 WHERE q.tenant_id = c.tenant_id AND q.id = c.id AND q.attempt_token = c.token AND q.status = 'running'";

/// `mechanics`: K tasks on worker connections, each claiming B jobs
/// (lease, fresh token) and completing them in one fenced statement, until
/// nothing is queued. Two durable commits per batch.
async fn mechanics(
    db: &attestor_testdb::TestDatabase<'_>,
    workers: usize,
    batch: u32,
    chunk: u32,
) -> Result<(u64, Duration)> {
    use diesel_async::AsyncConnection;
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..workers {
        let url = db.worker_url();
        let done = done.clone();
        tasks.spawn(async move {
            let mut conn = diesel_async::AsyncPgConnection::establish(&url).await?;
            let options =
                attestor_queue::ClaimOptions::new(format!("mech-{i}"), batch, Duration::from_secs(120))
                    .tenant_chunk(chunk);
            loop {
                let jobs = attestor_queue::claim(&mut conn, &options).await?;
                if jobs.is_empty() {
                    return anyhow::Ok(());
                }
                let n = complete_fenced(&mut conn, &jobs).await?;
                done.fetch_add(n, Ordering::Relaxed);
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok((done.load(Ordering::Relaxed), started.elapsed()))
}

/// Complete `jobs` in one fenced statement that stores nothing (the
/// `mechanics` completion); returns how many still held their lease.
pub(crate) async fn complete_fenced(
    conn: &mut diesel_async::AsyncPgConnection,
    jobs: &[attestor_queue::ClaimedJob],
) -> Result<u64> {
    use diesel::sql_types::{Array, Uuid as SqlUuid};
    let (t, j, k): (Vec<_>, Vec<_>, Vec<_>) = jobs
        .iter()
        .map(|c| (c.lease.tenant_id, c.lease.job_id, c.lease.token))
        .fold((vec![], vec![], vec![]), |mut acc, (t, j, k)| {
            acc.0.push(t);
            acc.1.push(j);
            acc.2.push(k);
            acc
        });
    let n = diesel_async::RunQueryDsl::execute(
        Prepared::new(
            MECHANICS_COMPLETE_SQL,
            (
                Bind::<Array<SqlUuid>, _>::new(t),
                Bind::<Array<SqlUuid>, _>::new(j),
                Bind::<Array<SqlUuid>, _>::new(k),
            ),
        ),
        conn,
    )
    .await?;
    Ok(n as u64)
}

/// The queue table's update counters and size (`pg_stat_user_tables`,
/// `pg_total_relation_size`: heap, indexes and TOAST).
#[derive(QueryableByName)]
struct TableStats {
    #[diesel(sql_type = BigInt)]
    updates: i64,
    #[diesel(sql_type = BigInt)]
    hot_updates: i64,
    #[diesel(sql_type = BigInt)]
    total_bytes: i64,
}

impl TableStats {
    /// Share of the updates since `before` that were HOT (no index entry written).
    fn hot_ratio_since(&self, before: &TableStats) -> f64 {
        let updates = self.updates - before.updates;
        if updates <= 0 {
            return 0.0;
        }
        (self.hot_updates - before.hot_updates) as f64 / updates as f64
    }
}

fn table_stats(server: &attestor_testdb::Server, database: &str) -> Result<TableStats> {
    // Backends report their counters when they go idle or exit; the
    // workers' pools are closed by now, give the last reports a moment.
    std::thread::sleep(Duration::from_millis(1500));
    let mut conn = server.connect_admin(database)?;
    diesel::sql_query(
        "SELECT n_tup_upd AS updates, n_tup_hot_upd AS hot_updates,
                pg_total_relation_size(relid) AS total_bytes
           FROM pg_stat_user_tables
          WHERE schemaname = 'attestor' AND relname = 'rekor_submission_queue'",
    )
    .get_result(&mut conn)
    .context("reading pg_stat_user_tables")
}

pub(crate) fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The server a queue bench runs on: `DATABASE_URL`'s when set, else a
/// throwaway cluster (durable commits unless `no_fsync`) with room for the
/// workers' and pgbench's connections.
pub(crate) fn bench_server(no_fsync: bool) -> Result<attestor_testdb::Server> {
    Ok(match std::env::var("DATABASE_URL") {
        Ok(u) if !u.trim().is_empty() => attestor_testdb::Server::from_url(&u)?,
        _ => attestor_testdb::Server::embedded(&attestor_testdb::cluster::ClusterOptions {
            durable: !no_fsync,
            settings: vec![("max_connections".into(), "400".into())],
            ..Default::default()
        })?,
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `tenants` random tenants with `per_tenant` envelopes and jobs each.
fn load(server: &attestor_testdb::Server, database: &str, tenants: i64, per_tenant: i64) -> Result<()> {
    let mut conn = server.connect_admin(database)?;
    conn.batch_execute(&format!(
        "WITH t AS (SELECT gen_random_uuid() AS tenant_id FROM generate_series(1, {tenants})),
              env AS (
                  INSERT INTO attestor.dsse_envelopes
                      (tenant_id, payload_type, payload, payload_sha256, envelope_sha256, signatures, envelope)
                  SELECT t.tenant_id, 'text/plain', x.p, sha256(x.p), sha256(x.p || '\\x01'::bytea), '[]', '{{}}'
                    FROM t CROSS JOIN generate_series(1, {per_tenant}) g
                   CROSS JOIN LATERAL (SELECT convert_to(t.tenant_id::text || ':' || g::text, 'UTF8') AS p) x
                  RETURNING tenant_id, id, envelope_sha256)
         INSERT INTO attestor.rekor_submission_queue (tenant_id, envelope_id, bundle_sha256)
         SELECT tenant_id, id, envelope_sha256 FROM env"
    ))
    .context("loading jobs")?;
    conn.batch_execute("VACUUM ANALYZE attestor.rekor_submission_queue")?;
    conn.batch_execute("VACUUM ANALYZE attestor.dsse_envelopes")?;
    Ok(())
}

/// Every job back to `queued`, no entries.
fn reset(server: &attestor_testdb::Server, database: &str) -> Result<()> {
    let mut conn = server.connect_admin(database)?;
    conn.batch_execute(
        "UPDATE attestor.rekor_submission_queue
            SET status = 'queued', attempts = 0, run_at = now(), lease_expires_at = NULL, locked_by = NULL,
                attempt_token = NULL, last_error = NULL, result = NULL, rekor_entry_id = NULL,
                finished_at = NULL;
         DELETE FROM attestor.rekor_entries",
    )
    .context("resetting the queue")?;
    for sql in [
        "VACUUM ANALYZE attestor.rekor_submission_queue",
        "VACUUM ANALYZE attestor.rekor_entries",
        "CHECKPOINT",
    ] {
        conn.batch_execute(sql).context(sql)?;
    }
    Ok(())
}

async fn burn_down<S: Submitter>(
    db: &attestor_testdb::TestDatabase<'_>,
    workers: usize,
    batch: u32,
    chunk: u32,
    jobs: i64,
    submitter: Arc<S>,
) -> Result<(u64, Duration)> {
    let per_worker_conns = (batch.min(16) + 2).max(4);
    let mut config =
        DatabaseConfig::new(db.app_url()).with_max_connections(per_worker_conns * workers as u32);
    config.test_on_checkout = false;
    let app = Database::connect(config).await?;
    let trust = Arc::new(fake_trusted_root());
    let started = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|i| {
            let mut config = WorkerConfig::new(format!("bench-{i}"), trust.clone())
                .concurrency(batch as usize, batch)
                .lease(Duration::from_secs(120))
                .poll_interval(Duration::from_millis(20));
            config.pool_size = per_worker_conns;
            config.tenant_chunk = chunk;
            Worker::new(config, db.worker_url(), app.clone(), submitter.clone()).start()
        })
        .collect();
    let deadline = Duration::from_secs(1800);
    loop {
        let done: u64 = handles.iter().map(|h| h.metrics().completed).sum();
        if done as i64 >= jobs {
            break;
        }
        if started.elapsed() > deadline {
            bail!("burn-down did not finish in {deadline:?} ({done} of {jobs})");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    let mut done = 0;
    for h in handles {
        done += h.shutdown(Duration::from_secs(10)).await.completed;
    }
    Ok((done, elapsed))
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The claim statement for pgbench, batch `:batch`, as client `:client_id`,
/// ending in one row instead of one per job: the claimed jobs' tenants, ids
/// and tokens as three arrays, which `\gset` stores in the client's
/// variables `tenants`, `jobs` and `tokens` for the completion to name, as
/// the worker names the jobs it holds (a baseline that found its jobs again
/// by `locked_by` would scan every unfinished row, the worker never does).
fn pgbench_claim(chunk: u32) -> Result<String> {
    let (claim, tail) = attestor_queue::claim::CLAIM_SQL
        .rsplit_once("\nSELECT ")
        .context("the claim statement no longer ends in its SELECT")?;
    if !tail.contains("FROM claimed c") {
        bail!("the claim statement's last SELECT no longer reads `claimed c`");
    }
    let claim = claim
        .replace("$1", ":batch")
        .replace("$2", "120")
        .replace("$3", "('pgbench-' || :client_id)")
        .replace("$4", &chunk.to_string());
    Ok(format!(
        "{claim}\nSELECT coalesce(array_agg(c.tenant_id), '{{}}')::text AS tenants,\n       \
         coalesce(array_agg(c.id), '{{}}')::text AS jobs,\n       \
         coalesce(array_agg(c.attempt_token), '{{}}')::text AS tokens\n  \
         FROM claimed c\n WHERE c.status = 'running' \\gset\n"
    ))
}

/// The jobs the script's claim stored in `tenants`, `jobs` and `tokens`
/// that still hold their token, as `unnest` columns `(tenant_id, id, token)`.
const PGBENCH_CLAIMED: &str =
    "unnest(:tenants::uuid[], :jobs::uuid[], :tokens::uuid[]) AS c(tenant_id, id, token)";

/// `mechanics` baseline: the claim, then the claimed jobs completed by the
/// worker's own fenced statement (`MECHANICS_COMPLETE_SQL`).
fn mechanics_script(batch: u32, chunk: u32) -> Result<String> {
    let complete = MECHANICS_COMPLETE_SQL.replace(
        "unnest($1::uuid[], $2::uuid[], $3::uuid[]) AS c(tenant_id, id, token)",
        PGBENCH_CLAIMED,
    );
    if complete.contains('$') {
        bail!("the mechanics completion no longer reads its jobs from one unnest of three arrays");
    }
    Ok(format!(
        "\\set batch {batch}\n{claim}{complete};\n",
        claim = pgbench_claim(chunk)?
    ))
}

/// `pipeline` baseline: the claim, then every job this client claimed
/// (fenced by its token) completed in one statement: an entry stored per
/// job (same table, constraints, triggers and audit row as the worker's
/// completion, with a stand-in for the verifying key, which pgbench cannot
/// verify) and the jobs marked succeeded.
fn pipeline_script(batch: u32, chunk: u32) -> Result<String> {
    let claim = pgbench_claim(chunk)?;
    Ok(format!(
        "\\set batch {batch}\n{claim}\
         WITH c AS (\n\
             SELECT q.tenant_id, q.envelope_id, convert_to(q.id::text, 'UTF8') AS body\n\
               FROM {PGBENCH_CLAIMED}\n\
               JOIN attestor.rekor_submission_queue q\n\
                 ON q.tenant_id = c.tenant_id AND q.id = c.id AND q.attempt_token = c.token\n\
                AND q.status = 'running'),\n\
         e AS (\n\
             INSERT INTO attestor.rekor_entries\n\
                 (tenant_id, envelope_id, log_id, log_index, kind, kind_version, canonical_body, leaf_hash,\n\
                  verified_key_sha256, evidence)\n\
             SELECT tenant_id, envelope_id, 'pgbench',\n\
                    ('x' || substr(md5(encode(body, 'escape')), 1, 15))::bit(60)::bigint,\n\
                    'dsse', '0.0.1', body, sha256('\\x00'::bytea || body), sha256(body), 'set+checkpoint'\n\
               FROM c\n\
             ON CONFLICT DO NOTHING\n\
             RETURNING tenant_id, envelope_id, id)\n\
         UPDATE attestor.rekor_submission_queue q\n\
            SET status = 'succeeded', finished_at = now(), result = '{{}}', rekor_entry_id = e.id,\n\
                lease_expires_at = NULL, locked_by = NULL, attempt_token = NULL\n\
           FROM e\n\
          WHERE q.tenant_id = e.tenant_id AND q.envelope_id = e.envelope_id AND q.status = 'running';\n"
    ))
}

/// The plan cache modes the baseline runs under; its speed of light is the
/// fastest. No one mode is fastest for every script or size: in two runs
/// of 100k jobs, B = 100, the mechanics script ran fastest under `auto` or
/// generic plans and the pipeline script under `force_custom_plan` (2 to 3
/// times its `auto` run); with 5k jobs the pipeline script's generic plans
/// won; and `auto` settles on custom or generic plans from one run to the
/// next.
const BASELINE_PLAN_MODES: [&str; 3] = ["force_custom_plan", "auto", "force_generic_plan"];

/// A pgbench baseline: `clients` clients, as many threads, as the
/// superuser on `db`, running a script until `jobs` jobs in batches of
/// `batch` are claimed.
struct Baseline<'a> {
    server: &'a attestor_testdb::Server,
    db: &'a attestor_testdb::TestDatabase<'a>,
    pgbench: &'a std::path::Path,
    clients: usize,
    batch: u32,
    jobs: i64,
}

impl Baseline<'_> {
    /// `script` under each of [`BASELINE_PLAN_MODES`], every job queued
    /// again before each run: the best jobs/s, and every mode's figure
    /// (`mode=jobs/s`, the best first).
    fn speed_of_light(&self, script: &str) -> Result<(f64, String)> {
        let mut runs = Vec::new();
        for mode in BASELINE_PLAN_MODES {
            reset(self.server, self.db.name())?;
            runs.push((self.run(script, mode)?, mode));
        }
        runs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let plans = runs
            .iter()
            .map(|(r, m)| format!("{m}={r:.0}"))
            .collect::<Vec<_>>()
            .join(" ");
        Ok((runs[0].0, plans))
    }

    /// One pgbench run of `script` in plan cache mode `plan_cache_mode`;
    /// jobs/s counts the jobs it left succeeded.
    fn run(&self, script: &str, plan_cache_mode: &str) -> Result<f64> {
        let Baseline {
            server,
            db,
            pgbench,
            clients,
            batch,
            jobs,
        } = *self;
        let dir = std::env::temp_dir().join(format!("attestor-bench-queue-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let file = dir.join(format!("claim-complete-{batch}.sql"));
        std::fs::write(&file, script)?;
        let per_client = (jobs as f64 / (batch as f64 * clients as f64)).ceil() as u64;
        let started = Instant::now();
        let out = Command::new(pgbench)
            .env("PGOPTIONS", format!("-c plan_cache_mode={plan_cache_mode}"))
            .args([
                "-n",
                "-M",
                "prepared",
                "-c",
                &clients.to_string(),
                "-j",
                &clients.to_string(),
            ])
            .arg("-t")
            .arg(per_client.to_string())
            .arg("-f")
            .arg(&file)
            // As the superuser: the set-based completion writes entries of many
            // tenants in one statement, which no tenant transaction may do.
            .arg(db.admin_url())
            .output()
            .context("running pgbench")?;
        let elapsed = started.elapsed();
        let _ = std::fs::remove_dir_all(&dir);
        if !out.status.success() {
            bail!(
                "pgbench failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut conn = server.connect_admin(db.name())?;
        let done = diesel::sql_query(
            "SELECT count(*) AS n FROM attestor.rekor_submission_queue WHERE status = 'succeeded'",
        )
        .get_result::<Count>(&mut conn)?
        .n;
        Ok(done as f64 / elapsed.as_secs_f64())
    }
}

#[derive(QueryableByName)]
struct P99 {
    #[diesel(sql_type = Nullable<Double>)]
    p99: Option<f64>,
    #[diesel(sql_type = BigInt)]
    done: i64,
}

/// Small tenants enqueue while the big backlog drains; p99 latency in ms.
async fn fairness(db: &attestor_testdb::TestDatabase<'_>, workers: usize) -> Result<f64> {
    let batch = 100;
    let app = Database::connect(DatabaseConfig::new(db.app_url()).with_max_connections(18 * workers as u32))
        .await?;
    let submitter = Arc::new(StandInLog::default());
    let trust = Arc::new(fake_trusted_root());
    let handles: Vec<_> = (0..workers)
        .map(|i| {
            let mut config = WorkerConfig::new(format!("fair-{i}"), trust.clone())
                .concurrency(batch, batch as u32)
                .lease(Duration::from_secs(120))
                .poll_interval(Duration::from_millis(20));
            config.pool_size = 18;
            config.tenant_chunk = 10;
            Worker::new(config, db.worker_url(), app.clone(), submitter.clone()).start()
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let small: Vec<TenantId> = (0..9).map(|_| TenantId::new_random()).collect();
    // 10 waves of 10 jobs per small tenant, 100 ms apart.
    for wave in 0..10 {
        for (i, t) in small.iter().enumerate() {
            app.transaction(TenantContext::new(*t), |tx| {
                async move {
                    diesel_async::RunQueryDsl::execute(
                        diesel::sql_query(format!(
                            "WITH env AS (
                                 INSERT INTO attestor.dsse_envelopes
                                     (tenant_id, payload_type, payload, payload_sha256, envelope_sha256, signatures, envelope)
                                 SELECT (SELECT attestor_app.require_current_tenant()), 'text/plain', p, sha256(p),
                                        sha256(p || '\\x01'::bytea), '[]', '{{}}'
                                   FROM (SELECT convert_to('small-{i}-{wave}-' || g::text, 'UTF8') AS p
                                           FROM generate_series(1, 10) g) s
                                 RETURNING id, envelope_sha256)
                             INSERT INTO attestor.rekor_submission_queue (tenant_id, envelope_id, bundle_sha256)
                             SELECT (SELECT attestor_app.require_current_tenant()), id, envelope_sha256 FROM env"
                        )),
                        tx.conn(),
                    )
                    .await
                    .map_err(attestor_repo::RepoError::from)?;
                    Ok::<_, attestor_repo::RepoError>(())
                }
                .scope_boxed()
            })
            .await?;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ids = small
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(",");
    let started = Instant::now();
    let mut conn =
        <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(&db.admin_url())
            .await?;
    let p99 = loop {
        let r: P99 = diesel_async::RunQueryDsl::get_result(
            diesel::sql_query(format!(
                "SELECT percentile_cont(0.99) WITHIN GROUP (
                            ORDER BY extract(epoch FROM updated_at - created_at) * 1000) AS p99,
                        count(*) FILTER (WHERE status = 'succeeded') AS done
                   FROM attestor.rekor_submission_queue
                  WHERE tenant_id IN ({ids})"
            )),
            &mut conn,
        )
        .await?;
        if r.done == 900 {
            break r.p99.unwrap_or(0.0);
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("small tenants did not finish ({} of 900)", r.done);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for h in handles {
        h.shutdown(Duration::from_secs(10)).await;
    }
    Ok(p99)
}

/// Peak resident set size of this process in MiB (`VmHWM`).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The log index of `answer`, which must verify as the worker verifies it.
    fn verified_index(answer: &serde_json::Value) -> i64 {
        attestor_queue::testing::fake_verified(answer).entry().log_index
    }

    #[test]
    fn presigned_answers_are_each_jobs_own_and_verify() {
        let jobs: Vec<uuid::Uuid> = (0..7).map(|_| uuid::Uuid::new_v4()).collect();
        let log = StandInLog::presign_jobs(&jobs).unwrap();
        let dir = log.dir.clone();
        assert!(dir.is_dir());
        for (i, job) in jobs.iter().enumerate() {
            let answer = log.answer(*job).unwrap();
            assert_eq!(answer, fake_rekor_entry(*job, i as i64), "job {i}'s own answer");
            assert_eq!(verified_index(&answer), i as i64);
        }
        // A job enqueued after the signing gets an answer signed at once,
        // at a log index after the presigned ones.
        let late = uuid::Uuid::new_v4();
        assert_eq!(verified_index(&log.answer(late).unwrap()), 7);
        drop(log);
        assert!(!dir.exists(), "the answers' files leave with the log");
    }

    #[test]
    fn the_baseline_scripts_name_the_claimed_jobs() {
        let mechanics = mechanics_script(100, 10).unwrap();
        let pipeline = pipeline_script(100, 10).unwrap();
        for script in [&mechanics, &pipeline] {
            assert!(!script.contains('$'), "every placeholder replaced:\n{script}");
            assert!(
                script.contains(" \\gset\n"),
                "the claim keeps its jobs:\n{script}"
            );
            assert!(script.contains(PGBENCH_CLAIMED), "{script}");
            assert!(
                !script.contains("locked_by = 'pgbench-'"),
                "no scan by locked_by:\n{script}"
            );
        }
        assert!(
            mechanics.contains("q.attempt_token = c.token"),
            "fenced:\n{mechanics}"
        );
        assert!(
            pipeline.contains("q.attempt_token = c.token"),
            "fenced:\n{pipeline}"
        );
    }
}
