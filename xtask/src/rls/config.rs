//! `rls.toml`: the one small, reviewed file of exceptions to the tenant
//! isolation rules.
//!
//! It owns parsing and validating that file. Every exception carries a
//! `reason`; an exception without one is refused. It must never grow rules
//! of its own: the rules live in `generate` and `verify_static`, this file
//! only names the reviewed deviations from them.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The parsed exceptions file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Extra policies gen-rls writes and verify-rls accepts.
    #[serde(default)]
    pub policy: Vec<PolicyException>,
    /// Tables of a module schema that are deliberately not tenant-scoped.
    #[serde(default)]
    pub global_table: Vec<GlobalTable>,
    /// Objects allowed to break one of the check-7 rules.
    #[serde(default)]
    pub allow: Vec<Allow>,
}

/// A declared, extra policy on a tenant table.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PolicyException {
    pub module: String,
    pub table: String,
    pub name: String,
    /// ALL, SELECT, INSERT, UPDATE or DELETE.
    pub command: String,
    /// `app`, `worker`, `owner` (prefixed with the module) or a full role name.
    pub role: String,
    #[serde(default = "yes")]
    pub permissive: bool,
    pub using: Option<String>,
    pub with_check: Option<String>,
    pub reason: String,
}

fn yes() -> bool {
    true
}

/// A table in a module schema without `tenant_id`, on purpose.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalTable {
    pub module: String,
    pub table: String,
    pub reason: String,
}

/// An object allowed to break one rule of check 7.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allow {
    /// One of `security-definer`, `leakproof`, `search-path`, `view-security-invoker`,
    /// `materialized-view`, `security-definer-trigger`.
    pub rule: String,
    /// `schema.name` of the view or function (functions without arguments list).
    pub object: String,
    pub reason: String,
}

const RULES: &[&str] = &[
    "security-definer",
    "leakproof",
    "search-path",
    "view-security-invoker",
    "materialized-view",
    "security-definer-trigger",
];

impl Config {
    /// Read and validate `path`; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Config::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parse and validate the text of an exceptions file.
    pub fn parse(text: &str) -> Result<Config> {
        let config: Config = toml::from_str(text).context("parsing the RLS exceptions")?;
        for p in &config.policy {
            if p.reason.trim().is_empty() {
                bail!("policy exception {} has no reason", p.name);
            }
            let cmd = p.command.to_ascii_uppercase();
            if !["ALL", "SELECT", "INSERT", "UPDATE", "DELETE"].contains(&cmd.as_str()) {
                bail!("policy exception {}: unknown command {}", p.name, p.command);
            }
            match cmd.as_str() {
                "SELECT" | "DELETE" if p.with_check.is_some() => {
                    bail!("policy exception {}: {cmd} policies take no WITH CHECK", p.name)
                }
                "INSERT" if p.using.is_some() => {
                    bail!("policy exception {}: INSERT policies take no USING", p.name)
                }
                _ => {}
            }
            if p.name == super::isolation_policy_name(&p.table) {
                bail!("policy exception {} reuses the generated policy's name", p.name);
            }
        }
        for g in &config.global_table {
            if g.reason.trim().is_empty() {
                bail!("global table {} has no reason", g.table);
            }
        }
        for a in &config.allow {
            if !RULES.contains(&a.rule.as_str()) {
                bail!(
                    "allow {}: unknown rule {} (one of {})",
                    a.object,
                    a.rule,
                    RULES.join(", ")
                );
            }
            if a.reason.trim().is_empty() {
                bail!("allow {} has no reason", a.object);
            }
        }
        Ok(config)
    }

    /// The declared policies on `module.table`, sorted by name.
    pub fn policies_for(&self, module: &str, table: &str) -> Vec<&PolicyException> {
        let mut v: Vec<_> = self
            .policy
            .iter()
            .filter(|p| p.module == module && p.table == table)
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn is_global(&self, module: &str, table: &str) -> bool {
        self.global_table
            .iter()
            .any(|g| g.module == module && g.table == table)
    }

    pub fn allows(&self, rule: &str, object: &str) -> bool {
        self.allow.iter().any(|a| a.rule == rule && a.object == object)
    }
}

/// The workspace's exceptions file.
pub fn workspace_config_path() -> std::path::PathBuf {
    crate::util::root().join("rls.toml")
}
