//! TI026 `citus-distribution`: on a Citus coordinator, the module's tables
//! are distributed the way tenant isolation needs, every shard placement
//! carries the coordinator's RLS and policies, and the module's roles have
//! the same attributes on every node. Owns this rule only; it reads Citus'
//! distribution metadata and, through `run_command_on_placements` and
//! `run_command_on_workers`, the workers' catalogs. It examines nothing
//! where the `citus` extension is not installed, and never writes.

use serde::Deserialize;

use super::prelude::*;

rule! {
    /// On Citus the rows live in shards on the workers, and what holds on the
    /// coordinator's table holds on a shard only if Citus put it there. A tenant
    /// table left local stays on the coordinator (and cannot have foreign keys
    /// from distributed tables), one in another colocation group puts a tenant's
    /// rows of related tables on different nodes, and a reference table copies its
    /// rows, every tenant's, to every node. A shard whose Row-Level Security is
    /// off, not forced, or whose policies differ from the coordinator's is read by
    /// a direct connection to its worker (or by a statement Citus routes there)
    /// without the isolation the coordinator shows. A role that may not log in on
    /// the coordinator but may on a worker (Citus creates the roles it needs
    /// there) is a way around the design. The rule reads the distribution
    /// metadata (which tables are distributed, by which column, in which
    /// colocation group, which are reference tables), then each shard placement's
    /// own catalog and each worker's roles.
    pub static RULE = {
        id: "TI026",
        name: "citus-distribution",
        summary: "on a Citus coordinator: tenant tables hash-distributed by tenant_id in one colocation group, global tables reference tables, RLS and the policies on every shard placement, roles alike on every node",
        fix: "Run the distribution step (`cargo xtask db up` against the coordinator, citus/distribute.sql); redistribute a misplaced table (undistribute_table, then the step again); re-create a shard's policies from the coordinator (the migration that made them, with citus.enable_ddl_propagation on).",
        needs: Some("on a Citus coordinator, a session whose role may connect to every worker (run_command_on_placements, run_command_on_workers)"),
        kind: Kind::Static(check),
    };
}

#[derive(Deserialize)]
struct Placed {
    name: String,
    tenant: bool,
    /// `pg_dist_partition.partmethod`: `h` hash, `n` none (reference or
    /// Citus local), `a`/`r` append/range; absent when local.
    method: Option<String>,
    /// `pg_dist_partition.repmodel`: `t` for a reference table.
    repmodel: Option<String>,
    colocation: Option<i64>,
    column: Option<String>,
}

#[derive(Deserialize)]
struct Placement {
    shard: i64,
    node: String,
    ok: bool,
    result: String,
}

#[derive(Deserialize)]
struct NodeResult {
    node: String,
    ok: bool,
    result: String,
}

/// What one table (a shell on the coordinator, a shard on a worker) carries:
/// RLS enabled, forced, and its policies (name, command, permissive, roles,
/// USING, WITH CHECK), as JSON text that is the same where they agree.
/// `%s` is the table; `run_command_on_placements` puts the shard there.
const SECURITY_OF: &str = "SELECT json_build_object(\
    'rls', c.relrowsecurity, 'force', c.relforcerowsecurity, \
    'policies', coalesce((SELECT json_agg(json_build_array(p.polname, p.polcmd, p.polpermissive, \
        (SELECT array_agg(r ORDER BY r) FROM unnest(p.polroles::pg_catalog.regrole[]::text[]) AS r), \
        pg_catalog.pg_get_expr(p.polqual, p.polrelid), pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid)) \
        ORDER BY p.polname) FROM pg_catalog.pg_policy p WHERE p.polrelid = c.oid), '[]'))::text \
    FROM pg_catalog.pg_class c WHERE c.oid = '%s'::pg_catalog.regclass";

