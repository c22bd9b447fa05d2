//! `cargo xtask module new` end to end, on a temporary copy of the workspace
//! (its Cargo files, diesel.toml, rls.toml, migrations and crate sources;
//! nothing is built there): scaffold a second module `scanner`, give it a
//! tenant table in a migration of its own, generate its schema crate and
//! its policies, migrate both modules and verify them clean from every
//! module's login roles; then plant a cross-module grant and a cross-module
//! membership and see each reported under its rule id.
//!
//! Roles are cluster-wide, so the test runs on its own embedded cluster
//! (or `DATABASE_URL`'s server) and undoes the one cluster-wide flaw it
//! plants, the membership, whatever happens.

use std::path::{Path, PathBuf};

use attestor_rls::db::Db;
use attestor_rls::{Config, Report, VerifyOptions};
use attestor_testdb::Server;
use diesel_migrations::{FileBasedMigrations, MigrationHarness};
use xtask::module::{new_module, ModuleError};
use xtask::util::{rls_modules_in, root, scratch_database_in};
use xtask::{gen_rls, schema, verify_rls};

/// A directory deleted when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copy `from` to `to`, skipping build output and tool caches.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if matches!(name.to_str(), Some("target" | ".tools" | ".git")) {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// The parts of the workspace `module new`, `schema`, `gen-rls` and
/// `verify-rls` read or write.
fn copy_workspace() -> TempDir {
    let dir = std::env::temp_dir().join(format!("attestor-module-new-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let src = root();
    for file in ["Cargo.toml", "Cargo.lock", "diesel.toml", "rls.toml"] {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(src.join(file), dir.join(file)).unwrap();
    }
    for tree in ["migrations", "crates", "xtask", "tests", "citus"] {
        if src.join(tree).is_dir() {
            copy_tree(&src.join(tree), &dir.join(tree));
        }
    }
    TempDir(dir)
}

#[track_caller]
fn assert_reported(r: &Report, rule: &str, object: &str, contains: &str) {
    assert!(
        r.findings
            .iter()
            .any(|f| f.rule == rule && f.object == object && f.message.contains(contains)),
        "expected [{rule}] {object}: …{contains}…\nfound:\n{}",
        r.listing()
    );
}

/// The files `module new` may touch, with their contents.
fn snapshot(root: &Path) -> Vec<(PathBuf, String)> {
    let mut out: Vec<(PathBuf, String)> = ["Cargo.toml", "Cargo.lock", "diesel.toml"]
        .iter()
        .map(|f| (PathBuf::from(f), std::fs::read_to_string(root.join(f)).unwrap()))
        .collect();
    let mut dirs: Vec<String> = std::fs::read_dir(root.join("migrations"))
        .unwrap()
        .chain(std::fs::read_dir(root.join("crates")).unwrap())
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    dirs.sort();
    out.push((PathBuf::from("dirs"), dirs.join("\n")));
    out
}

const FINDINGS: &str = "\
-- The scanner module's first table (written by the test, as a developer would):
-- as the migrator, handing what it creates to the module's owner.

CREATE TABLE scanner.findings (
    id          uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id   uuid        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    severity    text        NOT NULL,
    summary     text        NOT NULL,
    CONSTRAINT findings_pkey PRIMARY KEY (tenant_id, id),
    CONSTRAINT findings_severity_check CHECK (severity IN ('low', 'medium', 'high', 'critical'))
);

CREATE TRIGGER set_updated_at BEFORE UPDATE ON scanner.findings
    FOR EACH ROW EXECUTE FUNCTION scanner_app.set_updated_at();

CREATE SEQUENCE scanner.scan_numbers;

GRANT SELECT, INSERT, UPDATE, DELETE ON scanner.findings TO scanner_app;
GRANT USAGE ON SEQUENCE scanner.scan_numbers TO scanner_app;

ALTER TABLE scanner.findings OWNER TO scanner_owner;
ALTER SEQUENCE scanner.scan_numbers OWNER TO scanner_owner;
";

const FINDINGS_DOWN: &str = "\
DROP SEQUENCE scanner.scan_numbers;
DROP TABLE scanner.findings;
";

/// Every migration of the new module reverts exactly with its down.sql and
/// re-applies to the same schema.
fn new_module_migrations_revert(server: &Server, root: &Path) {
    let name = format!("attestor_module_updown_{}", std::process::id());
    server.drop_database(&name).unwrap();
    server.create_database(&name, Some("template0")).unwrap();
    let url = server.admin(&name).url();
    let source = FileBasedMigrations::from_path(root.join("migrations")).unwrap();
    let mut conn = server.connect_migrator(&name).unwrap();
    let pg = attestor_testdb::PgBinaries::find().unwrap();
    let mut reverted = 0;
    loop {
        let before = pg.schema_dump(&url).unwrap();
        let Ok(version) = conn.run_next_migration(source.clone()) else {
            break;
        };
        let version = version.to_string();
        let ours = std::fs::read_dir(root.join("migrations")).unwrap().any(|e| {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            n.replace('-', "").starts_with(&version) && n.contains("scanner")
        });
        if !ours {
            continue;
        }
        let after_up = pg.schema_dump(&url).unwrap();
        conn.revert_last_migration(source.clone()).unwrap();
        assert_eq!(
            before,
            pg.schema_dump(&url).unwrap(),
            "down.sql of {version} does not revert its up.sql"
        );
        conn.run_next_migration(source.clone()).unwrap();
        assert_eq!(
            after_up,
            pg.schema_dump(&url).unwrap(),
            "re-running {version} after its down differs"
        );
        reverted += 1;
    }
    assert_eq!(
        reverted, 3,
        "the module's two migrations and the findings table's"
    );
    drop(conn);
    server.drop_database(&name).unwrap();
}

/// Revokes the planted membership when dropped (roles are cluster-wide).
struct Membership<'a>(&'a Server);

impl Drop for Membership<'_> {
    fn drop(&mut self) {
        let _ = self.0.execute_admin("REVOKE attestor_app FROM scanner_worker");
    }
}

