//! Core queue API against a real PostgreSQL: enqueue, claim, fencing,
//! retry/backoff/dead-letter/requeue, reclaim, stats, roles.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use attestor_queue::testing::{fake_log_index, fake_rekor_entry, fake_verified};
use attestor_queue::worker::{complete_in_tenant, verify_log_answer};
use attestor_queue::*;
use attestor_repo::TenantContext;
use attestor_transparency::VerifiedTlogEntry;
use common::*;
use diesel_async::RunQueryDsl;
use scoped_futures::ScopedFutureExt;

fn opts(batch: u32) -> ClaimOptions {
    ClaimOptions::new("test-worker", batch, Duration::from_secs(30))
        .per_tenant(attestor_testdb::shared().citus().is_some())
}

/// [`opts`], claiming by tenant group when `per_tenant` (and always on a
/// Citus coordinator, which refuses the one statement).
fn opts_in(per_tenant: bool, batch: u32) -> ClaimOptions {
    let o = opts(batch);
    let on_citus = o.per_tenant;
    o.per_tenant(per_tenant || on_citus)
}

/// A claim test run twice: with the default claim (the one statement; by
/// tenant group on Citus) and with the claim by tenant group.
macro_rules! both_claims {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn default_claim() {
                super::$name(false).await
            }
            #[tokio::test]
            async fn by_tenant_group() {
                super::$name(true).await
            }
        }
    };
}

fn entry_for(job: uuid::Uuid) -> (VerifiedTlogEntry, serde_json::Value) {
    let value = fake_rekor_entry(job, fake_log_index(job));
    let entry = fake_verified(&value);
    (entry, value)
}

#[tokio::test]
async fn enqueue_is_idempotent_per_tenant_and_key() {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    let (a, b) = (tenant(), tenant());
    let first = enqueue_one(&db, a, "same", 10).await;
    assert!(first.created);
    // Same key again, new envelope row, separate transaction: same job.
    let again = db
        .transaction(TenantContext::new(a), |tx| {
            async move {
                let env = insert_envelope(tx, "same-2").await?;
                let one = enqueue(tx.conn(), &NewJob::new(env, key("same"))).await?;
                let two = enqueue_tx(tx, &NewJob::new(env, key("same"))).await?;
                Ok::<_, QueueError>((one, two))
            }
            .scope_boxed()
        })
        .await
        .unwrap();
    assert_eq!(
        again.0,
        Enqueued {
            job_id: first.job_id,
            created: false
        }
    );
    assert_eq!(again.1, again.0);
    // Another tenant with the same key gets its own job.
    let other = enqueue_one(&db, b, "same", 10).await;
    assert!(other.created);
    assert_ne!(other.job_id, first.job_id);
    let mut admin = connect(&tdb.admin_url()).await;
    assert_eq!(
        count(
            &mut admin,
            "SELECT count(*) AS n FROM attestor.rekor_submission_queue"
        )
        .await,
        2
    );
}

#[tokio::test]
async fn enqueue_rolls_back_with_the_callers_transaction_and_needs_a_tenant() {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    let t = tenant();
    let r: Result<(), QueueError> = db
        .transaction(TenantContext::new(t), |tx| {
            async move {
                let env = insert_envelope(tx, "rolled-back").await?;
                enqueue_tx(tx, &NewJob::new(env, key("rolled-back"))).await?;
                Err(QueueError::InvalidInput("caller aborts".into()))
            }
            .scope_boxed()
        })
        .await;
    assert!(r.is_err());
    let mut admin = connect(&tdb.admin_url()).await;
    assert_eq!(
        count(
            &mut admin,
            "SELECT count(*) AS n FROM attestor.rekor_submission_queue"
        )
        .await,
        0
    );

    // Without a tenant in the transaction: refused (AT001), nothing written.
    let mut raw = connect(&tdb.app_url()).await;
    let err = enqueue(&mut raw, &NewJob::new(uuid::Uuid::new_v4(), key("x")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, QueueError::Repo(attestor_repo::RepoError::TenantNotSet)),
        "{err:?}"
    );
    assert!(enqueue(
        &mut raw,
        &NewJob::new(uuid::Uuid::new_v4(), key("x")).max_attempts(0)
    )
    .await
    .is_err());
}

