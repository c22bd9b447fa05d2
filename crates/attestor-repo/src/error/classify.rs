//! The one table that decides which [`RepoError`](super::RepoError) a
//! PostgreSQL error becomes.
//!
//! Owns [`RULES`]: one row per condition, each naming the SQLSTATE it stands
//! for, how it is recognised and the class it maps to. The first matching row
//! wins. diesel-async keeps the SQLSTATE only for the codes diesel has a
//! `DatabaseErrorKind` for (unique, foreign key, check, not-null, restrict,
//! exclusion, serialization failure, read-only transaction); every other code
//! is recognised by the server's primary message, compared in lower case.
//! Those messages are PostgreSQL's English texts (the server's default
//! `lc_messages`; a server that reports in another language leaves them
//! unclassified, as `RepoError::Database`), except the `AT00x` messages, which
//! are the module's own (migration `…000002_tenant_helpers`).
//!
//! Every row with an `example` is run against a real server by this module's
//! tests, as `attestor_app` inside a tenant transaction, and must be the row
//! that classifies the error it raises; the others (errors that need a second
//! session, a superuser or a dying server) are tested with the message the
//! server writes, and end to end in `tests/guard.rs` where they can be.
//!
//! Must never: classify by anything but this table (no second classifier in
//! another crate), or turn an error it does not recognise into anything but
//! `RepoError::Database`.

use diesel::result::DatabaseErrorKind;

/// What an error means to a caller; [`super::RepoError`] adds the details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Conflict,
    InvalidInput,
    TenantNotSet,
    InvalidTenant,
    AppendOnly,
    PermissionDenied,
    Timeout,
    SerializationFailure,
    Unavailable,
}

/// How a row recognises an error.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Condition {
    /// diesel kept the SQLSTATE as this kind.
    Kind(DatabaseErrorKind),
    /// The primary message starts with this (lower case).
    Prefix(&'static str),
    /// The primary message contains this (lower case).
    Contains(&'static str),
    /// The primary message contains `message` and the DETAIL contains `detail`.
    ContainsWithDetail {
        message: &'static str,
        detail: &'static str,
    },
}

/// One row of the table. `sqlstate` and `example` are for readers and for
/// the tests that run every example; classification reads only the rest.
#[derive(Debug)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) struct Rule {
    /// The SQLSTATE (or condition) the row stands for, for readers and tests.
    pub(crate) sqlstate: &'static str,
    pub(crate) condition: Condition,
    pub(crate) class: Class,
    /// A statement that raises this error when run as `attestor_app` in a
    /// tenant transaction, or `None` when it needs more than that.
    pub(crate) example: Option<&'static str>,
}

use Class::*;
use Condition::*;

