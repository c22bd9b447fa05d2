//! The library half of `cargo xtask`: the modules that tests call directly.
//!
//! `main.rs` owns argument parsing and the per-subcommand entry points; the
//! logic that tests need (the RLS generator and verifier, the diesel.toml
//! reader, the scratch-database helpers) lives here so that
//! `xtask/tests/*.rs` can drive it without spawning `cargo xtask`.
//! Nothing here is product code: a library user of the attestor crates never
//! depends on this crate.

pub mod rls;
pub mod schema;
pub mod util;
