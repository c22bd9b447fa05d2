//! TI022 `reached-role-powers`: no runtime role, nor any role it reaches,
//! may create roles, replicate the cluster or hold a predefined role that
//! reads or writes all data, server files or programs; and the module's
//! owner role cannot log in. Owns this rule only; it reads the membership
//! graph (`crate::membership`) and pg_roles, and never writes.

use super::prelude::*;

/// Predefined roles a runtime role must never reach, and why.
const PREDEFINED: &[(&str, &str)] = &[
    ("pg_read_all_data", "grants SELECT on every table, view and sequence of every schema"),
    ("pg_write_all_data", "grants INSERT, UPDATE and DELETE on every table of every schema"),
    ("pg_read_server_files", "reads any file the server can (COPY FROM a file: the data directory)"),
    ("pg_write_server_files", "writes any file the server can (COPY TO a file)"),
    ("pg_execute_server_program", "runs programs as the server's operating-system user (COPY … PROGRAM)"),
    ("pg_read_all_stats", "sees every session's query text (other tenants' values in pg_stat_activity)"),
    ("pg_monitor", "sees every session's query text (it includes pg_read_all_stats)"),
    ("pg_create_subscription", "creates subscriptions that copy rows in from elsewhere"),
];

rule! {
    /// Row-Level Security constrains table access; some roles step around it in other
    /// ways. CREATEROLE creates and alters roles — before PostgreSQL 16 any
    /// non-superuser role, so it can grant itself the owner's membership; from 16 on
    /// the roles it created, and it can still create a role with powers it holds.
    /// REPLICATION streams the whole cluster's data (WAL and base backups) past
    /// every policy. The predefined roles `pg_read_all_data` and `pg_write_all_data`
    /// grant access to every table of every schema (global and other modules'
    /// tables included), `pg_read_server_files`, `pg_write_server_files` and
    /// `pg_execute_server_program` read the data directory or run programs as the
    /// server, `pg_read_all_stats` and `pg_monitor` show every session's query text,
    /// and `pg_create_subscription` copies rows in from another server. A runtime role
    /// must hold none of these, itself or through any role it reaches (the finding
    /// names the path). The attributes CREATEROLE and REPLICATION count only where
    /// the role has them itself or some path of grants lets it `SET ROLE` to their
    /// holder; an inherit-only grant (PostgreSQL 16's `SET FALSE`) lends privileges,
    /// not attributes. The module's owner role owns every object and is exempt from
    /// non-forced policies, so it must not be able to log in (NOLOGIN): migrations
    /// switch to it with `SET ROLE`.
    pub static RULE = {
        id: "TI022",
        name: "reached-role-powers",
        summary: "runtime roles reach no CREATEROLE, REPLICATION or all-data/server-file roles; the owner is NOLOGIN",
        fix: "ALTER ROLE … NOCREATEROLE NOREPLICATION; REVOKE pg_… FROM …; ALTER ROLE <module>_owner NOLOGIN.",
        needs: None,
        kind: Kind::Static(check),
    };
}

fn check(cx: &mut Ctx<'_>) -> Result<()> {
    let m = cx.module;
    let roles = m.runtime_roles().to_vec();
    for row in crate::membership::reach(cx.db, &roles)? {
        let object = format!("role {}", row.start);
        cx.examine(&object);
        if !row.exists {
            continue; // TI006's
        }
        let (via, revoke) = if row.is_start() {
            (String::new(), None)
        } else {
            (
                format!(" through {} ({})", row.role, row.path_text()),
                Some(format!("REVOKE {} FROM {}", ident(row.first_hop()), ident(&row.start))),
            )
        };
        let fix = |attribute: &str| {
            revoke
                .clone()
                .unwrap_or_else(|| format!("ALTER ROLE {} {attribute}", ident(&row.role)))
        };
        // CREATEROLE and REPLICATION are attributes: a member holds them only
        // as that role, after SET ROLE, which some path of grants must allow.
        // Predefined roles lend privileges, which membership inherits.
        let holds_attributes = row.is_start() || row.settable;
        if row.createrole && holds_attributes {
            cx.finding(
                &object,
                format!("can create and alter roles (CREATEROLE){via}"),
                fix("NOCREATEROLE"),
            );
        }
        if row.replication && holds_attributes {
            cx.finding(
                &object,
                format!("can stream the cluster's data past every policy (REPLICATION){via}"),
                fix("NOREPLICATION"),
            );
        }
        if let Some((name, what)) = PREDEFINED.iter().find(|(n, _)| *n == row.role) {
            cx.finding(
                &object,
                format!("is a member of {name}, which {what} ({})", row.path_text()),
                revoke.clone().unwrap_or_default(),
            );
        }
    }
    let owner = m.owner_role();
    let object = format!("role {owner}");
    cx.examine(&object);
    let can_login = cx
        .db
        .text(&format!(
            "SELECT rolcanlogin::text AS v FROM pg_roles WHERE rolname = {}",
            lit(&owner)
        ))?
        .is_some_and(|v| v == "true");
    if can_login {
        cx.finding(
            &object,
            "the owner role can log in: a session as the owner is exempt from non-forced policies and can \
             disable them",
            format!("ALTER ROLE {} NOLOGIN", ident(&owner)),
        );
    }
    Ok(())
}
