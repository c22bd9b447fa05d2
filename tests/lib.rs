//! Shared helpers for the workspace-level end-to-end tests in `tests/tests/`.
//!
//! Owns small, explicit building blocks (a tenant transaction on a plain
//! connection, catalog row types). It must never connect as a superuser to
//! read tenant rows: catalog inspection uses the admin URL, data access uses
//! `attestor_app`.

use diesel::sql_types::Text;
use diesel::{Connection, PgConnection, QueryResult, RunQueryDsl};
use uuid::Uuid;

/// Run `f` in a transaction with `app.tenant_id` set (transaction-local)
/// to `tenant`, the way the repository guard does it in the mode the test
/// server needs: `set_config(…, true)` on plain PostgreSQL, `SET LOCAL` on
/// a Citus coordinator (which passes only `SET LOCAL` on to its shards,
/// with `citus.propagate_set_commands = 'local'`).
pub fn in_tenant<T>(
    conn: &mut PgConnection,
    tenant: Uuid,
    f: impl FnOnce(&mut PgConnection) -> QueryResult<T>,
) -> QueryResult<T> {
    let set_local = attestor_testdb::shared().tenant_context_needs_set_local();
    if set_local {
        diesel::sql_query("SET citus.propagate_set_commands = 'local'").execute(conn)?;
    }
    conn.transaction(|c| {
        if set_local {
            // A UUID's text has no quote to escape.
            diesel::sql_query(format!("SET LOCAL app.tenant_id = '{tenant}'")).execute(c)?;
        } else {
            diesel::sql_query("SELECT set_config('app.tenant_id', $1, true)")
                .bind::<Text, _>(tenant.to_string())
                .execute(c)?;
        }
        f(c)
    })
}

/// One text column, for ad-hoc catalog queries.
#[derive(Debug, diesel::QueryableByName, PartialEq, Eq, PartialOrd, Ord, Clone)]
pub struct Name {
    #[diesel(sql_type = Text)]
    pub name: String,
}

/// Names returned by `sql`, sorted.
pub fn names(conn: &mut PgConnection, sql: &str) -> Vec<String> {
    let mut v: Vec<String> = diesel::sql_query(sql)
        .load::<Name>(conn)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .map(|n| n.name)
        .collect();
    v.sort();
    v
}

/// The tables of schema `attestor`.
pub fn attestor_tables(conn: &mut PgConnection) -> Vec<String> {
    names(
        conn,
        "SELECT c.relname::text AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'attestor' AND c.relkind IN ('r', 'p')",
    )
}

/// A repository pool configuration for `url` in the tenant context mode the
/// test server needs (`SetLocal` on a Citus coordinator, `SetConfig`
/// elsewhere; one mode per pool, as in [`in_tenant`]).
pub fn pool_config(url: impl Into<String>) -> attestor_repo::DatabaseConfig {
    let mode = if attestor_testdb::shared().tenant_context_needs_set_local() {
        attestor_repo::TenantContextMode::SetLocal
    } else {
        attestor_repo::TenantContextMode::SetConfig
    };
    attestor_repo::DatabaseConfig::new(url).with_tenant_context_mode(mode)
}
