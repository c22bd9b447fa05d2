//! `cargo xtask gen-rls`: write (or check) the generated RLS
//! migration from the catalog and `rls.toml`.
//!
//! Starts the embedded default (or uses `DATABASE_URL`'s server) for the
//! scratch databases `attestor_rls::generate::plan` migrates. Without
//! `--check` it rewrites the last migration when that one is generated, or
//! appends a new generated migration; with `--check` it exits 1 naming the
//! tables whose policies are missing or stale. It covers every module of
//! diesel.toml and never edits a hand-written migration.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use attestor_rls::cli::GenerateArgs;
use attestor_rls::generate;
use attestor_testdb::Server;

use crate::util::{rls_modules_in, root, server};

pub fn run(check: bool) -> Result<ExitCode> {
    Ok(ExitCode::from(run_in(&root(), &server()?, check)?))
}

/// `gen-rls [--check]` for the workspace at `root`, on `server`: the exit
/// status (0 up to date or written, 1 `--check` found drift).
pub fn run_in(root: &Path, server: &Server, check: bool) -> Result<u8> {
    let inputs = generate::GenInputs {
        migrations: root.join("migrations"),
        config_path: root.join("rls.toml"),
        modules: rls_modules_in(root)?,
    };
    Ok(attestor_rls::cli::generate(
        server,
        &inputs,
        &GenerateArgs { check },
    )?)
}
