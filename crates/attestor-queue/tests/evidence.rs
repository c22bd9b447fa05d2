//! The worker stores a log's entry only when it is evidence under the
//! worker's trusted root: forged entries (a tree of one whose root is the
//! leaf itself, with the checkpoint or the SET removed or signed with
//! another key, or naming an unknown log) are refused with the reason and
//! nothing is stored; a genuine entry is stored with the key that verified it.
//! Generated vectors only (the fakes' own log), no fixtures needed.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use attestor_queue::submitter::BoxFuture;
use attestor_queue::testing::{fake_log, fake_rekor_entry};
use attestor_queue::*;
use attestor_transparency::testlog::{forged_entry, to_rekor_v1_response, Style, TestLog};
use common::*;
use diesel::sql_types::{Bytea, Nullable, Text};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use scoped_futures::ScopedFutureExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Answers each job with the entry prepared for it.
struct Answers(Mutex<HashMap<Uuid, Value>>);

impl Submitter for Answers {
    fn needs_envelope(&self) -> bool {
        false
    }

    fn submit<'a>(&'a self, request: &'a SubmitRequest) -> BoxFuture<'a, Result<Value, SubmitError>> {
        let answer = self.0.lock().unwrap().get(&request.job.job_id()).cloned();
        Box::pin(async move { answer.ok_or_else(|| SubmitError::Permanent("no answer".into())) })
    }
}

fn body(job: Uuid) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"apiVersion": "0.0.1", "kind": "dsse", "spec": {"job": job}}))
        .unwrap()
}

fn answer(entry: &attestor_formats::TlogEntry) -> Value {
    serde_json::from_slice(&to_rekor_v1_response(entry)).unwrap()
}

/// Builds the forged answer for a job.
type Forge<'a> = Box<dyn Fn(Uuid) -> Value + 'a>;

