//! Every repository against a real PostgreSQL as `attestor_app`: generated
//! vectors always, the shared real-data fixtures when present.

mod common;

use attestor_repo::verdict_ledger::{Decision, NewVerdict};
use attestor_repo::{
    audit_log, dsse_envelopes, rekor_entries, sbom_entries, spines, trust_anchors, verdict_ledger,
    PageRequest, RepoError, TenantId,
};
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use common::gen::*;
use common::*;
use serde_json::{json, Value};

fn ts(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dsse_ingest_is_idempotent_across_base64_spellings_and_findable() {
    let tdb = test_db();
    let db = app(&tdb, 2).await;
    let t = TenantId::new_random();
    let subject = sha256_hex(b"artifact");
    let predicate = json!({"buildDefinition": {"buildType": "https://example.com/b", "externalParameters": {"k": [1, 2.5, null, "é"]}}});
    let st = statement("https://slsa.dev/provenance/v1", &subject, predicate.clone());
    let payload = serde_json::to_vec(&st).unwrap();
    let std_env = envelope_json("application/vnd.in-toto+json", &payload, false);
    // Same bytes, URL-safe unpadded spelling.
    let b64 = |v: &Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
    };
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let url_env = json!({
        "payloadType": std_env["payloadType"],
        "payload": url.encode(b64(&std_env["payload"])),
        "signatures": [{"keyid": "test-key", "sig": url.encode(b64(&std_env["signatures"][0]["sig"]))}],
    });
    let a = serde_json::to_vec(&std_env).unwrap();
    let b = serde_json::to_vec(&url_env).unwrap();
    let (s2, p2) = (subject.clone(), predicate.clone());
    let (first, second, by_digest, by_subject, by_pt, by_pred) = run!(db, t, |tx| {
        let first = dsse_envelopes::ingest(tx, &a).await?;
        let second = dsse_envelopes::ingest(tx, &b).await?;
        let digest: [u8; 32] = first.row.envelope_sha256.clone().try_into().unwrap();
        let by_digest = dsse_envelopes::find_by_digest(tx, &digest).await?;
        let by_subject = dsse_envelopes::find_by_subject_digest(
            tx,
            &format!("sha256:{}", s2.to_uppercase()),
            PageRequest::first(10),
        )
        .await?;
        let by_pt = dsse_envelopes::find_by_predicate_type(
            tx,
            "https://slsa.dev/provenance/v1",
            PageRequest::first(10),
        )
        .await?;
        let by_pred = dsse_envelopes::find_by_statement(
            tx,
            &json!({"predicate": {"buildDefinition": {"externalParameters": {"k": [2.5]}}}}),
            PageRequest::first(10),
        )
        .await?;
        let _ = p2;
        Ok((first, second, by_digest, by_subject, by_pt, by_pred))
    })
    .unwrap();
    assert!(first.created);
    assert!(!second.created);
    assert_eq!(
        first.row.id, second.row.id,
        "same envelope in another base64 spelling is the same row"
    );
    assert_eq!(first.row.tenant_id, t.as_uuid());
    assert_eq!(first.row.payload, payload, "payload bytes kept exactly");
    assert_eq!(
        first.row.payload_sha256,
        attestor_formats::digest::sha256(&payload).to_vec()
    );
    assert_eq!(first.row.statement.as_ref(), Some(&st));
    assert_eq!(
        first.row.predicate(),
        Some(&predicate),
        "JSONB predicate read back exactly"
    );
    assert_eq!(
        first.row.predicate_type.as_deref(),
        Some("https://slsa.dev/provenance/v1")
    );
    assert_eq!(first.row.subject_digests, vec![format!("sha256:{subject}")]);
    assert_eq!(first.row.envelope, std_env);
    assert_eq!(by_digest.unwrap().id, first.row.id);
    for page in [by_subject, by_pt, by_pred] {
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.items[0].id, first.row.id);
        assert!(page.next.is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dsse_non_intoto_payload_has_no_statement() {
    let tdb = test_db();
    let db = app(&tdb, 1).await;
    let t = TenantId::new_random();
    let env = serde_json::to_vec(&envelope_json(
        "http://example.com/HelloWorld",
        b"hello world",
        false,
    ))
    .unwrap();
    let row = run!(db, t, |tx| { dsse_envelopes::ingest(tx, &env).await })
        .unwrap()
        .row;
    assert_eq!(row.payload, b"hello world");
    assert!(row.statement.is_none() && row.predicate_type.is_none() && row.subject_digests.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekor_entries_verify_before_storing_and_link_to_the_envelope() {
    let tdb = test_db();
    let db = app(&tdb, 1).await;
    let t = TenantId::new_random();
    let env_bytes = intoto_envelope("https://example.com/p", &sha256_hex(b"x"), json!({}), false);
    let body = rekor_body(&env_bytes);
    let good = rekor_v1_response(&body, 1000, 13, 7, false);
    let bad = rekor_v1_response(&body, 1001, 13, 7, true);
    let env_value: Value = serde_json::from_slice(&env_bytes).unwrap();
    let good_bundle = bundle(&env_value, 2000, 9, 8, false);
    let bad_bundle = bundle(&env_value, 2001, 9, 8, true);
    let other_body = rekor_body(b"something else");
    let conflicting = rekor_v1_response(&other_body, 1000, 4, 1, false);
    let (env, stored, again, by_env, err_bad, err_bad_bundle, from_bundle, conflict) = run!(db, t, |tx| {
        let env = dsse_envelopes::ingest(tx, &env_bytes).await?.row;
        let stored = rekor_entries::ingest_rekor_v1_response(tx, &good, Some(env.id), &trust()).await?;
        let again = rekor_entries::ingest_rekor_v1_response(tx, &good, Some(env.id), &trust()).await?;
        let err_bad = rekor_entries::ingest_rekor_v1_response(tx, &bad, Some(env.id), &trust())
            .await
            .unwrap_err();
        let err_bad_bundle = rekor_entries::ingest_bundle(tx, &bad_bundle, None, &trust())
            .await
            .unwrap_err();
        let from_bundle = rekor_entries::ingest_bundle(tx, &good_bundle, Some(env.id), &trust()).await?;
        let conflict = rekor_entries::ingest_rekor_v1_response(tx, &conflicting, None, &trust())
            .await
            .unwrap_err();
        let by_env = rekor_entries::find_by_envelope(tx, env.id).await?;
        Ok((
            env,
            stored,
            again,
            by_env,
            err_bad,
            err_bad_bundle,
            from_bundle,
            conflict,
        ))
    })
    .unwrap();
    assert!(stored.created && !again.created && stored.row.id == again.row.id);
    assert_eq!(stored.row.canonical_body, body);
    assert_eq!(
        stored.row.leaf_hash,
        attestor_formats::merkle::leaf_hash(&body).to_vec()
    );
    assert_eq!(stored.row.log_index, 1000);
    assert_eq!(stored.row.shard_log_index, Some(7));
    assert_eq!(stored.row.kind, "dsse");
    assert_eq!(stored.row.inclusion_proof.as_ref().unwrap()["treeSize"], 13);
    assert_eq!(stored.row.integrated_time, Some(ts(1_700_000_000)));
    // The row names the key that verified it and the signatures that did.
    assert_eq!(
        stored.row.verified_key_sha256.as_deref().map(hex::encode),
        Some(sha256_hex(&test_log().log.spki_der))
    );
    assert_eq!(stored.row.evidence.as_deref(), Some("set+checkpoint"));
    assert!(matches!(err_bad, RepoError::InclusionProof { .. }), "{err_bad:?}");
    assert!(
        matches!(err_bad_bundle, RepoError::InclusionProof { .. }),
        "{err_bad_bundle:?}"
    );
    assert!(matches!(conflict, RepoError::Conflict { .. }), "{conflict:?}");
    assert_eq!(from_bundle.row.envelope_id, Some(env.id));
    assert_eq!(from_bundle.row.integrated_time, Some(ts(1_700_000_000)));
    assert_eq!(by_env.len(), 2);
    // Only the two verified entries exist.
    let n = counts(&db, t)
        .await
        .into_iter()
        .find(|(k, _)| k == "rekor_entries")
        .unwrap()
        .1;
    assert_eq!(n, 2);

    // An envelope id of another tenant cannot be linked (composite FK).
    let other = TenantId::new_random();
    let good2 = rekor_v1_response(&rekor_body(b"b2"), 5, 3, 2, false);
    let e = run!(db, other, |tx| {
        rekor_entries::ingest_rekor_v1_response(tx, &good2, Some(env.id), &trust()).await
    })
    .unwrap_err();
    assert!(matches!(e, RepoError::InvalidInput { .. }), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sboms_are_idempotent_with_format_version_and_count() {
    let tdb = test_db();
    let db = app(&tdb, 1).await;
    let t = TenantId::new_random();
    let cdx0 = cyclonedx(5);
    let cdx = cdx0.clone();
    let sp = spdx(3);
    let (a, a2, b) = run!(db, t, |tx| {
        let a = sbom_entries::ingest(tx, &cdx).await?;
        let a2 = sbom_entries::ingest(tx, &cdx).await?;
        let b = sbom_entries::ingest(tx, &sp).await?;
        Ok((a, a2, b))
    })
    .unwrap();
    assert!(a.created && !a2.created && a.row.id == a2.row.id);
    assert_eq!(
        (
            a.row.format.as_str(),
            a.row.spec_version.as_str(),
            a.row.component_count
        ),
        ("cyclonedx", "1.5", 5)
    );
    assert_eq!(
        (
            b.row.format.as_str(),
            b.row.spec_version.as_str(),
            b.row.component_count
        ),
        ("spdx", "SPDX-2.3", 3)
    );
    assert_eq!(
        a.row.sbom_digest,
        attestor_formats::digest::sha256(&cdx0).to_vec()
    );
    assert_eq!(a.row.document, serde_json::from_slice::<Value>(&cdx0).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spines_are_merkle_identified_and_idempotent() {
    let tdb = test_db();
    let db = app(&tdb, 1).await;
    let t = TenantId::new_random();
    let cdx = cyclonedx(1);
    let (s1, s2, conflict) = run!(db, t, |tx| {
        let sbom = sbom_entries::ingest(tx, &cdx).await?.row;
        let new = spines::NewSpine {
            sbom_entry_id: Some(sbom.id),
            evidence_ids: vec!["ev-1".into(), "ev-2".into()],
            reasoning_id: Some("r-1".into()),
            vex_verdict_id: None,
            policy_version: "policy@1".into(),
            segments: vec![json!({"kind": "sbom", "b": 1, "a": 2}), json!({"kind": "vex"})],
        };
        let s1 = spines::create(tx, &new).await?;
        let s2 = spines::create(tx, &new).await?;
        let mut other = new.clone();
        other.policy_version = "policy@2".into();
        let conflict = spines::create(tx, &other).await.unwrap_err();
        Ok((s1, s2, conflict))
    })
    .unwrap();
    assert!(s1.created && !s2.created && s1.row.id == s2.row.id);
    assert_eq!(s1.row.segment_count, 2);
    let leaves = [
        br#"{"a":2,"b":1,"kind":"sbom"}"#.to_vec(),
        br#"{"kind":"vex"}"#.to_vec(),
    ];
    assert_eq!(
        s1.row.proof_bundle_id,
        attestor_formats::merkle::root(&leaves).to_vec()
    );
    assert!(matches!(conflict, RepoError::Conflict { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_anchors_active_at_time_and_revocation() {
    let tdb = test_db();
    let db = app(&tdb, 1).await;
    let t = TenantId::new_random();
    let new = trust_anchors::NewTrustAnchor {
        key_id: "key-1".into(),
        algorithm: "ecdsa-p256-sha256".into(),
        public_key: random_bytes(91),
        purl_pattern: Some("pkg:npm/*".into()),
        allowed_predicate_types: vec!["https://slsa.dev/provenance/v1".into()],
        valid_from: ts(1_000),
        valid_until: Some(ts(2_000)),
    };
    let mut rotated = new.clone();
    rotated.valid_from = ts(1_500);
    rotated.valid_until = None;
    let new2 = new.clone();
    let a = run!(db, t, |tx| { trust_anchors::create(tx, &new2).await }).unwrap();
    // A failed statement aborts its transaction: each refused write gets its own.
    let new2 = new.clone();
    let dup = run!(db, t, |tx| { trust_anchors::create(tx, &new2).await }).unwrap_err();
    let mut bad = new.clone();
    bad.key_id = "key-2".into();
    bad.algorithm = "md5-rsa".into();
    let bad_alg = run!(db, t, |tx| { trust_anchors::create(tx, &bad).await }).unwrap_err();
    let a_id = a.id;
    let (before, during, after_rot, revoked, after_revoke, still_old) = run!(db, t, |tx| {
        let b = trust_anchors::create(tx, &rotated).await?;
        let before = trust_anchors::find_active(tx, "key-1", ts(999)).await?;
        let during = trust_anchors::find_active(tx, "key-1", ts(1_200))
            .await?
            .map(|x| x.id);
        let after_rot = trust_anchors::find_active(tx, "key-1", ts(1_600))
            .await?
            .map(|x| x.id);
        let revoked = trust_anchors::revoke(tx, b.id, ts(1_700)).await?;
        let after_revoke = trust_anchors::find_active(tx, "key-1", ts(1_800))
            .await?
            .map(|x| x.id);
        let still_old = trust_anchors::find_active(tx, "key-1", ts(1_650))
            .await?
            .map(|x| x.id);
        assert_eq!(during, Some(a_id));
        assert_eq!(after_rot, Some(b.id));
        Ok((before, during, after_rot, revoked, after_revoke, still_old))
    })
    .unwrap();
    assert!(matches!(dup, RepoError::Conflict { .. }), "{dup:?}");
    assert!(matches!(bad_alg, RepoError::InvalidInput { .. }), "{bad_alg:?}");
    assert!(before.is_none());
    assert!(during.is_some() && after_rot.is_some() && during != after_rot);
    assert_eq!(revoked.revoked_at, Some(ts(1_700)));
    // At 1800 the rotated anchor is revoked; the first one (valid until 2000) is
    // still in its window, so it is the active one again.
    assert_eq!(after_revoke, during);
    assert_eq!(still_old, after_rot);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_appends_chain_and_verify() {
    let tdb = test_db();
    let db = app(&tdb, 1).await;
    let t = TenantId::new_random();
    let (entries, verification) = run!(db, t, |tx| {
        let mut out = Vec::new();
        for i in 0..5 {
            let v = NewVerdict {
                subject_digest: format!("sha256:{}", sha256_hex(&[i])),
                decision: [Decision::Pass, Decision::Fail, Decision::Warn][i as usize % 3],
                policy_ref: "policy@1".into(),
                inputs: json!({"i": i, "f": 0.1, "big": 12345678901234567890u64, "nested": {"z": [true, null], "a": "ü"}}),
            };
            out.push(verdict_ledger::append(tx, &v).await?);
        }
        let verification = verdict_ledger::verify_chain(tx).await?;
        Ok((out, verification))
    })
    .unwrap();
    assert_eq!(
        entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(entries[0].prev_hash, vec![0u8; 32]);
    for w in entries.windows(2) {
        assert_eq!(w[1].prev_hash, w[0].entry_hash);
    }
    assert!(entries.iter().all(|e| e.tenant_id == t.as_uuid()));
    assert!(verification.is_valid(), "{verification:?}");
    assert_eq!(verification.entries, 5);
    assert_eq!(
        verification.head.map(|h| h.to_vec()),
        Some(entries[4].entry_hash.clone())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_records_create_and_update_with_tenant_and_actor() {
    let tdb = test_db();
    let db = app(&tdb, 1).await;
    let t = TenantId::new_random();
    let new = trust_anchors::NewTrustAnchor {
        key_id: "audited".into(),
        algorithm: "ed25519".into(),
        public_key: random_bytes(44),
        purl_pattern: None,
        allowed_predicate_types: vec![],
        valid_from: ts(0),
        valid_until: None,
    };
    let anchor = db
        .transaction(attestor_repo::TenantContext::new(t).with_actor("alice"), {
            let new = new.clone();
            move |tx| {
                attestor_repo::scoped_futures::ScopedFutureExt::scope_boxed(async move {
                    trust_anchors::create(tx, &new).await
                })
            }
        })
        .await
        .unwrap();
    let id = anchor.id;
    db.transaction(
        attestor_repo::TenantContext::new(t).with_actor("bob"),
        move |tx| {
            attestor_repo::scoped_futures::ScopedFutureExt::scope_boxed(async move {
                trust_anchors::revoke(tx, id, ts(100)).await
            })
        },
    )
    .await
    .unwrap();
    let (history, page) = run!(db, t, |tx| {
        let h = audit_log::history(tx, "trust_anchors", id).await?;
        let p = audit_log::list(tx, &audit_log::AuditFilter::default(), PageRequest::first(10)).await?;
        Ok((h, p))
    })
    .unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[0].action, "INSERT");
    assert_eq!(history[0].actor.as_deref(), Some("alice"));
    assert_eq!(history[0].tenant_id, t.as_uuid());
    assert_eq!(history[0].changes["key_id"], "audited");
    assert_eq!(history[1].action, "UPDATE");
    assert_eq!(history[1].actor.as_deref(), Some("bob"));
    assert_eq!(history[1].tenant_id, t.as_uuid());
    assert_eq!(history[1].changes["revoked_at"]["old"], Value::Null);
    assert!(history[1].changes["revoked_at"]["new"].is_string());
    assert_ne!(history[0].txid, history[1].txid);
    assert_eq!(page.items.len(), 2);
    assert_eq!(page.items[0].action, "UPDATE", "newest first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyset_pagination_walks_every_row_once_newest_first() {
    let tdb = test_db();
    let db = app(&tdb, 1).await;
    let t = TenantId::new_random();
    let mut ids = Vec::new();
    for i in 0..7 {
        // Separate transactions: distinct created_at; two in one tx: same created_at, id tiebreak.
        let docs = if i == 3 {
            vec![cyclonedx(i), cyclonedx(i + 100)]
        } else {
            vec![cyclonedx(i)]
        };
        let got = run!(db, t, |tx| {
            let mut v = Vec::new();
            for d in &docs {
                v.push(sbom_entries::ingest(tx, d).await?.row.id);
            }
            Ok(v)
        })
        .unwrap();
        ids.extend(got);
    }
    let mut seen = Vec::new();
    let mut req = PageRequest::first(3);
    loop {
        let page = run!(db, t, |tx| { sbom_entries::list(tx, req).await }).unwrap();
        assert!(page.items.len() <= 3);
        for w in page.items.windows(2) {
            assert!((w[0].created_at, w[0].id) > (w[1].created_at, w[1].id));
        }
        seen.extend(page.items.iter().map(|r| r.id));
        match page.next {
            Some(c) => req = PageRequest::after(3, c.to_string().parse().unwrap()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 8);
    let mut a = seen.clone();
    a.sort();
    a.dedup();
    assert_eq!(a.len(), 8, "no duplicates");
    let mut b = ids.clone();
    b.sort();
    assert_eq!(a, b);
    let e = run!(db, t, |tx| {
        sbom_entries::list(tx, PageRequest::first(0)).await
    })
    .unwrap_err();
    assert!(e.is_invalid_input());
    let _ = Duration::zero();
}

// ---------------------------------------------------------------- real fixtures

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixtures_dsse_bundles_rekor_and_sboms() {
    let Some(slsa) = fixture("dsse/slsa-github-generator-v1.2.2-workflow_dispatch.intoto.jsonl") else {
        return;
    };
    let tdb = test_db();
    let db = app(&tdb, 1).await;
    let t = TenantId::new_random();
    let happy = fixture("bundles/conformance-happy-path-intoto-in-dsse-v3.sigstore.json").unwrap();
    let rekor2 = fixture("bundles/conformance-rekor2-dsse-happy-path.sigstore.json").unwrap();
    let managed = fixture("bundles/conformance-managed-key-happy-path.sigstore.json").unwrap();
    let corrupted = fixture("bundles/conformance-inclusion-proof-corrupted-hash_fail.sigstore.json").unwrap();
    let bcr = fixture("bundles/slsa-verifier-bcr-MODULE.bazel.sigstore.json").unwrap();
    let api = fixture("rekor/rekor-v1-api-logentry-rekord-74497915.json").unwrap();
    let cdx = fixture("sbom/cyclonedx-1.2-cern-lhc-vdm-editor.bom.json").unwrap();
    let spdx = fixture("sbom/spdx-2.3-example11.sbom.spdx.json").unwrap();
    let slsa_line = slsa.split(|b| *b == b'\n').next().unwrap().to_vec();
    let pg = fixture_root("trust/public-good.trusted_root.json");
    let st = fixture_root("trust/staging-rekor2.trusted_root.json");
    let rekor_key = sha256_hex(&pg.tlogs[0].spki_der);
    let alpha3_key = sha256_hex(&st.tlogs[3].spki_der);
    let r = run!(db, t, |tx| {
        let env = dsse_envelopes::ingest(tx, &slsa_line).await?.row;
        assert_eq!(env.payload.len(), 8916);
        assert_eq!(
            hex::encode(&env.payload_sha256),
            "eaff14b29d3de4b8d1421ff311a27653f83fb59eebf4af1f0bf497ace7f984f4"
        );
        assert_eq!(
            env.predicate_type.as_deref(),
            Some("https://slsa.dev/provenance/v0.2")
        );
        assert_eq!(
            env.subject_digests,
            vec!["sha256:ec8ff1bb40da2a36e3e9113dd7a5dd452c5125f7013e849519c0754b3c9fda89".to_string()]
        );
        assert!(
            env.signatures[0]["cert"].is_string(),
            "unknown signature fields kept"
        );

        let happy_env = dsse_envelopes::ingest_bundle(tx, &happy).await?.row;
        assert_eq!(happy_env.payload.len(), 1018);
        assert_eq!(
            happy_env.predicate_type.as_deref(),
            Some("https://slsa.dev/provenance/v1")
        );
        let e = rekor_entries::ingest_bundle(tx, &happy, Some(happy_env.id), &pg)
            .await?
            .row;
        assert_eq!((e.log_index, e.shard_log_index), (155_690_850, Some(33_786_588)));
        assert_eq!(
            hex::encode(&e.leaf_hash),
            "875d33538d49eb9bc3224c4868c25d06f78f566730771c4437f50962530906ae"
        );
        assert!(e
            .checkpoint
            .as_deref()
            .unwrap()
            .starts_with("rekor.sigstore.dev - 1193050959916656506\n"));

        assert_eq!(e.evidence.as_deref(), Some("set+checkpoint"));
        assert_eq!(
            e.verified_key_sha256.as_deref().map(hex::encode),
            Some(rekor_key.clone())
        );

        let r2 = rekor_entries::ingest_bundle(tx, &rekor2, None, &st).await?.row;
        assert_eq!((r2.kind.as_str(), r2.integrated_time), ("hashedrekord", None));
        assert_eq!(r2.evidence.as_deref(), Some("checkpoint"));
        assert_eq!(
            r2.verified_key_sha256.as_deref().map(hex::encode),
            Some(alpha3_key)
        );
        let mk = rekor_entries::ingest_bundle(tx, &managed, None, &pg).await?.row;
        assert_eq!(mk.log_index, 771_488_337);
        let (bcr_env, b) = rekor_entries::ingest_bundle_with_envelope(tx, &bcr, &pg).await?;
        let (bcr_env, b) = (bcr_env.row, b.row);
        assert_eq!(b.envelope_id, Some(bcr_env.id));
        assert_eq!(
            bcr_env.predicate_type.as_deref(),
            Some("https://slsa.dev/provenance/v1")
        );
        assert_eq!(
            hex::encode(&b.leaf_hash),
            "015d37d0182dfb7164dae807fd5b684d816c1c97a9d797a458b281c0242458cd"
        );

        let bad = rekor_entries::ingest_bundle(tx, &corrupted, None, &pg)
            .await
            .unwrap_err();
        assert!(matches!(bad, RepoError::InclusionProof { .. }), "{bad:?}");

        let a = rekor_entries::ingest_rekor_v1_response(tx, &api, None, &pg)
            .await?
            .row;
        assert_eq!(
            (a.log_index, a.shard_log_index, a.kind.as_str()),
            (74_497_915, Some(70_334_484), "rekord")
        );
        assert_eq!(
            a.entry_uuid.as_deref().map(|u| &u[..16]),
            Some("24296fb24b8ad77a")
        );

        let c = sbom_entries::ingest(tx, &cdx).await?.row;
        assert_eq!(
            (c.format.as_str(), c.spec_version.as_str(), c.component_count),
            ("cyclonedx", "1.2", 43)
        );
        assert_eq!(
            hex::encode(&c.sbom_digest),
            "2e4891eb09928d6c0418a2f619399cb859c3a4aa6b9f7a7d0db3db31e941687f"
        );
        let s = sbom_entries::ingest(tx, &spdx).await?.row;
        assert_eq!(
            (s.format.as_str(), s.spec_version.as_str(), s.component_count),
            ("spdx", "SPDX-2.3", 4)
        );
        assert_eq!(
            hex::encode(&s.sbom_digest),
            "e38ee905f9c006755e4facc4691af57d4e637a7ef97c3468887c94e0c0f46060"
        );
        Ok(rekor_entries::list(tx, PageRequest::first(50)).await?.items.len())
    })
    .unwrap();
    assert_eq!(
        r, 5,
        "four bundle entries and the API entry; the corrupted one was refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_bundle_stores_envelope_and_linked_entry() {
    let tdb = test_db();
    let db = app(&tdb, 1).await;
    let t = TenantId::new_random();
    let env: Value = serde_json::from_slice(&intoto_envelope(
        "https://spdx.dev/Document",
        &sha256_hex(b"sbom"),
        json!({"spdxVersion": "SPDX-2.3"}),
        true,
    ))
    .unwrap();
    let b = bundle(&env, 77, 6, 5, false);
    let (e1, r1, e2, r2) = run!(db, t, |tx| {
        let (e1, r1) = rekor_entries::ingest_bundle_with_envelope(tx, &b, &trust()).await?;
        let (e2, r2) = rekor_entries::ingest_bundle_with_envelope(tx, &b, &trust()).await?;
        Ok((e1, r1, e2, r2))
    })
    .unwrap();
    assert!(e1.created && r1.created && !e2.created && !r2.created);
    assert_eq!(r1.row.envelope_id, Some(e1.row.id));
    assert_eq!((e2.row.id, r2.row.id), (e1.row.id, r1.row.id));
    assert_eq!(
        e1.row.predicate_type.as_deref(),
        Some("https://spdx.dev/Document")
    );
}

/// Ingest can trust the tenant's own log anchors instead of a configured
/// root: no anchor, no evidence; an anchor for the log makes its entries
/// verify and the row names that key; another tenant's anchors count for
/// nothing; a key outside its window, or revoked before the entry's time,
/// does not vouch; a key that does not decode is refused when the anchor
/// is created; and a log anchor never passes for a signing key.
/// (An anchor revoked before its window opened is left out of the root.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekor_entries_verify_against_the_tenants_log_anchors() {
    use attestor_transparency::testlog::{bodies, to_bundle, Style, TestLog, INTEGRATED_TIME};
    use attestor_transparency::VerifyError;
    let tdb = test_db();
    let db = app(&tdb, 1).await;
    let (t, other) = (TenantId::new_random(), TenantId::new_random());
    let log = test_log();
    let v2 = TestLog::ed25519(23, "log2.example.test");
    let env_value: Value = serde_json::from_slice(&intoto_envelope(
        "https://example.com/p",
        &sha256_hex(b"a"),
        json!({}),
        false,
    ))
    .unwrap();
    let v1_bundle = bundle(&env_value, 3000, 5, 2, false);
    let v2_bundle = to_bundle(&v2.entry(Style::V2, &bodies(4, "anchors"), 1));
    let key = |l: &TestLog, valid_from: i64, valid_until: Option<i64>| trust_anchors::NewLogKey {
        base_url: l.log.base_url.clone(),
        log_id: l.log.log_id.clone(),
        algorithm: l.log.key.algorithm().to_owned(),
        public_key: l.log.spki_der.clone(),
        valid_from: ts(valid_from),
        valid_until: valid_until.map(ts),
    };
    let not_evidence = |e: &RepoError| matches!(e, RepoError::NotEvidence { .. });

    // No anchors: nothing is evidence, nothing is written.
    let b = v1_bundle.clone();
    let e = run!(db, t, |tx| {
        rekor_entries::ingest_bundle_trusting_tenant(tx, &b, None).await
    })
    .unwrap_err();
    assert!(
        matches!(
            &e,
            RepoError::NotEvidence {
                source: VerifyError::UnknownLog { .. }
            }
        ),
        "{e:?}"
    );

    // The v1 log's key, and the v2 log's key whose window closed an hour ago.
    let now = Utc::now().timestamp();
    let (k1, k2) = (
        key(&log, 1_600_000_000, None),
        key(&v2, 1_600_000_000, Some(now - 3600)),
    );
    let (b1, b2) = (v1_bundle.clone(), v2_bundle.clone());
    let (stored, v2_err, anchors) = run!(db, t, |tx| {
        trust_anchors::create_log_key(tx, &k1).await?;
        trust_anchors::create_log_key(tx, &k2).await?;
        let stored = rekor_entries::ingest_bundle_trusting_tenant(tx, &b1, None).await?;
        let v2_err = rekor_entries::ingest_bundle_trusting_tenant(tx, &b2, None)
            .await
            .unwrap_err();
        let anchors = trust_anchors::transparency_logs(tx).await?;
        Ok((stored, v2_err, anchors))
    })
    .unwrap();
    assert!(stored.created);
    assert_eq!(
        stored.row.verified_key_sha256.as_deref().map(hex::encode),
        Some(sha256_hex(&log.log.spki_der))
    );
    assert_eq!(stored.row.evidence.as_deref(), Some("set+checkpoint"));
    assert!(
        matches!(
            &v2_err,
            RepoError::NotEvidence {
                source: VerifyError::KeyNotValid { .. }
            }
        ),
        "a v2 key is checked when the entry is handed in: {v2_err:?}"
    );
    assert_eq!(anchors.tlogs.len(), 2);
    let mut names: Vec<&str> = anchors.tlogs.iter().map(|l| l.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["log2.example.test", "rekor.example.test"]);

    // Another tenant does not inherit them.
    let b = v1_bundle.clone();
    let e = run!(db, other, |tx| {
        rekor_entries::ingest_bundle_trusting_tenant(tx, &b, None).await
    })
    .unwrap_err();
    assert!(not_evidence(&e), "{e:?}");

    // The v2 key with an open window verifies; revoked before the v1
    // entry's integrated time, the v1 key no longer vouches for it.
    let k3 = key(&v2, 1_650_000_000, None);
    let b2 = v2_bundle.clone();
    let b1 = v1_bundle.clone();
    let (v2_stored, v1_err, signing) = run!(db, t, |tx| {
        trust_anchors::create_log_key(tx, &k3).await?;
        let v2_stored = rekor_entries::ingest_bundle_trusting_tenant(tx, &b2, None).await?;
        let anchor = trust_anchors::list(tx, PageRequest::first(50))
            .await?
            .items
            .into_iter()
            .find(|a| a.log_base_url.as_deref() == Some("https://rekor.example.test"))
            .unwrap();
        trust_anchors::revoke(tx, anchor.id, ts(INTEGRATED_TIME - 1)).await?;
        // (stored already: the entry is verified again before the stored row is looked up)
        let v1_err = rekor_entries::ingest_bundle_trusting_tenant(tx, &b1, None)
            .await
            .unwrap_err();
        let signing =
            trust_anchors::find_active(tx, &hex::encode(anchor.log_id.unwrap()), ts(1_650_000_000)).await?;
        Ok((v2_stored, v1_err, signing))
    })
    .unwrap();
    assert_eq!(
        v2_stored.row.verified_key_sha256.as_deref().map(hex::encode),
        Some(sha256_hex(&v2.log.spki_der))
    );
    assert_eq!(v2_stored.row.evidence.as_deref(), Some("checkpoint"));
    assert!(
        matches!(
            &v1_err,
            RepoError::NotEvidence {
                source: VerifyError::KeyNotValid { .. }
            }
        ),
        "{v1_err:?}"
    );
    assert_eq!(signing, None, "a log key is not a signing key");

    // A key that does not decode, or a URL without a host: refused, nothing written.
    let mut bad_key = key(&log, 1_700_000_001, None);
    bad_key.public_key = vec![0x30, 0x03, 0x02, 0x01, 0x00];
    let mut bad_url = key(&log, 1_700_000_002, None);
    bad_url.base_url = "rekor.example.test".into();
    let (e1, e2, n) = run!(db, t, |tx| {
        let e1 = trust_anchors::create_log_key(tx, &bad_key).await.unwrap_err();
        let e2 = trust_anchors::create_log_key(tx, &bad_url).await.unwrap_err();
        let n = trust_anchors::transparency_logs(tx).await?.tlogs.len();
        Ok((e1, e2, n))
    })
    .unwrap();
    assert!(matches!(e1, RepoError::InvalidInput { .. }), "{e1:?}");
    assert!(matches!(e2, RepoError::InvalidInput { .. }), "{e2:?}");
    assert_eq!(n, 3, "the bad keys were not stored");
}
