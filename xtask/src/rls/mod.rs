//! Row-Level Security tooling: `gen-rls` (write the tenant policies as a
//! diesel migration) and `verify-rls` (check the live catalog and prove
//! isolation with real rows).
//!
//! This module owns the shared vocabulary: what a *module* is (a
//! `[print_schema.<module>]` key of `diesel.toml`, with roles
//! `<module>_owner/_app/_worker` and helper schema `<module>_app`), what a
//! *tenant table* is (a table with a `tenant_id` column in a module schema),
//! the canonical policy text, and the reviewed exceptions file (`rls.toml`).
//!
//! Submodules:
//! * [`config`]   — `rls.toml`, the reviewed exceptions (never in code);
//! * [`db`]       — a thin diesel connection wrapper (JSON catalog queries, probes);
//! * [`catalog`]  — catalog snapshot of the module schemas;
//! * [`generate`] — desired policy state, delta SQL, the generated migrations;
//! * [`fill`]     — catalog-driven row generator (types, defaults, CHECKs, FKs);
//! * [`verify_static`], [`verify_dynamic`] — the checks; [`report`] — output.
//!
//! It must never leave anything behind in a database it verifies: every
//! verify run happens in one transaction that is always rolled back.

pub mod catalog;
pub mod config;
pub mod db;
pub mod fill;
pub mod generate;
pub mod report;
pub mod verify_dynamic;
pub mod verify_static;

use anyhow::Result;

pub use config::Config;
pub use report::{Check, Finding, Report};

/// A module of the service: one `[print_schema.<key>]` section of diesel.toml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// The section key; prefix of the roles and of the helper schema.
    pub key: String,
    /// The schema holding the module's tables.
    pub schema: String,
}

impl Module {
    pub fn new(key: &str, schema: &str) -> Module {
        Module {
            key: key.to_owned(),
            schema: schema.to_owned(),
        }
    }
    /// Schema of the helper functions (`require_current_tenant()`).
    pub fn helper_schema(&self) -> String {
        format!("{}_app", self.key)
    }
    pub fn owner_role(&self) -> String {
        format!("{}_owner", self.key)
    }
    pub fn app_role(&self) -> String {
        format!("{}_app", self.key)
    }
    pub fn worker_role(&self) -> String {
        format!("{}_worker", self.key)
    }
    /// The login roles that must be isolated (app and worker).
    pub fn runtime_roles(&self) -> [String; 2] {
        [self.app_role(), self.worker_role()]
    }
    /// Both schemas of the module.
    pub fn schemas(&self) -> [String; 2] {
        [self.schema.clone(), self.helper_schema()]
    }
    /// The canonical tenant predicate of the module's isolation policies.
    pub fn tenant_predicate(&self) -> String {
        format!(
            "tenant_id = (SELECT {}.require_current_tenant())",
            self.helper_schema()
        )
    }
    /// `<role>` for a config role name (`app`, `worker`, `owner`, or a full name).
    pub fn role_named(&self, short: &str) -> String {
        match short {
            "app" => self.app_role(),
            "worker" => self.worker_role(),
            "owner" => self.owner_role(),
            other => other.to_owned(),
        }
    }
}

/// The modules listed in the workspace's diesel.toml.
pub fn workspace_modules() -> Result<Vec<Module>> {
    Ok(crate::schema::modules()?
        .into_iter()
        .map(|(key, schema, _)| Module { key, schema })
        .collect())
}

/// Name of the isolation policy of `table`.
pub fn isolation_policy_name(table: &str) -> String {
    format!("{table}_tenant_isolation")
}

/// Quote an identifier when needed (lowercase ASCII identifiers stay bare,
/// as in the migrations).
pub fn ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain && !is_reserved(name) {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

fn is_reserved(name: &str) -> bool {
    matches!(
        name,
        "all"
            | "and"
            | "any"
            | "array"
            | "as"
            | "asc"
            | "case"
            | "check"
            | "column"
            | "constraint"
            | "create"
            | "default"
            | "desc"
            | "distinct"
            | "do"
            | "else"
            | "end"
            | "false"
            | "for"
            | "foreign"
            | "from"
            | "grant"
            | "group"
            | "having"
            | "in"
            | "into"
            | "is"
            | "limit"
            | "not"
            | "null"
            | "offset"
            | "on"
            | "only"
            | "or"
            | "order"
            | "primary"
            | "references"
            | "select"
            | "table"
            | "then"
            | "to"
            | "true"
            | "union"
            | "unique"
            | "user"
            | "using"
            | "when"
            | "where"
            | "with"
    )
}

/// `schema.table`, quoted as needed.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

/// A SQL string literal.
pub fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// What verify-rls checks.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub modules: Vec<Module>,
    pub config: Config,
    /// Run the dynamic proof (rows of two tenants) after the static checks.
    pub dynamic: bool,
}

/// Verify the database at `url` (a superuser's, or the owner's for the
/// static checks). Everything runs in one transaction that is rolled back.
pub fn verify(url: &str, options: &VerifyOptions) -> Result<Report> {
    let started = std::time::Instant::now();
    let mut db = db::Db::connect(url)?;
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
        let catalog = catalog::Catalog::load(&mut db, &options.modules)?;
        verify_static::run(&mut db, &catalog, &options.modules, &options.config, &mut report)?;
        if options.dynamic {
            verify_dynamic::run(&mut db, &catalog, &options.modules, &options.config, &mut report)?;
        }
        Ok(())
    })();
    let rolled_back = db.rollback();
    result?;
    rolled_back?;
    report.set_elapsed(started.elapsed());
    Ok(report)
}
