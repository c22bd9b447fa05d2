//! The library's one error type.
//!
//! It owns every way the RLS tooling can fail to *run* (a connection, a
//! statement, a file, the exceptions file, a migration); a flaw it finds in
//! a database is never an error but a finding in the report. It must never
//! carry a password: URLs are redacted before they get here.

use std::path::PathBuf;

/// What went wrong while generating or verifying.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Could not connect (the URL is shown without its password).
    #[error("connecting to {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: diesel::ConnectionError,
    },
    /// A statement failed where failure is not an answer.
    #[error("running: {statement}: {source}")]
    Sql {
        statement: String,
        #[source]
        source: diesel::result::Error,
    },
    /// A catalog query returned something the tool cannot decode.
    #[error("decoding the result of: {statement}: {source}")]
    Decode {
        statement: String,
        #[source]
        source: serde_json::Error,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The exceptions file (or diesel.toml) is not valid.
    #[error("{origin}: {message}")]
    Config { origin: String, message: String },
    /// The throwaway server or a scratch database failed.
    #[error(transparent)]
    Server(#[from] attestor_testdb::Error),
    /// Migrations could not be read or run.
    #[error("migrations: {0}")]
    Migrations(String),
    /// The arguments or the sessions given do not allow the requested run.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    pub(crate) fn sql(statement: &str, source: diesel::result::Error) -> Error {
        Error::Sql {
            statement: crate::db::short(statement),
            source,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn config(origin: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Config {
            origin: origin.into(),
            message: message.into(),
        }
    }

    /// The server's own message for a failed statement (the innermost cause).
    pub fn server_message(&self) -> String {
        match self {
            Error::Sql { source, .. } => source.to_string(),
            other => other.to_string(),
        }
    }
}

/// The library's result type.
pub type Result<T> = std::result::Result<T, Error>;
