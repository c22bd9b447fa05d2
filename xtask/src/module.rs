//! `cargo xtask module new <name>`: add a module to the workspace.
//!
//! A module is one `[print_schema.<name>]` section of diesel.toml plus what
//! that section implies: schemas `<name>` and `<name>_app`, roles
//! `<name>_owner` (NOLOGIN), `<name>_app` and `<name>_worker`, the tenant
//! helper and trigger functions, and the generated `crates/<name>-schema`
//! crate. This module owns scaffolding them from the templates next to it
//! (`module/*.sql`, made from the `attestor` module's migrations; the tenant
//! helper's body is the canonical text of `attestor-rls`, so the
//! tenant-helper rule holds by construction), in this order: validate the
//! name, write the two migrations after the last existing one, the
//! diesel.toml section, the crate, the workspace member and dependency
//! entries, and bring Cargo.lock up to date.
//!
//! It must never overwrite anything: an invalid or taken name is a typed
//! [`ModuleError`] and the workspace is left untouched. It writes no tables
//! and no policies (a module's tables come in its own migrations, its
//! policies from `cargo xtask gen-rls`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Why `module new` refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// The name is not usable as a module name.
    #[error("invalid module name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    /// The module, or one of the names it derives, exists already.
    #[error("module {name:?} cannot be added: {what} already exists")]
    Exists { name: String, what: String },
    /// A workspace file is not as `module new` expects it.
    #[error("{}: {reason}", path.display())]
    Workspace { path: PathBuf, reason: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// Cargo could not update Cargo.lock for the new member.
    #[error("updating Cargo.lock: {0}")]
    Cargo(String),
}

type Result<T> = std::result::Result<T, ModuleError>;

/// Longest module name: `<name>_worker` must fit PostgreSQL's 63-byte names.
pub const MAX_NAME_LEN: usize = 63 - "_worker".len();

const ROLES_UP: &str = include_str!("module/roles_and_schemas.up.sql");
const ROLES_DOWN: &str = include_str!("module/roles_and_schemas.down.sql");
const HELPERS_UP: &str = include_str!("module/tenant_helpers.up.sql");
const HELPERS_DOWN: &str = include_str!("module/tenant_helpers.down.sql");
const CRATE_TOML: &str = include_str!("module/schema_crate.Cargo.toml");
const CRATE_LIB: &str = include_str!("module/schema_crate.lib.rs");
/// The canonical tenant helper body and its slow path, as the tenant-helper
/// rule of attestor-rls compares them (written for module `attestor`).
const HELPER_BODY: &str = include_str!("../../crates/attestor-rls/src/require_current_tenant.sql");
const SLOW_PATH_BODY: &str = include_str!("../../crates/attestor-rls/src/tenant_context_error.plpgsql");

/// What `module new` wrote, relative to the workspace root.
#[derive(Debug, Clone)]
pub struct Scaffold {
    pub name: String,
    /// The two migration directories (roles and schemas, then helpers).
    pub migrations: [String; 2],
    pub files: Vec<PathBuf>,
}

/// Check that `name` can be a module name: a lowercase SQL identifier that
/// needs no quoting, short enough for its role names, not a system name.
pub fn validate_name(name: &str) -> Result<()> {
    let invalid = |reason: &str| {
        Err(ModuleError::InvalidName {
            name: name.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if name.is_empty() {
        return invalid("it is empty");
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return invalid("it must start with a lowercase ASCII letter");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return invalid("only lowercase ASCII letters, digits and `_` are allowed");
    }
    if name.ends_with('_') || name.contains("__") {
        return invalid("`_` separates words: no trailing or doubled `_`");
    }
    if name.len() > MAX_NAME_LEN {
        return invalid(&format!(
            "at most {MAX_NAME_LEN} characters, so that `{name}_worker` fits PostgreSQL's 63-byte names"
        ));
    }
    if name.starts_with("pg_") || matches!(name, "public" | "information_schema") {
        return invalid("PostgreSQL reserves this schema name");
    }
    if attestor_rls::ident(name) != name {
        return invalid("it is an SQL keyword, which would need quoting everywhere");
    }
    Ok(())
}

/// Render a template for module `name`.
fn render(template: &str, name: &str, migration: &str) -> String {
    let helper = HELPER_BODY
        .trim_end()
        .replace("attestor_app.", &format!("{name}_app."));
    template
        .replace("{{helper_body}}", &helper)
        .replace("{{slow_path_body}}", SLOW_PATH_BODY.trim_end())
        .replace("{{migration}}", migration)
        .replace("{{module}}", name)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| ModuleError::Io {
        path: path.to_owned(),
        source,
    })
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ModuleError::Io {
            path: dir.to_owned(),
            source,
        })?;
    }
    std::fs::write(path, text).map_err(|source| ModuleError::Io {
        path: path.to_owned(),
        source,
    })
}

