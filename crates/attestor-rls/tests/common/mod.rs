//! Helpers shared by the verify-rls test files: the workspace's modules and
//! exceptions, a flawed copy of the migrated template, the operator's run
//! (the login sessions plus the superuser as owner session), and assertions
//! on findings by rule id.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use attestor_rls::db::Db;
use attestor_rls::{self as rls, Config, Report, VerifyOptions};
use attestor_testdb::shared;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn workspace_config_path() -> PathBuf {
    root().join("rls.toml")
}

pub fn workspace_modules() -> Vec<rls::Module> {
    rls::modules_from_file(&root().join("diesel.toml")).unwrap()
}

pub fn options(extra_config: &str) -> VerifyOptions {
    let base = std::fs::read_to_string(workspace_config_path()).unwrap_or_default();
    VerifyOptions {
        modules: workspace_modules(),
        config: Config::parse(&format!("{base}\n{extra_config}")).unwrap(),
        dynamic: true,
    }
}

/// Clone the migrated template, apply `flaw` as the superuser, verify.
/// Role grants are cluster-wide: a test that grants a role to a runtime role
/// holds this for writing, every verification in the same test binary holds
/// it for reading, so no verification sees another test's grant.
pub static CLUSTER_ROLES: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// A verification's share of [`CLUSTER_ROLES`].
pub fn roles_read() -> std::sync::RwLockReadGuard<'static, ()> {
    CLUSTER_ROLES.read().unwrap_or_else(|p| p.into_inner())
}

/// A cluster-wide role change's exclusive hold of [`CLUSTER_ROLES`].
pub fn roles_write() -> std::sync::RwLockWriteGuard<'static, ()> {
    CLUSTER_ROLES.write().unwrap_or_else(|p| p.into_inner())
}

/// The operator's run on a fresh database after `flaw` (SQL, run as the
/// superuser; empty for none).
pub fn verify_flawed(flaw: &str, extra_config: &str) -> Report {
    let steps: &[&str] = if flaw.is_empty() { &[] } else { &[flaw] };
    verify_flawed_steps(steps, extra_config)
}

/// [`verify_flawed`] with the flaw as separate statements, each sent on its
/// own (the same end state on plain PostgreSQL). On a Citus coordinator a
/// policy's DDL on a distributed table goes to the shards with the text the
/// client sent, which Citus refuses when it holds more than one command
/// ("cannot insert multiple commands into a prepared statement").
pub fn verify_flawed_steps(steps: &[&str], extra_config: &str) -> Report {
    let server = shared();
    let db = server.test_database().unwrap();
    if !steps.is_empty() {
        let mut admin = Db::connect(&db.admin_url()).unwrap();
        for step in steps {
            admin.exec(step).unwrap();
        }
    }
    verify_as_operator(db.server(), db.name(), extra_config)
}

/// The operator's run: the app's and the worker's login sessions, plus the
/// superuser as the owner session (used only where the app cannot write).
pub fn verify_as_operator(server: &attestor_testdb::Server, database: &str, extra_config: &str) -> Report {
    let _roles = roles_read();
    let target = rls::Target {
        app_url: Some(server.role("attestor_app", database).url()),
        worker_url: Some(server.role("attestor_worker", database).url()),
        owner_url: Some(server.admin(database).url()),
    };
    rls::verify_target(&target, &options(extra_config)).unwrap()
}

pub fn show(r: &Report) -> String {
    r.listing()
}

#[track_caller]
pub fn assert_finding(r: &Report, rule: &str, object: &str, message: &str) {
    assert!(
        r.findings
            .iter()
            .any(|f| f.rule == rule && f.object == object && f.message == message),
        "expected [{rule}] {object}: {message}\nfound:\n{}",
        show(r)
    );
    assert!(
        r.findings.iter().all(|f| !f.fix.is_empty()),
        "every finding has a fix"
    );
}

#[track_caller]
pub fn assert_finding_starts(r: &Report, rule: &str, object: &str, prefix: &str) {
    assert!(
        r.findings
            .iter()
            .any(|f| f.rule == rule && f.object == object && f.message.starts_with(prefix)),
        "expected [{rule}] {object}: {prefix}…\nfound:\n{}",
        show(r)
    );
}

/// Every finding belongs to one of `rules` (an id, or a prefix such as `TD`
/// for every probe): the flaw fires nothing else.
#[track_caller]
pub fn assert_only(r: &Report, rules: &[&str]) {
    let other: Vec<_> = r
        .findings
        .iter()
        .filter(|f| !rules.iter().any(|p| f.rule.starts_with(p)))
        .collect();
    assert!(other.is_empty(), "unexpected findings:\n{}", show(r));
}
