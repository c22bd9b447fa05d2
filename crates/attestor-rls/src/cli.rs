//! The command-line arguments of `verify` and `generate` (clap), shared by
//! the `attestor-rls` binary and `cargo xtask verify-rls`/`gen-rls`, so the
//! help text exists once, and the runs they start.
//!
//! It owns turning arguments into a run and a run into an exit status
//! (0 clean, 1 findings, 2 could not run, 3 incomplete); it must never
//! decide what is a finding.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::{report, Config, Module, Target, VerifyOptions};

/// Output format of `verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One line per rule, each finding with its fix.
    Human,
    /// The versioned JSON report (format `attestor-rls-report`).
    Json,
    /// SARIF 2.1.0, for code-scanning dashboards.
    Sarif,
}

/// `verify`: prove tenant isolation.
///
/// Without a URL it starts a throwaway cluster (or uses DATABASE_URL's
/// server), migrates a scratch database and verifies it through login
/// sessions of the app and worker roles it makes itself. Exit 0 clean, 1
/// findings, 2 could not run, 3 incomplete (no findings, but some probes
/// could not run; they are listed).
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// URL of the app login role (`<module>_app`): the catalog rules and the
    /// row proof run in its own session.
    #[arg(long, value_name = "URL")]
    pub app_url: Option<String>,
    /// URL of the worker login role (`<module>_worker`).
    #[arg(long, value_name = "URL")]
    pub worker_url: Option<String>,
    /// URL of a role that may write rows the app cannot (a superuser, or a
    /// member of the runtime roles); used only where such rows are needed.
    /// `--database-url` is the same: a superuser's URL verifies alone, by
    /// switching roles, and reports the login-session probes as not run.
    #[arg(long, value_name = "URL", visible_alias = "database-url")]
    pub owner_url: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
    /// Only the catalog rules, no dynamic proof.
    #[arg(long)]
    pub static_only: bool,
    /// The reviewed exceptions (default: the rls.toml built into the binary).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// diesel.toml naming the modules (default: the one built into the binary).
    #[arg(long, value_name = "FILE")]
    pub diesel_toml: Option<PathBuf>,
    /// The migrations directory, for the physical locations in SARIF
    /// (default: ./migrations when it exists).
    #[arg(long, value_name = "DIR")]
    pub migrations: Option<PathBuf>,
}

/// `generate`: write the generated RLS migration (or check it).
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    /// Exit 1, naming the tables, when a tenant table lacks its generated
    /// policy or the generated migration is stale; write nothing.
    #[arg(long)]
    pub check: bool,
}

impl VerifyArgs {
    fn modules(&self) -> Result<Vec<Module>> {
        match &self.diesel_toml {
            Some(p) => crate::modules_from_file(p),
            None => Ok(crate::embedded_modules()),
        }
    }

    fn exceptions(&self) -> Result<Config> {
        match &self.config {
            Some(p) => Config::load(p),
            None => Ok(Config::embedded()),
        }
    }
}

/// Run `verify`, print the report to stdout, and return the exit status.
pub fn verify(args: &VerifyArgs) -> Result<u8> {
    verify_with(args, None)
}

/// [`verify`], with every module's login URLs given by `targets` instead of
/// the arguments' URLs.
pub fn verify_with(args: &VerifyArgs, targets: Option<&crate::Targets>) -> Result<u8> {
    let options = VerifyOptions {
        modules: args.modules()?,
        config: args.exceptions()?,
        dynamic: !args.static_only,
    };
    let given = args.app_url.is_some() || args.worker_url.is_some() || args.owner_url.is_some();
    let report = if let Some(t) = targets {
        crate::verify_targets(t, &options)?
    } else if given {
        crate::verify_target(
            &Target {
                app_url: args.app_url.clone(),
                worker_url: args.worker_url.clone(),
                owner_url: args.owner_url.clone(),
            },
            &options,
        )?
    } else {
        embedded(&options)?
    };
    let migrations = args.migrations.clone().or_else(|| {
        Path::new("migrations")
            .is_dir()
            .then(|| PathBuf::from("migrations"))
    });
    let text = match args.format {
        Format::Human => report.to_human(),
        Format::Json => format!("{}\n", report.to_json()),
        Format::Sarif => format!("{}\n", report::sarif::to_string(&report, migrations.as_deref())),
    };
    print!("{text}");
    Ok(report.verdict().exit_code())
}

/// The embedded run: a throwaway cluster (or DATABASE_URL's server), a
/// scratch database migrated with the built-in migrations, and login
/// sessions of the runtime roles made by the tool itself.
pub fn embedded(options: &VerifyOptions) -> Result<report::Report> {
    if std::env::var_os("DATABASE_URL").is_none() {
        eprintln!("no URL given and DATABASE_URL is not set: starting an embedded PostgreSQL cluster");
    }
    let server = attestor_testdb::Server::from_env()?;
    let name = format!("attestor_verify_rls_{}", std::process::id());
    server.drop_database(&name)?;
    server.create_database(&name, Some("template0"))?;
    let result = (|| {
        server
            .migrate(&name, attestor_schema::MIGRATIONS)
            .map_err(|e| Error::Migrations(e.to_string()))?;
        verify_on(&server, &name, options)
    })();
    server.drop_database(&name)?;
    result
}

/// Verify database `name` of `server` as an operator would: the login
/// sessions of every module's app and worker roles, and the server's
/// superuser as the owner session (used only where the app cannot write).
pub fn verify_on(
    server: &attestor_testdb::Server,
    name: &str,
    options: &VerifyOptions,
) -> Result<report::Report> {
    crate::verify_targets(&server_targets(server, name, &options.modules)?, options)
}

/// Every module's login URLs on `server` (development passwords set where
/// the server needs them) and its superuser as the owner.
pub fn server_targets(
    server: &attestor_testdb::Server,
    name: &str,
    modules: &[Module],
) -> Result<crate::Targets> {
    let roles: Vec<String> = modules.iter().flat_map(|m| m.runtime_roles()).collect();
    server.set_dev_passwords_for(&roles.iter().map(String::as_str).collect::<Vec<_>>())?;
    Ok(crate::Targets {
        logins: modules
            .iter()
            .map(|m| crate::ModuleLogins {
                module: m.key.clone(),
                app_url: Some(server.role(&m.app_role(), name).url()),
                worker_url: Some(server.role(&m.worker_role(), name).url()),
            })
            .collect(),
        owner_url: Some(server.admin(name).url()),
    })
}

/// Run `generate` (`--check` or write) on `inputs`, reporting on stderr;
/// returns the exit status (0 up to date or written, 1 `--check` found drift).
pub fn generate(
    server: &attestor_testdb::Server,
    inputs: &crate::generate::GenInputs,
    args: &GenerateArgs,
) -> Result<u8> {
    let drifts = crate::generate::plan(server, inputs)?;
    if drifts.is_empty() {
        eprintln!("gen-rls: the generated RLS migration is up to date");
        return Ok(0);
    }
    if args.check {
        for d in &drifts {
            eprintln!(
                "gen-rls --check: migrations/{} is missing or stale; tables without their generated policies: {}",
                d.migration,
                if d.tables.is_empty() {
                    "(none: only the text differs)".to_owned()
                } else {
                    d.tables.join(", ")
                }
            );
        }
        eprintln!("run `cargo xtask gen-rls` to regenerate");
        return Ok(1);
    }
    for dir in crate::generate::write(inputs, &drifts)? {
        eprintln!("gen-rls: wrote {}", dir.display());
    }
    Ok(0)
}
