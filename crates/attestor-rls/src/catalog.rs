//! A snapshot of the catalog of the module schemas, read with plain
//! `pg_catalog` queries (no `information_schema`: it hides what the current
//! role may not see).
//!
//! It owns the queries and the serde types they decode into; deciding what
//! is right or wrong belongs to the rules (`rules/`), and it must never
//! write. Every query reads only catalogs that any login role may read.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::db::Db;
use crate::error::Result;
use crate::{lit, Module};

#[derive(Debug, Clone, Deserialize)]
pub struct Column {
    pub name: String,
    /// Declared type, as `format_type` renders it (usable in a cast).
    #[serde(rename = "type")]
    pub ty: String,
    /// The base type name (domains resolved), without modifiers.
    pub base: String,
    /// `pg_type.typcategory` of the base type.
    pub category: String,
    /// `pg_type.typtype` of the declared type (`e` = enum, `d` = domain).
    pub typtype: String,
    pub not_null: bool,
    pub default: Option<String>,
    pub generated: bool,
    /// `pg_attribute.attidentity` (`a` always, `d` by default, empty otherwise).
    pub identity: String,
    pub enum_first: Option<String>,
    pub max_length: Option<i32>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Table {
    pub schema: String,
    pub name: String,
    /// `r` table, `p` partitioned, `v` view, `m` materialized view, `f` foreign.
    pub kind: String,
    pub rls: bool,
    pub force: bool,
    pub is_partition: bool,
    pub owner: String,
    pub options: Vec<String>,
    pub columns: Vec<Column>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
    pub fn is_tenant(&self) -> bool {
        matches!(self.kind.as_str(), "r" | "p") && self.column("tenant_id").is_some()
    }
    pub fn qualified(&self) -> String {
        crate::qualified(&self.schema, &self.name)
    }
    pub fn key(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Constraint {
    pub schema: String,
    pub table: String,
    pub name: String,
    /// `p`, `u`, `f`, `c`, `x`.
    pub kind: String,
    pub columns: Vec<String>,
    pub ref_schema: Option<String>,
    pub ref_table: Option<String>,
    pub ref_columns: Vec<String>,
    pub def: String,
    pub expr: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Index {
    pub schema: String,
    pub table: String,
    pub name: String,
    pub unique: bool,
    pub primary: bool,
    pub method: String,
    /// Key columns first; `None` for an expression.
    pub columns: Vec<Option<String>>,
    pub nkey: i32,
    pub partial: bool,
}

impl Index {
    pub fn key_columns(&self) -> Vec<Option<String>> {
        self.columns.iter().take(self.nkey as usize).cloned().collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Trigger {
    pub schema: String,
    pub table: String,
    pub name: String,
    pub function: String,
    pub function_schema: String,
    pub tgtype: i32,
    /// `pg_trigger.tgenabled`: `O` fires on origin and local sessions (the
    /// default), `A` always, `R` only when the session is a replica, `D` never.
    pub enabled: String,
    /// The trigger's `WHEN` condition as `pg_get_triggerdef` prints it
    /// (without the `WHEN (…)` around it), `None` when it fires unconditionally.
    #[serde(default)]
    pub when: Option<String>,
    /// Whether it is an `UPDATE OF column, …` trigger (fires only when one
    /// of those columns is a target of the UPDATE).
    #[serde(default)]
    pub update_of_columns: bool,
}

impl Trigger {
    pub fn is_row(&self) -> bool {
        self.tgtype & 1 != 0
    }
    pub fn is_before(&self) -> bool {
        self.tgtype & 2 != 0
    }
    pub fn on_update(&self) -> bool {
        self.tgtype & 16 != 0
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Policy {
    pub schema: String,
    pub table: String,
    pub name: String,
    pub permissive: bool,
    /// ALL, SELECT, INSERT, UPDATE, DELETE.
    pub command: String,
    pub roles: Vec<String>,
    pub using: Option<String>,
    pub with_check: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Function {
    pub schema: String,
    pub name: String,
    /// `pg_get_function_identity_arguments` (names and types: `raw text`).
    pub args: String,
    /// The argument types only (`oidvectortypes`: `text`).
    pub arg_types: String,
    pub kind: String,
    pub security_definer: bool,
    pub leakproof: bool,
    pub volatility: String,
    pub owner: String,
    pub config: Option<Vec<String>>,
    pub is_trigger: bool,
    pub returns: String,
    pub strict: bool,
    /// `prosrc`: the body of a string-body function (`AS $$…$$`); empty for
    /// a SQL-standard body.
    pub body: Option<String>,
    /// The function has a SQL-standard body (`RETURN …` or `BEGIN ATOMIC …
    /// END`, `prosqlbody IS NOT NULL`): PostgreSQL parsed it and bound every
    /// name it uses when the function was created.
    pub standard_body: bool,
    /// That body as the server deparses it (`pg_get_function_sqlbody`). The
    /// text depends on the session (names visible on its search_path are not
    /// qualified): compare it only with [`canonical_sql_body`] of the same
    /// session.
    pub sql_body: Option<String>,
    pub language: String,
    pub public_execute: bool,
}

impl Function {
    pub fn key(&self) -> String {
        format!("{}.{}({})", self.schema, self.name, self.args)
    }
    pub fn has_fixed_search_path(&self) -> bool {
        self.config
            .iter()
            .flatten()
            .any(|c| c.starts_with("search_path="))
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Partition {
    pub parent_schema: String,
    pub parent: String,
    pub schema: String,
    pub name: String,
    pub rls: bool,
    pub force: bool,
}

/// Everything the checks read, for a set of schemas.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub tables: Vec<Table>,
    pub constraints: Vec<Constraint>,
    pub indexes: Vec<Index>,
    pub triggers: Vec<Trigger>,
    pub policies: Vec<Policy>,
    pub functions: Vec<Function>,
    pub partitions: Vec<Partition>,
    /// Materialized view key → tenant tables it reads.
    pub matview_sources: BTreeMap<String, Vec<String>>,
    /// The server's `server_version_num` (`150020`, `180006`): rules whose
    /// catalog or privileges differ across versions ask [`Catalog::at_least`].
    pub server_version_num: u32,
}

fn schema_list(schemas: &[String]) -> String {
    let items: Vec<String> = schemas.iter().map(|s| lit(s)).collect();
    format!("ARRAY[{}]::text[]", items.join(", "))
}

const POLICY_SQL: &str = "
SELECT n.nspname AS schema, c.relname AS table, p.polname AS name, p.polpermissive AS permissive,
       CASE p.polcmd WHEN '*' THEN 'ALL' WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT'
                     WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' END AS command,
       ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r)::text END
             FROM unnest(p.polroles) AS r ORDER BY 1) AS roles,
       pg_get_expr(p.polqual, p.polrelid) AS using,
       pg_get_expr(p.polwithcheck, p.polrelid) AS with_check
FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace";

impl Catalog {
    /// Read the catalog of the schemas of `modules`.
    pub fn load(db: &mut Db, modules: &[Module]) -> Result<Catalog> {
        let schemas: Vec<String> = modules.iter().flat_map(|m| m.schemas()).collect();
        Catalog::load_schemas(db, &schemas)
    }

    pub fn load_schemas(db: &mut Db, schemas: &[String]) -> Result<Catalog> {
        let s = schema_list(schemas);
        let tables = db.json(&format!(
            "SELECT n.nspname AS schema, c.relname AS name, c.relkind::text AS kind,
                    c.relrowsecurity AS rls, c.relforcerowsecurity AS force,
                    c.relispartition AS is_partition, pg_get_userbyid(c.relowner)::text AS owner,
                    coalesce(c.reloptions, '{{}}') AS options,
                    coalesce((SELECT json_agg(json_build_object(
                        'name', a.attname,
                        'type', format_type(a.atttypid, a.atttypmod),
                        'base', bt.typname,
                        'category', bt.typcategory::text,
                        'typtype', t.typtype::text,
                        'not_null', a.attnotnull,
                        'default', pg_get_expr(d.adbin, d.adrelid),
                        'generated', a.attgenerated <> '',
                        'identity', a.attidentity::text,
                        'enum_first', (SELECT e.enumlabel FROM pg_enum e WHERE e.enumtypid = bt.oid
                                       ORDER BY e.enumsortorder LIMIT 1),
                        'max_length', CASE WHEN bt.typname IN ('varchar', 'bpchar')
                                           AND coalesce(NULLIF(t.typtypmod, -1), a.atttypmod) > 4
                                      THEN coalesce(NULLIF(t.typtypmod, -1), a.atttypmod) - 4 END
                      ) ORDER BY a.attnum)
                      FROM pg_attribute a
                      JOIN pg_type t ON t.oid = a.atttypid
                      JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
                      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '[]') AS columns
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = ANY ({s}) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
             ORDER BY n.nspname, c.relname"
        ))?;
        let constraints = db.json(&format!(
            "SELECT n.nspname AS schema, cl.relname AS table, con.conname AS name, con.contype::text AS kind,
                    ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY AS k(n, o)
                          JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.o) AS columns,
                    fn.nspname AS ref_schema, fc.relname AS ref_table,
                    ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY AS k(n, o)
                          JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.o) AS ref_columns,
                    pg_get_constraintdef(con.oid) AS def,
                    CASE WHEN con.contype = 'c' THEN pg_get_expr(con.conbin, con.conrelid) END AS expr
             FROM pg_constraint con
             JOIN pg_class cl ON cl.oid = con.conrelid
             JOIN pg_namespace n ON n.oid = cl.relnamespace
             LEFT JOIN pg_class fc ON fc.oid = con.confrelid
             LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace
             WHERE n.nspname = ANY ({s}) AND con.contype IN ('p', 'u', 'f', 'c', 'x')
             ORDER BY n.nspname, cl.relname, con.conname"
        ))?;
        let indexes = db.json(&format!(
            "SELECT n.nspname AS schema, cl.relname AS table, ic.relname AS name, i.indisunique AS unique,
                    i.indisprimary AS primary, am.amname AS method, i.indnkeyatts::int AS nkey,
                    i.indpred IS NOT NULL AS partial,
                    ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(n, o)
                          LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n
                          ORDER BY k.o) AS columns
             FROM pg_index i
             JOIN pg_class cl ON cl.oid = i.indrelid
             JOIN pg_class ic ON ic.oid = i.indexrelid
             JOIN pg_am am ON am.oid = ic.relam
             JOIN pg_namespace n ON n.oid = cl.relnamespace
             WHERE n.nspname = ANY ({s})
             ORDER BY n.nspname, cl.relname, ic.relname"
        ))?;
        let triggers = db.json(&format!(
            "SELECT n.nspname AS schema, cl.relname AS table, t.tgname AS name, p.proname AS function,
                    pn.nspname AS function_schema, t.tgtype::int AS tgtype,
                    t.tgenabled::text AS enabled,
                    CASE WHEN t.tgqual IS NOT NULL
                         THEN substring(pg_get_triggerdef(t.oid) FROM ' WHEN \\((.*)\\) EXECUTE ') END AS \"when\",
                    cardinality(t.tgattr::int2[]) > 0 AS update_of_columns
             FROM pg_trigger t
             JOIN pg_class cl ON cl.oid = t.tgrelid
             JOIN pg_namespace n ON n.oid = cl.relnamespace
             JOIN pg_proc p ON p.oid = t.tgfoid
             JOIN pg_namespace pn ON pn.oid = p.pronamespace
             WHERE n.nspname = ANY ({s}) AND NOT t.tgisinternal
             ORDER BY n.nspname, cl.relname, t.tgname"
        ))?;
        let policies = db.json(&format!(
            "{POLICY_SQL} WHERE n.nspname = ANY ({s}) ORDER BY n.nspname, c.relname, p.polname"
        ))?;
        let functions = db.json(&format!(
            "SELECT n.nspname AS schema, p.proname AS name, pg_get_function_identity_arguments(p.oid) AS args,
                    oidvectortypes(p.proargtypes) AS arg_types, p.prokind::text AS kind,
                    p.prosecdef AS security_definer, p.proleakproof AS leakproof,
                    p.provolatile::text AS volatility, pg_get_userbyid(p.proowner)::text AS owner,
                    p.proconfig AS config, p.prorettype = 'trigger'::regtype AS is_trigger,
                    format_type(p.prorettype, NULL) AS returns, p.proisstrict AS strict, p.prosrc AS body,
                    p.prosqlbody IS NOT NULL AS standard_body, pg_get_function_sqlbody(p.oid) AS sql_body,
                    l.lanname AS language,
                    (p.proacl IS NULL
                     OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) x WHERE x.grantee = 0)) AS public_execute
             FROM pg_proc p
             JOIN pg_namespace n ON n.oid = p.pronamespace
             JOIN pg_language l ON l.oid = p.prolang
             WHERE n.nspname = ANY ({s})
             ORDER BY n.nspname, p.proname, 3"
        ))?;
        let partitions = db.json(&format!(
            "WITH RECURSIVE tree(parent, child) AS (
                 SELECT i.inhparent, i.inhrelid FROM pg_inherits i
                 JOIN pg_class pc ON pc.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = pc.relnamespace
                 WHERE pn.nspname = ANY ({s})
                 UNION
                 SELECT t.parent, i.inhrelid FROM pg_inherits i JOIN tree t ON i.inhparent = t.child)
             SELECT pn.nspname AS parent_schema, pc.relname AS parent, cn.nspname AS schema, cc.relname AS name,
                    cc.relrowsecurity AS rls, cc.relforcerowsecurity AS force
             FROM tree JOIN pg_class pc ON pc.oid = tree.parent JOIN pg_namespace pn ON pn.oid = pc.relnamespace
             JOIN pg_class cc ON cc.oid = tree.child JOIN pg_namespace cn ON cn.oid = cc.relnamespace
             ORDER BY 1, 2, 3, 4"
        ))?;
        #[derive(Deserialize)]
        struct Source {
            view: String,
            source: String,
        }
        let sources: Vec<Source> = db.json(&format!(
            "SELECT DISTINCT vn.nspname || '.' || v.relname AS view, tn.nspname || '.' || t.relname AS source
             FROM pg_rewrite r
             JOIN pg_class v ON v.oid = r.ev_class JOIN pg_namespace vn ON vn.oid = v.relnamespace
             JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                             AND d.refclassid = 'pg_class'::regclass
             JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace tn ON tn.oid = t.relnamespace
             WHERE vn.nspname = ANY ({s}) AND v.relkind = 'm' AND t.oid <> v.oid
               AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = t.oid AND a.attname = 'tenant_id'
                           AND NOT a.attisdropped)
             ORDER BY 1, 2"
        ))?;
        let mut matview_sources: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for s in sources {
            matview_sources.entry(s.view).or_default().push(s.source);
        }
        let server_version_num = db
            .text("SELECT current_setting('server_version_num') AS v")?
            .and_then(|v| v.parse().ok())
            .unwrap_or_default();
        Ok(Catalog {
            server_version_num,
            tables,
            constraints,
            indexes,
            triggers,
            policies,
            functions,
            partitions,
            matview_sources,
        })
    }

    /// The server is PostgreSQL `major` or newer.
    pub fn at_least(&self, major: u32) -> bool {
        self.server_version_num >= major * 10_000
    }

    pub fn table(&self, schema: &str, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.schema == schema && t.name == name)
    }

    pub fn tenant_tables<'a>(&'a self, schema: &str) -> impl Iterator<Item = &'a Table> + 'a {
        let schema = schema.to_owned();
        self.tables
            .iter()
            .filter(move |t| t.schema == schema && t.is_tenant())
    }

