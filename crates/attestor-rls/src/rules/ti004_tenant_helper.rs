//! TI004 `tenant-helper`: `<module>_app.require_current_tenant()`, the
//! function every policy calls, and its slow path `tenant_context_error(text)`
//! are the canonical ones. Owns this rule and the canonical texts; it reads
//! the catalog (and deparses the canonical body on a temporary function in a
//! rolled-back savepoint).

use super::prelude::*;

/// The migration that last defines the canonical tenant helper.
pub const HELPER_MIGRATION: &str = "2026-11-28-000007_cheaper_tenant_check";

/// The migration that creates the helper's slow path.
pub const SLOW_PATH_MIGRATION: &str = "2026-11-28-000006_inline_tenant_helper";

/// The canonical SQL-standard body (`RETURN …`) of
/// `<module>_app.require_current_tenant()`, as migration 7 writes it for
/// module `attestor` (a unit test keeps them in step; [`helper_body`] puts in
/// another module's helper schema). This rule never compares this text
/// directly: the server deparses it (a temporary function, rolled back) and
/// that is compared with the helper's deparsed body, since the deparsed form
/// adds casts and parentheses and qualifies names by the session's
/// search_path.
pub const HELPER_BODY: &str = include_str!("../require_current_tenant.sql");

/// The canonical body of `<module>_app.tenant_context_error(text)`, the
/// PL/pgSQL slow path of the helper (compared whitespace-normalized with
/// `prosrc`); migration 6 must contain exactly this (a unit test checks).
pub const SLOW_PATH_BODY: &str = include_str!("../tenant_context_error.plpgsql");

/// [`HELPER_BODY`] for module `m` (its slow path lives in `m`'s helper schema).
pub fn helper_body(m: &Module) -> String {
    HELPER_BODY.replace(
        "attestor_app.tenant_context_error(",
        &format!("{}.tenant_context_error(", ident(&m.helper_schema())),
    )
}

use crate::catalog::{canonical_sql_body, Function};
use crate::Module;

rule! {
    /// Every policy compares `tenant_id` with `<module>_app.require_current_tenant()`.
    /// That helper must be exactly the canonical one: returns uuid, STABLE, SECURITY
    /// INVOKER, owned by the owner role, `LANGUAGE sql` with a SQL-standard body
    /// (`RETURN …`) equal to the canonical body, no SET clause, not executable by
    /// PUBLIC. Its slow path `tenant_context_error(text)` must be the canonical
    /// PL/pgSQL function: STABLE, not STRICT, SECURITY INVOKER, a fixed search_path.
    ///
    /// The helper is what makes a connection that forgot its tenant fail loudly
    /// (AT001) instead of matching nothing, and what refuses a malformed or nil
    /// tenant (AT002). A replaced body can quietly return NULL or a fixed tenant; a
    /// VOLATILE helper cannot be an index condition and runs for every row; a SET clause or a volatile slow path stops the
    /// planner from inlining it; a STRICT slow path turns an unset tenant into NULL
    /// (no rows, no error); a string body resolves names through the caller's
    /// search_path, so a caller could redirect it.
    pub static RULE = {
        id: "TI004",
        name: "tenant-helper",
        summary: "require_current_tenant() is the canonical inlinable SQL helper, tenant_context_error(text) its canonical slow path",
        fix: "Recreate the functions exactly as the newest migration that defines them does (the canonical texts are crates/attestor-rls/src/require_current_tenant.sql and tenant_context_error.plpgsql).",
        needs: Some("TEMPORARY on the database (the canonical body is deparsed on a temporary function)"),
        kind: Kind::Static(check),
    };
}