both_claims!(stale_token_is_refused_everywhere_and_changes_nothing);

async fn stale_token_is_refused_everywhere_and_changes_nothing(by_group: bool) {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    let t = tenant();
    let job = enqueue_one(&db, t, "fenced", 10).await.job_id;
    let mut w = connect(&tdb.worker_url()).await;
    let mut admin = connect(&tdb.admin_url()).await;

    let first = claim(&mut w, &opts_in(by_group, 10)).await.unwrap();
    assert_eq!(first.len(), 1);
    let old = first[0].lease;
    assert_eq!(first[0].attempt, 1);
    assert!(!first[0].reclaimed);
    // Nothing else is due while it is leased.
    assert!(claim(&mut w, &opts_in(by_group, 10)).await.unwrap().is_empty());
    // Heartbeat with the current token works.
    let beat = heartbeat(&mut w, &old, Duration::from_secs(60)).await.unwrap();
    assert!(beat.expires_at > old.expires_at);

    // The lease expires; another claim takes the job over with a new token.
    expire_leases(&mut admin).await;
    let second = claim(&mut w, &opts_in(by_group, 10)).await.unwrap();
    assert_eq!(second.len(), 1);
    assert!(second[0].reclaimed);
    assert_eq!(second[0].attempt, 2);
    let new = second[0].lease;
    assert_ne!(new.token, old.token);
    let before = job_state(&mut admin, job).await;

    let lost = |e: QueueError| matches!(e, QueueError::LeaseLost { job_id, .. } if job_id == job);
    assert!(lost(
        heartbeat(&mut w, &old, Duration::from_secs(60))
            .await
            .unwrap_err()
    ));
    assert!(lost(
        fail(&mut w, &old, "stale", Failure::Permanent).await.unwrap_err()
    ));
    assert!(lost(release(&mut w, &old).await.unwrap_err()));
    let (entry, value) = entry_for(job);
    assert!(lost(
        complete_in_tenant(&db, "stale", &old, &entry, &value)
            .await
            .unwrap_err()
    ));
    assert_eq!(
        job_state(&mut admin, job).await,
        before,
        "stale holder changed the job"
    );
    assert_eq!(
        count(&mut admin, "SELECT count(*) AS n FROM attestor.rekor_entries").await,
        0
    );

    // The current holder completes; exactly one entry; then its token is spent too.
    let entry_id = complete_in_tenant(&db, "w2", &new, &entry, &value).await.unwrap();
    let done = job_state(&mut admin, job).await;
    assert_eq!(done.status, "succeeded");
    assert_eq!(done.rekor_entry_id, Some(entry_id));
    assert!(lost(
        complete_in_tenant(&db, "w2", &new, &entry, &value)
            .await
            .unwrap_err()
    ));
    assert!(lost(
        fail(&mut w, &new, "late", Failure::Permanent).await.unwrap_err()
    ));
    assert_eq!(
        count(&mut admin, "SELECT count(*) AS n FROM attestor.rekor_entries").await,
        1
    );
}

#[tokio::test]
async fn complete_requires_the_jobs_own_tenant_transaction() {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    let (a, b) = (tenant(), tenant());
    let job = enqueue_one(&db, a, "mine", 10).await.job_id;
    let mut w = connect(&tdb.worker_url()).await;
    let lease = claim(&mut w, &opts(1)).await.unwrap()[0].lease;
    let (entry, value) = entry_for(job);
    // Tenant B's transaction cannot complete tenant A's job.
    let r = db
        .transaction(TenantContext::new(b), |tx| {
            let (entry, value) = (&entry, &value);
            async move { complete(tx.conn(), &lease, entry, value).await }.scope_boxed()
        })
        .await;
    assert!(matches!(r, Err(QueueError::LeaseLost { .. })), "{r:?}");
    complete_in_tenant(&db, "a", &lease, &entry, &value)
        .await
        .unwrap();
}

#[tokio::test]
async fn worker_role_cannot_write_results() {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    enqueue_one(&db, tenant(), "x", 10).await;
    let mut w = connect(&tdb.worker_url()).await;
    let err = diesel::sql_query("UPDATE attestor.rekor_submission_queue SET result = '{}'")
        .execute(&mut w)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
    let err = diesel::sql_query("SELECT count(*) FROM attestor.dsse_envelopes")
        .execute(&mut w)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
}

