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
/// to `tenant`, the way the repository guard does it.
pub fn in_tenant<T>(
    conn: &mut PgConnection,
    tenant: Uuid,
    f: impl FnOnce(&mut PgConnection) -> QueryResult<T>,
) -> QueryResult<T> {
    conn.transaction(|c| {
        diesel::sql_query("SELECT set_config('app.tenant_id', $1, true)")
            .bind::<Text, _>(tenant.to_string())
            .execute(c)?;
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
