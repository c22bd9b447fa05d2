//! `cargo xtask citus test`: the Citus lane.
//!
//! Starts a throwaway Citus cluster from the local server binaries (a
//! coordinator and two workers, each its own directory and unix socket,
//! under the throwaway clusters' watchdog), does the operator's part on it
//! (the `attestor` database on every node with the extension, the workers
//! registered), migrates the migrations before `DDL_AS_MIGRATOR_SINCE` and
//! distributes, then runs `cargo xtask db up` against the distributed
//! coordinator, which runs every later migration after distribution (the
//! upgrade an operator's database goes through: every migration from the
//! cutoff on must apply there), verify-rls and `db up` again, then runs the
//! test suites against it (each test binary with `DATABASE_URL` set to the
//! coordinator, so the harness makes every test database on every node) and
//! verify-rls on `attestor`.
//! It prints one line per step and suite, and for each failing test the
//! first line of its failure; full logs go to `target/citus-lane/`.
//!
//! Where the server binaries have no Citus installed it prints one line
//! and exits 0. Exit 1 when a step or a test failed. It never builds or
//! installs Citus and never touches a cluster it did not start.

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use attestor_testdb::citus::CitusExtension;
use attestor_testdb::cluster::ClusterOptions;
use attestor_testdb::{CitusCluster, PgBinaries, Server};
use diesel::migration::{Migration, MigrationSource};
use diesel::pg::Pg;

use xtask::cli::CitusTestArgs;

use attestor_rls::generate::{ddl_as_migrator, DDL_AS_MIGRATOR_SINCE};

use crate::db::DATABASE;
use crate::util::root;

/// The suites the lane runs: (cargo package, test target, what it covers).
const SUITES: &[(&str, &str, &str)] = &[
    (
        "attestor-testdb",
        "harness",
        "the harness: databases on every node",
    ),
    (
        "attestor-e2e",
        "e2e",
        "migrations, conformance, JSONB, the seed's E2E plan",
    ),
    ("attestor-repo", "isolation", "tenant isolation"),
    ("attestor-repo", "ledger", "verdict ledger, concurrent appends"),
    ("attestor-repo", "repos", "repositories and the audit log"),
    ("attestor-repo", "guard", "the tenant guard"),
    (
        "attestor-repo",
        "routing",
        "every repository statement routed to one shard",
    ),
    (
        "attestor-repo",
        "pipelined",
        "the opening query travelling with the first statement",
    ),
    (
        "attestor-repo",
        "bad_input",
        "bad input leaves the database unchanged",
    ),
    ("attestor-queue", "queue", "queue claim, fencing, fairness"),
    ("attestor-queue", "worker", "queue worker runtime"),
    ("attestor-queue", "model", "queue model test"),
    ("attestor-queue", "crash", "workers killed, server restarted"),
    ("attestor-queue", "wakeup", "enqueue wakes idle workers at commit"),
    (
        "attestor-queue",
        "retention",
        "finished jobs purged, dead jobs kept",
    ),
    (
        "attestor-queue",
        "rekor",
        "the Rekor submitter against a fake log",
    ),
    ("attestor-queue", "evidence", "only verified entries are stored"),
    (
        "attestor-rls",
        "citus",
        "verify-rls's Citus rules: distribution, placements, readiness",
    ),
    ("attestor-rls", "rls", "verify-rls: every planted flaw"),
    (
        "xtask",
        "module_new",
        "a second module: migrated, distributed beside attestor, verified",
    ),
];

const WORKERS: usize = 2;

