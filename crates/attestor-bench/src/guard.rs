//! `guard`: what the tenant guard costs.
//!
//! Loads `--rows` rows into `attestor.sbom_entries` spread over `--tenants`
//! tenants, then, with the same pool size and concurrency, alternates timed
//! rounds of:
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
//! It must never be run against a production server: it creates a BYPASSRLS
//! role and bulk-loads a database of its own.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use attestor_repo::{Database, DatabaseConfig, RepoError, TenantContext, TenantId};
use attestor_schema::schema::attestor::sbom_entries as s;
use diesel::prelude::*;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use scoped_futures::ScopedFutureExt;
use uuid::Uuid;

use crate::Options;

const BYPASS_ROLE: &str = "attestor_bench_bypass";
const PAGE: i64 = 50;

type Row = (Uuid, Uuid, chrono::DateTime<chrono::Utc>, i32);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Query {
    Point,
    Page,
}

/// Which guarded API to drive.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Path {
    Fetch,
    Transaction,
}

pub fn run(args: &[String]) -> Result<()> {
    let opts = Options::new(args);
    let rows: i64 = opts.value("--rows", 1_000_000)?;
    let tenants: i64 = opts.value("--tenants", 1_000)?;
    let seconds: f64 = opts.value("--seconds", 5.0)?;
    let connections: u32 = opts.value("--connections", 4)?;
    let json = opts.flag("--json");

    let server = attestor_testdb::Server::from_env().context("starting PostgreSQL")?;
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
        let mut config = DatabaseConfig::new(db.app_url()).with_max_connections(connections);
        config.test_on_checkout = false;
        let guarded = Database::connect(config).await?;
        let bypass_url = server.role(BYPASS_ROLE, db.name()).url();
        let baseline = bb8::Pool::builder()
            .max_size(connections)
            .test_on_check_out(false)
            .build(AsyncDieselConnectionManager::<AsyncPgConnection>::new(bypass_url))
            .await?;
        let sample = Arc::new(sample);
        for (query, name) in [(Query::Point, "guard-point-read"), (Query::Page, "guard-page")] {
            // Warm up both paths, then alternate rounds so drift hits both.
            let round = Duration::from_secs_f64(seconds / 4.0);
            // (ops, time) for fetch, transaction, baseline.
            let mut totals = [(0u64, Duration::ZERO); 3];
            let warm = Duration::from_millis(300);
            measure_guarded(&guarded, &sample, query, Path::Fetch, connections, warm).await?;
            measure_guarded(&guarded, &sample, query, Path::Transaction, connections, warm).await?;
            measure_baseline(&baseline, &sample, query, connections, warm).await?;
            for _ in 0..4 {
                for (slot, path) in [(0, Some(Path::Fetch)), (1, Some(Path::Transaction)), (2, None)] {
                    let (n, t) = match path {
                        Some(path) => measure_guarded(&guarded, &sample, query, path, connections, round).await?,
                        None => measure_baseline(&baseline, &sample, query, connections, round).await?,
                    };
                    totals[slot].0 += n;
                    totals[slot].1 += t;
                }
            }
            let per_s = |(n, t): (u64, Duration)| n as f64 / t.as_secs_f64();
            let (guarded_per_s, transaction_per_s, baseline_per_s) =
                (per_s(totals[0]), per_s(totals[1]), per_s(totals[2]));
            let ratio = guarded_per_s / baseline_per_s;
            let transaction_ratio = transaction_per_s / baseline_per_s;
            let round3 = |x: f64| (x * 1000.0).round() / 1000.0;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "bench": name, "guarded_per_s": guarded_per_s.round(),
                        "baseline_per_s": baseline_per_s.round(), "ratio": round3(ratio),
                        "transaction_per_s": transaction_per_s.round(),
                        "transaction_ratio": round3(transaction_ratio),
                        "rows": rows, "tenants": tenants, "connections": connections,
                    })
                );
            } else {
                println!(
                    "{name:<17} guarded(fetch) {guarded_per_s:>8.0}/s  transaction {transaction_per_s:>8.0}/s  \
                     baseline {baseline_per_s:>8.0}/s  ratio {ratio:.3} (transaction {transaction_ratio:.3}; target >= 0.9)"
                );
            }
        }
        anyhow::Ok(())
    })?;
    Ok(())
}

