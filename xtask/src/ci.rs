//! `cargo xtask ci`: everything CI checks, in the order that fails fastest:
//! `cargo fmt --check`, clippy with `-D warnings`, `schema --check`,
//! `gen-rls --check`, then the whole test suite and `verify-rls` once per
//! supported PostgreSQL end: 15 (the system's server) and 18 (installed by
//! `cargo xtask pg install 18`). `.ci/run` calls exactly this.
//!
//! Owns the version lanes: which server binaries each uses, the one line
//! per version with its full server version and test counts, and a failure
//! that names the version. The tests are built once and run per lane by
//! pointing `ATTESTOR_PG_BINDIR` at that version's binaries. It never
//! downloads a server (that is `pg install`) and never lets a configured
//! `DATABASE_URL` stand in for a lane's server.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, Context, Result};
use attestor_testdb::binaries::SearchPaths;
use attestor_testdb::PgBinaries;

use crate::pg;
use crate::util::{root, run_echoed};

/// The oldest supported major version, taken from the system's server binaries.
const SYSTEM_MAJOR: u32 = 15;

/// One PostgreSQL version the suite runs against.
struct Lane {
    bindir: PathBuf,
    /// `postgres --version` without its program name, e.g. `18.6`.
    version: String,
}

pub fn run() -> Result<ExitCode> {
    // Find every lane's server first: a missing one fails before the long part.
    let lanes = lanes()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run_echoed(Command::new(&cargo).args(["fmt", "--all", "--check"]))?;
    run_echoed(Command::new(&cargo).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;
    let code = crate::schema::run(true)?;
    if code != ExitCode::SUCCESS {
        bail!("the generated schema drifted from the migrations");
    }
    if crate::gen_rls::run(true)? != ExitCode::SUCCESS {
        bail!("the generated RLS migration is missing policies or stale");
    }
    run_echoed(Command::new(&cargo).args(["test", "--workspace", "--locked", "--no-run"]))?;
    let mut lines = Vec::new();
    let mut failed = Vec::new();
    for lane in &lanes {
        eprintln!("ci: PostgreSQL {} ({})", lane.version, lane.bindir.display());
        let counts = test_lane(&cargo, lane)?;
        let verify = verify_lane(&cargo, lane)?;
        let line = format!(
            "PostgreSQL {}: {} passed, {} failed, {} ignored; verify-rls {}",
            lane.version,
            counts.passed,
            counts.failed,
            counts.ignored,
            if verify { "clean" } else { "FAILED" }
        );
        eprintln!("ci: {line}");
        if !counts.ok || !verify {
            failed.push(format!("PostgreSQL {}", lane.version));
        }
        lines.push(line);
    }
    for line in &lines {
        println!("ci: {line}");
    }
    if !failed.is_empty() {
        bail!("the test suite or verify-rls failed on {}", failed.join(" and "));
    }
    eprintln!("ci: all checks passed");
    Ok(ExitCode::SUCCESS)
}

/// The system's PostgreSQL 15 and every pinned version installed into `.tools/`.
fn lanes() -> Result<Vec<Lane>> {
    let mut lanes = vec![system_lane()?];
    for pin in pg::PINS {
        let bindir = pg::installed_bindir(pin).with_context(|| {
            format!(
                "PostgreSQL {} is not installed: run `cargo xtask pg install {}` (`.ci/run` does)",
                pin.major, pin.major
            )
        })?;
        lanes.push(lane(pin.major, bindir)?);
    }
    Ok(lanes)
}

/// PostgreSQL 15 from the system: Debian's versioned directory, else the
/// usual search without `ATTESTOR_PG_BINDIR` (which would pick the lane itself).
fn system_lane() -> Result<Lane> {
    let debian = PathBuf::from(format!("/usr/lib/postgresql/{SYSTEM_MAJOR}/bin"));
    let bindir = if debian.join("postgres").is_file() {
        debian
    } else {
        let paths = SearchPaths {
            override_dir: None,
            ..SearchPaths::from_env()
        };
        PgBinaries::find_in(&paths)?.dir().to_path_buf()
    };
    lane(SYSTEM_MAJOR, bindir)
}

fn lane(major: u32, bindir: PathBuf) -> Result<Lane> {
    let out = Command::new(bindir.join("postgres"))
        .arg("--version")
        .output()
        .with_context(|| format!("running {}/postgres --version", bindir.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .trim()
        .trim_start_matches("postgres (PostgreSQL) ")
        .to_owned();
    let found: Option<u32> = version
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|s| s.parse().ok());
    if found != Some(major) {
        bail!(
            "CI tests PostgreSQL {major}, but {} is `{}` (Debian: apt-get install postgresql-{major})",
            bindir.display(),
            text.trim()
        );
    }
    Ok(Lane { bindir, version })
}

/// Passed, failed and ignored tests summed over every test binary's
/// `test result:` line, and whether `cargo test` succeeded.
#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    passed: u64,
    failed: u64,
    ignored: u64,
    ok: bool,
}

impl Counts {
    /// Adds one `test result: ok. 3 passed; 0 failed; 1 ignored; …` line; other lines are ignored.
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

/// The whole suite against one lane's server, streaming its output.
fn test_lane(cargo: &str, lane: &Lane) -> Result<Counts> {
    let mut child = lane_env(Command::new(cargo), lane)
        .args(["test", "--workspace", "--locked", "--no-fail-fast"])
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    let mut counts = Counts::default();
    let stdout = child.stdout.take().expect("piped");
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        counts.add_line(&line);
    }
    counts.ok = child.wait()?.success();
    Ok(counts)
}

/// `cargo xtask verify-rls` on a fresh cluster of the lane's server.
fn verify_lane(cargo: &str, lane: &Lane) -> Result<bool> {
    // Through cargo, not this process's own executable: `cargo test
    // --workspace` may just have rebuilt the xtask binary with the
    // workspace's unified features, replacing the file this process runs from.
    let status = lane_env(Command::new(cargo), lane)
        .args(["xtask", "verify-rls"])
        .status()
        .context("running verify-rls")?;
    Ok(status.success())
}

fn lane_env(mut cmd: Command, lane: &Lane) -> Command {
    cmd.current_dir(root())
        .env("ATTESTOR_PG_BINDIR", &lane.bindir)
        .env_remove("DATABASE_URL");
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_sum_every_test_result_line() {
        let mut c = Counts::default();
        for line in [
            "running 3 tests",
            "test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s",
            "test a::b ... ok",
            "test result: FAILED. 10 passed; 2 failed; 0 ignored; 0 measured; 5 filtered out; finished in 1.20s",
        ] {
            c.add_line(line);
        }
        assert_eq!((c.passed, c.failed, c.ignored), (13, 2, 1));
    }
}
