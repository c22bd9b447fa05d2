//! The crate's one error type, [`RepoError`], and its mapping from database errors.
//!
//! Owns: turning `diesel::result::Error` (and pool errors) into a variant
//! callers can match on. Which variant a database error becomes is decided
//! by one table, `classify` (SQLSTATE or condition, how it is recognised,
//! the variant), tested row by row against a real server; only what no row
//! recognises ends up in [`RepoError::Database`]. [`RepoError::is_transient`]
//! says which failures are worth retrying unchanged.
//!
//! Must never: put a whole document or a secret in a message, let an expected
//! failure (bad input, conflict, missing tenant) surface as `Database`, or
//! classify a database error anywhere but in `classify`.

mod classify;

use attestor_formats::FormatError;
use attestor_transparency::VerifyError;
use diesel::result::{DatabaseErrorInformation, DatabaseErrorKind, Error as DieselError};
use thiserror::Error;

use classify::Class;

/// Everything a repository call can fail with.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RepoError {
    /// No row matches (in this tenant: other tenants' rows are invisible).
    #[error("{entity} not found: {key}")]
    NotFound { entity: &'static str, key: String },

    /// A unique constraint refused the write (or an idempotent write found a
    /// different row under the same key).
    #[error("conflict on {constraint}: {message}")]
    Conflict { constraint: String, message: String },

    /// The database refused the values (foreign key, CHECK, NOT NULL, invalid
    /// text, bad encoding), or the caller passed an unusable argument.
    #[error("invalid input: {message}")]
    InvalidInput {
        message: String,
        constraint: Option<String>,
    },

    /// Tenant-scoped SQL ran without `app.tenant_id` (SQLSTATE AT001).
    #[error("no tenant is set for this transaction (AT001)")]
    TenantNotSet,

    /// A tenant id that is not a UUID, or is the nil UUID (SQLSTATE AT002, or refused before any SQL).
    #[error("invalid tenant id: expected a UUID other than the nil UUID")]
    InvalidTenant,

    /// UPDATE/DELETE/TRUNCATE on an append-only table (SQLSTATE AT003).
    #[error("the table is append-only: UPDATE, DELETE and TRUNCATE are refused (AT003)")]
    AppendOnly,

    /// The role lacks a privilege, or a row-level security policy refused the row (SQLSTATE 42501).
    #[error("permission denied (42501)")]
    PermissionDenied,

    /// A statement failed inside the transaction, the closure returned `Ok`
    /// anyway, and the transaction could not commit: it was rolled back. (In
    /// PostgreSQL any error aborts the transaction; contain expected failures
    /// in a nested `conn.transaction(…)`, which is a savepoint.)
    #[error("the transaction was aborted by an earlier failed statement and has been rolled back")]
    TransactionAborted,

    /// The transaction's tenant context (`app.tenant_id` or `app.actor`) was
    /// not, at `COMMIT`, what the guard set: something in the transaction
    /// changed it by other means (a `set_config`, a `SET`), which on Citus
    /// makes the coordinator and the shards disagree about the tenant. It was
    /// rolled back and the connection discarded.
    #[error("the tenant context was changed inside the transaction by something other than the guard; it was rolled back")]
    TenantContextChanged,

    /// A statement was cancelled by `statement_timeout` or `lock_timeout`
    /// (SQLSTATE 57014 / 55P03); the transaction was rolled back.
    #[error("timed out: {message}")]
    Timeout { message: String },

    /// PostgreSQL could not serialize the transaction with concurrent ones
    /// (SQLSTATE 40001, or a deadlock, 40P01); it was rolled back and may
    /// succeed when retried.
    #[error("transaction could not be serialized, retry it: {message}")]
    SerializationFailure { message: String },

    /// The database cannot be reached or cannot take writes now: pool timeout,
    /// connection refused, closed or broken, the server shutting down or
    /// read-only (a standby).
    #[error("database unavailable: {message}")]
    Unavailable { message: String },

    /// The document was refused by its parser (malformed JSON or base64, too large, NUL character, …).
    #[error(transparent)]
    Format(FormatError),

    /// A transparency-log entry's inclusion proof is missing or does not lead to its stated root.
    #[error("inclusion proof does not verify: {source}")]
    InclusionProof {
        #[source]
        source: FormatError,
    },

    /// A transparency-log entry is not signed by a trusted log: unknown log or
    /// key outside its window, a SET or checkpoint missing or not verifying,
    /// or a checkpoint for another tree head than the proof's.
    #[error("transparency-log entry is not evidence: {source}")]
    NotEvidence {
        #[source]
        source: VerifyError,
    },

    /// An invariant of this crate did not hold (a bug, not bad input); the
    /// connection involved was discarded and nothing was read or written.
    #[error("internal error: {message}")]
    Internal { message: String },

    /// An unexpected database error (a bug or an operational problem, not bad input).
    #[error("unexpected database error: {0}")]
    Database(#[source] DieselError),
}

impl RepoError {
    /// True for every variant caused by the caller's input (4xx-like):
    /// `InvalidInput`, `Format`, `InclusionProof`, `NotEvidence`, `InvalidTenant`.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            RepoError::InvalidInput { .. }
                | RepoError::Format(_)
                | RepoError::InclusionProof { .. }
                | RepoError::NotEvidence { .. }
                | RepoError::InvalidTenant
        )
    }

    /// True for the failures that may go away when the same call is retried
    /// later, unchanged: [`RepoError::Unavailable`], [`RepoError::Timeout`]
    /// and [`RepoError::SerializationFailure`]. Worker loops retry these;
    /// everything else needs a different input or a fix.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RepoError::Unavailable { .. }
                | RepoError::Timeout { .. }
                | RepoError::SerializationFailure { .. }
        )
    }

    /// An [`RepoError::InvalidInput`] with a message and no constraint.
    pub fn invalid(message: impl Into<String>) -> Self {
        RepoError::InvalidInput {
            message: message.into(),
            constraint: None,
        }
    }

    pub(crate) fn not_found(entity: &'static str, key: impl Into<String>) -> Self {
        RepoError::NotFound {
            entity,
            key: key.into(),
        }
    }
}

