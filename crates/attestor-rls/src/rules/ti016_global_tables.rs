//! TI016 `global-tables`: a table of a module schema without `tenant_id` is
//! declared global in rls.toml, and the helper schema holds no tables. Owns
//! this rule only; it reads the catalog.

use super::prelude::*;

rule! {
    /// A table in a module schema without a `tenant_id` column gets no policy from
    /// `gen-rls`: whatever it stores is shared by every tenant. That must be a
    /// decision, declared with a reason in rls.toml (`[[global_table]]`), not an
    /// accident of a migration that forgot the column. The helper schema
    /// (`<module>_app`) holds functions only; a table there escapes the module
    /// schema's rules altogether.
    pub static RULE = {
        id: "TI016",
        name: "global-tables",
        summary: "tables without tenant_id are declared global; the helper schema holds no tables",
        fix: "Add tenant_id uuid NOT NULL and run `cargo xtask gen-rls`, or declare the table in rls.toml: [[global_table]] module, table, reason.",
        needs: None,
        kind: Kind::Static(check),
    };
}

fn check(cx: &mut Ctx<'_>) -> Result<()> {
    let (catalog, m, config) = (cx.catalog, cx.module, cx.config);
    for t in catalog
        .tables
        .iter()
        .filter(|t| t.schema == m.schema && matches!(t.kind.as_str(), "r" | "p" | "f"))
    {
        let key = t.key();
        cx.examine(&key);
        if !t.is_tenant() && !config.is_global(&m.key, &t.name) {
            cx.finding(&key,
                "table without tenant_id that is not declared global",
                format!(
                    "add tenant_id uuid NOT NULL (and run `cargo xtask gen-rls`), or declare it in rls.toml: \
                     [[global_table]] module = \"{}\", table = \"{}\", reason = \"…\"",
                    m.key, t.name
                ),
            );
        }
    }
    for t in catalog
        .tables
        .iter()
        .filter(|t| t.schema == m.helper_schema() && matches!(t.kind.as_str(), "r" | "p"))
    {
        let key = t.key();
        cx.examine(&key);
        cx.finding(&key,
            "table in the helper schema (it holds functions only)",
            format!("move it to schema {}", m.schema),
        );
    }
    Ok(())
}
