//! Tidy checks over the whole workspace's sources and docs:
//! - every Rust source file outside a `tests/` folder opens with a `//!`
//!   module doc saying what it owns (generated schema files excepted: their
//!   text belongs to `diesel print-schema`);
//! - nothing cites an issue number or a design document outside the
//!   repository: the code and the docs state each rule themselves;
//! - no migration from `DDL_AS_MIGRATOR_SINCE` on switches roles: its DDL
//!   runs as the migrator and hands what it creates to the owner role.

use std::path::{Path, PathBuf};

use attestor_rls::generate::{ddl_as_migrator, migration_dirs, DDL_AS_MIGRATOR_SINCE};
use xtask::util::root;

/// Folders never scanned: build output, installed tools, VCS metadata.
const SKIPPED: &[&str] = &["target", ".tools", ".git", "node_modules"];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !SKIPPED.contains(&name.as_str()) {
                files(&path, out);
            }
        } else {
            out.push(path);
        }
    }
}

fn workspace_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    files(&root(), &mut out);
    out
}

/// The files `diesel print-schema` writes (the `file` of each diesel.toml section).
fn generated_files() -> Vec<PathBuf> {
    let text = std::fs::read_to_string(root().join("diesel.toml")).unwrap();
    let toml: toml::Table = text.parse().unwrap();
    let mut out = Vec::new();
    if let Some(sections) = toml.get("print_schema").and_then(|v| v.as_table()) {
        for section in sections.values() {
            if let Some(file) = section.get("file").and_then(|f| f.as_str()) {
                out.push(root().join(file));
            }
        }
    }
    out
}

/// Citations of things that are not in the repository, with their line numbers.
fn outside_citations(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let lower = line.to_lowercase();
        let mut hit = lower.contains("design.md") || lower.contains("design §");
        for (i, _) in lower.match_indices("issue") {
            let after = &lower[i + "issue".len()..];
            let number = after.trim_start_matches([' ', '#']);
            let separated = number.len() < after.len();
            if separated && number.starts_with(|c: char| c.is_ascii_digit()) {
                hit = true;
            }
        }
        if hit {
            out.push((n + 1, line.trim().to_owned()));
        }
    }
    out
}

#[test]
fn citation_check_catches_what_it_must() {
    // Planted: each of these must be caught, and ordinary prose must not.
    // Spelt in pieces, so that a grep of the workspace for citations does
    // not find these planted ones.
    for cited in [
        concat!("see iss", "ue 3"),
        concat!("fixed in Iss", "ue #12."),
        concat!("as DES", "IGN §3 says"),
        concat!("(../shared/DES", "IGN.md)"),
    ] {
        assert_eq!(outside_citations(cited).len(), 1, "not caught: {cited}");
    }
    for prose in [
        "this issue's text",
        "RFC 6962 §2.1",
        "issues a warning",
        "the design of the guard",
    ] {
        assert!(outside_citations(prose).is_empty(), "false positive: {prose}");
    }
}

#[test]
fn nothing_cites_what_is_not_in_the_repository() {
    let this_file = root().join("xtask/tests/tidy.rs");
    let mut found = Vec::new();
    for path in workspace_files() {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !matches!(ext, "rs" | "md" | "sql" | "toml" | "plpgsql" | "sh") || path == this_file {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for (line, snippet) in outside_citations(&text) {
            found.push(format!("{}:{line}: {snippet}", path.display()));
        }
    }
    assert!(
        found.is_empty(),
        "state the rule instead of citing an issue or an outside document:\n{}",
        found.join("\n")
    );
}

#[test]
fn every_source_file_opens_with_its_module_doc() {
    let generated = generated_files();
    assert!(!generated.is_empty(), "diesel.toml names no generated file");
    let mut missing = Vec::new();
    let mut checked = 0;
    for path in workspace_files() {
        let in_tests = path
            .strip_prefix(root())
            .unwrap()
            .components()
            .any(|c| c.as_os_str() == "tests");
        if path.extension().and_then(|e| e.to_str()) != Some("rs") || in_tests || generated.contains(&path) {
            continue;
        }
        checked += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        if !text.trim_start().starts_with("//!") {
            missing.push(path.display().to_string());
        }
    }
    assert!(checked > 50, "only {checked} source files found");
    assert!(
        missing.is_empty(),
        "these files need a `//!` doc saying what they own and what they must never do:\n{}",
        missing.join("\n")
    );
}

/// Statements of `sql` that switch the session's role (`SET [LOCAL|SESSION]
/// ROLE`, `SET SESSION AUTHORIZATION`, or the same settings through
/// `set_config('role' | 'session_authorization', …)`), with their line
/// numbers; `--` comments are not statements.
fn role_switches(sql: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in sql.lines().enumerate() {
        let code = line.split("--").next().unwrap_or("");
        let words: Vec<String> = code
            .split(|c: char| c.is_whitespace() || c == ';')
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        let hit = words.windows(2).enumerate().any(|(i, w)| {
            if w[0] != "set" {
                return false;
            }
            match w[1].as_str() {
                "role" => true,
                "local" | "session" => matches!(
                    words.get(i + 2).map(String::as_str),
                    Some("role" | "authorization")
                ),
                _ => false,
            }
        });
        let squeezed: String = code.to_lowercase().split_whitespace().collect();
        let by_function = ["set_config('role'", "set_config('session_authorization'"]
            .iter()
            .any(|f| squeezed.contains(f));
        if hit || by_function {
            out.push((n + 1, line.trim().to_owned()));
        }
    }
    out
}

#[test]
fn role_switch_check_catches_what_it_must() {
    for switch in [
        "SET LOCAL ROLE attestor_owner;",
        "set role attestor_owner;",
        "  SET SESSION ROLE x; SELECT 1;",
        "SET SESSION AUTHORIZATION attestor_owner;",
        "SELECT 1; SET LOCAL ROLE NONE;",
        "SELECT set_config('role', 'attestor_owner', true);",
        "SELECT pg_catalog.set_config( 'session_authorization', 'x', false);",
    ] {
        assert_eq!(role_switches(switch).len(), 1, "not caught: {switch}");
    }
    for ok in [
        "-- runs without SET LOCAL ROLE attestor_owner",
        "ALTER FUNCTION attestor_app.f() OWNER TO attestor_owner;",
        "ALTER TABLE attestor.t SET (fillfactor = 50);",
        "ALTER ROLE attestor_app SET search_path = pg_catalog;",
        "SELECT set_config('app.tenant_id', 'x', true) AS setting;",
    ] {
        assert!(role_switches(ok).is_empty(), "false positive: {ok}");
    }
}

#[test]
fn migrations_from_the_cutoff_run_their_ddl_as_the_migrator() {
    let dirs = migration_dirs(&root().join("migrations")).unwrap();
    assert!(dirs.len() > 10, "only {} migrations found", dirs.len());
    let mut found = Vec::new();
    for dir in dirs.iter().filter(|d| ddl_as_migrator(&d.name)) {
        for file in ["up.sql", "down.sql"] {
            let path = dir.path.join(file);
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            for (line, snippet) in role_switches(&text) {
                found.push(format!("{}:{line}: {snippet}", path.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "a migration from version {DDL_AS_MIGRATOR_SINCE} on runs its DDL as the migrator (on a Citus \
         coordinator the NOLOGIN owner role cannot carry DDL to the workers): drop the role switch and hand \
         each object it creates to the owner with ALTER … OWNER TO <module>_owner:\n{}",
        found.join("\n")
    );
}