#[tokio::test]
async fn retry_backoff_dead_letter_and_requeue() {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    let t = tenant();
    let job = enqueue_one(&db, t, "flaky", 3).await.job_id;
    let mut w = connect(&tdb.worker_url()).await;
    let mut admin = connect(&tdb.admin_url()).await;

    // A long backoff keeps the job out of claims.
    let l = claim(&mut w, &opts(5)).await.unwrap()[0].lease;
    let out = fail(
        &mut w,
        &l,
        "boom 1",
        Failure::Retry {
            delay: Duration::from_secs(3600),
        },
    )
    .await
    .unwrap();
    assert!(
        matches!(out, FailOutcome::Retrying { attempts: 1, run_at } if run_at > chrono::Utc::now() + chrono::Duration::minutes(59))
    );
    assert!(claim(&mut w, &opts(5)).await.unwrap().is_empty());
    let s = job_state(&mut admin, job).await;
    assert_eq!(
        (s.status.as_str(), s.attempts, s.attempt_token),
        ("queued", 1, None)
    );
    assert_eq!(s.last_error.as_deref(), Some("boom 1"));

    make_due(&mut admin).await;
    let l = claim(&mut w, &opts(5)).await.unwrap()[0].lease;
    assert!(matches!(
        fail(
            &mut w,
            &l,
            "boom 2",
            Failure::Retry {
                delay: Duration::ZERO
            }
        )
        .await
        .unwrap(),
        FailOutcome::Retrying { attempts: 2, .. }
    ));
    let c = claim(&mut w, &opts(5)).await.unwrap();
    assert_eq!(c[0].attempt, 3);
    // Third failure exhausts max_attempts = 3: dead, even though "retry" was asked.
    assert_eq!(
        fail(
            &mut w,
            &c[0].lease,
            "boom 3",
            Failure::Retry {
                delay: Duration::ZERO
            }
        )
        .await
        .unwrap(),
        FailOutcome::Dead { attempts: 3 }
    );
    assert!(claim(&mut w, &opts(5)).await.unwrap().is_empty());

    let dead = list_dead(&mut w, Some(t.as_uuid()), 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, job);
    assert_eq!(dead[0].last_error.as_deref(), Some("boom 3"));
    assert!(list_dead(&mut w, Some(tenant().as_uuid()), 10)
        .await
        .unwrap()
        .is_empty());
    let b = backlog(&mut w).await.unwrap();
    assert_eq!(b.count("dead"), 1);

    requeue_dead(&mut w, t.as_uuid(), job).await.unwrap();
    assert!(matches!(
        requeue_dead(&mut w, t.as_uuid(), job).await,
        Err(QueueError::WrongState { .. })
    ));
    assert!(matches!(
        requeue_dead(&mut w, t.as_uuid(), uuid::Uuid::new_v4()).await,
        Err(QueueError::NotFound { .. })
    ));
    let c = claim(&mut w, &opts(5)).await.unwrap();
    assert_eq!(c[0].attempt, 1, "requeue resets attempts");

    // Permanent failure: dead at once.
    assert_eq!(
        fail(&mut w, &c[0].lease, "refused", Failure::Permanent)
            .await
            .unwrap(),
        FailOutcome::Dead { attempts: 1 }
    );
    assert_eq!(requeue_all_dead(&mut w, None).await.unwrap(), 1);
    assert_eq!(backlog(&mut w).await.unwrap().ready, 1);
}

both_claims!(expired_lease_on_last_attempt_dead_letters_and_release_keeps_attempts);

