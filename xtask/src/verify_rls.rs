//! `cargo xtask verify-rls`: a thin wrapper over `attestor-rls verify`,
//! whose arguments (`attestor_rls::cli::VerifyArgs`) it takes.
//!
//! Without a URL it starts the embedded default (or uses `DATABASE_URL`'s
//! server), migrates a scratch database from the checkout's migrations and
//! verifies it through login sessions of the app and worker roles; with
//! `--database-url` (a superuser's URL, as before) it verifies that existing
//! database, logging in as the runtime roles the way the development servers
//! allow (see `attestor_testdb::Server::role`). It passes the checkout's
//! rls.toml, diesel.toml and migrations. Exit 0 clean, 1 findings, 2 could
//! not run, 3 incomplete. It only parses arguments and prints.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use attestor_rls::cli::{Format, VerifyArgs};
use attestor_rls::{Config, Report, VerifyOptions};
use attestor_testdb::Server;

use crate::util::{rls_config_path, rls_modules, rls_modules_in, root, scratch_database_in, server};

pub fn run(mut args: VerifyArgs) -> Result<ExitCode> {
    // The checkout's files, not the copies built into the binary.
    args.config.get_or_insert_with(rls_config_path);
    args.diesel_toml.get_or_insert_with(|| root().join("diesel.toml"));
    args.migrations.get_or_insert_with(|| root().join("migrations"));
    if let (Some(url), None, None) = (&args.owner_url, &args.app_url, &args.worker_url) {
        // Today's `--database-url`: log in as the runtime roles on that server too.
        let admin = attestor_testdb::ConnParams::parse(url)?;
        // Every module's login roles, as `db up` made them.
        let dev = attestor_testdb::Server::from_url(url)?;
        let targets = attestor_rls::Targets {
            logins: rls_modules()?
                .iter()
                .map(|m| attestor_rls::ModuleLogins {
                    module: m.key.clone(),
                    app_url: Some(dev.role(&m.app_role(), &admin.database).url()),
                    worker_url: Some(dev.role(&m.worker_role(), &admin.database).url()),
                })
                .collect(),
            owner_url: Some(url.clone()),
        };
        return Ok(ExitCode::from(attestor_rls::cli::verify_with(
            &args,
            Some(&targets),
        )?));
    }
    if args.app_url.is_some() || args.worker_url.is_some() || args.owner_url.is_some() {
        return Ok(ExitCode::from(attestor_rls::cli::verify(&args)?));
    }
    // Embedded: the checkout's migrations, on DATABASE_URL's server or a throwaway cluster.
    let report = embedded_in(&root(), &server()?, !args.static_only)?;
    let text = match args.format {
        Format::Human => report.to_human(),
        Format::Json => format!("{}\n", report.to_json()),
        Format::Sarif => format!(
            "{}\n",
            attestor_rls::report::sarif::to_string(&report, args.migrations.as_deref())
        ),
    };
    print!("{text}");
    Ok(ExitCode::from(report.verdict().exit_code()))
}

/// The embedded run for the workspace at `root`: a scratch database on
/// `server` migrated with its migrations, verified through the login
/// sessions of every module's app and worker roles.
pub fn embedded_in(root: &Path, server: &Server, dynamic: bool) -> Result<Report> {
    let options = VerifyOptions {
        modules: rls_modules_in(root)?,
        config: Config::load(&root.join("rls.toml"))?,
        dynamic,
    };
    let db = scratch_database_in(server, "verify_rls", root)?;
    let result = attestor_rls::cli::verify_on(server, &db, &options);
    server.drop_database(&db)?;
    result.context("verify-rls")
}
