//! Migrations: a fresh database migrates, and every `down.sql` really reverts
//! its `up.sql` (schema-only dumps compared before and after).

use attestor_testdb::{shared, PgBinaries};
use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel_migrations::MigrationHarness;

fn dump(url: &str) -> String {
    PgBinaries::find().unwrap().schema_dump(url).unwrap()
}

#[test]
fn a_fresh_database_runs_every_migration() {
    let server = shared();
    let name = format!("attestor_fresh_{}", std::process::id());
    server.create_database(&name, Some("template0")).unwrap();
    let ran = server.migrate(&name, attestor_schema::MIGRATIONS).unwrap();
    let all = MigrationSource::<Pg>::migrations(&attestor_schema::MIGRATIONS).unwrap();
    assert_eq!(ran.len(), all.len(), "every migration ran once");
    assert!(
        server
            .migrate(&name, attestor_schema::MIGRATIONS)
            .unwrap()
            .is_empty(),
        "second run is a no-op"
    );
    server.drop_database(&name).unwrap();
}

#[test]
fn every_down_reverts_its_up() {
    let server = shared();
    let name = format!("attestor_updown_{}", std::process::id());
    server.create_database(&name, Some("template0")).unwrap();
    let url = server.admin(&name).url();
    // On a Citus coordinator, set up the way `Server::migrate` runs them.
    let mut conn = server.connect_migrator(&name).unwrap();
    // Migration 1 touches cluster-wide roles: not while another test migrates.
    let _lock = attestor_testdb::server::migration_lock();
    let total = MigrationSource::<Pg>::migrations(&attestor_schema::MIGRATIONS)
        .unwrap()
        .len();
    assert!(total >= 3);
    // Creates diesel's bookkeeping table, so it is in every dump below.
    assert!(conn.applied_migrations().unwrap().is_empty());
    for _ in 0..total {
        let before = dump(&url);
        let version = conn
            .run_next_migration(attestor_schema::MIGRATIONS)
            .unwrap()
            .to_string();
        let after_up = dump(&url);
        assert_ne!(before, after_up, "migration {version} changes the schema");
        conn.revert_last_migration(attestor_schema::MIGRATIONS).unwrap();
        let after_down = dump(&url);
        assert_eq!(
            before, after_down,
            "down.sql of {version} does not revert its up.sql"
        );
        // Re-apply, and the result is the same as the first time.
        conn.run_next_migration(attestor_schema::MIGRATIONS).unwrap();
        assert_eq!(
            after_up,
            dump(&url),
            "re-running {version} after its down differs"
        );
    }
    drop(conn);
    server.drop_database(&name).unwrap();
}
