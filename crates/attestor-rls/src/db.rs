//! A thin wrapper over one diesel `PgConnection`: one session of the verifier.
//!
//! It owns three ways of talking to PostgreSQL: plain statements
//! ([`Db::exec`]), catalog queries whose rows come back as one JSON array
//! ([`Db::json`], so the catalog structs are plain serde types), and
//! *probes* ([`Db::probe`]): a statement run inside a PL/pgSQL block that
//! catches any error and reports its SQLSTATE, so a refused statement never
//! aborts the surrounding (always rolled back) transaction. It must never
//! commit: callers open the transaction with [`Db::begin`] and end it with
//! [`Db::rollback`].

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// One connection.
pub struct Db {
    conn: PgConnection,
    /// Whether the session is on a Citus coordinator, once asked.
    citus: Option<bool>,
}

#[derive(QueryableByName)]
struct TextRow {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    v: Option<String>,
}

/// What a probe did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `None` when the statement succeeded.
    pub sqlstate: Option<String>,
    /// Rows affected, or the count returned by a counting probe.
    pub rows: i64,
    /// The error message, when it failed.
    pub message: String,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.sqlstate.is_none()
    }
    pub fn describe(&self) -> String {
        match &self.sqlstate {
            None => format!("succeeded ({} rows)", self.rows),
            Some(s) => format!("failed with {s}: {}", self.message),
        }
    }
}

impl Db {
    pub fn connect(url: &str) -> Result<Db> {
        let conn = PgConnection::establish(url).map_err(|source| Error::Connect {
            url: redact(url),
            source,
        })?;
        Ok(Db { conn, citus: None })
    }

    /// Whether this session is on a Citus coordinator (the `citus`
    /// extension installed and this node in group 0): the shards of its
    /// distributed tables live on the workers, which see only what the
    /// session forwards to them.
    pub fn citus_coordinator(&mut self) -> Result<bool> {
        if let Some(c) = self.citus {
            return Ok(c);
        }
        let installed = self.text(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus')::text AS v",
        )?;
        let c = if installed.as_deref() == Some("true") {
            self.text("SELECT ((SELECT groupid FROM pg_catalog.pg_dist_local_group) = 0)::text AS v")?
        } else {
            None
        };
        let c = c.as_deref() == Some("true");
        self.citus = Some(c);
        Ok(c)
    }

    /// The tenant context for the rest of the transaction, set the way the
    /// application's pools set it on this server: `set_config(…, true)` on
    /// plain PostgreSQL; on a Citus coordinator `SET LOCAL` with
    /// `citus.propagate_set_commands = 'local'` (the SetLocal pools' mode),
    /// the only form Citus forwards to the workers holding the shards, so the
    /// policies on the shards see the same tenant as the coordinator.
    pub fn set_tenant(&mut self, tenant: &str) -> Result<()> {
        let lit = crate::lit(tenant);
        if self.citus_coordinator()? {
            self.exec(&format!(
                "SET LOCAL citus.propagate_set_commands = 'local'; SET LOCAL app.tenant_id = {lit}"
            ))
        } else {
            self.exec(&format!("SELECT set_config('app.tenant_id', {lit}, true)"))
        }
    }

    /// No tenant for the rest of the transaction, as a session that never
    /// set one has it: the value the login session started with (its role's
    /// and database's defaults), on the coordinator and on the workers.
    pub fn unset_tenant(&mut self) -> Result<()> {
        if self.citus_coordinator()? {
            self.exec("SET LOCAL citus.propagate_set_commands = 'local'; SET LOCAL app.tenant_id TO DEFAULT")
        } else {
            self.exec("SET LOCAL app.tenant_id TO DEFAULT")
        }
    }

    /// Run one or more statements.
    pub fn exec(&mut self, sql: &str) -> Result<()> {
        self.conn.batch_execute(sql).map_err(|e| Error::sql(sql, e))
    }

