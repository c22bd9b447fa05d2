//! The seed's end-to-end plan through `attestor-repo`, connected as
//! `attestor_app` (the admin URL only reads the catalog): tenant A's entities
//! are invisible to tenant B; the required columns are present and filled; a
//! verdict ledger entry is persisted with the right tenant; JSONB predicates
//! come back exactly; the schema has RLS enabled and forced with one tenant
//! isolation policy per table; the audit log records create and update with
//! tenant and actor.

use attestor_formats::ledger::{entry_hash, LedgerEntryContent};
use attestor_repo::scoped_futures::{ScopedBoxFuture, ScopedFutureExt as _};
use attestor_repo::verdict_ledger::{Decision, NewVerdict};
use attestor_repo::{
    audit_log, dsse_envelopes, rekor_entries, sbom_entries, spines, trust_anchors, verdict_ledger, Database,
    PageRequest, RepoError, TenantContext, TenantId, TenantTx,
};
use attestor_testdb::shared;
use attestor_transparency::testlog::{self, Style, TestLog};
use base64::Engine as _;
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use serde_json::{json, Value};
use uuid::Uuid;

const TABLES: [&str; 8] = [
    "audit_log",
    "dsse_envelopes",
    "rekor_entries",
    "rekor_submission_queue",
    "sbom_entries",
    "spines",
    "trust_anchors",
    "verdict_ledger",
];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn in_tx<T, F>(db: &Database, tenant: TenantId, actor: &str, f: F) -> Result<T, RepoError>
where
    F: for<'r> FnOnce(&'r mut TenantTx) -> ScopedBoxFuture<'static, 'r, Result<T, RepoError>>
        + Send
        + 'static,
    T: Send + 'static,
{
    db.transaction(TenantContext::new(tenant).with_actor(actor), f)
        .await
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

fn statement_envelope(predicate: &Value) -> Vec<u8> {
    let st = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "a.bin", "digest": {"sha256": "a0cfc71271d6e278e57cd332ff957c3f7043fdda354c4cbb190a30d56efa01bf"}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": predicate,
    });
    let b64 = base64::engine::general_purpose::STANDARD;
    serde_json::to_vec(&json!({
        "payloadType": "application/vnd.in-toto+json",
        "payload": b64.encode(serde_json::to_vec(&st).unwrap()),
        "signatures": [{"keyid": "k1", "sig": b64.encode([7u8; 64])}],
    }))
    .unwrap()
}

/// The tests' own log and a trusted root that trusts it.
fn test_log() -> TestLog {
    TestLog::p256(21, "rekor.example.test")
}

/// A Rekor v1 API response for `body` in a 5-leaf tree at index 3, signed by [`test_log`].
fn rekor_response(body: &[u8]) -> Vec<u8> {
    let leaves: Vec<Vec<u8>> = (0..5u8)
        .map(|i| if i == 3 { body.to_vec() } else { vec![i; 8] })
        .collect();
    testlog::to_rekor_v1_response(&test_log().entry(Style::V1, &leaves, 3))
}

/// Ids of everything tenant A stores.
struct Seeded {
    envelope: Uuid,
    envelope_digest: [u8; 32],
    rekor: Uuid,
    sbom: Uuid,
    spine: Uuid,
    anchor: Uuid,
    ledger_seq: i64,
}

async fn seed(db: &Database, a: TenantId) -> Seeded {
    let env = statement_envelope(&json!({"builder": {"id": "https://ci.example/a"}}));
    let body = serde_json::to_vec(&json!({"apiVersion": "0.0.1", "kind": "dsse", "spec": {}})).unwrap();
    let rekor = rekor_response(&body);
    let sbom = serde_json::to_vec(&json!({"bomFormat": "CycloneDX", "specVersion": "1.5", "components": []}))
        .unwrap();
    in_tx(db, a, "seeder", move |tx| {
        async move {
            let e = dsse_envelopes::ingest(tx, &env).await?.row;
            let r = rekor_entries::ingest_rekor_v1_response(
                tx,
                &rekor,
                Some(e.id),
                &TestLog::trusted_root(&[&test_log()]),
            )
            .await?
            .row;
            let s = sbom_entries::ingest(tx, &sbom).await?.row;
            let sp = spines::create(
                tx,
                &spines::NewSpine {
                    sbom_entry_id: Some(s.id),
                    evidence_ids: vec!["ev".into()],
                    reasoning_id: None,
                    vex_verdict_id: None,
                    policy_version: "p1".into(),
                    segments: vec![json!({"s": 1})],
                },
            )
            .await?
            .row;
            let ta = trust_anchors::create(
                tx,
                &trust_anchors::NewTrustAnchor {
                    key_id: "a-key".into(),
                    algorithm: "ed25519".into(),
                    public_key: vec![1, 2, 3],
                    purl_pattern: None,
                    allowed_predicate_types: vec![],
                    valid_from: chrono::DateTime::from_timestamp(0, 0).unwrap(),
                    valid_until: None,
                },
            )
            .await?;
            let l = verdict_ledger::append(
                tx,
                &NewVerdict {
                    subject_digest: "sha256:a0cf".into(),
                    decision: Decision::Pass,
                    policy_ref: "p1".into(),
                    inputs: json!({"a": 1}),
                },
            )
            .await?;
            Ok(Seeded {
                envelope: e.id,
                envelope_digest: e.envelope_sha256.try_into().unwrap(),
                rekor: r.id,
                sbom: s.id,
                spine: sp.id,
                anchor: ta.id,
                ledger_seq: l.seq,
            })
        }
        .scope_boxed()
    })
    .await
    .unwrap()
}