pub fn run(args: CitusTestArgs) -> Result<ExitCode> {
    let binaries = PgBinaries::find()?;
    let extension = match CitusExtension::find(&binaries) {
        Ok(e) => e,
        Err(e @ attestor_testdb::Error::CitusMissing { .. }) => {
            println!("citus lane skipped: {e}");
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e.into()),
    };
    let suites: Vec<&(&str, &str, &str)> = SUITES
        .iter()
        .filter(|(_, t, _)| args.only.is_empty() || args.only.iter().any(|o| o == t))
        .collect();
    let logs = root().join("target").join("citus-lane");
    std::fs::create_dir_all(&logs)?;
    let mut lane = Lane::default();

    // Build first, so the cluster does not sit idle while cargo compiles,
    // and run the executables cargo built: one build for every suite, which
    // a source edit during the run does not change.
    let executables = build_suites(&suites)?;

    println!(
        "citus {} ({}), server binaries {}",
        extension.version,
        extension.library.display(),
        binaries.dir().display()
    );
    let started = Instant::now();
    let cluster = CitusCluster::start(&binaries, WORKERS, &ClusterOptions::default())?;
    let nodes = cluster.nodes();
    lane.step(
        "cluster",
        Ok(format!(
            "coordinator {} and {} workers ({}), unix sockets only, in {:.1}s",
            nodes.coordinator.host,
            nodes.workers.len(),
            nodes
                .workers
                .iter()
                .map(|w| w.host.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            started.elapsed().as_secs_f64()
        )),
    );
    let admin = cluster.admin("postgres");
    let mut extra = None;
    let server = Server::with_citus_cluster(cluster);
    let prepared = nodes
        .prepare_database(&admin, DATABASE)
        .map(|()| format!("database {DATABASE} on every node, extension created, workers registered"));
    let prepared_ok = lane.step("operator's part", prepared.map_err(Into::into));
    // The operator's command, as an operator runs it: `cargo xtask db up`
    // with DATABASE_URL at the coordinator's `attestor` migrates and
    // distributes; run again, it must find nothing left to do.
    // The upgrade: distributed with the migrations before the cutoff, `db
    // up` runs every later one on the distributed coordinator.
    let url = server.admin(DATABASE).url();
    let distributed = prepared_ok
        && lane.step(
            "distribute the migrations before DDL_AS_MIGRATOR_SINCE",
            distribute_before_the_cutoff(&server, DATABASE),
        );
    let distributed = distributed
        && lane.step(
            "db up (the later migrations, after distribution)",
            db_up(&url, true),
        );
    let distributed = distributed && lane.verify_rls("verify-rls after the upgrade", &server, &logs);
    let distributed = distributed && lane.step("db up again", db_up(&url, false));

    if distributed || args.keep_going {
        for (package, target, what) in &suites {
            match executables.get(&(package.to_string(), target.to_string())) {
                Some(exe) => lane.suite(package, target, what, exe, &url, &logs, args.suite_timeout),
                None => {
                    lane.step(
                        &format!("{package}/{target}"),
                        Err(anyhow::anyhow!("cargo built no test executable for it")),
                    );
                }
            }
        }
        if distributed {
            lane.verify_rls("verify-rls on the coordinator", &server, &logs);
            // The documented procedure for growing the cluster, then what it
            // says to re-run.
            let third = CitusCluster::start_node(&binaries, &ClusterOptions::default());
            let added = third.and_then(|node| {
                let worker = attestor_testdb::citus::Node {
                    host: node.root().display().to_string(),
                    port: attestor_testdb::cluster::SOCKET_PORT,
                };
                let placed = nodes.add_worker(&admin, DATABASE, &worker)?;
                Ok((node, placed))
            });
            match added {
                Ok((node, placed)) => {
                    let moved = if placed > 0 {
                        Ok(format!(
                            "citus_add_node and a rebalance moved {placed} shard placements onto it"
                        ))
                    } else {
                        Err(anyhow::anyhow!(
                            "the rebalance moved no shard onto the new worker"
                        ))
                    };
                    lane.step("add a worker", moved);
                    lane.verify_rls("verify-rls after adding a worker", &server, &logs);
                    lane.step("db up after adding a worker", db_up(&url, false));
                    extra = Some(node);
                }
                Err(e) => {
                    lane.step("add a worker", Err(e.into()));
                }
            }
        }
    } else {
        println!("suites not run: every test database is migrated and distributed like {DATABASE}, so each would fail the same way (--keep-going runs them anyway)");
        lane.failed = true;
    }
    drop(server);
    drop(extra);
    println!(
        "citus lane: {} in {:.0}s (logs in {})",
        if lane.failed { "FAILED" } else { "passed" },
        started.elapsed().as_secs_f64(),
        logs.display()
    );
    Ok(if lane.failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The migrations that run as the owner role: those before
/// `DDL_AS_MIGRATOR_SINCE`, the oldest state a database may be distributed
/// in.
struct BeforeTheCutoff<S>(S);

impl<S: MigrationSource<Pg>> MigrationSource<Pg> for BeforeTheCutoff<S> {
    fn migrations(&self) -> diesel::migration::Result<Vec<Box<dyn Migration<Pg>>>> {
        let mut all = self.0.migrations()?;
        all.retain(|m| !ddl_as_migrator(&m.name().to_string()));
        Ok(all)
    }
}

/// Migrates `database` with every migration before `DDL_AS_MIGRATOR_SINCE`
/// and distributes it: the oldest database an operator may distribute, so
/// that `db up` then runs every later migration on a distributed
/// coordinator, as an upgrade does.
fn distribute_before_the_cutoff(server: &Server, database: &str) -> Result<String> {
    let all = MigrationSource::<Pg>::migrations(&attestor_schema::MIGRATIONS)
        .map_err(|e| anyhow::anyhow!("reading the migrations: {e}"))?;
    let later = all
        .iter()
        .filter(|m| ddl_as_migrator(&m.name().to_string()))
        .count();
    if later == 0 {
        anyhow::bail!("no migration from DDL_AS_MIGRATOR_SINCE on: the upgrade would run nothing");
    }
    let ran = server.migrate(database, BeforeTheCutoff(attestor_schema::MIGRATIONS))?;
    if ran.len() + later != all.len() {
        anyhow::bail!(
            "{} of {} migrations ran, not the {} before the cutoff",
            ran.len(),
            all.len(),
            all.len() - later
        );
    }
    let done = server.distribute(database)?;
    if done.is_empty() {
        anyhow::bail!("the distribution step distributed nothing");
    }
    Ok(format!(
        "{} migrations run (all before {DDL_AS_MIGRATOR_SINCE}, {later} left for db up); distributed {} \
         objects",
        ran.len(),
        done.len()
    ))
}

/// Runs this executable's `db up` with `DATABASE_URL` set to `url`. The
/// first run must migrate and distribute; a later one (`first == false`)
/// must report that nothing was left to do and record nothing.
fn db_up(url: &str, first: bool) -> Result<String> {
    let out = Command::new(std::env::current_exe()?)
        .args(["db", "up"])
        .env("DATABASE_URL", url)
        .current_dir(root())
        .stdin(Stdio::null())
        .output()
        .context("running xtask db up")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        anyhow::bail!(
            "xtask db up failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let line = |prefix: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .map(str::to_owned)
            .with_context(|| format!("db up printed no `{prefix}` line: {stdout}"))
    };
    let migrations = line("migrations run: ")?;
    let distribution = line("citus coordinator")?;
    let idle = migrations.ends_with("none (up to date)") && distribution.ends_with("nothing (up to date)");
    match (first, idle) {
        (true, true) => {
            anyhow::bail!("db up on a fresh coordinator did nothing: {migrations}; {distribution}")
        }
        (false, false) => anyhow::bail!("db up is not idempotent, it did more: {migrations}; {distribution}"),
        _ => Ok(format!("{migrations}; {distribution}")),
    }
}

#[derive(Default)]
struct Lane {
    failed: bool,
}

/// One test's result as libtest printed it.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    name: String,
    passed: bool,
}

/// The `test <name> ... ok|FAILED` lines of libtest's output.
fn outcomes(output: &str) -> Vec<Outcome> {
    output
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("test ")?;
            let (name, result) = rest.rsplit_once(" ... ")?;
            match result.trim() {
                "ok" => Some(Outcome {
                    name: name.to_owned(),
                    passed: true,
                }),
                "FAILED" => Some(Outcome {
                    name: name.to_owned(),
                    passed: false,
                }),
                _ => None,
            }
        })
        .collect()
}