/// The versions of the two migrations of a new module: the counter of the
/// last existing migration, plus one and plus two.
pub fn next_versions(migrations: &Path) -> Result<[String; 2]> {
    let mut names: Vec<String> = std::fs::read_dir(migrations)
        .map_err(|source| ModuleError::Io {
            path: migrations.to_owned(),
            source,
        })?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("up.sql").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let workspace = |reason: String| ModuleError::Workspace {
        path: migrations.to_owned(),
        reason,
    };
    let last = names
        .last()
        .ok_or_else(|| workspace("no migrations: the first module's migrations come first".into()))?;
    let version = last.split('_').next().unwrap_or_default();
    let (date, counter) = version
        .rsplit_once('-')
        .ok_or_else(|| workspace(format!("migration {last} is not named YYYY-MM-DD-NNNNNN_name")))?;
    let n: u64 = counter
        .parse()
        .map_err(|_| workspace(format!("migration {last} is not named YYYY-MM-DD-NNNNNN_name")))?;
    let width = counter.len();
    Ok([
        format!("{date}-{:0width$}", n + 1),
        format!("{date}-{:0width$}", n + 2),
    ])
}

/// Add module `name` to the workspace at `root`: see the module docs. On
/// any error before the first write nothing is changed; the checks come
/// first so that a refused name changes nothing.
pub fn new_module(root: &Path, name: &str) -> Result<Scaffold> {
    validate_name(name)?;
    let diesel_toml = root.join("diesel.toml");
    let cargo_toml = root.join("Cargo.toml");
    let migrations = root.join("migrations");
    let crate_dir = root.join("crates").join(format!("{name}-schema"));

    // Every name the module derives must be free.
    let diesel_text = read(&diesel_toml)?;
    let existing = attestor_rls::modules_from_diesel_toml(&diesel_text, &diesel_toml.display().to_string())
        .map_err(|e| ModuleError::Workspace {
        path: diesel_toml.clone(),
        reason: e.to_string(),
    })?;
    let new = attestor_rls::Module::new(name, name);
    let exists = |what: String| ModuleError::Exists {
        name: name.to_owned(),
        what,
    };
    for m in &existing {
        if m.key == name {
            return Err(exists(format!("[print_schema.{name}] in diesel.toml")));
        }
        if let Some(s) = new.schemas().iter().find(|s| m.schemas().contains(s)) {
            return Err(exists(format!("schema {s} (of module {})", m.key)));
        }
        let theirs = [m.owner_role(), m.app_role(), m.worker_role()];
        if let Some(r) = [new.owner_role(), new.app_role(), new.worker_role()]
            .iter()
            .find(|r| theirs.contains(r))
        {
            return Err(exists(format!("role {r} (of module {})", m.key)));
        }
    }
    if crate_dir.exists() {
        return Err(exists(format!("crates/{name}-schema")));
    }
    let cargo_text = read(&cargo_toml)?;
    let member = format!("\"crates/{name}-schema\"");
    if cargo_text.contains(&member) {
        return Err(exists(format!("workspace member {member}")));
    }
    let [v1, v2] = next_versions(&migrations)?;
    let m1 = format!("{v1}_{name}_roles_and_schemas");
    let m2 = format!("{v2}_{name}_tenant_helpers");
    let new_cargo = add_workspace_entries(&cargo_text, name).map_err(|reason| ModuleError::Workspace {
        path: cargo_toml.clone(),
        reason,
    })?;
    let new_diesel = add_diesel_section(&diesel_text, name);

    // The writes.
    let mut files = Vec::new();
    let mut put = |path: PathBuf, text: String| -> Result<()> {
        write(&path, &text)?;
        files.push(path.strip_prefix(root).unwrap_or(&path).to_owned());
        Ok(())
    };
    put(migrations.join(&m1).join("up.sql"), render(ROLES_UP, name, &m1))?;
    put(
        migrations.join(&m1).join("down.sql"),
        render(ROLES_DOWN, name, &m1),
    )?;
    put(migrations.join(&m2).join("up.sql"), render(HELPERS_UP, name, &m2))?;
    put(
        migrations.join(&m2).join("down.sql"),
        render(HELPERS_DOWN, name, &m2),
    )?;
    put(crate_dir.join("Cargo.toml"), render(CRATE_TOML, name, ""))?;
    put(crate_dir.join("src/lib.rs"), render(CRATE_LIB, name, ""))?;
    // Replaced by `cargo xtask schema` with print-schema's output.
    put(
        crate_dir.join("src/schema.rs"),
        format!("// @generated automatically by Diesel CLI.\n\npub mod {name} {{}}\n"),
    )?;
    put(diesel_toml, new_diesel)?;
    put(cargo_toml, new_cargo)?;
    update_lockfile(root)?;
    Ok(Scaffold {
        name: name.to_owned(),
        migrations: [m1, m2],
        files,
    })
}

