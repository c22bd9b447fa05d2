//! verify-rls sees every way around the policies: one planted flaw per
//! family of the closure rules (what each runtime role reaches, its
//! attributes, settings that pre-empt the tenant, default privileges,
//! ownership, egress that ignores RLS, guards that do not fire), each
//! asserting the exact finding and that it names the path or the setting.
//!
//! Flaws are planted as the superuser in a database of their own. Role
//! grants and role attributes are cluster-wide: a test that plants one holds
//! [`cluster_wide`] (every other test of this file holds [`database_local`],
//! so none of them runs meanwhile), uses role names of its own and undoes
//! the change when it ends, even when it fails ([`Undo`]).

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use attestor_rls::db::Db;
use attestor_testdb::shared;

mod common;
use common::*;

static CLUSTER_STATE: RwLock<()> = RwLock::new(());

/// Held by a test whose flaw stays inside its own database.
fn database_local() -> RwLockReadGuard<'static, ()> {
    CLUSTER_STATE.read().unwrap_or_else(|p| p.into_inner())
}

/// Held by a test whose flaw changes roles (cluster-wide state).
fn cluster_wide() -> RwLockWriteGuard<'static, ()> {
    CLUSTER_STATE.write().unwrap_or_else(|p| p.into_inner())
}

/// SQL run as the superuser when the test ends, pass or fail.
struct Undo(String);

impl Drop for Undo {
    fn drop(&mut self) {
        if let Err(e) = run_each(&self.0) {
            eprintln!("undo failed: {e}: {}", self.0);
        }
    }
}

/// Run each `;`-separated statement of `sql` on its own (ALTER SYSTEM may not
/// share a transaction with anything).
fn run_each(sql: &str) -> attestor_rls::Result<()> {
    let mut db = admin();
    for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        db.exec(statement)?;
    }
    Ok(())
}

