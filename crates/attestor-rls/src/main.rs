//! `attestor-rls`: the tenant-isolation proof as an operator's tool
//! (`verify | generate | rules | explain`).
//!
//! Parses arguments (clap) and prints; everything else is the library.
//! It may use `anyhow`; it must never decide what is a finding.

use std::process::ExitCode;

use attestor_rls::rules;
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
    /// List every rule and probe with its id, name and summary.
    Rules,
    /// Print what one rule protects against, why, and its fix.
    Explain {
        /// A rule or probe id (`TI001`, `TD018`).
        id: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Rules => {
            for r in rules::ALL {
                println!("{}  {:<28} {}", r.id, r.name, r.summary);
            }
            ExitCode::SUCCESS
        }
        Command::Explain { id } => match rules::by_id(&id) {
            Some(r) => {
                print!("{}", attestor_rls::report::explain(r));
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("unknown rule {id}: `attestor-rls rules` lists them");
                ExitCode::from(2)
            }
        },
    }
}