    pub fn constraints_of<'a>(&'a self, t: &Table) -> impl Iterator<Item = &'a Constraint> + 'a {
        let (schema, name) = (t.schema.clone(), t.name.clone());
        self.constraints
            .iter()
            .filter(move |x| x.schema == schema && x.table == name)
    }

    pub fn indexes_of<'a>(&'a self, t: &Table) -> impl Iterator<Item = &'a Index> + 'a {
        let (schema, name) = (t.schema.clone(), t.name.clone());
        self.indexes
            .iter()
            .filter(move |x| x.schema == schema && x.table == name)
    }

    pub fn triggers_of<'a>(&'a self, t: &Table) -> impl Iterator<Item = &'a Trigger> + 'a {
        let (schema, name) = (t.schema.clone(), t.name.clone());
        self.triggers
            .iter()
            .filter(move |x| x.schema == schema && x.table == name)
    }

    pub fn policies_of<'a>(&'a self, schema: &str, table: &str) -> impl Iterator<Item = &'a Policy> + 'a {
        let (schema, table) = (schema.to_owned(), table.to_owned());
        self.policies
            .iter()
            .filter(move |p| p.schema == schema && p.table == table)
    }

    pub fn primary_key(&self, t: &Table) -> Option<&Constraint> {
        self.constraints_of(t).find(|c| c.kind == "p")
    }
}