    /// One text value (the first column of the first row must be aliased `v`).
    pub fn text(&mut self, sql: &str) -> Result<Option<String>> {
        let rows: Vec<TextRow> = diesel::sql_query(sql)
            .load(&mut self.conn)
            .map_err(|e| Error::sql(sql, e))?;
        Ok(rows.into_iter().next().and_then(|r| r.v))
    }

    /// The rows of `sql` as a JSON array, deserialized.
    pub fn json<T: DeserializeOwned>(&mut self, sql: &str) -> Result<Vec<T>> {
        let wrapped = format!("SELECT coalesce(json_agg(q), '[]')::text AS v FROM ({sql}) AS q");
        let text = self.text(&wrapped)?.unwrap_or_else(|| "[]".into());
        serde_json::from_str(&text).map_err(|source| Error::Decode {
            statement: short(sql),
            source,
        })
    }

    /// Like [`Db::text`], but a failing statement is rolled back to a
    /// savepoint and returned as `Err(message)` instead of aborting the
    /// surrounding transaction.
    pub fn try_text(&mut self, sql: &str) -> Result<std::result::Result<Option<String>, String>> {
        self.exec("SAVEPOINT rls_try")?;
        match self.text(sql) {
            Ok(v) => {
                self.exec("RELEASE SAVEPOINT rls_try")?;
                Ok(Ok(v))
            }
            Err(e) => {
                self.exec("ROLLBACK TO SAVEPOINT rls_try; RELEASE SAVEPOINT rls_try")?;
                Ok(Err(e.server_message()))
            }
        }
    }

    pub fn begin(&mut self) -> Result<()> {
        self.exec("BEGIN")
    }

    pub fn rollback(&mut self) -> Result<()> {
        self.exec("ROLLBACK")
    }

    /// Run `sql` in a sub-transaction and report what happened. With
    /// `count`, `sql` is a query and `rows` is its number of rows.
    pub fn probe(&mut self, sql: &str, count: bool) -> Result<Outcome> {
        assert!(
            !sql.contains("$rls_q$"),
            "probe text may not contain the quote tag"
        );
        let run = if count {
            format!("EXECUTE $rls_q$SELECT count(*) FROM ({sql}) AS s$rls_q$ INTO n;")
        } else {
            format!("EXECUTE $rls_q${sql}$rls_q$;\n  GET DIAGNOSTICS n = ROW_COUNT;")
        };
        let block = format!(
            "DO $rls_probe$\nDECLARE n bigint;\nBEGIN\n  {run}\n  \
             PERFORM set_config('attestor_rls.probe', 'ok:' || n, true);\n\
             EXCEPTION WHEN OTHERS THEN\n  \
             PERFORM set_config('attestor_rls.probe', 'err:' || SQLSTATE || ':' || SQLERRM, true);\n\
             END\n$rls_probe$"
        );
        self.exec(&block)?;
        let result = self
            .text("SELECT current_setting('attestor_rls.probe') AS v")?
            .unwrap_or_default();
        Ok(parse_outcome(&result))
    }
}

fn parse_outcome(s: &str) -> Outcome {
    if let Some(n) = s.strip_prefix("ok:") {
        Outcome {
            sqlstate: None,
            rows: n.parse().unwrap_or(0),
            message: String::new(),
        }
    } else {
        let rest = s.strip_prefix("err:").unwrap_or(s);
        let (state, message) = rest.split_once(':').unwrap_or((rest, ""));
        Outcome {
            sqlstate: Some(state.to_owned()),
            rows: 0,
            message: message.to_owned(),
        }
    }
}

/// A URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

pub(crate) fn short(sql: &str) -> String {
    let one_line: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 300 {
        format!("{}…", one_line.chars().take(300).collect::<String>())
    } else {
        one_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_parse() {
        assert_eq!(parse_outcome("ok:3").rows, 3);
        let e = parse_outcome("err:42501:new row violates: x");
        assert_eq!(e.sqlstate.as_deref(), Some("42501"));
        assert_eq!(e.message, "new row violates: x");
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
