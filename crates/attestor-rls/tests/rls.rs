//! gen-rls and verify-rls against real databases.
//!
//! * the project's schema verifies clean (the `#[test]` twin of
//!   `cargo xtask verify-rls`) and gen-rls --check passes on it;
//! * a corpus of deliberately broken schemas, one flaw each (applied as SQL
//!   to a database cloned from the migrated template), each asserting the
//!   exact finding by rule id, at least one per rule family;
//! * a new tenant table added by a migration is caught by gen-rls --check,
//!   and the migration gen-rls writes makes verify-rls pass.
//!
//! Flaws are applied as the superuser (setup only). Flaws that would change
//! cluster-wide state (role attributes) are avoided; the one that needs a
//! role creates a uniquely named one and drops it again.

use std::path::{Path, PathBuf};
use std::time::Instant;

use attestor_rls::db::Db;
use attestor_rls::generate::{self, GenInputs};
use attestor_rls::{self as rls, Report};
use attestor_testdb::shared;

mod common;
use common::*;

/// Whether the tests run against a Citus coordinator (the Citus lane, with
/// `DATABASE_URL` at the coordinator): every test database is then
/// distributed like the project's.
fn on_citus() -> bool {
    shared().citus().is_some()
}

/// On a Citus coordinator, in a fresh database: every statement of `steps`
/// but the last succeeds, and Citus refuses the last. Returns its message.
#[track_caller]
fn citus_refuses(steps: &[&str]) -> String {
    assert!(on_citus(), "only a Citus coordinator refuses these");
    let db = shared().test_database().unwrap();
    let mut admin = Db::connect(&db.admin_url()).unwrap();
    let (last, before) = steps.split_last().expect("a statement");
    for step in before {
        admin.exec(step).unwrap();
    }
    match admin.exec(last) {
        Ok(()) => panic!("Citus accepted {last}"),
        Err(e) => e.server_message(),
    }
}

/// `generate::plan` on the shared server. It makes its databases from
/// `template0`, which on a Citus coordinator registers the nodes
/// (`citus_add_node`, which copies the cluster's roles to each): it holds
/// [`CLUSTER_ROLES`] for reading, so that no role is created or dropped
/// meanwhile (`citus_add_node` has failed intermittently beside the role
/// tests with "failure on connection marked as essential").
fn gen_plan(inputs: &GenInputs) -> Vec<generate::Drift> {
    let _roles = roles_read();
    generate::plan(shared(), inputs).unwrap()
}

// --- the clean project schema ---------------------------------------------------

#[test]
fn project_schema_verifies_clean() {
    let server = shared();
    let db = server.test_database().unwrap();
    let started = Instant::now();
    let report = verify_as_operator(server, db.name(), "");
    let elapsed = started.elapsed();
    assert!(
        report.is_clean(),
        "findings on the project schema:\n{}",
        show(&report)
    );
    let tables: Vec<_> = report
        .proofs
        .iter()
        .filter(|(k, _)| k.starts_with("attestor."))
        .collect();
    assert_eq!(
        tables.len(),
        8,
        "every tenant table is proven: {:?}",
        report.proofs.keys()
    );
    for (table, proofs) in tables {
        assert!(proofs.len() >= 15, "{table}: only {proofs:?}");
    }
    for role in ["role attestor_app", "role attestor_worker"] {
        assert_eq!(
            report.proofs.get(role).map(Vec::as_slice),
            Some(&["TD018"][..]),
            "{role}"
        );
    }
    assert!(report.not_run.is_empty(), "{}", show(&report));
    // Speed is measured by `cargo xtask verify-rls` (it prints the time), not here.
    eprintln!("verify-rls took {elapsed:?}");
    // It leaves nothing behind.
    let mut admin = Db::connect(&db.admin_url()).unwrap();
    let rows = admin
        .text(
            "SELECT ((SELECT count(*) FROM attestor.dsse_envelopes) + (SELECT count(*) FROM attestor.audit_log))::text AS v",
        )
        .unwrap();
    assert_eq!(rows.as_deref(), Some("0"));
    let human = report.to_human();
    assert!(human.contains("clean: 0 findings"), "{human}");
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["findings"].as_array().unwrap().len(), 0);
}

#[test]
fn gen_rls_check_passes_on_the_project() {
    let inputs = GenInputs {
        migrations: root().join("migrations"),
        config_path: workspace_config_path(),
        modules: workspace_modules(),
    };
    let drifts = gen_plan(&inputs);
    assert!(
        drifts.is_empty(),
        "gen-rls --check fails on the project: {:?}",
        drifts
            .iter()
            .map(|d| (&d.migration, &d.tables))
            .collect::<Vec<_>>()
    );
}

// --- check 1 --------------------------------------------------------------------

#[test]
fn flaw_rls_not_forced() {
    let r = verify_flawed("ALTER TABLE attestor.spines NO FORCE ROW LEVEL SECURITY", "");
    assert_finding(
        &r,
        "TI001",
        "attestor.spines",
        "row level security is not forced (the owner bypasses it)",
    );
    assert_only(&r, &["TI001"]);
}

#[test]
fn flaw_rls_disabled_leaks_and_the_proof_sees_it() {
    let r = verify_flawed(
        "ALTER TABLE attestor.trust_anchors DISABLE ROW LEVEL SECURITY",
        "",
    );
    assert_finding(
        &r,
        "TI001",
        "attestor.trust_anchors",
        "row level security is not enabled",
    );
    assert_finding(
        &r,
        "TD002",
        "attestor.trust_anchors",
        "A's rows are invisible to B: succeeded (1 rows)",
    );
    assert_only(&r, &["TI001", "TD"]);
}

// --- check 2 --------------------------------------------------------------------

#[test]
fn flaw_policy_missing() {
    let r = verify_flawed(
        "DROP POLICY sbom_entries_tenant_isolation ON attestor.sbom_entries",
        "",
    );
    assert_finding(
        &r,
        "TI002",
        "attestor.sbom_entries",
        "policy sbom_entries_tenant_isolation is missing",
    );
    if on_citus() {
        // The proof sees it too, as the rows it cannot write: on a Citus
        // coordinator the owner session writes them as the app (see
        // `dynamic::run`), and the table is deny-all for the app.
        assert_finding_starts(
            &r,
            "TD001",
            "attestor.sbom_entries",
            "cannot fill the table with valid rows, so isolation is unproven: INSERT failed: new row violates \
             row-level security policy for table \"sbom_entries_",
        );
    } else {
        // The proof sees it too: B cannot even see its own row.
        assert_finding_starts(&r, "TD004", "attestor.sbom_entries", "B sees its own row: ");
    }
    assert_only(&r, &["TI002", "TD"]);
}

#[test]
fn flaw_extra_permissive_policy() {
    let r = verify_flawed(
        "CREATE POLICY peek ON attestor.dsse_envelopes FOR SELECT TO attestor_app USING (true)",
        "",
    );
    assert_finding(
        &r,
        "TI002",
        "attestor.dsse_envelopes",
        "undeclared permissive policy peek (FOR SELECT TO attestor_app USING (true))",
    );
    assert_finding(
        &r,
        "TD002",
        "attestor.dsse_envelopes",
        "A's rows are invisible to B: succeeded (1 rows)",
    );
    assert_only(&r, &["TI002", "TD"]);
}

#[test]
fn flaw_policy_expression_differs() {
    let r = verify_flawed_steps(
        &[
            "DROP POLICY spines_tenant_isolation ON attestor.spines",
            "CREATE POLICY spines_tenant_isolation ON attestor.spines FOR ALL TO attestor_app
                 USING (tenant_id = current_setting('app.tenant_id', true)::uuid)
                 WITH CHECK (tenant_id = current_setting('app.tenant_id', true)::uuid)",
        ],
        "",
    );
    assert_finding_starts(
        &r,
        "TI002",
        "attestor.spines",
        "policy spines_tenant_isolation is not the generated one: found PERMISSIVE FOR ALL TO attestor_app \
         USING ((tenant_id = (current_setting('app.tenant_id'::text, true))::uuid))",
    );
    // Without the helper an unset tenant is silently "no rows" instead of AT001.
    assert_finding_starts(
        &r,
        "TD011",
        "attestor.spines",
        "SELECT without a tenant fails with AT001: ",
    );
    assert_only(&r, &["TI002", "TD"]);
}

