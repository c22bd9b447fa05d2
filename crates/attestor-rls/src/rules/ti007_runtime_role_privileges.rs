//! TI007 `runtime-role-privileges`: the app and worker roles hold no
//! TRUNCATE, REFERENCES, TRIGGER or (PostgreSQL 17 and newer) MAINTAIN
//! privilege and cannot CREATE in any schema or in the database. Owns this
//! rule only; it reads privileges and never writes, and it asks about
//! MAINTAIN only on servers that have it (older ones reject the name).

use super::prelude::*;

use serde::Deserialize;

use super::{text_array, NOT_SYSTEM_SCHEMA};

rule! {
    /// The runtime roles hold no TRUNCATE, REFERENCES, TRIGGER or MAINTAIN privilege
    /// on any table, and no CREATE privilege on any schema or on the database.
    ///
    /// TRUNCATE is not subject to Row-Level Security: it empties the table for every
    /// tenant. MAINTAIN (PostgreSQL 17 and newer; older servers have no such
    /// privilege) is not either: it runs LOCK TABLE, VACUUM FULL, CLUSTER, REINDEX
    /// and REFRESH MATERIALIZED VIEW on the whole table, so one tenant's session can
    /// lock every other tenant out or rewrite their rows' storage. REFERENCES lets a role probe another tenant's keys through a foreign
    /// key of its own. TRIGGER lets it attach code that sees every row written.
    /// CREATE lets it plant objects (a function or table shadowing a name on
    /// someone's search_path, a view owned by itself) that run with other rights.
    pub static RULE = {
        id: "TI007",
        name: "runtime-role-privileges",
        summary: "runtime roles hold no TRUNCATE/REFERENCES/TRIGGER/MAINTAIN and no CREATE on schemas or the database",
        fix: "REVOKE TRUNCATE, REFERENCES, TRIGGER, MAINTAIN ON … FROM the role; REVOKE CREATE ON SCHEMA/DATABASE … FROM the role (and from PUBLIC).",
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
    // Table privileges RLS does not restrict; MAINTAIN exists from 17 on.
    let mut names = vec!["TRUNCATE", "REFERENCES", "TRIGGER"];
    if cx.catalog.at_least(17) {
        names.push("MAINTAIN");
    }
    let held = |p: &str| match p {
        "REFERENCES" => "has_any_column_privilege(r.oid, c.oid, 'REFERENCES')".to_owned(),
        p => format!("has_table_privilege(r.oid, c.oid, '{p}')"),
    };
    let listed: Vec<String> = names
        .iter()
        .map(|p| format!("CASE WHEN {} THEN '{p}' END", held(p)))
        .collect();
    let any: Vec<String> = names.iter().map(|p| held(p)).collect();
    let privs: Vec<PrivRow> = cx.db.json(&format!(
        "SELECT r.rolname AS role, n.nspname || '.' || c.relname AS object,
                concat_ws(', ', {listed}) AS privs
         FROM pg_roles r CROSS JOIN pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE r.rolname = ANY ({l}) AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {sys}
           AND ({any})
         ORDER BY 1, 2",
        listed = listed.join(", "),
        any = any.join(" OR "),
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
