//! The crate's one error type, [`RepoError`], and its mapping from database errors.
//!
//! Owns: turning `diesel::result::Error` into a variant callers can match on,
//! by SQLSTATE class: unique violation → [`RepoError::Conflict`]; foreign
//! key, check, not-null, invalid text, bad encoding → [`RepoError::InvalidInput`];
//! the module's own `AT001`/`AT002`/`AT003` → [`RepoError::TenantNotSet`],
//! [`RepoError::InvalidTenant`], [`RepoError::AppendOnly`]; `42501` →
//! [`RepoError::PermissionDenied`]; `57014`/`55P03` (statement or lock
//! timeout) → [`RepoError::Timeout`]; a closed, broken or unreachable connection
//! → [`RepoError::Unavailable`]. Only the unexpected ends up in
//! [`RepoError::Database`].
//!
//! diesel-async 0.9 keeps the SQLSTATE only for the codes diesel has a
//! `DatabaseErrorKind` for; the others are recognised by the server's message
//! (the `AT00x` messages are this module's own, written by migration
//! `000002_tenant_helpers`, and pinned by the tests in `tests/guard.rs`).
//!
//! Must never: put a whole document or a secret in a message, or let an
//! expected failure (bad input, conflict, missing tenant) surface as `Database`.

use attestor_formats::FormatError;
use diesel::result::{DatabaseErrorInformation, DatabaseErrorKind, Error as DieselError};
use thiserror::Error;

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

    /// A statement was cancelled by `statement_timeout` or `lock_timeout`
    /// (SQLSTATE 57014 / 55P03); the transaction was rolled back.
    #[error("timed out: {message}")]
    Timeout { message: String },

    /// The database cannot be reached: pool timeout, connection refused, closed or broken.
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
    /// `InvalidInput`, `Format`, `InclusionProof`, `InvalidTenant`.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            RepoError::InvalidInput { .. }
                | RepoError::Format(_)
                | RepoError::InclusionProof { .. }
                | RepoError::InvalidTenant
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
    let message = info.message().to_owned();
    let constraint = info.constraint_name().map(str::to_owned);
    match kind {
        DatabaseErrorKind::UniqueViolation => {
            return RepoError::Conflict {
                constraint: constraint.unwrap_or_default(),
                message,
            }
        }
        DatabaseErrorKind::ForeignKeyViolation
        | DatabaseErrorKind::CheckViolation
        | DatabaseErrorKind::NotNullViolation
        | DatabaseErrorKind::RestrictViolation
        | DatabaseErrorKind::ExclusionViolation => return RepoError::InvalidInput { message, constraint },
        DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand => {
            return RepoError::Unavailable { message }
        }
        _ => {}
    }
    // Codes diesel-async does not surface as a kind: recognised by message.
    let m = message.as_str();
    if m.starts_with("app.tenant_id is not set") {
        RepoError::TenantNotSet
    } else if m.starts_with("app.tenant_id is not a valid UUID") {
        RepoError::InvalidTenant
    } else if m.contains(" is append-only: ")
        && info.details().is_some_and(|d| d.contains("accepts INSERT only"))
    {
        RepoError::AppendOnly
    } else if m.starts_with("permission denied for")
        || m.starts_with("new row violates row-level security policy")
        || m.starts_with("must be owner of")
    {
        RepoError::PermissionDenied
    } else if m.starts_with("invalid input syntax for")          // 22P02
        || m.starts_with("invalid byte sequence for encoding")   // 22021
        || m.starts_with("unsupported Unicode escape sequence")  // 22P05 (\u0000 in jsonb)
        || m.starts_with("invalid input value for")              // 22P02 (enum-like)
        || m.starts_with("value too long for type")              // 22001
        || m.starts_with("numeric field overflow")               // 22003
        || m.contains("out of range")
    // 22003 / 22008
    {
        RepoError::InvalidInput { message, constraint }
    } else if m.starts_with("canceling statement due to statement timeout")   // 57014
        || m.starts_with("canceling statement due to lock timeout")           // 55P03
        || m.starts_with("could not obtain lock")
    // 55P03 (NOWAIT)
    {
        RepoError::Timeout { message }
    } else if m.starts_with("terminating connection")            // 57P01/57P02/57P03
        || m.starts_with("the database system is")               // 57P03 starting up / shutting down
        || m.contains("connection closed")
        || m.contains("connection reset")
    {
        RepoError::Unavailable { message }
    } else {
        RepoError::Database(DieselError::DatabaseError(kind, info))
    }
}
