//! TI018 `citus-ready`: every tenant table could be distributed by
//! `tenant_id` (keys include it, foreign keys are co-located, global tables
//! are reference tables). Owns this rule only; it reads the catalog.

use super::prelude::*;

use crate::catalog::Table;

rule! {
    /// Distributing the schema by `tenant_id` (Citus) needs every primary key,
    /// unique constraint, exclusion constraint and unique index of a tenant table to
    /// include `tenant_id`, every foreign key between tenant tables to pair
    /// `tenant_id → tenant_id`, and no global (reference) table to point into a
    /// tenant table. The same properties keep a tenant's rows in one shard and one
    /// tenant's keys from colliding with another's, so a layout that breaks them is
    /// also one in which a key or reference can cross tenants. It also fails on
    /// what Citus refuses when the distribution step runs: a policy with a
    /// sub-query, a foreign key with ON DELETE/UPDATE SET NULL or SET DEFAULT or
    /// ON UPDATE CASCADE on tenant_id, a foreign key to a table outside the
    /// module (which the step neither distributes nor colocates), tenant_id
    /// columns of different types (tables colocate only on one type), and table
    /// inheritance. Each of these was planted on a real coordinator and refused
    /// there, so readiness never passes a schema that cannot be distributed.
    pub static RULE = {
        id: "TI018",
        name: "citus-ready",
        summary: "Citus readiness: keys include tenant_id, foreign keys are co-located, global tables do not point into tenant tables",
        fix: "Add tenant_id to the key or index; make the foreign key composite (tenant_id, …) → (tenant_id, …); declare referenced tables global.",
        needs: None,
        kind: Kind::Static(check),
    };
}

#[derive(serde::Deserialize)]
struct Refused {
    table: String,
    message: String,
    fix: String,
}

/// What Citus refuses to distribute, read from the catalog: one row per
/// table and reason. `$S` is the module schema as a literal.
const REFUSED: &str = "
SELECT c.relname AS table,
       format('policy %s has a sub-query: Citus refuses sub-queries in policies of distributed tables', p.polname) AS message,
       format('write %s without a sub-select (call the helper directly), and regenerate with cargo xtask gen-rls', p.polname) AS fix
  FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
 WHERE c.relnamespace = $S::regnamespace
   AND (p.polqual::text LIKE '%{SUBLINK %' OR coalesce(p.polwithcheck::text, '') LIKE '%{SUBLINK %')
UNION ALL
SELECT c.relname,
       format('foreign key %s on tenant_id has %s: Citus refuses SET NULL, SET DEFAULT and ON UPDATE CASCADE on the distribution column', k.conname,
              concat_ws(' and ',
                        CASE k.confdeltype WHEN 'n' THEN 'ON DELETE SET NULL' WHEN 'd' THEN 'ON DELETE SET DEFAULT' END,
                        CASE k.confupdtype WHEN 'n' THEN 'ON UPDATE SET NULL' WHEN 'd' THEN 'ON UPDATE SET DEFAULT' WHEN 'c' THEN 'ON UPDATE CASCADE' END)),
       format('use ON DELETE CASCADE, RESTRICT or NO ACTION on %s', k.conname)
  FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
 WHERE c.relnamespace = $S::regnamespace AND k.contype = 'f'
   AND (k.confdeltype IN ('n', 'd') OR k.confupdtype IN ('n', 'd', 'c'))
   AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                WHERE a.attrelid = k.conrelid AND a.attnum = ANY (k.conkey) AND a.attname = 'tenant_id')
UNION ALL
SELECT c.relname,
       format('foreign key %s points at %s, outside the module: the distribution step neither distributes nor colocates it, and Citus refuses a foreign key from a distributed table to a local one',
              k.conname, k.confrelid::regclass),
       format('drop %s, or move %s into the module (a tenant table or a declared global table)', k.conname, k.confrelid::regclass)
  FROM pg_catalog.pg_constraint k
  JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
  JOIN pg_catalog.pg_class r ON r.oid = k.confrelid
 WHERE c.relnamespace = $S::regnamespace AND k.contype = 'f' AND r.relnamespace <> c.relnamespace