async fn expired_lease_on_last_attempt_dead_letters_and_release_keeps_attempts(by_group: bool) {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    let t = tenant();
    let poison = enqueue_one(&db, t, "poison", 1).await.job_id;
    let mut w = connect(&tdb.worker_url()).await;
    let mut admin = connect(&tdb.admin_url()).await;
    assert_eq!(claim(&mut w, &opts_in(by_group, 5)).await.unwrap().len(), 1);
    expire_leases(&mut admin).await;
    assert!(claim(&mut w, &opts_in(by_group, 5)).await.unwrap().is_empty());
    let s = job_state(&mut admin, poison).await;
    assert_eq!(s.status, "dead");
    assert!(s.last_error.unwrap().contains("lease expired"));

    let job = enqueue_one(&db, t, "released", 3).await.job_id;
    let l = claim(&mut w, &opts_in(by_group, 5)).await.unwrap()[0].lease;
    release(&mut w, &l).await.unwrap();
    let s = job_state(&mut admin, job).await;
    assert_eq!((s.status.as_str(), s.attempts), ("queued", 0));

    // reclaim_expired puts expired jobs back for the next claim.
    let l = claim(&mut w, &opts_in(by_group, 5)).await.unwrap()[0].lease;
    expire_leases(&mut admin).await;
    assert_eq!(
        reclaim_expired(&mut w, 100).await.unwrap(),
        Reclaimed { requeued: 1, dead: 0 }
    );
    assert!(matches!(
        heartbeat(&mut w, &l, Duration::from_secs(5)).await,
        Err(QueueError::LeaseLost { .. })
    ));
    assert_eq!(claim(&mut w, &opts_in(by_group, 5)).await.unwrap()[0].attempt, 2);
}

both_claims!(claim_respects_batch_size_and_shares_between_tenants);

async fn claim_respects_batch_size_and_shares_between_tenants(by_group: bool) {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    let big = tenant();
    seed(&db, big, "big", 500).await;
    let small: Vec<_> = (0..4).map(|_| tenant()).collect();
    for (i, t) in small.iter().enumerate() {
        seed(&db, *t, &format!("small{i}"), 5).await;
    }
    let mut w = connect(&tdb.worker_url()).await;
    let batch = claim(&mut w, &opts_in(by_group, 20)).await.unwrap();
    assert_eq!(batch.len(), 20, "a full batch when enough jobs are due");
    // Every tenant got its share (20 / 5 tenants = 4 each), the big one the filler too.
    for t in &small {
        let n = batch.iter().filter(|j| j.tenant_id() == t.as_uuid()).count();
        assert_eq!(n, 4, "small tenant share");
    }
    let ids: HashSet<_> = batch.iter().map(|j| j.job_id()).collect();
    assert_eq!(ids.len(), 20);
    let tokens: HashSet<_> = batch.iter().map(|j| j.lease.token).collect();
    assert_eq!(tokens.len(), 20, "a fresh token per job");

    // Batch of 1 across 5 tenants: over many claims every tenant is served.
    let mut seen = HashSet::new();
    for _ in 0..40 {
        for j in claim(&mut w, &opts_in(by_group, 1)).await.unwrap() {
            seen.insert(j.tenant_id());
        }
    }
    assert_eq!(seen.len(), 5, "claims in turn serve everybody even with B = 1");

    let per_tenant = backlog_by_tenant(&mut w).await.unwrap();
    assert_eq!(per_tenant.len(), 5);
    let total: i64 = per_tenant.iter().map(|t| t.queued + t.running).sum();
    assert_eq!(total, 520);
    let b = backlog(&mut w).await.unwrap();
    assert_eq!(b.count("running"), 60);
    assert_eq!(b.count("queued"), 460);
    assert!(b.oldest_ready_at.is_some());
}

both_claims!(concurrent_claimers_never_share_a_job);

async fn concurrent_claimers_never_share_a_job(by_group: bool) {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    for i in 0..4 {
        seed(&db, tenant(), &format!("t{i}"), 250).await;
    }
    let url = tdb.worker_url();
    let citus = attestor_testdb::shared().citus().is_some();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = connect(&url).await;
            let mut mine = Vec::new();
            loop {
                let got = claim(
                    &mut conn,
                    &ClaimOptions::new(format!("w{w}"), 7, Duration::from_secs(60))
                        .per_tenant(by_group || citus),
                )
                .await
                .unwrap();
                if got.is_empty() {
                    // Rows locked by others are skipped; make sure nothing is left.
                    let mut c2 = connect(&url).await;
                    if backlog(&mut c2).await.unwrap().ready == 0 {
                        break;
                    }
                    continue;
                }
                assert!(got.len() <= 7);
                mine.extend(got.into_iter().map(|j| j.job_id()));
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 1000, "every job claimed");
    assert_eq!(unique.len(), 1000, "no job claimed twice");
}

