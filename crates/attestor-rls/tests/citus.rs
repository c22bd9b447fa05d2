//! verify-rls on a Citus coordinator (rule TI026 `citus-distribution`): each
//! flaw is planted in a clone of the distributed template, and the rule must
//! name it. The Citus lane (`cargo xtask citus test`) runs this file against
//! a coordinator with two workers; on plain PostgreSQL (every other run) the
//! same tests assert that the rule examines nothing there and that the
//! flaws that need Citus cannot be planted at all.

mod common;

use attestor_rls::db::Db;
use attestor_rls::Report;
use attestor_testdb::{shared, ConnParams};
use common::*;

/// A fresh tenant table of the module, RLS and policy like the generated
/// ones, not distributed.
const EXTRA: &str = "SET ROLE attestor_owner;
CREATE TABLE attestor.extra (
    tenant_id uuid NOT NULL, id uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id));
ALTER TABLE attestor.extra ENABLE ROW LEVEL SECURITY;
ALTER TABLE attestor.extra FORCE ROW LEVEL SECURITY;
RESET ROLE;";

fn on_citus() -> bool {
    shared().citus().is_some()
}

fn ti026(r: &Report) -> Vec<String> {
    r.findings_of("TI026")
        .map(|f| format!("{}: {}", f.object, f.message))
        .collect()
}

fn examined_by_ti026(r: &Report) -> usize {
    r.examined
        .values()
        .filter(|rules| rules.contains("TI026"))
        .count()
}

/// Plants `flaw` (SQL on the coordinator as the superuser), verifies, and
/// returns the report. On plain PostgreSQL a flaw calling Citus' functions
/// must fail to plant; `None` then.
fn planted(flaw: &str) -> Option<Report> {
    let server = shared();
    let db = server.test_database().unwrap();
    let result = Db::connect(&db.admin_url()).unwrap().exec(flaw);
    if !on_citus() && flaw.contains("_table(") {
        let err = result.expect_err("Citus' functions do not exist on plain PostgreSQL");
        assert!(err.to_string().contains("does not exist"), "{err}");
        return None;
    }
    result.unwrap();
    Some(verify_as_operator(db.server(), db.name(), ""))
}

#[track_caller]
fn assert_ti026(r: &Report, object: &str, needle: &str) {
    assert!(
        r.findings_of("TI026")
            .any(|f| f.object == object && f.message.contains(needle) && !f.fix.is_empty()),
        "expected [TI026] {object}: …{needle}…\nfound:\n{}",
        show(r)
    );
}

#[test]
fn the_distributed_schema_passes_and_every_table_role_and_placement_is_examined() {
    let r = verify_flawed("", "");
    assert!(ti026(&r).is_empty(), "{}", show(&r));
    if on_citus() {
        // 8 tables and the module's 3 roles.
        assert_eq!(examined_by_ti026(&r), 11, "{}", show(&r));
        assert!(
            r.to_human().contains("TI026 citus-distribution"),
            "{}",
            r.to_human()
        );
    } else {
        assert_eq!(examined_by_ti026(&r), 0, "nothing to examine without Citus");
    }
}

#[test]
fn flaw_tenant_table_left_local() {
    let r = planted(EXTRA).unwrap();
    if on_citus() {
        assert_ti026(&r, "attestor.extra", "tenant table left local");
        assert_eq!(ti026(&r).len(), 1, "{}", show(&r));
    } else {
        assert!(ti026(&r).is_empty());
    }
}

#[test]
fn flaw_tenant_table_in_another_colocation_group() {
    let flaw = format!(
        "{EXTRA} SELECT create_distributed_table('attestor.extra', 'tenant_id', colocate_with => 'none');"
    );
    if let Some(r) = planted(&flaw) {
        assert_ti026(&r, "attestor.extra", "in colocation group");
        assert_eq!(ti026(&r).len(), 1, "{}", show(&r));
    }
}

#[test]
fn flaw_tenant_data_in_a_reference_table() {
    if let Some(r) = planted(&format!(
        "{EXTRA} SELECT create_reference_table('attestor.extra');"
    )) {
        assert_ti026(&r, "attestor.extra", "tenant data in a reference table");
    }
}

#[test]
fn flaw_tenant_table_distributed_by_another_column() {
    let flaw = format!("{EXTRA} SELECT create_distributed_table('attestor.extra', 'id');");
    if let Some(r) = planted(&flaw) {
        assert_ti026(&r, "attestor.extra", "distributed by id, not tenant_id");
    }
}

