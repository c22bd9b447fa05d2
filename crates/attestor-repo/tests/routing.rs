//! Every repository statement carries the explicit `tenant_id = $n` of the
//! transaction's tenant, so that on Citus it routes to the one shard that
//! holds the tenant (Row-Level Security stays the enforcement; the
//! predicate is the routing hint).
//!
//! `every_repository_statement_routes_to_its_tenant` runs every repository
//! function (both branches of the idempotent ones, a second page of every
//! list) in transactions that record each statement's plan
//! (`TenantTx::record_plans`), checks that every statement the sources
//! declare was explained, that its SQL names `tenant_id` for every tenant
//! table it touches, and then its plan: on plain PostgreSQL every scan of a
//! tenant table compares `tenant_id` with the tenant's own value (a
//! constant the planner got from the bound parameter; the policy's
//! comparison is with a function of a setting, never a constant) and every
//! insert writes it; on a Citus coordinator (the Citus lane, or
//! `DATABASE_URL` naming one) every statement on a tenant table is one
//! Citus scan with `Task Count` 1, and a statement on no table is not
//! distributed at all.
//!
//! `repository_sources_run_sql_only_through_scoped_statements` reads the
//! repository modules' sources: no statement runs on `TenantTx::conn`, and
//! every table is named only inside a `Scope` constructor.

mod common;

use std::collections::BTreeSet;

use attestor_repo::audit_log::AuditFilter;
use attestor_repo::verdict_ledger::{Decision, NewVerdict};
use attestor_repo::{
    audit_log, dsse_envelopes, rekor_entries, sbom_entries, spines, trust_anchors, verdict_ledger,
    PageRequest, StatementPlan, TenantId,
};
use chrono::{DateTime, Utc};
use common::gen::*;
use common::*;
use serde_json::{json, Value};

fn ts(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap()
}

/// The repository modules: every `src/*.rs` that uses the generated schema,
/// except the statement runner itself. (file stem, source)
fn repository_sources() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        if stem != "statement" && text.contains("attestor_schema::schema") {
            out.push((stem, text));
        }
    }
    out.sort();
    assert!(
        out.len() >= 7,
        "repository modules not found in {}",
        dir.display()
    );
    out
}

/// The part of a source before its `#[cfg(test)]` module.
fn non_test(source: &str) -> &str {
    source.split("#[cfg(test)]").next().unwrap()
}

/// The statement names a module declares: its string literals `"<module>::<name>"`.
fn declared_in(stem: &str, source: &str) -> Vec<String> {
    let prefix = format!("\"{stem}::");
    let mut out = Vec::new();
    let mut rest = non_test(source);
    while let Some(i) = rest.find(&prefix) {
        let after = &rest[i + 1..];
        let end = after.find('"').unwrap();
        out.push(after[..end].to_owned());
        rest = &after[end..];
    }
    out
}

fn declared_statements() -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for (stem, source) in repository_sources() {
        for name in declared_in(&stem, &source) {
            assert!(all.insert(name.clone()), "statement name {name} is used twice");
        }
    }
    all
}

/// Runs `f` in a transaction of `t` that records plans; returns the plans.
async fn recorded<F>(db: &attestor_repo::Database, t: TenantId, f: F) -> Vec<StatementPlan>
where
    F: for<'r> FnOnce(
            &'r mut attestor_repo::TenantTx,
        ) -> attestor_repo::scoped_futures::ScopedBoxFuture<
            'static,
            'r,
            Result<(), attestor_repo::RepoError>,
        > + Send
        + 'static,
{
    use attestor_repo::scoped_futures::ScopedFutureExt as _;
    tx(db, t, move |tx| {
        async move {
            tx.record_plans();
            f(tx).await?;
            Ok(tx.take_plans())
        }
        .scope_boxed()
    })
    .await
    .unwrap()
}

macro_rules! recorded {
    ($db:expr, $t:expr, |$tx:ident| $body:block) => {
        recorded(&$db, $t, move |$tx| {
            attestor_repo::scoped_futures::ScopedFutureExt::scope_boxed(async move { $body })
        })
        .await
    };
}

