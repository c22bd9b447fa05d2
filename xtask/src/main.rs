//! `cargo xtask`: the project's automation, one file per subcommand.
//!
//! The command line is declared once, in `xtask::cli` (clap); this file only
//! dispatches it. Every command that needs a database uses `DATABASE_URL` (a
//! superuser URL) when it is set and otherwise starts the embedded throwaway
//! cluster from the local PostgreSQL server binaries (see `attestor-testdb`).
//! This crate may use `anyhow`; it must stay free of product logic that a
//! library user would need.

mod bench;
mod ci;
mod citus;
mod db;
mod pg;

// Shared with the library half (tests call them directly).
use xtask::cli::{CitusCommand, Cli, Command, ModuleCommand, PgCommand};
use xtask::{gen_rls, module, schema, util, verify_rls};

use std::process::ExitCode;

use clap::Parser;

fn module_new(name: &str) -> anyhow::Result<ExitCode> {
    let root = util::root();
    let made = module::new_module(&root, name)?;
    for f in &made.files {
        eprintln!("module new: wrote {}", f.display());
    }
    let code = schema::run_in(&root, &util::server()?, false)?;
    eprintln!(
        "module new: module `{name}` added. Next: its tables in a new migration after {}, then \
         `cargo xtask gen-rls`, `cargo xtask schema` and `cargo xtask verify-rls`",
        made.migrations[1]
    );
    Ok(code)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Db(action) => db::run(action),
        Command::Module(ModuleCommand::New { name }) => module_new(&name),
        Command::Schema(args) => schema::run(args.check),
        Command::Ci => ci::run(),
        Command::Citus(CitusCommand::Test(args)) => citus::run(args),
        Command::Bench(args) => bench::run(&args.args),
        Command::Pg(PgCommand::Install { major }) => pg::run_install(&major),
        Command::GenRls(args) => gen_rls::run(args.check),
        Command::VerifyRls(args) => verify_rls::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
