//! TI014 `search-path`: every function with a string body in a module's
//! schemas has a fixed search_path. Owns this rule only; it reads the catalog.

use super::prelude::*;
use super::for_each_function;

rule! {
    /// A function whose body is a string (`AS $$…$$`, PL/pgSQL or SQL) resolves the
    /// names it uses when it runs, through the caller's search_path. A caller that can
    /// create objects anywhere on its own search_path (a temporary schema, for a
    /// start) can then shadow a function, operator or table the body uses and run
    /// its own code inside a trigger or a helper. A SQL-standard body (`RETURN …`,
    /// `BEGIN ATOMIC … END`) binds every name when it is created and needs no fixed
    /// search_path (and an inlinable helper must not have one: see TI004).
    pub static RULE = {
        id: "TI014",
        name: "search-path",
        summary: "functions with a string body have a fixed search_path",
        fix: "ALTER FUNCTION … SET search_path = pg_catalog, pg_temp (or recreate a SQL function with a SQL-standard body).",
        needs: None,
        kind: Kind::Static(check),
    };
}

fn check(cx: &mut Ctx<'_>) -> Result<()> {
    for_each_function(cx, |cx, f, key, q| {
    // A SQL-standard body stores what every name it uses resolved to
    // (by OID) when the function was created: no caller's search_path
    // can redirect it. What it calls is checked on its own.
    if !f.has_fixed_search_path() && !f.standard_body && f.kind != "a" {
        cx.finding(
            key,
            "function without a fixed search_path: callers can hijack the names it resolves",
            if f.language == "sql" {
                format!(
                    "ALTER FUNCTION {q} SET search_path = pg_catalog, pg_temp, or recreate it with a \
                     SQL-standard body (RETURN …)"
                )
            } else {
                format!("ALTER FUNCTION {q} SET search_path = pg_catalog, pg_temp")
            },
        );
    }
    });
    Ok(())
}
