//! `cargo xtask ci`: everything CI checks, in the order that fails fastest:
//! `cargo fmt --check`, clippy with `-D warnings`, `schema --check`,
//! `gen-rls --check`, and the whole test suite. `.ci/run` calls exactly this.

use std::process::{Command, ExitCode};

use anyhow::{bail, Result};

use crate::util::run_echoed;

pub fn run() -> Result<ExitCode> {
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
    run_echoed(Command::new(&cargo).args(["test", "--workspace", "--locked"]))?;
    eprintln!("ci: all checks passed");
    Ok(ExitCode::SUCCESS)
}
