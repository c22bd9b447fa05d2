//! TI017 `schema-isolation`: a module's runtime roles hold nothing on other
//! modules' schemas, tables, sequences and functions (or on schemas granted
//! to roles they reach), and are members of none of the other modules'
//! roles. Owns this rule only; it reads privileges and never writes (the
//! probes TD020-TD025 try the same doors from the login sessions).

use super::prelude::*;

use serde::Deserialize;

use super::text_array;

rule! {
    /// Each module owns its schemas; its runtime roles work only there. A privilege
    /// of one module's runtime role on another module's schema, tables, sequences or
    /// functions crosses the module boundary, which no policy of the other module
    /// expects (its policies name its own roles): it may read rows the other
    /// module's RLS does not cover, or reach objects meant to be private. So does a
    /// membership in another module's role, directly or through other roles: it
    /// lets the runtime role `SET ROLE` to it and act as that module.
    pub static RULE = {
        id: "TI017",
        name: "schema-isolation",
        summary: "runtime roles hold no privileges on other modules' objects and reach none of their roles",
        fix: "REVOKE ALL ON SCHEMA/TABLE/SEQUENCE/FUNCTION … FROM the role, or REVOKE the other module's role FROM it (each finding gives the statement).",
        needs: None,
        kind: Kind::Static(check),
    };
}

fn check(cx: &mut Ctx<'_>) -> Result<()> {
    let (m, modules) = (cx.module, cx.modules);
    let own: Vec<String> = m.schemas().to_vec();
    let others: Vec<String> = modules
        .iter()
        .filter(|o| o.key != m.key)
        .flat_map(|o| o.schemas())
        .collect();
    let roles: Vec<String> = m.runtime_roles().to_vec();
    let other_roles: Vec<String> = modules
        .iter()
        .filter(|o| o.key != m.key)
        .flat_map(|o| [o.owner_role(), o.app_role(), o.worker_role()])
        .collect();
    for r in &roles {
        cx.examine(format!("role {r}"));
    }
    let sys = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'";
    let rows: Vec<PrivRow> = cx.db.json(&format!(
        "SELECT r.rolname AS role, 'schema ' || n.nspname AS object,
                concat_ws(', ', CASE WHEN has_schema_privilege(r.oid, n.oid, 'USAGE') THEN 'USAGE' END,
                                CASE WHEN has_schema_privilege(r.oid, n.oid, 'CREATE') THEN 'CREATE' END) AS privs
         FROM pg_roles r CROSS JOIN pg_namespace n
         WHERE r.rolname = ANY ({roles}) AND {sys} AND NOT n.nspname = ANY ({own})
           AND (n.nspname = ANY ({others})
                OR EXISTS (SELECT 1 FROM aclexplode(n.nspacl) x
                           WHERE x.grantee <> 0 AND pg_has_role(r.oid, x.grantee, 'USAGE')))
           AND (has_schema_privilege(r.oid, n.oid, 'USAGE') OR has_schema_privilege(r.oid, n.oid, 'CREATE'))
         UNION ALL
         SELECT r.rolname, n.nspname || '.' || c.relname,
                concat_ws(', ', CASE WHEN has_table_privilege(r.oid, c.oid, 'SELECT') THEN 'SELECT' END,
                                CASE WHEN has_table_privilege(r.oid, c.oid, 'INSERT') THEN 'INSERT' END,
                                CASE WHEN has_any_column_privilege(r.oid, c.oid, 'UPDATE') THEN 'UPDATE' END,
                                CASE WHEN has_table_privilege(r.oid, c.oid, 'DELETE') THEN 'DELETE' END)
         FROM pg_roles r CROSS JOIN pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE r.rolname = ANY ({roles}) AND n.nspname = ANY ({others}) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
           AND (has_table_privilege(r.oid, c.oid, 'SELECT') OR has_table_privilege(r.oid, c.oid, 'INSERT')
                OR has_any_column_privilege(r.oid, c.oid, 'UPDATE') OR has_table_privilege(r.oid, c.oid, 'DELETE'))
         UNION ALL
         SELECT r.rolname, 'sequence ' || n.nspname || '.' || c.relname,
                concat_ws(', ', CASE WHEN has_sequence_privilege(r.oid, c.oid, 'USAGE') THEN 'USAGE' END,
                                CASE WHEN has_sequence_privilege(r.oid, c.oid, 'SELECT') THEN 'SELECT' END,
                                CASE WHEN has_sequence_privilege(r.oid, c.oid, 'UPDATE') THEN 'UPDATE' END)
         FROM pg_roles r CROSS JOIN pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE r.rolname = ANY ({roles}) AND n.nspname = ANY ({others}) AND c.relkind = 'S'
           AND (has_sequence_privilege(r.oid, c.oid, 'USAGE') OR has_sequence_privilege(r.oid, c.oid, 'SELECT')
                OR has_sequence_privilege(r.oid, c.oid, 'UPDATE'))
         UNION ALL
         SELECT r.rolname, 'function ' || n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
                'EXECUTE'
         FROM pg_roles r CROSS JOIN pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE r.rolname = ANY ({roles}) AND n.nspname = ANY ({others})
           AND has_function_privilege(r.oid, p.oid, 'EXECUTE')
         UNION ALL
         SELECT r.rolname, 'role ' || o.rolname, 'membership'
         FROM pg_roles r CROSS JOIN pg_roles o
         WHERE r.rolname = ANY ({roles}) AND o.rolname = ANY ({other_roles}) AND pg_has_role(r.oid, o.oid, 'MEMBER')
         ORDER BY 1, 2",
        roles = text_array(&roles),
        own = text_array(&own),
        others = text_array(&others),
        other_roles = text_array(&other_roles),
    ))?;
    for r in rows {
        if let Some(other) = r.object.strip_prefix("role ") {
            cx.finding(format!("role {}", r.role),
                format!(
                    "is a member of {other}, a role of another module than {}: it can SET ROLE {other} and act as that module",
                    m.key
                ),
                format!("REVOKE {other} FROM {} (or the membership that reaches it)", r.role),
            );
            continue;
        }
        let fix = match r.object.split_once(' ') {
            Some(("schema", s)) => format!("REVOKE ALL ON SCHEMA {s} FROM {}", r.role),
            Some(("sequence", s)) => format!("REVOKE ALL ON SEQUENCE {s} FROM {}", r.role),
            Some(("function", f)) => format!("REVOKE EXECUTE ON FUNCTION {f} FROM {} (and from PUBLIC)", r.role),
            _ => format!("REVOKE ALL ON TABLE {} FROM {}", r.object, r.role),
        };
        cx.finding(format!("role {}", r.role),
            format!("holds {} on {} outside module {}", r.privs, r.object, m.key),
            fix,
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
