//! `attestor-bench`: the project's benchmarks, run in release mode by
//! `cargo xtask bench <name>`.
//!
//! Each benchmark starts its own throwaway cluster (or uses `DATABASE_URL`),
//! loads its data, and compares the project's code path against a baseline
//! *in the same run*, printing both throughputs and their ratio (absolute
//! numbers on a shared 2-core machine are noise; ratios are the result);
//! `guard-cost` counts server instructions instead, which that noise does
//! not move.
//! Benchmarks never run as part of `cargo test` and assert nothing: they
//! report. `--json` prints one JSON object per line for machines.

mod guard;
mod guard_cost;
mod queue;

use std::process::ExitCode;

const HELP: &str = "\
attestor-bench <benchmark> [options]

Benchmarks:
  guard    tenant guard (Database::fetch: set_config + RLS in one request;
           Database::transaction alongside) vs. an explicit WHERE tenant_id = $1
           as a BYPASSRLS role, same pool size: point read by id and a page of
           the 50 newest rows; ratio = median of paired rounds; CPU per op
           options: --rows N (1000000) --tenants N (1000) --seconds S (5, per path)
                    --rounds N (20) --connections N (4) --json
                    --plan-cache-mode auto|force_generic_plan|force_custom_plan|server
                      (both pools; default: the guarded pool's, force_generic_plan)
  guard-cost
           the same paths counted, not timed: PostgreSQL backend instructions per
           operation under valgrind's callgrind (baseline, fetch, and fetch's two
           parts: the guard statement alone, RLS alone; transaction); needs valgrind; its own
           cluster (ignores DATABASE_URL)
           options: --rows N (20000) --tenants N (100) --warmup N (200) --ops N (1000)
                    --json
  queue    Rekor submission queue burn-down (durable commits), for B = 1 and 100, in two
           modes, each vs. pgbench running the same SQL: mechanics (claim + fenced
           completion, nothing stored) and pipeline (workers, no-op submitter, entry and
           audit row stored); HOT share of the queue's updates, its size after the run;
           fairness p99 of small tenants behind a big backlog; peak worker RSS
           options: --jobs N (100000) --tenants N (100) --workers K (4)
                    --batches 1,100 --big-backlog N (100000) --tenant-chunk N (10) --json
                    --no-fsync (diagnosis only: non-durable commits)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("guard") => guard::run(&args[1..]),
        Some("guard-cost") => guard_cost::run(&args[1..]),
        Some("queue") => queue::run(&args[1..]),
        Some("help" | "--help" | "-h") | None => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprint!("unknown benchmark `{other}`\n\n{HELP}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `--name value` options with defaults; `--json` is a flag.
pub struct Options {
    args: Vec<String>,
}

impl Options {
    pub fn new(args: &[String]) -> Self {
        Options { args: args.to_vec() }
    }

    pub fn flag(&self, name: &str) -> bool {
        self.args.iter().any(|a| a == name)
    }

    pub fn value<T: std::str::FromStr>(&self, name: &str, default: T) -> anyhow::Result<T> {
        match self.args.iter().position(|a| a == name) {
            None => Ok(default),
            Some(i) => self
                .args
                .get(i + 1)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("{name} needs a value")),
        }
    }
}
