//! Whether the queue runs on a Citus coordinator.
//!
//! Owns [`has_citus`], the one probe the claim, the lease reclaim and the
//! worker use to pick their by-tenant statements. Must never change
//! anything on the connection.

use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::error::Result;

#[derive(QueryableByName)]
struct HasCitus {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    citus: bool,
}

/// Whether the database has the `citus` extension (its queue table is then
/// distributed by tenant, and refuses a statement over several tenants
/// that locks rows or writes).
pub async fn has_citus(conn: &mut AsyncPgConnection) -> Result<bool> {
    let row: HasCitus = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus') AS citus",
    )
    .get_result(conn)
    .await?;
    Ok(row.citus)
}
