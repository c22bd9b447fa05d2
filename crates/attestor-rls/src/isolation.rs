//! The proof that modules are isolated from each other (probes TD020-TD025,
//! declared in `crate::rules::probes`).
//!
//! From each module's real login sessions (app and worker) it tries to use
//! every other module's schemas, tables, functions and sequences and to
//! `SET ROLE` to the other module's roles; each try must be refused. Then,
//! in the owner session, it writes rows of one tenant into the other
//! module's tables and checks that this module's runtime roles, in that
//! tenant's context, see none of them.
//!
//! Every try runs in a savepoint that is rolled back at once, so a try that
//! wrongly succeeds (a CREATE, a SET ROLE) leaves nothing behind; tries
//! with effects outside the transaction (`nextval`, `setval`) are never
//! made. It must never commit, and never decide a proof from a superuser's
//! view of the rows.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::db::{Db, Outcome};
use crate::dynamic::{insert_row, ordered_tables, placement_of_another_user, Mode};
use crate::error::Result;
use crate::fill::RowJson;
use crate::report::Report;
use crate::rules::probes::{TD020, TD021, TD022, TD023, TD024, TD025};
use crate::rules::Rule;
use crate::{ident, lit, qualified, Module};

/// One module's login sessions (each in its always rolled-back transaction).
pub struct LoginSessions<'a> {
    pub app: Option<&'a mut Db>,
    pub worker: Option<&'a mut Db>,
}

/// Run `sql` as a probe in a savepoint that is rolled back right after.
fn attempt(db: &mut Db, sql: &str, count: bool) -> Result<Outcome> {
    db.exec("SAVEPOINT rls_module_try")?;
    let o = db.probe(sql, count);
    db.exec("ROLLBACK TO SAVEPOINT rls_module_try; RELEASE SAVEPOINT rls_module_try")?;
    o
}

/// Refused for lack of a privilege (not by a policy, not for another reason).
fn permission_denied(o: &Outcome) -> bool {
    o.sqlstate.as_deref() == Some("42501") && o.message.starts_with("permission denied")
}

/// The pass/fail bookkeeping of the probes of one role.
struct Tally<'r> {
    object: String,
    failed: BTreeMap<&'static str, bool>,
    report: &'r mut Report,
    config: &'r Config,
}

impl<'r> Tally<'r> {
    fn new(role: &str, report: &'r mut Report, config: &'r Config) -> Self {
        Tally {
            object: format!("role {role}"),
            failed: BTreeMap::new(),
            report,
            config,
        }
    }

    /// Record one try of `probe`; `what` names the target and the try.
    fn record(&mut self, probe: &'static Rule, passed: bool, what: &str, o: &Outcome) {
        self.report.examine(&self.object, probe.id);
        let failed = self.failed.entry(probe.id).or_insert(false);
        if !passed {
            *failed = true;
            self.report.add(
                self.config,
                probe.id,
                self.object.clone(),
                format!("{}: {what} {}", probe.summary, o.describe()),
                probe.fix.to_owned(),
            );
        }
    }

    /// File the probes that passed every try as proofs of the role.
    fn finish(self) {
        let passed: Vec<&'static str> = self
            .failed
            .iter()
            .filter(|(_, failed)| !**failed)
            .map(|(id, _)| *id)
            .collect();
        let entry = self.report.proofs.entry(self.object).or_default();
        for id in passed {
            if !entry.contains(&id) {
                entry.push(id);
            }
        }
    }
}

#[derive(Deserialize)]
struct Sequence {
    schema: String,
    name: String,
}

/// Sequences of `schemas` (the catalog snapshot holds tables only).
fn sequences(db: &mut Db, schemas: &[String]) -> Result<Vec<Sequence>> {
    db.json(&format!(
        "SELECT n.nspname AS schema, c.relname AS name FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'S' AND n.nspname = ANY ({}) ORDER BY 1, 2",
        crate::rules::text_array(schemas)
    ))
}

