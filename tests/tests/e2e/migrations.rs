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

/// The evidence backstop on `rekor_entries`: migrating a database that holds
/// a legacy row (stored without a signature check, both columns NULL) keeps
/// that row readable; from then on no row without the verifying key and
/// the evidence can be inserted, and the legacy row can only be updated into
/// a verified one.
#[test]
fn rekor_entries_require_evidence_and_legacy_rows_survive_the_migration() {
    use diesel::connection::SimpleConnection as _;
    const EVIDENCE: &str = "2026-12-03-400001_rekor_entries_evidence_required";
    let server = shared();
    let name = format!("attestor_legacy_{}", std::process::id());
    server.create_database(&name, Some("template0")).unwrap();
    let mut conn = server.connect_migrator(&name).unwrap();
    {
        let _lock = attestor_testdb::server::migration_lock();
        loop {
            let pending = conn.pending_migrations(attestor_schema::MIGRATIONS).unwrap();
            let next = pending
                .first()
                .expect("the evidence migration is pending")
                .name()
                .to_string();
            if next == EVIDENCE {
                break;
            }
            conn.run_next_migration(attestor_schema::MIGRATIONS).unwrap();
        }
    }
    let tenant = "6f1d8a52-3c1e-4b7a-9d2f-0a1b2c3d4e5f";
    let insert = |log_index: i64, verified: bool| {
        let cols = if verified {
            ", verified_key_sha256, evidence"
        } else {
            ""
        };
        let vals = if verified {
            ", sha256('key'::bytea), 'set+checkpoint'"
        } else {
            ""
        };
        format!(
            "INSERT INTO attestor.rekor_entries
                 (tenant_id, log_id, log_index, kind, kind_version, canonical_body, leaf_hash{cols})
             VALUES ('{tenant}', 'aa', {log_index}, 'dsse', '0.0.1', '\\x7b7d',
                     sha256('\\x00'::bytea || '\\x7b7d'::bytea){vals})"
        )
    };
    let legacy_count = "SELECT count(*) AS n FROM attestor.rekor_entries WHERE verified_key_sha256 IS NULL";
    // Before: the queue could store an unverified row.
    conn.batch_execute(&insert(1, false)).unwrap();
    conn.run_next_migration(attestor_schema::MIGRATIONS).unwrap();
    assert_eq!(count(&mut conn, legacy_count), 1, "the legacy row is kept");
    // After: no unverified row gets in, whoever writes it.
    let err = conn.batch_execute(&insert(2, false)).unwrap_err().to_string();
    assert!(err.contains("rekor_entries_evidence_required_check"), "{err}");
    let err = conn
        .batch_execute("UPDATE attestor.rekor_entries SET kind = 'intoto' WHERE log_index = 1")
        .unwrap_err()
        .to_string();
    assert!(err.contains("rekor_entries_evidence_required_check"), "{err}");
    let err = conn
        .batch_execute(
            "UPDATE attestor.rekor_entries SET verified_key_sha256 = '\\x00'::bytea, evidence = 'checkpoint'
              WHERE log_index = 1",
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("rekor_entries_evidence_required_check"), "{err}");
    conn.batch_execute(&insert(3, true)).unwrap();
    // Re-verified, the legacy row becomes an ordinary row, and then the
    // constraint holds for the whole table.
    conn.batch_execute(
        "UPDATE attestor.rekor_entries SET verified_key_sha256 = sha256('key'::bytea), evidence = 'checkpoint'
          WHERE log_index = 1;
         ALTER TABLE attestor.rekor_entries VALIDATE CONSTRAINT rekor_entries_evidence_required_check",
    )
    .unwrap();
    assert_eq!(count(&mut conn, legacy_count), 0);
    drop(conn);
    server.drop_database(&name).unwrap();
}

fn count(conn: &mut diesel::PgConnection, sql: &str) -> i64 {
    use diesel::RunQueryDsl as _;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query(sql).get_result::<N>(conn).unwrap().n
}
