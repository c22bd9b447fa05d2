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
//!
//! On a Citus coordinator the rows live in shards on the workers, and the
//! statements of the proof run there, under the shards' own policies. Two
//! things differ there. The tenant is set with `SET LOCAL app.tenant_id`
//! after `SET LOCAL citus.propagate_set_commands = 'local'`
//! ([`Db::set_tenant`]), the only form Citus forwards to the workers (as the
//! application's SetLocal pools do). And Citus refuses, in one transaction,
//! a statement on a shard placement that another user modified, so the rows
//! are always written by the role being proven: the app in its login
//! session, or the owner session as the app (`SET LOCAL ROLE`), never by the
//! superuser; the worker's TD017 runs in its own login session. A probe
//! Citus still refuses that way is reported as not run (exit 3), never
//! passed. Citus' own refusals count where they prove the same thing: TD008
//! accepts Citus' refusal to change a distribution column (the row cannot
//! move to another tenant at all), TD012 an INSERT failing on the helper's
//! cast of the empty setting (Citus evaluates it before routing the row).
//! Everything is still rolled back.

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

/// The sessions the proof may use, each inside its own transaction that the
/// caller rolls back.
pub struct Sessions<'a> {
    /// A real login session of the module's app role.
    pub app: Option<&'a mut Db>,
    /// A real login session of the module's worker role.
    pub worker: Option<&'a mut Db>,
    /// A privileged session (a superuser, or a member of the runtime roles)
    /// for rows the app cannot write itself: the probes on them run there,
    /// through `SET LOCAL ROLE`.
    pub owner: Option<&'a mut Db>,
}

/// How a row proof runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// In the app role's own login session: rows written by the app itself.
    Login,
    /// In the owner session, switching roles with `SET LOCAL ROLE` (rows
    /// written as that session's user when it is a superuser, else as the app).
    SetRole { superuser: bool },
}

/// What a row proof in the login session found out about itself.
enum RowProof {
    Done,
    /// The app could not write the rows; the owner session should try.
    NeedsOwner,
}

/// Run the proof for every module: the rows proof in the app's login
/// session (or the owner session when the app cannot write the rows), then
/// the worker's probes in its login session.
pub fn run(
    sessions: &mut Sessions<'_>,
    catalog: &Catalog,
    modules: &[Module],
    config: &Config,
    report: &mut Report,
) -> Result<()> {
    for m in modules {
        let mut in_owner_session = false;
        let owner_given = sessions.owner.is_some();
        let app_done = match sessions.app.as_deref_mut() {
            Some(app) => {
                app.exec("SAVEPOINT rls_rows")?;
                match module(app, catalog, m, config, report, Mode::Login, owner_given)? {
                    RowProof::Done => {
                        app.exec("RELEASE SAVEPOINT rls_rows")?;
                        true
                    }
                    RowProof::NeedsOwner => {
                        app.exec("ROLLBACK TO SAVEPOINT rls_rows; RELEASE SAVEPOINT rls_rows")?;
                        false
                    }
                }
            }
            None => false,
        };
        if !app_done {
            match sessions.owner.as_deref_mut() {
                Some(owner) => {
                    // On a Citus coordinator the app writes the rows itself
                    // (by SET ROLE): Citus refuses a statement on a shard
                    // placement that another user modified in the same
                    // transaction, so rows the superuser wrote could not be
                    // read by the app at all.
                    let superuser = owner
                        .text("SELECT current_setting('is_superuser') AS v")?
                        .as_deref()
                        == Some("on")
                        && !owner.citus_coordinator()?;
                    let can = owner.try_text(&format!("SET LOCAL ROLE {}", ident(&m.app_role())))?;
                    match can {
                        Ok(_) => {
                            owner.exec("SET LOCAL ROLE NONE")?;
                            in_owner_session = true;
                            // Fresh per-table bookkeeping: what the login attempt examined stays.
                            module(
                                owner,
                                catalog,
                                m,
                                config,
                                report,
                                Mode::SetRole { superuser },
                                false,
                            )?;
                        }
                        Err(e) => {
                            for t in ordered_tables(catalog, m) {
                                report.not_run(
                                    TD002.id,
                                    t.key(),
                                    format!(
                                        "the row probes (TD002-TD017) need rows the app role cannot write itself, \
                                         and the owner session cannot SET ROLE {}: {e}",
                                        m.app_role()
                                    ),
                                );
                            }
                        }
                    }
                }
                None if sessions.app.is_none() => {
                    return Err(Error::Usage(
                        "the dynamic proof needs a login session of the app role or an owner session".into(),
                    ))
                }
                None => {}
            }
        }
        if let Some(worker) = sessions.worker.as_deref_mut() {
            // On a Citus coordinator the owner session never proves TD017
            // (see `prove_table`): the worker's own session must.
            let citus = worker.citus_coordinator()?;
            worker_probes(worker, catalog, m, config, report, in_owner_session && !citus)?;
        } else if !in_owner_session {
            for t in ordered_tables(catalog, m) {
                report.not_run(
                    TD017.id,
                    t.key(),
                    format!("no login session of {} was given (--worker-url)", m.worker_role()),
                );
            }
        }
    }
    Ok(())
}

