//! `guard`: what the tenant guard costs.
//!
//! Loads `--rows` rows into `attestor.sbom_entries` spread over `--tenants`
//! tenants, then, with the same pool size and concurrency, times `--rounds`
//! short rounds of each path (the order rotating from round to round, so the
//! drift of a shared machine hits every path alike):
//!
//! * **guarded**: `Database::fetch` as `attestor_app` (one request: the
//!   guard's `set_config('app.tenant_id', …, true)` spliced into the query's
//!   own message group, one implicit transaction; the RLS policy adds the
//!   tenant), and, reported alongside, the general `Database::transaction`
//!   (BEGIN+set_config, query, COMMIT: three round trips);
//! * **baseline**: the same query with an explicit `WHERE tenant_id = $1`,
//!   autocommit, as a role with BYPASSRLS (no policy, no transaction).
//!
//! for (a) a point read by id and (b) the page of the 50 newest rows.
//! Throughputs are totals over all rounds; the ratio is the median of the
//! per-round ratios (each guarded round against the baseline round next to
//! it). It also prints the CPU time per operation of this process (client)
//! and of the server (the bench cluster's postmaster and the processes it
//! forked; every `postgres` process against `DATABASE_URL`), read from `/proc`,
//! which says where a gap comes from.
//!
//! It must never be run against a production server: it creates a BYPASSRLS
//! role and bulk-loads a database of its own.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use attestor_repo::{Database, DatabaseConfig, PlanCacheMode, RepoError, TenantContext, TenantId};
use attestor_schema::schema::attestor::sbom_entries as s;
use diesel::prelude::*;
use diesel::result::ConnectionError;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection as _};
use scoped_futures::ScopedFutureExt;
use uuid::Uuid;

pub(crate) const BYPASS_ROLE: &str = "attestor_bench_bypass";
pub(crate) const PAGE: i64 = 50;

pub(crate) type Row = (Uuid, Uuid, chrono::DateTime<chrono::Utc>, i32);

/// The statements every guard benchmark sends (`guard` and `guard-cost`
/// alike): the guarded ones name no tenant (the RLS policy adds it), the
/// baseline's carry an explicit `tenant_id = $1`.
macro_rules! bench_query {
    (guarded point, $id:expr) => {
        s::table
            .filter(s::id.eq($id))
            .select((s::id, s::tenant_id, s::created_at, s::component_count))
    };
    (guarded page) => {
        s::table
            .order((s::created_at.desc(), s::id.desc()))
            .limit($crate::guard::PAGE)
            .select((s::id, s::tenant_id, s::created_at, s::component_count))
    };
    (baseline point, $tenant:expr, $id:expr) => {
        s::table
            .filter(s::tenant_id.eq($tenant))
            .filter(s::id.eq($id))
            .select((s::id, s::tenant_id, s::created_at, s::component_count))
    };
    (baseline page, $tenant:expr) => {
        s::table
            .filter(s::tenant_id.eq($tenant))
            .order((s::created_at.desc(), s::id.desc()))
            .limit($crate::guard::PAGE)
            .select((s::id, s::tenant_id, s::created_at, s::component_count))
    };
}
pub(crate) use bench_query;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Query {
    Point,
    Page,
}

/// What one timed round drives: a guarded API, or the baseline.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Path {
    Fetch,
    Transaction,
    Baseline,
}

const PATHS: [Path; 3] = [Path::Fetch, Path::Transaction, Path::Baseline];
/// Indexes into [`PATHS`].
const FETCH: usize = 0;
const TRANSACTION: usize = 1;
const BASELINE: usize = 2;

type BaselinePool = bb8::Pool<AsyncDieselConnectionManager<AsyncPgConnection>>;

/// One timed run of one path.
#[derive(Clone, Copy, Default)]
struct Sample {
    ops: u64,
    elapsed: Duration,
    cpu: Cpu,
}

