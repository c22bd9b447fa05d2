//! The tenant-guarded persistence layer of the attestor: what engineers program against.
//!
//! Owns: [`TenantId`]; [`Database`], a pool of connections logged in as
//! `attestor_app`, whose [`Database::transaction`] is the only way to run
//! tenant-scoped SQL (the tenant is set with `set_config('app.tenant_id', …,
//! true)` inside the transaction, in the same message as `BEGIN`); the
//! separately named cross-tenant path [`WorkerDatabase`] (role
//! `attestor_worker`, no tenant); [`RepoError`]; and one repository module
//! per entity, each a set of `async fn(&mut TenantTx, …)`:
//! [`dsse_envelopes`], [`rekor_entries`], [`sbom_entries`], [`spines`],
//! [`trust_anchors`], [`verdict_ledger`], [`audit_log`], with keyset
//! pagination from [`page`].
//!
//! Must never: hand out a pooled connection without a tenant transaction
//! around it (except through the explicitly named worker path), set a tenant
//! with a session-level `SET`, return a connection to the pool that carries a
//! tenant or an open transaction, or let an expected failure surface as a raw
//! driver error. Parsing and hashing are `attestor_formats`'s job; this crate
//! only calls it.
//!
//! ```no_run
//! use attestor_repo::scoped_futures::ScopedFutureExt as _;
//! use attestor_repo::{dsse_envelopes, Database, DatabaseConfig, RepoError, TenantContext, TenantId};
//!
//! # async fn example(app_url: String, bytes: Vec<u8>) -> Result<(), RepoError> {
//! let db = Database::connect(DatabaseConfig::new(app_url)).await?;
//! let tenant: TenantId = "0b3c5c1e-8f4e-4c59-9d4e-2f1a6f3b9a10".parse()?;
//! let ctx = TenantContext::new(tenant).with_actor("alice");
//! let stored = db
//!     .transaction(ctx, |tx| async move { dsse_envelopes::ingest(tx, &bytes).await }.scope_boxed())
//!     .await?;
//! assert_eq!(stored.row.tenant_id, tenant.as_uuid());
//! # Ok(()) }
//! ```
//!
//! Rules a caller should know:
//! - Any failed statement aborts the PostgreSQL transaction: return the error
//!   (the guard rolls back), or contain an expected failure in a nested
//!   `tx.conn().transaction(…)` (a savepoint). A closure that swallows a
//!   database error and returns `Ok` gets [`RepoError::TransactionAborted`],
//!   never a silent rollback reported as success.
//! - Every repository statement carries the transaction's tenant
//!   explicitly as well: it is built from the guard's tenant by the private
//!   `statement` module, which puts a bound `tenant_id = $n` on every read
//!   and update and the tenant into every insert, so that on Citus each
//!   statement routes to the one shard of its tenant (and on plain
//!   PostgreSQL uses the indexes that lead with `tenant_id`). Isolation
//!   itself is the database's Row-Level Security (migration `…000004_rls`),
//!   which also covers any raw SQL run through [`TenantTx::conn`].
//!   [`TenantTx::record_plans`] keeps each repository statement's plan.
//! - Cross-tenant work (the queue worker) uses [`WorkerDatabase`] with the
//!   `attestor_worker` URL: its transactions set `app.tenant_id` to `''`, so
//!   only the worker's own policies apply; to act for one tenant, open a
//!   [`Database::transaction`] for it.
//! - [`Database::fetch`] runs a single statement in one request: the guard's
//!   `set_config` travels in the statement's own extended-protocol message
//!   group (one implicit transaction, no `BEGIN`/`COMMIT`), for hot reads.
//!   The pool's connections run over a socket wrapper that does this (module
//!   `wire`); they do not deliver LISTEN notifications.
//! - [`Database::probe_idle`] reads what an idle pooled connection carries
//!   (tenant, actor, open transaction) for health checks; a dirty one is discarded.
//!
//! Note for callers: diesel-async 0.9 no longer re-exports `scoped_futures`;
//! use [`scoped_futures`] from this crate (`attestor_repo::scoped_futures`).

pub mod audit_log;
pub mod config;
pub mod db;
pub mod dsse_envelopes;
pub mod error;
pub mod page;
pub mod rekor_entries;
pub mod sbom_entries;
pub mod spines;
mod statement;
pub mod tenant;
pub mod trust_anchors;
pub mod verdict_ledger;
mod wire;

pub use config::{DatabaseConfig, PlanCacheMode, TenantContextMode};
pub use db::{ConnectionProbe, Database, PoolStatus, TenantTx, WorkerDatabase, WorkerTx};
pub use error::RepoError;
pub use page::{Cursor, Page, PageRequest};
pub use scoped_futures;
pub use statement::StatementPlan;
pub use tenant::{TenantContext, TenantId};

/// The row an idempotent ingest returns, and whether this call created it
/// (`false`: the same document was already stored, and this is that row).
#[derive(Debug, Clone, PartialEq)]
pub struct Ingested<T> {
    pub row: T,
    pub created: bool,
}

/// Result alias of this crate.
pub type Result<T, E = RepoError> = std::result::Result<T, E>;
