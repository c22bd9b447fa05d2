//! The rule registry: every static rule and every dynamic probe, each with a
//! stable id, a short name, its doc (what it protects against and why) and
//! the fix it suggests.
//!
//! Everything that names a rule reads it from here: `attestor-rls rules` and
//! `explain <id>`, the legend of the human report, the JSON report, SARIF's
//! `reportingDescriptor`s and the `[[allow]]` exceptions of rls.toml. A
//! static rule is one file of this directory holding one [`Rule`] named
//! `RULE` (declared with `rule!`, so its `///` doc comment is the text
//! `explain` prints) and its check; adding one is that file plus one line in
//! `registry!` below. Ids are never reused or renumbered. The dynamic
//! probes (`TD…`) are declared in [`probes`] and run by `crate::dynamic`.
//! A rule must never write to the database (its session is rolled back,
//! and the only writes, temporary objects to normalise SQL text, are undone
//! by savepoints).

use crate::catalog::Catalog;
use crate::config::Config;
use crate::db::Db;
use crate::error::Result;
use crate::report::Report;
use crate::Module;

/// What every rule file needs.
pub(crate) mod prelude {
    pub(crate) use super::{Ctx, Kind};
    pub(crate) use crate::error::Result;
    pub(crate) use crate::{ident, lit, qualified};
}

/// One rule or probe, as operators see it.
#[derive(Debug)]
pub struct Rule {
    /// Stable id: `TI…` for static (catalog) rules, `TD…` for dynamic probes.
    pub id: &'static str,
    /// Short kebab-case name.
    pub name: &'static str,
    /// One line: what must hold.
    pub summary: &'static str,
    /// What it protects against and why (the rule's doc comment).
    pub doc: &'static str,
    /// The fix it suggests, in general (each finding carries its own, as SQL where it can).
    pub fix: &'static str,
    /// What the verifying session needs beyond what any login role can read,
    /// if anything.
    pub needs: Option<&'static str>,
    pub kind: Kind,
}

/// How a rule runs.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A catalog check, run once per module.
    Static(fn(&mut Ctx<'_>) -> Result<()>),
    /// A probe of the dynamic proof (`crate::dynamic` runs it).
    Probe,
}

impl Rule {
    /// The doc comment as text (one leading space per line removed).
    pub fn doc_text(&self) -> String {
        let lines: Vec<&str> = self
            .doc
            .lines()
            .map(|l| l.strip_prefix(' ').unwrap_or(l))
            .collect();
        lines.join("\n").trim().to_owned()
    }

    pub fn is_probe(&self) -> bool {
        matches!(self.kind, Kind::Probe)
    }
}

/// Declare a [`Rule`] whose `doc` is its own `///` doc comment:
///
/// ```text
/// rule! {
///     /// What it protects against, and why.
///     pub static RULE = { id: "TI099", name: "…", summary: "…", fix: "…", needs: None, kind: Kind::Static(check) };
/// }
/// ```
#[macro_export]
macro_rules! rule {
    ($(#[doc = $doc:literal])* $vis:vis static $name:ident = { $($field:ident : $value:expr),* $(,)? };) => {
        $(#[doc = $doc])*
        $vis static $name: $crate::rules::Rule = $crate::rules::Rule {
            doc: concat!($($doc, "\n"),*),
            $($field: $value),*
        };
    };
}

/// `mod` for each rule file and the registry [`ALL`], in id order: static
/// rules, then the probes.
macro_rules! registry {
    (rules: [$($m:ident),* $(,)?], probes: [$($p:ident),* $(,)?] $(,)?) => {
        $(mod $m;)*
        pub mod probes;
        /// Every rule and probe, in id order.
        pub static ALL: &[&Rule] = &[$(&$m::RULE,)* $(&probes::$p,)*];
    };
}

registry! {
    rules: [
        ti001_rls_enabled,
        ti002_canonical_policies,
        ti003_wide_policy_grants,
        ti004_tenant_helper,
        ti005_table_conventions,
        ti006_runtime_role_attributes,
        ti007_runtime_role_privileges,
        ti008_public_grants,
        ti009_view_security_invoker,
        ti010_materialized_view,
        ti011_security_definer,
        ti012_security_definer_trigger,
        ti013_leakproof,
        ti014_search_path,
        ti015_partitions,
        ti016_global_tables,
        ti017_schema_isolation,
        ti018_citus_ready,
        ti019_runtime_role_reach,
        ti020_guard_triggers,
        ti021_setting_defaults,
        ti022_reached_role_powers,
        ti023_rls_egress,
        ti024_module_ownership,
        ti025_default_privileges,
        ti026_citus_distribution,
    ],
    probes: [
        TD001, TD002, TD003, TD004, TD005, TD006, TD007, TD008, TD009, TD010, TD011, TD012,
        TD013, TD014, TD015, TD016, TD017, TD018, TD019,
        TD020, TD021, TD022, TD023, TD024, TD025,
    ],
}

/// The rule or probe with this id.
pub fn by_id(id: &str) -> Option<&'static Rule> {
    ALL.iter().copied().find(|r| r.id.eq_ignore_ascii_case(id))
}

/// The rule or probe with this id, for ids the code itself names.
///
/// # Panics
/// When `id` is not registered (a programming error a unit test catches).
pub fn get(id: &str) -> &'static Rule {
    by_id(id).unwrap_or_else(|| panic!("rule {id} is not in the registry"))
}

/// What a static rule sees: one module, the catalog of every module's
/// schemas, the exceptions, and a session to ask the server. Findings go
/// through [`Ctx::finding`], which files them under the running rule (or
/// as accepted, when rls.toml allows them).
pub struct Ctx<'a> {
    pub db: &'a mut Db,
    pub catalog: &'a Catalog,
    /// The module being checked.
    pub module: &'a Module,
    /// Every module (for rules that compare modules).
    pub modules: &'a [Module],
    pub config: &'a Config,
    pub(crate) report: &'a mut Report,
    pub(crate) rule: &'static Rule,
}