/// The table, in the order it is consulted.
pub(crate) static RULES: &[Rule] = &[
    Rule {
        sqlstate: "23505 unique_violation",
        condition: Kind(DatabaseErrorKind::UniqueViolation),
        class: Conflict,
        example: Some("DO $$BEGIN RAISE EXCEPTION 'duplicate key' USING ERRCODE = 'unique_violation'; END$$"),
    },
    Rule {
        sqlstate: "23503 foreign_key_violation",
        condition: Kind(DatabaseErrorKind::ForeignKeyViolation),
        class: InvalidInput,
        example: Some(
            "DO $$BEGIN RAISE EXCEPTION 'no parent' USING ERRCODE = 'foreign_key_violation'; END$$",
        ),
    },
    Rule {
        sqlstate: "23514 check_violation",
        condition: Kind(DatabaseErrorKind::CheckViolation),
        class: InvalidInput,
        example: Some("DO $$BEGIN RAISE EXCEPTION 'bad value' USING ERRCODE = 'check_violation'; END$$"),
    },
    Rule {
        sqlstate: "23502 not_null_violation",
        condition: Kind(DatabaseErrorKind::NotNullViolation),
        class: InvalidInput,
        example: Some("DO $$BEGIN RAISE EXCEPTION 'null value' USING ERRCODE = 'not_null_violation'; END$$"),
    },
    Rule {
        sqlstate: "23001 restrict_violation",
        condition: Kind(DatabaseErrorKind::RestrictViolation),
        class: InvalidInput,
        example: Some("DO $$BEGIN RAISE EXCEPTION 'restricted' USING ERRCODE = 'restrict_violation'; END$$"),
    },
    Rule {
        sqlstate: "23P01 exclusion_violation",
        condition: Kind(DatabaseErrorKind::ExclusionViolation),
        class: InvalidInput,
        example: Some("DO $$BEGIN RAISE EXCEPTION 'overlap' USING ERRCODE = 'exclusion_violation'; END$$"),
    },
    Rule {
        sqlstate: "40001 serialization_failure",
        condition: Kind(DatabaseErrorKind::SerializationFailure),
        class: SerializationFailure,
        example: Some(
            "DO $$BEGIN RAISE EXCEPTION 'could not serialize' USING ERRCODE = 'serialization_failure'; END$$",
        ),
    },
    Rule {
        sqlstate: "25006 read_only_sql_transaction (a standby, or default_transaction_read_only)",
        condition: Kind(DatabaseErrorKind::ReadOnlyTransaction),
        class: Unavailable,
        example: Some("SET LOCAL transaction_read_only = on; DELETE FROM attestor.rekor_submission_queue"),
    },
    Rule {
        sqlstate: "connection closed by the server or the network",
        condition: Kind(DatabaseErrorKind::ClosedConnection),
        class: Unavailable,
        example: None,
    },
    Rule {
        sqlstate: "request could not be sent (no SQLSTATE: the driver's own error)",
        condition: Kind(DatabaseErrorKind::UnableToSendCommand),
        class: Unavailable,
        example: None,
    },
    Rule {
        sqlstate: "AT001 tenant not set (the module's helper)",
        condition: Prefix("app.tenant_id is not set"),
        class: TenantNotSet,
        example: Some("SELECT set_config('app.tenant_id', '', true), attestor_app.require_current_tenant()"),
    },
    Rule {
        sqlstate: "AT002 tenant not a UUID, or nil (the module's helper)",
        condition: Prefix("app.tenant_id is not a valid uuid"),
        class: InvalidTenant,
        example: Some(
            "SELECT set_config('app.tenant_id', 'nope', true), attestor_app.require_current_tenant()",
        ),
    },
    Rule {
        sqlstate: "AT003 append-only table (the module's trigger)",
        condition: ContainsWithDetail {
            message: " is append-only: ",
            detail: "accepts insert only",
        },
        class: AppendOnly,
        example: None,
    },
    Rule {
        sqlstate: "42501 insufficient_privilege (missing grant)",
        condition: Prefix("permission denied for"),
        class: PermissionDenied,
        example: Some("DELETE FROM attestor.verdict_ledger"),
    },
    Rule {
        sqlstate: "42501 insufficient_privilege (row-level security WITH CHECK)",
        condition: Prefix("new row violates row-level security policy"),
        class: PermissionDenied,
        example: None,
    },
    Rule {
        sqlstate: "42501 insufficient_privilege (DDL on an object the role does not own)",
        condition: Prefix("must be owner of"),
        class: PermissionDenied,
        example: Some("ALTER TABLE attestor.sbom_entries ADD COLUMN x integer"),
    },
    Rule {
        sqlstate: "22P02 invalid_text_representation",
        condition: Prefix("invalid input syntax for"),
        class: InvalidInput,
        example: Some("SELECT 'x'::uuid"),
    },
    Rule {
        sqlstate: "22021 character_not_in_repertoire",
        condition: Prefix("invalid byte sequence for encoding"),
        class: InvalidInput,
        example: Some("SELECT convert_from('\\xff'::bytea, 'UTF8')"),
    },
    Rule {
        sqlstate: "22P05 untranslatable_character (\\u0000 in jsonb)",
        condition: Prefix("unsupported unicode escape sequence"),
        class: InvalidInput,
        example: Some("SELECT '\"\\u0000\"'::jsonb"),
    },
    Rule {
        sqlstate: "22P02 invalid_text_representation (enumerations)",
        condition: Prefix("invalid input value for"),
        class: InvalidInput,
        example: None,
    },
    Rule {
        sqlstate: "22001 string_data_right_truncation",
        condition: Prefix("value too long for type"),
        class: InvalidInput,
        example: Some("DO $$DECLARE v varchar(2); BEGIN v := 'abc'; END$$"),
    },
    Rule {
        sqlstate: "22003 numeric_value_out_of_range",
        condition: Prefix("numeric field overflow"),
        class: InvalidInput,
        example: Some("SELECT 10::numeric(1, 0)"),
    },
    Rule {
        sqlstate: "22003 / 22008 value out of range",
        condition: Contains("out of range"),
        class: InvalidInput,
        example: Some("SELECT 2147483648::int4"),
    },
    Rule {
        sqlstate: "57014 query_canceled (statement_timeout)",
        condition: Prefix("canceling statement due to statement timeout"),
        class: Timeout,
        example: Some("SET LOCAL statement_timeout = '10ms'; SELECT pg_sleep(1)"),
    },
    Rule {
        sqlstate: "55P03 lock_not_available (lock_timeout)",
        condition: Prefix("canceling statement due to lock timeout"),
        class: Timeout,
        example: None,
    },
    Rule {
        sqlstate: "55P03 lock_not_available (NOWAIT)",
        condition: Prefix("could not obtain lock"),
        class: Timeout,
        example: None,
    },
    Rule {
        sqlstate: "40P01 deadlock_detected",
        condition: Prefix("deadlock detected"),
        class: SerializationFailure,
        example: None,
    },
    Rule {
        sqlstate: "57P01 / 57P02 / 57P03 terminating connection",
        condition: Prefix("terminating connection"),
        class: Unavailable,
        example: Some("SELECT pg_terminate_backend(pg_backend_pid())"),
    },
    Rule {
        sqlstate: "57P03 cannot_connect_now (starting up, shutting down, in recovery)",
        condition: Prefix("the database system is"),
        class: Unavailable,
        example: None,
    },
    Rule {
        sqlstate: "connection closed (the driver's message)",
        condition: Contains("connection closed"),
        class: Unavailable,
        example: None,
    },
    Rule {
        sqlstate: "connection reset (the operating system's message, any case)",
        condition: Contains("connection reset"),
        class: Unavailable,
        example: None,
    },
];

