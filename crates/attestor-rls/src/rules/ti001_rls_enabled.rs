//! TI001 `rls-enabled`: every tenant table has Row-Level Security enabled
//! and forced, and a `tenant_id uuid NOT NULL`. Owns this rule only; it
//! reads the catalog and never writes.

use super::prelude::*;

rule! {
    /// Every table with a `tenant_id` column in a module schema must have Row-Level
    /// Security ENABLED and FORCED, and its `tenant_id` must be `uuid NOT NULL`.
    ///
    /// Without ENABLE, no policy applies at all: every role with a grant reads and
    /// writes every tenant's rows. Without FORCE, the table's owner (the role the
    /// migrations run as) bypasses the policies, so any code path that ever runs as
    /// the owner, or a runtime role that can reach it, sees all tenants. A nullable
    /// or non-uuid `tenant_id` lets rows exist that belong to no tenant, or compare
    /// in ways the policies do not expect.
    pub static RULE = {
        id: "TI001",
        name: "rls-enabled",
        summary: "RLS enabled and forced on every tenant table; tenant_id uuid NOT NULL",
        fix: "Run `cargo xtask gen-rls` (ALTER TABLE … ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY) and apply the migration; make tenant_id uuid NOT NULL.",
        needs: None,
        kind: Kind::Static(check),
    };
}

fn check(cx: &mut Ctx<'_>) -> Result<()> {
    let (catalog, m) = (cx.catalog, cx.module);
    for t in catalog.tenant_tables(&m.schema) {
        let key = t.key();
        cx.examine(&key);
        let q = t.qualified();
        if !t.rls {
            cx.finding(&key,
                "row level security is not enabled",
                format!("run `cargo xtask gen-rls` (ALTER TABLE {q} ENABLE ROW LEVEL SECURITY)"),
            );
        }
        if !t.force {
            cx.finding(&key,
                "row level security is not forced (the owner bypasses it)",
                format!("run `cargo xtask gen-rls` (ALTER TABLE {q} FORCE ROW LEVEL SECURITY)"),
            );
        }
        if let Some(c) = t.column("tenant_id") {
            if c.base != "uuid" || !c.not_null {
                cx.finding(&key,
                    format!(
                        "tenant_id is `{}{}`, must be `uuid NOT NULL`",
                        c.ty,
                        if c.not_null { " NOT NULL" } else { "" }
                    ),
                    format!("ALTER TABLE {q} ALTER COLUMN tenant_id TYPE uuid, ALTER COLUMN tenant_id SET NOT NULL"),
                );
            }
        }
    }
    Ok(())
}