/// Policies on one table (used for partitions outside the module schemas).
pub fn policies_on(db: &mut Db, schema: &str, table: &str) -> Result<Vec<Policy>> {
    db.json(&format!(
        "{POLICY_SQL} WHERE n.nspname = {} AND c.relname = {} ORDER BY p.polname",
        lit(schema),
        lit(table)
    ))
}

/// How the server itself renders `expr` as a policy expression on
/// `schema.table` (so that comparisons are between normalized texts).
/// Runs in a savepoint on a temporary copy of the table's columns and
/// leaves nothing behind.
pub fn canonical_exprs(db: &mut Db, schema: &str, table: &str, exprs: &[String]) -> Result<Vec<String>> {
    if exprs.is_empty() {
        return Ok(Vec::new());
    }
    db.exec("SAVEPOINT rls_canon")?;
    let result = (|| -> Result<Vec<String>> {
        db.exec(&format!(
            "CREATE TEMP TABLE rls_canon (LIKE {}) ON COMMIT DROP",
            crate::qualified(schema, table)
        ))?;
        let mut out = Vec::new();
        for (i, e) in exprs.iter().enumerate() {
            db.exec(&format!("CREATE POLICY p{i} ON pg_temp.rls_canon USING ({e})"))?;
            let text = db.text(&format!(
                "SELECT pg_get_expr(polqual, polrelid) AS v FROM pg_policy
                 WHERE polrelid = 'pg_temp.rls_canon'::regclass AND polname = 'p{i}'"
            ))?;
            out.push(text.unwrap_or_default());
        }
        Ok(out)
    })();
    db.exec("ROLLBACK TO SAVEPOINT rls_canon; RELEASE SAVEPOINT rls_canon")?;
    result
}