impl Condition {
    fn matches(&self, kind: DatabaseErrorKind, message: &str, detail: &str) -> bool {
        match *self {
            Kind(k) => k == kind,
            Prefix(p) => message.starts_with(p),
            Contains(p) => message.contains(p),
            ContainsWithDetail {
                message: m,
                detail: d,
            } => message.contains(m) && detail.contains(d),
        }
    }
}

/// The first row that recognises the error, if any.
pub(crate) fn rule_for(
    kind: DatabaseErrorKind,
    message: &str,
    detail: Option<&str>,
) -> Option<&'static Rule> {
    let message = message.to_lowercase();
    let detail = detail.unwrap_or("").to_lowercase();
    RULES
        .iter()
        .find(|r| r.condition.matches(kind, &message, &detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(kind: DatabaseErrorKind, message: &str, detail: Option<&str>) -> Option<Class> {
        rule_for(kind, message, detail).map(|r| r.class)
    }

    #[test]
    fn patterns_are_lower_case_so_matching_ignores_case() {
        for r in RULES {
            let patterns: Vec<&str> = match r.condition {
                Kind(_) => vec![],
                Prefix(p) | Contains(p) => vec![p],
                ContainsWithDetail { message, detail } => vec![message, detail],
            };
            for p in patterns {
                assert_eq!(
                    p,
                    p.to_lowercase(),
                    "row {}: pattern must be lower case",
                    r.sqlstate
                );
            }
        }
        let u = DatabaseErrorKind::Unknown;
        assert_eq!(
            class(u, "Connection reset by peer (os error 104)", None),
            Some(Unavailable)
        );
        assert_eq!(
            class(u, "error communicating: connection reset", None),
            Some(Unavailable)
        );
        assert_eq!(class(u, "Connection closed", None), Some(Unavailable));
    }

    #[test]
    fn every_row_is_reachable() {
        // A row shadowed by an earlier one could never classify anything.
        for (i, r) in RULES.iter().enumerate() {
            let (kind, message, detail) = match r.condition {
                Kind(k) => (k, "x".to_owned(), None),
                Prefix(p) | Contains(p) => (DatabaseErrorKind::Unknown, format!("{p} tail"), None),
                ContainsWithDetail { message, detail } => (
                    DatabaseErrorKind::Unknown,
                    format!("table t{message}x"),
                    Some(format!("it {detail}")),
                ),
            };
            let got = rule_for(kind, &message, detail.as_deref()).map(|g| g as *const Rule);
            assert_eq!(
                got,
                Some(&RULES[i] as *const Rule),
                "row {} is shadowed",
                r.sqlstate
            );
        }
    }

    /// The messages of the rows without an example, as PostgreSQL writes them.
    #[test]
    fn rows_without_an_example_match_the_servers_own_text() {
        let u = DatabaseErrorKind::Unknown;
        let cases: &[(&str, Option<&str>, Class)] = &[
            (
                "attestor.audit_log is append-only: UPDATE is refused",
                Some("attestor.audit_log accepts INSERT only."),
                AppendOnly,
            ),
            (
                "new row violates row-level security policy for table \"sbom_entries\"",
                None,
                PermissionDenied,
            ),
            ("canceling statement due to lock timeout", None, Timeout),
            ("could not obtain lock on relation \"spines\"", None, Timeout),
            (
                "deadlock detected",
                Some("Process 1 waits for ShareLock on transaction 2"),
                SerializationFailure,
            ),
            ("the database system is shutting down", None, Unavailable),
            (
                "invalid input value for enum mood: \"sideways\"",
                None,
                InvalidInput,
            ),
            ("the database system is in recovery mode", None, Unavailable),
        ];
        for (message, detail, want) in cases {
            assert_eq!(class(u, message, *detail), Some(*want), "{message}");
        }
        // Append-only needs its DETAIL: the same words elsewhere are not AT003.
        assert_eq!(class(u, "x is append-only: y", None), None);
        assert_eq!(class(u, "relation \"nope\" does not exist", None), None);
        assert_eq!(
            class(DatabaseErrorKind::ClosedConnection, "x", None),
            Some(Unavailable)
        );
        assert_eq!(
            class(DatabaseErrorKind::UnableToSendCommand, "x", None),
            Some(Unavailable)
        );
    }
}

/// Every example raises its error on a real server, as `attestor_app` in a
/// tenant transaction, and is classified by its own row.
#[cfg(test)]
mod server_tests {
    use super::*;
    use crate::error::RepoError;
    use crate::{Database, DatabaseConfig, TenantContext, TenantId};
    use diesel_async::SimpleAsyncConnection as _;
    use scoped_futures::ScopedFutureExt as _;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_example_is_classified_by_its_own_row() {
        let tdb = attestor_testdb::shared().test_database().expect("test database");
        let db = Database::connect(DatabaseConfig::new(tdb.app_url()).with_max_connections(1))
            .await
            .expect("connect as attestor_app");
        let mut checked = 0;
        for (i, rule) in RULES.iter().enumerate() {
            let Some(sql) = rule.example else { continue };
            let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
            let slot = seen.clone();
            let err = db
                .transaction(TenantContext::new(TenantId::new_random()), move |tx| {
                    async move {
                        match tx.conn().batch_execute(sql).await {
                            Ok(()) => Ok(()),
                            Err(diesel::result::Error::DatabaseError(kind, info)) => {
                                *slot.lock().unwrap() = rule_for(kind, info.message(), info.details())
                                    .map(|r| (r, info.message().to_owned()));
                                Err(RepoError::from(diesel::result::Error::DatabaseError(kind, info)))
                            }
                            Err(other) => Err(RepoError::from(other)),
                        }
                    }
                    .scope_boxed()
                })
                .await
                .expect_err(sql);
            let (row, message) = seen.lock().unwrap().take().unwrap_or_else(|| {
                panic!(
                    "row {}: `{sql}` gave no database error but {err:?}",
                    rule.sqlstate
                )
            });
            assert!(
                std::ptr::eq(row, &RULES[i]),
                "row {}: `{sql}` raised {message:?}, classified by another row",
                rule.sqlstate
            );
            let class = match err {
                RepoError::Conflict { .. } => Conflict,
                RepoError::InvalidInput { .. } => InvalidInput,
                RepoError::TenantNotSet => TenantNotSet,
                RepoError::InvalidTenant => InvalidTenant,
                RepoError::AppendOnly => AppendOnly,
                RepoError::PermissionDenied => PermissionDenied,
                RepoError::Timeout { .. } => Timeout,
                RepoError::SerializationFailure { .. } => SerializationFailure,
                RepoError::Unavailable { .. } => Unavailable,
                other => panic!("row {}: `{sql}` became {other:?}", rule.sqlstate),
            };
            assert_eq!(class, rule.class, "row {}: `{sql}`", rule.sqlstate);
            checked += 1;
        }
        assert!(checked >= 15, "only {checked} rows have an example");
        // The pool recovers from the rows that end the connection.
        assert!(db.probe_idle().await.expect("probe").is_clean());
    }
}
