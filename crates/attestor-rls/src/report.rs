//! Findings and how they are shown: the human report (grouped by rule, with
//! the rule's name, each finding with its fix) and the JSON document.
//!
//! It owns presentation and the bookkeeping of a run (what was examined,
//! what was found, what rls.toml accepted, which probes passed or could not
//! run); it must never decide what is a finding. Rule names and summaries
//! come from the registry (`crate::rules`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use crate::config::Config;
use crate::rules;

/// One problem, where it is, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule's or probe's stable id (`TI001`, `TD003`).
    pub rule: &'static str,
    /// `schema.table`, `role name`, `schema.function(args)`, …
    pub object: String,
    pub message: String,
    pub fix: String,
}

/// A finding that rls.toml accepts, with the reviewed reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Accepted {
    pub rule: &'static str,
    pub object: String,
    pub message: String,
    pub reason: String,
}

/// A probe (or rule) that could not run, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotRun {
    pub rule: &'static str,
    pub object: String,
    pub reason: String,
}

/// The result of one verify run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub database: String,
    pub modules: Vec<String>,
    /// Objects examined, per rule id (so the report can say "ok").
    pub examined: BTreeMap<String, BTreeSet<&'static str>>,
    pub findings: Vec<Finding>,
    pub accepted: Vec<Accepted>,
    pub not_run: Vec<NotRun>,
    /// Dynamic probes that ran and passed, per table (probe ids).
    pub proofs: BTreeMap<String, Vec<&'static str>>,
    /// How each session of the proof was opened (`attestor_app: login session`).
    pub sessions: Vec<String>,
    pub elapsed_ms: u128,
}

/// The overall answer, and the exit status the front ends give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// No findings and every probe ran: exit 0.
    Clean,
    /// At least one finding: exit 1.
    Findings,
    /// No findings, but some probes could not run (listed): exit 3.
    Incomplete,
}

impl Verdict {
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Clean => 0,
            Verdict::Findings => 1,
            Verdict::Incomplete => 3,
        }
    }
}

impl Report {
    pub fn examine(&mut self, object: impl Into<String>, rule: &'static str) {
        self.examined.entry(object.into()).or_default().insert(rule);
    }

    /// File a finding, or an accepted one when `config` allows it.
    pub fn add(&mut self, config: &Config, rule: &'static str, object: String, message: String, fix: String) {
        self.examine(object.clone(), rule);
        if let Some(a) = config.allowed(rule, &object) {
            let acc = Accepted {
                rule,
                object,
                message,
                reason: a.reason.clone(),
            };
            if !self.accepted.contains(&acc) {
                self.accepted.push(acc);
            }
            return;
        }
        let f = Finding {
            rule,
            object,
            message,
            fix,
        };
        if !self.findings.contains(&f) {
            self.findings.push(f);
        }
    }

    /// A probe that could not run on `object`.
    pub fn not_run(&mut self, rule: &'static str, object: impl Into<String>, reason: impl Into<String>) {
        let n = NotRun {
            rule,
            object: object.into(),
            reason: reason.into(),
        };
        if !self.not_run.contains(&n) {
            self.not_run.push(n);
        }
    }

    pub fn set_elapsed(&mut self, d: Duration) {
        self.elapsed_ms = d.as_millis();
    }

    pub fn is_clean(&self) -> bool {
        self.verdict() == Verdict::Clean
    }

    pub fn verdict(&self) -> Verdict {
        if !self.findings.is_empty() {
            Verdict::Findings
        } else if !self.not_run.is_empty() {
            Verdict::Incomplete
        } else {
            Verdict::Clean
        }
    }