UNION ALL
SELECT c.relname,
       format('tenant_id is %s, the module''s other tenant tables have %s: Citus colocates tables on one distribution column type only',
              format_type(a.atttypid, a.atttypmod), t.common),
       format('ALTER TABLE %s ALTER COLUMN tenant_id TYPE %s', c.oid::regclass, t.common)
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
  CROSS JOIN (SELECT format_type(a2.atttypid, a2.atttypmod) AS common
                FROM pg_catalog.pg_class c2
                JOIN pg_catalog.pg_attribute a2 ON a2.attrelid = c2.oid AND a2.attname = 'tenant_id' AND NOT a2.attisdropped
               WHERE c2.relnamespace = $S::regnamespace AND c2.relkind IN ('r', 'p') AND NOT c2.relispartition
               GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1) t
 WHERE c.relnamespace = $S::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition
   AND format_type(a.atttypid, a.atttypmod) <> t.common
UNION ALL
SELECT c.relname,
       format('inherits from %s (table inheritance): Citus distributes declarative partitions only', i.inhparent::regclass),
       format('ALTER TABLE %s NO INHERIT %s, or make it a partition', c.oid::regclass, i.inhparent::regclass)
  FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
 WHERE c.relnamespace = $S::regnamespace AND NOT c.relispartition
ORDER BY 1, 2";

fn check(cx: &mut Ctx<'_>) -> Result<()> {
    keys(cx)?;
    let schema = cx.module.schema.clone();
    let refused: Vec<Refused> = cx.db.json(&REFUSED.replace("$S", &lit(&ident(&schema))))?;
    for r in refused {
        let key = format!("{schema}.{}", r.table);
        cx.examine(&key);
        cx.finding(&key, r.message, r.fix);
    }
    Ok(())
}

fn keys(cx: &mut Ctx<'_>) -> Result<()> {
    let (catalog, m, config) = (cx.catalog, cx.module, cx.config);
    for t in catalog
        .tables
        .iter()
        .filter(|t| t.schema == m.schema && matches!(t.kind.as_str(), "r" | "p"))
    {
        let key = t.key();
        cx.examine(&key);
        let tenant = t.is_tenant();
        for c in catalog.constraints_of(t) {
            match c.kind.as_str() {
                "p" | "u" | "x" if tenant && !c.columns.iter().any(|x| x == "tenant_id") => {
                    cx.finding(&key,
                        format!(
                            "{} {} does not include the distribution column tenant_id",
                            match c.kind.as_str() {
                                "p" => "primary key",
                                "u" => "unique constraint",
                                _ => "exclusion constraint",
                            },
                            c.name
                        ),
                        format!("add tenant_id to {}", c.name),
                    );
                }
                "f" => {
                    let parent = match (&c.ref_schema, &c.ref_table) {
                        (Some(s), Some(n)) => catalog.table(s, n),
                        _ => None,
                    };
                    let parent_tenant = parent.is_some_and(Table::is_tenant);
                    let colocated = c
                        .columns
                        .iter()
                        .zip(&c.ref_columns)
                        .any(|(a, b)| a == "tenant_id" && b == "tenant_id");
                    if parent_tenant && !tenant {
                        cx.finding(&key,
                            format!(
                                "global table references tenant table {} through {}: a reference table cannot point into a distributed table",
                                parent.map(Table::key).unwrap_or_default(),
                                c.name
                            ),
                            format!("drop {} or make {} a tenant table (add tenant_id)", c.name, t.name),
                        );
                    } else if parent_tenant && !colocated {
                        cx.finding(&key,
                            format!(
                                "foreign key {} is not co-located (no tenant_id → tenant_id)",
                                c.name
                            ),
                            format!(
                                "make {} composite: (tenant_id, …) REFERENCES parent (tenant_id, …)",
                                c.name
                            ),
                        );
                    } else if !parent_tenant && tenant {
                        if let Some(p) = parent {
                            if p.schema == m.schema && !config.is_global(&m.key, &p.name) {
                                cx.finding(&key,
                                    format!(
                                        "foreign key {} points to {}, neither distributed nor a declared (reference) table",
                                        c.name,
                                        p.key()
                                    ),
                                    format!("declare {} global in rls.toml (a Citus reference table)", p.name),
                                );
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if tenant {
            for i in catalog.indexes_of(t).filter(|i| i.unique && !i.primary) {
                let is_constraint = catalog.constraints_of(t).any(|c| c.name == i.name);
                if !is_constraint && !i.key_columns().iter().flatten().any(|c| c == "tenant_id") {
                    cx.finding(&key,
                        format!(
                            "unique index {} does not include the distribution column tenant_id",
                            i.name
                        ),
                        format!("add tenant_id to {}", i.name),
                    );
                }
            }
        }
    }
    Ok(())
}
