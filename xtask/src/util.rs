//! Helpers shared by the subcommands: the workspace root, running commands,
//! and obtaining a migrated database (embedded or `DATABASE_URL`).

use std::path::{Path, PathBuf};
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
    rls_modules_in(&root())
}

/// The modules of the diesel.toml of the workspace at `root`.
pub fn rls_modules_in(root: &Path) -> Result<Vec<attestor_rls::Module>> {
    Ok(attestor_rls::modules_from_file(&root.join("diesel.toml"))?)
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

/// A scratch database on `server`, migrated with the checkout's migrations,
/// named after `purpose`. The caller drops it with [`Server::drop_database`].
pub fn scratch_database(server: &Server, purpose: &str) -> Result<String> {
    scratch_database_in(server, purpose, &root())
}

/// A scratch database migrated with the migrations of the workspace at
/// `root`, read from disk (every module's, as they are now: no rebuild
/// needed after adding one). On a Citus coordinator it is then distributed
/// (every module, `citus/distribute.sql`), as `cargo xtask db up` leaves a
/// database there: verify-rls must find it as an operator's would be.
pub fn scratch_database_in(server: &Server, purpose: &str, root: &Path) -> Result<String> {
    let name = format!("attestor_{purpose}_{}", std::process::id());
    let dir = root.join("migrations");
    let source = diesel_migrations::FileBasedMigrations::from_path(&dir)
        .map_err(|e| anyhow::anyhow!("reading the migrations in {}: {e}", dir.display()))?;
    server.drop_database(&name)?;
    server.create_database(&name, Some("template0"))?;
    server
        .migrate(&name, source)
        .with_context(|| format!("migrating {name}"))?;
    server
        .distribute(&name)
        .with_context(|| format!("distributing {name}"))?;
    Ok(name)
}
