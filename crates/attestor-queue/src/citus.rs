//! Whether the queue runs on a Citus coordinator, and the tenant-by-tenant
//! form its maintenance statements take there.
//!
//! Owns [`has_citus`], the probe, and [`Topology`], its answer kept by the
//! caller; and, for [`crate::lease::reclaim_expired`] and
//! [`crate::retention::purge`], the loop they share on Citus (crate-private
//! `by_tenant`: find the tenants first with one read-only statement, then
//! one statement per tenant until a limit) and the count of the rows their
//! statements changed by new `status` (`StatusCount`). Must never change anything on
//! the connection.
//!
//! The probe is one catalog query. It is not cached per connection:
//! diesel-async's `AsyncPgConnection` has no room for a caller's value (its
//! fields are private, a bb8 pool hands out the bare connection), and a
//! process-wide cache would need a key naming the server, which costs a
//! query of its own. So the caller keeps the answer: [`Topology::probe`]
//! once, then [`crate::lease::reclaim_expired_on`],
//! [`crate::retention::purge_on`] and [`crate::lease::complete_many_on`]
//! with it, which run no probe. Their forms without `_on` probe on every
//! call (one query more each). A kept answer is right as long as nobody
//! creates or drops the `citus` extension under it, the same assumption as
//! the worker's, which probes once when it starts claiming.

use diesel::pg::Pg;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::sql_types::Text;
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::error::Result;

#[derive(QueryableByName)]
struct HasCitus {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    citus: bool,
}

/// Whether the database has the `citus` extension (its queue table is then
/// distributed by tenant, and refuses a statement over several tenants
/// that locks rows or writes). One catalog query on every call; keep the
/// answer in a [`Topology`] to ask once.
pub async fn has_citus(conn: &mut AsyncPgConnection) -> Result<bool> {
    let row: HasCitus = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus') AS citus",
    )
    .get_result(conn)
    .await?;
    Ok(row.citus)
}

/// Which form of the queue's maintenance statements a server takes: the
/// answer of [`has_citus`], kept by the caller so that it asks once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// No `citus` extension (plain PostgreSQL): one statement over all
    /// tenants.
    Plain,
    /// A Citus coordinator: statements that each name one tenant.
    Citus,
}

impl Topology {
    /// Ask the server behind `conn` ([`has_citus`], one query).
    pub async fn probe(conn: &mut AsyncPgConnection) -> Result<Topology> {
        Ok(if has_citus(conn).await? {
            Topology::Citus
        } else {
            Topology::Plain
        })
    }

    /// Whether this is a Citus coordinator.
    pub fn is_citus(self) -> bool {
        self == Topology::Citus
    }
}

/// A row of a statement that returns each row it changed as its new
/// `status`.
#[derive(QueryableByName)]
struct StatusRow {
    #[diesel(sql_type = Text)]
    status: String,
}

#[derive(QueryableByName)]
struct TenantRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    tenant_id: Uuid,
}

/// The rows a statement changed, by their new `status`: `dead`, or any
/// other (requeued by a reclaim, succeeded for a purge).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StatusCount {
    /// Rows now (or, deleted, last) `dead`.
    pub(crate) dead: u64,
    /// Rows with any other status.
    pub(crate) other: u64,
}

impl StatusCount {
    /// Rows counted in all.
    pub(crate) fn total(&self) -> u64 {
        self.dead + self.other
    }

    /// Run `statement` (it returns `status` per changed row) and add its rows.
    pub(crate) async fn run(
        &mut self,
        conn: &mut AsyncPgConnection,
        statement: BoxedSqlQuery<'_, Pg, SqlQuery>,
    ) -> Result<()> {
        let rows: Vec<StatusRow> = statement.load(conn).await?;
        self.add(rows.iter().map(|r| r.status.as_str()));
        Ok(())
    }

    fn add<'a>(&mut self, statuses: impl IntoIterator<Item = &'a str>) {
        for status in statuses {
            if status == "dead" {
                self.dead += 1;
            } else {
                self.other += 1;
            }
        }
    }
}

/// The tenant-by-tenant form for a Citus coordinator, which refuses
/// `FOR UPDATE` over several shards: `tenants` (read-only, returning
/// `tenant_id`, in the order to work them; Citus runs it on every shard and
/// no row is locked), then `per_tenant(tenant, left)` for each of them in
/// turn (a statement naming its tenant, so that it runs on that tenant's
/// shard, changing at most `left` rows and returning their `status`), until
/// `limit` rows changed or no tenant is left.
pub(crate) async fn by_tenant<'q>(
    conn: &mut AsyncPgConnection,
    tenants: BoxedSqlQuery<'q, Pg, SqlQuery>,
    limit: i32,
    mut per_tenant: impl FnMut(Uuid, i32) -> BoxedSqlQuery<'q, Pg, SqlQuery>,
) -> Result<StatusCount> {
    let tenants: Vec<TenantRow> = tenants.load(conn).await?;
    let mut out = StatusCount::default();
    for t in tenants {
        let left = limit - i32::try_from(out.total()).unwrap_or(i32::MAX);
        if left <= 0 {
            break;
        }
        out.run(conn, per_tenant(t.tenant_id, left)).await?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_rows_count_as_dead_and_every_other_status_as_other() {
        let mut c = StatusCount::default();
        c.add(["dead", "queued", "succeeded", "dead", "dead"]);
        assert_eq!(c, StatusCount { dead: 3, other: 2 });
        assert_eq!(c.total(), 5);
        c.add([]);
        assert_eq!(c.total(), 5);
    }
}
