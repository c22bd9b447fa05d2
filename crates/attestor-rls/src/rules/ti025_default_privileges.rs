//! TI025 `default-privileges`: no default privilege (`ALTER DEFAULT
//! PRIVILEGES`) hands future objects of a module's schemas to PUBLIC or to a
//! runtime role, and the owner's future functions are not executable by
//! PUBLIC. Owns this rule only; it reads `pg_default_acl` and never writes.

use serde::Deserialize;

use super::prelude::*;

rule! {
    /// Grants on the module's objects are written by the migrations, one table and
    /// column list at a time, so that each is reviewed. A default privilege grants
    /// silently instead: `ALTER DEFAULT PRIVILEGES … GRANT SELECT ON TABLES TO
    /// attestor_app` (or `TO PUBLIC`) gives every table a later migration creates to
    /// that role before anyone writes its grant, its policies included or not. The
    /// same holds for sequences, functions, types and schemas. It is a finding when a
    /// default privilege set for one of the module's schemas, or for every schema by
    /// the module's owner role, grants anything to PUBLIC or to a runtime role. And
    /// because PostgreSQL grants EXECUTE on new functions to PUBLIC unless told
    /// otherwise, the owner role must keep its `REVOKE EXECUTE ON FUNCTIONS FROM
    /// PUBLIC` default.
    pub static RULE = {
        id: "TI025",
        name: "default-privileges",
        summary: "no default privileges grant future module objects to PUBLIC or a runtime role",
        fix: "ALTER DEFAULT PRIVILEGES FOR ROLE … [IN SCHEMA …] REVOKE … FROM …;",
        needs: None,
        kind: Kind::Static(check),
    };
}

#[derive(Deserialize)]
struct DefaultGrant {
    /// The role whose future objects it covers.
    role: String,
    /// `None`: every schema.
    schema: Option<String>,
    /// TABLES, SEQUENCES, FUNCTIONS, TYPES, SCHEMAS.
    objects: String,
    grantee: String,
    privileges: Vec<String>,
}

fn check(cx: &mut Ctx<'_>) -> Result<()> {
    let m = cx.module;
    let owner = m.owner_role();
    let schemas = super::text_array(&m.schemas());
    let roles = super::text_array(m.runtime_roles().as_slice());
    let grants: Vec<DefaultGrant> = cx.db.json(&format!(
        "SELECT pg_get_userbyid(d.defaclrole)::text AS role, n.nspname::text AS schema,
                CASE d.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES' WHEN 'f' THEN 'FUNCTIONS'
                                     WHEN 'T' THEN 'TYPES' WHEN 'n' THEN 'SCHEMAS' ELSE d.defaclobjtype::text END
                    AS objects,
                CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END AS grantee,
                array_agg(a.privilege_type::text ORDER BY a.privilege_type) AS privileges
         FROM pg_default_acl d
         LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
         CROSS JOIN LATERAL aclexplode(d.defaclacl) a
         WHERE (n.nspname = ANY ({schemas})
                OR (d.defaclnamespace = 0 AND pg_get_userbyid(d.defaclrole) = {owner_lit}))
           AND (a.grantee = 0 OR pg_get_userbyid(a.grantee) = ANY ({roles}))
         GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
        owner_lit = lit(&owner),
    ))?;
    for g in grants {
        let object = match &g.schema {
            Some(s) => format!("default privileges of {} in schema {s}", g.role),
            None => format!("default privileges of {}", g.role),
        };
        let scope = g
            .schema
            .as_ref()
            .map(|s| format!(" IN SCHEMA {}", ident(s)))
            .unwrap_or_default();
        let grantee = if g.grantee == "PUBLIC" { g.grantee.clone() } else { ident(&g.grantee) };
        cx.finding(
            &object,
            format!(
                "future {} get {} for {} without a reviewed grant",
                g.objects.to_ascii_lowercase(),
                g.privileges.join(", "),
                g.grantee
            ),
            format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {}{scope} REVOKE ALL ON {} FROM {grantee}",
                ident(&g.role),
                g.objects
            ),
        );
    }
    // Without its own default for functions the owner's new functions are
    // executable by PUBLIC (the built-in default).
    let object = format!("default privileges of {owner}");
    cx.examine(&object);
    let revoked = cx.db.text(&format!(
        "SELECT 'yes' AS v FROM pg_default_acl
         WHERE defaclnamespace = 0 AND defaclobjtype = 'f' AND pg_get_userbyid(defaclrole) = {}",
        lit(&owner)
    ))?;
    let owner_exists = cx
        .db
        .text(&format!("SELECT 'yes' AS v FROM pg_roles WHERE rolname = {}", lit(&owner)))?
        .is_some();
    if revoked.is_none() && owner_exists {
        cx.finding(
            &object,
            "future functions get EXECUTE for PUBLIC (the built-in default is not revoked)",
            format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {} REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC",
                ident(&owner)
            ),
        );
    }
    Ok(())
}
