//! TI010 `materialized-view`: no materialized view in a module's schemas
//! stores rows of a tenant table. Owns this rule only; it reads the catalog.

use super::prelude::*;

rule! {
    /// A materialized view stores a copy of the rows its query saw when it was
    /// refreshed, and RLS cannot be enabled on it. Over a tenant table it holds every
    /// tenant's rows (as its owner saw them), readable by anyone with SELECT on it.
    pub static RULE = {
        id: "TI010",
        name: "materialized-view",
        summary: "no materialized view over tenant tables",
        fix: "DROP MATERIALIZED VIEW … and use a security_invoker view; or declare it in rls.toml: [[allow]] rule = \"TI010\".",
        needs: None,
        kind: Kind::Static(check),
    };
}

fn check(cx: &mut Ctx<'_>) -> Result<()> {
    let (catalog, m) = (cx.catalog, cx.module);
    let schemas = m.schemas();
    for t in catalog.tables.iter().filter(|t| schemas.contains(&t.schema) && t.kind == "m") {
        let key = t.key();
        cx.examine(&key);
        if let Some(sources) = catalog.matview_sources.get(&key) {
            cx.finding(
                &key,
                format!(
                    "materialized view over tenant table(s) {}: it stores every tenant's rows without RLS",
                    sources.join(", ")
                ),
                format!("DROP MATERIALIZED VIEW {} (use a security_invoker view)", t.qualified()),
            );
        }
    }
    Ok(())
}