#[test]
fn tenant_a_entities_are_invisible_to_tenant_b() {
    let tdb = shared().test_database().unwrap();
    runtime().block_on(async {
        let db = Database::connect(attestor_e2e::pool_config(tdb.app_url()).with_max_connections(2)).await.unwrap();
        let (a, b) = (TenantId::new_random(), TenantId::new_random());
        let s = seed(&db, a).await;
        // Raw SQL without any tenant filter: only RLS stands between B and A's rows.
        let counts = in_tx(&db, b, "b", |tx| {
            async move {
                let mut out = Vec::new();
                for t in TABLES {
                    let n = diesel::sql_query(format!("SELECT count(*) AS n FROM attestor.{t}"))
                        .get_result::<Count>(tx.conn())
                        .await?
                        .n;
                    out.push((t, n));
                }
                Ok(out)
            }
            .scope_boxed()
        })
        .await
        .unwrap();
        for (t, n) in counts {
            assert_eq!(n, 0, "tenant B sees {n} row(s) of tenant A in attestor.{t}");
        }
        // Repository lookups by A's keys find nothing for B.
        let ledger_seq = s.ledger_seq;
        let (envelope, rekor, sbom, spine, anchor, digest) = (s.envelope, s.rekor, s.sbom, s.spine, s.anchor, s.envelope_digest);
        in_tx(&db, b, "b", move |tx| {
            async move {
                assert!(matches!(dsse_envelopes::get(tx, envelope).await, Err(RepoError::NotFound { .. })));
                assert!(dsse_envelopes::find_by_digest(tx, &digest).await?.is_none());
                assert!(matches!(rekor_entries::get(tx, rekor).await, Err(RepoError::NotFound { .. })));
                assert!(matches!(sbom_entries::get(tx, sbom).await, Err(RepoError::NotFound { .. })));
                assert!(matches!(spines::get(tx, spine).await, Err(RepoError::NotFound { .. })));
                assert!(matches!(trust_anchors::get(tx, anchor).await, Err(RepoError::NotFound { .. })));
                assert!(trust_anchors::find_active(tx, "a-key", chrono::Utc::now()).await?.is_none());
                assert!(matches!(verdict_ledger::get_by_seq(tx, ledger_seq).await, Err(RepoError::NotFound { .. })));
                assert!(audit_log::list(tx, &Default::default(), PageRequest::first(10)).await?.items.is_empty());
                // Updating A's row by id touches nothing.
                let n = diesel::sql_query(format!(
                    "UPDATE attestor.trust_anchors SET revoked_at = now() WHERE id = '{anchor}'"
                ))
                .execute(tx.conn())
                .await?;
                assert_eq!(n, 0);
                Ok(())
            }
            .scope_boxed()
        })
        .await
        .unwrap();
        // B cannot write a row into A's tenant (WITH CHECK).
        let e = in_tx(&db, b, "b", move |tx| {
            async move {
                diesel::sql_query(format!(
                    "INSERT INTO attestor.trust_anchors (tenant_id, key_id, algorithm, public_key, valid_from) \
                     VALUES ('{a}', 'x', 'ed25519', '\\x01', now())"
                ))
                .execute(tx.conn())
                .await?;
                Ok(())
            }
            .scope_boxed()
        })
        .await
        .unwrap_err();
        assert!(matches!(e, RepoError::PermissionDenied), "{e:?}");
        // A still sees its own.
        let n = in_tx(&db, a, "a", move |tx| {
            async move { Ok(dsse_envelopes::get(tx, envelope).await?.tenant_id) }.scope_boxed()
        })
        .await
        .unwrap();
        assert_eq!(n, a.as_uuid());
    });
}

