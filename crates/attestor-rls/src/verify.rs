//! One verify run: open the session, read the catalog, run every static
//! rule of the registry, then the dynamic proof, and return the report.
//!
//! It owns the order of a run and its transaction: everything happens in
//! one transaction per session that is always rolled back, so it must never
//! commit or leave anything behind.

use crate::catalog::Catalog;
use crate::config::Config;
use crate::db::Db;
use crate::error::Result;
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

/// Verify the database at `url` (a superuser's, or the owner's for the
/// static rules). Everything runs in one transaction that is rolled back.
pub fn verify(url: &str, options: &VerifyOptions) -> Result<Report> {
    let started = std::time::Instant::now();
    let mut db = Db::connect(url)?;
    let mut report = Report {
        database: db
            .text("SELECT current_database()::text AS v")?
            .unwrap_or_default(),
        modules: options.modules.iter().map(|m| m.key.clone()).collect(),
        ..Default::default()
    };
    db.begin()?;
    let result = (|| -> Result<()> {
        db.exec("SET LOCAL statement_timeout = '60s'; SET LOCAL lock_timeout = '5s'")?;
        let catalog = Catalog::load(&mut db, &options.modules)?;
        rules::run_static(&mut db, &catalog, &options.modules, &options.config, &mut report)?;
        if options.dynamic {
            dynamic::run(&mut db, &catalog, &options.modules, &options.config, &mut report)?;
        }
        Ok(())
    })();
    let rolled_back = db.rollback();
    result?;
    rolled_back?;
    report.set_elapsed(started.elapsed());
    Ok(report)
}
