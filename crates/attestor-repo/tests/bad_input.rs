//! Bad input: each case is a typed error and writes no row. Malformed base64
//! or JSON, nil or malformed tenant ids, oversized documents (a configurable
//! limit), U+0000 in JSON or text, an inclusion proof that does not verify.

mod common;

use attestor_formats::FormatError;
use attestor_repo::verdict_ledger::{Decision, NewVerdict};
use attestor_repo::{
    dsse_envelopes, rekor_entries, sbom_entries, spines, trust_anchors, verdict_ledger, Database,
    PageRequest, RepoError, TenantContext, TenantId,
};
use base64::Engine as _;
use common::gen::*;
use common::*;
use serde_json::json;

const LIMIT: usize = 4096;

async fn small_db(tdb: &attestor_testdb::TestDatabase<'_>) -> Database {
    Database::connect(
        common::config(tdb.app_url())
            .with_max_connections(2)
            .with_max_document_bytes(LIMIT),
    )
    .await
    .unwrap()
}

/// Runs one ingest that must fail, then checks the tenant has no row at all.
macro_rules! refused {
    ($db:expr, $t:expr, $pat:pat, |$tx:ident| $body:block) => {{
        let e = run!($db, $t, |$tx| $body).expect_err("must be refused");
        assert!(matches!(e, $pat), "unexpected error {e:?}");
        assert!(e.is_invalid_input(), "{e:?} must count as invalid input");
        assert_eq!(total_rows(&$db, $t).await, 0, "no row written after {e:?}");
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_base64_and_json_are_refused() {
    let tdb = test_db();
    let db = small_db(&tdb).await;
    let t = TenantId::new_random();
    let bad_b64 = br#"{"payloadType":"x","payload":"not base64!!","signatures":[{"sig":"AAAA"}]}"#.to_vec();
    refused!(db, t, RepoError::Format(FormatError::Base64 { .. }), |tx| {
        dsse_envelopes::ingest(tx, &bad_b64).await
    });
    // Mixed alphabets in one value are not base64 either.
    let mixed = br#"{"payloadType":"x","payload":"ab+_","signatures":[{"sig":"AAAA"}]}"#.to_vec();
    refused!(db, t, RepoError::Format(FormatError::Base64 { .. }), |tx| {
        dsse_envelopes::ingest(tx, &mixed).await
    });
    let bad_json = b"{\"payloadType\": ".to_vec();
    refused!(db, t, RepoError::Format(FormatError::Json { .. }), |tx| {
        dsse_envelopes::ingest(tx, &bad_json).await
    });
    let bad_json2 = b"[1, 2".to_vec();
    refused!(db, t, RepoError::Format(FormatError::Json { .. }), |tx| {
        sbom_entries::ingest(tx, &bad_json2).await
    });
    let bad_json3 = b"not json".to_vec();
    refused!(db, t, RepoError::Format(FormatError::Json { .. }), |tx| {
        rekor_entries::ingest_rekor_v1_response(tx, &bad_json3, None, &trust()).await
    });
    // In-toto payload that is not JSON.
    let env = serde_json::to_vec(&envelope_json("application/vnd.in-toto+json", b"{oops", false)).unwrap();
    refused!(db, t, RepoError::Format(FormatError::Json { .. }), |tx| {
        dsse_envelopes::ingest(tx, &env).await
    });
    let not_sbom = serde_json::to_vec(&json!({"hello": "world"})).unwrap();
    refused!(db, t, RepoError::Format(FormatError::UnknownFormat), |tx| {
        sbom_entries::ingest(tx, &not_sbom).await
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nil_and_malformed_tenant_ids_are_refused_before_any_sql() {
    for bad in [
        "00000000-0000-0000-0000-000000000000",
        "not-a-uuid",
        "",
        "0b3c5c1e-8f4e-4c59-9d4e-2f1a6f3b9a1",
        "0b3c5c1e-8f4e-4c59-9d4e-2f1a6f3b9a10\0",
    ] {
        assert!(
            matches!(bad.parse::<TenantId>(), Err(RepoError::InvalidTenant)),
            "{bad:?}"
        );
        assert!(serde_json::from_value::<TenantId>(json!(bad)).is_err());
    }
    assert!(matches!(
        TenantId::try_from(uuid::Uuid::nil()),
        Err(RepoError::InvalidTenant)
    ));
    // And the database refuses a nil or malformed tenant set behind the guard's back.
    let tdb = test_db();
    let db = small_db(&tdb).await;
    let t = TenantId::new_random();
    let helper = |value: String| {
        let db = db.clone();
        async move {
            run!(db, t, |tx| {
                use diesel_async::RunQueryDsl;
                #[derive(diesel::QueryableByName)]
                struct Tenant {
                    #[diesel(sql_type = diesel::sql_types::Text)]
                    t: String,
                }
                let row: Tenant = diesel::sql_query(format!(
                    "SELECT set_config('app.tenant_id', '{value}', true), \
                     attestor_app.require_current_tenant()::text AS t"
                ))
                .get_result(tx.conn())
                .await?;
                // Put the guard's tenant back, or the check in front of the
                // COMMIT refuses the transaction (TenantContextChanged).
                diesel::sql_query(format!("SELECT set_config('app.tenant_id', '{t}', true)"))
                    .execute(tx.conn())
                    .await?;
                Ok(row.t)
            })
        }
    };
    for (value, want) in [
        ("00000000-0000-0000-0000-000000000000", "invalid tenant"),
        ("garbage", "invalid tenant"),
        ("", "not set"),
        // The fast path (migration 7) casts anything shaped like a UUID: a
        // non-hex digit fails in the cast (22P02), still before any row.
        ("0b3c5c1e-8f4e-4c59-9d4e-2f1a6f3b9azz", "invalid input"),
    ] {
        let e = helper(value.to_string()).await.unwrap_err();
        let got = match e {
            RepoError::InvalidTenant => "invalid tenant",
            RepoError::TenantNotSet => "not set",
            RepoError::InvalidInput { .. } => "invalid input",
            _ => "something else",
        };
        assert_eq!(got, want, "{value:?}: {e:?}");
    }
    // Other spellings of a UUID mean that UUID, on both paths.
    for spelling in [
        t.to_string().to_uppercase(),
        format!("{{{t}}}"),
        t.to_string().replace('-', ""),
    ] {
        assert_eq!(
            helper(spelling.clone()).await.unwrap(),
            t.to_string(),
            "{spelling}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_documents_are_refused_at_the_configured_limit() {
    let tdb = test_db();
    let db = small_db(&tdb).await;
    let t = TenantId::new_random();
    let big = "x".repeat(LIMIT);
    let env = intoto_envelope(
        "https://example.com/p",
        &sha256_hex(b"a"),
        json!({"pad": big}),
        false,
    );
    assert!(env.len() > LIMIT);
    let env2 = env.clone();
    refused!(
        db,
        t,
        RepoError::Format(FormatError::TooLarge { limit: LIMIT, .. }),
        |tx| { dsse_envelopes::ingest(tx, &env2).await }
    );
    let sbom = cyclonedx(200);
    assert!(sbom.len() > LIMIT);
    refused!(db, t, RepoError::Format(FormatError::TooLarge { .. }), |tx| {
        sbom_entries::ingest(tx, &sbom).await
    });
    let bundle_bytes = bundle(&serde_json::from_slice(&env).unwrap(), 1, 4, 1, false);
    refused!(db, t, RepoError::Format(FormatError::TooLarge { .. }), |tx| {
        dsse_envelopes::ingest_bundle(tx, &bundle_bytes).await
    });
    let v = NewVerdict {
        subject_digest: "sha256:00".into(),
        decision: Decision::Pass,
        policy_ref: "p".into(),
        inputs: json!({"pad": "y".repeat(LIMIT)}),
    };
    refused!(db, t, RepoError::Format(FormatError::TooLarge { .. }), |tx| {
        verdict_ledger::append(tx, &v).await
    });
    let s = spines::NewSpine {
        sbom_entry_id: None,
        evidence_ids: vec![],
        reasoning_id: None,
        vex_verdict_id: None,
        policy_version: "p".into(),
        segments: vec![json!("z".repeat(LIMIT))],
    };
    refused!(db, t, RepoError::Format(FormatError::TooLarge { .. }), |tx| {
        spines::create(tx, &s).await
    });
    // Just under the limit is fine.
    let ok = cyclonedx(1);
    assert!(ok.len() < LIMIT);
    run!(db, t, |tx| { sbom_entries::ingest(tx, &ok).await }).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_characters_in_json_or_text_are_refused() {
    let tdb = test_db();
    let db = small_db(&tdb).await;
    let t = TenantId::new_random();
    let sbom =
        br#"{"bomFormat":"CycloneDX","specVersion":"1.5","components":[{"name":"a\u0000b"}]}"#.to_vec();
    refused!(db, t, RepoError::Format(FormatError::NulCharacter { .. }), |tx| {
        sbom_entries::ingest(tx, &sbom).await
    });
    let env = br#"{"payloadType":"x\u0000","payload":"AAAA","signatures":[{"sig":"AAAA"}]}"#.to_vec();
    refused!(db, t, RepoError::Format(FormatError::NulCharacter { .. }), |tx| {
        dsse_envelopes::ingest(tx, &env).await
    });
    // NUL inside the base64-encoded in-toto statement.
    let st = br#"{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"a","digest":{"sha256":"00"}}],"predicateType":"p\u0000"}"#;
    let env2 = serde_json::to_vec(&json!({
        "payloadType": "application/vnd.in-toto+json",
        "payload": base64::engine::general_purpose::STANDARD.encode(st),
        "signatures": [{"sig": "AAAA"}],
    }))
    .unwrap();
    refused!(db, t, RepoError::Format(FormatError::NulCharacter { .. }), |tx| {
        dsse_envelopes::ingest(tx, &env2).await
    });
    let v = NewVerdict {
        subject_digest: "sha256:00".into(),
        decision: Decision::Warn,
        policy_ref: "p".into(),
        inputs: json!({"k\u{0}": 1}),
    };
    let v1 = v.clone();
    refused!(db, t, RepoError::Format(FormatError::NulCharacter { .. }), |tx| {
        verdict_ledger::append(tx, &v1).await
    });
    let v2 = NewVerdict {
        subject_digest: "sha256:\u{0}".into(),
        ..v.clone()
    };
    refused!(db, t, RepoError::InvalidInput { .. }, |tx| {
        verdict_ledger::append(tx, &v2).await
    });
    let anchor = trust_anchors::NewTrustAnchor {
        key_id: "k\u{0}".into(),
        algorithm: "ed25519".into(),
        public_key: vec![1],
        purl_pattern: None,
        allowed_predicate_types: vec![],
        valid_from: chrono::Utc::now(),
        valid_until: None,
    };
    refused!(db, t, RepoError::InvalidInput { .. }, |tx| {
        trust_anchors::create(tx, &anchor).await
    });
    refused!(db, t, RepoError::InvalidInput { .. }, |tx| {
        dsse_envelopes::find_by_subject_digest(tx, "sha256:\u{0}", PageRequest::first(1)).await
    });
    // The actor is text too.
    let e = db
        .transaction(TenantContext::new(t).with_actor("eve\0"), |_tx| {
            attestor_repo::scoped_futures::ScopedFutureExt::scope_boxed(
                async move { Ok::<(), RepoError>(()) },
            )
        })
        .await
        .unwrap_err();
    assert!(matches!(e, RepoError::InvalidInput { .. }), "{e:?}");
    assert_eq!(total_rows(&db, t).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inclusion_proofs_that_do_not_verify_are_refused() {
    let tdb = test_db();
    let db = small_db(&tdb).await;
    let t = TenantId::new_random();
    let body = rekor_body(b"envelope");
    let corrupted = rekor_v1_response(&body, 10, 17, 9, true);
    refused!(db, t, RepoError::InclusionProof { .. }, |tx| {
        rekor_entries::ingest_rekor_v1_response(tx, &corrupted, None, &trust()).await
    });
    // A proof for another leaf index does not verify either.
    let mut v: serde_json::Value =
        serde_json::from_slice(&rekor_v1_response(&body, 11, 17, 9, false)).unwrap();
    let entry = v.as_object_mut().unwrap().values_mut().next().unwrap();
    entry["verification"]["inclusionProof"]["logIndex"] = json!(8);
    let wrong_index = serde_json::to_vec(&v).unwrap();
    refused!(db, t, RepoError::InclusionProof { .. }, |tx| {
        rekor_entries::ingest_rekor_v1_response(tx, &wrong_index, None, &trust()).await
    });
    // No proof at all.
    entry_without_proof(&mut v);
    let no_proof = serde_json::to_vec(&v).unwrap();
    refused!(db, t, RepoError::InclusionProof { .. }, |tx| {
        rekor_entries::ingest_rekor_v1_response(tx, &no_proof, None, &trust()).await
    });
    let env: serde_json::Value =
        serde_json::from_slice(&intoto_envelope("p", &sha256_hex(b"q"), json!({}), true)).unwrap();
    let bad_bundle = bundle(&env, 3, 5, 4, true);
    let bad_bundle2 = bad_bundle.clone();
    refused!(db, t, RepoError::InclusionProof { .. }, |tx| {
        rekor_entries::ingest_bundle(tx, &bad_bundle, None, &trust()).await
    });
    // The envelope of a bundle whose proof fails is not stored either.
    refused!(db, t, RepoError::InclusionProof { .. }, |tx| {
        rekor_entries::ingest_bundle_with_envelope(tx, &bad_bundle2, &trust())
            .await
            .map(|_| ())
    });
    if let Some(real) = fixture("bundles/conformance-inclusion-proof-corrupted-hash_fail.sigstore.json") {
        let db = Database::connect(common::config(tdb.app_url()).with_max_connections(1))
            .await
            .unwrap();
        let pg = fixture_root("trust/public-good.trusted_root.json");
        refused!(db, t, RepoError::InclusionProof { .. }, |tx| {
            rekor_entries::ingest_bundle(tx, &real, None, &pg).await
        });
    }
}

/// The attacker's hand-built entry (a tree of one: no hashes, root = its own
/// leaf hash) with no checkpoint, a garbage checkpoint, or one signed by
/// another key; and a genuine entry checked against the wrong trusted root.
/// Each is a typed refusal and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_the_log_did_not_sign_are_refused() {
    use attestor_transparency::testlog::{forged_entry, to_bundle, to_rekor_v1_response, Style, TestLog};
    use attestor_transparency::VerifyError;
    let tdb = test_db();
    let db = small_db(&tdb).await;
    let t = TenantId::new_random();
    let log = test_log();
    let attacker = TestLog::p256(66, &log.log.name);
    let body = rekor_body(b"evil envelope");
    let leaf = attestor_formats::merkle::leaf_hash(&body);
    let origin = log.origin(Style::V1);

    let bare = to_rekor_v1_response(&forged_entry(&log.log, &body, Style::V1, None));
    refused!(
        db,
        t,
        RepoError::NotEvidence {
            source: VerifyError::CheckpointRequired
        },
        |tx| { rekor_entries::ingest_rekor_v1_response(tx, &bare, None, &trust()).await }
    );
    let garbage = format!(
        "{origin}\n1\n{}\n\n\u{2014} {} {}\n",
        base64::engine::general_purpose::STANDARD.encode(leaf),
        log.log.name,
        base64::engine::general_purpose::STANDARD
            .encode([log.log.note_key_hint().as_slice(), &[0x30; 70]].concat())
    );
    let garbage = to_bundle(&forged_entry(&log.log, &body, Style::V1, Some(garbage)));
    refused!(
        db,
        t,
        RepoError::NotEvidence {
            source: VerifyError::CheckpointSignature { .. }
        },
        |tx| { rekor_entries::ingest_bundle(tx, &garbage, None, &trust()).await }
    );
    let mut resigned = forged_entry(
        &log.log,
        &body,
        Style::V1,
        Some(attacker.checkpoint(&origin, 1, &leaf, &[])),
    );
    attacker.resign_set(&mut resigned);
    let resigned = to_rekor_v1_response(&resigned);
    refused!(db, t, RepoError::NotEvidence { .. }, |tx| {
        rekor_entries::ingest_rekor_v1_response(tx, &resigned, None, &trust()).await
    });
    // A Rekor v2 style forgery (no integrated time, no SET) without a checkpoint.
    let v2 = to_bundle(&forged_entry(&log.log, &body, Style::V2, None));
    refused!(
        db,
        t,
        RepoError::NotEvidence {
            source: VerifyError::CheckpointRequired
        },
        |tx| { rekor_entries::ingest_bundle(tx, &v2, None, &trust()).await }
    );
    // A genuine entry, but the caller trusts another log.
    let genuine = rekor_v1_response(&body, 5, 9, 3, false);
    let other = TestLog::trusted_root(&[&attacker]);
    refused!(
        db,
        t,
        RepoError::NotEvidence {
            source: VerifyError::UnknownLog { .. }
        },
        |tx| { rekor_entries::ingest_rekor_v1_response(tx, &genuine, None, &other).await }
    );
    // The genuine entry's bundle with its envelope: the envelope is not stored either.
    let env: serde_json::Value =
        serde_json::from_slice(&intoto_envelope("p", &sha256_hex(b"q"), json!({}), true)).unwrap();
    let genuine_bundle = bundle(&env, 3, 5, 4, false);
    let other = TestLog::trusted_root(&[&attacker]);
    refused!(db, t, RepoError::NotEvidence { .. }, |tx| {
        rekor_entries::ingest_bundle_with_envelope(tx, &genuine_bundle, &other)
            .await
            .map(|_| ())
    });
    if let (Some(real), Some(_)) = (
        fixture("bundles/conformance-happy-path-intoto-in-dsse-v3.sigstore.json"),
        attestor_formats::fixtures::fixtures_dir(),
    ) {
        // The real public-good entry against the staging root, and rebuilt to a
        // tree of one (default limits: the fixture is larger than small_db's).
        let db = Database::connect(common::config(tdb.app_url()).with_max_connections(1))
            .await
            .unwrap();
        let staging = fixture_root("trust/staging-rekor2.trusted_root.json");
        let real2 = real.clone();
        refused!(
            db,
            t,
            RepoError::NotEvidence {
                source: VerifyError::UnknownLog { .. }
            },
            |tx| { rekor_entries::ingest_bundle(tx, &real2, None, &staging).await }
        );
        let mut e =
            attestor_formats::TlogEntry::from_bundle(&real, &attestor_formats::Limits::default()).unwrap();
        let p = e.inclusion_proof.as_mut().unwrap();
        (p.log_index, p.tree_size, p.root_hash, p.checkpoint) = (0, 1, e.leaf_hash, None);
        p.hashes.clear();
        let forged = to_bundle(&e);
        let pg = fixture_root("trust/public-good.trusted_root.json");
        refused!(
            db,
            t,
            RepoError::NotEvidence {
                source: VerifyError::CheckpointRequired
            },
            |tx| { rekor_entries::ingest_bundle(tx, &forged, None, &pg).await }
        );
    }
}

fn entry_without_proof(v: &mut serde_json::Value) {
    let entry = v.as_object_mut().unwrap().values_mut().next().unwrap();
    entry["verification"]
        .as_object_mut()
        .unwrap()
        .remove("inclusionProof");
}
