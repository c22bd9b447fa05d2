//! The dynamic proof: isolation proven with real rows of two tenants.
//!
//! For every tenant table of a module (parents first) it inserts one row for
//! each of two fresh random tenants A and B (values from [`crate::fill`]),
//! then, as `<module>_app` (`SET LOCAL ROLE`, never a superuser session) in
//! B's context, proves: none of A's rows is visible; UPDATE and DELETE of
//! A's rows touch nothing; INSERT of a row for A and UPDATE of B's row to A
//! are refused (42501); `INSERT … ON CONFLICT` on A's key is refused and A's
//! row is unchanged (checked back in A's context); B sees its own row; with
//! no tenant every statement fails with the helper's AT001 (AT002 for a
//! malformed tenant). The worker role sees nothing of tables without a
//! declared worker policy. Every probe has an id (`TD…`, declared in
//! `crate::rules::probes`).
//!
//! Everything happens inside the caller's transaction, which is always
//! rolled back; each probe runs in its own sub-transaction. It must never
//! commit, and never read tenant rows as a superuser to decide a proof.

use std::collections::BTreeMap;

use crate::catalog::{Catalog, Table};
use crate::config::Config;
use crate::db::{Db, Outcome};
use crate::error::{Error, Result};
use crate::fill::{Filler, RowJson, Values};
use crate::report::Report;
use crate::rules::probes::*;
use crate::rules::Rule;
use crate::{ident, lit, Module};

/// File a failed probe.
fn failed(
    report: &mut Report,
    config: &Config,
    probe: &'static Rule,
    object: &str,
    got: String,
    fix: Option<&str>,
) {
    report.add(
        config,
        probe.id,
        object.to_owned(),
        format!("{}: {got}", probe.summary),
        fix.unwrap_or(probe.fix).to_owned(),
    );
}

/// Run the proof for every module.
pub fn run(
    db: &mut Db,
    catalog: &Catalog,
    modules: &[Module],
    config: &Config,
    report: &mut Report,
) -> Result<()> {
    let superuser = db.text("SELECT current_setting('is_superuser') AS v")?.as_deref() == Some("on");
    for m in modules {
        module(db, catalog, m, config, report, superuser)?;
    }
    Ok(())
}

/// Tenant tables of `m` in foreign-key order (parents first); partitions are
/// reached through their parent.
fn ordered_tables<'c>(catalog: &'c Catalog, m: &Module) -> Vec<&'c Table> {
    let mut pending: Vec<&Table> = catalog
        .tenant_tables(&m.schema)
        .filter(|t| !t.is_partition)
        .collect();
    let mut out: Vec<&Table> = Vec::new();
    while !pending.is_empty() {
        let ready = pending.iter().position(|t| {
            catalog.constraints_of(t).filter(|c| c.kind == "f").all(|fk| {
                let key = format!(
                    "{}.{}",
                    fk.ref_schema.as_deref().unwrap_or(""),
                    fk.ref_table.as_deref().unwrap_or("")
                );
                key == t.key() || !pending.iter().any(|p| p.key() == key)
            })
        });
        let i = ready.unwrap_or(0); // a cycle: take the first and let the filler say what is missing
        out.push(pending.remove(i));
    }
    out
}

struct Fixture {
    a: RowJson,
    b: RowJson,
    /// A further row for A (to try to insert as B) and one for B (with no tenant set).
    a2: Values,
    b2: Values,
}