#[test]
fn flaw_policy_with_a_sub_select_or_a_hand_edited_predicate() {
    // The shape gen-rls wrote before (a sub-select, which Citus refuses on a
    // distributed table) and a hand edit that means the same (operands
    // swapped): neither is the generated policy.
    let sub_select = [
        "DROP POLICY spines_tenant_isolation ON attestor.spines",
        "CREATE POLICY spines_tenant_isolation ON attestor.spines FOR ALL TO attestor_app
             USING (tenant_id = (SELECT attestor_app.require_current_tenant()))
             WITH CHECK (tenant_id = (SELECT attestor_app.require_current_tenant()))",
    ];
    let swapped = [
        "DROP POLICY sbom_entries_tenant_isolation ON attestor.sbom_entries",
        "CREATE POLICY sbom_entries_tenant_isolation ON attestor.sbom_entries FOR ALL TO attestor_app
             USING (attestor_app.require_current_tenant() = tenant_id)
             WITH CHECK (attestor_app.require_current_tenant() = tenant_id)",
    ];
    let hand_edited = |r: &Report| {
        assert_finding_starts(
            r,
            "TI002",
            "attestor.sbom_entries",
            "policy sbom_entries_tenant_isolation is not the generated one: found PERMISSIVE FOR ALL TO attestor_app \
             USING ((require_current_tenant() = tenant_id))",
        );
    };
    if on_citus() {
        // The sub-select cannot exist on a distributed table: Citus refuses
        // it (TI018 is what says so before distribution). The hand edit can.
        let refused = citus_refuses(&sub_select);
        assert!(
            refused.contains("unexpected non-SELECT command in SubLink"),
            "{refused}"
        );
        let r = verify_flawed_steps(&swapped, "");
        hand_edited(&r);
        // It still isolates: only the catalog rules see it.
        assert_only(&r, &["TI002"]);
        return;
    }
    let r = verify_flawed_steps(&[sub_select, swapped].concat(), "");
    assert_finding(
        &r,
        "TI002",
        "attestor.spines",
        "policy spines_tenant_isolation is not the generated one: found PERMISSIVE FOR ALL TO attestor_app \
         USING ((tenant_id = ( SELECT require_current_tenant() AS require_current_tenant))) \
         WITH CHECK ((tenant_id = ( SELECT require_current_tenant() AS require_current_tenant))); \
         expected PERMISSIVE FOR ALL TO attestor_app USING (tenant_id = attestor_app.require_current_tenant()) \
         WITH CHECK (tenant_id = attestor_app.require_current_tenant())",
    );
    hand_edited(&r);
    // The sub-select is also what Citus refuses in a distributed table's policy.
    assert_finding(
        &r,
        "TI018",
        "attestor.spines",
        "policy spines_tenant_isolation has a sub-query: Citus refuses sub-queries in policies of distributed tables",
    );
    // Both still isolate: only the catalog rules see them.
    assert_only(&r, &["TI002", "TI018"]);
}

#[test]
fn flaw_restrictive_only_is_deny_all() {
    let r = verify_flawed_steps(
        &[
            "DROP POLICY trust_anchors_tenant_isolation ON attestor.trust_anchors",
            "CREATE POLICY trust_anchors_tenant_isolation ON attestor.trust_anchors AS RESTRICTIVE FOR ALL
                 TO attestor_app
                 USING (tenant_id = attestor_app.require_current_tenant())
                 WITH CHECK (tenant_id = attestor_app.require_current_tenant())",
        ],
        "",
    );
    assert_finding(
        &r,
        "TI002",
        "attestor.trust_anchors",
        "only RESTRICTIVE policies: the table is deny-all for every role",
    );
    if on_citus() {
        // Citus 14.0 sends the CREATE POLICY to the shards without its AS
        // RESTRICTIVE: each shard placement has it PERMISSIVE (so the shards
        // isolate as before, and the proof, which runs there, sees nothing).
        // The coordinator's catalog and the shards' disagree, which is TI026's.
        assert!(
            r.findings_of("TI026")
                .any(|f| f.object == "attestor.trust_anchors"
                    && f.message.starts_with(
                        "32 of 32 shard placements do not carry the coordinator's RLS and policies"
                    )
                    && f.message
                        .contains("[\"trust_anchors_tenant_isolation\", \"*\", true, ")),
            "{}",
            show(&r)
        );
        assert_only(&r, &["TI002", "TI026", "TD"]);
        return;
    }
    assert_only(&r, &["TI002", "TD"]);
}

#[test]
fn flaw_worker_may_move_jobs_between_tenants() {
    let r = verify_flawed(
        "GRANT UPDATE (tenant_id) ON attestor.rekor_submission_queue TO attestor_worker",
        "",
    );
    assert_finding(
        &r,
        "TI003",
        "attestor.rekor_submission_queue",
        "declared policy rekor_submission_queue_worker_update lets attestor_worker write any tenant's rows \
         (WITH CHECK true) and attestor_worker holds UPDATE (tenant_id)",
    );
    // The worker's own login session proves it too: the UPDATE is no longer refused.
    assert_finding(
        &r,
        "TD019",
        "attestor.rekor_submission_queue",
        "the worker cannot update tenant_id: succeeded (0 rows)",
    );
    assert_only(&r, &["TI003", "TD019"]);
}

// --- check 3 --------------------------------------------------------------------

const HELPER: &str = "attestor_app.require_current_tenant()";
const SLOW_PATH: &str = "attestor_app.tenant_context_error(raw text)";

/// The plan of a read of a tenant table, as `attestor_app` in a tenant
/// transaction (rolled back).
fn app_plan(admin_url: &str) -> String {
    let mut db = Db::connect(admin_url).unwrap();
    db.begin().unwrap();
    db.exec(
        "CREATE FUNCTION pg_temp.plan(q text) RETURNS text LANGUAGE plpgsql AS $$
         DECLARE line text; plan text := '';
         BEGIN
             FOR line IN EXECUTE 'EXPLAIN (VERBOSE, COSTS OFF) ' || q LOOP plan := plan || line || E'\\n'; END LOOP;
             RETURN plan;
         END $$;
         SET LOCAL ROLE attestor_app",
    )
    .unwrap();
    db.exec(&tenant_context("0b3c5c1e-8f4e-4c59-9d4e-2f1a6f3b9a10"))
        .unwrap();
    let plan = db
        .text("SELECT pg_temp.plan('SELECT * FROM attestor.sbom_entries') AS v")
        .unwrap()
        .unwrap_or_default();
    db.rollback().unwrap();
    task_plan(plan)
}

/// The tenant context for the rest of the transaction, as the pools set it
/// on this server. On a Citus coordinator `SET LOCAL`, which Citus forwards
/// to the workers: a task's plan is made there, on the shard with the
/// shard's own policies, and without a tenant the planner's estimate of the
/// helper raises AT001 ("Could not get remote plan").
fn tenant_context(tenant: &str) -> String {
    if on_citus() {
        format!("SET LOCAL citus.propagate_set_commands = 'local'; SET LOCAL app.tenant_id = '{tenant}'")
    } else {
        format!("SELECT set_config('app.tenant_id', '{tenant}', true)")
    }
}

