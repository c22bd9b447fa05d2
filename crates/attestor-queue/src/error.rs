//! The queue's single error type.
//!
//! Owns [`QueueError`], the typed outcome every queue operation returns
//! (notably [`QueueError::LeaseLost`], the fencing refusal), and the mapping
//! of diesel/pool errors into it. It must never swallow an error or turn a
//! fencing refusal into a generic database error: callers match on it.

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
    /// The Rekor entry handed to `complete` is malformed or its inclusion
    /// proof does not verify.
    #[error("invalid transparency-log entry: {0}")]
    InvalidEntry(#[from] attestor_formats::FormatError),
    /// The database could not be reached (connection refused, server
    /// restarting, pool timed out). Retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(diesel::result::Error),
    /// The tenant guard (attestor-repo) refused or failed the tenant
    /// transaction the operation ran in.
    #[error("tenant transaction failed: {0}")]
    Repo(#[from] attestor_repo::RepoError),
}

impl QueueError {
    /// True for errors that go away by themselves (connection loss, server
    /// restart, serialization failure): worker loops retry these.
    pub fn is_transient(&self) -> bool {
        match self {
            QueueError::Unavailable(_) => true,
            QueueError::Database(e) => is_transient_diesel(e),
            QueueError::Repo(attestor_repo::RepoError::Unavailable { .. }) => true,
            QueueError::Repo(attestor_repo::RepoError::Database(e)) => is_transient_diesel(e),
            _ => false,
        }
    }
}

fn is_transient_diesel(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match e {
        Error::DatabaseError(kind, info) => {
            matches!(
                kind,
                DatabaseErrorKind::SerializationFailure | DatabaseErrorKind::ClosedConnection
            ) || info.message().contains("terminating connection")
                || info.message().contains("connection closed")
        }
        Error::BrokenTransactionManager => true,
        _ => false,
    }
}

impl From<diesel::result::Error> for QueueError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match &e {
            Error::DatabaseError(DatabaseErrorKind::ClosedConnection, info) => {
                QueueError::Unavailable(info.message().to_owned())
            }
            Error::DatabaseError(DatabaseErrorKind::Unknown, info)
                if info.message().contains("connection closed")
                    || info.message().contains("terminating connection")
                    || info.message().contains("Connection reset") =>
            {
                QueueError::Unavailable(info.message().to_owned())
            }
            _ => QueueError::Database(e),
        }
    }
}

impl From<diesel::ConnectionError> for QueueError {
    fn from(e: diesel::ConnectionError) -> Self {
        QueueError::Unavailable(e.to_string())
    }
}

impl<E: std::fmt::Display + std::fmt::Debug + std::error::Error + 'static> From<bb8::RunError<E>>
    for QueueError
{
    fn from(e: bb8::RunError<E>) -> Self {
        QueueError::Unavailable(e.to_string())
    }
}

/// Result alias for the queue.
pub type Result<T, E = QueueError> = std::result::Result<T, E>;
