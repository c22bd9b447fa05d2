//! The library half of `cargo xtask`: the modules that tests call directly.
//!
//! `main.rs` owns argument parsing and the per-subcommand entry points; the
//! subcommands that work on a workspace given by its root (`module new`,
//! `schema`, `gen-rls`, `verify-rls`'s embedded run, so a test can run them
//! on a copy of the workspace) and the helpers several subcommands share
//! (the diesel.toml reader, the scratch-database helpers) live here. Nothing here is product code: the
//! RLS tooling is `attestor-rls`, which `gen-rls` and `verify-rls` wrap.

pub mod cli;
pub mod gen_rls;
pub mod module;
pub mod schema;
pub mod util;
pub mod verify_rls;