impl Sample {
    fn per_s(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    fn add(&mut self, other: &Sample) {
        self.ops += other.ops;
        self.elapsed += other.elapsed;
        self.cpu.client += other.cpu.client;
        self.cpu.server += other.cpu.server;
    }

    /// CPU microseconds per operation: (this process, the PostgreSQL processes).
    fn cpu_us_per_op(&self) -> (f64, f64) {
        let per_op = |seconds: f64| seconds * 1e6 / self.ops.max(1) as f64;
        (per_op(self.cpu.client), per_op(self.cpu.server))
    }
}

/// CPU seconds used (user + system) by this process (the client: pool,
/// driver, splice) and by the server: the bench cluster's postmaster and
/// the processes it forked (backends, background processes), or, against
/// `DATABASE_URL`'s server, every process named `postgres` on the machine.
/// Read from `/proc`; zero where that is not available.
#[derive(Clone, Copy, Default)]
struct Cpu {
    client: f64,
    server: f64,
}

/// The bench cluster's postmaster, set once by [`run`]; `None` for a
/// server of `DATABASE_URL`.
static POSTMASTER: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();

impl Cpu {
    fn now() -> Cpu {
        // The server's processes first: scanning /proc costs this process
        // CPU, which must fall outside the client's figure.
        let server = server_cpu_seconds();
        Cpu {
            client: cpu_seconds("/proc/self/stat").map_or(0.0, |(cpu, _)| cpu),
            server,
        }
    }

    fn since(&self, before: &Cpu) -> Cpu {
        let client = cpu_seconds("/proc/self/stat").map_or(0.0, |(cpu, _)| cpu) - before.client;
        Cpu {
            client,
            server: server_cpu_seconds() - before.server,
        }
    }
}

/// utime + stime of a `/proc/<pid>/stat` file, in seconds, and the parent pid.
fn cpu_seconds(path: &str) -> Option<(f64, u32)> {
    const TICKS_PER_S: f64 = 100.0; // USER_HZ, 100 on every Linux ABI
    let stat = std::fs::read_to_string(path).ok()?;
    // The fields after the parenthesised command name (which may hold spaces).
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    let ppid = fields.get(1)?.parse().ok()?;
    Some(((ticks(11)? + ticks(12)?) / TICKS_PER_S, ppid))
}

/// The pid in the first line of a data directory's `postmaster.pid`.
fn postmaster_pid(server: &attestor_testdb::Server) -> Option<u32> {
    let cluster = server.cluster()?;
    let text = std::fs::read_to_string(cluster.data_dir().join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

fn server_cpu_seconds() -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let postmaster = POSTMASTER.get().copied().flatten();
    entries
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let (cpu, ppid) = cpu_seconds(&e.path().join("stat").to_string_lossy())?;
            let ours = match postmaster {
                Some(pm) => pid == pm || ppid == pm,
                None => {
                    std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.starts_with("postgres"))
                }
            };
            ours.then_some(cpu)
        })
        .sum()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// One query's result: totals per path and the paired ratios.
struct Report {
    name: &'static str,
    fetch: Sample,
    transaction: Sample,
    baseline: Sample,
    /// Median over rounds of fetch/baseline throughput, each round's pair
    /// measured back to back.
    ratio: f64,
    transaction_ratio: f64,
    rounds: usize,
    plan_cache_mode: PlanCacheMode,
}

impl Report {
    fn json(&self, rows: i64, tenants: i64, connections: u32) -> serde_json::Value {
        let round3 = |x: f64| (x * 1000.0).round() / 1000.0;
        let round1 = |x: f64| (x * 10.0).round() / 10.0;
        let (fetch_client, fetch_server) = self.fetch.cpu_us_per_op();
        let (base_client, base_server) = self.baseline.cpu_us_per_op();
        serde_json::json!({
            "bench": self.name, "guarded_per_s": self.fetch.per_s().round(),
            "baseline_per_s": self.baseline.per_s().round(), "ratio": round3(self.ratio),
            "transaction_per_s": self.transaction.per_s().round(),
            "transaction_ratio": round3(self.transaction_ratio),
            "guarded_client_cpu_us": round1(fetch_client), "guarded_server_cpu_us": round1(fetch_server),
            "baseline_client_cpu_us": round1(base_client), "baseline_server_cpu_us": round1(base_server),
            "rounds": self.rounds, "plan_cache_mode": self.plan_cache_mode.setting().unwrap_or("server"),
            "rows": rows, "tenants": tenants, "connections": connections,
        })
    }

