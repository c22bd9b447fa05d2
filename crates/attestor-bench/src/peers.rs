//! `queue --peers`: the queues users compare this one with, measured in the
//! same run, on the same throwaway cluster (durable commits, the same
//! server settings), on the same number of jobs over the same tenants.
//!
//! Owns:
//! * installing the peers at pinned versions into `target/peers/`
//!   (`--peers-dir`): graphile-worker with `npm install --prefix`, PgQueuer
//!   (with its asyncpg driver) into a Python venv with `pip`; nothing is
//!   installed when the pinned versions are already there, and a missing
//!   `node`/`npm`/`python3` is a clear error before any database work;
//! * running each peer's no-op handler in a fresh database of the bench's
//!   cluster through a small script of ours (`peers/*.js`, `peers/*.py`,
//!   written next to the installation): enqueue every job first, then time
//!   from the workers' start until the queue's table is empty (a job is one
//!   claim plus its completion, which deletes it);
//! * the `queue-peer` lines and the ratios of our `mechanics`/`pipeline`
//!   figures to graphile-worker with its documented fast settings.
//!
//! The peers log in as the cluster's superuser (they install their own
//! schemas): they are not part of the isolation story. So this module must
//! never run a peer against any server but the bench's own throwaway cluster
//! (it refuses under `DATABASE_URL`), and nothing in `cargo test` may reach
//! it with network: its tests cover the argument parsing, the version checks
//! and the result parsing only.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The graphile-worker release compared against.
pub const GRAPHILE_WORKER_VERSION: &str = "0.17.3";
/// The PgQueuer release compared against.
pub const PGQUEUER_VERSION: &str = "1.6.0";
/// PgQueuer's asyncpg driver (its `asyncpg` extra), pinned as well.
pub const ASYNCPG_VERSION: &str = "0.32.0";
/// graphile-worker's concurrent jobs in both its runs (one runner).
pub const GRAPHILE_CONCURRENCY: usize = 16;
/// PgQueuer's dequeue batch size (`run(batch_size=…)`).
pub const PGQUEUER_BATCH: usize = 100;

const GRAPHILE_SCRIPT: &str = include_str!("peers/graphile_worker.js");
const PGQUEUER_SCRIPT: &str = include_str!("peers/pgqueuer_bench.py");

/// `queue`'s peer options.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PeerArgs {
    /// Also install graphile-worker and PgQueuer (npm, PyPI; pinned, into
    /// target/peers) and run each with its documented fast settings on the
    /// same cluster; print `queue-peer` lines and our ratios to them.
    #[arg(long)]
    pub peers: bool,
    /// Where the peers are installed [default: target/peers next to this binary].
    #[arg(long, value_name = "DIR", requires = "peers")]
    pub peers_dir: Option<PathBuf>,
}

/// One of our figures, to be set against the peers.
#[derive(Debug, Clone, PartialEq)]
pub struct Ours {
    /// `mechanics` or `pipeline`.
    pub mode: &'static str,
    /// Batch size B.
    pub batch: u32,
    /// Throughput of the run.
    pub jobs_per_s: f64,
}

/// A peer configuration that is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// graphile-worker, local queue 500, batched completion, concurrency 16.
    GraphileBatched,
    /// graphile-worker, no local queue, no batching, concurrency 16.
    GraphileDefaults,
    /// PgQueuer, one queue manager per worker, batch 100.
    PgQueuer,
}

impl Peer {
    /// Every peer, in the order they run.
    pub const ALL: [Peer; 3] = [Peer::GraphileBatched, Peer::GraphileDefaults, Peer::PgQueuer];

    /// The `system` of its JSON line.
    pub fn system(self) -> String {
        match self {
            Peer::GraphileBatched => format!("graphile-worker {GRAPHILE_WORKER_VERSION} batched"),
            Peer::GraphileDefaults => format!("graphile-worker {GRAPHILE_WORKER_VERSION} defaults"),
            Peer::PgQueuer => format!("PgQueuer {PGQUEUER_VERSION} batch {PGQUEUER_BATCH}"),
        }
    }

    /// What the settings are, for the reader of the line.
    fn settings(self, workers: usize) -> String {
        match self {
            Peer::GraphileBatched => format!(
                "localQueue.size 500 (refetchDelay 10 ms), completeJobBatchDelay 0, \
                 concurrency {GRAPHILE_CONCURRENCY}, pool {}",
                GRAPHILE_CONCURRENCY + 1
            ),
            Peer::GraphileDefaults => format!(
                "no local queue, unbatched completion, concurrency {GRAPHILE_CONCURRENCY}, pool {}",
                (GRAPHILE_CONCURRENCY + 2).max(10)
            ),
            Peer::PgQueuer => format!(
                "{workers} queue managers (one asyncpg connection each), batch_size {PGQUEUER_BATCH}, drain mode"
            ),
        }
    }

