//! The installed binary as an operator runs it: `rules`, `explain`, and
//! `verify` with only the login roles' URLs, its exit statuses (0 clean,
//! 1 findings, 2 could not run, 3 incomplete), a planted flaw's rule id in
//! the human, JSON and SARIF output, and the SARIF validated against the
//! SARIF 2.1.0 JSON schema kept in `tests/schema/`.

use std::path::Path;
use std::process::{Command, Output};

use attestor_rls::db::Db;
use attestor_testdb::{shared, TestDatabase};

fn bin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_attestor-rls"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("an exit code")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `verify` with the login roles' URLs only (no superuser, no owner).
fn verify(db: &TestDatabase<'_>, format: &str) -> Output {
    bin(&[
        "verify",
        "--app-url",
        &db.app_url(),
        "--worker-url",
        &db.worker_url(),
        "--format",
        format,
        "--migrations",
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../migrations")
            .to_str()
            .unwrap(),
    ])
}

fn flawed(sql: &str) -> TestDatabase<'static> {
    let db = shared().test_database().unwrap();
    Db::connect(&db.admin_url()).unwrap().exec(sql).unwrap();
    db
}

fn sarif_validator() -> jsonschema::Validator {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schema/sarif-schema-2.1.0.json"),
        )
        .unwrap(),
    )
    .unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

#[track_caller]
fn assert_valid_sarif(text: &str) -> serde_json::Value {
    let doc: serde_json::Value = serde_json::from_str(text).unwrap();
    let v = sarif_validator();
    let errors: Vec<String> = v
        .iter_errors(&doc)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "SARIF does not validate:\n{}",
        errors.join("\n")
    );
    doc
}

#[test]
fn rules_lists_every_rule_and_explain_prints_one() {
    let o = bin(&["rules"]);
    assert_eq!(code(&o), 0);
    for r in attestor_rls::rules::ALL {
        assert!(stdout(&o).contains(r.id), "{} missing from `rules`", r.id);
    }
    let o = bin(&["explain", "ti018"]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).starts_with("TI018 citus-ready"), "{}", stdout(&o));
    assert!(stdout(&o).contains("Fix: "), "{}", stdout(&o));
    assert_eq!(code(&bin(&["explain", "TI999"])), 2);
}

#[test]
fn the_clean_schema_exits_0_with_only_the_login_roles() {
    let db = shared().test_database().unwrap();
    let o = verify(&db, "human");
    assert_eq!(
        code(&o),
        0,
        "{}{}",
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout(&o).contains("clean: 0 findings"), "{}", stdout(&o));
    let o = verify(&db, "json");
    assert_eq!(code(&o), 0);
    let json: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(json["format"], "attestor-rls-report");
    assert_eq!(json["version"], 1);
    assert_eq!(json["verdict"], "clean");
    let o = verify(&db, "sarif");
    assert_eq!(code(&o), 0);
    let mut doc = assert_valid_sarif(&stdout(&o));
    assert_eq!(doc["runs"][0]["results"].as_array().unwrap().len(), 0);
    // The validator does reject what the schema forbids.
    doc["runs"][0]["results"] =
        serde_json::json!([{"ruleId": "TI001", "level": "fatal", "message": {"text": "x"}}]);
    assert!(
        !sarif_validator().is_valid(&doc),
        "a level outside the schema's enum must not validate"
    );
    assert_eq!(
        doc["runs"][0]["tool"]["driver"]["rules"]
            .as_array()
            .unwrap()
            .len(),
        attestor_rls::rules::ALL.len()
    );
}

#[test]
fn a_planted_flaw_exits_1_with_its_rule_id_in_every_format() {
    let db = flawed("ALTER TABLE attestor.spines NO FORCE ROW LEVEL SECURITY");
    let o = verify(&db, "human");
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    assert!(
        stdout(&o).contains("TI001 rls-enabled")
            && stdout(&o).contains("attestor.spines: row level security is not forced"),
        "{}",
        stdout(&o)
    );
    let o = verify(&db, "json");
    assert_eq!(code(&o), 1);
    let json: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(json["verdict"], "findings");
    assert_eq!(json["findings"][0]["rule"], "TI001");
    assert_eq!(json["findings"][0]["rule_name"], "rls-enabled");
    assert_eq!(json["findings"][0]["object"], "attestor.spines");
    let o = verify(&db, "sarif");
    assert_eq!(code(&o), 1);
    let doc = assert_valid_sarif(&stdout(&o));
    let result = &doc["runs"][0]["results"][0];
    assert_eq!(result["ruleId"], "TI001");
    assert_eq!(result["level"], "error");
    let loc = &result["locations"][0];
    assert_eq!(
        loc["logicalLocations"][0]["fullyQualifiedName"],
        "attestor.spines"
    );
    assert_eq!(
        loc["physicalLocation"]["artifactLocation"]["uri"],
        "migrations/2026-11-28-000003_tables/up.sql"
    );
    assert!(loc["physicalLocation"]["region"]["startLine"].as_u64().unwrap() > 1);
}

#[test]
fn a_proof_that_could_not_run_exits_3_and_says_why() {
    let db = flawed("REVOKE INSERT ON attestor.trust_anchors FROM attestor_app");
    let o = verify(&db, "human");
    assert_eq!(code(&o), 3, "{}", stdout(&o));
    assert!(
        stdout(&o).contains("attestor.trust_anchors: not run: "),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("incomplete: 0 findings"), "{}", stdout(&o));
    let o = verify(&db, "sarif");
    assert_eq!(code(&o), 3);
    let doc = assert_valid_sarif(&stdout(&o));
    assert_eq!(doc["runs"][0]["results"][0]["level"], "warning");
}

#[test]
fn a_database_it_cannot_reach_exits_2() {
    let db = shared().test_database().unwrap();
    let bad = db.app_url().replace(db.name(), "attestor_no_such_database");
    let o = bin(&["verify", "--app-url", &bad]);
    assert_eq!(code(&o), 2, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("could not run"));
    // A URL of the wrong role is refused, not verified.
    let o = bin(&["verify", "--app-url", &db.worker_url()]);
    assert_eq!(code(&o), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("expected the login role attestor_app"));
}
