//! One verify run: open the sessions, read the catalog, run every static
//! rule of the registry, then the dynamic proof, and return the report.
//!
//! It owns the order of a run and its sessions: the app's and the worker's
//! real login sessions (so role and database settings apply as they do in
//! production) and, when given, a privileged owner session for rows the app
//! cannot write. Every session runs in one transaction that is always rolled
//! back, so it must never commit or leave anything behind.

use crate::catalog::Catalog;
use crate::config::Config;
use crate::db::{redact, Db};
use crate::error::{Error, Result};
use crate::report::Report;
use crate::{dynamic, rules, Module};

/// What a verify run checks.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub modules: Vec<Module>,
    pub config: Config,
    /// Run the dynamic proof (rows of two tenants) after the static rules.
    pub dynamic: bool,
}

/// Where to connect. The app and worker URLs are the login roles' own
/// (`<module>_app`, `<module>_worker`); the owner URL is a role that may
/// write rows the app cannot (a superuser, or a member of the runtime roles),
/// needed only where such rows are needed. With no app URL the catalog is read
/// through the owner session and the login-session probes (TD018) cannot run.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub app_url: Option<String>,
    pub worker_url: Option<String>,
    pub owner_url: Option<String>,
}

/// A session in its rolled-back transaction.
fn open(url: &str) -> Result<Db> {
    let mut db = Db::connect(url)?;
    db.begin()?;
    db.exec("SET LOCAL statement_timeout = '60s'; SET LOCAL lock_timeout = '5s'")?;
    Ok(db)
}

fn check_role(db: &mut Db, want: &str, url: &str) -> Result<()> {
    let user = db.text("SELECT session_user::text AS v")?.unwrap_or_default();
    if user != want {
        return Err(Error::Usage(format!(
            "{} logs in as {user}, expected the login role {want}",
            redact(url)
        )));
    }
    Ok(())
}

/// Verify the database behind `target`.
pub fn verify_target(target: &Target, options: &VerifyOptions) -> Result<Report> {
    let started = std::time::Instant::now();
    let login = target.app_url.is_some() || target.worker_url.is_some();
    if login && options.modules.len() != 1 {
        return Err(Error::Usage(format!(
            "--app-url/--worker-url name one module's login roles, but {} modules are configured",
            options.modules.len()
        )));
    }
    let m = &options.modules[0];
    let mut report = Report {
        modules: options.modules.iter().map(|m| m.key.clone()).collect(),
        ..Default::default()
    };
    // TD018 runs first in each login session, before anything sets a setting.
    let mut app = match &target.app_url {
        Some(url) => {
            let mut db = open(url)?;
            check_role(&mut db, &m.app_role(), url)?;
            dynamic::fresh_session(&mut db, m, &options.config, &mut report)?;
            report
                .sessions
                .push(format!("{}: login session ({})", m.app_role(), redact(url)));
            Some(db)
        }
        None => None,
    };
    let mut worker = match &target.worker_url {
        Some(url) => {
            let mut db = open(url)?;
            check_role(&mut db, &m.worker_role(), url)?;
            dynamic::fresh_session(&mut db, m, &options.config, &mut report)?;
            report
                .sessions
                .push(format!("{}: login session ({})", m.worker_role(), redact(url)));
            Some(db)
        }
        None => None,
    };
    let mut owner = match &target.owner_url {
        Some(url) => {
            let mut db = open(url)?;
            let user = db.text("SELECT session_user::text AS v")?.unwrap_or_default();
            report.sessions.push(format!(
                "{user}: owner session, used only for rows the app cannot write ({})",
                redact(url)
            ));
            Some(db)
        }
        None => None,
    };
    for (role, given) in [(m.app_role(), app.is_some()), (m.worker_role(), worker.is_some())] {
        if !given {
            report.not_run(
                crate::rules::probes::TD018.id,
                format!("role {role}"),
                format!(
                    "no login session of {role} was given: a session that switches roles never sees the \
                     role's and database's settings"
                ),
            );
        }
    }
    let result = (|| -> Result<()> {
        let catalog_db =
            match (app.as_mut(), owner.as_mut()) {
                (Some(db), _) | (None, Some(db)) => db,
                (None, None) => return Err(Error::Usage(
                    "give the app role's URL (--app-url), or an owner URL, or neither for an embedded run"
                        .into(),
                )),
            };
        report.database = catalog_db
            .text("SELECT current_database()::text AS v")?
            .unwrap_or_default();
        let catalog = Catalog::load(catalog_db, &options.modules)?;
        rules::run_static(
            catalog_db,
            &catalog,
            &options.modules,
            &options.config,
            &mut report,
        )?;
        if options.dynamic {
            let mut sessions = dynamic::Sessions {
                app: app.as_mut(),
                worker: worker.as_mut(),
                owner: owner.as_mut(),
            };
            dynamic::run(
                &mut sessions,
                &catalog,
                &options.modules,
                &options.config,
                &mut report,
            )?;
        }
        Ok(())
    })();
    let mut rolled_back = Ok(());
    for db in [app.as_mut(), worker.as_mut(), owner.as_mut()]
        .into_iter()
        .flatten()
    {
        if let Err(e) = db.rollback() {
            rolled_back = Err(e);
        }
    }
    result?;
    rolled_back?;
    report.set_elapsed(started.elapsed());
    Ok(report)
}

/// Verify through one privileged session only (a superuser's URL): the
/// catalog and the row proof by `SET ROLE`. The login-session probes are
/// reported as not run.
pub fn verify(url: &str, options: &VerifyOptions) -> Result<Report> {
    verify_target(
        &Target {
            owner_url: Some(url.to_owned()),
            ..Default::default()
        },
        options,
    )
}
