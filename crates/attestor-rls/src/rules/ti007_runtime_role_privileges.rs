//! TI007 `runtime-role-privileges`: the app and worker roles hold no
//! TRUNCATE, REFERENCES or TRIGGER privilege and cannot CREATE in any schema
//! or in the database. Owns this rule only; it reads privileges and never
//! writes.

use super::prelude::*;

use serde::Deserialize;

use super::{text_array, NOT_SYSTEM_SCHEMA};

rule! {
    /// The runtime roles hold no TRUNCATE, REFERENCES or TRIGGER privilege on any
    /// table, and no CREATE privilege on any schema or on the database.
    ///
    /// TRUNCATE is not subject to Row-Level Security: it empties the table for every
    /// tenant. REFERENCES lets a role probe another tenant's keys through a foreign
    /// key of its own. TRIGGER lets it attach code that sees every row written.
    /// CREATE lets it plant objects (a function or table shadowing a name on
    /// someone's search_path, a view owned by itself) that run with other rights.
    pub static RULE = {
        id: "TI007",
        name: "runtime-role-privileges",
        summary: "runtime roles hold no TRUNCATE/REFERENCES/TRIGGER and no CREATE on schemas or the database",
        fix: "REVOKE TRUNCATE, REFERENCES, TRIGGER ON … FROM the role; REVOKE CREATE ON SCHEMA/DATABASE … FROM the role (and from PUBLIC).",
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
    let sys = NOT_SYSTEM_SCHEMA;
    let privs: Vec<PrivRow> = cx.db.json(&format!(
        "SELECT r.rolname AS role, n.nspname || '.' || c.relname AS object,
                concat_ws(', ',
                    CASE WHEN has_table_privilege(r.oid, c.oid, 'TRUNCATE') THEN 'TRUNCATE' END,
                    CASE WHEN has_any_column_privilege(r.oid, c.oid, 'REFERENCES') THEN 'REFERENCES' END,
                    CASE WHEN has_table_privilege(r.oid, c.oid, 'TRIGGER') THEN 'TRIGGER' END) AS privs
         FROM pg_roles r CROSS JOIN pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE r.rolname = ANY ({l}) AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {sys}
           AND (has_table_privilege(r.oid, c.oid, 'TRUNCATE') OR has_any_column_privilege(r.oid, c.oid, 'REFERENCES')
                OR has_table_privilege(r.oid, c.oid, 'TRIGGER'))
         ORDER BY 1, 2",
        l = text_array(&roles)
    ))?;
    for p in privs {
        cx.finding(format!("role {}", p.role),
            format!("holds {} on {}", p.privs, p.object),
            format!("REVOKE {} ON {} FROM {}", p.privs, p.object, p.role),
        );
    }
    let creates: Vec<PrivRow> = cx.db.json(&format!(
        "SELECT r.rolname AS role, 'schema ' || n.nspname AS object, 'CREATE' AS privs
         FROM pg_roles r CROSS JOIN pg_namespace n
         WHERE r.rolname = ANY ({l}) AND {sys} AND has_schema_privilege(r.oid, n.oid, 'CREATE')
         UNION ALL
         SELECT r.rolname, 'database ' || current_database(), 'CREATE'
         FROM pg_roles r WHERE r.rolname = ANY ({l}) AND has_database_privilege(r.oid, current_database(), 'CREATE')
         ORDER BY 1, 2",
        l = text_array(&roles)
    ))?;
    for p in creates {
        cx.finding(format!("role {}", p.role),
            format!("holds CREATE on {}", p.object),
            format!(
                "REVOKE CREATE ON {} FROM {} (and from PUBLIC)",
                p.object
                    .replacen("schema ", "SCHEMA ", 1)
                    .replacen("database ", "DATABASE ", 1),
                p.role
            ),
        );
    }
    Ok(())
}

#[derive(Deserialize)]
struct PrivRow {
    role: String,
    object: String,
    privs: String,
}
