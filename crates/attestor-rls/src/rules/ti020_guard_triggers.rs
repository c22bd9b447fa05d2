//! TI020 `guard-triggers`: every trigger the migrations create on a module's
//! tables is present and fires, and no trigger on a module table is disabled
//! or fires only on a replica. Owns this rule and the list of the
//! migrations' triggers (read from `migrations/` when the crate is built);
//! it reads the catalog and never writes.

use super::prelude::*;

include!(concat!(env!("OUT_DIR"), "/migration_triggers.rs"));

rule! {
    /// The schema's guards are triggers: `set_updated_at` keeps updated_at honest,
    /// `audit_row` writes the audit trail, `append_only_guard` and
    /// `append_only_truncate_guard` refuse UPDATE, DELETE and TRUNCATE of the
    /// append-only ledgers, and `notify_queue_*` wake the queue workers. A guard that
    /// exists but does not fire is worse than a missing one, because the schema looks
    /// right: `ALTER TABLE … DISABLE TRIGGER` leaves it in place (`tgenabled = 'D'`),
    /// and `ENABLE REPLICA TRIGGER` makes it fire only in sessions with
    /// `session_replication_role = replica` (`'R'`), i.e. never for the application.
    /// Every trigger the migrations create on a table of a module schema must exist
    /// and be enabled (`'O'`, or `'A'` for always), and no trigger on a module table
    /// may be disabled or replica-only. (Whether some BEFORE UPDATE trigger keeps
    /// updated_at current is TI005's; this rule checks the migrations' own triggers
    /// by name.)
    pub static RULE = {
        id: "TI020",
        name: "guard-triggers",
        summary: "the migrations' triggers (updated_at, audit, append-only, queue notify) exist and fire",
        fix: "ALTER TABLE … ENABLE TRIGGER …; or recreate the missing trigger with the migration's CREATE TRIGGER.",
        needs: None,
        kind: Kind::Static(check),
    };
}

fn check(cx: &mut Ctx<'_>) -> Result<()> {
    let (catalog, schemas) = (cx.catalog, cx.module.schemas());
    let tables = catalog
        .tables
        .iter()
        .filter(|t| schemas.contains(&t.schema) && matches!(t.kind.as_str(), "r" | "p"));
    for t in tables {
        let key = t.key();
        cx.examine(&key);
        let present: Vec<_> = catalog.triggers_of(t).collect();
        for (_, name, create) in MIGRATION_TRIGGERS.iter().filter(|(table, _, _)| *table == key) {
            // The updated_at trigger's presence is TI005's (by what it does, not its name).
            if *name == "set_updated_at" {
                continue;
            }
            if !present.iter().any(|p| p.name == *name) {
                cx.finding(
                    &key,
                    format!("trigger {name}, which the migrations create, is missing"),
                    format!("{create};"),
                );
            }
        }
        for trg in present {
            let state = match trg.enabled.as_str() {
                "D" => "is disabled: it never fires",
                "R" => "fires only when session_replication_role = replica: never for the application",
                _ => continue,
            };
            cx.finding(
                &key,
                format!("trigger {} {state}", trg.name),
                format!("ALTER TABLE {} ENABLE TRIGGER {}", t.qualified(), ident(&trg.name)),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::MIGRATION_TRIGGERS;

    #[test]
    fn the_migrations_guards_are_listed() {
        for (table, name) in [
            ("attestor.audit_log", "append_only_guard"),
            ("attestor.audit_log", "append_only_truncate_guard"),
            ("attestor.verdict_ledger", "append_only_truncate_guard"),
            ("attestor.spines", "audit_row"),
            ("attestor.rekor_submission_queue", "notify_queue_insert"),
            ("attestor.rekor_submission_queue", "notify_queue_update"),
        ] {
            assert!(
                MIGRATION_TRIGGERS.iter().any(|(t, n, sql)| *t == table
                    && *n == name
                    && sql.starts_with("CREATE TRIGGER")),
                "{table} {name}"
            );
        }
    }
}