/// Every repository function, every branch that runs a statement of its own.
async fn exercise(db: &attestor_repo::Database, t: TenantId) -> Vec<StatementPlan> {
    let mut plans = Vec::new();
    let env_bytes = intoto_envelope("https://example.com/p", &sha256_hex(b"x"), json!({"k": 1}), false);
    let env_value: Value = serde_json::from_slice(&env_bytes).unwrap();
    let response = rekor_v1_response(&rekor_body(&env_bytes), 1000, 13, 7, false);
    let bundled = bundle(&env_value, 2000, 9, 8, false);
    let cdx = cyclonedx(2);
    plans.extend(recorded!(db, t, |tx| {
        let env = dsse_envelopes::ingest(tx, &env_bytes).await?.row;
        assert!(!dsse_envelopes::ingest(tx, &env_bytes).await?.created);
        dsse_envelopes::get(tx, env.id).await?;
        dsse_envelopes::find_by_subject_digest(
            tx,
            &format!("sha256:{}", sha256_hex(b"x")),
            PageRequest::first(1),
        )
        .await?;
        dsse_envelopes::find_by_predicate_type(tx, "https://example.com/p", PageRequest::first(1)).await?;
        dsse_envelopes::list(tx, PageRequest::first(1)).await?;
        dsse_envelopes::list(tx, PageRequest::after(1, env.cursor())).await?;

        let entry = rekor_entries::ingest_rekor_v1_response(tx, &response, Some(env.id), &trust()).await?;
        assert!(
            !rekor_entries::ingest_rekor_v1_response(tx, &response, Some(env.id), &trust())
                .await?
                .created
        );
        rekor_entries::ingest_bundle_with_envelope(tx, &bundled, &trust()).await?;
        rekor_entries::get(tx, entry.row.id).await?;
        rekor_entries::find_by_envelope(tx, env.id).await?;
        rekor_entries::list(tx, PageRequest::first(1)).await?;
        rekor_entries::list(tx, PageRequest::after(1, entry.row.cursor())).await?;

        let sbom = sbom_entries::ingest(tx, &cdx).await?.row;
        assert!(!sbom_entries::ingest(tx, &cdx).await?.created);
        sbom_entries::get(tx, sbom.id).await?;
        sbom_entries::list(tx, PageRequest::after(1, sbom.cursor())).await?;

        let new = spines::NewSpine {
            sbom_entry_id: Some(sbom.id),
            evidence_ids: vec!["ev-1".into()],
            reasoning_id: None,
            vex_verdict_id: None,
            policy_version: "policy@1".into(),
            segments: vec![json!({"kind": "sbom"})],
        };
        let spine = spines::create(tx, &new).await?.row;
        assert!(!spines::create(tx, &new).await?.created);
        spines::get(tx, spine.id).await?;
        spines::list(tx, PageRequest::after(1, spine.cursor())).await?;

        let anchor = trust_anchors::create(
            tx,
            &trust_anchors::NewTrustAnchor {
                key_id: "key-1".into(),
                algorithm: "ed25519".into(),
                public_key: random_bytes(44),
                purl_pattern: None,
                allowed_predicate_types: vec![],
                valid_from: ts(1_000),
                valid_until: None,
            },
        )
        .await?;
        trust_anchors::find_active(tx, "key-1", ts(1_500)).await?;
        trust_anchors::revoke(tx, anchor.id, ts(2_000)).await?;
        trust_anchors::list(tx, PageRequest::after(1, anchor.cursor())).await?;
        let log = test_log();
        trust_anchors::create_log_key(
            tx,
            &trust_anchors::NewLogKey {
                base_url: log.log.base_url.clone(),
                log_id: log.log.log_id.clone(),
                algorithm: log.log.key.algorithm().to_owned(),
                public_key: log.log.spki_der.clone(),
                valid_from: ts(1_000),
                valid_until: None,
            },
        )
        .await?;
        trust_anchors::transparency_logs(tx).await?;

        for i in 0..2u8 {
            verdict_ledger::append(
                tx,
                &NewVerdict {
                    subject_digest: format!("sha256:{}", sha256_hex(&[i])),
                    decision: Decision::Pass,
                    policy_ref: "policy@1".into(),
                    inputs: json!({"i": i}),
                },
            )
            .await?;
        }
        assert!(verdict_ledger::verify_chain(tx).await?.is_valid());
        let head = verdict_ledger::head(tx).await?.unwrap();
        verdict_ledger::get_by_seq(tx, 1).await?;
        verdict_ledger::list(tx, PageRequest::after(1, head.cursor())).await?;

        let filter = AuditFilter {
            table_name: Some("trust_anchors".into()),
            row_id: Some(anchor.id),
            action: Some("UPDATE".into()),
        };
        let audit = audit_log::list(tx, &filter, PageRequest::first(1)).await?;
        audit_log::list(
            tx,
            &AuditFilter::default(),
            PageRequest::after(1, audit.items[0].cursor()),
        )
        .await?;
        audit_log::history(tx, "trust_anchors", anchor.id).await?;
        Ok(())
    }));
    plans
}

