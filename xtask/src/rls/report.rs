//! Findings and how they are shown: the human table (object × check, then
//! every finding with its fix) and the JSON document for machines.
//!
//! It owns presentation only; it must never decide what is a finding.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

/// The checks of verify-rls (numbers as in issue 3; `Dyn` is the proof with rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Check {
    /// 1: RLS enabled and forced; tenant_id uuid NOT NULL.
    RlsEnabled,
    /// 2: exactly the canonical policy set.
    Policies,
    /// 3: the tenant helper require_current_tenant() is the canonical inlinable
    /// SQL function, and its slow path tenant_context_error(text) the canonical one.
    Helper,
    /// 4: columns, updated_at trigger, keys, FKs and indexes include tenant_id.
    Conventions,
    /// 5: runtime roles are unprivileged.
    Roles,
    /// 6: nothing granted to PUBLIC in module schemas.
    PublicGrants,
    /// 7: views, materialized views and functions that could leak.
    Leaks,
    /// 8: partitions carry RLS and the policy.
    Partitions,
    /// 9: tables without tenant_id must be declared global.
    GlobalTables,
    /// 10: a module's roles have nothing on another module's schemas.
    SchemaIsolation,
    /// 11: Citus readiness (distribution by tenant_id).
    Citus,
    /// Dynamic proof with rows of two tenants.
    Dynamic,
}

impl Check {
    pub const ALL: [Check; 12] = [
        Check::RlsEnabled,
        Check::Policies,
        Check::Helper,
        Check::Conventions,
        Check::Roles,
        Check::PublicGrants,
        Check::Leaks,
        Check::Partitions,
        Check::GlobalTables,
        Check::SchemaIsolation,
        Check::Citus,
        Check::Dynamic,
    ];

    /// Short id used in the table header and in JSON.
    pub fn id(self) -> &'static str {
        match self {
            Check::RlsEnabled => "1",
            Check::Policies => "2",
            Check::Helper => "3",
            Check::Conventions => "4",
            Check::Roles => "5",
            Check::PublicGrants => "6",
            Check::Leaks => "7",
            Check::Partitions => "8",
            Check::GlobalTables => "9",
            Check::SchemaIsolation => "10",
            Check::Citus => "11",
            Check::Dynamic => "dyn",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Check::RlsEnabled => "RLS enabled and forced, tenant_id uuid NOT NULL",
            Check::Policies => "canonical policy set",
            Check::Helper => "require_current_tenant() is the canonical inlinable helper",
            Check::Conventions => "columns, updated_at trigger, keys/FKs/indexes with tenant_id",
            Check::Roles => "runtime roles: no superuser/BYPASSRLS/ownership/dangerous privileges",
            Check::PublicGrants => "nothing granted to PUBLIC",
            Check::Leaks => "views, materialized views, SECURITY DEFINER/LEAKPROOF/search_path",
            Check::Partitions => "partitions have RLS and the policy",
            Check::GlobalTables => "tables without tenant_id are declared global",
            Check::SchemaIsolation => "no privileges on other modules' schemas",
            Check::Citus => "Citus readiness (distribution by tenant_id)",
            Check::Dynamic => "isolation proven with rows of two tenants",
        }
    }
}

/// One problem, where it is, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub check: Check,
    /// The check's number as in the human table (`1`…`11`, `dyn`).
    pub check_id: &'static str,
    /// `schema.table`, a role, `schema.function(args)`, …
    pub object: String,
    pub message: String,
    pub fix: String,
}

impl Finding {
    pub fn new(
        check: Check,
        object: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Finding {
            check,
            check_id: check.id(),
            object: object.into(),
            message: message.into(),
            fix: fix.into(),
        }
    }
}

/// The result of one verify-rls run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub database: String,
    pub modules: Vec<String>,
    /// Objects examined, per check (so the table can show "ok" cells).
    pub examined: BTreeMap<String, BTreeSet<Check>>,
    pub findings: Vec<Finding>,
    /// Dynamic probes that ran and passed, per table.
    pub proofs: BTreeMap<String, Vec<String>>,
    pub elapsed_ms: u128,
}

impl Report {
    pub fn examine(&mut self, object: impl Into<String>, check: Check) {
        self.examined.entry(object.into()).or_default().insert(check);
    }

    pub fn add(&mut self, f: Finding) {
        self.examine(f.object.clone(), f.check);
        if !self.findings.contains(&f) {
            self.findings.push(f);
        }
    }

    pub fn set_elapsed(&mut self, d: Duration) {
        self.elapsed_ms = d.as_millis();
    }

    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }

    /// The human report: a grid (object × check: `ok`, `FAIL`, blank = not
    /// applicable), then each finding with its fix.
    pub fn to_human(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "verify-rls: database {} (modules: {})\n\n",
            self.database,
            self.modules.join(", ")
        ));
        let failing: BTreeSet<(String, Check)> = self
            .findings
            .iter()
            .map(|f| (f.object.clone(), f.check))
            .collect();
        let width = self
            .examined
            .keys()
            .map(|k| k.chars().count())
            .max()
            .unwrap_or(6)
            .max(6);
        out.push_str(&format!("{:width$} ", "object"));
        for c in Check::ALL {
            out.push_str(&format!(" {:>4}", c.id()));
        }
        out.push('\n');
        for (object, checks) in &self.examined {
            out.push_str(&format!("{object:width$} "));
            for c in Check::ALL {
                let cell = if failing.contains(&(object.clone(), c)) {
                    "FAIL"
                } else if checks.contains(&c) {
                    "ok"
                } else {
                    ""
                };
                out.push_str(&format!(" {cell:>4}"));
            }
            out.push('\n');
        }
        out.push_str("\nchecks:\n");
        for c in Check::ALL {
            out.push_str(&format!("  {:>3}  {}\n", c.id(), c.title()));
        }
        if self.findings.is_empty() {
            let proofs: usize = self.proofs.values().map(Vec::len).sum();
            out.push_str(&format!(
                "\nclean: 0 findings ({} objects, {} tables proven isolated with {} probes) in {} ms\n",
                self.examined.len(),
                self.proofs.len(),
                proofs,
                self.elapsed_ms
            ));
        } else {
            out.push_str(&format!("\n{} finding(s):\n", self.findings.len()));
            let mut sorted = self.findings.clone();
            sorted.sort_by(|a, b| (a.check, &a.object).cmp(&(b.check, &b.object)));
            for f in &sorted {
                out.push_str(&format!(
                    "\n[{}] {}: {}\n    fix: {}\n",
                    f.check.id(),
                    f.object,
                    f.message,
                    f.fix
                ));
            }
            out.push_str(&format!("\n(in {} ms)\n", self.elapsed_ms));
        }
        out
    }
}
