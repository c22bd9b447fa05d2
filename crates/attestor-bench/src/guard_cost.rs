//! `guard-cost`: what the tenant guard costs the server, counted in instructions.
//!
//! The `guard` benchmark times throughput, which on a shared 2-core machine
//! moves with everything else the machine does; its ratio also depends on how
//! much of an operation's CPU goes to the client and the kernel. This one
//! counts instead: the throwaway cluster's postmaster runs under valgrind's
//! callgrind, so every backend's user-space instructions are counted exactly
//! (the same binary and inputs give the same count whatever the machine is
//! doing). One backend per measurement runs `n` operations of one path and
//! then exits; callgrind writes its total; the per-operation figure is the
//! difference of two such runs (`--warmup` and `--warmup + --ops`
//! operations) divided by `--ops`, so connection start-up and cache warm-up
//! cancel out.
//!
//! Paths, for a point read by id and the page of the 50 newest rows, all on
//! the rows of one tenant, generic plans on every connection:
//!
//! * **baseline**: the explicit-`WHERE tenant_id = $1` statement as the
//!   BYPASSRLS role (what `guard` compares against);
//! * **fetch**: `Database::fetch` as `attestor_app` (the guard's
//!   `Bind`/`Execute` spliced in front of the statement, RLS adding the
//!   tenant);
//! * **guard alone**: `Database::fetch` of the baseline statement as the
//!   BYPASSRLS role (the guard statement, setting and reverting the GUC; no
//!   policy);
//! * **RLS alone**: the guarded statement as `attestor_app` on a plain
//!   connection whose tenant was set once with a session-level `SET` (the
//!   policy and the inlined `require_current_tenant()`; no guard statement).
//!   Only a measurement does this; the library never sets a tenant for a
//!   session;
//! * **transaction**: the guarded statement in `Database::transaction`
//!   (`BEGIN` and the tenant's `set_config`s, the statement, `COMMIT`);
//! * **SET LOCAL**: `Database::fetch` and `Database::transaction` on a pool
//!   in `TenantContextMode::SetLocal` (the context sent as `SET LOCAL`
//!   statements, which Citus propagates to the shards; its `fetch` is a
//!   one-statement transaction);
//! * **sub-select policy**: fetch, RLS alone and transaction again, with the
//!   table's isolation policy recreated in the shape gen-rls wrote before,
//!   `tenant_id = (SELECT attestor_app.require_current_tenant())` (an
//!   InitPlan), so that the two shapes are compared within one run; the
//!   generated policy is put back afterwards.
//!
//! Needs `valgrind` on PATH and its own cluster (it ignores `DATABASE_URL`).
//! Must never be pointed at a server anyone else uses.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use attestor_repo::{
    Database, DatabaseConfig, PlanCacheMode, TenantContext, TenantContextMode as Mode, TenantId,
};
use attestor_schema::schema::attestor::sbom_entries as s;
use attestor_testdb::cluster::{Cluster, ClusterOptions};
use diesel::prelude::*;
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection as _};
use scoped_futures::ScopedFutureExt as _;
use uuid::Uuid;

use crate::guard::{bench_query, load, Query, Row, BYPASS_ROLE};

/// What one backend runs (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Route {
    Baseline,
    Fetch,
    GuardAlone,
    RlsAlone,
    Transaction,
}

/// Which isolation policy the table has while a route is measured.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Shape {
    /// The generated one: `tenant_id = attestor_app.require_current_tenant()`.
    Generated,
    /// The former shape, `tenant_id = (SELECT attestor_app.require_current_tenant())`.
    SubSelect,
}

const ROUTES: [(Route, Mode, Shape, &str); 10] = [
    (Route::Baseline, Mode::SetConfig, Shape::Generated, "baseline"),
    (
        Route::Fetch,
        Mode::SetConfig,
        Shape::Generated,
        "fetch (guard + RLS)",
    ),
    (
        Route::GuardAlone,
        Mode::SetConfig,
        Shape::Generated,
        "  guard alone",
    ),
    (Route::RlsAlone, Mode::SetConfig, Shape::Generated, "  RLS alone"),
    (
        Route::Transaction,
        Mode::SetConfig,
        Shape::Generated,
        "transaction",
    ),
    (Route::Fetch, Mode::SetLocal, Shape::Generated, "SET LOCAL fetch"),
    (
        Route::Transaction,
        Mode::SetLocal,
        Shape::Generated,
        "SET LOCAL transaction",
    ),
    (
        Route::Fetch,
        Mode::SetConfig,
        Shape::SubSelect,
        "sub-select: fetch",
    ),
    (
        Route::RlsAlone,
        Mode::SetConfig,
        Shape::SubSelect,
        "sub-select: RLS alone",
    ),
    (
        Route::Transaction,
        Mode::SetConfig,
        Shape::SubSelect,
        "sub-select: transaction",
    ),
];

