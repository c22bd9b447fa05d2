//! verify-rls, static part: checks 1–11 of issue 3 against the catalog.
//!
//! Owns the rules of DESIGN.md §3 as catalog queries, each finding naming
//! its object and a fix. Reads only: it runs inside the verifier's
//! rolled-back transaction and must never change anything (the one write,
//! a temporary table to normalize policy expressions, is rolled back).

use std::collections::BTreeSet;

use anyhow::Result;
use serde::Deserialize;

use super::catalog::{canonical_exprs, canonical_sql_body, policies_on, Catalog, Function, Table};
use super::config::Config;
use super::db::Db;
use super::generate::{desired, policy_matches, PolicySpec};
use super::report::{Check, Finding, Report};
use super::{isolation_policy_name, lit, Module};

/// The migration that last defines the canonical tenant helper.
pub const HELPER_MIGRATION: &str = "2026-11-28-000007_cheaper_tenant_check";

/// The migration that creates the helper's slow path.
pub const SLOW_PATH_MIGRATION: &str = "2026-11-28-000006_inline_tenant_helper";

/// The canonical SQL-standard body (`RETURN …`) of
/// `<module>_app.require_current_tenant()`, as migration 7 writes it for
/// module `attestor` (a unit test keeps them in step; [`helper_body`] puts in
/// another module's helper schema). Check 3 never compares this text
/// directly: the server deparses it (a temporary function, rolled back) and
/// that is compared with the helper's deparsed body, since the deparsed form
/// adds casts and parentheses and qualifies names by the session's
/// search_path.
pub const HELPER_BODY: &str = include_str!("require_current_tenant.sql");

/// The canonical body of `<module>_app.tenant_context_error(text)`, the
/// PL/pgSQL slow path of the helper (compared whitespace-normalized with
/// `prosrc`); migration 6 must contain exactly this (a unit test checks).
pub const SLOW_PATH_BODY: &str = include_str!("tenant_context_error.plpgsql");

/// [`HELPER_BODY`] for module `m` (its slow path lives in `m`'s helper schema).
pub fn helper_body(m: &Module) -> String {
    HELPER_BODY.replace(
        "attestor_app.tenant_context_error(",
        &format!("{}.tenant_context_error(", super::ident(&m.helper_schema())),
    )
}

fn list(items: &[String]) -> String {
    format!(
        "ARRAY[{}]::text[]",
        items.iter().map(|s| lit(s)).collect::<Vec<_>>().join(", ")
    )
}

fn normalize_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Run every static check for `modules`.
pub fn run(
    db: &mut Db,
    catalog: &Catalog,
    modules: &[Module],
    config: &Config,
    report: &mut Report,
) -> Result<()> {
    for m in modules {
        rls_enabled(catalog, m, report);
        policies(db, catalog, m, config, report)?;
        helper(db, catalog, m, report)?;
        conventions(catalog, m, report);
        roles(db, m, report)?;
        public_grants(db, m, report)?;
        leaks(catalog, m, config, report);
        partitions(db, catalog, m, report)?;
        global_tables(catalog, m, config, report);
        schema_isolation(db, m, modules, report)?;
        citus(catalog, m, config, report);
    }
    Ok(())
}

