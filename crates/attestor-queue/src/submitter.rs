//! The seam between the worker runtime and the transparency log.
//!
//! Owns the [`Submitter`] trait (what the worker calls for each claimed
//! job), its request type and its two-way error ([`SubmitError::Retryable`]
//! vs [`SubmitError::Permanent`]), which decides between backoff and the
//! dead-letter queue. A submitter must never touch the database: it gets
//! everything it needs in the [`SubmitRequest`], and the worker stores what
//! it returns.

use std::future::Future;
use std::pin::Pin;

use crate::claim::ClaimedJob;

/// A boxed, `Send` future (the trait stays object-safe without macros).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a submitter gets for one job.
#[derive(Debug, Clone)]
pub struct SubmitRequest {
    /// The claimed job (tenant, ids, attempt number).
    pub job: ClaimedJob,
    /// The DSSE envelope to log (`dsse_envelopes.envelope`), read in the
    /// job's tenant transaction; `None` when the submitter said it does not
    /// need it ([`Submitter::needs_envelope`]).
    pub envelope: Option<serde_json::Value>,
}

/// Why a submission failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// Worth retrying after a backoff (5xx, timeouts, connection errors,
    /// rate limiting, a response that did not verify).
    #[error("retryable: {0}")]
    Retryable(String),
    /// Retrying cannot help (a 4xx other than 408/409/429: the entry is
    /// malformed or refused); the job goes to the dead-letter queue at once.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// Submits one job's envelope to the log and returns the log's entry.
pub trait Submitter: Send + Sync + 'static {
    /// Whether the worker should read the envelope for [`SubmitRequest::envelope`]
    /// (one extra tenant transaction per job). Default: yes.
    fn needs_envelope(&self) -> bool {
        true
    }

    /// Submit and return the Rekor v1 entry as JSON (`{"<uuid>": {body,
    /// integratedTime, logID, logIndex, verification}}`), whether it was
    /// just created or already existed. Must be idempotent: after a crash
    /// the same job is submitted again.
    fn submit<'a>(
        &'a self,
        request: &'a SubmitRequest,
    ) -> BoxFuture<'a, Result<serde_json::Value, SubmitError>>;
}