fn check(cx: &mut Ctx<'_>) -> Result<()> {
    let (catalog, m) = (cx.catalog, cx.module);
    let schema = m.helper_schema();
    let object = format!("{schema}.require_current_tenant()");
    let recreate = format!("recreate it exactly as migration {HELPER_MIGRATION} does");
    cx.examine(&object);
    match catalog
        .functions
        .iter()
        .find(|f| f.schema == schema && f.name == "require_current_tenant" && f.args.is_empty())
    {
        None => cx.finding(&object,
            "the helper function does not exist",
            format!("create it as migration {HELPER_MIGRATION} does"),
        ),
        Some(f) => {
            // (problem, fix)
            let mut problems: Vec<(String, String)> = Vec::new();
            common_problems(f, m, false, &mut problems);
            if let Some(set) = set_clause(f) {
                problems.push((
                    format!(
                        "has a SET clause ({set}): a function with a SET clause cannot be inlined, so every \
                         statement pays a function call"
                    ),
                    if f.language == "sql" && f.standard_body {
                        format!(
                            "ALTER FUNCTION {object} RESET ALL (its SQL-standard body needs no search_path: the \
                             names are bound when it is created)"
                        )
                    } else {
                        recreate.clone()
                    },
                ));
            }
            if f.language != "sql" {
                problems.push((
                    format!(
                        "is LANGUAGE {}, must be LANGUAGE sql with a SQL-standard body (RETURN …): only a SQL \
                         function can be inlined into the policies",
                        f.language
                    ),
                    recreate.clone(),
                ));
            } else if !f.standard_body {
                problems.push((
                    "has a string body (AS '…'), must have a SQL-standard body (RETURN …): a string body \
                     resolves its names at run time, through the caller's search_path"
                        .into(),
                    recreate.clone(),
                ));
            } else {
                let want = helper_body(m);
                let canonical = canonical_sql_body(cx.db, "uuid", &want)?;
                let have = normalize_ws(f.sql_body.as_deref().unwrap_or(""));
                match canonical {
                    Ok(c) if normalize_ws(&c) == have => {}
                    Ok(_) => problems.push((
                        "has a body that differs from the canonical one".into(),
                        format!("{recreate} (body: crates/attestor-rls/src/require_current_tenant.sql)"),
                    )),
                    Err(e) => problems.push((
                        "has a body that differs from the canonical one".into(),
                        format!("{recreate} (the canonical body does not compile in this database: {e})"),
                    )),
                }
            }
            for (p, fix) in problems {
                cx.finding(&object,
                    format!("the helper {p}"),
                    if fix.is_empty() { recreate.clone() } else { fix },
                );
            }
        }
    }

    let slow = catalog
        .functions
        .iter()
        .find(|f| f.schema == schema && f.name == "tenant_context_error" && f.arg_types == "text");
    let slow_object = slow.map_or_else(|| format!("{schema}.tenant_context_error(raw text)"), |f| f.key());
    cx.examine(&slow_object);
    let Some(f) = slow else {
        cx.finding(&slow_object,
            "the helper's slow path does not exist",
            format!("create it as migration {SLOW_PATH_MIGRATION} does"),
        );
        return Ok(());
    };
    let mut problems: Vec<(String, String)> = Vec::new();
    common_problems(f, m, true, &mut problems);
    if f.strict {
        problems.push((
            "is STRICT: for an unset tenant (NULL) it returns NULL instead of raising AT001".into(),
            format!("ALTER FUNCTION {schema}.tenant_context_error(text) CALLED ON NULL INPUT"),
        ));
    }
    if !f.has_fixed_search_path() {
        problems.push((
            "has no fixed search_path".into(),
            format!(
                "ALTER FUNCTION {schema}.tenant_context_error(text) SET search_path = pg_catalog, pg_temp"
            ),
        ));
    }
    if f.language != "plpgsql"
        || normalize_ws(f.body.as_deref().unwrap_or("")) != normalize_ws(SLOW_PATH_BODY)
    {
        problems.push((
            "has a body that differs from the canonical one".into(),
            format!(
                "recreate it exactly as migration {SLOW_PATH_MIGRATION} does (body: \
                 crates/attestor-rls/src/tenant_context_error.plpgsql)"
            ),
        ));
    }
    for (p, fix) in problems {
        cx.finding(&slow_object,
            format!("the slow path {p}"),
            if fix.is_empty() {
                format!("recreate it exactly as migration {SLOW_PATH_MIGRATION} does")
            } else {
                fix
            },
        );
    }
    Ok(())
}

