//! The `attestor` module's database schema, as Rust.
//!
//! * [`schema`] is the output of `diesel print-schema` for the PostgreSQL
//!   schema `attestor` (`cargo xtask schema` regenerates it; any fix goes into
//!   the patch file named in `diesel.toml`, never into the generated file;
//!   `cargo xtask schema --check` fails when it drifts from the migrations).
//! * [`MIGRATIONS`] embeds `migrations/`, the one source of DDL truth.
//!
//! This crate must never contain hand-written SQL or business logic.

#[allow(missing_docs)]
#[rustfmt::skip]
pub mod schema;

use diesel_migrations::{embed_migrations, EmbeddedMigrations};

/// Every migration of the workspace, embedded at compile time.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");