/// TD018 in a fresh login session of `role`, right after `BEGIN` and before
/// anything sets a setting: the helper must raise AT001.
pub fn fresh_session(db: &mut Db, m: &Module, config: &Config, report: &mut Report) -> Result<()> {
    let role = db.text("SELECT current_user::text AS v")?.unwrap_or_default();
    let object = format!("role {role}");
    report.examine(&object, TD018.id);
    let seen = db
        .text("SELECT coalesce(current_setting('app.tenant_id', true), '<unset>') AS v")?
        .unwrap_or_default();
    // Not a counting probe: `count(*)` over a subquery would let the planner
    // drop the (stable) call it never reads.
    let o = db.probe(
        &format!("SELECT {}.require_current_tenant()", ident(&m.helper_schema())),
        false,
    )?;
    let refused = o.sqlstate.as_deref() == Some("42501") && role != m.app_role();
    if o.sqlstate.as_deref() == Some("AT001") || refused {
        report.proofs.entry(object).or_default().push(TD018.id);
    } else {
        failed(
            report,
            config,
            &TD018,
            &object,
            format!(
                "app.tenant_id is {seen:?} when the session starts; the helper {}",
                o.describe()
            ),
            None,
        );
    }
    Ok(())
}

/// The worker's probes in its own login session: TD017 on tables without a
/// declared worker policy (refused, or no rows), TD019 on tables with one
/// (no UPDATE of tenant_id).
fn worker_probes(
    db: &mut Db,
    catalog: &Catalog,
    m: &Module,
    config: &Config,
    report: &mut Report,
    proven_with_rows: bool,
) -> Result<()> {
    let worker = m.worker_role();
    for t in ordered_tables(catalog, m) {
        let key = t.key();
        let q = t.qualified();
        let declared = config
            .policies_for(&m.key, &t.name)
            .iter()
            .any(|p| m.role_named(&p.role) == worker);
        if declared {
            report.examine(&key, TD019.id);
            let o = db.probe(
                &format!("UPDATE {q} SET tenant_id = tenant_id WHERE false"),
                false,
            )?;
            if o.sqlstate.as_deref() == Some("42501") {
                report.proofs.entry(key).or_default().push(TD019.id);
            } else {
                failed(report, config, &TD019, &key, o.describe(), None);
            }
            continue;
        }
        report.examine(&key, TD017.id);
        let o = db.probe(&format!("SELECT 1 FROM {q}"), true)?;
        if o.sqlstate.as_deref() == Some("42501") {
            report.proofs.entry(key).or_default().push(TD017.id);
        } else if o.ok() && o.rows > 0 {
            failed(report, config, &TD017, &key, o.describe(), None);
        } else if o.ok() && !proven_with_rows {
            report.not_run(
                TD017.id,
                key,
                format!(
                    "{worker} may read the table and saw no rows, but rows written by another session are \
                     invisible to its session until committed (and the proof never commits): give an owner \
                     session that can SET ROLE {worker} to prove it with rows"
                ),
            );
        } else if !o.ok() {
            failed(report, config, &TD017, &key, o.describe(), None);
        }
    }
    Ok(())
}