/// What the helper and its slow path share: returns uuid, STABLE, SECURITY
/// INVOKER, owned by the owner role, not executable by PUBLIC (`slow_path`:
/// `f` is tenant_context_error). An empty fix means "recreate it".
fn common_problems(f: &Function, m: &Module, slow_path: bool, problems: &mut Vec<(String, String)>) {
    let q = format!(
        "{}.{}({})",
        ident(&f.schema),
        ident(&f.name),
        f.arg_types
    );
    if f.returns != "uuid" {
        problems.push((format!("returns {} instead of uuid", f.returns), String::new()));
    }
    if f.volatility != "s" {
        let v = match (f.volatility.as_str(), slow_path) {
            ("i", false) => "IMMUTABLE (the planner may fold it into a constant)",
            ("i", true) => "IMMUTABLE (it is not: it raises on what the GUC holds)",
            (_, false) => "VOLATILE (it cannot be an index condition, so it runs for every row read)",
            (_, true) => "VOLATILE (a volatile call in the helper's body stops the planner from inlining it)",
        };
        problems.push((
            format!("is {v}, must be STABLE"),
            format!("ALTER FUNCTION {q} STABLE"),
        ));
    }
    if f.security_definer {
        problems.push((
            "is SECURITY DEFINER, must be SECURITY INVOKER".into(),
            format!("ALTER FUNCTION {q} SECURITY INVOKER"),
        ));
    }
    if f.owner != m.owner_role() {
        problems.push((
            format!("is owned by {}, must be owned by {}", f.owner, m.owner_role()),
            format!("ALTER FUNCTION {q} OWNER TO {}", m.owner_role()),
        ));
    }
    if f.public_execute {
        problems.push((
            "is executable by PUBLIC".into(),
            format!("REVOKE ALL ON FUNCTION {q} FROM PUBLIC"),
        ));
    }
}

/// The function's SET clauses (`SET search_path = pg_catalog, pg_temp`), if any.
fn set_clause(f: &Function) -> Option<String> {
    let settings: Vec<String> = f
        .config
        .iter()
        .flatten()
        .map(|c| match c.split_once('=') {
            Some((name, value)) => format!("SET {name} = {value}"),
            None => format!("SET {c}"),
        })
        .collect();
    (!settings.is_empty()).then(|| settings.join(", "))
}

fn normalize_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up_sql(migration: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../migrations/{migration}/up.sql"));
        normalize_ws(&std::fs::read_to_string(path).unwrap())
    }

    #[test]
    fn the_migrations_create_the_canonical_helper_and_slow_path() {
        let helper = up_sql(HELPER_MIGRATION);
        assert!(
            helper.contains("FUNCTION attestor_app.require_current_tenant() RETURNS uuid LANGUAGE sql")
                && helper.contains(&format!("{};", normalize_ws(HELPER_BODY))),
            "require_current_tenant() in migration {HELPER_MIGRATION} differs from \
             crates/attestor-rls/src/require_current_tenant.sql"
        );
        let slow = up_sql(SLOW_PATH_MIGRATION);
        assert!(
            slow.contains(&format!("AS $$ {} $$;", normalize_ws(SLOW_PATH_BODY))),
            "tenant_context_error() in migration {SLOW_PATH_MIGRATION} differs from \
             crates/attestor-rls/src/tenant_context_error.plpgsql"
        );
        assert!(
            slow.contains("REVOKE ALL ON FUNCTION attestor_app.tenant_context_error(text) FROM PUBLIC;"),
            "migration {SLOW_PATH_MIGRATION} must revoke EXECUTE on the slow path from PUBLIC"
        );
    }

    #[test]
    fn helper_body_names_the_module_helper_schema() {
        assert_eq!(helper_body(&Module::new("attestor", "attestor")), HELPER_BODY);
        let other = helper_body(&Module::new("billing", "billing"));
        assert!(
            other.contains("ELSE billing_app.tenant_context_error(current_setting("),
            "{other}"
        );
        assert!(!other.contains("attestor_app"), "{other}");
    }

    #[test]
    fn set_clauses_are_spelled_as_sql() {
        let mut f: Function = serde_json::from_value(serde_json::json!({
            "schema": "attestor_app", "name": "require_current_tenant", "args": "", "arg_types": "",
            "kind": "f", "security_definer": false, "leakproof": false, "volatility": "s",
            "owner": "attestor_owner", "config": null, "is_trigger": false, "returns": "uuid",
            "strict": false, "body": "", "standard_body": true, "sql_body": "RETURN 1",
            "language": "sql", "public_execute": false
        }))
        .unwrap();
        assert_eq!(set_clause(&f), None);
        f.config = Some(vec![
            "search_path=pg_catalog, pg_temp".into(),
            "work_mem=64kB".into(),
        ]);
        assert_eq!(
            set_clause(&f).as_deref(),
            Some("SET search_path = pg_catalog, pg_temp, SET work_mem = 64kB")
        );
    }
}
