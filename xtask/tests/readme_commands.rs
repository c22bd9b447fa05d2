//! The README's commands and `cargo xtask`'s clap definition agree: every
//! `cargo xtask …` the README shows parses, and every command `cargo xtask`
//! has is shown in the README. The help text itself comes only from the
//! clap definition (`xtask::cli`).

use std::collections::BTreeSet;

use clap::{CommandFactory, Parser};
use xtask::cli::Cli;
use xtask::util::root;

/// Every `cargo xtask …` in backticks or at the start of a code-block line.
fn readme_commands() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut out = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("cargo xtask ") {
            // A code-block line: the command ends at its comment.
            out.push(format!("cargo xtask {}", rest.split('#').next().unwrap().trim()));
        }
        for (i, span) in line.split('`').enumerate() {
            if i % 2 == 1 && span.starts_with("cargo xtask ") {
                out.push(span.to_owned());
            }
        }
    }
    out
}

/// The words clap should see: optional `[…]` groups and `…` dropped.
fn words(command: &str) -> Vec<String> {
    let mut kept = String::new();
    let mut depth = 0usize;
    for c in command.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            '…' => {}
            c if depth == 0 => kept.push(c),
            _ => {}
        }
    }
    kept.split_whitespace().skip(2).map(str::to_owned).collect()
}

#[test]
fn every_readme_command_parses() {
    let commands = readme_commands();
    assert!(commands.len() >= 8, "too few commands found: {commands:?}");
    for command in &commands {
        let args = words(command);
        if args.is_empty() || args.iter().any(|w| w.starts_with('<')) {
            continue; // `cargo xtask …`, `cargo xtask bench <name>`: prose, not a command
        }
        let argv = std::iter::once("cargo xtask".to_owned()).chain(args.iter().cloned());
        if let Err(e) = Cli::try_parse_from(argv) {
            panic!("README shows `{command}`, which cargo xtask refuses:\n{e}");
        }
    }
}

#[test]
fn a_misspelt_command_is_refused() {
    // The check above could not fail if parsing accepted anything.
    assert!(Cli::try_parse_from(["cargo xtask", "gen-rsl"]).is_err());
    assert!(Cli::try_parse_from(["cargo xtask", "schema", "--chek"]).is_err());
}

#[test]
fn every_command_is_in_the_readme() {
    fn leaves(cmd: &clap::Command, prefix: &str, out: &mut BTreeSet<String>) {
        let subs: Vec<_> = cmd.get_subcommands().filter(|c| c.get_name() != "help").collect();
        if subs.is_empty() {
            out.insert(prefix.trim().to_owned());
        }
        for s in subs {
            leaves(s, &format!("{prefix} {}", s.get_name()), out);
        }
    }
    let mut declared = BTreeSet::new();
    leaves(&Cli::command(), "", &mut declared);
    let shown: BTreeSet<String> = readme_commands()
        .iter()
        .map(|c| {
            words(c)
                .into_iter()
                .take_while(|w| !w.starts_with('-'))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let missing: Vec<&String> = declared
        .iter()
        .filter(|d| !shown.iter().any(|s| s == *d || s.starts_with(&format!("{d} "))))
        .collect();
    assert!(
        missing.is_empty(),
        "commands of cargo xtask the README does not show: {missing:?}"
    );
}
