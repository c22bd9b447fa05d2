//! `cargo xtask ci`: everything CI checks, in the order that fails fastest:
//! `cargo fmt --check`, clippy with `-D warnings`, `schema --check`,
//! `gen-rls --check`, and the whole test suite. `.ci/run` calls exactly this.

use std::process::{Command, ExitCode};

use anyhow::{bail, Result};

use crate::util::run;

pub fn run_cmd(args: &[&str]) -> Result<ExitCode> {
    if !args.is_empty() {
        bail!("usage: cargo xtask ci");
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(&cargo).args(["fmt", "--all", "--check"]))?;
    run(Command::new(&cargo).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;
    let code = crate::schema::run_cmd(&["--check"])?;
    if code != ExitCode::SUCCESS {
        bail!("the generated schema drifted from the migrations");
    }
    if crate::gen_rls::run_cmd(&["--check"])? != ExitCode::SUCCESS {
        bail!("the generated RLS migration is missing policies or stale");
    }
    run(Command::new(&cargo).args(["test", "--workspace", "--locked"]))?;
    eprintln!("ci: all checks passed");
    Ok(ExitCode::SUCCESS)
}
