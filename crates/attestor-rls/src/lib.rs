//! The tenant-isolation proof of the attestor schema, as a library: catalog
//! reading, policy generation (`generate`), the static rules (`rules`, one
//! module per rule with a stable id), the dynamic proof with rows of two
//! tenants (`dynamic`) and the reports (`report`: human, JSON, SARIF).
//! The `attestor-rls` binary and `cargo xtask verify-rls`/`gen-rls` are thin
//! front ends over it.
//!
//! This module owns the shared vocabulary: what a *module* is (a
//! `[print_schema.<module>]` key of `diesel.toml`, with roles
//! `<module>_owner/_app/_worker` and helper schema `<module>_app`), what a
//! *tenant table* is (a table with a `tenant_id` column in a module schema),
//! and the canonical policy names.
//!
//! It must never leave anything behind in a database it verifies: every
//! verify session runs in one transaction that is always rolled back.

pub mod catalog;
pub mod cli;
pub mod config;
pub mod db;
pub mod dynamic;
pub mod error;
pub mod fill;
pub mod generate;
pub mod isolation;
pub mod membership;
pub mod report;
pub mod rules;
pub mod verify;

use std::path::Path;

use serde::Deserialize;

pub use config::Config;
pub use error::{Error, Result};
pub use report::{Finding, Report};
pub use verify::{verify, verify_target, verify_targets, ModuleLogins, Target, Targets, VerifyOptions};

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
    /// The canonical tenant predicate of the module's isolation policies: a
    /// plain call of the STABLE, inlinable helper, no sub-select (Citus
    /// refuses sub-queries in the policies of distributed tables). Being
    /// STABLE and free of columns, the inlined helper is a pseudo-constant,
    /// so an index leading with `tenant_id` still takes it as its condition.
    pub fn tenant_predicate(&self) -> String {
        format!("tenant_id = {}.require_current_tenant()", self.helper_schema())
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

/// The workspace's diesel.toml, built into the binary: the modules of the
/// schema the embedded migrations create.
pub const EMBEDDED_DIESEL_TOML: &str = include_str!("../../../diesel.toml");

/// The modules of a diesel.toml text (`origin` names it in errors).
pub fn modules_from_diesel_toml(text: &str, origin: &str) -> Result<Vec<Module>> {
    #[derive(Deserialize)]
    struct DieselToml {
        #[serde(default)]
        print_schema: std::collections::BTreeMap<String, PrintSchema>,
    }
    #[derive(Deserialize)]
    struct PrintSchema {
        schema: Option<String>,
    }
    let parsed: DieselToml = toml::from_str(text).map_err(|e| Error::config(origin, e.to_string()))?;
    if parsed.print_schema.is_empty() {
        return Err(Error::config(origin, "no [print_schema.<module>] section"));
    }
    Ok(parsed
        .print_schema
        .into_iter()
        .map(|(key, s)| Module {
            schema: s.schema.unwrap_or_else(|| key.clone()),
            key,
        })
        .collect())
}

/// The modules of the diesel.toml at `path`.
pub fn modules_from_file(path: &Path) -> Result<Vec<Module>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    modules_from_diesel_toml(&text, &path.display().to_string())
}

/// The modules built into the binary ([`EMBEDDED_DIESEL_TOML`]).
pub fn embedded_modules() -> Vec<Module> {
    modules_from_diesel_toml(EMBEDDED_DIESEL_TOML, "diesel.toml")
        .expect("the workspace's diesel.toml names its modules")
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
