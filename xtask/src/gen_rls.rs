//! `cargo xtask gen-rls [--check]`: write (or check) the generated RLS
//! migration from the catalog and `rls.toml`.
//!
//! Starts the embedded default (or uses `DATABASE_URL`'s server) for the
//! scratch databases `attestor_rls::generate::plan` migrates. Without
//! `--check` it rewrites the last migration when that one is generated, or
//! appends a new generated migration; with `--check` it exits 1 naming the
//! tables whose policies are missing or stale. It never edits a
//! hand-written migration.

use std::process::ExitCode;

use anyhow::{bail, Result};
use attestor_rls::generate;
use xtask::util::{rls_config_path, rls_modules, root, server};

pub fn run_cmd(args: &[&str]) -> Result<ExitCode> {
    let check = match args {
        [] => false,
        ["--check"] => true,
        _ => bail!("usage: cargo xtask gen-rls [--check]"),
    };
    let inputs = generate::GenInputs {
        migrations: root().join("migrations"),
        config_path: rls_config_path(),
        modules: rls_modules()?,
    };
    let server = server()?;
    let drifts = generate::plan(&server, &inputs)?;
    if drifts.is_empty() {
        eprintln!("gen-rls: the generated RLS migration is up to date");
        return Ok(ExitCode::SUCCESS);
    }
    if check {
        for d in &drifts {
            eprintln!(
                "gen-rls --check: migrations/{} is missing or stale; tables without their generated policies: {}",
                d.migration,
                if d.tables.is_empty() { "(none: only the text differs)".to_owned() } else { d.tables.join(", ") }
            );
        }
        eprintln!("run `cargo xtask gen-rls` to regenerate");
        return Ok(ExitCode::from(1));
    }
    for dir in generate::write(&inputs, &drifts)? {
        eprintln!(
            "gen-rls: wrote {}",
            dir.strip_prefix(root()).unwrap_or(&dir).display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