    /// What one job costs in the database.
    fn job(self) -> &'static str {
        match self {
            Peer::GraphileBatched | Peer::GraphileDefaults => "claim, delete",
            Peer::PgQueuer => "claim, log, delete",
        }
    }
}

/// The installed peers: the commands that run their scripts.
#[derive(Debug)]
pub struct Installed {
    node: PathBuf,
    graphile_script: PathBuf,
    python: PathBuf,
    pgqueuer_script: PathBuf,
}

/// One peer run's result line, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerRun {
    /// Jobs its handler ran.
    pub jobs: u64,
    /// Seconds from the workers' start until the queue was empty.
    pub elapsed_s: f64,
    /// Jobs left in its table at the end (0 when drained).
    pub remaining: u64,
}

impl PeerRun {
    pub fn jobs_per_s(&self) -> f64 {
        self.jobs as f64 / self.elapsed_s
    }
}

/// The default installation directory: `target/peers`, `target` being the
/// directory that holds this binary's profile directory (so it follows
/// `CARGO_TARGET_DIR`).
fn default_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the bench binary")?;
    let target = exe
        .parent()
        .and_then(Path::parent)
        .context("the bench binary is not inside a cargo target directory; pass --peers-dir")?;
    Ok(target.join("peers"))
}

/// Installs (or finds) the pinned peers; `None` without `--peers`. Runs
/// before the bench starts its cluster, so a missing tool fails fast.
pub fn prepare(args: &PeerArgs) -> Result<Option<Installed>> {
    if !args.peers {
        return Ok(None);
    }
    if std::env::var("DATABASE_URL").is_ok_and(|u| !u.trim().is_empty()) {
        bail!(
            "--peers runs the peers as a superuser on the bench's own throwaway cluster only; \
             unset DATABASE_URL"
        );
    }
    let dir = match &args.peers_dir {
        Some(d) => d.clone(),
        None => default_dir()?,
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;

    let node = tool("node", "Node.js (Debian: apt-get install nodejs npm)")?;
    let npm = tool("npm", "npm (Debian: apt-get install npm)")?;
    let graphile = dir.join("graphile-worker");
    match npm_package_version(&graphile, "graphile-worker") {
        Some(v) if v == GRAPHILE_WORKER_VERSION => {
            eprintln!("graphile-worker {v} already installed in {}", graphile.display())
        }
        found => {
            eprintln!(
                "installing graphile-worker {GRAPHILE_WORKER_VERSION} into {} (found: {})",
                graphile.display(),
                found.as_deref().unwrap_or("none")
            );
            std::fs::create_dir_all(&graphile)?;
            run_install(
                Command::new(&npm)
                    .arg("install")
                    .arg("--prefix")
                    .arg(&graphile)
                    .args(["--no-audit", "--no-fund", "--save-exact"])
                    .arg(format!("graphile-worker@{GRAPHILE_WORKER_VERSION}")),
                "npm install graphile-worker",
            )?;
            let got = npm_package_version(&graphile, "graphile-worker");
            if got.as_deref() != Some(GRAPHILE_WORKER_VERSION) {
                bail!("npm installed graphile-worker {got:?}, not {GRAPHILE_WORKER_VERSION}");
            }
        }
    }
    let graphile_script = graphile.join("graphile_worker.js");
    std::fs::write(&graphile_script, GRAPHILE_SCRIPT)?;

    let python3 = tool(
        "python3",
        "Python 3 with venv and pip (Debian: apt-get install python3-venv)",
    )?;
    let venv = dir.join("pgqueuer");
    let python = venv.join("bin").join("python");
    let want = [("pgqueuer", PGQUEUER_VERSION), ("asyncpg", ASYNCPG_VERSION)];
    if want
        .iter()
        .all(|(name, v)| dist_version(&venv, name).as_deref() == Some(*v))
    {
        eprintln!(
            "PgQueuer {PGQUEUER_VERSION} already installed in {}",
            venv.display()
        );
    } else {
        eprintln!("installing PgQueuer {PGQUEUER_VERSION} into {}", venv.display());
        if !python.exists() {
            run_install(
                Command::new(&python3).args(["-m", "venv"]).arg(&venv),
                "python3 -m venv (Debian: apt-get install python3-venv)",
            )?;
        }
        run_install(
            Command::new(&python)
                .args(["-m", "pip", "install", "--disable-pip-version-check", "--quiet"])
                .arg(format!("pgqueuer[asyncpg]=={PGQUEUER_VERSION}"))
                .arg(format!("asyncpg=={ASYNCPG_VERSION}")),
            "pip install pgqueuer",
        )?;
        for (name, v) in want {
            let got = dist_version(&venv, name);
            if got.as_deref() != Some(v) {
                bail!("pip installed {name} {got:?}, not {v}");
            }
        }
    }
    let pgqueuer_script = venv.join("pgqueuer_bench.py");
    std::fs::write(&pgqueuer_script, PGQUEUER_SCRIPT)?;
    Ok(Some(Installed {
        node,
        graphile_script,
        python,
        pgqueuer_script,
    }))
}

/// `name` on `PATH`, answering `--version`; else an error saying what to install.
fn tool(name: &str, install: &str) -> Result<PathBuf> {
    match Command::new(name).arg("--version").output() {
        Ok(out) if out.status.success() => Ok(PathBuf::from(name)),
        Ok(out) => bail!(
            "--peers needs `{name}`, but `{name} --version` failed ({}): install {install}",
            out.status
        ),
        Err(e) => bail!("--peers needs `{name}` on PATH ({e}): install {install}"),
    }
}

fn run_install(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The version of the npm package `name` installed under `prefix`
/// (`node_modules/<name>/package.json`), if any.
pub fn npm_package_version(prefix: &Path, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(prefix.join("node_modules").join(name).join("package.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    if json.get("name")?.as_str()? != name {
        return None;
    }
    json.get("version")?.as_str().map(str::to_owned)
}

/// The version of the Python distribution `name` installed in `venv`, from
/// its `lib/python*/site-packages/<name>-<version>.dist-info` directory.
pub fn dist_version(venv: &Path, name: &str) -> Option<String> {
    let normalized = name.replace('-', "_").to_lowercase();
    let lib = std::fs::read_dir(venv.join("lib")).ok()?;
    for python in lib.flatten() {
        let Ok(entries) = std::fs::read_dir(python.path().join("site-packages")) else {
            continue;
        };
        for entry in entries.flatten() {
            let file = entry.file_name();
            let Some(stem) = file.to_str().and_then(|f| f.strip_suffix(".dist-info")) else {
                continue;
            };
            if let Some((n, v)) = stem.rsplit_once('-') {
                if n.replace('-', "_").to_lowercase() == normalized {
                    return Some(v.to_owned());
                }
            }
        }
    }
    None
}

/// Parses a peer script's output: its last line that is a JSON object with
/// `jobs`, `elapsed_s` and `remaining`; the run must have drained all
/// `expected` jobs.
pub fn parse_result(stdout: &str, expected: u64) -> Result<PeerRun> {
    let run = stdout
        .lines()
        .rev()
        .find_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
            Some(PeerRun {
                jobs: v.get("jobs")?.as_u64()?,
                elapsed_s: v.get("elapsed_s")?.as_f64()?,
                remaining: v.get("remaining")?.as_u64()?,
            })
        })
        .with_context(|| format!("no result line in the peer's output: {stdout:?}"))?;
    if run.jobs != expected || run.remaining != 0 {
        bail!(
            "the peer did not drain the queue: {} of {expected} jobs handled, {} left",
            run.jobs,
            run.remaining
        );
    }
    if !(run.elapsed_s.is_finite() && run.elapsed_s > 0.0) {
        bail!("the peer reported an elapsed time of {} s", run.elapsed_s);
    }
    Ok(run)
}

/// The target ratio of one of our figures to graphile-worker batched, where
/// one is set: mechanics and pipeline at B = 100.
pub fn target(mode: &str, batch: u32) -> Option<f64> {
    match (mode, batch) {
        ("mechanics", 100) => Some(1.0),
        ("pipeline", 100) => Some(0.5),
        _ => None,
    }
}

/// Runs every peer on `server` (the bench's own cluster) and prints its line,
/// then our figures' ratios to graphile-worker batched.
pub fn run(
    installed: &Installed,
    server: &attestor_testdb::Server,
    jobs: i64,
    tenants: i64,
    workers: usize,
    ours: &[Ours],
    json: bool,
) -> Result<()> {
    if server.cluster().is_none() {
        bail!("--peers runs only on the bench's own throwaway cluster");
    }
    let expected = u64::try_from(jobs).context("--jobs")?;
    let mut graphile_batched = None;
    for peer in Peer::ALL {
        let name = format!("peer_{}_{}", std::process::id(), peer_slug(peer));
        server.create_database(&name, None)?;
        let result = run_one(installed, server, &name, peer, expected, tenants, workers);
        let dropped = server.drop_database(&name);
        let run = result.with_context(|| peer.system())?;
        dropped?;
        if run.jobs != expected {
            bail!(
                "{} reported {} jobs done, but {expected} were enqueued",
                peer.system(),
                run.jobs
            );
        }
        let jobs_per_s = run.jobs_per_s();
        if peer == Peer::GraphileBatched {
            graphile_batched = Some(jobs_per_s);
        }
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "bench": "queue-peer", "system": peer.system(), "job": peer.job(),
                    "settings": peer.settings(workers), "jobs": run.jobs, "tenants": tenants,
                    "elapsed_s": round3(run.elapsed_s), "jobs_per_s": round1(jobs_per_s),
                })
            );
        } else {
            println!(
                "queue-peer {:<36} {jobs_per_s:>9.0} jobs/s   ({}; {})",
                peer.system(),
                peer.job(),
                peer.settings(workers)
            );
        }
    }
    let peer_jobs_per_s = graphile_batched.expect("graphile-worker batched always runs");
    let peer = Peer::GraphileBatched.system();
    for o in ours {
        let ratio = o.jobs_per_s / peer_jobs_per_s;
        let target = target(o.mode, o.batch);
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "bench": "queue-peer-ratio", "mode": o.mode, "batch": o.batch,
                    "jobs_per_s": round1(o.jobs_per_s), "peer": peer,
                    "peer_jobs_per_s": round1(peer_jobs_per_s), "ratio": round3(ratio),
                    "target": target, "met": target.map(|t| ratio >= t),
                })
            );
        } else {
            let verdict = match target {
                Some(t) if ratio >= t => format!("   target ≥ {t:.1}: met"),
                Some(t) => format!("   target ≥ {t:.1}: NOT met"),
                None => String::new(),
            };
            println!(
                "queue {:<9} B={:<4} / {peer}: {ratio:.3}{verdict}",
                o.mode, o.batch
            );
        }
    }
    Ok(())
}