#[test]
fn required_columns_are_present_and_filled() {
    let tdb = shared().test_database().unwrap();
    {
        #[derive(QueryableByName)]
        struct Col {
            #[diesel(sql_type = diesel::sql_types::Text)]
            table_name: String,
            #[diesel(sql_type = diesel::sql_types::Text)]
            column_name: String,
        }
        let mut admin = tdb.connect_admin().unwrap();
        let cols: Vec<Col> = diesel::RunQueryDsl::load(
            diesel::sql_query(
                "SELECT table_name::text, column_name::text FROM information_schema.columns \
                 WHERE table_schema = 'attestor' AND is_nullable = 'NO' \
                 AND column_name IN ('id', 'tenant_id', 'created_at', 'updated_at')",
            ),
            &mut admin,
        )
        .unwrap();
        for t in TABLES {
            for c in ["id", "tenant_id", "created_at", "updated_at"] {
                assert!(
                    cols.iter().any(|x| x.table_name == t && x.column_name == c),
                    "attestor.{t}.{c} missing or nullable"
                );
            }
        }
    }
    runtime().block_on(async {
        let db = Database::connect(attestor_e2e::pool_config(tdb.app_url()).with_max_connections(1))
            .await
            .unwrap();
        let a = TenantId::new_random();
        let s = seed(&db, a).await;
        let (envelope, rekor) = (s.envelope, s.rekor);
        in_tx(&db, a, "a", move |tx| {
            async move {
                let e = dsse_envelopes::get(tx, envelope).await?;
                assert_eq!(e.tenant_id, a.as_uuid());
                assert!(e.created_at <= e.updated_at);
                assert_eq!(e.payload_sha256.len(), 32);
                assert_eq!(e.envelope_sha256.len(), 32);
                assert!(e.statement.is_some() && e.predicate_type.is_some() && !e.subject_digests.is_empty());
                let r = rekor_entries::get(tx, rekor).await?;
                assert_eq!(r.envelope_id, Some(envelope));
                assert!(r.inclusion_proof.is_some() && r.integrated_time.is_some() && r.entry_uuid.is_some());
                Ok(())
            }
            .scope_boxed()
        })
        .await
        .unwrap();
    });
}

#[test]
fn verdict_ledger_entry_is_persisted_with_the_right_tenant() {
    let tdb = shared().test_database().unwrap();
    runtime().block_on(async {
        let db = Database::connect(attestor_e2e::pool_config(tdb.app_url()).with_max_connections(2))
            .await
            .unwrap();
        let (a, b) = (TenantId::new_random(), TenantId::new_random());
        let v = NewVerdict {
            subject_digest: "sha256:a0cfc71271d6e278e57cd332ff957c3f7043fdda354c4cbb190a30d56efa01bf".into(),
            decision: Decision::Warn,
            policy_ref: "policy/v3".into(),
            inputs: json!({"vulns": [{"id": "CVE-2024-0001", "score": 7.5}], "waived": false}),
        };
        let v2 = v.clone();
        let stored = in_tx(&db, a, "a", move |tx| {
            async move { verdict_ledger::append(tx, &v2).await }.scope_boxed()
        })
        .await
        .unwrap();
        assert_eq!(stored.tenant_id, a.as_uuid());
        assert_eq!(stored.seq, 1);
        let read = in_tx(&db, a, "a", |tx| {
            async move { verdict_ledger::get_by_seq(tx, 1).await }.scope_boxed()
        })
        .await
        .unwrap();
        assert_eq!(read, stored);
        assert_eq!(read.inputs, v.inputs);
        let expected = entry_hash(&LedgerEntryContent {
            tenant_id: a.as_uuid(),
            seq: 1,
            subject_digest: &v.subject_digest,
            decision: "warn",
            policy_ref: &v.policy_ref,
            inputs: &v.inputs,
            prev_hash: [0; 32],
        });
        assert_eq!(read.entry_hash, expected.to_vec());
        let other = in_tx(&db, b, "b", |tx| {
            async move { verdict_ledger::head(tx).await }.scope_boxed()
        })
        .await
        .unwrap();
        assert!(other.is_none(), "tenant B has no ledger entry");
    });
}

