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
    /// also one in which a key or reference can cross tenants.
    pub static RULE = {
        id: "TI018",
        name: "citus-ready",
        summary: "Citus readiness: keys include tenant_id, foreign keys are co-located, global tables do not point into tenant tables",
        fix: "Add tenant_id to the key or index; make the foreign key composite (tenant_id, …) → (tenant_id, …); declare referenced tables global.",
        needs: None,
        kind: Kind::Static(check),
    };
}

fn check(cx: &mut Ctx<'_>) -> Result<()> {
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
