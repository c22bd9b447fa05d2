//! TI024 `module-ownership`: the module's schemas and every relation,
//! sequence, function and type in them belong to the module's owner role.
//! Owns this rule only; it reads the catalog and never writes.

use serde::Deserialize;

use super::prelude::*;

rule! {
    /// The owner of an object may alter or drop it, change its policies and grants,
    /// and (unless RLS is forced) is exempt from its policies; the owner of a schema
    /// may drop and replace anything in it; the owner of a function may replace its
    /// body, so a helper, a trigger function or a tenant check owned by someone else
    /// is that role's code. Every object of a module — its table schema and its
    /// helper schema, and the tables, views, sequences, functions (helpers and
    /// trigger functions) and types in them — must be owned by the module's owner
    /// role (`<module>_owner`, NOLOGIN), never by a runtime role or any other role,
    /// a superuser included. Migrations from `DDL_AS_MIGRATOR_SINCE` on run their
    /// DDL as the migrator, usually a superuser, and hand what they create to the
    /// owner role; an object one of them forgot stays the superuser's, and then a
    /// view (without security_invoker) reads every tenant's rows as a superuser,
    /// past every policy, a SECURITY DEFINER function runs as one, and a new
    /// function is executable by PUBLIC (the owner role's default privileges,
    /// which revoke that, do not apply to objects the superuser owns).
    pub static RULE = {
        id: "TI024",
        name: "module-ownership",
        summary: "module schemas and their relations, sequences, functions and types are owned by the module's owner role",
        fix: "ALTER SCHEMA|TABLE|SEQUENCE|FUNCTION|TYPE … OWNER TO <module>_owner.",
        needs: None,
        kind: Kind::Static(check),
    };
}

#[derive(Deserialize)]
struct Owned {
    /// SCHEMA, TABLE, VIEW, MATERIALIZED VIEW, SEQUENCE, FOREIGN TABLE, FUNCTION, PROCEDURE, TYPE.
    kind: String,
    /// As findings name it.
    object: String,
    /// As SQL names it after the kind.
    sql: String,
    owner: String,
    superuser: bool,
}

fn check(cx: &mut Ctx<'_>) -> Result<()> {
    let m = cx.module;
    let owner = m.owner_role();
    let runtime = m.runtime_roles();
    let schemas = super::text_array(&m.schemas());
    let owned: Vec<Owned> = cx.db.json(&format!(
        "SELECT q.*, coalesce(r.rolsuper, false) AS superuser FROM (
         SELECT 'SCHEMA' AS kind, 'schema ' || n.nspname AS object, quote_ident(n.nspname) AS sql,
                pg_get_userbyid(n.nspowner)::text AS owner
         FROM pg_namespace n WHERE n.nspname = ANY ({schemas})
         UNION ALL
         SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                               WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
                n.nspname || '.' || c.relname, quote_ident(n.nspname) || '.' || quote_ident(c.relname),
                pg_get_userbyid(c.relowner)::text
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = ANY ({schemas}) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
         UNION ALL
         SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END,
                n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
                quote_ident(n.nspname) || '.' || quote_ident(p.proname) || '(' || pg_get_function_identity_arguments(p.oid) || ')',
                pg_get_userbyid(p.proowner)::text
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = ANY ({schemas})
         UNION ALL
         SELECT 'TYPE', 'type ' || n.nspname || '.' || t.typname,
                quote_ident(n.nspname) || '.' || quote_ident(t.typname), pg_get_userbyid(t.typowner)::text
         FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
         WHERE n.nspname = ANY ({schemas}) AND t.typrelid = 0
           AND NOT (t.typcategory = 'A' AND t.typelem <> 0)) q
         LEFT JOIN pg_roles r ON r.rolname = q.owner
         ORDER BY 2"
    ))?;
    for o in owned {
        cx.examine(&o.object);
        if o.owner == owner {
            continue;
        }
        let why = if runtime.contains(&o.owner) {
            ": a runtime role that owns it can alter it and is exempt from its policies"
        } else if o.superuser {
            ": a migration that ran as the migrator did not hand it over, and what a superuser owns (a view, \
             a SECURITY DEFINER function) runs with a superuser's rights, past every policy"
        } else {
            ": its owner can alter or replace it outside the module's migrations"
        };
        cx.finding(
            &o.object,
            format!("owned by {}, not by the module's owner role {owner}{why}", o.owner),
            format!("ALTER {} {} OWNER TO {}", o.kind, o.sql, ident(&owner)),
        );
    }
    Ok(())
}
