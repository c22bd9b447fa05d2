//! Reads the workspace's migrations (in order) and writes, for the guard
//! triggers rule, every trigger they leave on a table: `(schema.table,
//! trigger, CREATE TRIGGER statement)`. A later `DROP TRIGGER` removes one.
//! Dollar-quoted bodies and `--` comments are skipped, so a function body
//! never counts as a statement. It never touches anything but `OUT_DIR`.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut migrations: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path().join("up.sql"))
                .filter(|p| p.exists())
                .collect()
        })
        .unwrap_or_default();
    migrations.sort();
    let mut triggers: Vec<(String, String, String)> = Vec::new();
    for path in &migrations {
        println!("cargo:rerun-if-changed={}", path.display());
        let text = std::fs::read_to_string(path).expect("a readable migration");
        for statement in statements(&text) {
            let words: Vec<&str> = statement.split_whitespace().collect();
            let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
            let on = |from: usize| {
                upper[from..]
                    .iter()
                    .position(|w| w == "ON")
                    .and_then(|i| words.get(from + i + 1))
                    .map(|t| t.to_ascii_lowercase())
            };
            let starts =
                |prefix: &[&str]| upper.len() > prefix.len() && upper.iter().zip(prefix).all(|(a, b)| a == b);
            let name_at = if starts(&["CREATE", "TRIGGER"]) {
                Some(2)
            } else if starts(&["CREATE", "OR", "REPLACE", "TRIGGER"]) {
                Some(4)
            } else if starts(&["CREATE", "CONSTRAINT", "TRIGGER"]) {
                Some(3)
            } else {
                None
            };
            if let Some(i) = name_at {
                let name = words[i].to_ascii_lowercase();
                let Some(table) = on(i + 1) else { continue };
                triggers.retain(|(t, n, _)| !(t == &table && n == &name));
                triggers.push((table, name, words.join(" ")));
            } else if starts(&["DROP", "TRIGGER"]) {
                let i = if upper.get(2).map(String::as_str) == Some("IF") {
                    4
                } else {
                    2
                };
                let Some(name) = words.get(i).map(|w| w.to_ascii_lowercase()) else {
                    continue;
                };
                let Some(table) = on(i + 1) else { continue };
                triggers.retain(|(t, n, _)| !(t == &table && n == &name));
            }
        }
    }
    let mut out =
        String::from("/// Every trigger the migrations leave: (schema.table, name, CREATE TRIGGER …).\n");
    out.push_str("pub(crate) const MIGRATION_TRIGGERS: &[(&str, &str, &str)] = &[\n");
    for (table, name, sql) in &triggers {
        writeln!(out, "    ({table:?}, {name:?}, {sql:?}),").unwrap();
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("migration_triggers.rs");
    std::fs::write(dest, out).unwrap();
}

/// The statements of `sql`, without comments and dollar-quoted bodies.
fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut rest = sql;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("--") {
            rest = rest.find('\n').map_or("", |i| &rest[i..]);
        } else if c == '$' {
            let tag_len = rest[1..]
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                .map(|i| i + 1);
            match tag_len {
                Some(n) if rest[n..].starts_with('$') => {
                    let tag = &rest[..=n];
                    let body = &rest[tag.len()..];
                    rest = body.find(tag).map_or("", |i| &body[i + tag.len()..]);
                    current.push_str(" $body$ ");
                }
                _ => {
                    current.push(c);
                    rest = &rest[1..];
                }
            }
        } else if c == '\'' {
            let end = rest[1..].find('\'').map_or(rest.len(), |i| i + 2);
            current.push_str(&rest[..end]);
            rest = &rest[end..];
        } else if c == ';' {
            out.push(std::mem::take(&mut current));
            rest = &rest[1..];
        } else {
            current.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out.push(current);
    out
}