/// A superuser connection to the worker holding one placement of `table`
/// in `database`, and that shard's qualified name.
fn a_placement(admin: &ConnParams, table: &str) -> (ConnParams, String) {
    let mut coordinator = Db::connect(&admin.url()).unwrap();
    let row = coordinator
        .text(&format!(
            "SELECT s.nodename || ' ' || s.nodeport || ' ' || s.shard_name AS v FROM citus_shards s \
              WHERE s.table_name = '{table}'::regclass ORDER BY s.shardid LIMIT 1"
        ))
        .unwrap()
        .unwrap();
    let mut parts = row.splitn(3, ' ');
    let (host, port, shard) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let worker = ConnParams {
        host: host.to_owned(),
        port: port.parse().unwrap(),
        ..admin.clone()
    };
    (worker, shard.to_owned())
}

/// Changes one shard placement of `attestor.spines` directly on its worker
/// (`change` gets the shard's qualified name), then verifies.
fn with_one_shard_changed(change: impl Fn(&str) -> String) -> Option<Report> {
    if !on_citus() {
        return None;
    }
    let server = shared();
    let db = server.test_database().unwrap();
    let admin = ConnParams::parse(&db.admin_url()).unwrap();
    let (worker, shard) = a_placement(&admin, "attestor.spines");
    Db::connect(&worker.url()).unwrap().exec(&change(&shard)).unwrap();
    Some(verify_as_operator(db.server(), db.name(), ""))
}

#[test]
fn flaw_a_shard_without_forced_rls() {
    match with_one_shard_changed(|s| format!("ALTER TABLE {s} NO FORCE ROW LEVEL SECURITY")) {
        Some(r) => {
            assert_ti026(
                &r,
                "attestor.spines",
                "1 of 32 shard placements do not carry the coordinator's RLS",
            );
            assert_ti026(&r, "attestor.spines", "\"force\" : false");
        }
        None => assert!(!on_citus()),
    }
}

#[test]
fn flaw_a_shard_without_its_policy() {
    match with_one_shard_changed(|s| {
        let policy = "spines_tenant_isolation";
        // Citus names a shard's policy like the table's, with the shard id.
        format!(
            "DO $$ DECLARE p text; BEGIN SELECT polname INTO STRICT p FROM pg_policy \
              WHERE polrelid = '{s}'::regclass AND polname LIKE '{policy}%'; \
              EXECUTE format('DROP POLICY %I ON {s}', p); END $$"
        )
    }) {
        Some(r) => assert_ti026(&r, "attestor.spines", "\"policies\" : []"),
        None => assert!(!on_citus()),
    }
}

#[test]
fn flaw_the_owner_may_log_in_on_a_worker() {
    let Some(nodes) = shared().citus() else {
        return assert!(ti026(&verify_flawed("", "")).is_empty());
    };
    let _roles = roles_write();
    let worker = nodes.workers[0].params(&shared().admin("postgres"));
    let mut w = Db::connect(&worker.url()).unwrap();
    w.exec("SET citus.enable_ddl_propagation = off; ALTER ROLE attestor_owner LOGIN")
        .unwrap();
    let r = {
        let server = shared();
        let db = server.test_database().unwrap();
        let target = attestor_rls::Target {
            app_url: Some(server.role("attestor_app", db.name()).url()),
            worker_url: Some(server.role("attestor_worker", db.name()).url()),
            owner_url: Some(server.admin(db.name()).url()),
        };
        attestor_rls::verify_target(&target, &options(""))
    };
    w.exec("ALTER ROLE attestor_owner NOLOGIN").unwrap();
    let r = r.unwrap();
    assert_ti026(&r, "attestor_owner", "role differs on 1 of 2 workers");
    assert_ti026(&r, "attestor_owner", "\"login\" : true");
}

