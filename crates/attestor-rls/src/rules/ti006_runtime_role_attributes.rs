//! TI006 `runtime-role-attributes`: the app and worker login roles are not
//! superusers, do not bypass RLS and own nothing, directly or through any role
//! they reach (`crate::membership`, whose path the finding names). Owns this
//! rule only; it reads pg_roles and the ownership columns of the catalog and
//! never writes.

use super::prelude::*;


rule! {
    /// The login roles `<module>_app` and `<module>_worker`, and every role they are a
    /// member of, must be neither SUPERUSER nor BYPASSRLS and must own no object in
    /// the database.
    ///
    /// A superuser or a BYPASSRLS role is not subject to Row-Level Security at all.
    /// An owner of a table is exempt from its non-forced policies and can simply
    /// disable them (ALTER TABLE … DISABLE ROW LEVEL SECURITY). Membership counts:
    /// a runtime role that can `SET ROLE` to such a role, or inherits from it,
    /// directly or through other roles, has its powers; the finding names the path
    /// of grants (`attestor_app → x → attestor_owner`). On PostgreSQL 16 and later
    /// a grant reaches only through its SET, INHERIT or ADMIN options.
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
    for row in crate::membership::reach(cx.db, &roles)? {
        let object = format!("role {}", row.start);
        if !row.exists {
            cx.finding(&object,
                "the role does not exist",
                "run the module's first migration (it creates the roles)",
            );
            continue;
        }
        let via = if row.is_start() {
            String::new()
        } else if row.path.len() == 2 && row.settable {
            format!(" through membership of {} (SET ROLE {})", row.role, row.role)
        } else if row.path.len() == 2 {
            format!(" through membership of {} (inherits its privileges)", row.role)
        } else {
            format!(" through membership of {} ({})", row.role, row.path_text())
        };
        let fix_for = |what: &str| {
            if via.is_empty() {
                format!("ALTER ROLE {} {what}", ident(&row.start))
            } else {
                format!("REVOKE {} FROM {}", ident(row.first_hop()), ident(&row.start))
            }
        };
        // Attributes are not inherited: only a role it can switch to lends them.
        let lends_attributes = row.is_start() || row.settable;
        if row.superuser && lends_attributes {
            cx.finding(&object, format!("is a superuser{via}"), fix_for("NOSUPERUSER"));
        }
        if row.bypassrls && lends_attributes {
            cx.finding(&object, format!("bypasses RLS{via}"), fix_for("NOBYPASSRLS"));
        }
        if row.owns {
            cx.finding(&object,
                format!("owns objects in this database{via} (an owner is exempt from non-forced RLS and can disable it)"),
                if via.is_empty() {
                    format!("REASSIGN OWNED BY {} TO {}", ident(&row.start), ident(&m.owner_role()))
                } else {
                    fix_for("")
                },
            );
        }
    }
    Ok(())
}
