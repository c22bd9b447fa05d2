//! Locating the PostgreSQL server binaries.
//!
//! Owns the search order (ATTESTOR_PG_BINDIR, PATH, `pg_config --bindir`,
//! `/usr/lib/postgresql/*/bin`, newest version first) and the one-sentence
//! error that says how to install the server. It never downloads anything.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Error, Result};

/// The programs a throwaway cluster needs.
pub const REQUIRED: [&str; 3] = ["initdb", "postgres", "pg_ctl"];

/// A directory that holds `initdb`, `postgres` and `pg_ctl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBinaries {
    dir: PathBuf,
}

/// Where to look; [`SearchPaths::from_env`] is the real machine, tests build
/// their own to prove the error message.
#[derive(Debug, Clone, Default)]
pub struct SearchPaths {
    /// An explicit override (`ATTESTOR_PG_BINDIR`).
    pub override_dir: Option<PathBuf>,
    /// The directories of `PATH`.
    pub path_dirs: Vec<PathBuf>,
    /// The `pg_config` program to ask for `--bindir`, if any.
    pub pg_config: Option<PathBuf>,
    /// Roots such as `/usr/lib/postgresql` holding `<version>/bin`.
    pub versioned_roots: Vec<PathBuf>,
}

impl SearchPaths {
    /// The search order used everywhere in the project.
    pub fn from_env() -> Self {
        let path_dirs: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        let pg_config = path_dirs
            .iter()
            .map(|d| d.join("pg_config"))
            .find(|p| p.is_file());
        SearchPaths {
            override_dir: std::env::var_os("ATTESTOR_PG_BINDIR").map(PathBuf::from),
            path_dirs,
            pg_config,
            versioned_roots: vec![
                PathBuf::from("/usr/lib/postgresql"),
                PathBuf::from("/usr/local/pgsql"),
                PathBuf::from("/opt/homebrew/opt"),
            ],
        }
    }
}

fn has_all(dir: &Path) -> bool {
    REQUIRED.iter().all(|b| dir.join(b).is_file())
}

/// `/usr/lib/postgresql/<version>/bin` directories, newest version first.
fn versioned_bins(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut found: Vec<(Vec<u64>, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_owned();
            let version: Vec<u64> = name
                .trim_start_matches("postgresql@")
                .split('.')
                .filter_map(|s| s.parse().ok())
                .collect();
            Some((version, p.join("bin")))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found.into_iter().map(|(_, p)| p).collect()
}

impl PgBinaries {
    /// Finds the binaries on this machine.
    pub fn find() -> Result<Self> {
        Self::find_in(&SearchPaths::from_env())
    }

    /// Finds the binaries in the given places, in order.
    pub fn find_in(paths: &SearchPaths) -> Result<Self> {
        let mut searched = Vec::new();
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(dir) = &paths.override_dir {
            candidates.push(dir.clone());
        }
        candidates.extend(paths.path_dirs.iter().cloned());
        if let Some(pg_config) = &paths.pg_config {
            if let Ok(out) = Command::new(pg_config).arg("--bindir").output() {
                if out.status.success() {
                    let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                    candidates.push(PathBuf::from(dir));
                }
            }
        }
        for root in &paths.versioned_roots {
            candidates.extend(versioned_bins(root));
            searched.push(format!("{}/*/bin", root.display()));
        }
        for dir in &candidates {
            if has_all(dir) {
                // PATH often holds symlinks (e.g. /usr/local/bin/initdb); the
                // real directory also has pg_dump, pgbench and friends.
                let real = std::fs::canonicalize(dir.join("postgres"))
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf))
                    .filter(|d| has_all(d))
                    .unwrap_or_else(|| dir.clone());
                return Ok(PgBinaries { dir: real });
            }
        }
        let mut listed: Vec<String> = Vec::new();
        if paths.override_dir.is_some() {
            listed.push("ATTESTOR_PG_BINDIR".into());
        }
        listed.push("PATH".into());
        if paths.pg_config.is_some() {
            listed.push("pg_config --bindir".into());
        }
        listed.extend(searched);
        Err(Error::MissingBinaries {
            searched: listed.join(", "),
        })
    }

    /// The directory holding the binaries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of one program in that directory (`pgbench`, `pg_dump`, …).
    pub fn program(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A schema-only `pg_dump` of the database at `url`, without comments
    /// and without the lines that change from run to run (`\restrict`), so
    /// two dumps of the same schema are equal (to check that a down.sql
    /// reverts its up.sql).
    pub fn schema_dump(&self, url: &str) -> crate::Result<String> {
        let out = std::process::Command::new(self.program("pg_dump"))
            .args(["--schema-only", "--no-comments", "-d", url])
            .output()
            .map_err(|source| Error::Io {
                context: "running pg_dump".into(),
                source,
            })?;
        if !out.status.success() {
            return Err(Error::Command {
                command: "pg_dump --schema-only".into(),
                status: out.status.to_string(),
                output: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| {
                !l.starts_with("--") && !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict")
            })
            .collect::<Vec<_>>()
            .join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binaries_error_names_the_fix() {
        let empty = std::env::temp_dir().join("attestor-testdb-no-binaries-here");
        let paths = SearchPaths {
            override_dir: Some(empty.clone()),
            path_dirs: vec![empty.clone()],
            pg_config: None,
            versioned_roots: vec![empty],
        };
        let err = PgBinaries::find_in(&paths).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::MissingBinaries { .. }), "{msg}");
        assert!(msg.contains("apt-get install postgresql"), "{msg}");
        assert!(msg.contains("ATTESTOR_PG_BINDIR"), "{msg}");
    }

    #[test]
    fn finds_a_directory_holding_all_programs() {
        let dir = std::env::temp_dir().join(format!("attestor-testdb-fake-bin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for b in REQUIRED {
            std::fs::write(dir.join(b), "").unwrap();
        }
        let paths = SearchPaths {
            path_dirs: vec![PathBuf::from("/nonexistent"), dir.clone()],
            ..Default::default()
        };
        assert_eq!(PgBinaries::find_in(&paths).unwrap().dir(), dir);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
