//! Helpers shared by the subcommands: the workspace root, running commands,
//! and obtaining a migrated database (embedded or `DATABASE_URL`).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use attestor_testdb::Server;

/// The workspace root (parent of `xtask/`).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// The workspace's reviewed RLS exceptions file.
pub fn rls_config_path() -> PathBuf {
    root().join("rls.toml")
}

/// The modules of the workspace's diesel.toml, as the RLS tooling sees them.
pub fn rls_modules() -> Result<Vec<attestor_rls::Module>> {
    Ok(attestor_rls::modules_from_file(&root().join("diesel.toml"))?)
}

/// Run a command in the workspace root, echoing it; fail on non-zero exit.
pub fn run_echoed(cmd: &mut Command) -> Result<()> {
    cmd.current_dir(root());
    eprintln!("$ {}", display(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("running {}", display(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(cmd));
    }
    Ok(())
}

fn display(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The server for one-off commands: `DATABASE_URL` or a fresh embedded
/// cluster that stops when the returned value is dropped.
pub fn server() -> Result<Server> {
    if std::env::var_os("DATABASE_URL").is_none() {
        eprintln!("DATABASE_URL is not set: starting an embedded PostgreSQL cluster");
    }
    Server::from_env().context("starting PostgreSQL")
}

/// A scratch database on `server`, migrated with the project's migrations,
/// named after `purpose`. The caller drops it with [`Server::drop_database`].
pub fn scratch_database(server: &Server, purpose: &str) -> Result<String> {
    let name = format!("attestor_{purpose}_{}", std::process::id());
    server.drop_database(&name)?;
    server.create_database(&name, Some("template0"))?;
    server
        .migrate(&name, attestor_schema::MIGRATIONS)
        .with_context(|| format!("migrating {name}"))?;
    Ok(name)
}
