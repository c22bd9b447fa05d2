//! `attestor-rls`: the tenant-isolation proof as an operator's tool
//! (`verify | generate | rules | explain`).
//!
//! Parses arguments (clap) and prints; everything else is the library.
//! It may use `anyhow`; it must never decide what is a finding.

use std::process::ExitCode;

use attestor_rls::cli::{GenerateArgs, VerifyArgs};
use attestor_rls::{generate, rules};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "attestor-rls",
    version,
    about = "Prove tenant isolation of an attestor database"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prove tenant isolation (exit 0 clean, 1 findings, 2 could not run, 3 incomplete).
    Verify(VerifyArgs),
    /// Write the generated RLS migration into ./migrations from ./diesel.toml
    /// and ./rls.toml (run in a checkout), or check it.
    Generate(GenerateArgs),
    /// List every rule and probe with its id, name and summary.
    Rules {
        /// Print the full Markdown document (docs/rls-rules.md) instead.
        #[arg(long)]
        markdown: bool,
    },
    /// Print what one rule protects against, why, and its fix.
    Explain {
        /// A rule or probe id (`TI001`, `TD018`).
        id: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Verify(args) => match attestor_rls::cli::verify(&args) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("attestor-rls verify: could not run: {e}");
                ExitCode::from(2)
            }
        },
        Command::Generate(args) => match generate_here(&args) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("attestor-rls generate: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Rules { markdown } => {
            let text = if markdown {
                attestor_rls::report::rules_markdown()
            } else {
                rules::ALL
                    .iter()
                    .map(|r| format!("{}  {:<28} {}\n", r.id, r.name, r.summary))
                    .collect()
            };
            print(&text)
        }
        Command::Explain { id } => match rules::by_id(&id) {
            Some(r) => print(&attestor_rls::report::explain(r)),
            None => {
                eprintln!("unknown rule {id}: `attestor-rls rules` lists them");
                ExitCode::from(2)
            }
        },
    }
}

/// `generate` in the current directory (a checkout: migrations/, diesel.toml, rls.toml).
fn generate_here(args: &GenerateArgs) -> anyhow::Result<u8> {
    let here = std::env::current_dir()?;
    let inputs = generate::GenInputs {
        migrations: here.join("migrations"),
        config_path: here.join("rls.toml"),
        modules: attestor_rls::modules_from_file(&here.join("diesel.toml"))?,
    };
    let server = attestor_testdb::Server::from_env()?;
    Ok(attestor_rls::cli::generate(&server, &inputs, args)?)
}

/// Write to stdout; a closed pipe (`| head`) is not an error.
fn print(text: &str) -> ExitCode {
    use std::io::Write as _;
    let _ = std::io::stdout().write_all(text.as_bytes());
    ExitCode::SUCCESS
}