    /// One line per finding (`[TI004] object: message`) and per probe that
    /// could not run, for test failures and logs.
    pub fn listing(&self) -> String {
        self.findings
            .iter()
            .map(|f| format!("[{}] {}: {}", f.rule, f.object, f.message))
            .chain(
                self.not_run
                    .iter()
                    .map(|n| format!("[{} not run] {}: {}", n.rule, n.object, n.reason)),
            )
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Findings of one rule.
    pub fn findings_of<'a>(&'a self, rule: &'a str) -> impl Iterator<Item = &'a Finding> + 'a {
        self.findings.iter().filter(move |f| f.rule == rule)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&crate::report::json::document(self))
            .expect("a report always serializes")
    }

    /// The human report: one section per rule that examined something
    /// (`ok` and the count, or each finding with its fix), then the verdict.
    pub fn to_human(&self) -> String {
        let mut out = format!(
            "verify-rls: database {} (modules: {})\n",
            self.database,
            self.modules.join(", ")
        );
        for s in &self.sessions {
            out.push_str(&format!("  session {s}\n"));
        }
        out.push('\n');
        let mut examined: BTreeMap<&str, usize> = BTreeMap::new();
        for rules in self.examined.values() {
            for r in rules {
                *examined.entry(r).or_default() += 1;
            }
        }
        let width = rules::ALL.iter().map(|r| r.name.len()).max().unwrap_or(10);
        for rule in rules::ALL {
            let findings: Vec<&Finding> = self.findings_of(rule.id).collect();
            let not_run: Vec<&NotRun> = self.not_run.iter().filter(|n| n.rule == rule.id).collect();
            let accepted = self.accepted.iter().filter(|a| a.rule == rule.id).count();
            let n = examined.get(rule.id).copied().unwrap_or(0);
            if n == 0 && findings.is_empty() && not_run.is_empty() {
                continue;
            }
            let status = if !findings.is_empty() {
                format!("FAIL {} finding(s)", findings.len())
            } else if !not_run.is_empty() {
                format!("INCOMPLETE {} not run", not_run.len())
            } else {
                "ok".to_owned()
            };
            out.push_str(&format!(
                "{} {:width$}  {:<20} {} object(s){}  {}\n",
                rule.id,
                rule.name,
                status,
                n,
                if accepted > 0 {
                    format!(", {accepted} accepted")
                } else {
                    String::new()
                },
                rule.summary,
            ));
            let mut sorted = findings.clone();
            sorted.sort_by(|a, b| a.object.cmp(&b.object));
            for f in sorted {
                out.push_str(&format!(
                    "    {}: {}\n        fix: {}\n",
                    f.object, f.message, f.fix
                ));
            }
            for n in not_run {
                out.push_str(&format!("    {}: not run: {}\n", n.object, n.reason));
            }
        }
        if !self.accepted.is_empty() {
            out.push_str("\naccepted by rls.toml:\n");
            for a in &self.accepted {
                out.push_str(&format!(
                    "  {} {}: {} (reason: {})\n",
                    a.rule, a.object, a.message, a.reason
                ));
            }
        }
        let probes: usize = self.proofs.values().map(Vec::len).sum();
        match self.verdict() {
            Verdict::Clean => out.push_str(&format!(
                "\nclean: 0 findings ({} objects, {} tables proven isolated with {} probes) in {} ms\n",
                self.examined.len(),
                self.proofs.keys().filter(|k| !k.starts_with("role ")).count(),
                probes,
                self.elapsed_ms
            )),
            Verdict::Findings => out.push_str(&format!(
                "\n{} finding(s){} in {} ms (`attestor-rls explain <id>` tells what a rule protects against)\n",
                self.findings.len(),
                if self.not_run.is_empty() {
                    String::new()
                } else {
                    format!(", {} probe(s) not run", self.not_run.len())
                },
                self.elapsed_ms
            )),
            Verdict::Incomplete => out.push_str(&format!(
                "\nincomplete: 0 findings, but {} probe(s) could not run (above); isolation is NOT proven for them ({} ms)\n",
                self.not_run.len(),
                self.elapsed_ms
            )),
        }
        out
    }
}

pub mod json;
pub mod sarif;

/// The text `attestor-rls explain <id>` prints for `rule`.
pub fn explain(rule: &rules::Rule) -> String {
    let mut out = format!(
        "{} {} ({})\n\n{}\n\n{}\n\nFix: {}\n",
        rule.id,
        rule.name,
        if rule.is_probe() {
            "dynamic probe"
        } else {
            "static rule"
        },
        rule.summary,
        rule.doc_text(),
        rule.fix
    );
    if let Some(n) = rule.needs {
        out.push_str(&format!("Needs: {n}\n"));
    }
    out
}

/// Every rule and probe as the Markdown of `docs/rls-rules.md` (a test keeps
/// that file equal to this; `attestor-rls rules --markdown` prints it).
pub fn rules_markdown() -> String {
    let mut out = String::from(
        "# Tenant-isolation rules\n\n\
         Generated by `attestor-rls rules --markdown` from the rule registry\n\
         (`crates/attestor-rls/src/rules/`); a test fails when this file is stale.\n\
         `attestor-rls explain <id>` prints one entry. Static rules (`TI…`) read the\n\
         catalog; dynamic probes (`TD…`) run with rows of two tenants as the login roles.\n\
         An `[[allow]]` in rls.toml names a rule by its id.\n",
    );
    for r in rules::ALL {
        out.push_str(&format!(
            "\n## {} `{}` ({})\n\n{}\n\n{}\n\n**Fix:** {}\n",
            r.id,
            r.name,
            if r.is_probe() {
                "dynamic probe"
            } else {
                "static rule"
            },
            r.summary,
            r.doc_text(),
            r.fix
        ));
        if let Some(n) = r.needs {
            out.push_str(&format!("\n**Needs:** {n}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_rules_document_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/rls-rules.md");
        let want = super::rules_markdown();
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "{} is stale: run `cargo run -p attestor-rls -- rules --markdown > docs/rls-rules.md`",
            path.display()
        );
    }
}