impl Ctx<'_> {
    /// `object` was examined by this rule (an `ok` unless a finding follows).
    pub fn examine(&mut self, object: impl Into<String>) {
        self.report.examine(object, self.rule.id);
    }

    /// A finding of this rule on `object`, with its fix.
    pub fn finding(&mut self, object: impl Into<String>, message: impl Into<String>, fix: impl Into<String>) {
        self.report.add(
            self.config,
            self.rule.id,
            object.into(),
            message.into(),
            fix.into(),
        );
    }
}

/// Run every static rule for every module.
pub fn run_static(
    db: &mut Db,
    catalog: &Catalog,
    modules: &[Module],
    config: &Config,
    report: &mut Report,
) -> Result<()> {
    for m in modules {
        for rule in ALL {
            let Kind::Static(check) = rule.kind else {
                continue;
            };
            let mut cx = Ctx {
                db: &mut *db,
                catalog,
                module: m,
                modules,
                config,
                report: &mut *report,
                rule,
            };
            check(&mut cx)?;
        }
    }
    Ok(())
}

/// Shared by several rules: `ARRAY['a', 'b']::text[]`.
pub(crate) fn text_array(items: &[String]) -> String {
    format!(
        "ARRAY[{}]::text[]",
        items.iter().map(|s| crate::lit(s)).collect::<Vec<_>>().join(", ")
    )
}

/// Run `f` for every function of the module's schemas, examined, with its
/// key (`schema.name(args)`) and its quoted name for SQL.
pub(crate) fn for_each_function(
    cx: &mut Ctx<'_>,
    mut f: impl FnMut(&mut Ctx<'_>, &crate::catalog::Function, &str, &str),
) {
    let (catalog, schemas) = (cx.catalog, cx.module.schemas());
    for func in catalog.functions.iter().filter(|x| schemas.contains(&x.schema)) {
        let key = func.key();
        cx.examine(&key);
        let q = format!(
            "{}.{}({})",
            crate::ident(&func.schema),
            crate::ident(&func.name),
            func.args
        );
        f(cx, func, &key, &q);
    }
}

/// Schemas that are not the system's own (for privilege queries).
pub(crate) const NOT_SYSTEM_SCHEMA: &str =
    "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_ordered_and_documented() {
        let mut last = "";
        for r in ALL {
            let same_kind = last.get(..2) == r.id.get(..2);
            assert!(
                !same_kind || r.id > last,
                "{} after {last}: ids are unique and in order",
                r.id
            );
            last = r.id;
            assert!(
                r.id.starts_with(if r.is_probe() { "TD" } else { "TI" }),
                "{}",
                r.id
            );
            assert!(
                !r.name.is_empty() && !r.summary.is_empty() && !r.fix.is_empty(),
                "{}",
                r.id
            );
            assert!(
                r.doc_text().len() > 80,
                "{} needs a doc comment saying what it protects against",
                r.id
            );
            assert!(
                r.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{}",
                r.name
            );
        }
        let names: std::collections::BTreeSet<_> = ALL.iter().map(|r| r.name).collect();
        assert_eq!(names.len(), ALL.len(), "names are unique");
    }
}
