//! `cargo xtask schema`: the generated diesel schema files.
//!
//! For every `[print_schema.<module>]` section of `diesel.toml`, migrate a
//! scratch database, run the pinned `diesel print-schema --schema-key
//! <module>` and write (or, with `--check`, compare against) the section's
//! `file`. The pinned `diesel_cli` is installed into `.tools/` on first use.
//! This command never edits generated files by hand: fixes belong in the
//! section's `patch_file`, which `diesel print-schema` applies.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use attestor_testdb::Server;

use crate::util::{root, run_echoed, scratch_database_in, server};

/// The diesel_cli version the generated files are made with.
pub const DIESEL_CLI_VERSION: &str = "2.3.14";

#[derive(Debug, Deserialize)]
struct DieselToml {
    #[serde(default)]
    print_schema: BTreeMap<String, PrintSchema>,
}

#[derive(Debug, Deserialize)]
struct PrintSchema {
    file: PathBuf,
    schema: Option<String>,
}

/// The module sections of `diesel.toml`: key → (schema name, output file).
pub fn modules() -> Result<Vec<(String, String, PathBuf)>> {
    modules_in(&root())
}

/// The module sections of the diesel.toml of the workspace at `root`.
pub fn modules_in(root: &Path) -> Result<Vec<(String, String, PathBuf)>> {
    let path = root.join("diesel.toml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let parsed: DieselToml = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    if parsed.print_schema.is_empty() {
        bail!("diesel.toml has no [print_schema.<module>] section");
    }
    Ok(parsed
        .print_schema
        .into_iter()
        .map(|(key, s)| {
            let schema = s.schema.unwrap_or_else(|| key.clone());
            (key, schema, root.join(s.file))
        })
        .collect())
}

/// A diesel config holding only module `key`'s section, as the one
/// `[print_schema]` section and without its `file`, so that `diesel
/// print-schema` prints that module's schema alone to stdout and writes no
/// file (given the whole diesel.toml it prints every section and rewrites
/// their files, which would leave `--check` nothing to compare). Relative
/// paths are made absolute. The caller deletes the file.
fn section_config(root: &Path, key: &str) -> Result<PathBuf> {
    let path = root.join("diesel.toml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let parsed: toml::Table = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let mut section = parsed
        .get("print_schema")
        .and_then(|p| p.get(key))
        .and_then(|s| s.as_table())
        .cloned()
        .with_context(|| format!("diesel.toml has no [print_schema.{key}] table"))?;
    section.remove("file");
    if let Some(toml::Value::String(patch)) = section.get_mut("patch_file") {
        *patch = root.join(&*patch).display().to_string();
    }
    let mut one = toml::Table::new();
    one.insert("print_schema".into(), toml::Value::Table(section));
    let config =
        std::env::temp_dir().join(format!("attestor-print-schema-{key}-{}.toml", std::process::id()));
    std::fs::write(&config, toml::to_string(&one)?)
        .with_context(|| format!("writing {}", config.display()))?;
    Ok(config)
}

/// Path to the pinned `diesel` binary, installing it when missing.
pub fn diesel_cli() -> Result<PathBuf> {
    let tools = root().join(".tools");
    let bin = tools.join("bin").join("diesel");
    let version_ok = Command::new(&bin)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(DIESEL_CLI_VERSION))
        .unwrap_or(false);
    if !version_ok {
        eprintln!(
            "diesel_cli {DIESEL_CLI_VERSION} is not in .tools/: installing it there \
             (one time; needs libpq-dev, takes a few minutes)"
        );
        run_echoed(
            Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args([
                    "install",
                    "diesel_cli",
                    "--locked",
                    "--no-default-features",
                    "--features",
                    "postgres",
                ])
                .arg("--version")
                .arg(format!("={DIESEL_CLI_VERSION}"))
                .arg("--root")
                .arg(&tools),
        )?;
    }
    Ok(bin)
}

pub fn run(check: bool) -> Result<ExitCode> {
    run_in(&root(), &server()?, check)
}

/// `schema [--check]` for the workspace at `root`, on `server` (the pinned
/// diesel CLI is this checkout's).
pub fn run_in(root: &Path, server: &Server, check: bool) -> Result<ExitCode> {
    let diesel = diesel_cli()?;
    let db = scratch_database_in(server, "schema", root)?;
    let result = generate_all(&diesel, &server.admin(&db).url(), root, check);
    server.drop_database(&db)?;
    result
}

fn generate_all(diesel: &Path, url: &str, root: &Path, check: bool) -> Result<ExitCode> {
    let mut drifted = Vec::new();
    for (key, schema, file) in modules_in(root)? {
        let config = section_config(root, &key)?;
        let out = Command::new(diesel)
            .current_dir(root)
            .arg("print-schema")
            .arg("--config-file")
            .arg(&config)
            .arg("--database-url")
            .arg(url)
            .output()
            .context("running diesel print-schema");
        let _ = std::fs::remove_file(&config);
        let out = out?;
        if !out.status.success() {
            bail!(
                "diesel print-schema for `{key}` failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let generated = String::from_utf8(out.stdout).context("print-schema output is not UTF-8")?;
        let current = std::fs::read_to_string(&file).unwrap_or_default();
        let rel = file.strip_prefix(root).unwrap_or(&file).display().to_string();
        if generated == current {
            eprintln!("{rel}: up to date (schema `{schema}`)");
        } else if check {
            let fresh = std::env::temp_dir().join(format!("attestor-schema-{key}-{}.rs", std::process::id()));
            std::fs::write(&fresh, &generated)?;
            let diff = Command::new("diff").arg("-u").arg(&file).arg(&fresh).output();
            let _ = std::fs::remove_file(&fresh);
            eprintln!("{rel} is out of date with the migrations (schema `{schema}`):");
            match diff {
                Ok(d) => eprintln!("{}", String::from_utf8_lossy(&d.stdout)),
                Err(_) => eprintln!("(install `diff` to see the difference)"),
            }
            drifted.push(rel);
        } else {
            std::fs::write(&file, &generated).with_context(|| format!("writing {rel}"))?;
            eprintln!("{rel}: regenerated (schema `{schema}`)");
        }
    }
    if drifted.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("run `cargo xtask schema` to regenerate: {}", drifted.join(", "));
        Ok(ExitCode::from(1))
    }
}