/// The first line of `test`'s failure: the line after its `panicked at`, or
/// its first output line.
fn failure_line(output: &str, test: &str) -> String {
    let header = format!("---- {test} stdout ----");
    let Some(start) = output.find(&header) else {
        return String::from("(no output captured)");
    };
    let block: Vec<&str> = output[start + header.len()..]
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("---- ") && !l.starts_with("failures:"))
        .collect();
    let after_panic = block
        .iter()
        .position(|l| l.contains("panicked at"))
        .and_then(|i| block.get(i + 1));
    after_panic
        .or_else(|| block.iter().find(|l| !l.trim().is_empty()))
        .map(|l| {
            let l = l.trim();
            if l.chars().count() > 300 {
                format!("{}…", l.chars().take(300).collect::<String>())
            } else {
                l.to_owned()
            }
        })
        .unwrap_or_default()
}

impl Lane {
    fn step(&mut self, name: &str, result: Result<String>) -> bool {
        match result {
            Ok(what) => {
                println!("ok      {name}: {what}");
                true
            }
            Err(e) => {
                self.failed = true;
                println!("FAILED  {name}: {}", format!("{e:#}").replace('\n', " "));
                false
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn suite(
        &mut self,
        package: &str,
        target: &str,
        what: &str,
        exe: &Executable,
        url: &str,
        logs: &std::path::Path,
        timeout: Duration,
    ) {
        let log = logs.join(format!("{package}-{target}.log"));
        let started = Instant::now();
        let output = run_suite(exe, target, url, timeout);
        let (text, timed_out) = match output {
            Ok(o) => o,
            Err(e) => {
                self.failed = true;
                println!("FAILED  {package}/{target}: could not run: {e:#}");
                return;
            }
        };
        let _ = std::fs::write(&log, &text);
        let results = outcomes(&text);
        let failed: Vec<&Outcome> = results.iter().filter(|o| !o.passed).collect();
        let passed = results.len() - failed.len();
        let ok = !timed_out && failed.is_empty() && text.contains("test result: ok");
        if !ok {
            self.failed = true;
        }
        println!(
            "{}  {package}/{target} ({what}): {passed}/{} passed in {:.0}s{}",
            if ok { "ok    " } else { "FAILED" },
            results.len(),
            started.elapsed().as_secs_f64(),
            if timed_out {
                ", stopped after the suite timeout"
            } else {
                ""
            }
        );
        for f in failed {
            println!("          {}: {}", f.name, failure_line(&text, &f.name));
        }
        if !ok && results.is_empty() {
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            for l in tail.into_iter().rev() {
                println!("          | {l}");
            }
        }
    }

    /// verify-rls on the coordinator's `attestor` as an operator runs it:
    /// the catalog and the proof in real login sessions of every module's
    /// app and worker roles, the superuser only as the owner session.
    fn verify_rls(&mut self, name: &str, server: &Server, logs: &std::path::Path) -> bool {
        let result = (|| -> Result<attestor_rls::Report> {
            let options = attestor_rls::VerifyOptions {
                modules: xtask::util::rls_modules()?,
                config: attestor_rls::Config::load(&xtask::util::rls_config_path())?,
                dynamic: true,
            };
            Ok(attestor_rls::cli::verify_on(server, DATABASE, &options)?)
        })();
        match result {
            Ok(report) => {
                let file = format!("{}.txt", name.replace(' ', "-"));
                let _ = std::fs::write(logs.join(&file), report.to_human());
                if report.is_clean() {
                    let proven = report.proofs.values().map(Vec::len).sum::<usize>();
                    println!(
                        "ok      {name}: clean, {proven} probes proven on {} objects ({})",
                        report.proofs.len(),
                        report.sessions.join("; ")
                    );
                } else {
                    self.failed = true;
                    println!(
                        "FAILED  {name}: {} findings, {} probes not run (see {file})",
                        report.findings.len(),
                        report.not_run.len()
                    );
                    for f in report.findings.iter().take(20) {
                        println!(
                            "          [{}] {}: {}",
                            f.rule,
                            f.object,
                            f.message.replace('\n', " ")
                        );
                    }
                    for n in report.not_run.iter().take(10) {
                        println!("          not run [{}] {}: {}", n.rule, n.object, n.reason);
                    }
                }
                report.is_clean()
            }
            Err(e) => {
                self.failed = true;
                println!("FAILED  {name}: could not run: {e:#}");
                false
            }
        }
    }
}

/// A test executable cargo built, and the package directory it runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Executable {
    path: PathBuf,
    package_dir: PathBuf,
}

/// `cargo test --no-run` for every suite at once; the executable of each
/// (package, test target), read from cargo's JSON messages.
fn build_suites(
    suites: &[&(&str, &str, &str)],
) -> Result<std::collections::HashMap<(String, String), Executable>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(&cargo);
    build.args([
        "test",
        "--locked",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]);
    for (p, t, _) in suites {
        build.args(["-p", p, "--test", t]);
    }
    build.current_dir(root()).stderr(Stdio::inherit());
    let out = build.output().context("running cargo test --no-run")?;
    if !out.status.success() {
        anyhow::bail!("building the suites failed ({})", out.status);
    }
    Ok(executables(&String::from_utf8_lossy(&out.stdout)))
}

/// The test executables in cargo's `--message-format=json` output.
fn executables(messages: &str) -> std::collections::HashMap<(String, String), Executable> {
    #[derive(serde::Deserialize)]
    struct Target {
        name: String,
        kind: Vec<String>,
    }
    #[derive(serde::Deserialize)]
    struct Artifact {
        reason: String,
        manifest_path: Option<PathBuf>,
        target: Option<Target>,
        executable: Option<PathBuf>,
        package_id: Option<String>,
    }
    let mut found = std::collections::HashMap::new();
    for line in messages.lines() {
        let Ok(a) = serde_json::from_str::<Artifact>(line) else {
            continue;
        };
        let (Some(target), Some(path), Some(manifest), Some(id)) =
            (a.target, a.executable, a.manifest_path, a.package_id)
        else {
            continue;
        };
        if a.reason != "compiler-artifact" || !target.kind.iter().any(|k| k == "test") {
            continue;
        }
        // The package id does not always spell the name; its manifest does.
        let package = manifest
            .parent()
            .and_then(|d| std::fs::read_to_string(d.join("Cargo.toml")).ok())
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("name = ").map(|n| n.trim_matches('"').to_owned()))
            })
            .unwrap_or(id);
        found.insert(
            (package, target.name),
            Executable {
                package_dir: manifest.parent().map(PathBuf::from).unwrap_or_default(),
                path,
            },
        );
    }
    found
}

