//! TI002 `canonical-policies`: every tenant table carries exactly the
//! generated policy set (one tenant isolation policy per table plus the
//! policies rls.toml declares). Owns this rule only; it reads the catalog
//! (and normalises expressions in a rolled-back savepoint).

use super::prelude::*;

use std::collections::BTreeSet;

use crate::generate::{desired, policy_matches, PolicySpec};

rule! {
    /// Each tenant table must have exactly the policies `gen-rls` writes: one
    /// permissive `<table>_tenant_isolation FOR ALL TO <module>_app` whose USING and
    /// WITH CHECK are `tenant_id = <module>_app.require_current_tenant()` (a plain call,
    /// no sub-select: Citus refuses sub-queries in the policies of distributed tables),
    /// plus the policies declared with a reason in rls.toml. Expressions are compared
    /// as the server itself renders them, so a hand edit that means the same (a
    /// sub-select around the helper, operands swapped) is still a finding.
    ///
    /// Policies are OR-ed: one extra permissive policy (a debugging `USING (true)`, a
    /// policy for PUBLIC) opens the table to every tenant no matter how right the
    /// generated one is. A changed expression can look plausible and still let a
    /// session without a tenant, or with another tenant's id, through. A table with
    /// only RESTRICTIVE policies is deny-all, which breaks the service instead.
    pub static RULE = {
        id: "TI002",
        name: "canonical-policies",
        summary: "exactly the generated policies: the tenant isolation policy and the declared ones, nothing else",
        fix: "Drop hand-made policies and run `cargo xtask gen-rls`; declare an intended extra policy with a reason in rls.toml.",
        needs: Some("TEMPORARY on the database (policy expressions are normalised on a temporary table)"),
        kind: Kind::Static(check),
    };
}

fn check(cx: &mut Ctx<'_>) -> Result<()> {
    let (catalog, m, config) = (cx.catalog, cx.module, cx.config);
    for spec in desired(catalog, std::slice::from_ref(m), config) {
        let key = format!("{}.{}", spec.schema, spec.table);
        cx.examine(&key);
        let have: Vec<_> = catalog.policies_of(&spec.schema, &spec.table).cloned().collect();
        for want in &spec.policies {
            match have.iter().find(|p| p.name == want.name) {
                None => cx.finding(&key,
                    format!("policy {} is missing", want.name),
                    "run `cargo xtask gen-rls` and apply the generated migration",
                ),
                Some(p) => {
                    if !policy_matches(cx.db, p, want, &spec.schema, &spec.table)? {
                        cx.finding(&key,
                            format!(
                                "policy {} is not the generated one: found {} FOR {} TO {} USING ({}) WITH CHECK ({}); \
                                 expected {}",
                                p.name,
                                if p.permissive { "PERMISSIVE" } else { "RESTRICTIVE" },
                                p.command,
                                p.roles.join(", "),
                                p.using.as_deref().unwrap_or("-"),
                                p.with_check.as_deref().unwrap_or("-"),
                                describe(want)
                            ),
                            "drop the hand-made policy and run `cargo xtask gen-rls`",
                        );
                    }
                }
            }
        }
        let declared: BTreeSet<&str> = spec.policies.iter().map(|p| p.name.as_str()).collect();
        for p in have.iter().filter(|p| !declared.contains(p.name.as_str())) {
            cx.finding(&key,
                format!(
                    "undeclared {} policy {} (FOR {} TO {} USING ({}))",
                    if p.permissive { "permissive" } else { "restrictive" },
                    p.name,
                    p.command,
                    p.roles.join(", "),
                    p.using.as_deref().unwrap_or("-")
                ),
                format!(
                    "DROP POLICY {} ON {}, or declare it with a reason in rls.toml",
                    ident(&p.name),
                    qualified(&spec.schema, &spec.table)
                ),
            );
        }
        if !have.is_empty() && have.iter().all(|p| !p.permissive) {
            cx.finding(&key,
                "only RESTRICTIVE policies: the table is deny-all for every role",
                "run `cargo xtask gen-rls` to create the permissive tenant isolation policy",
            );
        }
    }
    Ok(())
}

fn describe(p: &PolicySpec) -> String {
    format!(
        "{} FOR {} TO {} USING ({}) WITH CHECK ({})",
        if p.permissive { "PERMISSIVE" } else { "RESTRICTIVE" },
        p.command,
        p.roles.join(", "),
        p.using.as_deref().unwrap_or("-"),
        p.with_check.as_deref().unwrap_or("-")
    )
}