/// The table's isolation policy in `shape` (run as the superuser).
fn policy_sql(shape: Shape) -> String {
    let helper = match shape {
        Shape::Generated => "attestor_app.require_current_tenant()",
        Shape::SubSelect => "(SELECT attestor_app.require_current_tenant())",
    };
    format!(
        "DROP POLICY sbom_entries_tenant_isolation ON attestor.sbom_entries;
         CREATE POLICY sbom_entries_tenant_isolation ON attestor.sbom_entries AS PERMISSIVE FOR ALL
             TO attestor_app USING (tenant_id = {helper}) WITH CHECK (tenant_id = {helper})"
    )
}

/// Where callgrind writes one file per process (`cg.<pid>`); removed on drop.
struct OutDir(PathBuf);

impl OutDir {
    fn new() -> Result<OutDir> {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!(
            "attestor-callgrind-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // The server may run as the `postgres` user: like /tmp, anyone may
        // write, only the owner may remove.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777))?;
        Ok(OutDir(dir))
    }

    /// The total instruction count of process `pid`, once it has exited and
    /// callgrind has written the file to its end (`totals:`).
    fn instructions(&self, pid: i32) -> Result<u64> {
        let path = self.0.join(format!("cg.{pid}"));
        let started = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&path) {
                if let Some(total) = text.lines().rev().find_map(|l| l.strip_prefix("totals:")) {
                    return total
                        .trim()
                        .parse()
                        .with_context(|| format!("reading the totals line of {}", path.display()));
                }
            }
            if started.elapsed() > Duration::from_secs(120) {
                bail!(
                    "callgrind wrote no totals for backend {pid} in {}",
                    path.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for OutDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn valgrind_version() -> Result<String> {
    let out = std::process::Command::new("valgrind")
        .arg("--version")
        .output()
        .context("valgrind not found on PATH: install it (Debian: apt-get install valgrind)")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The URLs and the rows one measurement works on.
struct Target {
    app_url: String,
    bypass_url: String,
    tenant: Uuid,
    ids: Vec<Uuid>,
}

#[derive(QueryableByName)]
struct Pid {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pid: i32,
}

async fn plain_connection(url: &str, setup: &str) -> Result<(AsyncPgConnection, i32)> {
    let mut conn = AsyncPgConnection::establish(url).await?;
    conn.batch_execute(setup).await?;
    let pid = diesel::sql_query("SELECT pg_backend_pid() AS pid")
        .get_result::<Pid>(&mut conn)
        .await?
        .pid;
    Ok((conn, pid))
}

async fn guarded_database(url: &str, mode: Mode) -> Result<(Database, i32)> {
    let mut config = DatabaseConfig::new(url)
        .with_max_connections(1)
        .with_plan_cache_mode(PlanCacheMode::ForceGenericPlan)
        .with_tenant_context_mode(mode);
    config.min_idle = None;
    config.test_on_checkout = false;
    let db = Database::connect(config).await?;
    let pid = db.probe_idle().await?.backend_pid;
    Ok((db, pid))
}

/// Runs `n` operations of `route` on a fresh backend, closes it and returns its pid.
async fn run_backend(route: Route, mode: Mode, query: Query, target: &Target, n: usize) -> Result<i32> {
    const GENERIC: &str = "SET plan_cache_mode = force_generic_plan";
    let tenant = target.tenant;
    let ctx = TenantContext::new(TenantId::try_from(tenant)?);
    let ids = target.ids.iter().copied().cycle().take(n);
    let mut rows = 0usize;
    let pid = match route {
        Route::Baseline | Route::RlsAlone => {
            let (url, setup) = match route {
                Route::Baseline => (&target.bypass_url, GENERIC.to_owned()),
                _ => (
                    &target.app_url,
                    format!("{GENERIC}; SET app.tenant_id = '{tenant}'"),
                ),
            };
            let (mut conn, pid) = plain_connection(url, &setup).await?;
            for id in ids {
                let got: Vec<Row> = match (route, query) {
                    (Route::Baseline, Query::Point) => {
                        bench_query!(baseline point, tenant, id).load(&mut conn).await?
                    }
                    (Route::Baseline, Query::Page) => {
                        bench_query!(baseline page, tenant).load(&mut conn).await?
                    }
                    (_, Query::Point) => bench_query!(guarded point, id).load(&mut conn).await?,
                    (_, Query::Page) => bench_query!(guarded page).load(&mut conn).await?,
                };
                rows += got.len();
            }
            pid
        }
        Route::Fetch | Route::GuardAlone => {
            let url = match route {
                Route::Fetch => &target.app_url,
                _ => &target.bypass_url,
            };
            let (db, pid) = guarded_database(url, mode).await?;
            for id in ids {
                let got: Vec<Row> = match (route, query) {
                    (Route::Fetch, Query::Point) => {
                        db.fetch(ctx.clone(), bench_query!(guarded point, id)).await?
                    }
                    (Route::Fetch, Query::Page) => db.fetch(ctx.clone(), bench_query!(guarded page)).await?,
                    (_, Query::Point) => {
                        db.fetch(ctx.clone(), bench_query!(baseline point, tenant, id))
                            .await?
                    }
                    (_, Query::Page) => db.fetch(ctx.clone(), bench_query!(baseline page, tenant)).await?,
                };
                rows += got.len();
            }
            pid
        }
        Route::Transaction => {
            let (db, pid) = guarded_database(&target.app_url, mode).await?;
            for id in ids {
                let got: Vec<Row> = db
                    .transaction(ctx.clone(), |tx| {
                        async move {
                            match query {
                                Query::Point => bench_query!(guarded point, id).load(tx.conn()).await,
                                Query::Page => bench_query!(guarded page).load(tx.conn()).await,
                            }
                            .map_err(attestor_repo::RepoError::from)
                        }
                        .scope_boxed()
                    })
                    .await?;
                rows += got.len();
            }
            pid
        }
    };
    // Every operation must have found its rows, or the paths did not do the same work.
    let per_op = match query {
        Query::Point => 1,
        Query::Page => crate::guard::PAGE as usize,
    };
    anyhow::ensure!(
        rows == n * per_op,
        "{route:?} {query:?} returned {rows} rows for {n} operations (expected {})",
        n * per_op
    );
    // The connection (or the pool and its one connection) is closed here;
    // the backend exits and callgrind writes its file.
    Ok(pid)
}

/// `guard-cost`'s options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Rows in the table read.
    #[arg(long, default_value_t = 20_000)]
    rows: i64,
    /// Tenants the rows are spread over.
    #[arg(long, default_value_t = 100)]
    tenants: i64,
    /// Operations run before counting.
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Operations counted.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    ops: u64,
    /// One JSON object per line instead of the table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let Args {
        rows,
        tenants,
        warmup,
        ops,
        json,
    } = args;
    let ops = ops as usize;
    anyhow::ensure!(
        rows >= tenants * crate::guard::PAGE,
        "--rows must give every tenant a full page"
    );
    let version = valgrind_version()?;
    if std::env::var("DATABASE_URL").is_ok_and(|u| !u.trim().is_empty()) {
        eprintln!("guard-cost ignores DATABASE_URL: it needs a server of its own under valgrind");
    }

    let out = OutDir::new()?;
    let options = ClusterOptions {
        wrapper: vec![
            "valgrind".into(),
            "--quiet".into(),
            "--tool=callgrind".into(),
            "--dump-instr=no".into(),
            "--dump-line=no".into(),
            format!("--callgrind-out-file={}/cg.%p", out.0.display()),
        ],
        settings: vec![("jit".into(), "off".into()), ("autovacuum".into(), "off".into())],
        ..Default::default()
    };
    let started = Instant::now();
    let binaries = attestor_testdb::PgBinaries::find()?;
    let server = attestor_testdb::Server::with_cluster(Cluster::start_ephemeral(&binaries, &options)?);
    let pg = server.version()?.to_string();
    let db = server.test_database()?;
    load(&server, db.name(), rows, tenants)?;
    let (tenant, ids) = one_tenants_ids(&db)?;
    eprintln!(
        "{version}: cluster, migrations and {rows} rows over {tenants} tenants in {:.1?}; \
         {} rows of one tenant per path",
        started.elapsed(),
        ids.len()
    );
    let target = Target {
        app_url: db.app_url(),
        bypass_url: server.role(BYPASS_ROLE, db.name()).url(),
        tenant,
        ids,
    };

    let mut admin = {
        use diesel::Connection as _;
        diesel::PgConnection::establish(&db.admin_url())?
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    for (query, name) in [
        (Query::Point, "guard-cost-point-read"),
        (Query::Page, "guard-cost-page"),
    ] {
        let mut per_op = Vec::new();
        let mut shape = Shape::Generated;
        for (route, mode, want, _) in ROUTES {
            if want != shape {
                diesel::connection::SimpleConnection::batch_execute(&mut admin, &policy_sql(want))?;
                shape = want;
            }
            let mut totals = [0u64; 2];
            for (slot, n) in [warmup, warmup + ops].into_iter().enumerate() {
                let pid = runtime.block_on(run_backend(route, mode, query, &target, n))?;
                totals[slot] = out.instructions(pid)?;
            }
            let diff = totals[1].checked_sub(totals[0]).with_context(|| {
                format!("{route:?}: the longer run counted fewer instructions ({totals:?})")
            })?;
            per_op.push(diff as f64 / ops as f64);
        }
        if shape != Shape::Generated {
            diesel::connection::SimpleConnection::batch_execute(&mut admin, &policy_sql(Shape::Generated))?;
        }
        report(name, &pg, query, &per_op, ops, json);
    }
    drop(runtime);
    drop(db);
    drop(server);
    Ok(())
}

fn report(name: &str, pg: &str, query: Query, per_op: &[f64], ops: usize, json: bool) {
    let (base, fetch, guard, rls, transaction) = (per_op[0], per_op[1], per_op[2], per_op[3], per_op[4]);
    let (local_fetch, local_transaction) = (per_op[5], per_op[6]);
    let (old_fetch, old_rls, old_transaction) = (per_op[7], per_op[8], per_op[9]);
    let ratio = |a: f64, b: f64| (a / b * 1000.0).round() / 1000.0;
    if json {
        let round = |x: f64| x.round();
        println!(
            "{}",
            serde_json::json!({
                "bench": name, "server_version": pg, "ops": ops,
                "baseline_server_instructions": round(base), "fetch_server_instructions": round(fetch),
                "guard_alone_server_instructions": round(guard), "rls_alone_server_instructions": round(rls),
                "transaction_server_instructions": round(transaction),
                "set_local_fetch_server_instructions": round(local_fetch),
                "set_local_transaction_server_instructions": round(local_transaction),
                "sub_select_fetch_server_instructions": round(old_fetch),
                "sub_select_rls_alone_server_instructions": round(old_rls),
                "sub_select_transaction_server_instructions": round(old_transaction),
                "baseline_over_fetch": ratio(base, fetch),
                "sub_select_fetch_over_fetch": ratio(old_fetch, fetch),
            })
        );
        return;
    }
    let title = match query {
        Query::Point => "point read",
        Query::Page => "page of 50",
    };
    println!("{name}: {pg} backend instructions per {title} (callgrind, user space, {ops} ops)");
    for ((_, _, _, label), value) in ROUTES.iter().zip(per_op) {
        let extra = match label.trim_start() {
            "baseline" => String::new(),
            _ => format!("  +{:.0} (+{:.1}%)", value - base, (value - base) / base * 100.0),
        };
        println!("  {label:<24} {value:>10.0}{extra}");
    }
    println!("  baseline / fetch         {:>10.3}", base / fetch);
    println!(
        "  RLS alone: generated policy {:.0} vs sub-select {:.0} instructions over the baseline",
        rls - base,
        old_rls - base
    );
    println!("  sub-select fetch / fetch {:>10.3}", old_fetch / fetch);
    println!(
        "  SET LOCAL transaction / transaction {:.3}",
        local_transaction / transaction
    );
}

/// The rows of the tenant with the most rows (every path reads only these).
fn one_tenants_ids(db: &attestor_testdb::TestDatabase<'_>) -> Result<(Uuid, Vec<Uuid>)> {
    use diesel::Connection as _;
    let mut conn = diesel::PgConnection::establish(&db.admin_url())?;
    let tenant: Uuid = diesel::RunQueryDsl::get_result(
        s::table
            .group_by(s::tenant_id)
            .select(s::tenant_id)
            .order(diesel::dsl::count_star().desc())
            .limit(1),
        &mut conn,
    )?;
    let ids = diesel::RunQueryDsl::load(
        s::table
            .filter(s::tenant_id.eq(tenant))
            .select(s::id)
            .order(s::id),
        &mut conn,
    )?;
    Ok((tenant, ids))
}