#[tokio::test]
async fn an_entry_already_stored_is_reused_and_a_different_one_refused() {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    let t = tenant();
    for label in ["one", "two", "three"] {
        enqueue_one(&db, t, label, 5).await;
    }
    let mut w = connect(&tdb.worker_url()).await;
    let leases: Vec<_> = claim(&mut w, &opts(3))
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.lease)
        .collect();
    // Jobs 0 and 1 got the same log entry (the log deduplicated them): one row.
    let shared_job = uuid::Uuid::new_v4();
    let value = fake_rekor_entry(shared_job, 5);
    let entry = fake_verified(&value);
    let a = complete_in_tenant(&db, "w", &leases[0], &entry, &value)
        .await
        .unwrap();
    let b = complete_in_tenant(&db, "w", &leases[1], &entry, &value)
        .await
        .unwrap();
    assert_eq!(a, b);
    // A different body at the same log index is refused, and nothing changes.
    let other = fake_rekor_entry(uuid::Uuid::new_v4(), 5);
    let other_entry = fake_verified(&other);
    let err = complete_in_tenant(&db, "w", &leases[2], &other_entry, &other)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("different entry"), "{err}");
    let mut admin = connect(&tdb.admin_url()).await;
    assert_eq!(job_state(&mut admin, leases[2].job_id).await.status, "running");
    assert_eq!(
        count(&mut admin, "SELECT count(*) AS n FROM attestor.rekor_entries").await,
        1
    );
    // A proof that does not verify never becomes a completion: it is not
    // evidence, refused before any SQL (`complete` takes verified entries only).
    let mut bad = value.clone();
    let uuid = bad.as_object().unwrap().keys().next().unwrap().clone();
    bad[&uuid]["verification"]["inclusionProof"]["rootHash"] = serde_json::json!("00".repeat(32));
    let root = attestor_queue::testing::fake_trusted_root();
    assert!(matches!(
        verify_log_answer(&bad, &root, &Default::default(), chrono::Utc::now()),
        Err(QueueError::NotEvidence(
            attestor_transparency::VerifyError::InclusionProof(_)
        ))
    ));
}

both_claims!(tenant_chunk_serves_fewer_tenants_with_more_jobs_each);

async fn tenant_chunk_serves_fewer_tenants_with_more_jobs_each(by_group: bool) {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    for i in 0..10 {
        seed(&db, tenant(), &format!("t{i}"), 20).await;
    }
    let mut w = connect(&tdb.worker_url()).await;
    let batch = claim(&mut w, &opts_in(by_group, 20).tenant_chunk(10))
        .await
        .unwrap();
    assert_eq!(batch.len(), 20);
    let mut per_tenant = std::collections::HashMap::new();
    for j in &batch {
        *per_tenant.entry(j.tenant_id()).or_insert(0) += 1;
    }
    assert_eq!(per_tenant.len(), 2, "{per_tenant:?}");
    assert!(per_tenant.values().all(|n| *n == 10));
    // Fewer due tenants than batch / chunk: all of them, sharing the batch.
    let tdb2 = attestor_testdb::shared().test_database().unwrap();
    let db2 = app_db(&tdb2.app_url()).await;
    seed(&db2, tenant(), "a", 50).await;
    seed(&db2, tenant(), "b", 50).await;
    let mut w2 = connect(&tdb2.worker_url()).await;
    let batch = claim(&mut w2, &opts_in(by_group, 40).tenant_chunk(5))
        .await
        .unwrap();
    assert_eq!(batch.len(), 40);
    let a = batch
        .iter()
        .filter(|j| j.tenant_id() == batch[0].tenant_id())
        .count();
    assert_eq!(a, 20);
}

