//! The `attestor` module's database schema, as Rust.
//!
//! * [`schema`] is the output of `diesel print-schema` for the PostgreSQL
//!   schema `attestor` (`cargo xtask schema` regenerates it; any fix goes into
//!   the patch file named in `diesel.toml`, never into the generated file;
//!   `cargo xtask schema --check` fails when it drifts from the migrations).
//! * [`MIGRATIONS`] embeds `migrations/`, the one source of DDL truth.
//! * [`CITUS_DISTRIBUTION`] embeds `citus/distribute.sql`, the idempotent
//!   step that distributes the migrated modules on a Citus coordinator, and
//!   [`CITUS_REBALANCE`] `citus/rebalance.sql`, the step after adding a worker.
//!
//! This crate must never contain hand-written SQL or business logic: it
//! embeds the SQL files that live next to `migrations/`.

#[allow(missing_docs)]
#[rustfmt::skip]
pub mod schema;

use diesel_migrations::{embed_migrations, EmbeddedMigrations};

/// Every migration of the workspace, embedded at compile time.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// The distribution step for a Citus coordinator (`citus/distribute.sql`):
/// run as a superuser, in one transaction, after the migrations; it
/// distributes every table of every module schema (`attestor`, and each
/// module `cargo xtask module new` adds: a schema `<m>` owned by
/// `<m>_owner` next to `<m>_app`) by `tenant_id`, all in one colocation
/// group, and hands the modules' functions to the workers. It is idempotent
/// and records each object in `public.__attestor_citus_distribution`.
pub const CITUS_DISTRIBUTION: &str = include_str!("../../../citus/distribute.sql");

/// Moving shards onto a newly added worker (`citus/rebalance.sql`): hands
/// the modules' tables to the superuser for the move (Citus moves a shard
/// as its table's owner, who may not log in), rebalances, hands them back,
/// and records the run in `public.__attestor_citus_distribution`.
pub const CITUS_REBALANCE: &str = include_str!("../../../citus/rebalance.sql");
