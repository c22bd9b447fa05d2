//! TI006 `runtime-role-attributes`: the app and worker login roles are not
//! superusers, do not bypass RLS and own nothing, directly or through a role
//! they are a member of. Owns this rule only; it reads pg_roles,
//! pg_auth_members and the ownership columns of the catalog and never
//! writes. Membership is read as the server grants it: from PostgreSQL 16 on
//! each grant carries its own SET and INHERIT options, before that every
//! membership allows SET ROLE and inheritance follows the member's INHERIT
//! attribute.

use super::prelude::*;

use serde::Deserialize;

use super::text_array;

rule! {
    /// The login roles `<module>_app` and `<module>_worker`, and every role they are a
    /// member of, must be neither SUPERUSER nor BYPASSRLS and must own no object in
    /// the database.
    ///
    /// A superuser or a BYPASSRLS role is not subject to Row-Level Security at all.
    /// An owner of a table is exempt from its non-forced policies and can simply
    /// disable them (ALTER TABLE … DISABLE ROW LEVEL SECURITY). Membership counts:
    /// a runtime role that can `SET ROLE` to such a role has all its powers, and one
    /// that inherits an owner's privileges may alter the owner's tables without
    /// SET ROLE. SUPERUSER and BYPASSRLS are never inherited, only reached by SET
    /// ROLE. From PostgreSQL 16 on a grant says whether it allows SET ROLE and
    /// whether it is inherited (on 15 every membership allows SET ROLE); a grant
    /// WITH ADMIN OPTION counts as both, because its holder may grant the role to
    /// itself with them.
    pub static RULE = {
        id: "TI006",
        name: "runtime-role-attributes",
        summary: "runtime roles (and the roles they reach) are not superuser, not BYPASSRLS and own nothing",
        fix: "ALTER ROLE … NOSUPERUSER NOBYPASSRLS; REASSIGN OWNED BY the runtime role TO the owner role; REVOKE the membership that reaches such a role.",
        needs: None,
        kind: Kind::Static(check),
    };
}

fn check(cx: &mut Ctx<'_>) -> Result<()> {
    let m = cx.module;
    let roles: Vec<String> = m.runtime_roles().to_vec();
    for r in &roles {
        cx.examine(format!("role {r}"));
    }
    // One edge per membership grant: may the member SET ROLE to the role, and
    // does it inherit the role's privileges?
    let edges = if cx.catalog.at_least(16) {
        "SELECT member, roleid, set_option OR admin_option AS can_set,
                inherit_option OR admin_option AS can_inherit
         FROM pg_auth_members"
    } else {
        "SELECT am.member, am.roleid, true AS can_set, m.rolinherit AS can_inherit
         FROM pg_auth_members am JOIN pg_roles m ON m.oid = am.member"
    };
    let rows: Vec<RoleRow> = cx.db.json(&format!(
        "WITH RECURSIVE names(n) AS (SELECT unnest({l})),
         edges AS ({edges}),
         becomes(start, roleid) AS (
             SELECT r.oid, r.oid FROM pg_roles r JOIN names ON r.rolname = names.n
             UNION
             SELECT b.start, e.roleid FROM edges e JOIN becomes b ON e.member = b.roleid WHERE e.can_set),
         reach(start, roleid) AS (
             SELECT start, roleid FROM becomes
             UNION
             SELECT x.start, e.roleid FROM edges e JOIN reach x ON e.member = x.roleid WHERE e.can_inherit)
         SELECT names.n AS role, coalesce(r.rolname, names.n) AS reaches, r.oid IS NOT NULL AS exists,
                EXISTS (SELECT 1 FROM becomes b WHERE b.start = s.oid AND b.roleid = r.oid) AS can_set,
                coalesce(r.rolsuper, false) AS superuser, coalesce(r.rolbypassrls, false) AS bypassrls,
                coalesce(EXISTS (SELECT 1 FROM pg_class WHERE relowner = r.oid)
                      OR EXISTS (SELECT 1 FROM pg_proc WHERE proowner = r.oid)
                      OR EXISTS (SELECT 1 FROM pg_namespace WHERE nspowner = r.oid)
                      OR EXISTS (SELECT 1 FROM pg_type WHERE typowner = r.oid)
                      OR EXISTS (SELECT 1 FROM pg_database WHERE datdba = r.oid AND datname = current_database()),
                      false) AS owns
         FROM names
         LEFT JOIN pg_roles s ON s.rolname = names.n
         LEFT JOIN reach ON reach.start = s.oid
         LEFT JOIN pg_roles r ON r.oid = reach.roleid
         ORDER BY 1, 2",
        l = text_array(&roles)
    ))?;
    for row in rows {
        let object = format!("role {}", row.role);
        if !row.exists {
            cx.finding(&object,
                "the role does not exist",
                "run the module's first migration (it creates the roles)",
            );
            continue;
        }
        let via = if row.reaches == row.role {
            String::new()
        } else if row.can_set {
            format!(
                " through membership of {} (SET ROLE {})",
                row.reaches, row.reaches
            )
        } else {
            format!(
                " through membership of {} (inherits its privileges)",
                row.reaches
            )
        };
        let fix_for = |what: &str| {
            if via.is_empty() {
                format!("ALTER ROLE {} {what}", row.role)
            } else {
                format!("REVOKE {} FROM {}", row.reaches, row.role)
            }
        };
        // Attributes are not inherited: they need SET ROLE.
        if row.superuser && row.can_set {
            cx.finding(&object,
                format!("is a superuser{via}"),
                fix_for("NOSUPERUSER"),
            );
        }
        if row.bypassrls && row.can_set {
            cx.finding(&object,
                format!("bypasses RLS{via}"),
                fix_for("NOBYPASSRLS"),
            );
        }
        if row.owns {
            cx.finding(&object,
                format!("owns objects in this database{via} (an owner is exempt from non-forced RLS and can disable it)"),
                if via.is_empty() {
                    format!("REASSIGN OWNED BY {} TO {}", row.role, m.owner_role())
                } else {
                    format!("REVOKE {} FROM {}", row.reaches, row.role)
                },
            );
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct RoleRow {
    role: String,
    reaches: String,
    exists: bool,
    can_set: bool,
    superuser: bool,
    bypassrls: bool,
    owns: bool,
}