/// The tenant tables a statement names (`"attestor"."<table>"`).
fn tables_in(sql: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = sql;
    while let Some(i) = rest.find("\"attestor\".\"") {
        let after = &rest[i + "\"attestor\".\"".len()..];
        let end = after.find('"').unwrap();
        out.insert(after[..end].to_owned());
        rest = &after[end..];
    }
    out
}

/// Every JSON object in `plan`, depth first.
fn nodes(plan: &Value) -> Vec<&serde_json::Map<String, Value>> {
    let mut out = Vec::new();
    let mut stack = vec![plan];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(m) => {
                out.push(m);
                stack.extend(m.values());
            }
            Value::Array(a) => stack.extend(a),
            _ => {}
        }
    }
    out
}

fn text(node: &serde_json::Map<String, Value>, key: &str) -> String {
    match node.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(v @ Value::Array(_)) => v.to_string(),
        _ => String::new(),
    }
}

/// Plain PostgreSQL: every scan of a tenant table compares `tenant_id` with
/// the tenant's value, every insert into one writes it.
fn pg_findings(p: &StatementPlan, t: TenantId) -> Vec<String> {
    let literal = format!("tenant_id = '{t}'::uuid");
    let value = format!("'{t}'::uuid");
    let mut findings = Vec::new();
    for node in nodes(&p.plan) {
        if node.get("Schema").and_then(Value::as_str) != Some("attestor") {
            continue;
        }
        let relation = text(node, "Relation Name");
        if node.get("Node Type").and_then(Value::as_str) == Some("ModifyTable") {
            if text(node, "Operation") == "Insert" {
                // The rows to insert: the plan's outer child (an InitPlan
                // of the policy's check may come first).
                let source = node["Plans"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["Parent Relationship"] == "Outer")
                    .and_then(|c| c.get("Output"))
                    .map(Value::to_string)
                    .unwrap_or_default();
                if !source.contains(&value) {
                    findings.push(format!(
                        "the insert into {relation} does not write {value}: {source}"
                    ));
                }
            }
            continue;
        }
        let conds: String = ["Index Cond", "Recheck Cond", "Filter"]
            .iter()
            .map(|k| text(node, k))
            .collect::<Vec<_>>()
            .join(" AND ");
        if !conds.contains(&literal) {
            findings.push(format!("the scan of {relation} has no `{literal}`: {conds}"));
        }
    }
    findings
}

/// A Citus coordinator: one Citus scan with `Task Count` 1 on a tenant
/// table, none on a statement that names no table.
fn citus_findings(p: &StatementPlan) -> Vec<String> {
    let all = nodes(&p.plan);
    let citus_scans = all
        .iter()
        .filter(|n| {
            n.get("Custom Plan Provider")
                .and_then(Value::as_str)
                .is_some_and(|s| s.starts_with("Citus"))
        })
        .count();
    let task_counts: Vec<i64> = all
        .iter()
        .filter_map(|n| n.get("Task Count").and_then(Value::as_i64))
        .collect();
    if tables_in(&p.sql).is_empty() {
        return if citus_scans == 0 {
            vec![]
        } else {
            vec![format!(
                "names no table but is distributed ({citus_scans} Citus scans)"
            )]
        };
    }
    if citus_scans == 1 && task_counts == [1] {
        vec![]
    } else {
        vec![format!(
            "{citus_scans} Citus scans with task counts {task_counts:?}, not one scan of one task"
        )]
    }
}