    fn print(&self) {
        let (name, ratio, transaction_ratio) = (self.name, self.ratio, self.transaction_ratio);
        println!(
            "{name:<17} guarded(fetch) {:>8.0}/s  transaction {:>8.0}/s  baseline {:>8.0}/s  \
             ratio {ratio:.3} (transaction {transaction_ratio:.3}; median of {} paired rounds; target >= 0.9)",
            self.fetch.per_s(),
            self.transaction.per_s(),
            self.baseline.per_s(),
            self.rounds,
        );
        let cpu = |s: &Sample| {
            let (c, v) = s.cpu_us_per_op();
            format!("{c:.1} + {v:.1}")
        };
        println!(
            "{:<17} CPU us/op, client + server: fetch {}  transaction {}  baseline {}  (plan_cache_mode {})",
            "",
            cpu(&self.fetch),
            cpu(&self.transaction),
            cpu(&self.baseline),
            self.plan_cache_mode.setting().unwrap_or("of the server"),
        );
    }
}

/// Run `path` for `duration`.
async fn measure(
    path: Path,
    guarded: &Database,
    baseline: &BaselinePool,
    sample: &Arc<Vec<(Uuid, Uuid)>>,
    query: Query,
    connections: u32,
    duration: Duration,
) -> Result<Sample> {
    match path {
        Path::Baseline => measure_baseline(baseline, sample, query, connections, duration).await,
        path => measure_guarded(guarded, sample, query, path, connections, duration).await,
    }
}

/// `guard`'s options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Rows in the table read.
    #[arg(long, default_value_t = 1_000_000)]
    rows: i64,
    /// Tenants the rows are spread over.
    #[arg(long, default_value_t = 1_000)]
    tenants: i64,
    /// Seconds each path runs per round.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Connections of each pool.
    #[arg(long, default_value_t = 4)]
    connections: u32,
    /// Paired rounds; the ratio is their median.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// plan_cache_mode of both pools: auto, force_generic_plan,
    /// force_custom_plan or server (default: the guarded pool's default).
    #[arg(long, value_parser = |s: &str| s.parse::<PlanCacheMode>())]
    plan_cache_mode: Option<PlanCacheMode>,
    /// One JSON object per line instead of the table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let Args {
        rows,
        tenants,
        seconds,
        connections,
        rounds,
        plan_cache_mode,
        json,
    } = args;
    let rounds = rounds as usize;
    // Both pools get the same plan_cache_mode: the guarded pool's default
    // unless told otherwise.
    let plan_cache_mode = plan_cache_mode.unwrap_or(DatabaseConfig::new("").plan_cache_mode);

    let server = attestor_testdb::Server::from_env().context("starting PostgreSQL")?;
    let _ = POSTMASTER.set(postmaster_pid(&server));
    let pg = server.version()?.to_string();
    if !json {
        println!("guard on {pg}:");
    }
    let db = server.test_database()?;
    let started = Instant::now();
    load(&server, db.name(), rows, tenants)?;
    eprintln!(
        "loaded {rows} rows over {tenants} tenants in {:.1?}",
        started.elapsed()
    );
    let sample = sample_ids(&db, 20_000)?;

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut config = DatabaseConfig::new(db.app_url())
            .with_max_connections(connections)
            .with_plan_cache_mode(plan_cache_mode);
        config.test_on_checkout = false;
        let guarded = Database::connect(config).await?;
        let bypass_url = server.role(BYPASS_ROLE, db.name()).url();
        let mut manager = ManagerConfig::<AsyncPgConnection>::default();
        manager.custom_setup = Box::new(move |url| {
            Box::pin(async move {
                let mut conn = AsyncPgConnection::establish(url).await?;
                if let Some(mode) = plan_cache_mode.setting() {
                    conn.batch_execute(&format!("SET plan_cache_mode = {mode}"))
                        .await
                        .map_err(ConnectionError::CouldntSetupConfiguration)?;
                }
                Ok(conn)
            })
        });
        let baseline = bb8::Pool::builder()
            .max_size(connections)
            .test_on_check_out(false)
            .build(AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(bypass_url, manager))
            .await?;
        let sample = Arc::new(sample);
        for (query, name) in [(Query::Point, "guard-point-read"), (Query::Page, "guard-page")] {
            let warm = Duration::from_millis(300);
            for path in PATHS {
                measure(path, &guarded, &baseline, &sample, query, connections, warm).await?;
            }
            // Many short rounds, the order of the paths rotating, so that the
            // machine's drift (it is shared) hits every path alike.
            let round = Duration::from_secs_f64(seconds / rounds as f64);
            let mut totals = [Sample::default(); 3];
            let mut per_round = [Vec::new(), Vec::new(), Vec::new()];
            for r in 0..rounds {
                for k in 0..PATHS.len() {
                    let slot = (r + k) % PATHS.len();
                    let got = measure(
                        PATHS[slot],
                        &guarded,
                        &baseline,
                        &sample,
                        query,
                        connections,
                        round,
                    )
                    .await?;
                    totals[slot].add(&got);
                    per_round[slot].push(got.per_s());
                }
            }
            let paired = |slot: usize| {
                median(
                    per_round[slot]
                        .iter()
                        .zip(&per_round[BASELINE])
                        .map(|(g, b)| g / b)
                        .collect(),
                )
            };
            let report = Report {
                name,
                fetch: totals[FETCH],
                transaction: totals[TRANSACTION],
                baseline: totals[BASELINE],
                ratio: paired(FETCH),
                transaction_ratio: paired(TRANSACTION),
                rounds,
                plan_cache_mode,
            };
            if json {
                let mut line = report.json(rows, tenants, connections);
                line["server_version"] = pg.clone().into();
                println!("{line}");
            } else {
                report.print();
            }
        }
        anyhow::Ok(())
    })?;
    Ok(())
}