impl From<FormatError> for RepoError {
    fn from(e: FormatError) -> Self {
        match e {
            FormatError::InclusionProof { .. } | FormatError::RootMismatch { .. } => {
                RepoError::InclusionProof { source: e }
            }
            other => RepoError::Format(other),
        }
    }
}

/// A missing or failing inclusion proof stays [`RepoError::InclusionProof`];
/// every signature failure is [`RepoError::NotEvidence`].
impl From<VerifyError> for RepoError {
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::InclusionProof(source) => RepoError::InclusionProof { source },
            VerifyError::MissingInclusionProof => RepoError::InclusionProof {
                source: FormatError::InclusionProof {
                    reason: "missing".to_owned(),
                },
            },
            source => RepoError::NotEvidence { source },
        }
    }
}

impl From<bb8::RunError<diesel_async::pooled_connection::PoolError>> for RepoError {
    fn from(e: bb8::RunError<diesel_async::pooled_connection::PoolError>) -> Self {
        match e {
            bb8::RunError::TimedOut => RepoError::Unavailable {
                message: "timed out waiting for a pooled connection".into(),
            },
            bb8::RunError::User(e) => RepoError::Unavailable {
                message: e.to_string(),
            },
        }
    }
}

impl From<DieselError> for RepoError {
    fn from(e: DieselError) -> Self {
        match e {
            DieselError::NotFound => RepoError::NotFound {
                entity: "row",
                key: "(query)".into(),
            },
            DieselError::DatabaseError(kind, info) => from_database_error(kind, info),
            DieselError::BrokenTransactionManager => RepoError::Unavailable {
                message: "the connection's transaction state is broken".into(),
            },
            DieselError::SerializationError(err) => RepoError::invalid(err.to_string()),
            other => RepoError::Database(other),
        }
    }
}

fn from_database_error(
    kind: DatabaseErrorKind,
    info: Box<dyn DatabaseErrorInformation + Send + Sync>,
) -> RepoError {
    let Some(rule) = classify::rule_for(kind, info.message(), info.details()) else {
        return RepoError::Database(DieselError::DatabaseError(kind, info));
    };
    let message = info.message().to_owned();
    let constraint = info.constraint_name().map(str::to_owned);
    match rule.class {
        Class::Conflict => RepoError::Conflict {
            constraint: constraint.unwrap_or_default(),
            message,
        },
        Class::InvalidInput => RepoError::InvalidInput { message, constraint },
        Class::TenantNotSet => RepoError::TenantNotSet,
        Class::InvalidTenant => RepoError::InvalidTenant,
        Class::AppendOnly => RepoError::AppendOnly,
        Class::PermissionDenied => RepoError::PermissionDenied,
        Class::Timeout => RepoError::Timeout { message },
        Class::SerializationFailure => RepoError::SerializationFailure { message },
        Class::Unavailable => RepoError::Unavailable { message },
    }
}