/// How the server itself deparses `body`, a SQL-standard function body
/// (`RETURN …`), as the body of a `STABLE LANGUAGE sql` function returning
/// `returns`: the same text `pg_get_function_sqlbody` gives for a function
/// created with that body in this session, so that comparisons are between
/// normalized texts (casts, parentheses and name qualification as the
/// server writes them). Runs in a savepoint on a temporary function and
/// leaves nothing behind. `Err` carries the server's message when the body
/// does not compile here (for example when a function it calls is missing).
pub fn canonical_sql_body(
    db: &mut Db,
    returns: &str,
    body: &str,
) -> Result<std::result::Result<String, String>> {
    db.exec("SAVEPOINT rls_canon_body")?;
    let result = (|| -> Result<Option<String>> {
        db.exec(&format!(
            "CREATE FUNCTION pg_temp.rls_canon_body() RETURNS {returns} LANGUAGE sql STABLE\n{body}"
        ))?;
        db.text("SELECT pg_get_function_sqlbody('pg_temp.rls_canon_body()'::regprocedure) AS v")
    })();
    db.exec("ROLLBACK TO SAVEPOINT rls_canon_body; RELEASE SAVEPOINT rls_canon_body")?;
    Ok(match result {
        Ok(Some(text)) => Ok(text),
        Ok(None) => Err("the server returned no SQL-standard body".into()),
        Err(e) => Err(e.server_message()),
    })
}
