//! Locating the shared real-data fixtures (test support only).
//!
//! Owns: the one rule for where tests find `shared/fixtures`: the
//! `ATTESTOR_FIXTURES` environment variable if set, else
//! `<this crate>/../../../shared/fixtures` (the `shared/` folder beside the
//! workspace checkout), and the single line printed when it is absent.
//!
//! Must never: be compiled into production builds (it sits behind the
//! `test-support` feature), copy or write fixtures, or fail a test because the
//! folder is missing (callers fall back to generated vectors).

use std::path::{Path, PathBuf};

/// Environment variable that overrides the fixtures folder.
pub const ENV_VAR: &str = "ATTESTOR_FIXTURES";

/// Where the fixtures are expected, whether or not the folder exists.
pub fn fixtures_path() -> PathBuf {
    match std::env::var_os(ENV_VAR) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"),
    }
}

/// The fixtures folder if it exists; otherwise prints
/// `fixtures not found at <path>: fixture checks skipped (generated vectors cover the same behaviour)`
/// and returns `None`, so a test can `let Some(dir) = fixtures_dir() else { return };`.
pub fn fixtures_dir() -> Option<PathBuf> {
    let path = fixtures_path();
    if path.is_dir() {
        Some(path)
    } else {
        println!(
            "fixtures not found at {}: fixture checks skipped (generated vectors cover the same behaviour)",
            path.display()
        );
        None
    }
}

/// Reads `<dir>/<relative>`, panicking with the path on failure (for tests).
pub fn read(dir: &Path, relative: &str) -> Vec<u8> {
    let path = dir.join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}
