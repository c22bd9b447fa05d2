//! `cargo xtask bench <name> [options]`: run a benchmark of
//! `crates/attestor-bench` in release mode (benchmarks are never timed unit
//! tests). See `cargo xtask bench help` for the list.

use std::process::{Command, ExitCode};

use anyhow::Result;

use crate::util::run_echoed;

pub fn run(args: &[String]) -> Result<ExitCode> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run_echoed(
        Command::new(cargo)
            .args([
                "run",
                "--quiet",
                "--release",
                "--locked",
                "-p",
                "attestor-bench",
                "--",
            ])
            .args(args),
    )?;
    Ok(ExitCode::SUCCESS)
}
