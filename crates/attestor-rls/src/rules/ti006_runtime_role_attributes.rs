//! TI006 `runtime-role-attributes`: the app and worker login roles are not
//! superusers, do not bypass RLS and own nothing, directly or through a role
//! they are a member of. Owns this rule only; it reads pg_roles and the
//! ownership columns of the catalog and never writes.

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
    /// a runtime role that can `SET ROLE` to such a role has its powers.
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
    let rows: Vec<RoleRow> = cx.db.json(&format!(
        "WITH RECURSIVE names(n) AS (SELECT unnest({l})),
         reach(start, roleid) AS (
             SELECT r.oid, r.oid FROM pg_roles r JOIN names ON r.rolname = names.n
             UNION
             SELECT reach.start, am.roleid FROM pg_auth_members am JOIN reach ON am.member = reach.roleid)
         SELECT names.n AS role, coalesce(r.rolname, names.n) AS reaches, r.oid IS NOT NULL AS exists,
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
        } else {
            format!(
                " through membership of {} (SET ROLE {})",
                row.reaches, row.reaches
            )
        };
        let fix_for = |what: &str| {
            if via.is_empty() {
                format!("ALTER ROLE {} {what}", row.role)
            } else {
                format!("REVOKE {} FROM {}", row.reaches, row.role)
            }
        };
        if row.superuser {
            cx.finding(&object,
                format!("is a superuser{via}"),
                fix_for("NOSUPERUSER"),
            );
        }
        if row.bypassrls {
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
    superuser: bool,
    bypassrls: bool,
    owns: bool,
}