/// The `[print_schema.<name>]` section, placed after the last module section.
fn add_diesel_section(text: &str, name: &str) -> String {
    let section = format!(
        "[print_schema.{name}]\nschema = \"{name}\"\nfile = \"crates/{name}-schema/src/schema.rs\"\nwith_docs = false\n\n"
    );
    match text.find("\n[migrations_directory]") {
        Some(i) => format!("{}\n{section}{}", &text[..i], &text[i + 1..]),
        None => format!("{}\n\n{section}", text.trim_end()),
    }
}

/// Cargo.toml with the crate as a workspace member (after the last
/// `crates/…` member) and as a workspace dependency (after the last
/// in-workspace path dependency).
fn add_workspace_entries(text: &str, name: &str) -> std::result::Result<String, String> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let member_at = lines
        .iter()
        .rposition(|l| l.trim_start().starts_with("\"crates/"))
        .ok_or("no `\"crates/…\"` line in [workspace] members")?;
    let indent: String = lines[member_at]
        .chars()
        .take_while(|c| c.is_whitespace())
        .collect();
    lines.insert(member_at + 1, format!("{indent}\"crates/{name}-schema\","));
    let dep_at = lines
        .iter()
        .rposition(|l| l.contains("= { path = \"crates/"))
        .ok_or("no in-workspace path dependency in [workspace.dependencies]")?;
    lines.insert(
        dep_at + 1,
        format!("{name}-schema = {{ path = \"crates/{name}-schema\" }}"),
    );
    Ok(lines.join("\n") + "\n")
}

/// Let cargo record the new member in Cargo.lock and nothing else
/// (`update --workspace`, offline: the member adds no dependency the
/// lockfile lacks).
fn update_lockfile(root: &Path) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root)
        .args(["update", "--workspace", "--offline"])
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .output()
        .map_err(|e| ModuleError::Cargo(e.to_string()))?;
    if !out.status.success() {
        return Err(ModuleError::Cargo(
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        for ok in ["scanner", "sbom_index", "m2"] {
            validate_name(ok).unwrap();
        }
        for bad in [
            "", "Scanner", "2fa", "scan-ner", "scan ner", "scanner_", "a__b", "pg_x", "public", "select",
            "user",
        ] {
            assert!(
                matches!(validate_name(bad), Err(ModuleError::InvalidName { .. })),
                "{bad:?} must be refused"
            );
        }
        assert!(validate_name(&"a".repeat(MAX_NAME_LEN)).is_ok());
        assert!(validate_name(&"a".repeat(MAX_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn the_templates_render_for_attestor_as_its_migrations_have_them() {
        // Rendered for `attestor`, the role and schema statements are the
        // attestor module's own first migration's, line for line.
        let root = crate::util::root();
        let first = read(&root.join("migrations/2026-11-28-000001_roles_and_schemas/up.sql")).unwrap();
        let rendered = render(ROLES_UP, "attestor", "2026-11-28-000001_roles_and_schemas");
        let statements = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| !l.trim_start().starts_with("--") && !l.trim().is_empty())
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(statements(&rendered), statements(&first));
        // The helpers carry the canonical bodies, pointed at the module's schema.
        let helpers = render(HELPERS_UP, "scanner", "x");
        assert!(
            helpers.contains("ELSE scanner_app.tenant_context_error(current_setting('app.tenant_id', true))")
        );
        assert!(helpers.contains(SLOW_PATH_BODY.trim_end()));
        assert!(
            !helpers.contains("attestor_"),
            "no attestor role or schema: {helpers}"
        );
        assert!(!helpers.contains("{{"), "every placeholder is filled");
    }

    #[test]
    fn workspace_entries_go_after_the_last_crate() {
        let cargo = "[workspace]\nmembers = [\n    \"crates/a\",\n    \"tests\",\n]\n\n[workspace.dependencies]\na = { path = \"crates/a\" }\nx = \"1\"\n";
        let out = add_workspace_entries(cargo, "scanner").unwrap();
        assert!(out.contains("    \"crates/a\",\n    \"crates/scanner-schema\",\n    \"tests\","));
        assert!(out.contains(
            "a = { path = \"crates/a\" }\nscanner-schema = { path = \"crates/scanner-schema\" }\nx"
        ));
        let diesel = "[print_schema.a]\nschema = \"a\"\n\n[migrations_directory]\ndir = \"migrations\"\n";
        let out = add_diesel_section(diesel, "scanner");
        assert!(
            out.contains("schema = \"a\"\n\n[print_schema.scanner]\n"),
            "{out}"
        );
        assert!(
            out.ends_with("with_docs = false\n\n[migrations_directory]\ndir = \"migrations\"\n"),
            "{out}"
        );
        toml::from_str::<toml::Value>(&out).unwrap();
    }
}