#[derive(QueryableByName, Debug)]
struct Stored {
    #[diesel(sql_type = Text)]
    log_id: String,
    #[diesel(sql_type = Nullable<Bytea>)]
    verified_key_sha256: Option<Vec<u8>>,
    #[diesel(sql_type = Nullable<Text>)]
    evidence: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_stores_genuine_entries_with_their_key_and_refuses_forgeries() {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    let t = tenant();
    let log = fake_log();
    // The attacker's log: same name, its own key.
    let attacker = TestLog::ed25519(0x66, &log.log.name);
    let genuine = enqueue_one(&db, t, "genuine", 1).await.job_id;
    let mut answers = HashMap::new();
    answers.insert(genuine, fake_rekor_entry(genuine, 7));
    // (label, the expected reason)
    let cases: Vec<(&str, &str, Forge)> = vec![
        (
            "one leaf, no checkpoint, no SET",
            "no checkpoint",
            Box::new(|job| answer(&forged_entry(&log.log, &body(job), Style::V1, None))),
        ),
        (
            "one leaf, no checkpoint, SET by another key",
            "signed entry timestamp does not verify",
            Box::new(|job| {
                let mut e = forged_entry(&log.log, &body(job), Style::V1, None);
                attacker.resign_set(&mut e);
                answer(&e)
            }),
        ),
        (
            "one leaf, checkpoint by another key",
            "checkpoint has no signature by",
            Box::new(|job| {
                let leaf = attestor_formats::merkle::leaf_hash(&body(job));
                let cp = attacker.checkpoint(&log.origin(Style::V1), 1, &leaf, &[]);
                answer(&forged_entry(&log.log, &body(job), Style::V1, Some(cp)))
            }),
        ),
        (
            "signed checkpoint, SET removed",
            "a verified SET is required",
            Box::new(|job| {
                let mut e = log.entry(Style::V1, &[body(job)], 0);
                e.signed_entry_timestamp = None;
                answer(&e)
            }),
        ),
        (
            "a log the root does not list",
            "is not in the trusted root",
            Box::new(|job| {
                let other = TestLog::ed25519(0x67, "other.example.test");
                answer(&other.entry(Style::V1, &[body(job)], 0))
            }),
        ),
    ];
    let mut forged = Vec::new();
    for (label, reason, make) in &cases {
        let job = enqueue_one(&db, t, label, 1).await.job_id;
        answers.insert(job, make(job));
        forged.push((job, *label, *reason));
    }
    let sub = Arc::new(Answers(Mutex::new(answers)));
    let cfg = WorkerConfig::new("evidence", fake_root()).poll_interval(Duration::from_millis(50));
    let h = Worker::new(cfg, tdb.worker_url(), db.clone(), sub).start();
    let mut admin = connect(&tdb.admin_url()).await;
    let start = Instant::now();
    loop {
        let mut done = job_state(&mut admin, genuine).await.status == "succeeded";
        for (job, _, _) in &forged {
            done &= job_state(&mut admin, *job).await.status == "dead";
        }
        if done {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "jobs did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = h.shutdown(Duration::from_secs(5)).await;
    assert_eq!((m.completed, m.dead_lettered), (1, cases.len() as u64));
    for (job, label, reason) in &forged {
        let s = job_state(&mut admin, *job).await;
        let err = s.last_error.unwrap();
        assert!(
            err.contains("not evidence") && err.contains(reason),
            "{label}: {err}"
        );
        assert_eq!(s.rekor_entry_id, None, "{label}");
    }
    let rows: Vec<Stored> =
        diesel::sql_query("SELECT log_id, verified_key_sha256, evidence FROM attestor.rekor_entries")
            .load(&mut admin)
            .await
            .unwrap();
    assert_eq!(rows.len(), 1, "only the genuine entry is stored: {rows:?}");
    assert_eq!(rows[0].log_id, log.log.log_id_hex());
    assert_eq!(
        rows[0].verified_key_sha256.as_deref(),
        Some(Sha256::digest(&log.log.spki_der).as_slice())
    );
    assert_eq!(rows[0].evidence.as_deref(), Some("set+checkpoint"));
}

/// The worker's trusted root decides: the fakes' genuine entries are not
/// evidence for a worker whose root lists another key under the same log id
/// and name, so nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_another_root_stores_nothing() {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    let job = enqueue_one(&db, tenant(), "other-root", 1).await.job_id;
    let sub = Arc::new(Answers(Mutex::new(HashMap::from([(
        job,
        fake_rekor_entry(job, 3),
    )]))));
    let mut impostor = TestLog::ed25519(0x68, &fake_log().log.name);
    impostor.log.log_id = fake_log().log.log_id.clone();
    let root = Arc::new(TestLog::trusted_root(&[&impostor]));
    let cfg = WorkerConfig::new("other-root", root).poll_interval(Duration::from_millis(50));
    let h = Worker::new(cfg, tdb.worker_url(), db.clone(), sub).start();
    let mut admin = connect(&tdb.admin_url()).await;
    let start = Instant::now();
    while job_state(&mut admin, job).await.status != "dead" {
        assert!(start.elapsed() < Duration::from_secs(30), "job did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.shutdown(Duration::from_secs(5)).await;
    let err = job_state(&mut admin, job).await.last_error.unwrap();
    assert!(err.contains("not evidence"), "{err}");
    assert_eq!(
        count(&mut admin, "SELECT count(*) AS n FROM attestor.rekor_entries").await,
        0
    );
}

/// The database refuses what the types already prevent: the completion
/// statement with no verifying key and no evidence writes nothing, as
/// `attestor_app` in the job's tenant transaction.
#[tokio::test]
async fn the_database_refuses_a_completion_without_evidence() {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    let t = tenant();
    enqueue_one(&db, t, "bypass", 3).await;
    let mut w = connect(&tdb.worker_url()).await;
    let lease = claim(&mut w, &ClaimOptions::new("bypass", 1, Duration::from_secs(30)))
        .await
        .unwrap()[0]
        .lease;
    let b = body(lease.job_id);
    let leaf = attestor_formats::merkle::leaf_hash(&b);
    let err = db
        .transaction(attestor_repo::TenantContext::new(t), |tx| {
            let b = b.clone();
            async move {
                diesel::sql_query(attestor_queue::lease::COMPLETE_SQL)
                    .bind::<diesel::sql_types::Uuid, _>(lease.tenant_id)
                    .bind::<diesel::sql_types::Uuid, _>(lease.job_id)
                    .bind::<diesel::sql_types::Uuid, _>(lease.token)
                    .bind::<Text, _>("aa")
                    .bind::<diesel::sql_types::Int8, _>(1i64)
                    .bind::<Nullable<diesel::sql_types::Int8>, _>(None::<i64>)
                    .bind::<Nullable<Text>, _>(None::<String>)
                    .bind::<Text, _>("dsse")
                    .bind::<Text, _>("0.0.1")
                    .bind::<Nullable<diesel::sql_types::Double>, _>(None::<f64>)
                    .bind::<Bytea, _>(b)
                    .bind::<Nullable<diesel::sql_types::Jsonb>, _>(None::<Value>)
                    .bind::<Nullable<Text>, _>(None::<String>)
                    .bind::<Nullable<Bytea>, _>(None::<Vec<u8>>)
                    .bind::<Bytea, _>(leaf.to_vec())
                    .bind::<diesel::sql_types::Jsonb, _>(serde_json::json!({}))
                    .bind::<Nullable<Bytea>, _>(None::<Vec<u8>>)
                    .bind::<Nullable<Text>, _>(None::<String>)
                    .execute(tx.conn())
                    .await
                    .map_err(QueueError::from)
            }
            .scope_boxed()
        })
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("rekor_entries_evidence_required_check"),
        "{err}"
    );
    let mut admin = connect(&tdb.admin_url()).await;
    assert_eq!(job_state(&mut admin, lease.job_id).await.status, "running");
    assert_eq!(
        count(&mut admin, "SELECT count(*) AS n FROM attestor.rekor_entries").await,
        0
    );
}

/// A legacy row (stored before the database required the key, both columns
/// NULL) at the same log index with the same leaf is reused by a completion,
/// which records on it the key and evidence that just verified the same
/// entry, one job at a time and in a group.
#[tokio::test]
async fn a_completion_records_the_key_on_a_legacy_row_of_the_same_entry() {
    use attestor_queue::testing::fake_verified;
    use attestor_queue::worker::complete_in_tenant;
    use diesel_async::SimpleAsyncConnection as _;
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    let t = tenant();
    for label in ["legacy-1", "legacy-2", "legacy-3"] {
        enqueue_one(&db, t, label, 3).await;
    }
    let mut w = connect(&tdb.worker_url()).await;
    let leases: Vec<_> = claim(&mut w, &ClaimOptions::new("legacy", 3, Duration::from_secs(30)))
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.lease)
        .collect();
    let answers: Vec<Value> = (0..3).map(|i| fake_rekor_entry(Uuid::new_v4(), 40 + i)).collect();
    let verified: Vec<_> = answers.iter().map(fake_verified).collect();
    // Legacy rows for all three, written the only way one can still be
    // written: around the constraint, as the superuser, in setup.
    let mut admin = connect(&tdb.admin_url()).await;
    let mut sql = vec![String::from(
        "ALTER TABLE attestor.rekor_entries DROP CONSTRAINT rekor_entries_evidence_required_check",
    )];
    for v in &verified {
        let e = v.entry();
        sql.push(format!(
            "INSERT INTO attestor.rekor_entries (tenant_id, log_id, log_index, kind, kind_version, canonical_body, leaf_hash)
             VALUES ('{t}', '{}', {}, '{}', '{}', '\\x{}', '\\x{}')",
            e.log_id,
            e.log_index,
            e.kind,
            e.kind_version,
            hex::encode(&e.canonical_body),
            hex::encode(e.leaf_hash)
        ));
    }
    sql.push(
        "ALTER TABLE attestor.rekor_entries ADD CONSTRAINT rekor_entries_evidence_required_check
             CHECK (verified_key_sha256 IS NOT NULL AND octet_length(verified_key_sha256) = 32
                    AND evidence IS NOT NULL AND evidence IN ('checkpoint', 'set+checkpoint')) NOT VALID"
            .into(),
    );
    // One statement at a time: a Citus coordinator refuses DDL on a
    // distributed table among several commands of one query string.
    for statement in &sql {
        admin.batch_execute(statement).await.unwrap();
    }
    let legacy = "SELECT count(*) AS n FROM attestor.rekor_entries WHERE verified_key_sha256 IS NULL";
    assert_eq!(count(&mut admin, legacy).await, 3);
    // One job.
    complete_in_tenant(&db, "legacy", &leases[0], &verified[0], &answers[0])
        .await
        .unwrap();
    assert_eq!(count(&mut admin, legacy).await, 2);
    // A group of two.
    let items = vec![
        (leases[1], &verified[1], &answers[1]),
        (leases[2], &verified[2], &answers[2]),
    ];
    let results = db
        .transaction(attestor_repo::TenantContext::new(t), |tx| {
            let items = &items;
            async move { complete_many(tx.conn(), items).await }.scope_boxed()
        })
        .await
        .unwrap();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    assert_eq!(count(&mut admin, legacy).await, 0);
    let rows: Vec<Stored> =
        diesel::sql_query("SELECT log_id, verified_key_sha256, evidence FROM attestor.rekor_entries")
            .load(&mut admin)
            .await
            .unwrap();
    assert_eq!(rows.len(), 3, "reused, not duplicated");
    for r in rows {
        assert_eq!(
            r.verified_key_sha256.as_deref(),
            Some(Sha256::digest(&fake_log().log.spki_der).as_slice())
        );
        assert_eq!(r.evidence.as_deref(), Some("set+checkpoint"));
    }
}
