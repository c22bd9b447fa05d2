//! Verdict ledger: concurrent appends give one contiguous valid chain per
//! tenant, tenants do not block each other, and rows altered behind the
//! application's back (a superuser with the append-only trigger bypassed) are
//! found by `verify_chain`, which names the first bad seq.

mod common;

use std::time::{Duration, Instant};

use attestor_repo::verdict_ledger::{self, Decision, NewVerdict};
use attestor_repo::{Database, RepoError, TenantId};
use common::*;
use serde_json::json;

fn verdict(i: usize) -> NewVerdict {
    NewVerdict {
        subject_digest: format!("sha256:{}", common::gen::sha256_hex(&i.to_be_bytes())),
        decision: Decision::Pass,
        policy_ref: "policy@7".into(),
        inputs: json!({"i": i, "scores": [0.5, 1e-7, 3], "who": "ci"}),
    }
}

async fn append_n(db: &Database, t: TenantId, n: usize) {
    for i in 0..n {
        let v = verdict(i);
        run!(db, t, |tx| { verdict_ledger::append(tx, &v).await }).unwrap();
    }
}

/// Tampering as a superuser that bypasses triggers: `sql` (its table written
/// `{table}`) in a transaction with `session_replication_role = replica`.
/// On plain PostgreSQL it runs on `attestor.verdict_ledger`; a Citus
/// coordinator refuses that role for a distributed statement ("cannot
/// execute a distributed query from a query on a shard"), so there it runs
/// on the worker holding `tenant`'s shard, on the shard itself.
fn tamper(tdb: &attestor_testdb::TestDatabase<'_>, tenant: TenantId, sql: &str) {
    use diesel::connection::SimpleConnection as _;
    use diesel::{Connection as _, RunQueryDsl as _};
    #[derive(diesel::QueryableByName)]
    struct Placement {
        #[diesel(sql_type = diesel::sql_types::Text)]
        shard: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        host: String,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        port: i32,
    }
    let (url, table) = match tdb.server().citus() {
        None => (tdb.admin_url(), "attestor.verdict_ledger".to_owned()),
        Some(_) => {
            let p: Placement = diesel::sql_query(format!(
                "SELECT s.shard_name::text AS shard, s.nodename AS host, s.nodeport AS port \
                   FROM citus_shards s \
                  WHERE s.shardid = get_shard_id_for_distribution_column('attestor.verdict_ledger', '{tenant}')"
            ))
            .get_result(&mut tdb.connect_admin().unwrap())
            .unwrap();
            let node = attestor_testdb::citus::Node {
                host: p.host,
                port: u16::try_from(p.port).unwrap(),
            };
            let admin = attestor_testdb::ConnParams::parse(&tdb.admin_url()).unwrap();
            (node.params(&admin).url(), p.shard)
        }
    };
    let mut c = diesel::PgConnection::establish(&url).unwrap();
    c.batch_execute(&format!(
        "BEGIN; SET LOCAL session_replication_role = replica; {}; COMMIT",
        sql.replace("{table}", &table)
    ))
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_tasks_give_a_contiguous_valid_chain() {
    let tdb = test_db();
    let db = app(&tdb, 8).await;
    let a = TenantId::new_random();
    let b = TenantId::new_random();
    let mut tasks = Vec::new();
    for k in 0..8 {
        let db = db.clone();
        let t = if k % 4 == 3 { b } else { a };
        tasks.push(tokio::spawn(async move { append_n(&db, t, 6).await }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for (t, expected) in [(a, 36u64), (b, 12)] {
        let (v, seqs) = run!(db, t, |tx| {
            let v = verdict_ledger::verify_chain(tx).await?;
            let page = verdict_ledger::list(tx, attestor_repo::PageRequest::first(100)).await?;
            Ok((v, page.items.iter().map(|e| e.seq).collect::<Vec<_>>()))
        })
        .unwrap();
        assert!(v.is_valid(), "{v:?}");
        assert_eq!(v.entries, expected);
        let mut seqs = seqs;
        seqs.sort();
        assert_eq!(
            seqs,
            (1..=expected as i64).collect::<Vec<_>>(),
            "contiguous, no gaps, no forks"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_serialize_per_tenant_but_not_across_tenants() {
    let tdb = test_db();
    let db = app(&tdb, 4).await;
    let a = TenantId::new_random();
    let b = TenantId::new_random();
    // A holds its ledger lock for 3 s; `released` is taken just before its COMMIT.
    let holder = {
        let db = db.clone();
        tokio::spawn(async move {
            run!(db, a, |tx| {
                verdict_ledger::append(tx, &verdict(0)).await?;
                tokio::time::sleep(Duration::from_millis(3000)).await;
                Ok(Instant::now())
            })
            .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b_task = {
        let db = db.clone();
        tokio::spawn(async move {
            append_n(&db, b, 1).await;
            Instant::now()
        })
    };
    let second = run!(db, a, |tx| { verdict_ledger::append(tx, &verdict(1)).await }).unwrap();
    let a2_done = Instant::now();
    let released = holder.await.unwrap();
    let b_done = b_task.await.unwrap();
    assert!(b_done < released, "tenant B's append waited for tenant A's lock");
    assert!(
        a2_done > released,
        "tenant A's second append did not wait for the first"
    );
    assert_eq!(second.seq, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_by_a_superuser_is_detected_at_the_first_bad_seq() {
    let tdb = test_db();
    let db = app(&tdb, 2).await;
    let t = TenantId::new_random();
    append_n(&db, t, 6).await;
    let verify =
        |db: Database| async move { run!(db, t, |tx| { verdict_ledger::verify_chain(tx).await }).unwrap() };
    assert!(verify(db.clone()).await.is_valid());

    // The owner and superusers are refused too (AT003) ...
    let admin = Database::connect(common::config(tdb.admin_url()).with_max_connections(1))
        .await
        .unwrap();
    let e = run!(admin, t, |tx| {
        use diesel_async::RunQueryDsl;
        diesel::sql_query("UPDATE attestor.verdict_ledger SET decision = 'fail'")
            .execute(tx.conn())
            .await?;
        Ok(())
    })
    .unwrap_err();
    assert!(matches!(e, RepoError::AppendOnly), "{e:?}");
    // ... and the application role has no UPDATE at all.
    let e = run!(db, t, |tx| {
        use diesel_async::RunQueryDsl;
        diesel::sql_query("UPDATE attestor.verdict_ledger SET decision = 'fail'")
            .execute(tx.conn())
            .await?;
        Ok(())
    })
    .unwrap_err();
    assert!(matches!(e, RepoError::PermissionDenied), "{e:?}");

    // A superuser bypassing triggers alters seq 4's inputs.
    tamper(
        &tdb,
        t,
        &format!("UPDATE {{table}} SET inputs = '{{\"i\": 999}}' WHERE tenant_id = '{t}' AND seq = 4"),
    );
    let v = verify(db.clone()).await;
    let bad = v.first_bad.expect("tampering detected");
    assert_eq!(bad.seq, 4, "{bad:?}");
    assert!(bad.reason.contains("entry_hash"), "{bad:?}");
    assert_eq!(v.entries, 4);

    // Re-hashing the altered row breaks the link to seq 5 instead.
    let t2 = TenantId::new_random();
    append_n(&db, t2, 4).await;
    tamper(
        &tdb,
        t2,
        &format!(
            "UPDATE {{table}} SET decision = 'fail', entry_hash = sha256(entry_hash) \
             WHERE tenant_id = '{t2}' AND seq = 2"
        ),
    );
    let bad = verify_for(&db, t2).await.first_bad.unwrap();
    assert_eq!(bad.seq, 2, "{bad:?}");

    // A deleted entry is reported as missing.
    let t3 = TenantId::new_random();
    append_n(&db, t3, 4).await;
    tamper(
        &tdb,
        t3,
        &format!("DELETE FROM {{table}} WHERE tenant_id = '{t3}' AND seq = 3"),
    );
    let bad = verify_for(&db, t3).await.first_bad.unwrap();
    assert_eq!(bad.seq, 3, "{bad:?}");
    assert!(bad.reason.contains("missing"), "{bad:?}");
}

async fn verify_for(db: &Database, t: TenantId) -> verdict_ledger::ChainVerification {
    run!(db, t, |tx| { verdict_ledger::verify_chain(tx).await }).unwrap()
}