#[tokio::test]
async fn complete_many_fences_each_job_on_its_own() {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    let t = tenant();
    for i in 0..5 {
        enqueue_one(&db, t, &format!("m{i}"), 5).await;
    }
    let mut w = connect(&tdb.worker_url()).await;
    let mut admin = connect(&tdb.admin_url()).await;
    let mut leases: Vec<_> = claim(&mut w, &opts(5))
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.lease)
        .collect();
    leases.sort_by_key(|l| l.job_id);
    // leases[4] goes stale: expired and taken over.
    diesel::sql_query(
        "UPDATE attestor.rekor_submission_queue SET lease_expires_at = now() - interval '1 second' WHERE id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(leases[4].job_id)
    .execute(&mut admin)
    .await
    .unwrap();
    let new4 = claim(&mut w, &opts(5)).await.unwrap()[0].lease;
    let own = |i: usize| {
        let v = fake_rekor_entry(leases[i].job_id, 100 + i as i64);
        let e = fake_verified(&v);
        (e, v)
    };
    let (e0, v0) = own(0);
    let (e2, v2) = own(2);
    let (e4, v4) = own(4);
    // Jobs 0 and 1 share one log entry; job 3 claims a different body at job 0's index.
    let clash = fake_rekor_entry(uuid::Uuid::new_v4(), 100);
    let e3 = fake_verified(&clash);
    let items = vec![
        (leases[0], &e0, &v0),
        (leases[1], &e0, &v0),
        (leases[2], &e2, &v2),
        (leases[3], &e3, &clash),
        (leases[4], &e4, &v4),
    ];
    let results = db
        .transaction(TenantContext::new(t), |tx| {
            let items = &items;
            async move { complete_many(tx.conn(), items).await }.scope_boxed()
        })
        .await
        .unwrap();
    assert!(
        results[0].is_ok() && results[1].is_ok() && results[2].is_ok(),
        "{results:?}"
    );
    assert_eq!(results[0].as_ref().unwrap(), results[1].as_ref().unwrap());
    assert!(matches!(&results[3], Err(QueueError::InvalidInput(m)) if m.contains("different entry")));
    assert!(matches!(results[4], Err(QueueError::LeaseLost { .. })));
    for (i, want) in [
        (0, "succeeded"),
        (1, "succeeded"),
        (2, "succeeded"),
        (3, "running"),
        (4, "running"),
    ] {
        assert_eq!(
            job_state(&mut admin, leases[i].job_id).await.status,
            want,
            "job {i}"
        );
    }
    assert_eq!(
        job_state(&mut admin, leases[4].job_id).await.attempt_token,
        Some(new4.token)
    );
    assert_eq!(
        count(&mut admin, "SELECT count(*) AS n FROM attestor.rekor_entries").await,
        2
    );
}

/// The completion a Citus coordinator uses (router statements, one table
/// each) keeps `complete`'s contract on either server: a stale token is
/// refused and writes nothing, an entry already stored is reused, a
/// different entry at the same index is refused and writes nothing, and
/// the job ends succeeded with its entry.
#[tokio::test]
async fn routed_completion_keeps_completes_contract() {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    let t = tenant();
    for label in ["r0", "r1", "r2"] {
        enqueue_one(&db, t, label, 5).await;
    }
    let mut w = connect(&tdb.worker_url()).await;
    let mut admin = connect(&tdb.admin_url()).await;
    let mut leases: Vec<_> = claim(&mut w, &opts(3))
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.lease)
        .collect();
    leases.sort_by_key(|l| l.job_id);
    let routed = |lease: Lease, entry: VerifiedTlogEntry, value: serde_json::Value| {
        let db = db.clone();
        async move {
            db.transaction(TenantContext::new(t).with_actor("routed".to_owned()), |tx| {
                let (entry, value) = (&entry, &value);
                async move { routed_complete::complete_routed(tx.conn(), &lease, entry, value).await }
                    .scope_boxed()
            })
            .await
        }
    };
    let value = fake_rekor_entry(uuid::Uuid::new_v4(), 7);
    let entry = fake_verified(&value);
    let entries = "SELECT count(*) AS n FROM attestor.rekor_entries";

    let stale = Lease {
        token: uuid::Uuid::new_v4(),
        ..leases[0]
    };
    let err = routed(stale, entry.clone(), value.clone()).await.unwrap_err();
    assert!(matches!(err, QueueError::LeaseLost { .. }), "{err:?}");
    assert_eq!(count(&mut admin, entries).await, 0);

    let a = routed(leases[0], entry.clone(), value.clone()).await.unwrap();
    let b = routed(leases[1], entry.clone(), value.clone()).await.unwrap();
    assert_eq!(a, b, "the entry already stored is reused");
    let other = fake_rekor_entry(uuid::Uuid::new_v4(), 7);
    let err = routed(leases[2], fake_verified(&other), other).await.unwrap_err();
    assert!(err.to_string().contains("different entry"), "{err}");
    assert_eq!(count(&mut admin, entries).await, 1);
    assert_eq!(job_state(&mut admin, leases[2].job_id).await.status, "running");
    for l in &leases[..2] {
        let done = job_state(&mut admin, l.job_id).await;
        assert_eq!(
            (done.status.as_str(), done.rekor_entry_id),
            ("succeeded", Some(a))
        );
    }
    // The token is spent with the completion.
    let err = routed(leases[0], entry, value).await.unwrap_err();
    assert!(matches!(err, QueueError::LeaseLost { .. }), "{err:?}");
}

