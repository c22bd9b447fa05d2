//! TI005 `table-conventions`: the columns, updated_at trigger, keys, indexes
//! and foreign keys of every tenant table carry the tenant. Owns this rule
//! only; it reads the catalog and never writes.

use super::prelude::*;

use std::collections::BTreeSet;

use crate::catalog::Table;

rule! {
    /// Every tenant table has `id uuid`, `tenant_id uuid NOT NULL`, `created_at` and
    /// `updated_at` (kept current by a BEFORE UPDATE trigger), `PRIMARY KEY (tenant_id, id)`,
    /// unique constraints and btree indexes that lead with `tenant_id`, and composite
    /// foreign keys `(tenant_id, x_id) → parent (tenant_id, id)`.
    ///
    /// A unique constraint without `tenant_id` is an existence oracle: one tenant
    /// learns that another already holds a value because its own insert fails. A
    /// foreign key without `tenant_id → tenant_id` lets a row point at another
    /// tenant's row. Indexes that do not lead with `tenant_id` make every tenant's
    /// query scan all tenants' entries.
    ///
    /// The updated_at trigger (`FOR EACH ROW EXECUTE FUNCTION set_updated_at()`) must
    /// fire on every UPDATE: no `UPDATE OF` column list, and no `WHEN` condition but
    /// `NEW.updated_at IS DISTINCT FROM now()`, which skips only a call that would
    /// store the value the row already has. Any other condition (`WHEN (false)`, one
    /// that a statement's own values satisfy) lets an UPDATE leave updated_at as the
    /// statement wrote it.
    pub static RULE = {
        id: "TI005",
        name: "table-conventions",
        summary: "id/tenant_id/created_at/updated_at, the updated_at trigger, keys, unique indexes, btree indexes and foreign keys lead with tenant_id",
        fix: "Recreate the key, index or foreign key with tenant_id as its first column (each finding gives the statement).",
        needs: None,
        kind: Kind::Static(check),
    };
}

/// The one condition the updated_at trigger may carry, as
/// `pg_get_triggerdef` prints it: skip the call when the new row's
/// updated_at already is `now()`, the value the function would store.
pub(crate) const SKIP_WHEN_CURRENT: &str = "(new.updated_at IS DISTINCT FROM now())";