/// Bulk load as the superuser, bypassing the audit trigger (replica mode),
/// and create the BYPASSRLS baseline role.
pub(crate) fn load(server: &attestor_testdb::Server, database: &str, rows: i64, tenants: i64) -> Result<()> {
    let mut conn = server.connect_admin(database)?;
    let sql = format!(
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{BYPASS_ROLE}') THEN
             CREATE ROLE {BYPASS_ROLE} LOGIN BYPASSRLS PASSWORD '{BYPASS_ROLE}';
           END IF;
         END $$;
         GRANT USAGE ON SCHEMA attestor TO {BYPASS_ROLE};
         GRANT SELECT ON attestor.sbom_entries TO {BYPASS_ROLE};
         SET session_replication_role = replica;
         CREATE TEMP TABLE bench_tenants AS
           SELECT n, gen_random_uuid() AS tenant FROM generate_series(0, {tenants} - 1) n;
         INSERT INTO attestor.sbom_entries
           (tenant_id, created_at, updated_at, format, spec_version, sbom_digest, component_count, document)
         SELECT t.tenant, now() - g * interval '1 second', now() - g * interval '1 second',
                'spdx', 'SPDX-2.3', sha256(int8send(g)), (g % 100)::int, '{{}}'::jsonb
         FROM generate_series(1, {rows}) g JOIN bench_tenants t ON t.n = g % {tenants};
         SET session_replication_role = origin;"
    );
    use diesel::connection::SimpleConnection;
    conn.batch_execute(&sql).context("loading benchmark rows")?;
    // A multi-statement batch is one implicit transaction; VACUUM needs its own.
    conn.batch_execute("VACUUM ANALYZE attestor.sbom_entries")?;
    Ok(())
}

