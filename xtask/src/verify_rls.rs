//! `cargo xtask verify-rls [--database-url URL] [--format human|json] [--static-only]`.
//!
//! Without `--database-url` it starts the embedded default (or uses
//! `DATABASE_URL`'s server), migrates a scratch database and verifies it;
//! with it, it verifies that existing database (a superuser's or the
//! owner's URL) in one transaction that is rolled back. Exit 0 clean,
//! 1 findings, 2 could not run. The logic is in `attestor-rls`; this file
//! only parses arguments and prints.

use std::process::ExitCode;

use anyhow::{bail, Result};
use attestor_rls::{self as rls, Config, VerifyOptions};
use xtask::util::{rls_config_path, rls_modules, scratch_database, server};

pub fn run_cmd(args: &[&str]) -> Result<ExitCode> {
    let mut url: Option<String> = None;
    let mut json = false;
    let mut dynamic = true;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "--database-url" => match it.next() {
                Some(u) => url = Some((*u).to_owned()),
                None => bail!("--database-url needs a URL"),
            },
            "--format" => match it.next().copied() {
                Some("json") => json = true,
                Some("human") => json = false,
                _ => bail!("--format takes human or json"),
            },
            "--static-only" => dynamic = false,
            other => bail!(
                "unknown argument {other}\nusage: cargo xtask verify-rls [--database-url URL] [--format human|json] [--static-only]"
            ),
        }
    }
    let options = VerifyOptions {
        modules: rls_modules()?,
        config: Config::load(&rls_config_path())?,
        dynamic,
    };
    let report = match url {
        Some(u) => rls::verify(&u, &options)?,
        None => {
            let server = server()?;
            let db = scratch_database(&server, "verify_rls")?;
            let result = rls::verify(&server.admin(&db).url(), &options);
            server.drop_database(&db)?;
            result?
        }
    };
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_human());
    }
    Ok(ExitCode::from(report.verdict().exit_code()))
}
