//! TI015 `partitions`: every partition of a tenant table, wherever it lives,
//! has RLS enabled and forced and carries the tenant isolation policy. Owns
//! this rule only; it reads the catalog (and normalises expressions in a
//! rolled-back savepoint).

use super::prelude::*;

use crate::catalog::policies_on;
use crate::generate::{policy_matches, PolicySpec};
use crate::isolation_policy_name;

rule! {
    /// Policies of a partitioned table apply to queries through the parent only. A
    /// partition is a table of its own: queried directly, its own RLS settings and
    /// policies decide, and a partition without them shows every tenant's rows of
    /// that partition to anyone with a grant on it, in whatever schema it was
    /// created.
    pub static RULE = {
        id: "TI015",
        name: "partitions",
        summary: "partitions of tenant tables have RLS enabled, forced, and the isolation policy",
        fix: "ALTER TABLE <partition> ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY and give it the isolation policy (create partitions in the module schema and run `cargo xtask gen-rls`).",
        needs: Some("TEMPORARY on the database (policy expressions are normalised on a temporary table)"),
        kind: Kind::Static(check),
    };
}

fn check(cx: &mut Ctx<'_>) -> Result<()> {
    let (catalog, m) = (cx.catalog, cx.module);
    let pred = m.tenant_predicate();
    for p in catalog.partitions.iter().filter(|p| p.parent_schema == m.schema) {
        let Some(parent) = catalog.table(&p.parent_schema, &p.parent) else {
            continue;
        };
        if !parent.is_tenant() {
            continue;
        }
        let key = format!("{}.{}", p.schema, p.name);
        cx.examine(&key);
        let q = qualified(&p.schema, &p.name);
        if !p.rls || !p.force {
            cx.finding(&key,
                format!(
                    "partition of {} without RLS {}: querying it directly bypasses the parent's policies",
                    parent.key(),
                    if p.rls { "forced" } else { "enabled" }
                ),
                format!("ALTER TABLE {q} ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY (or run `cargo xtask gen-rls` when it is in a module schema)"),
            );
        }
        let want = PolicySpec {
            name: isolation_policy_name(&p.name),
            permissive: true,
            command: "ALL".into(),
            roles: vec![m.app_role()],
            using: Some(pred.clone()),
            with_check: Some(pred.clone()),
            reason: None,
        };
        let have = policies_on(cx.db, &p.schema, &p.name)?;
        let ok = match have.iter().find(|h| h.name == want.name) {
            Some(h) => policy_matches(cx.db, h, &want, &p.schema, &p.name)?,
            None => false,
        };
        if !ok {
            cx.finding(&key,
                format!(
                    "partition of {} lacks the tenant isolation policy {}",
                    parent.key(),
                    want.name
                ),
                "create the partition in the module schema and run `cargo xtask gen-rls`",
            );
        }
    }
    Ok(())
}