#[test]
fn a_second_module_is_generated_migrated_verified_and_isolated() {
    let ws = copy_workspace();
    let root = ws.0.as_path();

    // Refused names change nothing.
    let before = snapshot(root);
    for (name, invalid) in [
        ("Scanner", true),
        ("select", true),
        ("attestor", false),
        ("attestor_app", false),
    ] {
        let e = new_module(root, name).unwrap_err();
        assert!(
            if invalid {
                matches!(e, ModuleError::InvalidName { .. })
            } else {
                matches!(e, ModuleError::Exists { .. })
            },
            "{name}: {e}"
        );
    }
    assert!(
        snapshot(root) == before,
        "a refused name leaves the workspace as it was"
    );

    // Scaffold.
    let made = new_module(root, "scanner").unwrap();
    let last_before = std::fs::read_dir(root.join("migrations"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.contains("scanner"))
        .max()
        .unwrap();
    assert!(
        made.migrations[0] > last_before,
        "{:?} after {last_before}",
        made.migrations
    );
    let diesel = std::fs::read_to_string(root.join("diesel.toml")).unwrap();
    assert!(diesel.contains(
        "[print_schema.scanner]\nschema = \"scanner\"\nfile = \"crates/scanner-schema/src/schema.rs\""
    ));
    let cargo = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(cargo.contains("\"crates/scanner-schema\","));
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap();
    assert!(
        lock.contains("name = \"scanner-schema\""),
        "Cargo.lock records the new member"
    );
    assert!(matches!(
        new_module(root, "scanner"),
        Err(ModuleError::Exists { .. })
    ));

    // The developer's own migration: a tenant table, after the module's.
    let [_, helpers] = &made.migrations;
    let version = helpers.split('_').next().unwrap();
    let (date, n) = version.rsplit_once('-').unwrap();
    let findings = root.join("migrations").join(format!(
        "{date}-{:06}_scanner_findings",
        n.parse::<u32>().unwrap() + 1
    ));
    std::fs::create_dir_all(&findings).unwrap();
    std::fs::write(findings.join("up.sql"), FINDINGS).unwrap();
    std::fs::write(findings.join("down.sql"), FINDINGS_DOWN).unwrap();

    let server = Server::from_env().unwrap();
    // Before gen-rls the new tenant table lacks its policies.
    assert_eq!(gen_rls::run_in(root, &server, true).unwrap(), 1);
    assert_eq!(gen_rls::run_in(root, &server, false).unwrap(), 0);
    assert_eq!(gen_rls::run_in(root, &server, true).unwrap(), 0);
    let rls = std::fs::read_dir(root.join("migrations"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let up = std::fs::read_to_string(rls.join("up.sql")).unwrap();
    // Its version is past DDL_AS_MIGRATOR_SINCE: it runs as the migrator.
    assert!(!up.contains("SET LOCAL ROLE"), "{up}");
    assert!(up.contains("\n-- module scanner\n"), "{up}");
    assert!(up.contains("ON scanner.findings"), "{up}");
    assert!(up.contains("TO scanner_app"), "{up}");
    assert!(up.contains("scanner_app.require_current_tenant()"), "{up}");

    // Its schema crate is generated, and under the drift check.
    assert_eq!(
        schema::run_in(root, &server, false).unwrap(),
        std::process::ExitCode::SUCCESS
    );
    let generated = std::fs::read_to_string(root.join("crates/scanner-schema/src/schema.rs")).unwrap();
    assert!(
        generated.contains("scanner.findings (tenant_id, id) {"),
        "{generated}"
    );
    assert!(
        !generated.contains("attestor"),
        "only the scanner schema: {generated}"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("crates/attestor-schema/src/schema.rs")).unwrap(),
        std::fs::read_to_string(xtask::util::root().join("crates/attestor-schema/src/schema.rs")).unwrap(),
        "attestor's generated schema is untouched by the second module"
    );
    assert_eq!(
        schema::run_in(root, &server, true).unwrap(),
        std::process::ExitCode::SUCCESS
    );
    std::fs::write(
        root.join("crates/scanner-schema/src/schema.rs"),
        generated.replace("severity -> Text", "severity -> Int4"),
    )
    .unwrap();
    assert_ne!(
        schema::run_in(root, &server, true).unwrap(),
        std::process::ExitCode::SUCCESS,
        "a hand edit of the new module's generated file is drift"
    );

    // Both modules verify clean, each from its own login roles.
    let report = verify_rls::embedded_in(root, &server, true).unwrap();
    assert!(report.is_clean(), "findings:\n{}", report.listing());
    assert_eq!(report.modules, ["attestor", "scanner"]);
    for role in ["attestor_app", "attestor_worker", "scanner_app", "scanner_worker"] {
        assert!(
            report
                .sessions
                .iter()
                .any(|s| s.starts_with(&format!("{role}: login session"))),
            "{role} logs in: {:?}",
            report.sessions
        );
        let proofs = &report.proofs[&format!("role {role}")];
        for probe in ["TD018", "TD020", "TD021", "TD022", "TD024", "TD025"] {
            assert!(proofs.contains(&probe), "{role}: {probe} passed: {proofs:?}");
        }
    }
    // attestor has no sequence; scanner's is tried from attestor's roles.
    assert!(report.proofs["role attestor_app"].contains(&"TD023"));
    for probe in ["TD002", "TD007", "TD011", "TD016", "TD017"] {
        assert!(report.proofs["scanner.findings"].contains(&probe), "{probe}");
    }

    new_module_migrations_revert(&server, root);

    // The two modules' roles, schemas and helpers are alike, name for name.
    let db = scratch_database_in(&server, "module_alike", root).unwrap();
    let mut admin = Db::connect(&server.admin(&db).url()).unwrap();
    let shape = |admin: &mut Db, m: &str| -> String {
        admin
            .text(&format!(
                "SELECT replace(concat_ws(' | ',
                    (SELECT string_agg(concat_ws(',', rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb,
                                                 rolcanlogin, rolreplication, rolbypassrls), ';' ORDER BY rolname)
                       FROM pg_roles WHERE rolname IN ('{m}_owner', '{m}_app', '{m}_worker')),
                    (SELECT string_agg(nspname || ':' || pg_get_userbyid(nspowner) || ':' || nspacl::text, ';' ORDER BY nspname)
                       FROM pg_namespace WHERE nspname IN ('{m}', '{m}_app')),
                    (SELECT string_agg(concat_ws(',', p.proname, p.provolatile, p.prosecdef, p.proparallel,
                                                 p.proconfig::text, p.proacl::text,
                                                 pg_get_userbyid(p.proowner)), ';' ORDER BY p.proname)
                       FROM pg_proc p WHERE p.pronamespace = '{m}_app'::regnamespace
                        AND p.proname NOT IN ('audit_row', 'notify_queue')),
                    (SELECT has_database_privilege('{m}_app', current_database(), 'CONNECT')
                        AND has_database_privilege('{m}_worker', current_database(), 'CONNECT'))::text,
                    (SELECT defaclacl::text FROM pg_default_acl WHERE defaclrole = '{m}_owner'::regrole)),
                  '{m}', 'M') AS v"
            ))
            .unwrap()
            .unwrap()
    };
    let (a, s) = (shape(&mut admin, "attestor"), shape(&mut admin, "scanner"));
    assert_eq!(
        a, s,
        "scanner's roles, schemas and helpers are attestor's, renamed"
    );
    if server.citus().is_some() {
        // On a coordinator the distribution step found the second module by
        // its schema and roles: its table is hash-distributed by tenant_id,
        // in attestor's colocation group, so a tenant's rows of both
        // modules share a node.
        let placed = admin
            .text(
                "SELECT string_agg(DISTINCT concat_ws(':', d.partmethod,
                            column_to_column_name(d.logicalrelid, d.partkey), d.colocationid), ',') AS v
                   FROM pg_dist_partition d JOIN pg_class c ON c.oid = d.logicalrelid
                  WHERE c.relnamespace IN ('attestor'::regnamespace, 'scanner'::regnamespace)",
            )
            .unwrap()
            .unwrap_or_default();
        assert!(
            placed.starts_with("h:tenant_id:") && !placed.contains(','),
            "one colocation group, by tenant_id: {placed}"
        );
        let findings = admin
            .text(
                "SELECT count(*)::text AS v FROM pg_dist_partition \
                  WHERE logicalrelid = 'scanner.findings'::regclass",
            )
            .unwrap();
        assert_eq!(findings.as_deref(), Some("1"), "scanner.findings is distributed");
    }

    // Plant a cross-module grant: reported by the catalog rule and by the probes.
    let options = VerifyOptions {
        modules: rls_modules_in(root).unwrap(),
        config: Config::load(&root.join("rls.toml")).unwrap(),
        dynamic: true,
    };
    admin
        .exec(
            "GRANT USAGE, CREATE ON SCHEMA scanner TO attestor_app;
             GRANT SELECT ON scanner.findings TO attestor_app;
             GRANT USAGE ON SEQUENCE scanner.scan_numbers TO attestor_app;
             GRANT USAGE ON SCHEMA scanner_app TO attestor_app;
             GRANT EXECUTE ON FUNCTION scanner_app.current_actor() TO attestor_app;",
        )
        .unwrap();
    let r = attestor_rls::cli::verify_on(&server, &db, &options).unwrap();
    assert_reported(
        &r,
        "TI017",
        "role attestor_app",
        "holds USAGE, CREATE on schema scanner outside module attestor",
    );
    assert_reported(
        &r,
        "TI017",
        "role attestor_app",
        "holds SELECT on scanner.findings outside module attestor",
    );
    assert_reported(
        &r,
        "TI017",
        "role attestor_app",
        "holds USAGE on sequence scanner.scan_numbers",
    );
    assert_reported(
        &r,
        "TD020",
        "role attestor_app",
        "a name look-up in schema scanner (USAGE) succeeded",
    );
    assert_reported(
        &r,
        "TD021",
        "role attestor_app",
        "SELECT on scanner.findings succeeded",
    );
    assert_reported(
        &r,
        "TD023",
        "role attestor_app",
        "currval of scanner.scan_numbers failed with 55000",
    );
    assert!(
        r.findings.iter().all(|f| f.object == "role attestor_app"),
        "only attestor_app's reach is reported:\n{}",
        r.listing()
    );
    // The grant opens no rows: scanner's policies name scanner_app only.
    assert!(
        r.proofs["role attestor_app"].contains(&"TD025"),
        "{:?}",
        r.proofs["role attestor_app"]
    );
    // …until a policy names attestor_app too.
    admin
        .exec(
            "CREATE POLICY findings_leak ON scanner.findings FOR SELECT TO attestor_app
                 USING (tenant_id = attestor_app.require_current_tenant());",
        )
        .unwrap();
    let r = attestor_rls::cli::verify_on(&server, &db, &options).unwrap();
    assert_reported(
        &r,
        "TI002",
        "scanner.findings",
        "undeclared permissive policy findings_leak",
    );
    if server.citus().is_some() {
        // A coordinator refuses the read of a placement another user wrote
        // in the same transaction: the rows half is not run (never passed),
        // and the verdict is not clean.
        let n = r
            .not_run
            .iter()
            .find(|n| n.rule == "TD025" && n.object == "role attestor_app")
            .unwrap_or_else(|| panic!("TD025 not run:\n{}", r.listing()));
        assert!(
            n.reason.contains("cannot be read as attestor_app"),
            "{}",
            n.reason
        );
        assert!(!r.proofs["role attestor_app"].contains(&"TD025"));
    } else {
        assert_reported(
            &r,
            "TD025",
            "role attestor_app",
            "in the context of a tenant with a row in scanner.findings, SELECT succeeded (1 rows)",
        );
    }
    // On its own: a coordinator refuses DDL on a distributed table among
    // several commands of one query string.
    admin
        .exec("DROP POLICY findings_leak ON scanner.findings")
        .unwrap();
    admin
        .exec(
            "REVOKE USAGE, CREATE ON SCHEMA scanner FROM attestor_app;
             REVOKE USAGE ON SCHEMA scanner_app FROM attestor_app;
             REVOKE EXECUTE ON FUNCTION scanner_app.current_actor() FROM attestor_app;
             REVOKE SELECT ON scanner.findings FROM attestor_app;
             REVOKE USAGE ON SEQUENCE scanner.scan_numbers FROM attestor_app;",
        )
        .unwrap();

    // Plant a cross-module membership, the other way round.
    let _undo = Membership(&server);
    server
        .execute_admin("GRANT attestor_app TO scanner_worker")
        .unwrap();
    let r = attestor_rls::cli::verify_on(&server, &db, &options).unwrap();
    assert_reported(
        &r,
        "TI017",
        "role scanner_worker",
        "is a member of attestor_app, a role of another module than scanner",
    );
    assert_reported(
        &r,
        "TD024",
        "role scanner_worker",
        "SET ROLE attestor_app succeeded",
    );
    server
        .execute_admin("REVOKE attestor_app FROM scanner_worker")
        .unwrap();
    let r = attestor_rls::cli::verify_on(&server, &db, &options).unwrap();
    assert!(r.is_clean(), "clean again once revoked:\n{}", r.listing());
    drop(admin);
    server.drop_database(&db).unwrap();
}
