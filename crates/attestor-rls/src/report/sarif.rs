//! SARIF 2.1.0 output, for code-scanning dashboards: every rule and probe of
//! the registry as a `reportingDescriptor` (its summary, doc and fix as help
//! text), every finding as a `result` (rule id, level `error`, the object as
//! a logical location and, where it can be found, the migration that created
//! the object as a physical location), probes that could not run as
//! `warning` results, and accepted findings as suppressed results with the
//! reviewed reason. It owns that mapping only; a test validates the output
//! against the SARIF 2.1.0 JSON schema.

use std::path::Path;

use serde_json::{json, Value};

use super::Report;
use crate::rules;

/// The document as text.
pub fn to_string(r: &Report, migrations: Option<&Path>) -> String {
    serde_json::to_string_pretty(&document(r, migrations)).expect("SARIF always serializes")
}

/// The SARIF log of one run. `migrations` is the directory whose `up.sql`
/// files are searched for the statement that created each object.
pub fn document(r: &Report, migrations: Option<&Path>) -> Value {
    let sources = migrations.map(read_migrations).unwrap_or_default();
    let index = |id: &str| rules::ALL.iter().position(|x| x.id == id).unwrap_or(0);
    let location = |object: &str| {
        let mut loc = json!({
            "logicalLocations": [{
                "fullyQualifiedName": object,
                "kind": kind_of(object),
            }]
        });
        if let Some((uri, line)) = created_in(&sources, object) {
            loc["physicalLocation"] = json!({
                "artifactLocation": {"uri": uri},
                "region": {"startLine": line},
            });
        }
        loc
    };
    let mut results: Vec<Value> = Vec::new();
    for f in &r.findings {
        results.push(json!({
            "ruleId": f.rule,
            "ruleIndex": index(f.rule),
            "level": "error",
            "message": {"text": format!("{}: {}", f.object, f.message)},
            "locations": [location(&f.object)],
            "properties": {"fix": f.fix},
        }));
    }
    for n in &r.not_run {
        results.push(json!({
            "ruleId": n.rule,
            "ruleIndex": index(n.rule),
            "level": "warning",
            "message": {"text": format!("{}: not run, so isolation is not proven here: {}", n.object, n.reason)},
            "locations": [location(&n.object)],
        }));
    }
    for a in &r.accepted {
        results.push(json!({
            "ruleId": a.rule,
            "ruleIndex": index(a.rule),
            "level": "error",
            "message": {"text": format!("{}: {}", a.object, a.message)},
            "locations": [location(&a.object)],
            "suppressions": [{"kind": "external", "justification": a.reason}],
        }));
    }
    let descriptors: Vec<Value> = rules::ALL
        .iter()
        .map(|x| {
            let mut d = json!({
                "id": x.id,
                "name": x.name,
                "shortDescription": {"text": x.summary},
                "fullDescription": {"text": x.doc_text()},
                "help": {"text": format!("{}\n\nFix: {}", x.doc_text(), x.fix)},
                "defaultConfiguration": {"level": "error"},
                "properties": {"kind": if x.is_probe() { "probe" } else { "static" }},
            });
            if let Some(n) = x.needs {
                d["properties"]["needs"] = json!(n);
            }
            d
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "attestor-rls",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": descriptors,
            }},
            "invocations": [{"executionSuccessful": true}],
            "results": results,
            "properties": {"database": r.database, "verdict": r.verdict()},
        }]
    })
}

fn kind_of(object: &str) -> &'static str {
    if object.starts_with("role ") {
        "role"
    } else if object.starts_with("schema ") {
        "namespace"
    } else if object.contains('(') {
        "function"
    } else {
        "table"
    }
}

/// `(uri, text)` of every `up.sql`, in migration order.
fn read_migrations(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut dirs: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    dirs.sort();
    for d in dirs {
        let up = d.join("up.sql");
        if let Ok(text) = std::fs::read_to_string(&up) {
            let name = d
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push((format!("migrations/{name}/up.sql"), text));
        }
    }
    out
}

/// The first migration line that creates `object`, and its 1-based number.
fn created_in(sources: &[(String, String)], object: &str) -> Option<(String, usize)> {
    let (kinds, name): (&[&str], &str) = if let Some(s) = object.strip_prefix("schema ") {
        (&["SCHEMA"], s)
    } else if let Some(r) = object.strip_prefix("role ") {
        (&["ROLE"], r)
    } else if let Some((f, _)) = object.split_once('(') {
        (&["FUNCTION", "OR REPLACE FUNCTION"], f)
    } else {
        (&["TABLE", "VIEW", "MATERIALIZED VIEW"], object)
    };
    for (uri, text) in sources {
        for (i, line) in text.lines().enumerate() {
            let upper = line.trim_start();
            for k in kinds {
                let head = format!("CREATE {k} ");
                if let Some(rest) = upper.strip_prefix(&head) {
                    let rest = rest.strip_prefix("IF NOT EXISTS ").unwrap_or(rest);
                    let word: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.' || *c == '"')
                        .collect();
                    if word.replace('"', "") == name {
                        return Some((uri.clone(), i + 1));
                    }
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_found_where_they_are_created() {
        let sources = vec![(
            "migrations/x/up.sql".to_owned(),
            "-- c\nCREATE TABLE attestor.spines (\nCREATE OR REPLACE FUNCTION attestor_app.f(a int)\nCREATE SCHEMA attestor AUTHORIZATION o;\n"
                .to_owned(),
        )];
        assert_eq!(
            created_in(&sources, "attestor.spines"),
            Some(("migrations/x/up.sql".into(), 2))
        );
        assert_eq!(
            created_in(&sources, "attestor_app.f(a integer)").map(|x| x.1),
            Some(3)
        );
        assert_eq!(created_in(&sources, "schema attestor").map(|x| x.1), Some(4));
        assert_eq!(created_in(&sources, "attestor.nope"), None);
    }
}