/// Check 1.
fn rls_enabled(catalog: &Catalog, m: &Module, report: &mut Report) {
    for t in catalog.tenant_tables(&m.schema) {
        let key = t.key();
        report.examine(&key, Check::RlsEnabled);
        let q = t.qualified();
        if !t.rls {
            report.add(Finding::new(
                Check::RlsEnabled,
                &key,
                "row level security is not enabled",
                format!("run `cargo xtask gen-rls` (ALTER TABLE {q} ENABLE ROW LEVEL SECURITY)"),
            ));
        }
        if !t.force {
            report.add(Finding::new(
                Check::RlsEnabled,
                &key,
                "row level security is not forced (the owner bypasses it)",
                format!("run `cargo xtask gen-rls` (ALTER TABLE {q} FORCE ROW LEVEL SECURITY)"),
            ));
        }
        if let Some(c) = t.column("tenant_id") {
            if c.base != "uuid" || !c.not_null {
                report.add(Finding::new(
                    Check::RlsEnabled,
                    &key,
                    format!(
                        "tenant_id is `{}{}`, must be `uuid NOT NULL`",
                        c.ty,
                        if c.not_null { " NOT NULL" } else { "" }
                    ),
                    format!("ALTER TABLE {q} ALTER COLUMN tenant_id TYPE uuid, ALTER COLUMN tenant_id SET NOT NULL"),
                ));
            }
        }
    }
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

/// Check 2.
fn policies(db: &mut Db, catalog: &Catalog, m: &Module, config: &Config, report: &mut Report) -> Result<()> {
    for spec in desired(catalog, std::slice::from_ref(m), config) {
        let key = format!("{}.{}", spec.schema, spec.table);
        report.examine(&key, Check::Policies);
        let have: Vec<_> = catalog.policies_of(&spec.schema, &spec.table).cloned().collect();
        for want in &spec.policies {
            match have.iter().find(|p| p.name == want.name) {
                None => report.add(Finding::new(
                    Check::Policies,
                    &key,
                    format!("policy {} is missing", want.name),
                    "run `cargo xtask gen-rls` and apply the generated migration",
                )),
                Some(p) => {
                    if !policy_matches(db, p, want, &spec.schema, &spec.table)? {
                        report.add(Finding::new(
                            Check::Policies,
                            &key,
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
                        ));
                    }
                }
            }
        }
        let declared: BTreeSet<&str> = spec.policies.iter().map(|p| p.name.as_str()).collect();
        for p in have.iter().filter(|p| !declared.contains(p.name.as_str())) {
            report.add(Finding::new(
                Check::Policies,
                &key,
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
                    super::ident(&p.name),
                    super::qualified(&spec.schema, &spec.table)
                ),
            ));
        }
        if !have.is_empty() && have.iter().all(|p| !p.permissive) {
            report.add(Finding::new(
                Check::Policies,
                &key,
                "only RESTRICTIVE policies: the table is deny-all for every role",
                "run `cargo xtask gen-rls` to create the permissive tenant isolation policy",
            ));
        }
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
                let q = super::qualified(&spec.schema, &spec.table);
                let row = db.text(&format!(
                    "SELECT concat_ws(',',
                        CASE WHEN has_column_privilege({r}, {t}, 'tenant_id', 'UPDATE') THEN 'UPDATE (tenant_id)' END,
                        CASE WHEN has_table_privilege({r}, {t}, 'INSERT') THEN 'INSERT' END) AS v
                     WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {r})",
                    r = lit(role),
                    t = lit(&q)
                ))?;
                if let Some(privs) = row.filter(|s| !s.is_empty()) {
                    report.add(Finding::new(
                        Check::Policies,
                        &key,
                        format!(
                            "declared policy {} lets {role} write any tenant's rows (WITH CHECK true) and {role} holds {privs}",
                            e.name
                        ),
                        format!("REVOKE INSERT, UPDATE (tenant_id) ON {q} FROM {role}; grant only the columns it must update"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Check 3: the tenant helper and its slow path.
///
/// `<module>_app.require_current_tenant()` is what every policy calls (once
/// per statement, as an InitPlan). It must be the canonical *inlinable* SQL
/// function of migration 7 (6 for the slow path): returns uuid, STABLE, SECURITY INVOKER, owned by
/// the owner role, `LANGUAGE sql` with a SQL-standard body (`RETURN …`) equal
/// to [`HELPER_BODY`] (both sides deparsed by the server in this session,
/// then compared whitespace-normalized), no SET clause at all (a function
/// with one is never inlined), and not executable by PUBLIC. It needs no
/// `SET search_path`: a SQL-standard body binds every name it uses when the
/// function is created, so no caller's search_path can redirect it.
///
/// `<module>_app.tenant_context_error(text)` is the PL/pgSQL slow path that
/// body calls for anything but a canonical UUID (it raises AT001/AT002):
/// returns uuid, STABLE (a volatile call in the helper's body would stop
/// the planner from inlining it), not STRICT (an unset tenant would give
/// NULL instead of AT001), SECURITY INVOKER, owned by the owner role, a
/// fixed search_path, the body [`SLOW_PATH_BODY`], not executable by PUBLIC.
fn helper(db: &mut Db, catalog: &Catalog, m: &Module, report: &mut Report) -> Result<()> {
    let schema = m.helper_schema();
    let object = format!("{schema}.require_current_tenant()");
    let recreate = format!("recreate it exactly as migration {HELPER_MIGRATION} does");
    report.examine(&object, Check::Helper);
    match catalog
        .functions
        .iter()
        .find(|f| f.schema == schema && f.name == "require_current_tenant" && f.args.is_empty())
    {
        None => report.add(Finding::new(
            Check::Helper,
            &object,
            "the helper function does not exist",
            format!("create it as migration {HELPER_MIGRATION} does"),
        )),
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
                let canonical = canonical_sql_body(db, "uuid", &want)?;
                let have = normalize_ws(f.sql_body.as_deref().unwrap_or(""));
                match canonical {
                    Ok(c) if normalize_ws(&c) == have => {}
                    Ok(_) => problems.push((
                        "has a body that differs from the canonical one".into(),
                        format!("{recreate} (body: xtask/src/rls/require_current_tenant.sql)"),
                    )),
                    Err(e) => problems.push((
                        "has a body that differs from the canonical one".into(),
                        format!("{recreate} (the canonical body does not compile in this database: {e})"),
                    )),
                }
            }
            for (p, fix) in problems {
                report.add(Finding::new(
                    Check::Helper,
                    &object,
                    format!("the helper {p}"),
                    if fix.is_empty() { recreate.clone() } else { fix },
                ));
            }
        }
    }

    let slow = catalog
        .functions
        .iter()
        .find(|f| f.schema == schema && f.name == "tenant_context_error" && f.arg_types == "text");
    let slow_object = slow.map_or_else(|| format!("{schema}.tenant_context_error(raw text)"), |f| f.key());
    report.examine(&slow_object, Check::Helper);
    let Some(f) = slow else {
        report.add(Finding::new(
            Check::Helper,
            &slow_object,
            "the helper's slow path does not exist",
            format!("create it as migration {SLOW_PATH_MIGRATION} does"),
        ));
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
                 xtask/src/rls/tenant_context_error.plpgsql)"
            ),
        ));
    }
    for (p, fix) in problems {
        report.add(Finding::new(
            Check::Helper,
            &slow_object,
            format!("the slow path {p}"),
            if fix.is_empty() {
                format!("recreate it exactly as migration {SLOW_PATH_MIGRATION} does")
            } else {
                fix
            },
        ));
    }
    Ok(())
}

