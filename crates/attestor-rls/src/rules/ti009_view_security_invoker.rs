//! TI009 `view-security-invoker`: every view in a module's schemas is
//! `security_invoker`. Owns this rule only; it reads the catalog.

use super::prelude::*;

rule! {
    /// A view without `security_invoker = true` reads its tables with its owner's
    /// rights. The owner is exempt from non-forced RLS, and policies are evaluated for
    /// the view's owner, not for the session: a view over a tenant table can show the
    /// app every tenant's rows even though the table's own policies are right.
    pub static RULE = {
        id: "TI009",
        name: "view-security-invoker",
        summary: "views in the module schemas are security_invoker",
        fix: "ALTER VIEW … SET (security_invoker = true), or declare it in rls.toml: [[allow]] rule = \"TI009\".",
        needs: None,
        kind: Kind::Static(check),
    };
}

fn check(cx: &mut Ctx<'_>) -> Result<()> {
    let (catalog, m) = (cx.catalog, cx.module);
    let schemas = m.schemas();
    for t in catalog.tables.iter().filter(|t| schemas.contains(&t.schema) && t.kind == "v") {
        let key = t.key();
        cx.examine(&key);
        let invoker = t.options.iter().any(|o| {
            matches!(
                o.as_str(),
                "security_invoker=true" | "security_invoker=on" | "security_invoker=1" | "security_invoker=yes"
            )
        });
        if !invoker {
            cx.finding(
                &key,
                "view without security_invoker: it reads tables with its owner's rights, bypassing RLS",
                format!("ALTER VIEW {} SET (security_invoker = true)", t.qualified()),
            );
        }
    }
    Ok(())
}