/// The plan as it reads against a table. On a Citus coordinator the plan is
/// a Custom Scan (Citus Adaptive) whose task carries the plan made on the
/// worker, where the policies apply (the coordinator's query on the shard
/// has none of them): that plan, with the shard ids Citus appends to the
/// names of a shard and its indexes removed (`sbom_entries_102136` →
/// `sbom_entries`). Elsewhere the plan unchanged.
#[track_caller]
fn task_plan(plan: String) -> String {
    if !on_citus() {
        return plan;
    }
    assert!(
        plan.contains("Custom Scan (Citus Adaptive)") && !plan.contains("Could not get remote plan"),
        "a Citus plan with the task's remote plan:\n{plan}"
    );
    let mut out = String::with_capacity(plan.len());
    let mut rest = plan.as_str();
    while let Some(i) = rest.find('_') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let ends = after[digits..]
            .chars()
            .next()
            .is_none_or(|c| !c.is_alphanumeric() && c != '_');
        if digits >= 6 && ends {
            rest = &after[digits..];
        } else {
            out.push('_');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Apply `flaw` to a fresh database and return the plan of [`app_plan`].
fn app_plan_with(flaw: &str) -> String {
    let db = shared().test_database().unwrap();
    if !flaw.is_empty() {
        Db::connect(&db.admin_url()).unwrap().exec(flaw).unwrap();
    }
    app_plan(&db.admin_url())
}

#[track_caller]
fn assert_inlined(plan: &str, inlined: bool) {
    let expanded = plan.contains("CASE WHEN") && plan.contains("tenant_context_error(");
    let called = plan.contains("require_current_tenant()");
    assert_eq!(
        (expanded, called),
        (inlined, !inlined),
        "the helper should {}be inlined into the policy's predicate:\n{plan}",
        if inlined { "" } else { "not " }
    );
    // The policy calls the helper directly: no sub-select, so no InitPlan
    // (Citus refuses sub-queries in the policies of distributed tables).
    assert!(!plan.contains("InitPlan") && !plan.contains("SubPlan"), "{plan}");
}

/// The plans of `queries` (prepared as `q0`, `q1`, …, with `params`) run as
/// `attestor_app` in a tenant transaction, with generic plans as the pools
/// make them; `setup` runs first as the superuser. Rolled back (on a Citus
/// coordinator `setup` is committed first: Citus refuses the app's reads of
/// shard placements the superuser wrote in the same transaction).
fn app_plans(admin_url: &str, setup: &str, queries: &[(&str, &str)]) -> Vec<String> {
    let mut db = Db::connect(admin_url).unwrap();
    if on_citus() {
        db.exec(setup).unwrap();
        db.begin().unwrap();
    } else {
        db.begin().unwrap();
        db.exec(setup).unwrap();
    }
    db.exec(
        "CREATE FUNCTION pg_temp.plan(q text) RETURNS text LANGUAGE plpgsql AS $$
         DECLARE line text; plan text := '';
         BEGIN
             FOR line IN EXECUTE 'EXPLAIN (VERBOSE, COSTS OFF) ' || q LOOP plan := plan || line || E'\\n'; END LOOP;
             RETURN plan;
         END $$;
         SET LOCAL ROLE attestor_app",
    )
    .unwrap();
    // Citus makes no generic plan of a statement on a distributed table that
    // has parameters and no tenant_id predicate ("could not create
    // distributed plan"); there each task's plan is made on its worker,
    // with the parameters' values.
    if !on_citus() {
        db.exec("SET LOCAL plan_cache_mode = force_generic_plan").unwrap();
    }
    db.exec(&tenant_context("00000000-0000-4000-8000-000000000007"))
        .unwrap();
    let plans = queries
        .iter()
        .enumerate()
        .map(|(i, (query, execute))| {
            db.exec(&format!("PREPARE q{i} AS {query}")).unwrap();
            db.text(&format!(
                "SELECT pg_temp.plan({}) AS v",
                rls::lit(&format!("EXECUTE q{i}{execute}"))
            ))
            .unwrap()
            .unwrap_or_default()
        })
        .map(task_plan)
        .collect();
    db.rollback().unwrap();
    db.exec("DEALLOCATE ALL").unwrap();
    plans
}

#[test]
fn point_and_page_reads_use_the_tenant_indexes_with_the_policy_alone() {
    // 20,000 rows over 100 tenants, analysed; the statements carry no
    // tenant predicate of their own, so the index condition on tenant_id
    // can only come from the policy's (inlined) helper.
    let db = shared().test_database().unwrap();
    let fill = "INSERT INTO attestor.sbom_entries (tenant_id, format, spec_version, sbom_digest, component_count, document)
                SELECT ('00000000-0000-4000-8000-' || lpad((g % 100 + 1)::text, 12, '0'))::uuid,
                       'cyclonedx', '1.5', sha256(g::text::bytea), 0, '{}'
                  FROM generate_series(1, 20000) AS g;
                ANALYZE attestor.sbom_entries";
    let plans = app_plans(
        &db.admin_url(),
        fill,
        &[
            (
                "SELECT * FROM attestor.sbom_entries WHERE id = $1",
                "('8d5b3a61-3c2f-4e1a-9b7d-0f2e4c6a8b10')",
            ),
            (
                "SELECT * FROM attestor.sbom_entries ORDER BY created_at DESC, id DESC LIMIT $1",
                "(50)",
            ),
            (
                "SELECT * FROM attestor.sbom_entries WHERE (created_at, id) < ($1, $2)
                  ORDER BY created_at DESC, id DESC LIMIT $3",
                "(now(), '8d5b3a61-3c2f-4e1a-9b7d-0f2e4c6a8b10', 50)",
            ),
        ],
    );
    let expect = [
        if on_citus() {
            // The task Citus shows is one shard's, planned with that shard's
            // statistics: the tenant may have no rows there, and then any
            // index leading with tenant_id is as cheap as the primary key.
            "Index Scan using sbom_entries_"
        } else {
            "Index Scan using sbom_entries_pkey on attestor.sbom_entries"
        },
        "Index Scan Backward using sbom_entries_created_at_idx on attestor.sbom_entries",
        "Index Scan Backward using sbom_entries_created_at_idx on attestor.sbom_entries",
    ];
    for (plan, scan) in plans.iter().zip(expect) {
        assert!(plan.contains(scan), "expected {scan}:\n{plan}");
        let cond = plan.lines().find(|l| l.trim_start().starts_with("Index Cond:"));
        assert!(
            cond.is_some_and(|c| c.contains("(sbom_entries.tenant_id = CASE WHEN")),
            "the policy's predicate is not the index condition:\n{plan}"
        );
        assert!(!plan.contains("InitPlan") && !plan.contains("Seq Scan"), "{plan}");
    }
}

#[test]
fn the_canonical_helper_is_inlined_into_the_policies() {
    assert_inlined(&app_plan_with(""), true);
}

#[test]
fn flaw_helper_volatile() {
    let r = verify_flawed(
        "ALTER FUNCTION attestor_app.require_current_tenant() VOLATILE",
        "",
    );
    assert_finding(
        &r,
        "TI004",
        HELPER,
        "the helper is VOLATILE (it cannot be an index condition, so it runs for every row read), must be STABLE",
    );
    if on_citus() {
        // Citus refuses an UPDATE or DELETE of a distributed table whose
        // policy calls a volatile function: the proof's probes of both fail
        // on every tenant table.
        let refused =
            "failed with 0A000: functions used in UPDATE queries on distributed tables must not be VOLATILE";
        for (probe, what) in [("TD005", "UPDATE"), ("TD006", "DELETE")] {
            assert_finding(
                &r,
                probe,
                "attestor.spines",
                &format!("{what} of A's rows touches nothing: {refused}"),
            );
        }
        assert_only(&r, &["TI004", "TD005", "TD006"]);
    } else {
        assert_only(&r, &["TI004"]);
    }
}

#[test]
fn flaw_helper_body_replaced() {
    // Still an inlinable SQL-standard body, but not the canonical one.
    let r = verify_flawed(
        "CREATE OR REPLACE FUNCTION attestor_app.require_current_tenant() RETURNS uuid LANGUAGE sql STABLE
         RETURN NULLIF(current_setting('app.tenant_id', true), '')::uuid",
        "",
    );
    assert_finding(
        &r,
        "TI004",
        HELPER,
        "the helper has a body that differs from the canonical one",
    );
    // And the proof notices that a missing tenant no longer raises AT001.
    assert_finding_starts(
        &r,
        "TD011",
        "attestor.spines",
        "SELECT without a tenant fails with AT001: ",
    );
    assert_only(&r, &["TI004", "TD"]);
}

#[test]
fn flaw_helper_has_a_set_clause() {
    let flaw = "ALTER FUNCTION attestor_app.require_current_tenant() SET search_path = pg_catalog, pg_temp";
    let r = verify_flawed(flaw, "");
    assert_finding(
        &r,
        "TI004",
        HELPER,
        "the helper has a SET clause (SET search_path = pg_catalog, pg_temp): a function with a SET clause \
         cannot be inlined, so every statement pays a function call",
    );
    assert_only(&r, &["TI004"]);
    assert_inlined(&app_plan_with(flaw), false);
}

/// Migration 2's PL/pgSQL `require_current_tenant()`, as `CREATE OR REPLACE`.
fn migration_two_helper() -> String {
    let up =
        std::fs::read_to_string(root().join("migrations/2026-11-28-000002_tenant_helpers/up.sql")).unwrap();
    let start = up
        .find("CREATE FUNCTION attestor_app.require_current_tenant()")
        .unwrap();
    let end = start + up[start..].find("$$;").unwrap() + 3;
    up[start..end].replacen("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
}

#[test]
fn flaw_helper_is_plpgsql_again() {
    let r = verify_flawed(&migration_two_helper(), "");
    assert_finding(
        &r,
        "TI004",
        HELPER,
        "the helper is LANGUAGE plpgsql, must be LANGUAGE sql with a SQL-standard body (RETURN …): only a SQL \
         function can be inlined into the policies",
    );
    assert_finding(
        &r,
        "TI004",
        HELPER,
        "the helper has a SET clause (SET search_path = pg_catalog, pg_temp): a function with a SET clause \
         cannot be inlined, so every statement pays a function call",
    );
    // It still isolates and raises AT001/AT002: only check 3 sees it.
    assert_only(&r, &["TI004"]);
}

#[test]
fn flaw_helper_has_a_string_body() {
    // LANGUAGE sql but `AS '…'`: names resolved at run time, so check 7 wants a search_path too.
    let r = verify_flawed(
        "CREATE OR REPLACE FUNCTION attestor_app.require_current_tenant() RETURNS uuid LANGUAGE sql STABLE
         AS 'SELECT attestor_app.tenant_context_error(current_setting(''app.tenant_id'', true))'",
        "",
    );
    assert_finding(
        &r,
        "TI004",
        HELPER,
        "the helper has a string body (AS '…'), must have a SQL-standard body (RETURN …): a string body \
         resolves its names at run time, through the caller's search_path",
    );
    assert_finding(
        &r,
        "TI014",
        HELPER,
        "function without a fixed search_path: callers can hijack the names it resolves",
    );
    assert_only(&r, &["TI004", "TI014"]);
}

#[test]
fn flaw_slow_path_executable_by_public() {
    let r = verify_flawed(
        "GRANT EXECUTE ON FUNCTION attestor_app.tenant_context_error(text) TO PUBLIC",
        "",
    );
    assert_finding(&r, "TI004", SLOW_PATH, "the slow path is executable by PUBLIC");
    assert_finding(
        &r,
        "TI008",
        SLOW_PATH,
        "PUBLIC holds EXECUTE on function attestor_app.tenant_context_error(raw text)",
    );
    assert_only(&r, &["TI004", "TI008"]);
}

#[test]
fn flaw_slow_path_without_search_path() {
    let r = verify_flawed(
        "ALTER FUNCTION attestor_app.tenant_context_error(text) RESET search_path",
        "",
    );
    assert_finding(&r, "TI004", SLOW_PATH, "the slow path has no fixed search_path");
    assert_finding(
        &r,
        "TI014",
        SLOW_PATH,
        "function without a fixed search_path: callers can hijack the names it resolves",
    );
    assert_only(&r, &["TI004", "TI014"]);
}

#[test]
fn flaw_slow_path_volatile_stops_inlining() {
    let flaw = "ALTER FUNCTION attestor_app.tenant_context_error(text) VOLATILE";
    let r = verify_flawed(flaw, "");
    assert_finding(
        &r,
        "TI004",
        SLOW_PATH,
        "the slow path is VOLATILE (a volatile call in the helper's body stops the planner from inlining it), \
         must be STABLE",
    );
    assert_only(&r, &["TI004"]);
    assert_inlined(&app_plan_with(flaw), false);
}

#[test]
fn flaw_slow_path_strict() {
    let r = verify_flawed(
        "ALTER FUNCTION attestor_app.tenant_context_error(text) STRICT",
        "",
    );
    assert_finding(
        &r,
        "TI004",
        SLOW_PATH,
        "the slow path is STRICT: for an unset tenant (NULL) it returns NULL instead of raising AT001",
    );
    // A GUC never set in the session is NULL, and the policies then match
    // nothing instead of raising AT001. Only a fresh login session sees it
    // (a proof that unsets the tenant with set_config(…, '') has '', not NULL).
    for role in ["attestor_app", "attestor_worker"] {
        assert_finding(
            &r,
            "TD018",
            &format!("role {role}"),
            "a fresh login session has no tenant: the helper raises AT001: app.tenant_id is \"<unset>\" when \
             the session starts; the helper succeeded (1 rows)",
        );
    }
    assert_only(&r, &["TI004", "TD018"]);
}

/// verify-rls on the schema as `migration`'s down.sql leaves it.
///
/// On a Citus coordinator the down.sql runs in the migrator's form: without
/// its `SET LOCAL ROLE attestor_owner`, as the superuser. Citus sends DDL on
/// a distributed function to the workers as the current role, and the owner
/// may not log in (see "Who runs the DDL" in ARCHITECTURE.md). These
/// down.sql files only `CREATE OR REPLACE` and drop functions, so the
/// owner stays attestor_owner; TI024 would name a function left to the
/// superuser.
fn verify_reverted(migration: &str) -> Report {
    let path = root().join(format!("migrations/{migration}/down.sql"));
    let down = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let down = if on_citus() {
        let switches = ["SET LOCAL ROLE attestor_owner;\n", "SET LOCAL ROLE NONE;\n"];
        for switch in switches {
            assert_eq!(down.matches(switch).count(), 1, "{}: {switch}", path.display());
        }
        switches.iter().fold(down, |sql, switch| sql.replace(switch, ""))
    } else {
        down
    };
    verify_flawed(&format!("BEGIN;\n{down}\nCOMMIT;"), "")
}

#[test]
fn the_migration_six_down_state_is_reported() {
    let r = verify_reverted("2026-11-28-000006_inline_tenant_helper");
    assert_finding(&r, "TI004", SLOW_PATH, "the helper's slow path does not exist");
    assert_finding_starts(&r, "TI004", HELPER, "the helper is LANGUAGE plpgsql, ");
    assert_only(&r, &["TI004"]);
}

#[test]
fn the_migration_seven_down_state_is_reported() {
    // Migration 6's regular-expression fast path: it isolates exactly like
    // the canonical helper (the proof passes), only check 3 sees it.
    let r = verify_reverted("2026-11-28-000007_cheaper_tenant_check");
    assert_finding(
        &r,
        "TI004",
        HELPER,
        "the helper has a body that differs from the canonical one",
    );
    assert_only(&r, &["TI004"]);
}

// --- check 4 --------------------------------------------------------------------

#[test]
fn flaw_updated_at_trigger_missing() {
    let flaw = "DROP TRIGGER set_updated_at ON attestor.spines";
    let r = if on_citus() {
        // Citus refuses trigger DDL on a distributed table unless
        // citus.enable_unsafe_triggers is on (as the distribution step has it).
        let refused = citus_refuses(&[flaw]);
        assert!(
            refused.contains("triggers are not supported on distributed tables"),
            "{refused}"
        );
        verify_flawed_steps(&["SET citus.enable_unsafe_triggers = on", flaw], "")
    } else {
        verify_flawed(flaw, "")
    };
    assert_finding(
        &r,
        "TI005",
        "attestor.spines",
        "no BEFORE UPDATE row trigger keeps updated_at current",
    );
    assert_only(&r, &["TI005"]);
}

/// The updated_at trigger on attestor.spines replaced by one created with
/// `create` (as the superuser, one statement at a time; on Citus with unsafe
/// triggers allowed, as the distribution step has them).
fn verify_replaced_updated_at_trigger(create: &str) -> Report {
    let drop = "DROP TRIGGER set_updated_at ON attestor.spines";
    if on_citus() {
        verify_flawed_steps(&["SET citus.enable_unsafe_triggers = on", drop, create], "")
    } else {
        verify_flawed_steps(&[drop, create], "")
    }
}

/// [`verify_replaced_updated_at_trigger`] with a trigger on every UPDATE
/// under `condition`.
fn verify_updated_at_trigger(condition: &str) -> Report {
    verify_replaced_updated_at_trigger(&format!(
        "CREATE TRIGGER set_updated_at BEFORE UPDATE ON attestor.spines
             FOR EACH ROW {condition} EXECUTE FUNCTION attestor_app.set_updated_at()"
    ))
}

#[test]
fn flaw_updated_at_trigger_that_can_be_skipped() {
    // WHEN (false) never calls the function; a condition the statement's
    // own values satisfy lets a writer keep updated_at as it wrote it.
    for condition in [
        "WHEN (false)",
        "WHEN (NEW.updated_at IS NULL)",
        "WHEN (NEW.updated_at IS DISTINCT FROM OLD.updated_at)",
    ] {
        let r = verify_updated_at_trigger(condition);
        assert_finding_starts(
            &r,
            "TI005",
            "attestor.spines",
            "trigger set_updated_at does not keep updated_at current on every UPDATE (WHEN ",
        );
        assert_only(&r, &["TI005"]);
    }
    // UPDATE OF a column: an UPDATE of any other column skips it.
    let r = verify_replaced_updated_at_trigger(
        "CREATE TRIGGER set_updated_at BEFORE UPDATE OF updated_at ON attestor.spines
             FOR EACH ROW EXECUTE FUNCTION attestor_app.set_updated_at()",
    );
    assert_finding(
        &r,
        "TI005",
        "attestor.spines",
        "trigger set_updated_at does not keep updated_at current on every UPDATE (UPDATE OF columns)",
    );
    assert_only(&r, &["TI005"]);
}

#[test]
fn updated_at_trigger_may_skip_only_a_call_that_changes_nothing() {
    // The queue table's condition (migration 2026-12-05-100001), on another table.
    let r = verify_updated_at_trigger("WHEN (NEW.updated_at IS DISTINCT FROM now())");
    assert_only(&r, &[]);
}

#[test]
fn flaw_unique_without_tenant() {
    let flaw = "ALTER TABLE attestor.trust_anchors ADD CONSTRAINT trust_anchors_key_id_key UNIQUE (key_id)";
    if on_citus() {
        // The flaw cannot exist on a distributed table: Citus refuses a
        // unique constraint without the distribution column (what TI018
        // says before distribution).
        let refused = citus_refuses(&[flaw]);
        assert!(
            refused.contains("cannot create constraint on \"trust_anchors\""),
            "{refused}"
        );
        return;
    }
    let r = verify_flawed(flaw, "");
    assert_finding(
        &r,
        "TI005",
        "attestor.trust_anchors",
        "unique constraint trust_anchors_key_id_key (key_id) does not lead with tenant_id: uniqueness across \
         tenants is an existence oracle",
    );
    assert_finding(
        &r,
        "TI018",
        "attestor.trust_anchors",
        "unique constraint trust_anchors_key_id_key does not include the distribution column tenant_id",
    );
    assert_only(&r, &["TI005", "TI018"]);
}

#[test]
fn flaw_index_not_leading_with_tenant() {
    let r = verify_flawed(
        "CREATE INDEX spines_policy_version_idx ON attestor.spines (policy_version)",
        "",
    );
    assert_finding(
        &r,
        "TI005",
        "attestor.spines",
        "btree index spines_policy_version_idx does not lead with tenant_id",
    );
    assert_only(&r, &["TI005"]);
}

#[test]
fn flaw_foreign_key_without_tenant() {
    let unique = "CREATE UNIQUE INDEX sbom_entries_id_key ON attestor.sbom_entries (id)";
    let fkey = "ALTER TABLE attestor.spines ADD CONSTRAINT spines_sbom_entry_fkey
             FOREIGN KEY (sbom_entry_id) REFERENCES attestor.sbom_entries (id)";
    if on_citus() {
        // The flaw cannot exist between distributed tables: the foreign key
        // needs a unique index on id alone, which Citus refuses (what TI018
        // says before distribution).
        let refused = citus_refuses(&[unique]);
        assert!(
            refused.contains("creating unique indexes on non-partition columns is currently unsupported"),
            "{refused}"
        );
        return;
    }
    let r = verify_flawed(&format!("{unique};\n         {fkey}"), "");
    assert_finding(
        &r,
        "TI005",
        "attestor.spines",
        "foreign key spines_sbom_entry_fkey (sbom_entry_id) → attestor.sbom_entries (id) does not include \
         tenant_id → tenant_id: it can point into another tenant",
    );
    assert_finding(
        &r,
        "TI018",
        "attestor.spines",
        "foreign key spines_sbom_entry_fkey is not co-located (no tenant_id → tenant_id)",
    );
    // (the unique index it needs is itself a finding of checks 4 and 11)
    assert_only(&r, &["TI005", "TI018"]);
}

// --- check 5 --------------------------------------------------------------------

#[test]
fn flaw_app_may_truncate() {
    let r = verify_flawed("GRANT TRUNCATE ON attestor.verdict_ledger TO attestor_app", "");
    assert_finding(
        &r,
        "TI007",
        "role attestor_app",
        "holds TRUNCATE on attestor.verdict_ledger",
    );
    assert_only(&r, &["TI007"]);
}

#[test]
fn flaw_app_may_create_in_schema() {
    let r = verify_flawed("GRANT CREATE ON SCHEMA attestor TO attestor_app", "");
    assert_finding(
        &r,
        "TI007",
        "role attestor_app",
        "holds CREATE on schema attestor",
    );
    assert_only(&r, &["TI007"]);
}

/// Verify a fresh database in which `setup` (run as the superuser, `{role}`
/// naming a role of this test's own) makes `attestor_app` a member of that
/// role. Role membership is cluster-wide: the role is uniquely named, owns
/// objects only in this test's database, and is dropped again.
fn verify_with_member_role(name: &str, setup: &str) -> Report {
    let _roles = roles_write();
    let server = shared();
    let db = server.test_database().unwrap();
    let role = format!("rls_{name}_{}", std::process::id());
    let mut admin = Db::connect(&db.admin_url()).unwrap();
    admin
        .exec(&format!(
            "DROP ROLE IF EXISTS {role}; {}",
            setup.replace("{role}", &role)
        ))
        .unwrap();
    let r = rls::verify_target(
        &rls::Target {
            app_url: Some(db.app_url()),
            worker_url: Some(db.worker_url()),
            owner_url: Some(db.admin_url()),
        },
        &options(""),
    );
    admin.exec(&format!("REVOKE {role} FROM attestor_app")).unwrap();
    drop(admin);
    let name = db.name().to_owned();
    drop(db);
    server.drop_database(&name).unwrap();
    server.execute_admin(&format!("DROP ROLE {role}")).unwrap();
    r.unwrap()
}

/// A role of the test's own that owns a schema, for [`verify_with_member_role`].
const OWNER_ROLE: &str = "CREATE ROLE {role} NOLOGIN; CREATE SCHEMA rls_flaw AUTHORIZATION {role};";

fn owns_through(role: &str, how: &str) -> String {
    format!(
        "owns objects in this database through membership of {role} ({how}) (an owner is exempt \
         from non-forced RLS and can disable it)"
    )
}

#[test]
fn flaw_app_can_set_role_to_an_owner() {
    let name = "flaw_owner";
    let r = verify_with_member_role(name, &format!("{OWNER_ROLE} GRANT {{role}} TO attestor_app"));
    let role = format!("rls_{name}_{}", std::process::id());
    assert_finding(
        &r,
        "TI006",
        "role attestor_app",
        &owns_through(&role, &format!("SET ROLE {role}")),
    );
    assert_only(&r, &["TI006"]);
}

// --- what differs across PostgreSQL versions --------------------------------------

fn server_version() -> attestor_testdb::ServerVersion {
    shared().version().unwrap()
}

/// Before PostgreSQL 16 a grant has no SET or INHERIT option: the server
/// refuses the syntax (and changes nothing, the grant being rolled back if
/// it ever ran).
#[track_caller]
fn assert_grant_options_refused() {
    let db = shared().test_database().unwrap();
    let err = Db::connect(&db.admin_url())
        .unwrap()
        .exec("BEGIN; GRANT attestor_owner TO attestor_app WITH INHERIT TRUE, SET FALSE; ROLLBACK")
        .unwrap_err()
        .server_message();
    assert!(err.contains("syntax error"), "{err}");
}

#[test]
fn a_membership_without_set_or_inherit_reaches_nothing() {
    if !server_version().at_least(16) {
        return assert_grant_options_refused();
    }
    let r = verify_with_member_role(
        "no_set_no_inherit",
        &format!("{OWNER_ROLE} GRANT {{role}} TO attestor_app WITH INHERIT FALSE, SET FALSE"),
    );
    assert_only(&r, &[]);
}

#[test]
fn flaw_app_inherits_an_owner_without_set_role() {
    if !server_version().at_least(16) {
        return assert_grant_options_refused();
    }
    let name = "inherits_owner";
    let r = verify_with_member_role(
        name,
        &format!("{OWNER_ROLE} GRANT {{role}} TO attestor_app WITH INHERIT TRUE, SET FALSE"),
    );
    let role = format!("rls_{name}_{}", std::process::id());
    assert_finding(
        &r,
        "TI006",
        "role attestor_app",
        &owns_through(&role, "inherits its privileges"),
    );
    // The owner's privileges are the app's own now, CREATE on its schema too.
    assert_finding(
        &r,
        "TI007",
        "role attestor_app",
        "holds CREATE on schema rls_flaw",
    );
    assert_only(&r, &["TI006", "TI007"]);
}

#[test]
fn flaw_app_holds_admin_option_on_an_owner() {
    // With ADMIN OPTION alone the app may grant the role to itself WITH SET TRUE.
    if !server_version().at_least(16) {
        return assert_grant_options_refused();
    }
    let name = "admin_owner";
    let r = verify_with_member_role(
        name,
        &format!("{OWNER_ROLE} GRANT {{role}} TO attestor_app WITH ADMIN TRUE, INHERIT FALSE, SET FALSE"),
    );
    let role = format!("rls_{name}_{}", std::process::id());
    assert_finding(
        &r,
        "TI006",
        "role attestor_app",
        &owns_through(&role, &format!("SET ROLE {role}")),
    );
    assert_only(&r, &["TI006"]);
}

#[test]
fn attributes_are_not_inherited() {
    // BYPASSRLS (like SUPERUSER), CREATEROLE and REPLICATION are attributes: a
    // member has them only after SET ROLE, which these grants do not allow.
    if !server_version().at_least(16) {
        return assert_grant_options_refused();
    }
    for (name, attributes) in [
        ("inherit_bypassrls", "BYPASSRLS"),
        ("inherit_createrole", "CREATEROLE REPLICATION"),
    ] {
        let r = verify_with_member_role(
            name,
            &format!(
                "CREATE ROLE {{role}} NOLOGIN {attributes}; \
                 GRANT {{role}} TO attestor_app WITH INHERIT TRUE, SET FALSE"
            ),
        );
        assert_only(&r, &[]);
    }
}

#[test]
fn flaw_createrole_reached_by_set_role() {
    // The same role with SET TRUE: the member can switch to it and create roles.
    if !server_version().at_least(16) {
        return assert_grant_options_refused();
    }
    let r = verify_with_member_role(
        "set_createrole",
        "CREATE ROLE {role} NOLOGIN CREATEROLE; GRANT {role} TO attestor_app WITH INHERIT FALSE, SET TRUE",
    );
    assert!(
        r.findings.iter().any(|f| f.rule == "TI022"
            && f.message
                .contains("can create and alter roles (CREATEROLE) through")),
        "{:#?}",
        r.findings
    );
}

#[test]
fn flaw_app_may_maintain() {
    let grant = "GRANT MAINTAIN ON attestor.verdict_ledger TO attestor_app";
    if server_version().at_least(17) {
        let r = verify_flawed(grant, "");
        assert_finding(
            &r,
            "TI007",
            "role attestor_app",
            "holds MAINTAIN on attestor.verdict_ledger",
        );
        assert_only(&r, &["TI007"]);
    } else {
        // Before 17 there is no MAINTAIN privilege to hold.
        let db = shared().test_database().unwrap();
        let err = Db::connect(&db.admin_url())
            .unwrap()
            .exec(grant)
            .unwrap_err()
            .server_message();
        assert!(err.contains("unrecognized privilege type"), "{err}");
    }
}

// --- check 6 --------------------------------------------------------------------

#[test]
fn flaw_public_select() {
    let r = verify_flawed("GRANT SELECT ON attestor.spines TO PUBLIC", "");
    assert_finding(
        &r,
        "TI008",
        "attestor.spines",
        "PUBLIC holds SELECT on table attestor.spines",
    );
    assert_only(&r, &["TI008"]);
}

#[test]
fn flaw_public_execute() {
    let r = verify_flawed(
        "GRANT EXECUTE ON FUNCTION attestor_app.current_actor() TO PUBLIC",
        "",
    );
    assert_finding(
        &r,
        "TI008",
        "attestor_app.current_actor()",
        "PUBLIC holds EXECUTE on function attestor_app.current_actor()",
    );
    assert_only(&r, &["TI008"]);
}

// --- check 7 --------------------------------------------------------------------

#[test]
fn flaw_view_without_security_invoker() {
    let r = verify_flawed(
        "CREATE VIEW attestor.envelope_ids AS SELECT tenant_id, id FROM attestor.dsse_envelopes;
         ALTER VIEW attestor.envelope_ids OWNER TO attestor_owner",
        "",
    );
    assert_finding(
        &r,
        "TI009",
        "attestor.envelope_ids",
        "view without security_invoker: it reads tables with its owner's rights, bypassing RLS",
    );
    assert_only(&r, &["TI009"]);
}

#[test]
fn flaw_materialized_view_over_tenant_rows() {
    let r = verify_flawed(
        "CREATE MATERIALIZED VIEW attestor.spine_counts AS
             SELECT tenant_id, count(*) AS n FROM attestor.spines GROUP BY tenant_id;
         ALTER MATERIALIZED VIEW attestor.spine_counts OWNER TO attestor_owner",
        "",
    );
    assert_finding(
        &r,
        "TI010",
        "attestor.spine_counts",
        "materialized view over tenant table(s) attestor.spines: it stores every tenant's rows without RLS",
    );
    assert_only(&r, &["TI010"]);
}

#[test]
fn flaw_security_definer_function() {
    let flaw = "CREATE FUNCTION attestor_app.count_spines() RETURNS bigint LANGUAGE sql SECURITY DEFINER
                    SET search_path = pg_catalog, pg_temp AS 'SELECT count(*) FROM attestor.spines';
                REVOKE ALL ON FUNCTION attestor_app.count_spines() FROM PUBLIC;
                ALTER FUNCTION attestor_app.count_spines() OWNER TO attestor_owner";
    let r = verify_flawed(flaw, "");
    assert_finding(
        &r,
        "TI011",
        "attestor_app.count_spines()",
        "SECURITY DEFINER function: it runs with its owner's rights, bypassing RLS",
    );
    assert_only(&r, &["TI011"]);
    // Declared with a reason, it is accepted.
    let r = verify_flawed(
        flaw,
        "[[allow]]\nrule = \"TI011\"\nobject = \"attestor_app.count_spines()\"\nreason = \"test\"\n",
    );
    assert!(r.is_clean(), "{}", show(&r));
}

#[test]
fn flaw_security_definer_trigger_function() {
    let r = verify_flawed(
        "ALTER FUNCTION attestor_app.set_updated_at() SECURITY DEFINER",
        "",
    );
    assert_finding(
        &r,
        "TI012",
        "attestor_app.set_updated_at()",
        "SECURITY DEFINER trigger function: it writes with its owner's rights, bypassing RLS",
    );
    assert_only(&r, &["TI012"]);
}

#[test]
fn flaw_leakproof_function() {
    let r = verify_flawed("ALTER FUNCTION attestor_app.current_actor() LEAKPROOF", "");
    assert_finding(
        &r,
        "TI013",
        "attestor_app.current_actor()",
        "LEAKPROOF function: the planner may run it on rows RLS has not filtered yet",
    );
    assert_only(&r, &["TI013"]);
}

#[test]
fn flaw_function_without_search_path() {
    let r = verify_flawed(
        "ALTER FUNCTION attestor_app.set_updated_at() RESET search_path",
        "",
    );
    assert_finding(
        &r,
        "TI014",
        "attestor_app.set_updated_at()",
        "function without a fixed search_path: callers can hijack the names it resolves",
    );
    assert_only(&r, &["TI014"]);
}

// --- check 8 --------------------------------------------------------------------

#[test]
fn flaw_partition_without_rls() {
    let flaw = "SET ROLE attestor_owner;
         CREATE TABLE attestor.events (
             id uuid NOT NULL DEFAULT gen_random_uuid(), tenant_id uuid NOT NULL,
             created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now(),
             kind text NOT NULL,
             PRIMARY KEY (tenant_id, id)) PARTITION BY HASH (tenant_id);
         CREATE TRIGGER set_updated_at BEFORE UPDATE ON attestor.events
             FOR EACH ROW EXECUTE FUNCTION attestor_app.set_updated_at();
         ALTER TABLE attestor.events ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
         CREATE POLICY events_tenant_isolation ON attestor.events FOR ALL TO attestor_app
             USING (tenant_id = attestor_app.require_current_tenant())
             WITH CHECK (tenant_id = attestor_app.require_current_tenant());
         GRANT SELECT, INSERT, UPDATE, DELETE ON attestor.events TO attestor_app;
         RESET ROLE;
         CREATE SCHEMA attestor_parts AUTHORIZATION attestor_owner;
         SET ROLE attestor_owner;
         CREATE TABLE attestor_parts.events_0 PARTITION OF attestor.events FOR VALUES WITH (MODULUS 1, REMAINDER 0);
         RESET ROLE";
    let r = if on_citus() {
        // Distributed like the module's tables (the distribution step's
        // call, as the superuser), so the new tenant table is where TI026
        // wants it and the partition's flaw is on the shards too.
        verify_flawed_steps(
            &[
                flaw,
                "SET citus.enable_unsafe_triggers = on",
                "SELECT create_distributed_table('attestor.events', 'tenant_id', \
                 colocate_with => 'attestor.dsse_envelopes')",
            ],
            "",
        )
    } else {
        verify_flawed(flaw, "")
    };
    assert_finding(
        &r,
        "TI015",
        "attestor_parts.events_0",
        "partition of attestor.events without RLS enabled: querying it directly bypasses the parent's policies",
    );
    assert_finding(
        &r,
        "TI015",
        "attestor_parts.events_0",
        "partition of attestor.events lacks the tenant isolation policy events_0_tenant_isolation",
    );
    assert_only(&r, &["TI015"]);
}

// --- check 9 --------------------------------------------------------------------

const SETTINGS: &str = "SET ROLE attestor_owner;
    CREATE TABLE attestor.settings (name text PRIMARY KEY, value text NOT NULL);
    RESET ROLE";

#[test]
fn flaw_table_without_tenant_id() {
    let r = verify_flawed(SETTINGS, "");
    assert_finding(
        &r,
        "TI016",
        "attestor.settings",
        "table without tenant_id that is not declared global",
    );
    assert_only(&r, &["TI016"]);
    let global = "[[global_table]]\nmodule = \"attestor\"\ntable = \"settings\"\nreason = \"test\"\n";
    if on_citus() {
        // On a coordinator a declared global table must be a reference table.
        let r = verify_flawed(SETTINGS, global);
        assert_finding(
            &r,
            "TI026",
            "attestor.settings",
            "declared global but not a reference table: the shards on the workers cannot join or reference it",
        );
        assert_only(&r, &["TI026"]);
        let r = verify_flawed_steps(
            &[SETTINGS, "SELECT create_reference_table('attestor.settings')"],
            global,
        );
        assert!(r.is_clean(), "{}", show(&r));
        return;
    }
    let r = verify_flawed(SETTINGS, global);
    assert!(r.is_clean(), "{}", show(&r));
}

// --- check 10 -------------------------------------------------------------------

#[test]
fn flaw_privilege_on_another_schema() {
    let r = verify_flawed(
        "CREATE SCHEMA billing; REVOKE ALL ON SCHEMA billing FROM PUBLIC;
         GRANT USAGE ON SCHEMA billing TO attestor_app",
        "",
    );
    assert_finding(
        &r,
        "TI017",
        "role attestor_app",
        "holds USAGE on schema billing outside module attestor",
    );
    assert_only(&r, &["TI017"]);
}

// --- check 11 -------------------------------------------------------------------

#[test]
fn flaw_global_table_references_a_tenant_table() {
    let flaw = "SET ROLE attestor_owner;
         CREATE TABLE attestor.envelope_index (
             id uuid PRIMARY KEY, owner_tenant uuid NOT NULL, envelope uuid NOT NULL,
             CONSTRAINT envelope_index_envelope_fkey FOREIGN KEY (owner_tenant, envelope)
                 REFERENCES attestor.dsse_envelopes (tenant_id, id));
         RESET ROLE";
    let r = verify_flawed(
        flaw,
        "[[global_table]]\nmodule = \"attestor\"\ntable = \"envelope_index\"\nreason = \"test\"\n",
    );
    assert_finding(
        &r,
        "TI018",
        "attestor.envelope_index",
        "global table references tenant table attestor.dsse_envelopes through envelope_index_envelope_fkey: \
         a reference table cannot point into a distributed table",
    );
    if on_citus() {
        // On a coordinator the table is also not the reference table a
        // global table must be, and it cannot become one: Citus refuses what
        // TI018 says.
        assert_finding(
            &r,
            "TI026",
            "attestor.envelope_index",
            "declared global but not a reference table: the shards on the workers cannot join or reference it",
        );
        assert_only(&r, &["TI018", "TI026"]);
        let refused = citus_refuses(&[flaw, "SELECT create_reference_table('attestor.envelope_index')"]);
        assert!(
            refused.contains(
                "cannot create foreign key constraint since foreign keys from reference tables and local tables \
                 to distributed tables are not supported"
            ),
            "{refused}"
        );
        return;
    }
    assert_only(&r, &["TI018"]);
}

// --- dynamic --------------------------------------------------------------------

#[test]
fn flaw_table_the_generator_cannot_fill_is_a_finding() {
    let r = verify_flawed(
        "ALTER TABLE attestor.trust_anchors ADD CONSTRAINT trust_anchors_key_id_format
             CHECK (key_id ~ '^[A-Z]{3}-[0-9]+$') NOT VALID",
        "",
    );
    assert_finding_starts(
        &r,
        "TD001",
        "attestor.trust_anchors",
        "cannot fill the table with valid rows, so isolation is unproven: cannot satisfy CHECK \
         trust_anchors_key_id_format",
    );
    assert_only(&r, &["TD"]);
}

#[test]
fn flaw_policy_for_the_wrong_tenant_column_is_proven_leaky() {
    // Canonical names and roles, but USING lets B read A's rows: checks 2 and dyn.
    // (A plain INSERT for A is still refused here, by audit_log's policy on the
    // audit row the trigger writes; ON CONFLICT DO UPDATE gets through.)
    let drop = "DROP POLICY rekor_entries_tenant_isolation ON attestor.rekor_entries";
    let sub_select =
        "CREATE POLICY rekor_entries_tenant_isolation ON attestor.rekor_entries FOR ALL TO attestor_app
         USING ((SELECT attestor_app.require_current_tenant()) IS NOT NULL)
         WITH CHECK ((SELECT attestor_app.require_current_tenant()) IS NOT NULL)";
    let r = if on_citus() {
        // Citus refuses this policy's sub-select on a distributed table, and
        // an IS NOT NULL in a policy too (Citus 14.0: "unrecognized node
        // type: 15"); a clause without a column fails every statement on the
        // shards ("cannot cope with variable-free clause"). The same leak in
        // a form Citus takes is what can exist there: true for every row once
        // a tenant is set (the helper raises when it is not), whatever the
        // row's tenant_id.
        let refused = citus_refuses(&[drop, sub_select]);
        assert!(
            refused.contains("unexpected non-SELECT command in SubLink"),
            "{refused}"
        );
        let refused = citus_refuses(&[
            drop,
            "CREATE POLICY rekor_entries_tenant_isolation ON attestor.rekor_entries FOR ALL TO attestor_app
                 USING (attestor_app.require_current_tenant() IS NOT NULL)",
        ]);
        assert!(refused.contains("unrecognized node type"), "{refused}");
        verify_flawed_steps(
            &[
                drop,
                "CREATE POLICY rekor_entries_tenant_isolation ON attestor.rekor_entries FOR ALL TO attestor_app
                     USING (tenant_id = attestor_app.require_current_tenant()
                            OR tenant_id <> attestor_app.require_current_tenant())
                     WITH CHECK (tenant_id = attestor_app.require_current_tenant()
                            OR tenant_id <> attestor_app.require_current_tenant())",
            ],
            "",
        )
    } else {
        verify_flawed_steps(&[drop, sub_select], "")
    };
    for (probe, message) in [
        ("TD002", "A's rows are invisible to B: succeeded (1 rows)"),
        ("TD003", "A's row is invisible by its key: succeeded (1 rows)"),
        ("TD005", "UPDATE of A's rows touches nothing: succeeded (1 rows)"),
        (
            "TD010",
            "INSERT … ON CONFLICT DO UPDATE on A's key is refused: succeeded (1 rows)",
        ),
    ] {
        assert_finding(&r, probe, "attestor.rekor_entries", message);
    }
    if on_citus() {
        assert_finding_starts(
            &r,
            "TI002",
            "attestor.rekor_entries",
            "policy rekor_entries_tenant_isolation is not the generated one: ",
        );
        // No sub-select, so nothing for the readiness rule.
        assert_only(&r, &["TI002", "TD"]);
    } else {
        assert_only(&r, &["TI002", "TI018", "TD"]);
    }
}

// --- gen-rls --------------------------------------------------------------------

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_new_tenant_table_gets_its_policy_from_gen_rls() {
    let tmp = TempDir(std::env::temp_dir().join(format!("xtask-genrls-{}", std::process::id())));
    let migrations = tmp.0.join("migrations");
    copy_dir(&root().join("migrations"), &migrations);
    // A version after every real migration, so the new table's migration is
    // the last one and the generated migration goes right after it.
    let widgets = migrations.join("2099-01-01-000099_widgets");
    std::fs::create_dir_all(&widgets).unwrap();
    std::fs::write(
        widgets.join("up.sql"),
        "CREATE TABLE attestor.widgets (
             id uuid NOT NULL DEFAULT gen_random_uuid(),
             tenant_id uuid NOT NULL,
             created_at timestamptz NOT NULL DEFAULT now(),
             updated_at timestamptz NOT NULL DEFAULT now(),
             envelope_id uuid NOT NULL,
             colour text NOT NULL,
             weight_grams integer NOT NULL,
             CONSTRAINT widgets_pkey PRIMARY KEY (tenant_id, id),
             CONSTRAINT widgets_envelope_id_fkey FOREIGN KEY (tenant_id, envelope_id)
                 REFERENCES attestor.dsse_envelopes (tenant_id, id),
             CONSTRAINT widgets_colour_check CHECK (colour IN ('red', 'green')),
             CONSTRAINT widgets_weight_grams_check CHECK (weight_grams > 10)
         );
         CREATE INDEX widgets_envelope_id_idx ON attestor.widgets (tenant_id, envelope_id);
         CREATE TRIGGER set_updated_at BEFORE UPDATE ON attestor.widgets
             FOR EACH ROW EXECUTE FUNCTION attestor_app.set_updated_at();
         GRANT SELECT, INSERT, UPDATE, DELETE ON attestor.widgets TO attestor_app;
         ALTER TABLE attestor.widgets OWNER TO attestor_owner;\n",
    )
    .unwrap();
    std::fs::write(widgets.join("down.sql"), "DROP TABLE attestor.widgets;\n").unwrap();
    let inputs = GenInputs {
        migrations: migrations.clone(),
        config_path: workspace_config_path(),
        modules: workspace_modules(),
    };
    let server = shared();

    // --check fails before, naming the table.
    let drifts = gen_plan(&inputs);
    assert_eq!(drifts.len(), 1, "{drifts:?}");
    assert_eq!(drifts[0].migration, "2099-01-01-000100_rls");
    assert_eq!(drifts[0].tables, vec!["attestor.widgets".to_owned()]);

    // Before gen-rls, verify-rls fails on the table too.
    let name = format!("attestor_genrls_test_{}", std::process::id());
    server.drop_database(&name).unwrap();
    {
        // As in `gen_plan`.
        let _roles = roles_read();
        server.create_database(&name, Some("template0")).unwrap();
    }
    // Every migration but the generated one, which comes later.
    server
        .migrate(
            &name,
            generate::MigrationsBefore::new(&migrations, Some("2099-01-01-000100_rls")).unwrap(),
        )
        .unwrap();
    if on_citus() {
        // As an operator's database has it: distributed before the new
        // policy migration arrives (`cargo xtask db up` distributes after
        // migrating), so the migration's DDL reaches distributed tables.
        let distributed = server.distribute(&name).unwrap();
        assert!(
            distributed.iter().any(|o| o == "attestor.widgets"),
            "{distributed:?}"
        );
    }
    let before = verify_as_operator(server, &name, "");
    assert_finding(
        &before,
        "TI001",
        "attestor.widgets",
        "row level security is not enabled",
    );
    assert_finding(
        &before,
        "TI002",
        "attestor.widgets",
        "policy widgets_tenant_isolation is missing",
    );

    // gen-rls writes a migration covering exactly the new table ...
    let written = generate::write(&inputs, &drifts).unwrap();
    assert_eq!(written, vec![migrations.join("2099-01-01-000100_rls")]);
    let up = std::fs::read_to_string(migrations.join("2099-01-01-000100_rls/up.sql")).unwrap();
    assert!(
        up.contains("ALTER TABLE attestor.widgets FORCE ROW LEVEL SECURITY;"),
        "{up}"
    );
    assert!(
        up.contains("CREATE POLICY widgets_tenant_isolation ON attestor.widgets"),
        "{up}"
    );
    assert!(!up.contains("dsse_envelopes"), "only the delta: {up}");
    // Past DDL_AS_MIGRATOR_SINCE, like the table's migration: no role switch,
    // and each file is one statement. The server's own parser says so: the
    // extended protocol refuses a query string of several commands ("cannot
    // insert multiple commands into a prepared statement"), the refusal
    // Citus meets when it sends a distributed table's DDL to the shards.
    assert!(!up.contains("SET LOCAL ROLE"), "{up}");
    let down = std::fs::read_to_string(migrations.join("2099-01-01-000100_rls/down.sql")).unwrap();
    {
        use diesel::connection::SimpleConnection;
        use diesel::RunQueryDsl;
        let mut admin = server.connect_admin(&name).unwrap();
        let several = diesel::sql_query("SELECT 1; SELECT 2").execute(&mut admin);
        assert!(
            several
                .expect_err("the extended protocol takes one command")
                .to_string()
                .contains("cannot insert multiple commands into a prepared statement"),
            "the check below could not fail"
        );
        for (file, sql) in [("up.sql", &up), ("down.sql", &down)] {
            admin.batch_execute("BEGIN").unwrap();
            if file == "down.sql" {
                // down.sql drops what up.sql made.
                admin.batch_execute(&up).unwrap();
            }
            diesel::sql_query(sql.as_str())
                .execute(&mut admin)
                .unwrap_or_else(|e| panic!("{file} is not one statement: {e}\n{sql}"));
            admin.batch_execute("ROLLBACK").unwrap();
        }
    }
    // ... after which --check passes and the output is stable.
    assert!(gen_plan(&inputs).is_empty());

    // Applying it makes verify-rls pass, with the new table proven isolated.
    server
        .migrate(&name, generate::MigrationsBefore::new(&migrations, None).unwrap())
        .unwrap();
    let after = verify_as_operator(server, &name, "");
    assert!(after.is_clean(), "{}", show(&after));
    assert!(after.proofs.contains_key("attestor.widgets"));

    // Its down.sql reverts it: the catalog is back to the state before (on
    // a coordinator too, the table distributed).
    {
        use diesel_migrations::MigrationHarness;
        let _lock = attestor_testdb::server::migration_lock();
        let mut conn = server.connect_admin(&name).unwrap();
        conn.revert_last_migration(generate::MigrationsBefore::new(&migrations, None).unwrap())
            .unwrap();
    }
    let reverted = verify_as_operator(server, &name, "");
    assert_finding(
        &reverted,
        "TI002",
        "attestor.widgets",
        "policy widgets_tenant_isolation is missing",
    );
    server.drop_database(&name).unwrap();
}

#[test]
fn gen_rls_check_names_a_stale_generated_migration() {
    let tmp = TempDir(std::env::temp_dir().join(format!("xtask-genrls-stale-{}", std::process::id())));
    let migrations = tmp.0.join("migrations");
    copy_dir(&root().join("migrations"), &migrations);
    // Hand-edit the last generated migration: drop its first policy.
    let dirs = generate::migration_dirs(&migrations).unwrap();
    let generated = dirs
        .iter()
        .rfind(|d| d.generated)
        .expect("a generated migration")
        .path
        .clone();
    let up = std::fs::read_to_string(generated.join("up.sql")).unwrap();
    let start = up.find("CREATE POLICY ").unwrap();
    let table = up[start..]
        .split(" ON ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();
    let end = start + up[start..].find(");\n").unwrap() + 3;
    std::fs::write(
        generated.join("up.sql"),
        format!("{}{}", &up[..start], &up[end..]),
    )
    .unwrap();
    let inputs = GenInputs {
        migrations: migrations.clone(),
        config_path: workspace_config_path(),
        modules: workspace_modules(),
    };
    let drifts = gen_plan(&inputs);
    assert_eq!(
        drifts.len(),
        1,
        "{:?}",
        drifts
            .iter()
            .map(|d| (&d.migration, &d.tables))
            .collect::<Vec<_>>()
    );
    assert!(drifts[0].tables.contains(&table), "{:?}", drifts[0].tables);
}

// --- the proof as the real login roles ------------------------------------------

/// The login roles' URLs only: no superuser, no owner session.
fn verify_without_superuser(db: &attestor_testdb::TestDatabase<'_>) -> Report {
    let target = rls::Target {
        app_url: Some(db.app_url()),
        worker_url: Some(db.worker_url()),
        owner_url: None,
    };
    let _roles = roles_read();
    rls::verify_target(&target, &options("")).unwrap()
}

#[test]
fn the_login_roles_alone_prove_the_project_schema() {
    let db = shared().test_database().unwrap();
    let r = verify_without_superuser(&db);
    assert!(r.is_clean(), "{}", show(&r));
    assert_eq!(
        r.proofs.keys().filter(|k| k.starts_with("attestor.")).count(),
        8,
        "{:?}",
        r.proofs.keys()
    );
    assert!(
        r.sessions.iter().all(|s| s.contains("login session")),
        "{:?}",
        r.sessions
    );
}

#[test]
fn a_table_the_app_cannot_write_is_reported_as_not_run_not_passed() {
    let db = shared().test_database().unwrap();
    Db::connect(&db.admin_url())
        .unwrap()
        .exec("REVOKE INSERT ON attestor.trust_anchors FROM attestor_app")
        .unwrap();
    // Not run, never passed and never a finding, for the reason given.
    let unproven = |r: &Report, reason: &str| {
        assert!(r.findings.is_empty(), "{}", show(r));
        assert_eq!(r.verdict(), rls::report::Verdict::Incomplete);
        assert_eq!(r.verdict().exit_code(), 3);
        let n = r
            .not_run
            .iter()
            .find(|n| n.object == "attestor.trust_anchors")
            .unwrap_or_else(|| panic!("{}", show(r)));
        assert!(n.reason.contains(reason), "{}", n.reason);
        let proven = r
            .proofs
            .get("attestor.trust_anchors")
            .cloned()
            .unwrap_or_default();
        assert!(!proven.contains(&"TD002"), "{proven:?}");
    };
    unproven(
        &verify_without_superuser(&db),
        "attestor_app holds no INSERT on it",
    );
    // With an owner session the rows are written there and the proof completes.
    let target = rls::Target {
        app_url: Some(db.app_url()),
        worker_url: Some(db.worker_url()),
        owner_url: Some(db.admin_url()),
    };
    let r = {
        let _roles = roles_read();
        rls::verify_target(&target, &options("")).unwrap()
    };
    if on_citus() {
        // Not on a Citus coordinator: there the owner session writes the
        // rows as the app (by SET ROLE; Citus refuses the app's reads of
        // shard placements the superuser wrote in the same transaction), and
        // the app holds no INSERT, so the rows stay unwritten: not run, as
        // without an owner session, never passed and never a finding.
        unproven(&r, "the owner session writes them as attestor_app");
        return;
    }
    assert!(r.is_clean(), "{}", show(&r));
    assert!(r.proofs["attestor.trust_anchors"].contains(&"TD002"));
}

/// `ALTER ROLE attestor_app SET app.tenant_id = '…'`: every app connection
/// that forgets its tenant gets one. A proof that switches roles from a
/// superuser session never sees role settings; the login sessions do.
#[test]
fn flaw_a_role_default_tenant_is_caught_by_the_login_sessions() {
    // Role settings are cluster-wide: plant it in a cluster of this test's
    // own (or, on a DATABASE_URL server, for this test's database only).
    let own;
    let server = if std::env::var_os("DATABASE_URL").is_none() {
        own = attestor_testdb::Server::embedded(&Default::default()).unwrap();
        &own
    } else {
        shared()
    };
    let db = server.test_database().unwrap();
    let tenant = "0b3c5c1e-8f4e-4c59-9d4e-2f1a6f3b9a10";
    let scope = if server.cluster().is_some() {
        String::new()
    } else {
        format!(" IN DATABASE {}", db.name())
    };
    Db::connect(&db.admin_url())
        .unwrap()
        .exec(&format!(
            "ALTER ROLE attestor_app{scope} SET app.tenant_id = '{tenant}'"
        ))
        .unwrap();
    // Switching roles from the superuser session: the probes never see the
    // default, only the catalog rule that reads the role's settings does.
    let old = {
        let _roles = roles_read();
        rls::verify(&db.admin_url(), &options("")).unwrap()
    };
    assert_finding_starts(
        &old,
        "TI021",
        "role attestor_app",
        &format!("a session that forgets its tenant context still gets one: app.tenant_id defaults to \"{tenant}\""),
    );
    assert_only(&old, &["TI021"]);
    assert!(
        old.not_run
            .iter()
            .any(|n| n.rule == "TD018" && n.object == "role attestor_app"),
        "{}",
        show(&old)
    );
    // The login sessions see it.
    let r = verify_as_operator(server, db.name(), "");
    assert_finding(
        &r,
        "TD018",
        "role attestor_app",
        &format!(
            "a fresh login session has no tenant: the helper raises AT001: app.tenant_id is \"{tenant}\" when \
             the session starts; the helper succeeded (1 rows)"
        ),
    );
    for table in [
        "attestor.dsse_envelopes",
        "attestor.audit_log",
        "attestor.rekor_submission_queue",
    ] {
        assert_finding_starts(
            &r,
            "TD011",
            table,
            "SELECT without a tenant fails with AT001: succeeded",
        );
    }
    assert_only(&r, &["TD", "TI021"]);
    if !scope.is_empty() {
        Db::connect(&db.admin_url())
            .unwrap()
            .exec(&format!("ALTER ROLE attestor_app{scope} RESET app.tenant_id"))
            .unwrap();
    }
}