/// Bulk load as the superuser, bypassing the audit trigger (replica mode),
/// and create the BYPASSRLS baseline role.
fn load(server: &attestor_testdb::Server, database: &str, rows: i64, tenants: i64) -> Result<()> {
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
async fn drive<F, Fut>(connections: u32, duration: Duration, op: F) -> Result<(u64, Duration)>
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let stop = AtomicBool::new(false);
    let count = AtomicU64::new(0);
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
    results.into_iter().collect::<Result<Vec<()>>>()?;
    Ok((AtomicU64::load(&count, Ordering::Relaxed), started.elapsed()))
}

async fn measure_guarded(
    db: &Database,
    sample: &Arc<Vec<(Uuid, Uuid)>>,
    query: Query,
    path: Path,
    connections: u32,
    duration: Duration,
) -> Result<(u64, Duration)> {
    let (db, sample) = (db.clone(), sample.clone());
    drive(connections, duration, move |i| {
        let (db, sample) = (db.clone(), sample.clone());
        async move {
            let (tenant, id) = sample[(i as usize) % sample.len()];
            let ctx = TenantContext::new(TenantId::try_from(tenant)?);
            if path == Path::Fetch {
                let rows: Vec<Row> = match query {
                    Query::Point => {
                        db.fetch(
                            ctx,
                            s::table.filter(s::id.eq(id)).select((
                                s::id,
                                s::tenant_id,
                                s::created_at,
                                s::component_count,
                            )),
                        )
                        .await?
                    }
                    Query::Page => {
                        db.fetch(
                            ctx,
                            s::table
                                .order((s::created_at.desc(), s::id.desc()))
                                .limit(PAGE)
                                .select((s::id, s::tenant_id, s::created_at, s::component_count)),
                        )
                        .await?
                    }
                };
                anyhow::ensure!(!rows.is_empty(), "guarded fetch returned no row");
                return Ok(());
            }
            let n = db
                .transaction(ctx, |tx| {
                    async move {
                        let rows: Vec<Row> = match query {
                            Query::Point => {
                                s::table
                                    .filter(s::id.eq(id))
                                    .select((s::id, s::tenant_id, s::created_at, s::component_count))
                                    .load(tx.conn())
                                    .await?
                            }
                            Query::Page => {
                                s::table
                                    .order((s::created_at.desc(), s::id.desc()))
                                    .limit(PAGE)
                                    .select((s::id, s::tenant_id, s::created_at, s::component_count))
                                    .load(tx.conn())
                                    .await?
                            }
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
    pool: &bb8::Pool<AsyncDieselConnectionManager<AsyncPgConnection>>,
    sample: &Arc<Vec<(Uuid, Uuid)>>,
    query: Query,
    connections: u32,
    duration: Duration,
) -> Result<(u64, Duration)> {
    let (pool, sample) = (pool.clone(), sample.clone());
    drive(connections, duration, move |i| {
        let (pool, sample) = (pool.clone(), sample.clone());
        async move {
            let (tenant, id) = sample[(i as usize) % sample.len()];
            let mut conn = pool.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            let rows: Vec<Row> = match query {
                Query::Point => {
                    s::table
                        .filter(s::tenant_id.eq(tenant))
                        .filter(s::id.eq(id))
                        .select((s::id, s::tenant_id, s::created_at, s::component_count))
                        .load(&mut *conn)
                        .await?
                }
                Query::Page => {
                    s::table
                        .filter(s::tenant_id.eq(tenant))
                        .order((s::created_at.desc(), s::id.desc()))
                        .limit(PAGE)
                        .select((s::id, s::tenant_id, s::created_at, s::component_count))
                        .load(&mut *conn)
                        .await?
                }
            };
            anyhow::ensure!(!rows.is_empty(), "baseline query returned no row");
            Ok(())
        }
    })
    .await
}