/// Run the isolation probes for every ordered pair of modules: `logins[i]`
/// are the login sessions of `modules[i]`; `owner` writes the rows of TD025.
pub fn run(
    logins: &mut [LoginSessions<'_>],
    mut owner: Option<&mut Db>,
    catalog: &Catalog,
    modules: &[Module],
    config: &Config,
    report: &mut Report,
) -> Result<()> {
    for (i, m) in modules.iter().enumerate() {
        let others: Vec<&Module> = modules.iter().filter(|o| o.key != m.key).collect();
        let l = &mut logins[i];
        for (role, db) in [
            (m.app_role(), l.app.as_deref_mut()),
            (m.worker_role(), l.worker.as_deref_mut()),
        ] {
            let Some(db) = db else {
                for probe in [&TD020, &TD021, &TD022, &TD023, &TD024] {
                    report.not_run(
                        probe.id,
                        format!("role {role}"),
                        format!("no login session of {role} was given: the module isolation probes run as the login role"),
                    );
                }
                match owner.as_deref_mut() {
                    Some(owner) => tenant_context_with_rows(owner, catalog, &role, &others, config, report)?,
                    None => report.not_run(
                        TD025.id,
                        format!("role {role}"),
                        "neither a login session nor an owner session",
                    ),
                }
                continue;
            };
            let mut tally = Tally::new(&role, report, config);
            for o in &others {
                tries(db, &mut tally, catalog, o)?;
            }
            let rows_needed = tenant_context_in_login(db, &mut tally, catalog, &others)?;
            tally.finish();
            if rows_needed {
                match owner.as_deref_mut() {
                    Some(owner) => tenant_context_with_rows(owner, catalog, &role, &others, config, report)?,
                    None => report.not_run(
                        TD025.id,
                        format!("role {role}"),
                        format!(
                            "{role} may read another module's tables and saw no rows, but rows of another session \
                             are invisible until committed: give an owner session to prove it with rows"
                        ),
                    ),
                }
            }
        }
    }
    Ok(())
}

/// TD020-TD024 in `db`, a login session of this module, against module `o`.
fn tries(db: &mut Db, tally: &mut Tally<'_>, catalog: &Catalog, o: &Module) -> Result<()> {
    let schemas = o.schemas();
    for s in &schemas {
        let q = ident(s);
        let lookup = attempt(
            db,
            &format!(
                "SELECT pg_catalog.to_regclass({})",
                lit(&format!("{q}.attestor_rls_probe"))
            ),
            false,
        )?;
        tally.record(
            &TD020,
            permission_denied(&lookup),
            &format!("a name look-up in schema {s} (USAGE)"),
            &lookup,
        );
        let create = attempt(db, &format!("CREATE TABLE {q}.attestor_rls_probe ()"), false)?;
        tally.record(
            &TD020,
            permission_denied(&create),
            &format!("CREATE TABLE in schema {s}"),
            &create,
        );
    }
    for t in catalog.tables.iter().filter(|t| schemas.contains(&t.schema)) {
        let q = t.qualified();
        let col = t.columns.first().map(|c| ident(&c.name));
        let mut statements = vec![
            ("SELECT", format!("SELECT 1 FROM {q}"), true),
            ("INSERT", format!("INSERT INTO {q} DEFAULT VALUES"), false),
            ("DELETE", format!("DELETE FROM {q} WHERE false"), false),
        ];
        if let Some(c) = col {
            statements.push(("UPDATE", format!("UPDATE {q} SET {c} = {c} WHERE false"), false));
        }
        for (verb, sql, count) in statements {
            let r = attempt(db, &sql, count)?;
            tally.record(
                &TD021,
                permission_denied(&r),
                &format!("{verb} on {}", t.key()),
                &r,
            );
        }
    }
    for f in catalog
        .functions
        .iter()
        .filter(|f| schemas.contains(&f.schema) && f.kind == "f")
    {
        let args: Vec<String> = if f.arg_types.is_empty() {
            Vec::new()
        } else {
            f.arg_types.split(", ").map(|ty| format!("NULL::{ty}")).collect()
        };
        let sql = format!(
            "SELECT {}.{}({})",
            ident(&f.schema),
            ident(&f.name),
            args.join(", ")
        );
        let r = attempt(db, &sql, false)?;
        tally.record(&TD022, permission_denied(&r), &format!("calling {}", f.key()), &r);
    }
    for s in sequences(db, &schemas)? {
        let q = qualified(&s.schema, &s.name);
        let key = format!("{}.{}", s.schema, s.name);
        let cur = attempt(db, &format!("SELECT currval({})", lit(&q)), false)?;
        tally.record(
            &TD023,
            permission_denied(&cur),
            &format!("currval of {key}"),
            &cur,
        );
        let read = attempt(db, &format!("SELECT last_value FROM {q}"), true)?;
        tally.record(
            &TD023,
            permission_denied(&read),
            &format!("SELECT from {key}"),
            &read,
        );
    }
    if db.citus_coordinator()? {
        // With `citus.propagate_set_commands = 'local'` a coordinator sends
        // `SET LOCAL ROLE` to the workers this transaction has connections
        // to before it checks the role itself, and a worker's refusal comes
        // back as XX000 "failure on connection marked as essential": not
        // the coordinator's answer, and not one a probe can tell from a
        // broken connection. Without propagation the coordinator decides,
        // as it does for every session on it (roles alike on every node is
        // TI026's check). The savepoint puts the setting back afterwards.
        db.exec("SAVEPOINT rls_module_roles; SET LOCAL citus.propagate_set_commands = 'none'")?;
    }
    for r in [o.owner_role(), o.app_role(), o.worker_role()] {
        let set = attempt(db, &format!("SET LOCAL ROLE {}", ident(&r)), false)?;
        // A role that does not exist cannot be reached either.
        let absent = set.sqlstate.as_deref() == Some("22023") && set.message.contains("does not exist");
        tally.record(
            &TD024,
            set.sqlstate.as_deref() == Some("42501") || absent,
            &format!("SET ROLE {r}"),
            &set,
        );
    }
    if db.citus_coordinator()? {
        db.exec("ROLLBACK TO SAVEPOINT rls_module_roles; RELEASE SAVEPOINT rls_module_roles")?;
    }
    Ok(())
}

/// TD025's first half, in the login session: in a tenant's context, the
/// other modules' tenant tables are refused (proven) or give rows (a
/// finding). Returns whether some table answered with no rows, which only
/// rows written elsewhere can settle.
fn tenant_context_in_login(
    db: &mut Db,
    tally: &mut Tally<'_>,
    catalog: &Catalog,
    others: &[&Module],
) -> Result<bool> {
    let tenant = db
        .text("SELECT gen_random_uuid()::text AS v")?
        .unwrap_or_default();
    db.exec("SAVEPOINT rls_module_tenant")?;
    db.set_tenant(&tenant)?;
    let mut rows_needed = false;
    for o in others {
        for t in catalog.tenant_tables(&o.schema) {
            let r = db.probe(&format!("SELECT 1 FROM {}", t.qualified()), true)?;
            if r.ok() && r.rows == 0 {
                rows_needed = true;
                continue;
            }
            tally.record(
                &TD025,
                permission_denied(&r),
                &format!("in a tenant's context, SELECT on {}", t.key()),
                &r,
            );
        }
    }
    db.exec("ROLLBACK TO SAVEPOINT rls_module_tenant; RELEASE SAVEPOINT rls_module_tenant")?;
    Ok(rows_needed)
}

/// TD025 with rows: in the owner session, one row of tenant T in every
/// tenant table of the other modules, then `role` in T's context must see
/// none of them. All in a savepoint that is rolled back.
fn tenant_context_with_rows(
    owner: &mut Db,
    catalog: &Catalog,
    role: &str,
    others: &[&Module],
    config: &Config,
    report: &mut Report,
) -> Result<()> {
    let object = format!("role {role}");
    let superuser = owner
        .text("SELECT current_setting('is_superuser') AS v")?
        .as_deref()
        == Some("on");
    let tenant = owner
        .text("SELECT gen_random_uuid()::text AS v")?
        .unwrap_or_default();
    owner.exec("SAVEPOINT rls_module_rows")?;
    let result = (|| -> Result<()> {
        let mut filled: Vec<String> = Vec::new();
        for o in others {
            let mut parents: BTreeMap<String, RowJson> = BTreeMap::new();
            for t in ordered_tables(catalog, o) {
                match insert_row(
                    owner,
                    catalog,
                    t,
                    &tenant,
                    "m",
                    &parents,
                    Mode::SetRole { superuser },
                    &o.app_role(),
                )? {
                    Ok(row) => {
                        parents.insert(t.key(), row);
                        filled.push(t.qualified());
                    }
                    Err(e) => report.not_run(
                        TD025.id,
                        &object,
                        format!("no row of {} could be written for the proof: {e}", t.key()),
                    ),
                }
            }
        }
        if let Err(e) = owner.try_text(&format!("SET LOCAL ROLE {}", ident(role)))? {
            report.not_run(
                TD025.id,
                &object,
                format!("the owner session cannot SET ROLE {role}: {e}"),
            );
            return Ok(());
        }
        owner.set_tenant(&tenant)?;
        let mut all_passed = !filled.is_empty();
        for q in &filled {
            report.examine(&object, TD025.id);
            let r = owner.probe(&format!("SELECT 1 FROM {q}"), true)?;
            if placement_of_another_user(&r) {
                // Not run, never passed: the rows are there, unread.
                all_passed = false;
                report.not_run(
                    TD025.id,
                    &object,
                    format!(
                        "on a Citus coordinator a shard placement written by one user cannot be read by another \
                         in the same transaction: the row of {q} written for the proof cannot be read as {role}, \
                         and writing it in a committed transaction would leave data behind; the login half of \
                         TD025 and the catalog rules (TI002, TI017) still ran"
                    ),
                );
                continue;
            }
            if !(permission_denied(&r) || (r.ok() && r.rows == 0)) {
                all_passed = false;
                // A refusal seen in the login session proves nothing about this table.
                if let Some(p) = report.proofs.get_mut(&object) {
                    p.retain(|id| *id != TD025.id);
                }
                report.add(
                    config,
                    TD025.id,
                    object.clone(),
                    format!(
                        "{}: in the context of a tenant with a row in {q}, SELECT {}",
                        TD025.summary,
                        r.describe()
                    ),
                    TD025.fix.to_owned(),
                );
            }
        }
        owner.exec("SET LOCAL ROLE NONE")?;
        let failed_before = report
            .findings
            .iter()
            .any(|f| f.rule == TD025.id && f.object == object);
        if all_passed && !failed_before {
            let entry = report.proofs.entry(object.clone()).or_default();
            if !entry.contains(&TD025.id) {
                entry.push(TD025.id);
            }
        }
        Ok(())
    })();
    owner.exec("ROLLBACK TO SAVEPOINT rls_module_rows; RELEASE SAVEPOINT rls_module_rows")?;
    result
}