#[test]
fn jsonb_predicates_are_stored_and_read_back_exactly() {
    let tdb = shared().test_database().unwrap();
    runtime().block_on(async {
        let db = Database::connect(attestor_e2e::pool_config(tdb.app_url()).with_max_connections(1)).await.unwrap();
        let a = TenantId::new_random();
        let mut predicates = vec![
            json!({"z": 1, "a": {"nested": [1, 2.5, -3, null, true, "é ☃ \"q\""]}, "big": 9007199254740993u64,
                   "empty": {}, "list": [], "tiny": 1e-7}),
            json!({"buildDefinition": {"buildType": "https://example.com/t", "externalParameters": {"k": "v"}},
                   "runDetails": {"builder": {"id": "https://ci"}, "metadata": {"invocationId": "x"}}}),
        ];
        if let Some(dir) = attestor_formats::fixtures::fixtures_dir() {
            let raw = attestor_formats::fixtures::read(&dir, "bundles/conformance-happy-path-intoto-in-dsse-v3.sigstore.json");
            let env = attestor_formats::ParsedEnvelope::from_bundle(&raw, &Default::default()).unwrap();
            predicates.push(env.statement.unwrap().predicate);
        }
        for p in predicates {
            let env = statement_envelope(&p);
            let back = in_tx(&db, a, "a", move |tx| {
                async move {
                    let id = dsse_envelopes::ingest(tx, &env).await?.row.id;
                    Ok(dsse_envelopes::get(tx, id).await?.predicate().cloned())
                }
                .scope_boxed()
            })
            .await
            .unwrap();
            assert_eq!(back.as_ref(), Some(&p));
        }
    });
}

#[test]
fn schema_has_rls_enabled_and_forced_with_isolation_policies() {
    #[derive(QueryableByName)]
    struct T {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        rls: bool,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        forced: bool,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        policy: bool,
    }
    let tdb = shared().test_database().unwrap();
    let mut admin = tdb.connect_admin().unwrap();
    let rows: Vec<T> = diesel::RunQueryDsl::load(
        diesel::sql_query(
            "SELECT c.relname::text AS name, c.relrowsecurity AS rls, c.relforcerowsecurity AS forced, \
             EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid \
                     AND p.polname = c.relname || '_tenant_isolation') AS policy \
             FROM pg_class c WHERE c.relnamespace = 'attestor'::regnamespace AND c.relkind = 'r'",
        ),
        &mut admin,
    )
    .unwrap();
    assert_eq!(rows.len(), TABLES.len());
    for r in rows {
        assert!(
            r.rls && r.forced && r.policy,
            "attestor.{}: rls={} forced={} policy={}",
            r.name,
            r.rls,
            r.forced,
            r.policy
        );
    }
}

#[test]
fn audit_log_records_create_and_update_with_tenant_and_actor() {
    let tdb = shared().test_database().unwrap();
    runtime().block_on(async {
        let db = Database::connect(attestor_e2e::pool_config(tdb.app_url()).with_max_connections(1))
            .await
            .unwrap();
        let (a, b) = (TenantId::new_random(), TenantId::new_random());
        let anchor = in_tx(&db, a, "alice", |tx| {
            async move {
                trust_anchors::create(
                    tx,
                    &trust_anchors::NewTrustAnchor {
                        key_id: "k".into(),
                        algorithm: "ecdsa-p256-sha256".into(),
                        public_key: vec![9; 91],
                        purl_pattern: Some("pkg:oci/*".into()),
                        allowed_predicate_types: vec![],
                        valid_from: chrono::DateTime::from_timestamp(0, 0).unwrap(),
                        valid_until: None,
                    },
                )
                .await
            }
            .scope_boxed()
        })
        .await
        .unwrap();
        let id = anchor.id;
        in_tx(&db, a, "bob", move |tx| {
            async move { trust_anchors::revoke(tx, id, chrono::Utc::now()).await }.scope_boxed()
        })
        .await
        .unwrap();
        let h = in_tx(&db, a, "auditor", move |tx| {
            async move { audit_log::history(tx, "trust_anchors", id).await }.scope_boxed()
        })
        .await
        .unwrap();
        assert_eq!(
            h.iter()
                .map(|e| (e.action.as_str(), e.actor.as_deref(), e.tenant_id))
                .collect::<Vec<_>>(),
            vec![
                ("INSERT", Some("alice"), a.as_uuid()),
                ("UPDATE", Some("bob"), a.as_uuid())
            ]
        );
        assert_eq!(h[0].changes["purl_pattern"], "pkg:oci/*");
        assert!(h[1].changes.get("revoked_at").is_some());
        assert!(
            h[1].changes.get("updated_at").is_none(),
            "updated_at is not audited as a change"
        );
        let seen_by_b = in_tx(&db, b, "b", move |tx| {
            async move { audit_log::history(tx, "trust_anchors", id).await }.scope_boxed()
        })
        .await
        .unwrap();
        assert!(seen_by_b.is_empty());
    });
}