/// Claiming with the one statement works on plain PostgreSQL; a Citus
/// coordinator refuses it while planning, and the claim goes on by tenant
/// group: the same options claim on either server.
#[tokio::test]
async fn the_one_statement_claim_options_claim_on_either_server() {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    let (a, b) = (tenant(), tenant());
    for (t, label) in [(a, "a0"), (a, "a1"), (b, "b0")] {
        enqueue_one(&db, t, label, 5).await;
    }
    let mut w = connect(&tdb.worker_url()).await;
    let one_statement = ClaimOptions::new("w", 2, Duration::from_secs(30)).per_tenant(false);
    let got = claim(&mut w, &one_statement).await.unwrap();
    let tenants: HashSet<_> = got.iter().map(|j| j.tenant_id()).collect();
    assert_eq!(got.len(), 2);
    assert_eq!(tenants.len(), 2, "one job of each tenant: {got:?}");
    assert_eq!(claim(&mut w, &one_statement).await.unwrap().len(), 1);
}

/// Both claim paths go round the due tenants in turn, per connection.
async fn serves_due_tenants_in_turn_per_connection(by_group: bool) {
    let tdb = attestor_testdb::shared().test_database().unwrap();
    let db = app_db(&tdb.app_url()).await;
    let mut tenants: Vec<_> = (0..12).map(|_| tenant()).collect();
    for (i, t) in tenants.iter().enumerate() {
        seed(&db, *t, &format!("turn{i}"), 3).await;
    }
    // One tenant with only future jobs: passed over, never served.
    let later = tenant();
    seed(&db, later, "later", 3).await;
    let mut admin = connect(&tdb.admin_url()).await;
    diesel::sql_query(format!(
        "UPDATE attestor.rekor_submission_queue SET run_at = now() + interval '1 hour' WHERE tenant_id = '{}'",
        later.as_uuid()
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    tenants.sort_by_key(|t| t.as_uuid());
    let ids: Vec<_> = tenants.iter().map(|t| t.as_uuid()).collect();

    let mut w = connect(&tdb.worker_url()).await;
    let mut served = Vec::new();
    let rounds = 24;
    for _ in 0..rounds {
        let got = claim(&mut w, &opts_in(by_group, 1)).await.unwrap();
        assert_eq!(got.len(), 1, "a job is due at every claim");
        served.push(got[0].tenant_id());
    }
    // The first claim starts anywhere; from there on each claim takes the
    // next due tenant in tenant-id order, wrapping around: every round of
    // 12 claims serves each of the 12 due tenants once.
    let at = ids.iter().position(|t| *t == served[0]).unwrap();
    let expected: Vec<_> = (0..rounds).map(|i| ids[(at + i) % ids.len()]).collect();
    assert_eq!(served, expected, "round robin over the due tenants");
    // A new connection has its own turn, and serves the same tenants.
    let mut other = connect(&tdb.worker_url()).await;
    let got = claim(&mut other, &opts_in(by_group, 12)).await.unwrap();
    let mut batch: Vec<_> = got.iter().map(|j| j.tenant_id()).collect();
    batch.sort();
    assert_eq!(batch, ids, "one job of each due tenant, none of the later one");
}
both_claims!(serves_due_tenants_in_turn_per_connection);
