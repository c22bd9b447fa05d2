//! The queue's single error type.
//!
//! Owns [`QueueError`], the typed outcome every queue operation returns
//! (notably [`QueueError::LeaseLost`], the fencing refusal). Database and
//! pool errors are wrapped as [`QueueError::Repo`], classified by
//! attestor-repo's one table. It must never swallow an error, classify a
//! database error itself, or turn a fencing refusal into a generic database
//! error: callers match on it.

use uuid::Uuid;

/// Everything a queue operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The caller's attempt token is no longer the job's current one (the
    /// lease expired and the job was re-claimed, or the job already
    /// finished). Nothing was changed.
    #[error("lease lost: job {job_id} of tenant {tenant_id} is no longer held with this attempt token")]
    LeaseLost {
        /// Tenant of the job.
        tenant_id: Uuid,
        /// The job.
        job_id: Uuid,
    },
    /// No such job (in the caller's visibility).
    #[error("job {job_id} of tenant {tenant_id} not found")]
    NotFound {
        /// Tenant of the job.
        tenant_id: Uuid,
        /// The job.
        job_id: Uuid,
    },
    /// The job exists but is not in a state that allows the operation
    /// (e.g. requeueing a job that is not dead).
    #[error("job {job_id} is {status}, expected {expected}")]
    WrongState {
        /// The job.
        job_id: Uuid,
        /// Its current status.
        status: String,
        /// The status the operation needs.
        expected: &'static str,
    },
    /// A caller-supplied value is invalid (e.g. a digest that is not 32 bytes).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The log's answer is not a usable transparency-log entry (malformed).
    #[error("invalid transparency-log entry: {0}")]
    InvalidEntry(#[from] attestor_formats::FormatError),
    /// The log's entry parsed but is not evidence under the worker's trusted
    /// root (unknown log, key outside its window, no or a bad checkpoint or
    /// SET, a proof that does not lead to the signed root). Nothing is stored.
    #[error("transparency-log entry is not evidence: {0}")]
    NotEvidence(#[from] attestor_transparency::VerifyError),
    /// The worker's completion batcher has stopped (the worker is shutting
    /// down); the job's lease will expire and it will be claimed again.
    #[error("the completion batcher stopped")]
    Stopped,
    /// A database or pool error, classified by attestor-repo (the one
    /// classifier: [`attestor_repo::RepoError::is_transient`] says whether a
    /// retry may help).
    #[error("database: {0}")]
    Repo(#[from] attestor_repo::RepoError),
}

impl QueueError {
    /// True for errors that may go away when the operation is retried
    /// unchanged (connection loss, server restart, timeouts, serialization
    /// failures, a worker shutting down): worker loops retry these.
    pub fn is_transient(&self) -> bool {
        match self {
            QueueError::Stopped => true,
            QueueError::Repo(e) => e.is_transient(),
            _ => false,
        }
    }
}

impl From<diesel::result::Error> for QueueError {
    fn from(e: diesel::result::Error) -> Self {
        QueueError::Repo(e.into())
    }
}

impl From<diesel::ConnectionError> for QueueError {
    fn from(e: diesel::ConnectionError) -> Self {
        QueueError::Repo(attestor_repo::RepoError::Unavailable {
            message: e.to_string(),
        })
    }
}

impl<E: std::fmt::Display + std::fmt::Debug + std::error::Error + 'static> From<bb8::RunError<E>>
    for QueueError
{
    fn from(e: bb8::RunError<E>) -> Self {
        QueueError::Repo(attestor_repo::RepoError::Unavailable {
            message: e.to_string(),
        })
    }
}

/// Result alias for the queue.
pub type Result<T, E = QueueError> = std::result::Result<T, E>;
