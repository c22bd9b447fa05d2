//! `rls.toml`: the one small, reviewed file of exceptions to the tenant
//! isolation rules.
//!
//! It owns parsing and validating that file. Every exception carries a
//! `reason`; an exception without one is refused, and an `[[allow]]` names
//! its rule by the rule's stable id (`TI011`), checked against the rule
//! registry. It must never grow rules of its own: the rules live in
//! `generate` and `rules/`, this file only names the reviewed deviations
//! from them.

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

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
    /// Objects allowed to break one rule (named by its id).
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

/// An object allowed to break one rule: a reviewed exception.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Allow {
    /// The rule's stable id (`TI011`; `attestor-rls rules` lists them).
    pub rule: String,
    /// The object exactly as findings name it: `schema.table`,
    /// `schema.function(args)`, `role name`, `schema name`.
    pub object: String,
    pub reason: String,
}

/// The workspace's own exceptions file, built into the binary: the reviewed
/// exceptions of the schema the embedded migrations create.
pub const EMBEDDED: &str = include_str!("../../../rls.toml");

impl Config {
    /// Read and validate `path`; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(Error::io(path, e)),
        };
        Config::parse(&text).map_err(|e| match e {
            Error::Config { message, .. } => Error::config(path.display().to_string(), message),
            other => other,
        })
    }

    /// The exceptions built into the binary ([`EMBEDDED`]).
    pub fn embedded() -> Config {
        Config::parse(EMBEDDED).expect("the workspace's rls.toml is valid (a unit test checks)")
    }

    /// Parse and validate the text of an exceptions file.
    pub fn parse(text: &str) -> Result<Config> {
        let config: Config =
            toml::from_str(text).map_err(|e| Error::config("the RLS exceptions", e.to_string()))?;
        macro_rules! bail {
            ($($t:tt)*) => { return Err(Error::config("the RLS exceptions", format!($($t)*))) };
        }
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
            if p.name == crate::isolation_policy_name(&p.table) {
                bail!("policy exception {} reuses the generated policy's name", p.name);
            }
        }
        for g in &config.global_table {
            if g.reason.trim().is_empty() {
                bail!("global table {} has no reason", g.table);
            }
        }
        for a in &config.allow {
            if crate::rules::by_id(&a.rule).is_none() {
                bail!(
                    "allow {}: unknown rule {} (one of {}; `attestor-rls rules` lists them)",
                    a.object,
                    a.rule,
                    crate::rules::ALL
                        .iter()
                        .map(|r| r.id)
                        .collect::<Vec<_>>()
                        .join(", ")
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

    /// The reviewed exception for `rule` (an id) on `object`, if any.
    pub fn allowed(&self, rule: &str, object: &str) -> Option<&Allow> {
        self.allow.iter().find(|a| a.rule == rule && a.object == object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_exceptions_parse() {
        let c = Config::parse(EMBEDDED).unwrap();
        assert_eq!(c.policy.len(), 3);
    }

    #[test]
    fn an_allow_names_a_known_rule_id() {
        let bad = "[[allow]]\nrule = \"security-definer\"\nobject = \"a.f()\"\nreason = \"r\"\n";
        let e = Config::parse(bad).unwrap_err().to_string();
        assert!(e.contains("unknown rule security-definer"), "{e}");
        let good = bad.replace("security-definer", "TI011");
        assert_eq!(Config::parse(&good).unwrap().allow.len(), 1);
    }
}
