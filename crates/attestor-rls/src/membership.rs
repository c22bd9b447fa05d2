//! The role membership graph: every role a login role can reach, with the
//! shortest path of grants that gets there.
//!
//! It owns the one recursive query over `pg_auth_members` and the rules of
//! reach, read the way the connected server defines them:
//!
//! * PostgreSQL 16 and later: a grant carries `set_option`, `inherit_option`
//!   and `admin_option`. A role reached through grants that all allow SET can
//!   be switched to (`SET ROLE`); once switched to, or from the start, every
//!   further grant that allows INHERIT hands its privileges over. A grant
//!   WITH ADMIN lets its member grant the role to itself, so it counts as a
//!   SET grant. A grant with SET FALSE, INHERIT FALSE and no ADMIN reaches
//!   nothing.
//! * PostgreSQL 15 and earlier: any member may `SET ROLE` to any role it is
//!   a member of, directly or not, so every membership reaches.
//!
//! The rules (`rules/`) decide what a reached role must not be; this module
//! only reads, and it must never write.

use serde::Deserialize;

use crate::db::Db;
use crate::error::Result;
use crate::lit;

/// One role reached from a start role (the start role itself included,
/// with a path of one).
#[derive(Debug, Clone, Deserialize)]
pub struct Reach {
    /// The login role the walk started from.
    pub start: String,
    /// The start role exists (when not, the other fields describe nothing).
    pub exists: bool,
    /// The role reached.
    pub role: String,
    /// Role names from `start` to `role`, both included.
    pub path: Vec<String>,
    /// Some path of grants lets the start role `SET ROLE` to this role (on
    /// PostgreSQL 15 every membership does). Attributes such as SUPERUSER
    /// and BYPASSRLS are never inherited: the start role has them only then.
    pub settable: bool,
    pub superuser: bool,
    pub bypassrls: bool,
    pub createrole: bool,
    pub replication: bool,
    pub can_login: bool,
    /// Owns a relation, function, schema or type in this database, or the
    /// database itself.
    pub owns: bool,
}

impl Reach {
    /// The role is the start role itself.
    pub fn is_start(&self) -> bool {
        self.path.len() <= 1
    }

    /// `a → b → c`.
    pub fn path_text(&self) -> String {
        self.path.join(" → ")
    }

    /// The start role's own grant of the first role on the path (what to
    /// revoke to cut the path at its root).
    pub fn first_hop(&self) -> &str {
        self.path.get(1).map_or(self.role.as_str(), String::as_str)
    }
}

/// `server_version_num` of the connected server.
pub fn server_version(db: &mut Db) -> Result<i64> {
    Ok(db
        .text("SELECT current_setting('server_version_num') AS v")?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// The edges of the graph, as the server's version defines them:
/// `(member, roleid, can_set, can_inherit)`.
fn edges_sql(version: i64) -> &'static str {
    if version >= 160_000 {
        "SELECT am.member, am.roleid, am.set_option OR am.admin_option AS can_set,
                am.inherit_option AS can_inherit
         FROM pg_auth_members am"
    } else {
        "SELECT am.member, am.roleid, true AS can_set, m.rolinherit AS can_inherit
         FROM pg_auth_members am JOIN pg_roles m ON m.oid = am.member"
    }
}

/// Every role each of `starts` reaches, by its shortest path, ordered by
/// start role, path length and name. A start role that does not exist gives
/// one row with `exists = false`.
pub fn reach(db: &mut Db, starts: &[String]) -> Result<Vec<Reach>> {
    let version = server_version(db)?;
    reach_over(db, starts, edges_sql(version))
}

/// [`reach`] over the given edges (a query of `member, roleid, can_set,
/// can_inherit`), so that the rules of reach can be tried on any server.
#[doc(hidden)]
pub fn reach_over(db: &mut Db, starts: &[String], edges: &str) -> Result<Vec<Reach>> {
    let names = starts.iter().map(|s| lit(s)).collect::<Vec<_>>().join(", ");
    db.json(&format!(
        "WITH RECURSIVE edges AS ({edges}),
         walk(start, roleid, settable, path) AS (
             SELECT r.oid, r.oid, true, ARRAY[r.oid]
             FROM pg_roles r WHERE r.rolname = ANY (ARRAY[{names}]::text[])
             UNION
             SELECT w.start, e.roleid, w.settable AND e.can_set, w.path || e.roleid
             FROM walk w JOIN edges e ON e.member = w.roleid
             WHERE (e.can_inherit OR (w.settable AND e.can_set)) AND NOT e.roleid = ANY (w.path)),
         shortest AS (
             SELECT DISTINCT ON (start, roleid) start, roleid, path
             FROM walk ORDER BY start, roleid, array_length(path, 1), settable DESC),
         switchable AS (
             SELECT start, roleid, bool_or(settable) AS settable FROM walk GROUP BY 1, 2)
         SELECT n.n AS start, s.roleid IS NOT NULL AS exists, coalesce(r.rolname::text, n.n) AS role,
                coalesce(ARRAY(SELECT pr.rolname::text FROM unnest(s.path) WITH ORDINALITY AS p(oid, o)
                               JOIN pg_roles pr ON pr.oid = p.oid ORDER BY p.o), ARRAY[n.n]) AS path,
                coalesce(sw.settable, true) AS settable,
                coalesce(r.rolsuper, false) AS superuser, coalesce(r.rolbypassrls, false) AS bypassrls,
                coalesce(r.rolcreaterole, false) AS createrole,
                coalesce(r.rolreplication, false) AS replication,
                coalesce(r.rolcanlogin, false) AS can_login,
                coalesce(EXISTS (SELECT 1 FROM pg_class WHERE relowner = r.oid)
                      OR EXISTS (SELECT 1 FROM pg_proc WHERE proowner = r.oid)
                      OR EXISTS (SELECT 1 FROM pg_namespace WHERE nspowner = r.oid)
                      OR EXISTS (SELECT 1 FROM pg_type WHERE typowner = r.oid)
                      OR EXISTS (SELECT 1 FROM pg_database WHERE datdba = r.oid
                                 AND datname = current_database()),
                      false) AS owns
         FROM unnest(ARRAY[{names}]::text[]) AS n(n)
         LEFT JOIN pg_roles sr ON sr.rolname = n.n
         LEFT JOIN shortest s ON s.start = sr.oid
         LEFT JOIN switchable sw ON sw.start = s.start AND sw.roleid = s.roleid
         LEFT JOIN pg_roles r ON r.oid = s.roleid
         ORDER BY 1, array_length(s.path, 1), 3",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_options_are_read_from_sixteen_on() {
        assert!(edges_sql(160_000).contains("set_option"));
        assert!(edges_sql(180_001).contains("inherit_option"));
        assert!(!edges_sql(150_014).contains("set_option"));
    }
}
