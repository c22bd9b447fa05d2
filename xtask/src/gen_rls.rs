//! `cargo xtask gen-rls`: write (or check) the generated RLS
//! migration from the catalog and `rls.toml`.
//!
//! Starts the embedded default (or uses `DATABASE_URL`'s server) for the
//! scratch databases `attestor_rls::generate::plan` migrates. Without
//! `--check` it rewrites the last migration when that one is generated, or
//! appends a new generated migration; with `--check` it exits 1 naming the
//! tables whose policies are missing or stale. It never edits a
//! hand-written migration.

use std::process::ExitCode;

use anyhow::Result;
use attestor_rls::cli::GenerateArgs;
use attestor_rls::generate;
use xtask::util::{rls_config_path, rls_modules, root, server};

pub fn run(check: bool) -> Result<ExitCode> {
    let inputs = generate::GenInputs {
        migrations: root().join("migrations"),
        config_path: rls_config_path(),
        modules: rls_modules()?,
    };
    let code = attestor_rls::cli::generate(&server()?, &inputs, &GenerateArgs { check })?;
    Ok(ExitCode::from(code))
}
