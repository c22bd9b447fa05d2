//! The `{{module}}` module's database schema, as Rust.
//!
//! [`schema`] is the output of `diesel print-schema` for the PostgreSQL
//! schema `{{module}}`, configured by `[print_schema.{{module}}]` in
//! diesel.toml: `cargo xtask schema` regenerates it and `cargo xtask schema
//! --check` fails when it drifts from the migrations. The migrations
//! themselves live in the workspace's one `migrations/` directory, embedded
//! by `attestor-schema`.
//!
//! This crate must never contain hand-written SQL, hand edits of the
//! generated file (fixes go into a `patch_file` named in diesel.toml) or
//! business logic.

#[allow(missing_docs)]
#[rustfmt::skip]
pub mod schema;
