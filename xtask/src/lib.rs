//! The library half of `cargo xtask`: the modules that tests call directly.
//!
//! `main.rs` owns argument parsing and the per-subcommand entry points; the
//! helpers that several subcommands share (the diesel.toml reader, the
//! scratch-database helpers) live here. Nothing here is product code: the
//! RLS tooling is `attestor-rls`, which `gen-rls` and `verify-rls` wrap.

pub mod cli;
pub mod schema;
pub mod util;
