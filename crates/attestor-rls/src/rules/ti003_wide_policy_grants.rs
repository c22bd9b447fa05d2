//! TI003 `wide-policy-grants`: a declared policy that passes every row
//! (`WITH CHECK (true)`) is narrowed by the role's grants. Owns this rule
//! only; it reads privileges and never writes.

use super::prelude::*;

use crate::generate::desired;

rule! {
    /// A policy declared in rls.toml whose WITH CHECK is `true` (the queue worker's
    /// UPDATE policy) lets its role write rows of every tenant. That is only safe
    /// while the role's privileges are narrow: it must hold neither INSERT on the
    /// table nor UPDATE of `tenant_id`, or it could create rows for any tenant or
    /// move a row from one tenant to another.
    pub static RULE = {
        id: "TI003",
        name: "wide-policy-grants",
        summary: "a declared pass-all policy is narrowed by grants: no INSERT, no UPDATE of tenant_id",
        fix: "REVOKE INSERT, UPDATE (tenant_id) ON the table FROM the role; grant UPDATE only on the columns it must change.",
        needs: None,
        kind: Kind::Static(check),
    };
}

fn check(cx: &mut Ctx<'_>) -> Result<()> {
    let (catalog, m, config) = (cx.catalog, cx.module, cx.config);
    for spec in desired(catalog, std::slice::from_ref(m), config) {
        let key = format!("{}.{}", spec.schema, spec.table);
        cx.examine(&key);
        // Declared exceptions that pass everything (`true`) must be narrowed by grants:
        // such a role must not be able to move a row to another tenant or insert.
        for e in spec.policies.iter().filter(|p| p.reason.is_some()) {
            for role in &e.roles {
                let cmd = e.command.as_str();
                let widen = e.with_check.as_deref().map(str::trim) == Some("true")
                    || (e.with_check.is_none() && e.using.as_deref().map(str::trim) == Some("true"));
                if !widen || !matches!(cmd, "ALL" | "UPDATE" | "INSERT") {
                    continue;
                }
                let q = qualified(&spec.schema, &spec.table);
                let row = cx.db.text(&format!(
                    "SELECT concat_ws(',',
                        CASE WHEN has_column_privilege({r}, {t}, 'tenant_id', 'UPDATE') THEN 'UPDATE (tenant_id)' END,
                        CASE WHEN has_table_privilege({r}, {t}, 'INSERT') THEN 'INSERT' END) AS v
                     WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {r})",
                    r = lit(role),
                    t = lit(&q)
                ))?;
                if let Some(privs) = row.filter(|s| !s.is_empty()) {
                    cx.finding(&key,
                        format!(
                            "declared policy {} lets {role} write any tenant's rows (WITH CHECK true) and {role} holds {privs}",
                            e.name
                        ),
                        format!("REVOKE INSERT, UPDATE (tenant_id) ON {q} FROM {role}; grant only the columns it must update"),
                    );
                }
            }
        }
    }
    Ok(())
}
