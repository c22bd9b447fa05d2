//! The Rekor submission queue and its worker runtime.
//!
//! At-least-once delivery with exactly-once *completion* on
//! `attestor.rekor_submission_queue`:
//!
//! * [`mod@enqueue`] — idempotent insert inside the caller's tenant transaction;
//! * [`mod@claim`] — one statement, `FOR UPDATE SKIP LOCKED` in MATERIALIZED
//!   CTEs, fair across tenants, reclaiming expired leases, handing out a
//!   fresh fencing token per claim (as `attestor_worker`);
//! * [`tenant_claim`] — the same claim as one statement per picked tenant,
//!   each naming its tenant (a queue distributed by tenant on Citus,
//!   [`ClaimOptions::per_tenant`]);
//! * [`lease`] — heartbeat / complete / fail / release / reclaim, every one
//!   fenced by the token ([`QueueError::LeaseLost`]); completion stores the
//!   Rekor entry and marks the job done in the job's tenant transaction
//!   ([`complete`], or [`complete_many`] for several jobs of one tenant in
//!   one statement), and only an entry that verified against the worker's
//!   trusted root ([`attestor_transparency::VerifiedTlogEntry`]);
//! * [`routed_complete`] — completion as one-table statements naming the
//!   tenant, for a Citus coordinator;
//! * [`backoff`] — exponential backoff with jitter;
//! * [`citus`] — whether the queue runs on a Citus coordinator ([`Topology`],
//!   probed once and passed to the `_on` forms of the reclaim, the purge and
//!   [`complete_many`]), and the tenant-by-tenant loop used there;
//! * [`dead`] — list and requeue dead-lettered jobs;
//! * [`retention`] — finished jobs leave the table after their retention
//!   (small `SKIP LOCKED` batches that never block a claim);
//! * [`stats`] — backlog per status and per tenant;
//! * [`worker`] — the runtime: K concurrent jobs, batches of B,
//!   LISTEN/NOTIFY with polling fallback, heartbeats, graceful shutdown,
//!   counters; [`submitter`] is its seam to the log and [`rekor`] the real
//!   HTTP submitter; `testing` (feature `test-support`) holds
//!   deterministic fakes and the log that signs them;
//! * [`prepared`] — hand-written SQL that diesel-async prepares once per
//!   connection (the claim's statement);
//! * [`error`] — [`QueueError`].
//!
//! This crate must never use a role with BYPASSRLS, never run tenant SQL
//! outside the attestor-repo guard's tenant transaction, never let the
//! worker role touch any table but the queue, and never store a log's entry
//! that is not evidence under the worker's trusted root.

pub mod backoff;
pub mod citus;
pub mod claim;
pub mod dead;
pub mod enqueue;
pub mod error;
pub mod lease;
pub mod prepared;
pub mod rekor;
pub mod retention;
pub mod routed_complete;
pub mod stats;
pub mod submitter;
pub mod tenant_claim;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod worker;

pub use backoff::Backoff;
pub use citus::Topology;
pub use claim::{claim, ClaimOptions, ClaimedJob, Lease};
pub use dead::{list_dead, requeue_all_dead, requeue_dead, DeadJob};
pub use enqueue::{enqueue, enqueue_tx, Enqueued, NewJob};
pub use error::{QueueError, Result};
pub use lease::{
    complete, complete_many, complete_many_on, fail, heartbeat, reclaim_expired, reclaim_expired_on, release,
    FailOutcome, Failure, Reclaimed,
};
pub use rekor::RekorSubmitter;
pub use retention::{purge, purge_on, Purged, Retention};
pub use stats::{backlog, backlog_by_tenant, Backlog, TenantBacklog};
pub use submitter::{SubmitError, SubmitRequest, Submitter};
pub use worker::{Metrics, MetricsSnapshot, Worker, WorkerConfig, WorkerHandle};