fn peer_slug(peer: Peer) -> &'static str {
    match peer {
        Peer::GraphileBatched => "graphile_batched",
        Peer::GraphileDefaults => "graphile_defaults",
        Peer::PgQueuer => "pgqueuer",
    }
}

fn run_one(
    installed: &Installed,
    server: &attestor_testdb::Server,
    database: &str,
    peer: Peer,
    jobs: u64,
    tenants: i64,
    workers: usize,
) -> Result<PeerRun> {
    let mut cmd = match peer {
        Peer::GraphileBatched | Peer::GraphileDefaults => {
            let mut c = Command::new(&installed.node);
            c.arg(&installed.graphile_script)
                .arg(jobs.to_string())
                .arg(tenants.to_string())
                .arg(GRAPHILE_CONCURRENCY.to_string())
                .arg(if peer == Peer::GraphileBatched {
                    "batched"
                } else {
                    "defaults"
                });
            c
        }
        Peer::PgQueuer => {
            let mut c = Command::new(&installed.python);
            c.arg(&installed.pgqueuer_script)
                .arg(jobs.to_string())
                .arg(tenants.to_string())
                .arg(workers.to_string())
                .arg(PGQUEUER_BATCH.to_string());
            c
        }
    };
    // The cluster's superuser in the peer's own database, from PG*
    // variables (libpq's, which node-postgres and asyncpg read too).
    let params = server.admin(database);
    for var in [
        "DATABASE_URL",
        "PGSERVICE",
        "PGSERVICEFILE",
        "PGOPTIONS",
        "PGPASSWORD",
        "PGSSLMODE",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("PGHOST", &params.host)
        .env("PGPORT", params.port.to_string())
        .env("PGUSER", &params.user)
        .env("PGDATABASE", &params.database);
    if let Some(p) = &params.password {
        cmd.env("PGPASSWORD", p);
    }
    eprintln!("running {} on {jobs} jobs", peer.system());
    let out = cmd
        .output()
        .with_context(|| format!("running {}", peer.system()))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}):\n{}{}",
            peer.system(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_result(&String::from_utf8_lossy(&out.stdout), jobs)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// A fresh directory under the system's temp dir, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!(
                "attestor-bench-peers-{tag}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn queue_args(argv: &[&str]) -> Result<crate::queue::Args, clap::Error> {
        let cli = crate::Cli::try_parse_from(["attestor-bench", "queue"].iter().chain(argv).copied())?;
        match cli.benchmark {
            crate::Benchmark::Queue(a) => Ok(a),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn peers_flag_parses_and_is_off_by_default() {
        assert!(!queue_args(&[]).unwrap().peers.peers);
        let a = queue_args(&["--jobs", "100000", "--batches", "100", "--peers"]).unwrap();
        assert!(a.peers.peers);
        assert_eq!(a.peers.peers_dir, None);
        let a = queue_args(&["--peers", "--peers-dir", "/x/peers"]).unwrap();
        assert_eq!(a.peers.peers_dir.as_deref(), Some(Path::new("/x/peers")));
        // A directory without --peers would install nothing: refused.
        assert!(queue_args(&["--peers-dir", "/x/peers"]).is_err());
    }

    #[test]
    fn prepare_without_peers_installs_nothing() {
        assert!(prepare(&PeerArgs::default()).unwrap().is_none());
    }

    #[test]
    fn npm_version_is_read_from_the_installed_package() {
        let s = Scratch::new("npm");
        assert_eq!(npm_package_version(&s.0, "graphile-worker"), None);
        let pkg = s.0.join("node_modules/graphile-worker");
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::write(
            pkg.join("package.json"),
            r#"{"name":"graphile-worker","version":"0.16.6"}"#,
        )
        .unwrap();
        assert_eq!(
            npm_package_version(&s.0, "graphile-worker").as_deref(),
            Some("0.16.6")
        );
        assert_ne!(
            npm_package_version(&s.0, "graphile-worker").as_deref(),
            Some(GRAPHILE_WORKER_VERSION)
        );
        // Another package's manifest in that place does not count.
        std::fs::write(pkg.join("package.json"), r#"{"name":"other","version":"0.17.3"}"#).unwrap();
        assert_eq!(npm_package_version(&s.0, "graphile-worker"), None);
        std::fs::write(
            pkg.join("package.json"),
            r#"{"name":"graphile-worker","version":"0.17.3"}"#,
        )
        .unwrap();
        assert_eq!(
            npm_package_version(&s.0, "graphile-worker").as_deref(),
            Some(GRAPHILE_WORKER_VERSION)
        );
    }

    #[test]
    fn dist_version_is_read_from_the_venv() {
        let s = Scratch::new("venv");
        assert_eq!(dist_version(&s.0, "pgqueuer"), None);
        let site = s.0.join("lib/python3.11/site-packages");
        std::fs::create_dir_all(site.join("pgqueuer_extras-9.9.dist-info")).unwrap();
        std::fs::create_dir_all(site.join("asyncpg-0.31.0.dist-info")).unwrap();
        assert_eq!(dist_version(&s.0, "pgqueuer"), None);
        std::fs::create_dir_all(site.join("pgqueuer-1.6.0.dist-info")).unwrap();
        assert_eq!(dist_version(&s.0, "pgqueuer").as_deref(), Some(PGQUEUER_VERSION));
        assert_eq!(dist_version(&s.0, "asyncpg").as_deref(), Some("0.31.0"));
        assert_ne!(dist_version(&s.0, "asyncpg").as_deref(), Some(ASYNCPG_VERSION));
    }

    #[test]
    fn result_line_is_parsed_and_checked() {
        let out = "some log line\n{\"jobs\":100000,\"elapsed_s\":10.5,\"remaining\":0}\n";
        let run = parse_result(out, 100_000).unwrap();
        assert_eq!(run.jobs, 100_000);
        assert!((run.jobs_per_s() - 100_000.0 / 10.5).abs() < 1e-9);
        // Python's json.dumps spacing.
        assert!(parse_result("{\"jobs\": 5, \"elapsed_s\": 0.5, \"remaining\": 0}", 5).is_ok());
        for (bad, why) in [
            ("{\"jobs\":99999,\"elapsed_s\":10.5,\"remaining\":0}", "short"),
            (
                "{\"jobs\":100000,\"elapsed_s\":10.5,\"remaining\":3}",
                "left over",
            ),
            ("{\"jobs\":100000,\"elapsed_s\":0,\"remaining\":0}", "no time"),
            ("{\"jobs\":100000,\"remaining\":0}", "no elapsed"),
            ("nothing here", "no line"),
            ("", "empty"),
        ] {
            assert!(parse_result(bad, 100_000).is_err(), "{why}: {bad}");
        }
    }

    #[test]
    fn targets_are_the_b100_figures_only() {
        assert_eq!(target("mechanics", 100), Some(1.0));
        assert_eq!(target("pipeline", 100), Some(0.5));
        assert_eq!(target("mechanics", 1), None);
        assert_eq!(target("pipeline", 1), None);
        assert_eq!(Peer::GraphileBatched.system(), "graphile-worker 0.17.3 batched");
    }
}