fn check(cx: &mut Ctx<'_>) -> Result<()> {
    let (catalog, m) = (cx.catalog, cx.module);
    for t in catalog.tenant_tables(&m.schema) {
        let key = t.key();
        let q = t.qualified();
        cx.examine(&key);
        let mut add = |msg: String, fix: String| cx.finding(&key, msg, fix);
        for (col, base, needs_default) in [
            ("id", "uuid", false),
            ("tenant_id", "uuid", false),
            ("created_at", "timestamptz", true),
            ("updated_at", "timestamptz", true),
        ] {
            match t.column(col) {
                None => add(
                    format!("required column {col} is missing"),
                    format!("ALTER TABLE {q} ADD COLUMN {col} {base} NOT NULL"),
                ),
                Some(c) if c.base != base || !c.not_null || (needs_default && c.default.is_none()) => add(
                    format!(
                        "column {col} is `{}`{}{}, must be `{base} NOT NULL{}`",
                        c.ty,
                        if c.not_null { " NOT NULL" } else { "" },
                        if c.default.is_some() {
                            " with a default"
                        } else {
                            ""
                        },
                        if needs_default { " DEFAULT now()" } else { "" }
                    ),
                    format!(
                        "ALTER TABLE {q} ALTER COLUMN {col} TYPE {base}, ALTER COLUMN {col} SET NOT NULL"
                    ),
                ),
                _ => {}
            }
        }
        let updated_at_triggers: Vec<_> = catalog
            .triggers_of(t)
            .filter(|tr| tr.is_row() && tr.is_before() && tr.on_update() && tr.function == "set_updated_at")
            .collect();
        // A condition or a column list can keep the trigger from firing: only
        // the condition that skips a call which would change nothing counts.
        let keeps_current = |tr: &&crate::catalog::Trigger| {
            !tr.update_of_columns && tr.when.as_deref().is_none_or(|w| w == SKIP_WHEN_CURRENT)
        };
        for tr in updated_at_triggers.iter().filter(|tr| !keeps_current(tr)) {
            add(
                format!(
                    "trigger {} does not keep updated_at current on every UPDATE ({})",
                    tr.name,
                    match &tr.when {
                        Some(w) if !tr.update_of_columns => format!("WHEN {w}"),
                        Some(w) => format!("UPDATE OF columns, WHEN {w}"),
                        None => "UPDATE OF columns".into(),
                    }
                ),
                format!(
                    "DROP TRIGGER {name} ON {q}; CREATE TRIGGER {name} BEFORE UPDATE ON {q} FOR EACH ROW EXECUTE FUNCTION {}.set_updated_at()",
                    m.helper_schema(),
                    name = ident(&tr.name),
                ),
            );
        }
        if updated_at_triggers.is_empty() {
            add(
                "no BEFORE UPDATE row trigger keeps updated_at current".into(),
                format!(
                    "CREATE TRIGGER set_updated_at BEFORE UPDATE ON {q} FOR EACH ROW EXECUTE FUNCTION {}.set_updated_at()",
                    m.helper_schema()
                ),
            );
        }
        match catalog.primary_key(t) {
            None => add(
                "no primary key".into(),
                format!("ALTER TABLE {q} ADD PRIMARY KEY (tenant_id, id)"),
            ),
            Some(pk) if pk.columns.first().map(String::as_str) != Some("tenant_id") => add(
                format!(
                    "primary key {} ({}) does not lead with tenant_id",
                    pk.name,
                    pk.columns.join(", ")
                ),
                format!("make it PRIMARY KEY (tenant_id, {})", pk.columns.join(", ")),
            ),
            _ => {}
        }
        let mut seen = BTreeSet::new();
        for c in catalog.constraints_of(t).filter(|c| c.kind == "u") {
            seen.insert(c.name.clone());
            if c.columns.first().map(String::as_str) != Some("tenant_id") {
                add(
                    format!(
                        "unique constraint {} ({}) does not lead with tenant_id: uniqueness across tenants is an existence oracle",
                        c.name,
                        c.columns.join(", ")
                    ),
                    format!("make it UNIQUE (tenant_id, {})", c.columns.join(", ")),
                );
            }
        }
        for i in catalog.indexes_of(t) {
            let lead = i.key_columns().first().cloned().flatten();
            if i.unique && !i.primary && !seen.contains(&i.name) && lead.as_deref() != Some("tenant_id") {
                add(
                    format!("unique index {} does not lead with tenant_id: uniqueness across tenants is an existence oracle", i.name),
                    format!("recreate {} with tenant_id as its first column", i.name),
                );
            } else if !i.unique && i.method == "btree" && lead.as_deref() != Some("tenant_id") {
                add(
                    format!("btree index {} does not lead with tenant_id", i.name),
                    format!("recreate {} with tenant_id as its first column", i.name),
                );
            }
        }
        if !catalog
            .indexes_of(t)
            .any(|i| i.key_columns().first().cloned().flatten().as_deref() == Some("tenant_id"))
        {
            add(
                "no index leads with tenant_id".into(),
                format!("CREATE INDEX ON {q} (tenant_id, …)"),
            );
        }
        for fk in catalog.constraints_of(t).filter(|c| c.kind == "f") {
            let parent_is_tenant = match (&fk.ref_schema, &fk.ref_table) {
                (Some(s), Some(n)) => catalog.table(s, n).is_some_and(Table::is_tenant),
                _ => false,
            };
            if !parent_is_tenant {
                continue; // to a global table: reported by check 11 when it matters
            }
            let pairs_ok = fk
                .columns
                .iter()
                .zip(&fk.ref_columns)
                .any(|(a, b)| a == "tenant_id" && b == "tenant_id");
            if !pairs_ok {
                add(
                    format!(
                        "foreign key {} ({}) → {}.{} ({}) does not include tenant_id → tenant_id: it can point into another tenant",
                        fk.name,
                        fk.columns.join(", "),
                        fk.ref_schema.as_deref().unwrap_or("?"),
                        fk.ref_table.as_deref().unwrap_or("?"),
                        fk.ref_columns.join(", ")
                    ),
                    format!(
                        "make it FOREIGN KEY (tenant_id, {}) REFERENCES parent (tenant_id, id)",
                        fk.columns.iter().filter(|c| *c != "tenant_id").cloned().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        }
    }
    Ok(())
}
