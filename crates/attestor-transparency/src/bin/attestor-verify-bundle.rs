//! `attestor-verify-bundle --trusted-root FILE BUNDLE`: whether a Sigstore
//! bundle's transparency-log entry is evidence under a trusted root.
//!
//! Exit status: 0 when the entry verifies (one line names the log, key and
//! evidence), 1 when it does not (the reason on stderr), 2 when the input is
//! unusable (missing arguments, unreadable files, a trusted root or bundle that
//! does not parse). An entry's key must be valid at its integrated time; for
//! an entry without one (Rekor v2) at the current time, when the bundle is
//! observed (the library's *Reference time* says why).
//!
//! Must never: write anything, or exit 0 for an entry that `verify_entry` refuses.

use std::process::ExitCode;

use attestor_formats::{Limits, TlogEntry};
use attestor_transparency::{verify_entry, TrustedRoot};

const USAGE: &str = "usage: attestor-verify-bundle --trusted-root FILE BUNDLE";

fn unusable(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("attestor-verify-bundle: {message}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut root_path = None;
    let mut bundle_path = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--trusted-root" {
            match args.next() {
                Some(p) => root_path = Some(p),
                None => return unusable(USAGE),
            }
        } else if arg == "-h" || arg == "--help" {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        } else if bundle_path.is_none() {
            bundle_path = Some(arg);
        } else {
            return unusable(USAGE);
        }
    }
    let (Some(root_path), Some(bundle_path)) = (root_path, bundle_path) else {
        return unusable(USAGE);
    };
    let read = |p: &std::ffi::OsStr| {
        std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.to_string_lossy()))
    };
    let root = match read(&root_path).and_then(|b| TrustedRoot::from_json(&b).map_err(|e| e.to_string())) {
        Ok(r) => r,
        Err(e) => return unusable(e),
    };
    let entry = match read(&bundle_path)
        .and_then(|b| TlogEntry::from_bundle(&b, &Limits::default()).map_err(|e| e.to_string()))
    {
        Ok(e) => e,
        Err(e) => return unusable(e),
    };
    match verify_entry(&entry, &root, chrono::Utc::now()) {
        Ok(v) => {
            println!(
                "verified: log {} ({}) key {} {}, index {}, evidence {}",
                v.log.base_url,
                v.log.log_id_hex(),
                v.log.key.algorithm(),
                hex::encode(v.log.note_key_hint()),
                entry.log_index,
                v.evidence.as_str()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("not verified: {e}");
            ExitCode::from(1)
        }
    }
}