/// The SQL: `"<table>"."tenant_id" = $n` for every tenant table read or
/// updated; `tenant_id` the first column of an insert.
fn sql_findings(p: &StatementPlan) -> Vec<String> {
    let sql = p.sql.split(" -- binds:").next().unwrap();
    tables_in(sql)
        .into_iter()
        .filter(|table| {
            let insert = format!("INSERT INTO \"attestor\".\"{table}\" (\"tenant_id\", ");
            let qual = format!("\"{table}\".\"tenant_id\" = $");
            !(sql.starts_with(&insert) || sql.contains(&qual))
        })
        .map(|table| format!("no `tenant_id = $n` on {table}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_repository_statement_routes_to_its_tenant() {
    let tdb = test_db();
    let db = app(&tdb, 1).await;
    let citus = tdb.server().citus().is_some();
    // Another tenant's rows, so that a statement that lost its predicate
    // has something to fan out to.
    let other = TenantId::new_random();
    exercise(&db, other).await;
    let t = TenantId::new_random();
    let plans = exercise(&db, t).await;

    let seen: BTreeSet<String> = plans.iter().map(|p| p.statement.to_owned()).collect();
    assert_eq!(
        seen,
        declared_statements(),
        "every statement the repository modules declare is run (and explained) here"
    );
    let mut findings = Vec::new();
    for p in &plans {
        let mut f = sql_findings(p);
        f.extend(if citus {
            citus_findings(p)
        } else {
            pg_findings(p, t)
        });
        let sql: String = p.sql.chars().take(240).collect();
        findings.extend(f.into_iter().map(|f| format!("{}: {f}\n  {sql}", p.statement)));
    }
    assert!(
        findings.is_empty(),
        "{} of {} statements are not routed to their tenant ({}):\n{}",
        findings.len(),
        plans.len(),
        if citus { "Citus" } else { "PostgreSQL" },
        findings.join("\n")
    );
    // Recording plans changes nothing the statements do: what was written
    // is there exactly once.
    let ledger = run!(db, t, |tx| { verdict_ledger::verify_chain(tx).await }).unwrap();
    assert_eq!(ledger.entries, 2);
}

#[test]
fn repository_sources_run_sql_only_through_scoped_statements() {
    let forbidden = [
        ".conn()",
        "RunQueryDsl",
        "diesel::insert_into",
        "diesel::update",
        "diesel::delete",
        "sql_query",
    ];
    let starts = ["s.table(", "s.insert(", "s.update("];
    let mut findings = Vec::new();
    for (stem, source) in repository_sources() {
        let code = non_test(&source);
        for f in forbidden {
            if code.contains(f) {
                findings.push(format!("{stem}.rs: `{f}` (run statements with tx.statement(…))"));
            }
        }
        // Every `<table>::table` is the argument of a Scope constructor.
        let mut at = 0;
        while let Some(i) = code[at..].find("::table") {
            let i = at + i;
            at = i + "::table".len();
            if code[at..].starts_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue;
            }
            // What precedes the table's module name, whitespace removed.
            let before: String = code[..i]
                .trim_end_matches(|c: char| c.is_alphanumeric() || c == '_')
                .chars()
                .rev()
                .filter(|c| !c.is_whitespace())
                .take(12)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            if !starts.iter().any(|s| before.ends_with(s)) {
                let line = code[..i].lines().count();
                findings.push(format!(
                    "{stem}.rs:{line}: a table outside s.table/s.insert/s.update"
                ));
            }
        }
        let names = declared_in(&stem, &source);
        if code.contains(".statement(") && names.is_empty() {
            findings.push(format!("{stem}.rs: statements without a \"{stem}::…\" name"));
        }
    }
    assert!(findings.is_empty(), "{}", findings.join("\n"));
}
