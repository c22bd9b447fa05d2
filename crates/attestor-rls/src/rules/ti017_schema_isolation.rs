//! TI017 `schema-isolation`: a module's runtime roles hold nothing on other
//! modules' schemas (or on schemas granted to roles they reach). Owns this
//! rule only; it reads privileges and never writes.

use super::prelude::*;

use serde::Deserialize;

use super::text_array;

rule! {
    /// Each module owns its schemas; its runtime roles work only there. A privilege
    /// of one module's app role on another module's schema or tables crosses the
    /// module boundary, which no policy of the other module expects (its policies
    /// name its own roles): it may read rows the other module's RLS does not cover,
    /// or reach objects meant to be private.
    pub static RULE = {
        id: "TI017",
        name: "schema-isolation",
        summary: "runtime roles hold no privileges on other modules' schemas",
        fix: "REVOKE ALL ON SCHEMA/TABLE … FROM the role (each finding gives the statement).",
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
         ORDER BY 1, 2",
        roles = text_array(&roles),
        own = text_array(&own),
        others = text_array(&others),
    ))?;
    for r in rows {
        let target = if let Some(s) = r.object.strip_prefix("schema ") {
            format!("SCHEMA {s}")
        } else {
            format!("TABLE {}", r.object)
        };
        cx.finding(format!("role {}", r.role),
            format!("holds {} on {} outside module {}", r.privs, r.object, m.key),
            format!("REVOKE ALL ON {target} FROM {}", r.role),
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