/// Each flaw makes `attestor.extra` a table Citus cannot distribute with the
/// module; TI018 must name it (on any server), and on a coordinator Citus
/// must refuse to distribute it, so readiness never passes what the
/// distribution step would fail on.
const UNDISTRIBUTABLE: &[(&str, &str, &str)] = &[
    (
        "primary key without tenant_id",
        "CREATE TABLE attestor.extra (tenant_id uuid NOT NULL, id uuid PRIMARY KEY)",
        "primary key extra_pkey does not include the distribution column tenant_id",
    ),
    (
        "unique index without tenant_id",
        "CREATE TABLE attestor.extra (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));
         CREATE UNIQUE INDEX extra_id ON attestor.extra (id)",
        "unique index extra_id does not include the distribution column tenant_id",
    ),
    (
        "foreign key not on tenant_id → tenant_id",
        "CREATE TABLE attestor.extra (tenant_id uuid NOT NULL, id uuid NOT NULL, env uuid NOT NULL,
             PRIMARY KEY (tenant_id, id),
             CONSTRAINT extra_env FOREIGN KEY (env, tenant_id) REFERENCES attestor.dsse_envelopes (tenant_id, id))",
        "foreign key extra_env is not co-located",
    ),
    (
        "policy with a sub-query",
        "CREATE TABLE attestor.extra (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));
         ALTER TABLE attestor.extra ENABLE ROW LEVEL SECURITY;
         CREATE POLICY extra_subselect ON attestor.extra TO attestor_app
             USING (tenant_id = (SELECT attestor_app.require_current_tenant()))",
        "policy extra_subselect has a sub-query",
    ),
    (
        "foreign key ON DELETE SET NULL",
        "CREATE TABLE attestor.extra (tenant_id uuid NOT NULL, id uuid NOT NULL, env uuid,
             PRIMARY KEY (tenant_id, id),
             CONSTRAINT extra_env FOREIGN KEY (tenant_id, env) REFERENCES attestor.dsse_envelopes (tenant_id, id)
                 ON DELETE SET NULL)",
        "foreign key extra_env on tenant_id has ON DELETE SET NULL",
    ),
    (
        "foreign key to a table outside the module",
        "CREATE TABLE public.outside (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));
         CREATE TABLE attestor.extra (tenant_id uuid NOT NULL, id uuid NOT NULL, o uuid NOT NULL,
             PRIMARY KEY (tenant_id, id),
             CONSTRAINT extra_outside FOREIGN KEY (tenant_id, o) REFERENCES public.outside (tenant_id, id))",
        "foreign key extra_outside points at outside, outside the module",
    ),
    (
        "tenant_id of another type",
        "CREATE TABLE attestor.extra (tenant_id text NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id))",
        "tenant_id is text, the module's other tenant tables have uuid",
    ),
    (
        "table inheritance",
        "CREATE TABLE attestor.extra_parent (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id));
         CREATE TABLE attestor.extra (PRIMARY KEY (tenant_id, id)) INHERITS (attestor.extra_parent)",
        "inherits from attestor.extra_parent (table inheritance)",
    ),
];

#[test]
fn readiness_fails_on_every_schema_citus_refuses_to_distribute() {
    for (what, flaw, message) in UNDISTRIBUTABLE {
        let server = shared();
        let db = server.test_database().unwrap();
        let mut admin = Db::connect(&db.admin_url()).unwrap();
        admin.exec(flaw).unwrap();
        let r = verify_as_operator(db.server(), db.name(), "");
        assert!(
            r.findings_of("TI018")
                .any(|f| f.object == "attestor.extra" && f.message.contains(message) && !f.fix.is_empty()),
            "{what}: expected [TI018] attestor.extra: …{message}…\nfound:\n{}",
            show(&r)
        );
        if on_citus() {
            // What the distribution step would do with it.
            let refused = admin.exec(
                "BEGIN; SET LOCAL citus.enable_unsafe_triggers = on;
                 SELECT create_distributed_table('attestor.extra', 'tenant_id', colocate_with => 'attestor.dsse_envelopes');
                 COMMIT;",
            );
            let _ = admin.exec("ROLLBACK");
            assert!(
                refused.is_err(),
                "{what}: Citus distributed it, so TI018 is wrong to fail it"
            );
        }
    }
}

#[test]
fn readiness_passes_the_module_and_citus_distributes_a_table_it_passes() {
    let server = shared();
    let db = server.test_database().unwrap();
    let mut admin = Db::connect(&db.admin_url()).unwrap();
    admin.exec(EXTRA).unwrap();
    let r = verify_as_operator(db.server(), db.name(), "");
    assert_eq!(r.findings_of("TI018").count(), 0, "{}", show(&r));
    if on_citus() {
        admin
            .exec("SELECT create_distributed_table('attestor.extra', 'tenant_id', colocate_with => 'attestor.dsse_envelopes')")
            .unwrap();
    }
}

/// Row-Level Security disabled on every shard placement of
/// `attestor.trust_anchors`, directly on the workers (the coordinator's
/// table still shows it enabled and forced): TI026 names the placements,
/// and the dynamic proof, whose statements from the app's login session run
/// on the shards, sees B read A's row there.
#[test]
fn flaw_rls_disabled_on_every_shard_and_the_proof_sees_the_leak() {
    if !on_citus() {
        // Nothing to plant: without Citus there are no placements.
        let err = Db::connect(&shared().test_database().unwrap().admin_url())
            .unwrap()
            .exec("SELECT run_command_on_placements('attestor.trust_anchors', 'SELECT 1')")
            .expect_err("run_command_on_placements exists only with Citus");
        return assert!(err.to_string().contains("does not exist"), "{err}");
    }
    let r = planted(
        "SELECT count(*) FROM run_command_on_placements('attestor.trust_anchors', \
           'ALTER TABLE %s DISABLE ROW LEVEL SECURITY') WHERE success",
    )
    .unwrap();
    assert_ti026(
        &r,
        "attestor.trust_anchors",
        "32 of 32 shard placements do not carry the coordinator's RLS",
    );
    assert!(
        r.findings_of("TD002")
            .any(|f| f.object == "attestor.trust_anchors"
                && f.message == "A's rows are invisible to B: succeeded (1 rows)"),
        "the proof must see B read A's row on the shards:\n{}",
        show(&r)
    );
}