/// Tenant tables of `m` in foreign-key order (parents first); partitions are
/// reached through their parent.
pub(crate) fn ordered_tables<'c>(catalog: &'c Catalog, m: &Module) -> Vec<&'c Table> {
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
    mode: Mode,
    owner_given: bool,
) -> Result<RowProof> {
    let tables = ordered_tables(catalog, m);
    if tables.is_empty() {
        return Ok(RowProof::Done);
    }
    let a = db
        .text("SELECT gen_random_uuid()::text AS v")?
        .unwrap_or_default();
    let b = db
        .text("SELECT gen_random_uuid()::text AS v")?
        .unwrap_or_default();
    let app = m.app_role();

    // 1. Rows for both tenants, parents first.
    let mut parents_a: BTreeMap<String, RowJson> = BTreeMap::new();
    let mut parents_b: BTreeMap<String, RowJson> = BTreeMap::new();
    let mut fixtures: BTreeMap<String, Fixture> = BTreeMap::new();
    let mut skipped: Vec<String> = Vec::new();
    for t in &tables {
        let key = t.key();
        report.examine(&key, TD001.id);
        // Unless a superuser's owner session writes the rows, the app does.
        if mode != (Mode::SetRole { superuser: true }) {
            let may_insert = db
                .text(&format!(
                    "SELECT has_table_privilege({}, {}, 'INSERT')::text AS v",
                    lit(&app),
                    lit(&t.qualified())
                ))?
                .as_deref()
                == Some("true");
            let parent_skipped = catalog
                .constraints_of(t)
                .filter(|c| c.kind == "f")
                .find_map(|fk| {
                    let p = format!("{}.{}", fk.ref_schema.as_deref()?, fk.ref_table.as_deref()?);
                    skipped.contains(&p).then_some(p)
                });
            if !may_insert || parent_skipped.is_some() {
                if owner_given {
                    return Ok(RowProof::NeedsOwner);
                }
                let why = match parent_skipped {
                    Some(p) => format!("its rows need rows in {p}, which could not be written"),
                    None => format!("{app} holds no INSERT on it, so its session cannot write the rows"),
                };
                let remedy = if mode == Mode::Login {
                    format!("give an owner session (--owner-url) that can write them and SET ROLE {app}")
                } else {
                    // The owner session writes as the app: it is no
                    // superuser, or the server is a Citus coordinator, where
                    // a shard placement one user modified cannot be read by
                    // another in the same transaction.
                    format!(
                        "the owner session writes them as {app} (it is not a superuser, or the server is a \
                         Citus coordinator, where rows another user wrote in the transaction cannot be read), \
                         so only a grant of INSERT to {app} lets them be written"
                    )
                };
                report.not_run(
                    TD002.id,
                    &key,
                    format!(
                        "the row probes (TD002-TD016) need one row per tenant in this table; {why}; {remedy}"
                    ),
                );
                skipped.push(key);
                continue;
            }
        }
        let mut rows = Vec::new();
        let mut failure = None;
        for (tenant, tag, parents) in [(&a, "a", &parents_a), (&b, "b", &parents_b)] {
            match insert_row(db, catalog, t, tenant, tag, parents, mode, &app)? {
                Ok(row) => rows.push(row),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if let Some(reason) = failure {
            if mode == Mode::Login && owner_given {
                return Ok(RowProof::NeedsOwner);
            }
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
    if mode != Mode::Login {
        db.exec(&format!("SET LOCAL ROLE {}", ident(&app)))?;
    }
    for t in &tables {
        let Some(fx) = fixtures.get(&t.key()) else {
            continue;
        };
        prove_table(db, catalog, m, config, t, fx, &a, &b, report, mode)?;
    }
    if mode != Mode::Login {
        db.exec("SET LOCAL ROLE NONE")?;
    }
    Ok(RowProof::Done)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn insert_row(
    db: &mut Db,
    catalog: &Catalog,
    t: &Table,
    tenant: &str,
    tag: &str,
    parents: &BTreeMap<String, RowJson>,
    mode: Mode,
    app: &str,
) -> Result<std::result::Result<RowJson, String>> {
    // A superuser's owner session writes the rows itself; otherwise the app
    // writes them in the row's own tenant (in its login session, or by SET ROLE).
    let as_app = mode != Mode::SetRole { superuser: true };
    let switch = mode == Mode::SetRole { superuser: false };
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
        if switch {
            db.exec(&format!("SET LOCAL ROLE {}", ident(app)))?;
        }
        if as_app {
            db.set_tenant(tenant)?;
        }
        let result = db.try_text(&sql)?;
        if switch {
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

/// Citus refused the statement because another user modified a shard
/// placement it touches earlier in the transaction: the probe did not run.
pub(crate) fn placement_of_another_user(o: &Outcome) -> bool {
    o.sqlstate.as_deref() == Some("25001")
        && o.message
            .contains("modified in this transaction by a different user")
}

/// Why a probe refused by [`placement_of_another_user`] proves nothing.
const ANOTHER_USER: &str = "on a Citus coordinator a shard placement modified by one user cannot be read by another in \
     the same transaction, so the probe could not run; the rows must be written by the role that is proven (give the \
     app role INSERT on the table, or its login session)";

/// Citus refuses any UPDATE of a distributed table's distribution column to
/// another value: the row cannot move to another tenant at all.
fn partition_value_refused(o: &Outcome) -> bool {
    o.sqlstate.as_deref() == Some("0A000")
        && o.message
            .contains("modifying the partition value of rows is not allowed")
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
    mode: Mode,
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
    let citus = db.citus_coordinator()?;

    // In B's context.
    db.set_tenant(b)?;
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
            Box::new(move |o: &Outcome| {
                refused(o) || (o.ok() && o.rows == 0) || (citus && partition_value_refused(o))
            }),
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
        } else if placement_of_another_user(&o) {
            report.not_run(probe.id, &key, ANOTHER_USER);
        } else {
            failed(report, config, probe, &key, o.describe(), None);
        }
    }

    // No tenant: every statement fails with the helper's error.
    let no_tenant = |o: &Outcome| o.sqlstate.as_deref() == Some("AT001");
    let no_privilege =
        |o: &Outcome| o.sqlstate.as_deref() == Some("42501") && o.message.contains("permission denied");
    // "No tenant" as a session that never set one has it: the value the
    // login session started with (its role's and database's defaults).
    db.unset_tenant()?;
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
        // On a Citus coordinator an INSERT's stable expressions, the
        // helper's cast of the (empty) setting among them, are evaluated
        // before the row is routed, so the INSERT fails on that cast
        // before the helper can raise AT001. It is still refused; TI002
        // and TI004 prove the policy calls the helper, TD011 that the
        // helper raises AT001.
        let cast_first = citus
            && probe.id == TD012.id
            && o.sqlstate.as_deref() == Some("22P02")
            && o.message == "invalid input syntax for type uuid: \"\"";
        if no_tenant(&o) || (!count && no_privilege(&o)) || cast_first {
            passed.push(probe.id);
        } else if placement_of_another_user(&o) {
            report.not_run(probe.id, &key, ANOTHER_USER);
        } else {
            failed(report, config, probe, &key, o.describe(), None);
        }
    }
    db.set_tenant("not-a-uuid")?;
    let o = db.probe(&format!("SELECT 1 FROM {q}"), true)?;
    report.examine(&key, TD015.id);
    if o.sqlstate.as_deref() == Some("AT002") {
        passed.push(TD015.id);
    } else if placement_of_another_user(&o) {
        report.not_run(TD015.id, &key, ANOTHER_USER);
    } else {
        failed(report, config, &TD015, &key, o.describe(), None);
    }

    // Back in A's context: A's row is still there, unchanged.
    db.set_tenant(a)?;
    let o = db.probe(
        &format!("SELECT 1 FROM {q} AS x WHERE {pred_a} AND to_jsonb(x) = {a_json}::jsonb"),
        true,
    )?;
    report.examine(&key, TD016.id);
    if o.ok() && o.rows == 1 {
        passed.push(TD016.id);
    } else if placement_of_another_user(&o) {
        report.not_run(TD016.id, &key, ANOTHER_USER);
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
    // Not on a Citus coordinator: with `citus.propagate_set_commands` on,
    // Citus forwards `SET LOCAL ROLE` to the app's connections to the
    // workers, which may not become the worker role, and the worker could
    // not read placements the app modified anyway; the worker's own login
    // session proves TD017 there.
    if !declared_for_worker && worker_exists && mode != Mode::Login && !citus {
        db.exec("SET LOCAL ROLE NONE")?;
        db.exec(&format!("SET LOCAL ROLE {}", ident(&worker)))?;
        db.set_tenant(b)?;
        report.examine(&key, TD017.id);
        let o = db.probe(&format!("SELECT 1 FROM {q}"), true)?;
        if (o.ok() && o.rows == 0) || no_privilege(&o) {
            passed.push(TD017.id);
        } else if placement_of_another_user(&o) {
            report.not_run(TD017.id, &key, ANOTHER_USER);
        } else {
            failed(report, config, &TD017, &key, o.describe(), None);
        }
        db.exec("SET LOCAL ROLE NONE")?;
        db.exec(&format!("SET LOCAL ROLE {}", ident(&app)))?;
    }
    report.proofs.insert(key, passed);
    Ok(())
}