fn sample_ids(db: &attestor_testdb::TestDatabase<'_>, n: i64) -> Result<Vec<(Uuid, Uuid)>> {
    use diesel::Connection as _;
    let mut conn = diesel::PgConnection::establish(&db.admin_url())?;
    let ids = diesel::RunQueryDsl::load::<(Uuid, Uuid)>(
        s::table
            .select((s::tenant_id, s::id))
            .order(diesel::dsl::sql::<diesel::sql_types::Double>("random()"))
            .limit(n),
        &mut conn,
    )?;
    Ok(ids)
}

/// Run `connections` concurrent loops for `duration`, each doing one query
/// after another. The loops are joined on one task (not spawned): the same
/// driver for every path, and no `Send` bound on the query futures.
async fn drive<F, Fut>(connections: u32, duration: Duration, op: F) -> Result<Sample>
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let stop = AtomicBool::new(false);
    let count = AtomicU64::new(0);
    let cpu_before = Cpu::now();
    let started = Instant::now();
    let loops = (0..connections as u64).map(|worker| {
        let (stop, count, op) = (&stop, &count, &op);
        async move {
            let mut i = worker * 7919;
            while !AtomicBool::load(stop, Ordering::Relaxed) {
                op(i).await?;
                count.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            anyhow::Ok(())
        }
    });
    let timer = async {
        tokio::time::sleep(duration).await;
        stop.store(true, Ordering::Relaxed);
        anyhow::Ok(())
    };
    let (results, _) = futures_util::future::join(futures_util::future::join_all(loops), timer).await;
    let elapsed = started.elapsed();
    let cpu = Cpu::now().since(&cpu_before);
    results.into_iter().collect::<Result<Vec<()>>>()?;
    Ok(Sample {
        ops: AtomicU64::load(&count, Ordering::Relaxed),
        elapsed,
        cpu,
    })
}

async fn measure_guarded(
    db: &Database,
    sample: &Arc<Vec<(Uuid, Uuid)>>,
    query: Query,
    path: Path,
    connections: u32,
    duration: Duration,
) -> Result<Sample> {
    let (db, sample) = (db.clone(), sample.clone());
    drive(connections, duration, move |i| {
        let (db, sample) = (db.clone(), sample.clone());
        async move {
            let (tenant, id) = sample[(i as usize) % sample.len()];
            let ctx = TenantContext::new(TenantId::try_from(tenant)?);
            if path == Path::Fetch {
                let rows: Vec<Row> = match query {
                    Query::Point => db.fetch(ctx, bench_query!(guarded point, id)).await?,
                    Query::Page => db.fetch(ctx, bench_query!(guarded page)).await?,
                };
                anyhow::ensure!(!rows.is_empty(), "guarded fetch returned no row");
                return Ok(());
            }
            let n = db
                .transaction(ctx, |tx| {
                    async move {
                        let rows: Vec<Row> = match query {
                            Query::Point => bench_query!(guarded point, id).load(tx.conn()).await?,
                            Query::Page => bench_query!(guarded page).load(tx.conn()).await?,
                        };
                        Ok::<_, RepoError>(rows.len())
                    }
                    .scope_boxed()
                })
                .await?;
            anyhow::ensure!(n >= 1, "guarded query returned no row");
            Ok(())
        }
    })
    .await
}

async fn measure_baseline(
    pool: &BaselinePool,
    sample: &Arc<Vec<(Uuid, Uuid)>>,
    query: Query,
    connections: u32,
    duration: Duration,
) -> Result<Sample> {
    let (pool, sample) = (pool.clone(), sample.clone());
    drive(connections, duration, move |i| {
        let (pool, sample) = (pool.clone(), sample.clone());
        async move {
            let (tenant, id) = sample[(i as usize) % sample.len()];
            let mut conn = pool.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            let rows: Vec<Row> = match query {
                Query::Point => bench_query!(baseline point, tenant, id).load(&mut *conn).await?,
                Query::Page => bench_query!(baseline page, tenant).load(&mut *conn).await?,
            };
            anyhow::ensure!(!rows.is_empty(), "baseline query returned no row");
            Ok(())
        }
    })
    .await
}
