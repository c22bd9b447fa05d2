//! The JSON report: a documented, versioned shape (`format` and `version`
//! name it; a field is only ever added within one version). It owns that
//! shape and must never change a field's meaning without a new version.
//!
//! Version 1:
//!
//! ```text
//! {
//!   "format": "attestor-rls-report", "version": 1,
//!   "database": "...", "modules": ["attestor"],
//!   "verdict": "clean" | "findings" | "incomplete",   // exit 0 | 1 | 3
//!   "rules": [{"id", "name", "summary", "kind": "static"|"probe", "needs": null|"..."}],
//!   "findings": [{"rule", "rule_name", "object", "message", "fix"}],
//!   "accepted": [{"rule", "object", "message", "reason"}],      // allowed by rls.toml
//!   "not_run": [{"rule", "object", "reason"}],                 // probes that could not run
//!   "examined": {"<object>": ["TI001", ...]},
//!   "proofs": {"<schema.table>": ["TD002", ...]},              // probes that passed
//!   "sessions": ["..."], "elapsed_ms": 123
//! }
//! ```

use serde_json::{json, Value};

use super::Report;
use crate::rules::{self, Kind};

/// The `format` field.
pub const FORMAT: &str = "attestor-rls-report";
/// The `version` field.
pub const VERSION: u32 = 1;

/// The report as a version-1 JSON document.
pub fn document(r: &Report) -> Value {
    json!({
        "format": FORMAT,
        "version": VERSION,
        "database": r.database,
        "modules": r.modules,
        "verdict": r.verdict(),
        "rules": rules::ALL.iter().map(|x| json!({
            "id": x.id,
            "name": x.name,
            "summary": x.summary,
            "kind": match x.kind { Kind::Static(_) => "static", Kind::Probe => "probe" },
            "needs": x.needs,
        })).collect::<Vec<_>>(),
        "findings": r.findings.iter().map(|f| json!({
            "rule": f.rule,
            "rule_name": rules::get(f.rule).name,
            "object": f.object,
            "message": f.message,
            "fix": f.fix,
        })).collect::<Vec<_>>(),
        "accepted": r.accepted,
        "not_run": r.not_run,
        "examined": r.examined,
        "proofs": r.proofs,
        "sessions": r.sessions,
        "elapsed_ms": r.elapsed_ms,
    })
}