/// Runs one test executable with `DATABASE_URL`, its output captured; stops
/// its process group after `timeout`. Returns the output and whether it
/// timed out.
fn run_suite(exe: &Executable, target: &str, url: &str, timeout: Duration) -> Result<(String, bool)> {
    use std::os::unix::process::CommandExt as _;
    let out_path: PathBuf =
        std::env::temp_dir().join(format!("attestor-citus-{}-{target}.out", std::process::id()));
    let file = std::fs::File::create(&out_path)?;
    let mut child = Command::new(&exe.path)
        .args(["--test-threads", "2"])
        .env("DATABASE_URL", url)
        .env("CARGO_MANIFEST_DIR", &exe.package_dir)
        .current_dir(&exe.package_dir)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", exe.path.display()))?;
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            let pgid = i32::try_from(child.id()).context("pid")?;
            // The suite's own process group: cargo and the test binary it started.
            let _ = Command::new("kill")
                .args(["-TERM", "--", &format!("-{pgid}")])
                .status();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    Ok((text, timed_out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "\
running 2 tests
test a::works ... ok
test b::breaks ... FAILED

failures:

---- b::breaks stdout ----

thread 'b::breaks' panicked at crates/x/tests/y.rs:10:5:
no PostgreSQL server for tests: cannot create policy
note: run with `RUST_BACKTRACE=1`

failures:
    b::breaks

test result: FAILED. 1 passed; 1 failed; 0 ignored
";

    #[test]
    fn finds_the_test_executables_in_cargos_messages() {
        let manifest = root().join("crates/attestor-rls/Cargo.toml");
        let messages = format!(
            "{{\"reason\":\"compiler-artifact\",\"package_id\":\"x\",\"manifest_path\":{m:?},\
              \"target\":{{\"name\":\"citus\",\"kind\":[\"test\"]}},\"executable\":\"/t/citus-1\"}}\n\
             {{\"reason\":\"compiler-artifact\",\"package_id\":\"x\",\"manifest_path\":{m:?},\
              \"target\":{{\"name\":\"attestor_rls\",\"kind\":[\"lib\"]}},\"executable\":null}}\n\
             not json\n",
            m = manifest.display().to_string()
        );
        let found = executables(&messages);
        assert_eq!(found.len(), 1, "{found:?}");
        let exe = &found[&("attestor-rls".to_owned(), "citus".to_owned())];
        assert_eq!(exe.path, PathBuf::from("/t/citus-1"));
        assert_eq!(exe.package_dir, root().join("crates/attestor-rls"));
    }

    #[test]
    fn reads_libtest_results_and_the_first_line_of_each_failure() {
        assert_eq!(
            outcomes(OUTPUT),
            vec![
                Outcome {
                    name: "a::works".into(),
                    passed: true
                },
                Outcome {
                    name: "b::breaks".into(),
                    passed: false
                }
            ]
        );
        assert_eq!(
            failure_line(OUTPUT, "b::breaks"),
            "no PostgreSQL server for tests: cannot create policy"
        );
        assert_eq!(failure_line(OUTPUT, "c::absent"), "(no output captured)");
    }
}
