//! One verify run: open the sessions, read the catalog, run every static
//! rule of the registry, then the dynamic proof, and return the report.
//!
//! With several modules, each module's static rules and row proof run in
//! its own sessions, then the isolation between modules (`crate::isolation`).
//!
//! It owns the order of a run and its sessions: every module's app and
//! worker real login sessions (so role and database settings apply as they
//! do in production) and, when given, a privileged owner session for rows an
//! app cannot write. Every session runs in one transaction that is always
//! rolled back, so it must never commit or leave anything behind.

use crate::catalog::Catalog;
use crate::config::Config;
use crate::db::{redact, Db};
use crate::error::{Error, Result};
use crate::report::Report;
use crate::{dynamic, isolation, rules, Module};

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

/// One module's login roles' URLs, for a run over several modules.
#[derive(Debug, Clone, Default)]
pub struct ModuleLogins {
    /// The module's key in diesel.toml.
    pub module: String,
    pub app_url: Option<String>,
    pub worker_url: Option<String>,
}

/// Where to connect for a run over any number of modules: each module's
/// own login roles (a module without an entry has its login-session probes
/// reported as not run) and one owner session.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    pub logins: Vec<ModuleLogins>,
    pub owner_url: Option<String>,
}

/// A module's open login sessions.
#[derive(Default)]
struct Logins {
    app: Option<Db>,
    worker: Option<Db>,
}

/// Verify the database behind `target`. Its app and worker URLs are one
/// module's login roles, so with login URLs exactly one module may be
/// configured; [`verify_targets`] takes every module's.
pub fn verify_target(target: &Target, options: &VerifyOptions) -> Result<Report> {
    let login = target.app_url.is_some() || target.worker_url.is_some();
    if login && options.modules.len() != 1 {
        return Err(Error::Usage(format!(
            "--app-url/--worker-url name one module's login roles, but {} modules are configured",
            options.modules.len()
        )));
    }
    let logins = match (login, options.modules.first()) {
        (true, Some(m)) => vec![ModuleLogins {
            module: m.key.clone(),
            app_url: target.app_url.clone(),
            worker_url: target.worker_url.clone(),
        }],
        _ => Vec::new(),
    };
    verify_targets(
        &Targets {
            logins,
            owner_url: target.owner_url.clone(),
        },
        options,
    )
}

/// Open `url` as the login role `role` of `m` and run TD018 first, before
/// anything sets a setting.
fn login(url: &str, role: &str, m: &Module, options: &VerifyOptions, report: &mut Report) -> Result<Db> {
    let mut db = open(url)?;
    check_role(&mut db, role, url)?;
    dynamic::fresh_session(&mut db, m, &options.config, report)?;
    report
        .sessions
        .push(format!("{role}: login session ({})", redact(url)));
    Ok(db)
}

/// Verify the database behind `targets`: every module's static rules, its
/// row proof in its own login sessions, and the isolation between modules
/// from each module's login sessions.
pub fn verify_targets(targets: &Targets, options: &VerifyOptions) -> Result<Report> {
    let started = std::time::Instant::now();
    if options.modules.is_empty() {
        return Err(Error::Usage("no modules configured".into()));
    }
    if let Some(l) = targets
        .logins
        .iter()
        .find(|l| !options.modules.iter().any(|m| m.key == l.module))
    {
        return Err(Error::Usage(format!(
            "login URLs given for module {}, which diesel.toml does not name",
            l.module
        )));
    }
    let mut report = Report {
        modules: options.modules.iter().map(|m| m.key.clone()).collect(),
        ..Default::default()
    };
    let mut logins: Vec<Logins> = Vec::new();
    for m in &options.modules {
        let given = targets.logins.iter().find(|l| l.module == m.key);
        let mut l = Logins::default();
        if let Some(url) = given.and_then(|g| g.app_url.as_deref()) {
            l.app = Some(login(url, &m.app_role(), m, options, &mut report)?);
        }
        if let Some(url) = given.and_then(|g| g.worker_url.as_deref()) {
            l.worker = Some(login(url, &m.worker_role(), m, options, &mut report)?);
        }
        for (role, given) in [
            (m.app_role(), l.app.is_some()),
            (m.worker_role(), l.worker.is_some()),
        ] {
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
        logins.push(l);
    }
    let mut owner = match &targets.owner_url {
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
    let result = (|| -> Result<()> {
        let first_app = logins.iter_mut().find_map(|l| l.app.as_mut());
        let catalog_db =
            match (first_app, owner.as_mut()) {
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
        // Each module's rules in its own app session, else in the owner
        // session, on a catalog read in that session: some rules use the
        // module's schema, and expressions are compared as the session
        // renders them (which depends on its search_path).
        for (m, l) in options.modules.iter().zip(logins.iter_mut()) {
            let Some(db) = l.app.as_mut().or(owner.as_mut()) else {
                return Err(Error::Usage(format!(
                    "module {}: give its app role's URL or an owner URL",
                    m.key
                )));
            };
            let seen = Catalog::load(db, &options.modules)?;
            run_static(db, &seen, m, options, &mut report)?;
        }
        if options.dynamic {
            for (m, l) in options.modules.iter().zip(logins.iter_mut()) {
                let mut sessions = dynamic::Sessions {
                    app: l.app.as_mut(),
                    worker: l.worker.as_mut(),
                    owner: owner.as_mut(),
                };
                dynamic::run(
                    &mut sessions,
                    &catalog,
                    std::slice::from_ref(m),
                    &options.config,
                    &mut report,
                )?;
            }
            if options.modules.len() > 1 {
                let mut sessions: Vec<isolation::LoginSessions<'_>> = logins
                    .iter_mut()
                    .map(|l| isolation::LoginSessions {
                        app: l.app.as_mut(),
                        worker: l.worker.as_mut(),
                    })
                    .collect();
                isolation::run(
                    &mut sessions,
                    owner.as_mut(),
                    &catalog,
                    &options.modules,
                    &options.config,
                    &mut report,
                )?;
            }
        }
        Ok(())
    })();
    let mut rolled_back = Ok(());
    for db in logins
        .iter_mut()
        .flat_map(|l| [l.app.as_mut(), l.worker.as_mut()])
        .chain([owner.as_mut()])
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

/// Every static rule of the registry for module `m` in session `db`.
fn run_static(
    db: &mut Db,
    catalog: &Catalog,
    m: &Module,
    options: &VerifyOptions,
    report: &mut Report,
) -> Result<()> {
    for rule in rules::ALL {
        let rules::Kind::Static(check) = rule.kind else {
            continue;
        };
        check(&mut rules::Ctx {
            db: &mut *db,
            catalog,
            module: m,
            modules: &options.modules,
            config: &options.config,
            report: &mut *report,
            rule,
        })?;
    }
    Ok(())
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
