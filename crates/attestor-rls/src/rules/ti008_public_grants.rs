//! TI008 `public-grants`: nothing in a module's schemas is granted to
//! PUBLIC. Owns this rule only; it reads ACLs and never writes.

use super::prelude::*;

use serde::Deserialize;

use super::text_array;

rule! {
    /// No table, column, sequence, schema or function of a module's schemas may be
    /// granted to PUBLIC, and every function must have had PUBLIC's default EXECUTE
    /// revoked.
    ///
    /// PUBLIC is every role of the cluster, including roles of other modules and
    /// roles created later. A PUBLIC grant bypasses the module's role design: the
    /// policies name only the app role, so a grant to PUBLIC on a table of a module
    /// without FORCE, a helper function anyone may call, or USAGE on a schema widens
    /// the door for every login in the cluster.
    pub static RULE = {
        id: "TI008",
        name: "public-grants",
        summary: "nothing in the module schemas is granted to PUBLIC (tables, columns, sequences, schemas, functions)",
        fix: "REVOKE ALL ON … FROM PUBLIC (each finding gives the statement).",
        needs: None,
        kind: Kind::Static(check),
    };
}

fn check(cx: &mut Ctx<'_>) -> Result<()> {
    let m = cx.module;
    let schemas = m.schemas().to_vec();
    for s in &schemas {
        cx.examine(format!("schema {s}"));
    }
    let rows: Vec<PublicRow> = cx.db.json(&format!(
        "SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS kind,
                n.nspname || '.' || c.relname AS object,
                string_agg(DISTINCT x.privilege_type, ', ') AS privs
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) x
         WHERE n.nspname = ANY ({l}) AND x.grantee = 0 GROUP BY 1, 2
         UNION ALL
         SELECT 'COLUMN', n.nspname || '.' || c.relname || '.' || a.attname,
                string_agg(DISTINCT x.privilege_type, ', ')
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace,
              aclexplode(a.attacl) x
         WHERE n.nspname = ANY ({l}) AND x.grantee = 0 GROUP BY 1, 2
         UNION ALL
         SELECT 'SCHEMA', n.nspname, string_agg(DISTINCT x.privilege_type, ', ')
         FROM pg_namespace n, aclexplode(n.nspacl) x
         WHERE n.nspname = ANY ({l}) AND x.grantee = 0 GROUP BY 1, 2
         UNION ALL
         SELECT 'FUNCTION', n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
                'EXECUTE'
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = ANY ({l})
           AND (p.proacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) x WHERE x.grantee = 0))
         ORDER BY 1, 2",
        l = text_array(&schemas)
    ))?;
    for r in rows {
        let object = match r.kind.as_str() {
            "TABLE" | "SEQUENCE" => r.object.clone(),
            "SCHEMA" => format!("schema {}", r.object),
            "COLUMN" => r
                .object
                .rsplit_once('.')
                .map(|(t, _)| t.to_owned())
                .unwrap_or_default(),
            _ => r.object.clone(),
        };
        let target = if r.kind == "COLUMN" {
            format!("TABLE {}", object)
        } else {
            format!("{} {}", r.kind, r.object)
        };
        cx.finding(object,
            format!(
                "PUBLIC holds {} on {} {}",
                r.privs,
                r.kind.to_lowercase(),
                r.object
            ),
            format!("REVOKE ALL ON {target} FROM PUBLIC"),
        );
    }
    Ok(())
}

#[derive(Deserialize)]
struct PublicRow {
    kind: String,
    object: String,
    privs: String,
}