/// A role's attributes, alike on every node.
const ROLE_OF: &str = "SELECT coalesce((SELECT json_build_object('login', rolcanlogin, 'superuser', rolsuper, \
    'bypassrls', rolbypassrls, 'createrole', rolcreaterole, 'createdb', rolcreatedb, 'replication', rolreplication, \
    'inherit', rolinherit)::text FROM pg_catalog.pg_roles WHERE rolname = %s), 'absent')";

fn check(cx: &mut Ctx<'_>) -> Result<()> {
    let citus = cx
        .db
        .text("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus')::text AS v")?;
    if citus.as_deref() != Some("true") {
        return Ok(());
    }
    let coordinator = cx
        .db
        .text("SELECT ((SELECT groupid FROM pg_catalog.pg_dist_local_group) = 0)::text AS v")?;
    let m = cx.module;
    let database = format!("database {}", cx.db.text("SELECT current_database() AS v")?.unwrap_or_default());
    if coordinator.as_deref() != Some("true") {
        cx.examine(&database);
        cx.finding(
            &database,
            "this is a Citus worker: the distribution metadata and the shards are checked from the coordinator",
            "run verify-rls against the coordinator",
        );
        return Ok(());
    }

    let tables: Vec<Placed> = cx.db.json(&format!(
        "SELECT c.relname AS name, \
                EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid \
                         AND a.attname = 'tenant_id' AND NOT a.attisdropped) AS tenant, \
                d.partmethod::text AS method, d.repmodel::text AS repmodel, d.colocationid::bigint AS colocation, \
                CASE WHEN d.partmethod IN ('h', 'r', 'a') \
                     THEN pg_catalog.column_to_column_name(d.logicalrelid, d.partkey) END AS column \
           FROM pg_catalog.pg_class c \
           LEFT JOIN pg_catalog.pg_dist_partition d ON d.logicalrelid = c.oid \
          WHERE c.relnamespace = {}::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
          ORDER BY c.relname",
        lit(&ident(&m.schema))
    ))?;

    // The colocation group most of the module's hash-distributed tenant
    // tables share (ties: the lowest id) is the module's.
    let mut groups: std::collections::BTreeMap<i64, usize> = Default::default();
    for t in tables.iter().filter(|t| t.tenant && t.method.as_deref() == Some("h")) {
        *groups.entry(t.colocation.unwrap_or_default()).or_default() += 1;
    }
    let group = groups
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(g, _)| *g);

    for t in &tables {
        let key = format!("{}.{}", m.schema, t.name);
        cx.examine(&key);
        let q = qualified(&m.schema, &t.name);
        let global = cx.config.is_global(&m.key, &t.name);
        let reference = t.method.as_deref() == Some("n") && t.repmodel.as_deref() == Some("t");
        match (t.tenant, t.method.as_deref()) {
            (true, None) => cx.finding(
                &key,
                "tenant table left local: it is not distributed, its rows stay on the coordinator",
                format!("SELECT create_distributed_table('{q}', 'tenant_id', colocate_with => …) (the distribution step does)"),
            ),
            (true, Some("n")) if reference => cx.finding(
                &key,
                "tenant data in a reference table: every tenant's rows are copied to every node",
                format!("SELECT undistribute_table('{q}'); then distribute it by tenant_id"),
            ),
            (true, Some("n")) => cx.finding(
                &key,
                "tenant table is a Citus local table: its rows stay on the coordinator",
                format!("SELECT undistribute_table('{q}'); then distribute it by tenant_id"),
            ),
            (true, Some("h")) if t.column.as_deref() != Some("tenant_id") => cx.finding(
                &key,
                format!(
                    "distributed by {}, not tenant_id: one tenant's rows are spread over every shard",
                    t.column.as_deref().unwrap_or("?")
                ),
                format!("SELECT alter_distributed_table('{q}', distribution_column => 'tenant_id')"),
            ),
            (true, Some("h")) if t.colocation != group => cx.finding(
                &key,
                format!(
                    "in colocation group {}, the module's other tenant tables are in group {}: a tenant's rows of related tables are on different nodes",
                    t.colocation.unwrap_or_default(),
                    group.unwrap_or_default()
                ),
                format!("SELECT update_distributed_table_colocation('{q}', colocate_with => …)"),
            ),
            (true, Some("h")) => {}
            (true, Some(method)) => cx.finding(
                &key,
                format!("distributed by {method} (append or range), not by hash of tenant_id"),
                format!("SELECT undistribute_table('{q}'); then distribute it by tenant_id"),
            ),
            (false, _) if global && !reference => cx.finding(
                &key,
                "declared global but not a reference table: the shards on the workers cannot join or reference it",
                format!("SELECT create_reference_table('{q}')"),
            ),
            (false, _) => {}
        }
        if t.method.is_some() {
            placements(cx, &key, &q)?;
        }
    }
    roles(cx)?;
    Ok(())
}

