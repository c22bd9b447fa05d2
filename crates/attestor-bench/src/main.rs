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
//! report. `--json` prints one JSON object per line for machines. The
//! command line is declared once, here and in each benchmark's `Args`
//! (clap); `attestor-bench help` and `<benchmark> --help` print it.

mod guard;
mod guard_cost;
mod peers;
mod queue;
mod soak;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The project's benchmarks (release build, own throwaway cluster).
#[derive(Debug, Parser)]
#[command(name = "attestor-bench", bin_name = "cargo xtask bench")]
struct Cli {
    #[command(subcommand)]
    benchmark: Benchmark,
}

#[derive(Debug, Subcommand)]
enum Benchmark {
    /// The tenant guard (Database::fetch: the guard and RLS in one request;
    /// Database::transaction alongside) against an explicit WHERE tenant_id =
    /// $1 as a BYPASSRLS role, same pool size: point read by id and a page of
    /// the 50 newest rows; ratio = median of paired rounds; CPU per operation.
    Guard(guard::Args),
    /// The same paths counted, not timed: PostgreSQL backend instructions per
    /// operation under valgrind's callgrind (baseline, fetch, the guard
    /// statement alone, RLS alone, transaction); needs valgrind; its own
    /// cluster (ignores DATABASE_URL).
    GuardCost(guard_cost::Args),
    /// Rekor submission queue burn-down (durable commits) for each batch
    /// size, in two modes, each against pgbench running the same SQL:
    /// mechanics (claim + fenced completion, nothing stored) and pipeline
    /// (workers, log answers signed before the run, each verified, entry
    /// and audit row stored); HOT share of
    /// the queue's updates, its size after the run; fairness p99 of small
    /// tenants behind a big backlog; peak worker RSS. `queue soak`: a
    /// steady run of 1M jobs, the table's size and the claim's p99 over it.
    Queue(queue::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.benchmark {
        Benchmark::Guard(args) => guard::run(args),
        Benchmark::GuardCost(args) => guard_cost::run(args),
        Benchmark::Queue(args) => queue::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