/// Wait until a new session sees `setting` as `want` (a reload is
/// asynchronous).
fn wait_for_setting(setting: &str, want: Option<&str>) {
    for _ in 0..100 {
        let seen = admin()
            .text(&format!("SELECT current_setting('{setting}', true) AS v"))
            .unwrap();
        if seen.as_deref().filter(|v| !v.is_empty()) == want {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("{setting} never became {want:?}");
}

/// The superuser on the cluster's maintenance database.
/// (The migrated template is made first: its migrations create the roles.)
fn admin() -> Db {
    shared().template().unwrap();
    Db::connect(&shared().admin("postgres").url()).unwrap()
}

/// A role name of this test run.
fn role_name(what: &str) -> String {
    format!("closure_{what}_{}", std::process::id())
}

/// Plant `flaw` on the cluster (roles), verify a fresh copy with `local`
/// applied inside it, then undo with `undo`.
fn verify_with_roles(flaw: &str, local: &str, undo: &str) -> attestor_rls::Report {
    let _held = cluster_wide();
    let _undo = Undo(undo.to_owned());
    run_each(flaw).unwrap();
    verify_flawed(local, "")
}

fn local(flaw: &str) -> attestor_rls::Report {
    let _held = database_local();
    verify_flawed(flaw, "")
}

// --- reach --------------------------------------------------------------------

#[test]
fn flaw_app_reaches_the_owner_through_a_nested_role() {
    let x = role_name("nested");
    let r = verify_with_roles(
        &format!("CREATE ROLE {x} NOLOGIN; GRANT attestor_owner TO {x}; GRANT {x} TO attestor_app"),
        "",
        &format!("DROP ROLE IF EXISTS {x}"),
    );
    assert_finding(
        &r,
        "TI006",
        "role attestor_app",
        &format!(
            "owns objects in this database through membership of attestor_owner (attestor_app → {x} → \
             attestor_owner) (an owner is exempt from non-forced RLS and can disable it)"
        ),
    );
    let f = r.findings.iter().find(|f| f.rule == "TI006").unwrap();
    assert_eq!(f.fix, format!("REVOKE {x} FROM attestor_app"));
    assert_only(&r, &["TI006"]);
}

#[test]
fn flaw_app_reaches_the_worker() {
    let x = role_name("bridge");
    let r = verify_with_roles(
        &format!("CREATE ROLE {x} NOLOGIN; GRANT attestor_worker TO {x}; GRANT {x} TO attestor_app"),
        "",
        &format!("DROP ROLE IF EXISTS {x}"),
    );
    assert_finding(
        &r,
        "TI019",
        "role attestor_app",
        &format!(
            "reaches the runtime role attestor_worker (attestor_app → {x} → attestor_worker): it holds that \
             role's rights as well as its own"
        ),
    );
    assert_only(&r, &["TI019"]);
}

#[test]
fn flaw_worker_reaches_a_bypassrls_role_two_grants_away() {
    let (x, b) = (role_name("hop"), role_name("bypass"));
    let r = verify_with_roles(
        &format!(
            "CREATE ROLE {b} NOLOGIN BYPASSRLS; CREATE ROLE {x} NOLOGIN; GRANT {b} TO {x}; \
             GRANT {x} TO attestor_worker"
        ),
        "",
        &format!("DROP ROLE IF EXISTS {x}; DROP ROLE IF EXISTS {b}"),
    );
    assert_finding(
        &r,
        "TI006",
        "role attestor_worker",
        &format!("bypasses RLS through membership of {b} (attestor_worker → {x} → {b})"),
    );
    assert_only(&r, &["TI006"]);
}

#[test]
fn the_clean_schema_has_no_closure_findings() {
    let r = local("");
    assert!(r.is_clean(), "{}", show(&r));
}

// --- guards that do not fire -----------------------------------------------------

#[test]
fn flaw_append_only_guard_disabled() {
    let r = local("ALTER TABLE attestor.audit_log DISABLE TRIGGER append_only_guard");
    assert_finding(
        &r,
        "TI020",
        "attestor.audit_log",
        "trigger append_only_guard is disabled: it never fires",
    );
    assert_only(&r, &["TI020"]);
}

#[test]
fn flaw_truncate_guard_fires_only_on_a_replica() {
    let r = local("ALTER TABLE attestor.verdict_ledger ENABLE REPLICA TRIGGER append_only_truncate_guard");
    assert_finding(
        &r,
        "TI020",
        "attestor.verdict_ledger",
        "trigger append_only_truncate_guard fires only when session_replication_role = replica: never for \
         the application",
    );
    assert_only(&r, &["TI020"]);
}

#[test]
fn flaw_queue_notify_trigger_dropped() {
    let r = local("DROP TRIGGER notify_queue_insert ON attestor.rekor_submission_queue");
    assert_finding(
        &r,
        "TI020",
        "attestor.rekor_submission_queue",
        "trigger notify_queue_insert, which the migrations create, is missing",
    );
    let f = r.findings.iter().find(|f| f.rule == "TI020").unwrap();
    assert!(
        f.fix.starts_with(
            "CREATE TRIGGER notify_queue_insert AFTER INSERT ON attestor.rekor_submission_queue"
        ),
        "{}",
        f.fix
    );
    assert_only(&r, &["TI020"]);
}

#[test]
fn flaw_audit_trigger_disabled() {
    let r = local("ALTER TABLE attestor.spines DISABLE TRIGGER audit_row");
    assert_finding(
        &r,
        "TI020",
        "attestor.spines",
        "trigger audit_row is disabled: it never fires",
    );
    assert_only(&r, &["TI020"]);
}

// --- settings that pre-empt the tenant -------------------------------------------

/// Verify a fresh copy with `flaw` applied, `{db}` in it replaced by the
/// copy's name; returns the report and the name.
fn local_in(flaw: &str) -> (attestor_rls::Report, String) {
    let _held = database_local();
    let server = shared();
    let db = server.test_database().unwrap();
    let name = db.name().to_owned();
    Db::connect(&db.admin_url())
        .unwrap()
        .exec(&flaw.replace("{db}", &name))
        .unwrap();
    (verify_as_operator(server, &name, ""), name)
}

#[test]
fn flaw_role_in_database_default_tenant() {
    let tenant = "0b3c5c1e-8f4e-4c59-9d4e-2f1a6f3b9a10";
    let (r, db) = local_in(&format!(
        "ALTER ROLE attestor_app IN DATABASE \"{{db}}\" SET app.tenant_id = '{tenant}'"
    ));
    assert_finding(
        &r,
        "TI021",
        "role attestor_app",
        &format!(
            "a session that forgets its tenant context still gets one: app.tenant_id defaults to \"{tenant}\" \
             (ALTER ROLE attestor_app IN DATABASE {db} SET app.tenant_id)"
        ),
    );
    let f = r.findings.iter().find(|f| f.rule == "TI021").unwrap();
    assert_eq!(
        f.fix,
        format!("ALTER ROLE attestor_app IN DATABASE {db} RESET app.tenant_id")
    );
    // The login session's probes see the same default at work.
    assert_only(&r, &["TI021", "TD"]);
}

#[test]
fn flaw_database_default_actor() {
    let (r, db) = local_in("ALTER DATABASE \"{db}\" SET app.actor = 'mallory'");
    assert_finding(
        &r,
        "TI021",
        &format!("database {db}"),
        &format!(
            "a session that forgets its tenant context still gets one: app.actor defaults to \"mallory\" \
             (ALTER DATABASE {db} SET app.actor)"
        ),
    );
    assert_only(&r, &["TI021", "TD"]);
}

#[test]
fn flaw_worker_default_row_security_off() {
    let (r, db) = local_in("ALTER ROLE attestor_worker IN DATABASE \"{db}\" SET row_security = off");
    assert_finding(
        &r,
        "TI021",
        "role attestor_worker",
        &format!(
            "row_security defaults to off (ALTER ROLE attestor_worker IN DATABASE {db} SET row_security)"
        ),
    );
    assert_only(&r, &["TI021", "TD"]);
}

#[test]
fn flaw_app_default_search_path_names_a_writable_schema() {
    let (r, db) = local_in(
        "CREATE SCHEMA scratch; GRANT USAGE, CREATE ON SCHEMA scratch TO attestor_app;
         ALTER ROLE attestor_app IN DATABASE \"{db}\" SET search_path = scratch, pg_catalog",
    );
    assert_finding(
        &r,
        "TI021",
        "role attestor_app",
        &format!(
            "search_path defaults to scratch, pg_catalog and names scratch, where a runtime role or PUBLIC can \
             create objects that shadow what the helpers and queries resolve (ALTER ROLE attestor_app IN \
             DATABASE {db} SET search_path)"
        ),
    );
    // (The CREATE grant is itself TI007's and, outside the module, TI017's.)
    assert_only(&r, &["TI021", "TI007", "TI017", "TD"]);
}

#[test]
fn flaw_server_default_actor() {
    if std::env::var_os("DATABASE_URL").is_some() {
        // ALTER SYSTEM would rewrite a server this test does not own.
        eprintln!("skipped: needs the embedded cluster (DATABASE_URL is set)");
        return;
    }
    let r = {
        let _held = cluster_wide();
        let _undo = Undo("SET app.actor = ''; ALTER SYSTEM RESET app.actor; SELECT pg_reload_conf()".into());
        run_each("SET app.actor = ''; ALTER SYSTEM SET app.actor = 'mallory'; SELECT pg_reload_conf()")
            .unwrap();
        wait_for_setting("app.actor", Some("mallory"));
        let r = verify_flawed("", "");
        drop(_undo);
        wait_for_setting("app.actor", None);
        r
    };
    assert_finding_starts(
        &r,
        "TI021",
        &format!("database {}", r.database),
        "a session that forgets its tenant context still gets one: app.actor defaults to \"mallory\" (the \
         server's configuration: postgresql.conf, ALTER SYSTEM, the command line or the connection's options)",
    );
    assert_only(&r, &["TI021"]);
}

#[test]
fn flaw_function_sets_the_tenant() {
    let tenant = "0b3c5c1e-8f4e-4c59-9d4e-2f1a6f3b9a10";
    let r = local(&format!(
        "ALTER FUNCTION attestor_app.set_updated_at() SET app.tenant_id = '{tenant}'"
    ));
    assert_finding(
        &r,
        "TI021",
        "attestor_app.set_updated_at()",
        &format!(
            "the function runs in a tenant context of its own (SET app.tenant_id={tenant}): callers' context \
             is replaced"
        ),
    );
    assert_only(&r, &["TI021"]);
}

// --- attributes and predefined roles ---------------------------------------------

#[test]
fn flaw_worker_reaches_createrole() {
    let x = role_name("creator");
    let r = verify_with_roles(
        &format!("CREATE ROLE {x} NOLOGIN CREATEROLE; GRANT {x} TO attestor_worker"),
        "",
        &format!("DROP ROLE IF EXISTS {x}"),
    );
    assert_finding(
        &r,
        "TI022",
        "role attestor_worker",
        &format!("can create and alter roles (CREATEROLE) through {x} (attestor_worker → {x})"),
    );
    let f = r.findings.iter().find(|f| f.rule == "TI022").unwrap();
    assert_eq!(f.fix, format!("REVOKE {x} FROM attestor_worker"));
    assert_only(&r, &["TI022"]);
}

#[test]
fn flaw_app_replication() {
    let r = verify_with_roles(
        "ALTER ROLE attestor_app REPLICATION",
        "",
        "ALTER ROLE attestor_app NOREPLICATION",
    );
    assert_finding(
        &r,
        "TI022",
        "role attestor_app",
        "can stream the cluster's data past every policy (REPLICATION)",
    );
    assert_only(&r, &["TI022"]);
}

#[test]
fn flaw_app_reaches_pg_read_server_files() {
    let x = role_name("files");
    let r = verify_with_roles(
        &format!("CREATE ROLE {x} NOLOGIN; GRANT pg_read_server_files TO {x}; GRANT {x} TO attestor_app"),
        "",
        &format!("DROP ROLE IF EXISTS {x}"),
    );
    assert_finding(
        &r,
        "TI022",
        "role attestor_app",
        &format!(
            "is a member of pg_read_server_files, which reads any file the server can (COPY FROM a file: the \
             data directory) (attestor_app → {x} → pg_read_server_files)"
        ),
    );
    assert_only(&r, &["TI022"]);
}

#[test]
fn flaw_worker_is_a_member_of_pg_write_all_data() {
    let r = verify_with_roles(
        "GRANT pg_write_all_data TO attestor_worker",
        "",
        "REVOKE pg_write_all_data FROM attestor_worker",
    );
    assert_finding(
        &r,
        "TI022",
        "role attestor_worker",
        "is a member of pg_write_all_data, which grants INSERT, UPDATE and DELETE on every table of every schema \
         (attestor_worker → pg_write_all_data)",
    );
    assert_only(&r, &["TI022", "TD"]);
}

#[test]
fn flaw_owner_can_log_in() {
    let r = verify_with_roles(
        "ALTER ROLE attestor_owner LOGIN",
        "",
        "ALTER ROLE attestor_owner NOLOGIN",
    );
    assert_finding(
        &r,
        "TI022",
        "role attestor_owner",
        "the owner role can log in: a session as the owner is exempt from non-forced policies and can \
         disable them",
    );
    assert_only(&r, &["TI022"]);
}

// --- egress that ignores RLS -------------------------------------------------------

#[test]
fn flaw_publication_for_all_tables() {
    let r = local("SET client_min_messages = error; CREATE PUBLICATION leak FOR ALL TABLES");
    assert_finding(
        &r,
        "TI023",
        "publication leak",
        "publishes all tables of module attestor: subscribers receive every tenant's rows, past every policy",
    );
    assert_only(&r, &["TI023"]);
}

#[test]
fn flaw_publication_of_a_tenant_table() {
    let r = local("SET client_min_messages = error; CREATE PUBLICATION leak FOR TABLE attestor.spines");
    assert_finding(
        &r,
        "TI023",
        "publication leak",
        "publishes table attestor.spines of module attestor: subscribers receive every tenant's rows, past \
         every policy",
    );
    assert_only(&r, &["TI023"]);
}

#[test]
fn flaw_rule_copies_rows() {
    let r = local(
        "CREATE TABLE public.copied (LIKE attestor.trust_anchors);
         CREATE RULE copy_out AS ON INSERT TO attestor.trust_anchors
             DO ALSO INSERT INTO public.copied SELECT NEW.*",
    );
    assert_finding_starts(
        &r,
        "TI023",
        "attestor.trust_anchors",
        "rewrite rule copy_out runs its actions with the table owner's rights, where the policies do not follow \
         the rows (CREATE RULE copy_out AS",
    );
    assert_only(&r, &["TI023", "TD"]);
}

#[test]
fn flaw_foreign_server_and_table() {
    let r = local(
        "CREATE FOREIGN DATA WRAPPER closure_fdw;
         CREATE SERVER elsewhere FOREIGN DATA WRAPPER closure_fdw;
         CREATE USER MAPPING FOR attestor_app SERVER elsewhere;
         CREATE FOREIGN TABLE attestor.remote_rows (tenant_id uuid) SERVER elsewhere",
    );
    assert_finding(
        &r,
        "TI023",
        "server elsewhere",
        "attestor_app has a user mapping on foreign server elsewhere: it can ship rows to another server",
    );
    assert_finding(
        &r,
        "TI023",
        "attestor.remote_rows",
        "foreign table in a module schema: its rows come from another server, under no policy of this one",
    );
    // (a table with tenant_id and no policy is the policies' own finding)
    assert_only(&r, &["TI023", "TI0"]);
}

#[test]
fn flaw_event_trigger() {
    let r = local(
        "CREATE FUNCTION public.on_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN END $$;
         CREATE EVENT TRIGGER on_ddl ON ddl_command_end EXECUTE FUNCTION public.on_ddl()",
    );
    assert_finding(
        &r,
        "TI023",
        "event trigger on_ddl",
        "event trigger (ddl_command_end → on_ddl) runs on the DDL of every role, the owner's migrations included",
    );
    assert_only(&r, &["TI023"]);
}

// --- ownership ---------------------------------------------------------------------

#[test]
fn flaw_trigger_function_owned_by_the_app() {
    let r = local("ALTER FUNCTION attestor_app.audit_row() OWNER TO attestor_app");
    assert_finding(
        &r,
        "TI024",
        "attestor_app.audit_row()",
        "owned by attestor_app, not by the module's owner role attestor_owner: a runtime role that owns it can \
         alter it and is exempt from its policies",
    );
    let f = r.findings.iter().find(|f| f.rule == "TI024").unwrap();
    assert_eq!(
        f.fix,
        "ALTER FUNCTION attestor_app.audit_row() OWNER TO attestor_owner"
    );
    // (owning anything is also TI006's finding on the role)
    assert_only(&r, &["TI024", "TI006"]);
}

#[test]
fn flaw_helper_schema_and_type_owned_by_another_role() {
    let x = role_name("squatter");
    let r = verify_with_roles(
        &format!("CREATE ROLE {x} NOLOGIN"),
        &format!(
            "CREATE TYPE attestor.verdict_kind AS ENUM ('pass', 'fail');
             ALTER TYPE attestor.verdict_kind OWNER TO {x};
             ALTER SCHEMA attestor_app OWNER TO {x}"
        ),
        &format!("DROP OWNED BY {x}; DROP ROLE IF EXISTS {x}"),
    );
    assert_finding(
        &r,
        "TI024",
        "schema attestor_app",
        &format!(
            "owned by {x}, not by the module's owner role attestor_owner: its owner can alter or replace it \
             outside the module's migrations"
        ),
    );
    assert_finding_starts(
        &r,
        "TI024",
        "type attestor.verdict_kind",
        &format!("owned by {x}, not by"),
    );
    assert_only(&r, &["TI024"]);
}

/// What a migration that runs as the migrator leaves when it forgets the
/// `ALTER … OWNER TO attestor_owner` of an object it creates.
#[test]
fn flaw_objects_left_to_the_migrating_superuser() {
    let superuser = admin().text("SELECT current_user::text AS v").unwrap().unwrap();
    let r = local(
        "CREATE FUNCTION attestor_app.tenant_label() RETURNS text LANGUAGE sql STABLE RETURN 'tenant';
         REVOKE ALL ON FUNCTION attestor_app.tenant_label() FROM PUBLIC;
         CREATE SEQUENCE attestor.label_seq",
    );
    assert_finding(
        &r,
        "TI024",
        "attestor_app.tenant_label()",
        &format!(
            "owned by {superuser}, not by the module's owner role attestor_owner: a migration that ran as the \
             migrator did not hand it over, and what a superuser owns (a view, a SECURITY DEFINER function) runs \
             with a superuser's rights, past every policy"
        ),
    );
    let f = r
        .findings
        .iter()
        .find(|f| f.rule == "TI024" && f.object == "attestor_app.tenant_label()")
        .unwrap();
    assert_eq!(
        f.fix,
        "ALTER FUNCTION attestor_app.tenant_label() OWNER TO attestor_owner"
    );
    assert_finding_starts(
        &r,
        "TI024",
        "attestor.label_seq",
        &format!("owned by {superuser}, not by"),
    );
    assert_only(&r, &["TI024"]);
    // Handed over, as a migration from the cutoff on does, it is clean.
    let r = local(
        "CREATE FUNCTION attestor_app.tenant_label() RETURNS text LANGUAGE sql STABLE RETURN 'tenant';
         REVOKE ALL ON FUNCTION attestor_app.tenant_label() FROM PUBLIC;
         ALTER FUNCTION attestor_app.tenant_label() OWNER TO attestor_owner;
         CREATE SEQUENCE attestor.label_seq;
         ALTER SEQUENCE attestor.label_seq OWNER TO attestor_owner",
    );
    assert!(r.is_clean(), "{}", show(&r));
}

// --- default privileges ----------------------------------------------------------

#[test]
fn flaw_default_privileges_grant_future_tables_to_the_app() {
    let r = local(
        "ALTER DEFAULT PRIVILEGES FOR ROLE attestor_owner IN SCHEMA attestor GRANT SELECT, DELETE ON TABLES TO attestor_app",
    );
    assert_finding(
        &r,
        "TI025",
        "default privileges of attestor_owner in schema attestor",
        "future tables get DELETE, SELECT for attestor_app without a reviewed grant",
    );
    let f = r.findings.iter().find(|f| f.rule == "TI025").unwrap();
    assert_eq!(
        f.fix,
        "ALTER DEFAULT PRIVILEGES FOR ROLE attestor_owner IN SCHEMA attestor REVOKE ALL ON TABLES FROM attestor_app"
    );
    assert_only(&r, &["TI025"]);
}

#[test]
fn flaw_default_privileges_give_public_execute_again() {
    let r = local("ALTER DEFAULT PRIVILEGES FOR ROLE attestor_owner GRANT EXECUTE ON FUNCTIONS TO PUBLIC");
    assert_finding(
        &r,
        "TI025",
        "default privileges of attestor_owner",
        "future functions get EXECUTE for PUBLIC (the built-in default is not revoked)",
    );
    assert_only(&r, &["TI025"]);
}

/// PostgreSQL 16's grant options, tried on any server: the walk follows the
/// edges it is given (here between predefined roles, which every server has).
#[test]
fn reach_follows_set_then_inherit_and_nothing_else() {
    let _held = database_local();
    let db = shared().test_database().unwrap();
    let mut admin = Db::connect(&db.admin_url()).unwrap();
    let edge = |member: &str, role: &str, set: bool, inherit: bool| {
        format!("SELECT '{member}'::regrole::oid, '{role}'::regrole::oid, {set}, {inherit}")
    };
    let edges = [
        // SET FALSE, INHERIT FALSE: reaches nothing.
        edge("attestor_app", "pg_read_all_data", false, false),
        // INHERIT then SET only: the first is inherited, the second cannot be switched to.
        edge("attestor_app", "pg_monitor", false, true),
        edge("pg_monitor", "pg_write_all_data", true, false),
        // SET then INHERIT: switched to, then inherited from.
        edge("attestor_app", "pg_signal_backend", true, false),
        edge("pg_signal_backend", "pg_read_server_files", false, true),
    ]
    .join(" UNION ALL ");
    let edges = format!("SELECT * FROM ({edges}) AS e(member, roleid, can_set, can_inherit)");
    let reached: Vec<String> =
        attestor_rls::membership::reach_over(&mut admin, &["attestor_app".to_owned()], &edges)
            .unwrap()
            .into_iter()
            .map(|r| r.path_text())
            .collect();
    assert_eq!(
        reached,
        [
            "attestor_app",
            "attestor_app → pg_monitor",
            "attestor_app → pg_signal_backend",
            "attestor_app → pg_signal_backend → pg_read_server_files",
        ]
    );
}

/// A reviewed exception in rls.toml accepts a closure finding by its rule id.
#[test]
fn a_reviewed_publication_is_accepted() {
    let _held = database_local();
    let r = verify_flawed(
        "SET client_min_messages = error; CREATE PUBLICATION audit_export FOR TABLE attestor.audit_log",
        "[[allow]]\nrule = \"TI023\"\nobject = \"publication audit_export\"\nreason = \"the audit archive\"\n",
    );
    assert!(r.is_clean(), "{}", show(&r));
    assert!(
        r.accepted
            .iter()
            .any(|a| a.rule == "TI023" && a.object == "publication audit_export"),
        "{:?}",
        r.accepted
    );
}