/// Every placement of `q` carries what the coordinator's table carries.
fn placements(cx: &mut Ctx<'_>, key: &str, q: &str) -> Result<()> {
    let want = cx.db.text(&format!("SELECT ({}) AS v", SECURITY_OF.replace("%s", &q.replace('\'', "''"))))?;
    let rows: Vec<Placement> = cx.db.json(&format!(
        "SELECT p.shardid AS shard, p.nodename || ':' || p.nodeport AS node, p.success AS ok, p.result \
           FROM pg_catalog.run_command_on_placements({}::regclass, {}) p ORDER BY p.shardid, p.nodename, p.nodeport",
        lit(q),
        lit(SECURITY_OF)
    ))?;
    if rows.is_empty() {
        cx.finding(key, "distributed, but Citus lists no shard placement", "check pg_dist_placement");
    }
    let mut differ = Vec::new();
    for p in &rows {
        if !p.ok {
            differ.push(format!("shard {} on {}: could not be read: {}", p.shard, p.node, p.result));
        } else if Some(&p.result) != want.as_ref() {
            differ.push(format!("shard {} on {}: {}", p.shard, p.node, p.result));
        }
    }
    if !differ.is_empty() {
        cx.finding(
            key,
            format!(
                "{} of {} shard placements do not carry the coordinator's RLS and policies ({}): {}",
                differ.len(),
                rows.len(),
                want.unwrap_or_default(),
                differ.join("; ")
            ),
            "re-create the shards' RLS and policies from the coordinator; never change a shard on a worker by hand",
        );
    }
    Ok(())
}

/// The module's roles have the coordinator's attributes on every worker.
fn roles(cx: &mut Ctx<'_>) -> Result<()> {
    let m = cx.module;
    for role in [m.owner_role(), m.app_role(), m.worker_role()] {
        let key = role.clone();
        cx.examine(&key);
        let command = ROLE_OF.replace("%s", &lit(&role));
        let want = cx.db.text(&format!("SELECT ({command}) AS v"))?;
        let rows: Vec<NodeResult> = cx.db.json(&format!(
            "SELECT w.nodename || ':' || w.nodeport AS node, w.success AS ok, w.result \
               FROM pg_catalog.run_command_on_workers({}) w ORDER BY w.nodename, w.nodeport",
            lit(&command)
        ))?;
        let differ: Vec<String> = rows
            .iter()
            .filter(|r| !r.ok || Some(&r.result) != want.as_ref())
            .map(|r| format!("{}: {}", r.node, r.result))
            .collect();
        if !differ.is_empty() {
            cx.finding(
                &key,
                format!(
                    "role differs on {} of {} workers from the coordinator's {}: {}",
                    differ.len(),
                    rows.len(),
                    want.unwrap_or_default(),
                    differ.join("; ")
                ),
                format!("ALTER ROLE {} on the coordinator (Citus propagates it) with the attributes the migrations give it", ident(&role)),
            );
        }
    }
    Ok(())
}
