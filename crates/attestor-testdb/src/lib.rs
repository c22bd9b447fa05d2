//! Throwaway PostgreSQL for tests and tooling.
//!
//! This crate owns everything needed to get a real, migrated PostgreSQL
//! database without Docker or downloads:
//!
//! * [`binaries`] finds the local server binaries (`initdb`, `postgres`,
//!   `pg_ctl`) and says how to install them when they are missing;
//! * [`cluster`] starts a private cluster on a unix socket in a temporary
//!   directory, guarded by a watchdog that stops it and deletes its files when
//!   the owning process ends (normally, after a panic, or when killed);
//! * [`server`] wraps either that embedded cluster or the server named by
//!   `DATABASE_URL`, runs the migrations into a template database once and
//!   clones one database per test from it (`CREATE DATABASE … TEMPLATE …`);
//! * [`citus`] finds the Citus extension next to those binaries, starts a
//!   throwaway Citus cluster (a coordinator and workers, each such a
//!   cluster) and prepares a database on every node of a coordinator;
//! * [`conn`] renders connection URLs for the admin, app and worker roles.
//!
//! It must never touch a database it did not create, never connect tests as a
//! superuser on their behalf (tests pick the role URL they need), and never
//! leave a `postgres` process behind.

pub mod binaries;
pub mod citus;
pub mod cluster;
pub mod conn;
pub mod server;

pub use binaries::PgBinaries;
pub use citus::{CitusCluster, CitusExtension};
pub use cluster::Cluster;
pub use conn::ConnParams;
pub use server::{shared, Server, ServerVersion, TestDatabase};

/// Everything that can go wrong while providing a database.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No PostgreSQL server binaries were found anywhere we looked.
    #[error(
        "PostgreSQL server binaries (initdb, postgres, pg_ctl) not found (looked in: {searched}); \
         install them, e.g. `apt-get install postgresql` on Debian/Ubuntu or \
         `brew install postgresql@15` on macOS, or set ATTESTOR_PG_BINDIR to their directory"
    )]
    MissingBinaries {
        /// The places that were searched, for the message.
        searched: String,
    },
    /// The chosen server binaries have no `citus` extension installed.
    #[error(
        "Citus is not installed for the PostgreSQL server binaries in {binaries} \
         (no citus.control and citus.so in: {looked})"
    )]
    CitusMissing {
        /// The server binaries' directory.
        binaries: String,
        /// The directories that were searched.
        looked: String,
    },
    /// An external command failed.
    #[error("`{command}` failed ({status}): {output}")]
    Command {
        command: String,
        status: String,
        output: String,
    },
    /// Filesystem or process error.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The server did not accept connections in time.
    #[error("PostgreSQL did not become ready within {seconds}s; server log:\n{log}")]
    NotReady { seconds: u64, log: String },
    /// Could not connect.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: diesel::ConnectionError,
    },
    /// A SQL statement failed.
    #[error("{context}: {source}")]
    Sql {
        context: String,
        #[source]
        source: diesel::result::Error,
    },
    /// Running migrations failed.
    #[error("migrations failed on database {database}: {message}")]
    Migration { database: String, message: String },
    /// The Citus distribution step failed (the database is left as it was).
    #[error("Citus distribution of database {database} failed: {message}")]
    Distribution { database: String, message: String },
    /// `DATABASE_URL` could not be used.
    #[error("invalid DATABASE_URL: {0}")]
    BadUrl(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// A database error with the server's detail and hint, when it sent them.
    pub(crate) fn describe(e: &diesel::result::Error) -> String {
        match e {
            diesel::result::Error::DatabaseError(_, info) => {
                let mut text = info.message().to_owned();
                if let Some(detail) = info.details() {
                    text.push_str(" (");
                    text.push_str(detail);
                    text.push(')');
                }
                if let Some(hint) = info.hint() {
                    text.push_str("; hint: ");
                    text.push_str(hint);
                }
                text
            }
            other => other.to_string(),
        }
    }

    pub(crate) fn sql(context: impl Into<String>, source: diesel::result::Error) -> Self {
        Error::Sql {
            context: context.into(),
            source,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
