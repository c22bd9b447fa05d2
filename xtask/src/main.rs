//! `cargo xtask`: the project's automation, one file per subcommand.
//!
//! Every command that needs a database uses `DATABASE_URL` (a superuser
//! URL) when it is set and otherwise starts the embedded throwaway cluster
//! from the local PostgreSQL server binaries (see `attestor-testdb`).
//! This crate may use `anyhow`; it must stay free of product logic that a
//! library user would need.

mod bench;
mod ci;
mod citus;
mod db;
mod gen_rls;
mod pg;
mod verify_rls;

// Shared with the library half (tests call them directly).
use xtask::{schema, util};

use std::process::ExitCode;

const HELP: &str = "\
cargo xtask <command>

Commands:
  db up              start the development database (embedded cluster, or DATABASE_URL's
                     server), create roles and the `attestor` database, run all migrations,
                     print the admin, app and worker URLs
  db down            stop the embedded development cluster and delete its files
  schema [--check]   regenerate crates/*/src/schema.rs with `diesel print-schema`;
                     --check fails with a diff when it no longer matches the migrations
  gen-rls [--check]  write the tenant RLS policies (from the catalog and rls.toml) as a
                     generated diesel migration; --check exits 1 naming tables whose
                     generated policies are missing or stale
  verify-rls [--database-url URL] [--format human|json|sarif] [--static-only]
                     check the catalog against the tenant-isolation rules and prove
                     isolation with rows of two tenants as the login roles (rolled
                     back); exit 0 clean, 1 findings, 2 could not run, 3 incomplete;
                     `cargo xtask verify-rls --help` lists every option
  bench <name> [..]  run a benchmark in release mode: guard, queue (`cargo xtask bench help`)
  citus test         the Citus lane: a coordinator and two workers, migrate, distribute, the
                     test suites and verify-rls against them (one line and exit 0 without Citus)
  pg install <major> install pinned PostgreSQL server binaries (18) into .tools/pg-<major>/
                     (never on PATH) and print the ATTESTOR_PG_BINDIR that selects them
  ci                 everything CI checks: fmt, clippy -D warnings, schema --check,
                     gen-rls --check, then cargo test --workspace and verify-rls against
                     PostgreSQL 15 (system) and 18 (`pg install 18`), one line per version
  help               this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["db", rest @ ..] => db::run(rest),
        ["schema", rest @ ..] => schema::run_cmd(rest),
        ["ci", rest @ ..] => ci::run_cmd(rest),
        ["citus", rest @ ..] => citus::run_cmd(rest),
        ["bench", rest @ ..] => bench::run_cmd(rest),
        ["pg", rest @ ..] => pg::run_cmd(rest),
        ["gen-rls", rest @ ..] => gen_rls::run_cmd(rest),
        ["verify-rls", rest @ ..] => verify_rls::run_cmd(rest),
        [] | ["help"] | ["--help"] | ["-h"] => {
            print!("{HELP}");
            Ok(ExitCode::SUCCESS)
        }
        [other, ..] => {
            eprint!("unknown command `{other}`\n\n{HELP}");
            Ok(ExitCode::from(2))
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