/// What the helper and its slow path share: returns uuid, STABLE, SECURITY
/// INVOKER, owned by the owner role, not executable by PUBLIC (`slow_path`:
/// `f` is tenant_context_error). An empty fix means "recreate it".
fn common_problems(f: &Function, m: &Module, slow_path: bool, problems: &mut Vec<(String, String)>) {
    let q = format!(
        "{}.{}({})",
        super::ident(&f.schema),
        super::ident(&f.name),
        f.arg_types
    );
    if f.returns != "uuid" {
        problems.push((format!("returns {} instead of uuid", f.returns), String::new()));
    }
    if f.volatility != "s" {
        let v = match (f.volatility.as_str(), slow_path) {
            ("i", false) => "IMMUTABLE (the planner may fold it into a constant)",
            ("i", true) => "IMMUTABLE (it is not: it raises on what the GUC holds)",
            (_, false) => "VOLATILE (evaluated per row instead of once per statement)",
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

/// Check 4.
fn conventions(catalog: &Catalog, m: &Module, report: &mut Report) {
    for t in catalog.tenant_tables(&m.schema) {
        let key = t.key();
        let q = t.qualified();
        report.examine(&key, Check::Conventions);
        let mut add = |msg: String, fix: String| report.add(Finding::new(Check::Conventions, &key, msg, fix));
        for (col, base, needs_default) in [
            ("id", "uuid", false),
            ("tenant_id", "uuid", false),
            ("created_at", "timestamptz", true),
            ("updated_at", "timestamptz", true),
        ] {
            match t.column(col) {
                None => add(
                    format!("required column {col} is missing"),
                    format!("ALTER TABLE {q} ADD COLUMN {col} {base} NOT NULL"),
                ),
                Some(c) if c.base != base || !c.not_null || (needs_default && c.default.is_none()) => add(
                    format!(
                        "column {col} is `{}`{}{}, must be `{base} NOT NULL{}`",
                        c.ty,
                        if c.not_null { " NOT NULL" } else { "" },
                        if c.default.is_some() {
                            " with a default"
                        } else {
                            ""
                        },
                        if needs_default { " DEFAULT now()" } else { "" }
                    ),
                    format!(
                        "ALTER TABLE {q} ALTER COLUMN {col} TYPE {base}, ALTER COLUMN {col} SET NOT NULL"
                    ),
                ),
                _ => {}
            }
        }
        let has_trigger = catalog
            .triggers_of(t)
            .any(|tr| tr.is_row() && tr.is_before() && tr.on_update() && tr.function == "set_updated_at");
        if !has_trigger {
            add(
                "no BEFORE UPDATE row trigger keeps updated_at current".into(),
                format!(
                    "CREATE TRIGGER set_updated_at BEFORE UPDATE ON {q} FOR EACH ROW EXECUTE FUNCTION {}.set_updated_at()",
                    m.helper_schema()
                ),
            );
        }
        match catalog.primary_key(t) {
            None => add(
                "no primary key".into(),
                format!("ALTER TABLE {q} ADD PRIMARY KEY (tenant_id, id)"),
            ),
            Some(pk) if pk.columns.first().map(String::as_str) != Some("tenant_id") => add(
                format!(
                    "primary key {} ({}) does not lead with tenant_id",
                    pk.name,
                    pk.columns.join(", ")
                ),
                format!("make it PRIMARY KEY (tenant_id, {})", pk.columns.join(", ")),
            ),
            _ => {}
        }
        let mut seen = BTreeSet::new();
        for c in catalog.constraints_of(t).filter(|c| c.kind == "u") {
            seen.insert(c.name.clone());
            if c.columns.first().map(String::as_str) != Some("tenant_id") {
                add(
                    format!(
                        "unique constraint {} ({}) does not lead with tenant_id: uniqueness across tenants is an existence oracle",
                        c.name,
                        c.columns.join(", ")
                    ),
                    format!("make it UNIQUE (tenant_id, {})", c.columns.join(", ")),
                );
            }
        }
        for i in catalog.indexes_of(t) {
            let lead = i.key_columns().first().cloned().flatten();
            if i.unique && !i.primary && !seen.contains(&i.name) && lead.as_deref() != Some("tenant_id") {
                add(
                    format!("unique index {} does not lead with tenant_id: uniqueness across tenants is an existence oracle", i.name),
                    format!("recreate {} with tenant_id as its first column", i.name),
                );
            } else if !i.unique && i.method == "btree" && lead.as_deref() != Some("tenant_id") {
                add(
                    format!("btree index {} does not lead with tenant_id", i.name),
                    format!("recreate {} with tenant_id as its first column", i.name),
                );
            }
        }
        if !catalog
            .indexes_of(t)
            .any(|i| i.key_columns().first().cloned().flatten().as_deref() == Some("tenant_id"))
        {
            add(
                "no index leads with tenant_id".into(),
                format!("CREATE INDEX ON {q} (tenant_id, …)"),
            );
        }
        for fk in catalog.constraints_of(t).filter(|c| c.kind == "f") {
            let parent_is_tenant = match (&fk.ref_schema, &fk.ref_table) {
                (Some(s), Some(n)) => catalog.table(s, n).is_some_and(Table::is_tenant),
                _ => false,
            };
            if !parent_is_tenant {
                continue; // to a global table: reported by check 11 when it matters
            }
            let pairs_ok = fk
                .columns
                .iter()
                .zip(&fk.ref_columns)
                .any(|(a, b)| a == "tenant_id" && b == "tenant_id");
            if !pairs_ok {
                add(
                    format!(
                        "foreign key {} ({}) → {}.{} ({}) does not include tenant_id → tenant_id: it can point into another tenant",
                        fk.name,
                        fk.columns.join(", "),
                        fk.ref_schema.as_deref().unwrap_or("?"),
                        fk.ref_table.as_deref().unwrap_or("?"),
                        fk.ref_columns.join(", ")
                    ),
                    format!(
                        "make it FOREIGN KEY (tenant_id, {}) REFERENCES parent (tenant_id, id)",
                        fk.columns.iter().filter(|c| *c != "tenant_id").cloned().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        }
    }
}

#[derive(Deserialize)]
struct RoleRow {
    role: String,
    reaches: String,
    exists: bool,
    superuser: bool,
    bypassrls: bool,
    owns: bool,
}

#[derive(Deserialize)]
struct PrivRow {
    role: String,
    object: String,
    privs: String,
}

/// Check 5.
fn roles(db: &mut Db, m: &Module, report: &mut Report) -> Result<()> {
    let roles: Vec<String> = m.runtime_roles().to_vec();
    for r in &roles {
        report.examine(format!("role {r}"), Check::Roles);
    }
    let rows: Vec<RoleRow> = db.json(&format!(
        "WITH RECURSIVE names(n) AS (SELECT unnest({l})),
         reach(start, roleid) AS (
             SELECT r.oid, r.oid FROM pg_roles r JOIN names ON r.rolname = names.n
             UNION
             SELECT reach.start, am.roleid FROM pg_auth_members am JOIN reach ON am.member = reach.roleid)
         SELECT names.n AS role, coalesce(r.rolname, names.n) AS reaches, r.oid IS NOT NULL AS exists,
                coalesce(r.rolsuper, false) AS superuser, coalesce(r.rolbypassrls, false) AS bypassrls,
                coalesce(EXISTS (SELECT 1 FROM pg_class WHERE relowner = r.oid)
                      OR EXISTS (SELECT 1 FROM pg_proc WHERE proowner = r.oid)
                      OR EXISTS (SELECT 1 FROM pg_namespace WHERE nspowner = r.oid)
                      OR EXISTS (SELECT 1 FROM pg_type WHERE typowner = r.oid)
                      OR EXISTS (SELECT 1 FROM pg_database WHERE datdba = r.oid AND datname = current_database()),
                      false) AS owns
         FROM names
         LEFT JOIN pg_roles s ON s.rolname = names.n
         LEFT JOIN reach ON reach.start = s.oid
         LEFT JOIN pg_roles r ON r.oid = reach.roleid
         ORDER BY 1, 2",
        l = list(&roles)
    ))?;
    for row in rows {
        let object = format!("role {}", row.role);
        if !row.exists {
            report.add(Finding::new(
                Check::Roles,
                &object,
                "the role does not exist",
                "run the module's first migration (it creates the roles)",
            ));
            continue;
        }
        let via = if row.reaches == row.role {
            String::new()
        } else {
            format!(
                " through membership of {} (SET ROLE {})",
                row.reaches, row.reaches
            )
        };
        let fix_for = |what: &str| {
            if via.is_empty() {
                format!("ALTER ROLE {} {what}", row.role)
            } else {
                format!("REVOKE {} FROM {}", row.reaches, row.role)
            }
        };
        if row.superuser {
            report.add(Finding::new(
                Check::Roles,
                &object,
                format!("is a superuser{via}"),
                fix_for("NOSUPERUSER"),
            ));
        }
        if row.bypassrls {
            report.add(Finding::new(
                Check::Roles,
                &object,
                format!("bypasses RLS{via}"),
                fix_for("NOBYPASSRLS"),
            ));
        }
        if row.owns {
            report.add(Finding::new(
                Check::Roles,
                &object,
                format!("owns objects in this database{via} (an owner is exempt from non-forced RLS and can disable it)"),
                if via.is_empty() {
                    format!("REASSIGN OWNED BY {} TO {}", row.role, m.owner_role())
                } else {
                    format!("REVOKE {} FROM {}", row.reaches, row.role)
                },
            ));
        }
    }
    let sys = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'";
    let privs: Vec<PrivRow> = db.json(&format!(
        "SELECT r.rolname AS role, n.nspname || '.' || c.relname AS object,
                concat_ws(', ',
                    CASE WHEN has_table_privilege(r.oid, c.oid, 'TRUNCATE') THEN 'TRUNCATE' END,
                    CASE WHEN has_any_column_privilege(r.oid, c.oid, 'REFERENCES') THEN 'REFERENCES' END,
                    CASE WHEN has_table_privilege(r.oid, c.oid, 'TRIGGER') THEN 'TRIGGER' END) AS privs
         FROM pg_roles r CROSS JOIN pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE r.rolname = ANY ({l}) AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {sys}
           AND (has_table_privilege(r.oid, c.oid, 'TRUNCATE') OR has_any_column_privilege(r.oid, c.oid, 'REFERENCES')
                OR has_table_privilege(r.oid, c.oid, 'TRIGGER'))
         ORDER BY 1, 2",
        l = list(&roles)
    ))?;
    for p in privs {
        report.add(Finding::new(
            Check::Roles,
            format!("role {}", p.role),
            format!("holds {} on {}", p.privs, p.object),
            format!("REVOKE {} ON {} FROM {}", p.privs, p.object, p.role),
        ));
    }
    let creates: Vec<PrivRow> = db.json(&format!(
        "SELECT r.rolname AS role, 'schema ' || n.nspname AS object, 'CREATE' AS privs
         FROM pg_roles r CROSS JOIN pg_namespace n
         WHERE r.rolname = ANY ({l}) AND {sys} AND has_schema_privilege(r.oid, n.oid, 'CREATE')
         UNION ALL
         SELECT r.rolname, 'database ' || current_database(), 'CREATE'
         FROM pg_roles r WHERE r.rolname = ANY ({l}) AND has_database_privilege(r.oid, current_database(), 'CREATE')
         ORDER BY 1, 2",
        l = list(&roles)
    ))?;
    for p in creates {
        report.add(Finding::new(
            Check::Roles,
            format!("role {}", p.role),
            format!("holds CREATE on {}", p.object),
            format!(
                "REVOKE CREATE ON {} FROM {} (and from PUBLIC)",
                p.object
                    .replacen("schema ", "SCHEMA ", 1)
                    .replacen("database ", "DATABASE ", 1),
                p.role
            ),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
struct PublicRow {
    kind: String,
    object: String,
    privs: String,
}

/// Check 6.
fn public_grants(db: &mut Db, m: &Module, report: &mut Report) -> Result<()> {
    let schemas = m.schemas().to_vec();
    for s in &schemas {
        report.examine(format!("schema {s}"), Check::PublicGrants);
    }
    let rows: Vec<PublicRow> = db.json(&format!(
        "SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS kind,
                n.nspname || '.' || c.relname AS object,
                string_agg(DISTINCT x.privilege_type, ', ') AS privs
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) x
         WHERE n.nspname = ANY ({l}) AND x.grantee = 0 GROUP BY 1, 2
         UNION ALL
         SELECT 'COLUMN', n.nspname || '.' || c.relname || '.' || a.attname,
                string_agg(DISTINCT x.privilege_type, ', ')
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace,
              aclexplode(a.attacl) x
         WHERE n.nspname = ANY ({l}) AND x.grantee = 0 GROUP BY 1, 2
         UNION ALL
         SELECT 'SCHEMA', n.nspname, string_agg(DISTINCT x.privilege_type, ', ')
         FROM pg_namespace n, aclexplode(n.nspacl) x
         WHERE n.nspname = ANY ({l}) AND x.grantee = 0 GROUP BY 1, 2
         UNION ALL
         SELECT 'FUNCTION', n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
                'EXECUTE'
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = ANY ({l})
           AND (p.proacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) x WHERE x.grantee = 0))
         ORDER BY 1, 2",
        l = list(&schemas)
    ))?;
    for r in rows {
        let object = match r.kind.as_str() {
            "TABLE" | "SEQUENCE" => r.object.clone(),
            "SCHEMA" => format!("schema {}", r.object),
            "COLUMN" => r
                .object
                .rsplit_once('.')
                .map(|(t, _)| t.to_owned())
                .unwrap_or_default(),
            _ => r.object.clone(),
        };
        let target = if r.kind == "COLUMN" {
            format!("TABLE {}", object)
        } else {
            format!("{} {}", r.kind, r.object)
        };
        report.add(Finding::new(
            Check::PublicGrants,
            object,
            format!(
                "PUBLIC holds {} on {} {}",
                r.privs,
                r.kind.to_lowercase(),
                r.object
            ),
            format!("REVOKE ALL ON {target} FROM PUBLIC"),
        ));
    }
    Ok(())
}

/// Check 7.
fn leaks(catalog: &Catalog, m: &Module, config: &Config, report: &mut Report) {
    let schemas = m.schemas();
    for t in catalog.tables.iter().filter(|t| schemas.contains(&t.schema)) {
        let key = t.key();
        match t.kind.as_str() {
            "v" => {
                report.examine(&key, Check::Leaks);
                let invoker = t.options.iter().any(|o| {
                    matches!(
                        o.as_str(),
                        "security_invoker=true"
                            | "security_invoker=on"
                            | "security_invoker=1"
                            | "security_invoker=yes"
                    )
                });
                if !invoker && !config.allows("view-security-invoker", &key) {
                    report.add(Finding::new(
                        Check::Leaks,
                        &key,
                        "view without security_invoker: it reads tables with its owner's rights, bypassing RLS",
                        format!("ALTER VIEW {} SET (security_invoker = true)", t.qualified()),
                    ));
                }
            }
            "m" => {
                report.examine(&key, Check::Leaks);
                if let Some(sources) = catalog.matview_sources.get(&key) {
                    if !config.allows("materialized-view", &key) {
                        report.add(Finding::new(
                            Check::Leaks,
                            &key,
                            format!(
                                "materialized view over tenant table(s) {}: it stores every tenant's rows without RLS",
                                sources.join(", ")
                            ),
                            format!("DROP MATERIALIZED VIEW {} (use a security_invoker view)", t.qualified()),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    for f in catalog.functions.iter().filter(|f| schemas.contains(&f.schema)) {
        let key = f.key();
        report.examine(&key, Check::Leaks);
        let q = format!(
            "{}.{}({})",
            super::ident(&f.schema),
            super::ident(&f.name),
            f.args
        );
        if f.security_definer && f.is_trigger && !config.allows("security-definer-trigger", &key) {
            report.add(Finding::new(
                Check::Leaks,
                &key,
                "SECURITY DEFINER trigger function: it writes with its owner's rights, bypassing RLS",
                format!("ALTER FUNCTION {q} SECURITY INVOKER"),
            ));
        } else if f.security_definer && !f.is_trigger && !config.allows("security-definer", &key) {
            report.add(Finding::new(
                Check::Leaks,
                &key,
                "SECURITY DEFINER function: it runs with its owner's rights, bypassing RLS",
                format!("ALTER FUNCTION {q} SECURITY INVOKER, or declare it in rls.toml with a reason"),
            ));
        }
        if f.leakproof && !config.allows("leakproof", &key) {
            report.add(Finding::new(
                Check::Leaks,
                &key,
                "LEAKPROOF function: the planner may run it on rows RLS has not filtered yet",
                format!("ALTER FUNCTION {q} NOT LEAKPROOF"),
            ));
        }
        // A SQL-standard body (`RETURN …`, `BEGIN ATOMIC … END`) is parsed when
        // the function is created and stores what every name it uses resolved
        // to (functions, operators, types, tables by OID), so no caller's
        // search_path can redirect it: it needs no fixed search_path. (And an
        // inlinable one such as require_current_tenant() must not have one:
        // a SET clause prevents inlining, check 3.) What it calls is checked
        // on its own. String bodies (`AS '…'`) resolve names when they run.
        if !f.has_fixed_search_path()
            && !f.standard_body
            && f.kind != "a"
            && !config.allows("search-path", &key)
        {
            report.add(Finding::new(
                Check::Leaks,
                &key,
                "function without a fixed search_path: callers can hijack the names it resolves",
                if f.language == "sql" {
                    format!(
                        "ALTER FUNCTION {q} SET search_path = pg_catalog, pg_temp, or recreate it with a \
                         SQL-standard body (RETURN …)"
                    )
                } else {
                    format!("ALTER FUNCTION {q} SET search_path = pg_catalog, pg_temp")
                },
            ));
        }
    }
}

/// Check 8.
fn partitions(db: &mut Db, catalog: &Catalog, m: &Module, report: &mut Report) -> Result<()> {
    let pred = m.tenant_predicate();
    for p in catalog.partitions.iter().filter(|p| p.parent_schema == m.schema) {
        let Some(parent) = catalog.table(&p.parent_schema, &p.parent) else {
            continue;
        };
        if !parent.is_tenant() {
            continue;
        }
        let key = format!("{}.{}", p.schema, p.name);
        report.examine(&key, Check::Partitions);
        let q = super::qualified(&p.schema, &p.name);
        if !p.rls || !p.force {
            report.add(Finding::new(
                Check::Partitions,
                &key,
                format!(
                    "partition of {} without RLS {}: querying it directly bypasses the parent's policies",
                    parent.key(),
                    if p.rls { "forced" } else { "enabled" }
                ),
                format!("ALTER TABLE {q} ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY (or run `cargo xtask gen-rls` when it is in a module schema)"),
            ));
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
        let have = policies_on(db, &p.schema, &p.name)?;
        let ok = match have.iter().find(|h| h.name == want.name) {
            Some(h) => policy_matches(db, h, &want, &p.schema, &p.name)?,
            None => false,
        };
        if !ok {
            report.add(Finding::new(
                Check::Partitions,
                &key,
                format!(
                    "partition of {} lacks the tenant isolation policy {}",
                    parent.key(),
                    want.name
                ),
                "create the partition in the module schema and run `cargo xtask gen-rls`",
            ));
        }
    }
    Ok(())
}

/// Check 9.
fn global_tables(catalog: &Catalog, m: &Module, config: &Config, report: &mut Report) {
    for t in catalog
        .tables
        .iter()
        .filter(|t| t.schema == m.schema && matches!(t.kind.as_str(), "r" | "p" | "f"))
    {
        let key = t.key();
        report.examine(&key, Check::GlobalTables);
        if !t.is_tenant() && !config.is_global(&m.key, &t.name) {
            report.add(Finding::new(
                Check::GlobalTables,
                &key,
                "table without tenant_id that is not declared global",
                format!(
                    "add tenant_id uuid NOT NULL (and run `cargo xtask gen-rls`), or declare it in rls.toml: \
                     [[global_table]] module = \"{}\", table = \"{}\", reason = \"…\"",
                    m.key, t.name
                ),
            ));
        }
    }
    for t in catalog
        .tables
        .iter()
        .filter(|t| t.schema == m.helper_schema() && matches!(t.kind.as_str(), "r" | "p"))
    {
        let key = t.key();
        report.examine(&key, Check::GlobalTables);
        report.add(Finding::new(
            Check::GlobalTables,
            &key,
            "table in the helper schema (it holds functions only)",
            format!("move it to schema {}", m.schema),
        ));
    }
}

/// Check 10.
fn schema_isolation(db: &mut Db, m: &Module, modules: &[Module], report: &mut Report) -> Result<()> {
    let own: Vec<String> = m.schemas().to_vec();
    let others: Vec<String> = modules
        .iter()
        .filter(|o| o.key != m.key)
        .flat_map(|o| o.schemas())
        .collect();
    let roles: Vec<String> = m.runtime_roles().to_vec();
    for r in &roles {
        report.examine(format!("role {r}"), Check::SchemaIsolation);
    }
    let sys = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'";
    let rows: Vec<PrivRow> = db.json(&format!(
        "SELECT r.rolname AS role, 'schema ' || n.nspname AS object,
                concat_ws(', ', CASE WHEN has_schema_privilege(r.oid, n.oid, 'USAGE') THEN 'USAGE' END,
                                CASE WHEN has_schema_privilege(r.oid, n.oid, 'CREATE') THEN 'CREATE' END) AS privs
         FROM pg_roles r CROSS JOIN pg_namespace n
         WHERE r.rolname = ANY ({roles}) AND {sys} AND NOT n.nspname = ANY ({own})
           AND (n.nspname = ANY ({others})
                OR EXISTS (SELECT 1 FROM aclexplode(n.nspacl) x
                           WHERE x.grantee <> 0 AND pg_has_role(r.oid, x.grantee, 'USAGE')))
           AND (has_schema_privilege(r.oid, n.oid, 'USAGE') OR has_schema_privilege(r.oid, n.oid, 'CREATE'))
         UNION ALL
         SELECT r.rolname, n.nspname || '.' || c.relname,
                concat_ws(', ', CASE WHEN has_table_privilege(r.oid, c.oid, 'SELECT') THEN 'SELECT' END,
                                CASE WHEN has_table_privilege(r.oid, c.oid, 'INSERT') THEN 'INSERT' END,
                                CASE WHEN has_any_column_privilege(r.oid, c.oid, 'UPDATE') THEN 'UPDATE' END,
                                CASE WHEN has_table_privilege(r.oid, c.oid, 'DELETE') THEN 'DELETE' END)
         FROM pg_roles r CROSS JOIN pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE r.rolname = ANY ({roles}) AND n.nspname = ANY ({others}) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
           AND (has_table_privilege(r.oid, c.oid, 'SELECT') OR has_table_privilege(r.oid, c.oid, 'INSERT')
                OR has_any_column_privilege(r.oid, c.oid, 'UPDATE') OR has_table_privilege(r.oid, c.oid, 'DELETE'))
         ORDER BY 1, 2",
        roles = list(&roles),
        own = list(&own),
        others = list(&others),
    ))?;
    for r in rows {
        let target = if let Some(s) = r.object.strip_prefix("schema ") {
            format!("SCHEMA {s}")
        } else {
            format!("TABLE {}", r.object)
        };
        report.add(Finding::new(
            Check::SchemaIsolation,
            format!("role {}", r.role),
            format!("holds {} on {} outside module {}", r.privs, r.object, m.key),
            format!("REVOKE ALL ON {target} FROM {}", r.role),
        ));
    }
    Ok(())
}

/// Check 11: what distributing every tenant table by tenant_id needs.
fn citus(catalog: &Catalog, m: &Module, config: &Config, report: &mut Report) {
    for t in catalog
        .tables
        .iter()
        .filter(|t| t.schema == m.schema && matches!(t.kind.as_str(), "r" | "p"))
    {
        let key = t.key();
        report.examine(&key, Check::Citus);
        let tenant = t.is_tenant();
        for c in catalog.constraints_of(t) {
            match c.kind.as_str() {
                "p" | "u" | "x" if tenant && !c.columns.iter().any(|x| x == "tenant_id") => {
                    report.add(Finding::new(
                        Check::Citus,
                        &key,
                        format!(
                            "{} {} does not include the distribution column tenant_id",
                            match c.kind.as_str() {
                                "p" => "primary key",
                                "u" => "unique constraint",
                                _ => "exclusion constraint",
                            },
                            c.name
                        ),
                        format!("add tenant_id to {}", c.name),
                    ));
                }
                "f" => {
                    let parent = match (&c.ref_schema, &c.ref_table) {
                        (Some(s), Some(n)) => catalog.table(s, n),
                        _ => None,
                    };
                    let parent_tenant = parent.is_some_and(Table::is_tenant);
                    let colocated = c
                        .columns
                        .iter()
                        .zip(&c.ref_columns)
                        .any(|(a, b)| a == "tenant_id" && b == "tenant_id");
                    if parent_tenant && !tenant {
                        report.add(Finding::new(
                            Check::Citus,
                            &key,
                            format!(
                                "global table references tenant table {} through {}: a reference table cannot point into a distributed table",
                                parent.map(Table::key).unwrap_or_default(),
                                c.name
                            ),
                            format!("drop {} or make {} a tenant table (add tenant_id)", c.name, t.name),
                        ));
                    } else if parent_tenant && !colocated {
                        report.add(Finding::new(
                            Check::Citus,
                            &key,
                            format!(
                                "foreign key {} is not co-located (no tenant_id → tenant_id)",
                                c.name
                            ),
                            format!(
                                "make {} composite: (tenant_id, …) REFERENCES parent (tenant_id, …)",
                                c.name
                            ),
                        ));
                    } else if !parent_tenant && tenant {
                        if let Some(p) = parent {
                            if p.schema == m.schema && !config.is_global(&m.key, &p.name) {
                                report.add(Finding::new(
                                    Check::Citus,
                                    &key,
                                    format!(
                                        "foreign key {} points to {}, neither distributed nor a declared (reference) table",
                                        c.name,
                                        p.key()
                                    ),
                                    format!("declare {} global in rls.toml (a Citus reference table)", p.name),
                                ));
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if tenant {
            for i in catalog.indexes_of(t).filter(|i| i.unique && !i.primary) {
                let is_constraint = catalog.constraints_of(t).any(|c| c.name == i.name);
                if !is_constraint && !i.key_columns().iter().flatten().any(|c| c == "tenant_id") {
                    report.add(Finding::new(
                        Check::Citus,
                        &key,
                        format!(
                            "unique index {} does not include the distribution column tenant_id",
                            i.name
                        ),
                        format!("add tenant_id to {}", i.name),
                    ));
                }
            }
        }
    }
}

/// Canonical forms used by the dynamic part (kept here so both agree).
pub fn canonical_predicate(db: &mut Db, m: &Module, t: &Table) -> Result<String> {
    Ok(canonical_exprs(db, &t.schema, &t.name, &[m.tenant_predicate()])?
        .pop()
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up_sql(migration: &str) -> String {
        let path = crate::util::root().join(format!("migrations/{migration}/up.sql"));
        normalize_ws(&std::fs::read_to_string(path).unwrap())
    }

    #[test]
    fn the_migrations_create_the_canonical_helper_and_slow_path() {
        let helper = up_sql(HELPER_MIGRATION);
        assert!(
            helper.contains("FUNCTION attestor_app.require_current_tenant() RETURNS uuid LANGUAGE sql")
                && helper.contains(&format!("{};", normalize_ws(HELPER_BODY))),
            "require_current_tenant() in migration {HELPER_MIGRATION} differs from \
             xtask/src/rls/require_current_tenant.sql"
        );
        let slow = up_sql(SLOW_PATH_MIGRATION);
        assert!(
            slow.contains(&format!("AS $$ {} $$;", normalize_ws(SLOW_PATH_BODY))),
            "tenant_context_error() in migration {SLOW_PATH_MIGRATION} differs from \
             xtask/src/rls/tenant_context_error.plpgsql"
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