fn module(
    db: &mut Db,
    catalog: &Catalog,
    m: &Module,
    config: &Config,
    report: &mut Report,
    superuser: bool,
) -> Result<()> {
    let tables = ordered_tables(catalog, m);
    if tables.is_empty() {
        return Ok(());
    }
    let a = db
        .text("SELECT gen_random_uuid()::text AS v")?
        .unwrap_or_default();
    let b = db
        .text("SELECT gen_random_uuid()::text AS v")?
        .unwrap_or_default();
    let app = m.app_role();
    let set_tenant = |t: &str| format!("SELECT set_config('app.tenant_id', {}, true)", lit(t));

    // 1. Rows for both tenants, parents first.
    let mut parents_a: BTreeMap<String, RowJson> = BTreeMap::new();
    let mut parents_b: BTreeMap<String, RowJson> = BTreeMap::new();
    let mut fixtures: BTreeMap<String, Fixture> = BTreeMap::new();
    for t in &tables {
        let key = t.key();
        report.examine(&key, TD001.id);
        let mut rows = Vec::new();
        let mut failure = None;
        for (tenant, tag, parents) in [(&a, "a", &parents_a), (&b, "b", &parents_b)] {
            match insert_row(db, catalog, t, tenant, tag, parents, superuser, &app)? {
                Ok(row) => rows.push(row),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if let Some(reason) = failure {
            report.add(
                config,
                TD001.id,
                key.clone(),
                format!("cannot fill the table with valid rows, so isolation is unproven: {reason}"),
                TD001.fix.to_owned(),
            );
            continue;
        }
        let filler = Filler::new(catalog, t);
        let a2 = filler.row(db, &a, "a2", &parents_a)?;
        let b2 = filler.row(db, &b, "b2", &parents_b)?;
        let (Ok(a2), Ok(b2)) = (a2, b2) else {
            failed(
                report,
                config,
                &TD001,
                &key,
                "cannot build the extra probe rows".into(),
                None,
            );
            continue;
        };
        let b_row = rows.pop().expect("two rows");
        let a_row = rows.pop().expect("two rows");
        parents_a.insert(key.clone(), a_row.clone());
        parents_b.insert(key.clone(), b_row.clone());
        fixtures.insert(
            key,
            Fixture {
                a: a_row,
                b: b_row,
                a2,
                b2,
            },
        );
    }

    // 2. The proof, as the app role.
    db.exec(&format!("SET LOCAL ROLE {}", ident(&app))).map_err(|e| {
        Error::Usage(format!(
            "SET ROLE {app}: the dynamic proof needs a superuser (or a member of {app}): {}",
            e.server_message()
        ))
    })?;
    for t in &tables {
        let Some(fx) = fixtures.get(&t.key()) else {
            continue;
        };
        prove_table(db, catalog, m, config, t, fx, &a, &b, report, &set_tenant)?;
    }
    db.exec("SET LOCAL ROLE NONE")?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn insert_row(
    db: &mut Db,
    catalog: &Catalog,
    t: &Table,
    tenant: &str,
    tag: &str,
    parents: &BTreeMap<String, RowJson>,
    superuser: bool,
    app: &str,
) -> Result<std::result::Result<RowJson, String>> {
    let mut last_error = String::new();
    for prefer_last in [true, false] {
        let mut filler = Filler::new(catalog, t);
        filler.prefer_last_alternative = prefer_last;
        let values = match filler.row(db, tenant, tag, parents)? {
            Ok(v) => v,
            Err(e) => {
                last_error = e;
                continue;
            }
        };
        let sql = filler.insert_sql(&values);
        // Not a superuser: insert as the app role in the row's own tenant.
        if !superuser {
            db.exec(&format!("SET LOCAL ROLE {}", ident(app)))?;
            db.exec(&format!(
                "SELECT set_config('app.tenant_id', {}, true)",
                lit(tenant)
            ))?;
        }
        let result = db.try_text(&sql)?;
        if !superuser {
            db.exec("SET LOCAL ROLE NONE")?;
        }
        match result {
            Ok(Some(json)) => {
                let row: RowJson = serde_json::from_str(&json).map_err(|source| Error::Decode {
                    statement: sql.clone(),
                    source,
                })?;
                return Ok(Ok(row));
            }
            Ok(None) => last_error = "INSERT returned no row".into(),
            Err(e) => last_error = format!("INSERT failed: {e}"),
        }
    }
    Ok(Err(last_error))
}

/// `(pk…) = (SELECT pk… FROM jsonb_populate_record(NULL::t, row))`.
fn row_predicate(t: &Table, pk: &[String], row: &RowJson) -> String {
    let cols: Vec<String> = pk.iter().map(|c| ident(c)).collect();
    format!(
        "({c}) = (SELECT {c} FROM jsonb_populate_record(NULL::{t}, {j}::jsonb))",
        c = cols.join(", "),
        t = t.qualified(),
        j = lit(&serde_json::Value::Object(row.clone()).to_string())
    )
}

/// Refused with insufficient_privilege: an RLS WITH CHECK violation or a missing grant.
fn refused(o: &Outcome) -> bool {
    o.sqlstate.as_deref() == Some("42501")
}

/// Touched no row (or was refused outright).
fn untouched(o: &Outcome) -> bool {
    (o.ok() && o.rows == 0) || refused(o)
}

/// (probe, SQL, counting query?, passes?)
type Probe = (&'static Rule, String, bool, Box<dyn Fn(&Outcome) -> bool>);

#[allow(clippy::too_many_arguments)]
fn prove_table(
    db: &mut Db,
    catalog: &Catalog,
    m: &Module,
    config: &Config,
    t: &Table,
    fx: &Fixture,
    a: &str,
    b: &str,
    report: &mut Report,
    set_tenant: &dyn Fn(&str) -> String,
) -> Result<()> {
    let key = t.key();
    let q = t.qualified();
    let pk: Vec<String> = match catalog.primary_key(t) {
        Some(p) => p.columns.clone(),
        None if t.column("id").is_some() => vec!["tenant_id".into(), "id".into()],
        None => vec!["tenant_id".into()],
    };
    let pred_a = row_predicate(t, &pk, &fx.a);
    let pred_b = row_predicate(t, &pk, &fx.b);
    let app = m.app_role();
    // A column the app may update (for UPDATE probes), preferring a non-key one.
    let pk_array = format!(
        "ARRAY[{}]::name[]",
        pk.iter().map(|c| lit(c)).collect::<Vec<_>>().join(", ")
    );
    let updatable = db.text(&format!(
        "SELECT a.attname::text AS v FROM pg_attribute a
         WHERE a.attrelid = {t}::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
           AND has_column_privilege({r}, a.attrelid, a.attnum, 'UPDATE')
         ORDER BY a.attname = ANY ({pk_array}), a.attnum LIMIT 1",
        t = lit(&q),
        r = lit(&app),
    ))?;
    let set_col = updatable.clone().unwrap_or_else(|| "tenant_id".into());
    let insert_cols: Vec<String> = t
        .columns
        .iter()
        .filter(|c| !c.generated && c.identity != "a")
        .map(|c| ident(&c.name))
        .collect();
    let a_json = lit(&serde_json::Value::Object(fx.a.clone()).to_string());
    let filler = Filler::new(catalog, t);

    let mut passed: Vec<&'static str> = Vec::new();

    // In B's context.
    db.exec(&set_tenant(b))?;
    let probes: Vec<Probe> = vec![
        (
            &TD002,
            format!("SELECT 1 FROM {q} WHERE tenant_id IS DISTINCT FROM {}::uuid", lit(b)),
            true,
            Box::new(|o: &Outcome| o.ok() && o.rows == 0),
        ),
        (
            &TD003,
            format!("SELECT 1 FROM {q} WHERE {pred_a}"),
            true,
            Box::new(|o: &Outcome| o.ok() && o.rows == 0),
        ),
        (
            &TD004,
            format!("SELECT 1 FROM {q} WHERE {pred_b}"),
            true,
            Box::new(|o: &Outcome| o.ok() && o.rows == 1),
        ),
        (
            &TD005,
            format!(
                "UPDATE {q} SET {c} = {c} WHERE tenant_id = {}::uuid",
                lit(a),
                c = ident(&set_col)
            ),
            false,
            Box::new(untouched),
        ),
        (
            &TD006,
            format!("DELETE FROM {q} WHERE tenant_id = {}::uuid", lit(a)),
            false,
            Box::new(untouched),
        ),
        (
            &TD007,
            filler.plain_insert(&fx.a2),
            false,
            Box::new(refused),
        ),
        (
            &TD008,
            format!("UPDATE {q} SET tenant_id = {}::uuid WHERE {pred_b}", lit(a)),
            false,
            Box::new(|o: &Outcome| refused(o) || (o.ok() && o.rows == 0)),
        ),
        (
            &TD009,
            format!(
                "INSERT INTO {q} ({cols}) SELECT {cols} FROM jsonb_populate_record(NULL::{q}, {a_json}::jsonb) \
                 ON CONFLICT DO NOTHING",
                cols = insert_cols.join(", ")
            ),
            false,
            Box::new(untouched),
        ),
        (
            &TD010,
            format!(
                "INSERT INTO {q} ({cols}) SELECT {cols} FROM jsonb_populate_record(NULL::{q}, {a_json}::jsonb) \
                 ON CONFLICT ({pkc}) DO UPDATE SET {c} = EXCLUDED.{c}",
                cols = insert_cols.join(", "),
                pkc = pk.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", "),
                c = ident(&set_col)
            ),
            false,
            Box::new(untouched),
        ),
    ];
    for (probe, sql, count, ok) in &probes {
        report.examine(&key, probe.id);
        let o = db.probe(sql, *count)?;
        if ok(&o) {
            passed.push(probe.id);
        } else {
            failed(report, config, probe, &key, o.describe(), None);
        }
    }

    // No tenant: every statement fails with the helper's error.
    let no_tenant = |o: &Outcome| o.sqlstate.as_deref() == Some("AT001");
    let no_privilege =
        |o: &Outcome| o.sqlstate.as_deref() == Some("42501") && o.message.contains("permission denied");
    db.exec(&set_tenant(""))?;
    let statements = [
        (&TD011, format!("SELECT 1 FROM {q}"), true),
        (&TD012, filler.plain_insert(&fx.b2), false),
        (
            &TD013,
            format!("UPDATE {q} SET {c} = {c}", c = ident(&set_col)),
            false,
        ),
        (&TD014, format!("DELETE FROM {q}"), false),
    ];
    for (probe, sql, count) in &statements {
        report.examine(&key, probe.id);
        let o = db.probe(sql, *count)?;
        if no_tenant(&o) || (!count && no_privilege(&o)) {
            passed.push(probe.id);
        } else {
            failed(report, config, probe, &key, o.describe(), None);
        }
    }
    db.exec(&set_tenant("not-a-uuid"))?;
    let o = db.probe(&format!("SELECT 1 FROM {q}"), true)?;
    report.examine(&key, TD015.id);
    if o.sqlstate.as_deref() == Some("AT002") {
        passed.push(TD015.id);
    } else {
        failed(report, config, &TD015, &key, o.describe(), None);
    }

    // Back in A's context: A's row is still there, unchanged.
    db.exec(&set_tenant(a))?;
    let o = db.probe(
        &format!("SELECT 1 FROM {q} AS x WHERE {pred_a} AND to_jsonb(x) = {a_json}::jsonb"),
        true,
    )?;
    report.examine(&key, TD016.id);
    if o.ok() && o.rows == 1 {
        passed.push(TD016.id);
    } else {
        failed(
            report,
            config,
            &TD016,
            &key,
            format!("A's row changed or is no longer visible to A ({})", o.describe()),
            None,
        );
    }

    // The worker sees nothing of tables without a declared worker policy.
    let worker = m.worker_role();
    let declared_for_worker = config
        .policies_for(&m.key, &t.name)
        .iter()
        .any(|p| m.role_named(&p.role) == worker);
    let worker_exists = db
        .text(&format!(
            "SELECT (EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {}))::text AS v",
            lit(&worker)
        ))?
        .as_deref()
        == Some("true");
    if !declared_for_worker && worker_exists {
        db.exec("SET LOCAL ROLE NONE")?;
        db.exec(&format!("SET LOCAL ROLE {}", ident(&worker)))?;
        db.exec(&set_tenant(b))?;
        report.examine(&key, TD017.id);
        let o = db.probe(&format!("SELECT 1 FROM {q}"), true)?;
        if (o.ok() && o.rows == 0) || no_privilege(&o) {
            passed.push(TD017.id);
        } else {
            failed(report, config, &TD017, &key, o.describe(), None);
        }
        db.exec("SET LOCAL ROLE NONE")?;
        db.exec(&format!("SET LOCAL ROLE {}", ident(&app)))?;
    }
    report.proofs.insert(key, passed);
    Ok(())
}
