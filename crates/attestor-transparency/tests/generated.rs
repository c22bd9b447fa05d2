//! Generated vectors: the tests' own logs (P-256 and Ed25519 keys made here)
//! sign SETs and checkpoints over trees built here, so every rule of the crate
//! is checked without the shared fixtures folder.

use attestor_formats::{Limits, TlogEntry};
use attestor_transparency::testlog::{bodies, forged_entry, to_bundle, Style, TestLog, INTEGRATED_TIME};
use attestor_transparency::{verify_entry, Evidence, TrustedRoot, TrustedRootError, VerifyError};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, Utc};

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_750_000_000, 0).unwrap()
}

fn v1_log() -> TestLog {
    TestLog::p256(7, "rekor.example.test")
}

fn v2_log() -> TestLog {
    TestLog::ed25519(9, "log2.example.test")
}

fn root_of(logs: &[&TestLog]) -> TrustedRoot {
    TestLog::trusted_root(logs)
}

#[test]
fn own_trusted_root_parses_both_key_types() {
    let (a, b) = (v1_log(), v2_log());
    let root = root_of(&[&a, &b]);
    assert_eq!(root.tlogs, vec![a.log.clone(), b.log.clone()]);
    assert_eq!(root.tlogs[0].key.algorithm(), "ecdsa-p256-sha256");
    assert_eq!(root.tlogs[1].key.algorithm(), "ed25519");
    assert!(root.unsupported.is_empty());
}

#[test]
fn v1_and_v2_entries_verify_for_every_index() {
    let (a, b) = (v1_log(), v2_log());
    let root = root_of(&[&a, &b]);
    for n in [1usize, 2, 3, 5, 8, 13] {
        let leaves = bodies(n, "ok");
        for i in 0..n {
            let e1 = a.entry(Style::V1, &leaves, i);
            let v = verify_entry(&e1, &root, now()).unwrap_or_else(|e| panic!("v1 n={n} i={i}: {e}"));
            assert_eq!(v.evidence, Evidence::SignedEntryTimestampAndCheckpoint);
            assert_eq!(v.log, &a.log);
            assert_eq!(v.checked_at.timestamp(), INTEGRATED_TIME);
            let e2 = b.entry(Style::V2, &leaves, i);
            let v = verify_entry(&e2, &root, now()).unwrap_or_else(|e| panic!("v2 n={n} i={i}: {e}"));
            assert_eq!(v.evidence, Evidence::Checkpoint);
            assert_eq!(v.log, &b.log);
            assert_eq!(v.checked_at, now());
        }
    }
}

#[test]
fn entries_round_trip_through_bundle_and_api_json() {
    let a = v1_log();
    let root = root_of(&[&a]);
    let e = a.entry(Style::V1, &bodies(6, "rt"), 4);
    let from_bundle = TlogEntry::from_bundle(&to_bundle(&e), &Limits::default()).unwrap();
    verify_entry(&from_bundle, &root, now()).unwrap();
    let api = attestor_transparency::testlog::to_rekor_v1_response(&e);
    let from_api = TlogEntry::from_rekor_v1_response(&api, &Limits::default()).unwrap();
    verify_entry(&from_api, &root, now()).unwrap();
}

/// The attacker's entry: a tree of one (no hashes, root = own leaf hash).
#[test]
fn hand_built_one_leaf_entry_is_refused() {
    let (a, b) = (v1_log(), v2_log());
    let attacker = TestLog::p256(66, "rekor.example.test");
    let attacker_ed = TestLog::ed25519(66, "log2.example.test");
    let root = root_of(&[&a, &b]);
    let body = br#"{"apiVersion":"0.0.1","kind":"hashedrekord","spec":"evil"}"#;
    let leaf = attestor_formats::merkle::leaf_hash(body);

    for (log, attacker, style) in [(&a, &attacker, Style::V1), (&b, &attacker_ed, Style::V2)] {
        let origin = log.origin(style);
        // No checkpoint at all.
        let e = forged_entry(&log.log, body, style, None);
        assert!(matches!(
            verify_entry(&e, &root, now()),
            Err(VerifyError::CheckpointRequired)
        ));

        // Garbage signature under the log's own name and key hint.
        let note = format!("{origin}\n1\n{}\n", STANDARD.encode(leaf));
        let mut garbage = log.log.note_key_hint().to_vec();
        garbage.extend([0x30; 70]);
        let text = format!(
            "{note}\n\u{2014} {} {}\n",
            log.log.name,
            STANDARD.encode(&garbage)
        );
        let e = forged_entry(&log.log, body, style, Some(text));
        assert!(
            matches!(
                verify_entry(&e, &root, now()),
                Err(VerifyError::CheckpointSignature { .. })
            ),
            "{style:?}"
        );

        // Not a signed note at all.
        let e = forged_entry(&log.log, body, style, Some("garbage".into()));
        assert!(matches!(
            verify_entry(&e, &root, now()),
            Err(VerifyError::CheckpointMalformed(_))
        ));

        // Re-signed with another key: its own key hint is not the log's...
        let e = forged_entry(
            &log.log,
            body,
            style,
            Some(attacker.checkpoint(&origin, 1, &leaf, &[])),
        );
        assert!(matches!(
            verify_entry(&e, &root, now()),
            Err(VerifyError::CheckpointUnsigned { .. })
        ));
        // ...and with the log's key hint copied in, the signature fails.
        let mut sig = log.log.note_key_hint().to_vec();
        sig.extend(attacker.sign(note.as_bytes()));
        let text = format!("{note}\n\u{2014} {} {}\n", log.log.name, STANDARD.encode(&sig));
        let e = forged_entry(&log.log, body, style, Some(text));
        assert!(matches!(
            verify_entry(&e, &root, now()),
            Err(VerifyError::CheckpointSignature { .. })
        ));
    }

    // A v1 forgery with a SET signed by another key.
    let mut e = forged_entry(
        &a.log,
        body,
        Style::V1,
        Some(a.checkpoint(&a.origin(Style::V1), 1, &leaf, &[])),
    );
    attacker.resign_set(&mut e);
    assert!(matches!(
        verify_entry(&e, &root, now()),
        Err(VerifyError::SetSignature { .. })
    ));
}

/// A real entry whose proof is rebuilt to a tree of one keeps its genuine SET,
/// but loses the checkpoint (or keeps one for the real tree): refused either way.
#[test]
fn real_entry_with_rebuilt_one_leaf_proof_is_refused() {
    let a = v1_log();
    let root = root_of(&[&a]);
    let real = a.entry(Style::V1, &bodies(9, "real"), 5);
    let mut e = real.clone();
    let p = e.inclusion_proof.as_mut().unwrap();
    p.log_index = 0;
    p.tree_size = 1;
    p.root_hash = e.leaf_hash;
    p.hashes.clear();
    assert!(matches!(
        verify_entry(&e, &root, now()),
        Err(VerifyError::CheckpointMismatch { .. })
    ));
    e.inclusion_proof.as_mut().unwrap().checkpoint = None;
    assert!(matches!(
        verify_entry(&e, &root, now()),
        Err(VerifyError::CheckpointRequired)
    ));
    // The SET removed from the real entry: a v1 entry needs it.
    let mut e = real;
    e.signed_entry_timestamp = None;
    assert!(matches!(
        verify_entry(&e, &root, now()),
        Err(VerifyError::SetRequired)
    ));
}

#[test]
fn unknown_witness_cosignatures_are_ignored_but_the_log_signature_is_needed() {
    let b = v2_log();
    let root = root_of(&[&b]);
    let leaves = bodies(4, "w");
    let mut e = b.entry(Style::V2, &leaves, 2);
    let p = e.inclusion_proof.as_mut().unwrap();
    let root_hash = p.root_hash;
    let witnesses: Vec<String> = (0..3u8)
        .map(|i| format!("\u{2014} w{i}.example.test {}", STANDARD.encode([i; 80])))
        .collect();
    p.checkpoint = Some(b.checkpoint(&b.origin(Style::V2), 4, &root_hash, &witnesses));
    verify_entry(&e, &root, now()).unwrap();
    // Only witness lines, no line of the log: refused.
    let text = p_text(&e);
    let only_witnesses = text
        .lines()
        .filter(|l| !l.starts_with(&format!("\u{2014} {} ", b.log.name)))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    e.inclusion_proof.as_mut().unwrap().checkpoint = Some(only_witnesses);
    assert!(matches!(
        verify_entry(&e, &root, now()),
        Err(VerifyError::CheckpointUnsigned { .. })
    ));
}

fn p_text(e: &TlogEntry) -> String {
    e.inclusion_proof.as_ref().unwrap().checkpoint.clone().unwrap()
}

#[test]
fn checkpoint_of_another_log_origin_or_tree_head_is_refused() {
    let a = v1_log();
    let root = root_of(&[&a]);
    let leaves = bodies(5, "o");
    let mut e = a.entry(Style::V1, &leaves, 1);
    let root_hash = e.inclusion_proof.as_ref().unwrap().root_hash;
    e.inclusion_proof.as_mut().unwrap().checkpoint =
        Some(a.checkpoint("other.example.test - 42", 5, &root_hash, &[]));
    assert!(matches!(
        verify_entry(&e, &root, now()),
        Err(VerifyError::CheckpointOrigin { .. })
    ));
    // Signed, right origin, but for a bigger tree.
    e.inclusion_proof.as_mut().unwrap().checkpoint =
        Some(a.checkpoint(&a.origin(Style::V1), 6, &root_hash, &[]));
    assert!(matches!(
        verify_entry(&e, &root, now()),
        Err(VerifyError::CheckpointMismatch { .. })
    ));
}

#[test]
fn unknown_log_and_key_outside_its_window_are_refused() {
    let (a, b) = (v1_log(), v2_log());
    let e1 = a.entry(Style::V1, &bodies(3, "k"), 0);
    let e2 = b.entry(Style::V2, &bodies(3, "k"), 0);
    // Wrong trusted root.
    let other = root_of(&[&TestLog::p256(8, "rekor.example.test")]);
    assert!(matches!(
        verify_entry(&e1, &other, now()),
        Err(VerifyError::UnknownLog { .. })
    ));
    assert!(matches!(
        verify_entry(&e2, &other, now()),
        Err(VerifyError::UnknownLog { .. })
    ));

    // Key valid only after the integrated time, or ended before it.
    let mut late = v1_log();
    late.log.valid_from = DateTime::from_timestamp(INTEGRATED_TIME + 1, 0).unwrap();
    assert!(matches!(
        verify_entry(&e1, &root_of(&[&late]), now()),
        Err(VerifyError::KeyNotValid { .. })
    ));
    let mut ended = v1_log();
    ended.log.valid_until = Some(DateTime::from_timestamp(INTEGRATED_TIME, 0).unwrap());
    assert!(matches!(
        verify_entry(&e1, &root_of(&[&ended]), now()),
        Err(VerifyError::KeyNotValid { .. })
    ));
    ended.log.valid_until = Some(DateTime::from_timestamp(INTEGRATED_TIME + 1, 0).unwrap());
    verify_entry(&e1, &root_of(&[&ended]), now()).unwrap();

    // An entry without an integrated time is checked at the reference time.
    let mut b_ended = v2_log();
    b_ended.log.valid_until = Some(now());
    assert!(matches!(
        verify_entry(&e2, &root_of(&[&b_ended]), now()),
        Err(VerifyError::KeyNotValid { .. })
    ));
    let earlier = DateTime::from_timestamp(now().timestamp() - 1, 0).unwrap();
    verify_entry(&e2, &root_of(&[&b_ended]), earlier).unwrap();
}

/// The key's window is checked at the entry's integrated time (signed by
/// the SET) when it has one, whatever the observation time; without one
/// (Rekor v2) at the observation time, and adding an integrated time to
/// move the check into the window only makes a SET necessary.
#[test]
fn reference_time_is_the_integrated_time_or_else_the_observation_time() {
    use attestor_transparency::VerifiedTlogEntry;
    let at = |secs: i64| DateTime::from_timestamp(secs, 0).unwrap();
    let (mut a, mut b) = (v1_log(), v2_log());
    a.log.valid_from = at(INTEGRATED_TIME - 10);
    a.log.valid_until = Some(at(INTEGRATED_TIME + 10));
    b.log.valid_from = at(1_740_000_000);
    b.log.valid_until = Some(at(1_760_000_000));
    let root = root_of(&[&a, &b]);
    let e1 = a.entry(Style::V1, &bodies(4, "t"), 3);
    let e2 = b.entry(Style::V2, &bodies(4, "t"), 3);
    // v1: the observation time does not matter, before or after the window.
    for observed in [at(0), now(), at(1_900_000_000)] {
        let v = VerifiedTlogEntry::verify(e1.clone(), &root, observed).unwrap();
        assert_eq!(v.checked_at(), at(INTEGRATED_TIME));
        assert_eq!(v.key_sha256().as_slice(), sha2_256(&a.log.spki_der));
    }
    // v2: observed inside the window, before it opened, after it closed.
    let v = VerifiedTlogEntry::verify(e2.clone(), &root, now()).unwrap();
    assert_eq!((v.checked_at(), v.evidence()), (now(), Evidence::Checkpoint));
    assert_eq!(v.key_sha256().as_slice(), sha2_256(&b.log.spki_der));
    for observed in [at(1_739_999_999), at(1_760_000_000)] {
        assert!(
            matches!(
                verify_entry(&e2, &root, observed),
                Err(VerifyError::KeyNotValid { .. })
            ),
            "{observed}"
        );
    }
    // An integrated time added to the v2 entry (inside the window) is not signed.
    let mut moved = e2.clone();
    moved.integrated_time = Some(1_750_000_000);
    assert!(matches!(
        verify_entry(&moved, &root, at(1_800_000_000)),
        Err(VerifyError::SetRequired)
    ));
}

fn sha2_256(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).to_vec()
}

#[test]
fn v2_entry_must_state_its_proof_index_and_carry_no_set() {
    let b = v2_log();
    let root = root_of(&[&b]);
    let mut e = b.entry(Style::V2, &bodies(3, "i"), 2);
    e.log_index = 7;
    assert!(matches!(
        verify_entry(&e, &root, now()),
        Err(VerifyError::LogIndexUnsigned {
            log_index: 7,
            proof_index: 2
        })
    ));
    let mut e = b.entry(Style::V2, &bodies(3, "i"), 2);
    e.signed_entry_timestamp = Some(vec![1, 2, 3]);
    assert!(matches!(
        verify_entry(&e, &root, now()),
        Err(VerifyError::SetWithoutIntegratedTime)
    ));
}

/// Every single-bit change of a signed or hashed field makes a valid entry fail.
#[test]
fn every_single_bit_tamper_fails() {
    let (a, b) = (v1_log(), v2_log());
    let root = root_of(&[&a, &b]);
    let leaves = bodies(7, "t");
    let mut checked = 0usize;
    for (log, style) in [(&a, Style::V1), (&b, Style::V2)] {
        let good = log.entry(style, &leaves, 3);
        verify_entry(&good, &root, now()).unwrap();
        let mut must_fail = |e: &TlogEntry, what: &str| {
            assert!(
                verify_entry(e, &root, now()).is_err(),
                "{style:?}: tampered {what} verified"
            );
            checked += 1;
        };
        for bit in 0..good.canonical_body.len() * 8 {
            let mut e = good.clone();
            e.canonical_body[bit / 8] ^= 1 << (bit % 8);
            e.leaf_hash = attestor_formats::merkle::leaf_hash(&e.canonical_body);
            must_fail(&e, &format!("body bit {bit}"));
        }
        let proof = good.inclusion_proof.as_ref().unwrap();
        for h in 0..proof.hashes.len() {
            for bit in 0..256 {
                let mut e = good.clone();
                e.inclusion_proof.as_mut().unwrap().hashes[h][bit / 8] ^= 1 << (bit % 8);
                must_fail(&e, &format!("proof hash {h} bit {bit}"));
            }
        }
        for bit in 0..256 {
            let mut e = good.clone();
            e.inclusion_proof.as_mut().unwrap().root_hash[bit / 8] ^= 1 << (bit % 8);
            must_fail(&e, &format!("root bit {bit}"));
        }
        for bit in 0..63 {
            let mut e = good.clone();
            e.log_index ^= 1 << bit;
            must_fail(&e, &format!("log index bit {bit}"));
            let mut e = good.clone();
            e.inclusion_proof.as_mut().unwrap().log_index ^= 1 << bit;
            must_fail(&e, &format!("proof index bit {bit}"));
            let mut e = good.clone();
            e.inclusion_proof.as_mut().unwrap().tree_size ^= 1 << bit;
            must_fail(&e, &format!("tree size bit {bit}"));
            if let Some(t) = good.integrated_time {
                let mut e = good.clone();
                e.integrated_time = Some(t ^ (1 << bit));
                must_fail(&e, &format!("integrated time bit {bit}"));
            }
        }
        let id = hex::decode(&good.log_id).unwrap();
        for bit in 0..id.len() * 8 {
            let mut flipped = id.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let mut e = good.clone();
            e.log_id = hex::encode(flipped);
            must_fail(&e, &format!("log id bit {bit}"));
        }
        if let Some(set) = &good.signed_entry_timestamp {
            for bit in 0..set.len() * 8 {
                let mut e = good.clone();
                e.signed_entry_timestamp.as_mut().unwrap()[bit / 8] ^= 1 << (bit % 8);
                must_fail(&e, &format!("SET bit {bit}"));
            }
        }
        // The checkpoint: every bit of the note text and of the log's signature line.
        let text = proof.checkpoint.clone().unwrap();
        let log_line_start = text.find("\n\n").unwrap() + 2;
        let log_line_end = log_line_start + text[log_line_start..].find('\n').unwrap();
        for bit in 0..log_line_end * 8 {
            let mut bytes = text.clone().into_bytes();
            bytes[bit / 8] ^= 1 << (bit % 8);
            let Ok(tampered) = String::from_utf8(bytes) else {
                continue; // not representable as checkpoint text
            };
            let mut e = good.clone();
            e.inclusion_proof.as_mut().unwrap().checkpoint = Some(tampered);
            must_fail(&e, &format!("checkpoint text bit {bit}"));
        }
        // The decoded signature bytes (every bit, not only the base64 spelling).
        let line = &text[log_line_start..log_line_end];
        let (prefix, sig_b64) = line.rsplit_once(' ').unwrap();
        let sig = STANDARD.decode(sig_b64).unwrap();
        for bit in 0..sig.len() * 8 {
            let mut s = sig.clone();
            s[bit / 8] ^= 1 << (bit % 8);
            let tampered = format!(
                "{}{prefix} {}{}",
                &text[..log_line_start],
                STANDARD.encode(&s),
                &text[log_line_end..]
            );
            let mut e = good.clone();
            e.inclusion_proof.as_mut().unwrap().checkpoint = Some(tampered);
            must_fail(&e, &format!("checkpoint signature bit {bit}"));
        }
    }
    assert!(checked > 8_000, "only {checked} tampered entries were checked");
}

#[test]
fn trusted_root_errors_are_typed() {
    let a = v1_log();
    let good = TestLog::trusted_root_json(&[&a]);
    let mut v: serde_json::Value = serde_json::from_slice(&good).unwrap();
    assert!(matches!(
        TrustedRoot::from_json(b"{"),
        Err(TrustedRootError::Json(_))
    ));

    let mut wrong = v.clone();
    wrong["mediaType"] = "application/vnd.dev.sigstore.trustedroot+json;version=0.2".into();
    assert!(matches!(
        TrustedRoot::from_json(&serde_json::to_vec(&wrong).unwrap()),
        Err(TrustedRootError::MediaType { .. })
    ));

    // A P-256 key declared as Ed25519 does not decode.
    let mut mislabeled = v.clone();
    mislabeled["tlogs"][0]["publicKey"]["keyDetails"] = "PKIX_ED25519".into();
    assert!(matches!(
        TrustedRoot::from_json(&serde_json::to_vec(&mislabeled).unwrap()),
        Err(TrustedRootError::InvalidField { field, .. }) if field == "tlogs[0].publicKey.rawBytes"
    ));

    let mut no_start = v.clone();
    no_start["tlogs"][0]["publicKey"]["validFor"] = serde_json::json!({});
    assert!(matches!(
        TrustedRoot::from_json(&serde_json::to_vec(&no_start).unwrap()),
        Err(TrustedRootError::MissingField { field }) if field == "tlogs[0].publicKey.validFor.start"
    ));

    let mut backwards = v.clone();
    backwards["tlogs"][0]["publicKey"]["validFor"]["end"] = "2000-01-01T00:00:00Z".into();
    assert!(matches!(
        TrustedRoot::from_json(&serde_json::to_vec(&backwards).unwrap()),
        Err(TrustedRootError::InvalidField { .. })
    ));

    // A log with another key type is skipped and listed, not used.
    v["tlogs"][0]["publicKey"]["keyDetails"] = "PKIX_ECDSA_P384_SHA_384".into();
    let root = TrustedRoot::from_json(&serde_json::to_vec(&v).unwrap()).unwrap();
    assert!(root.tlogs.is_empty());
    assert_eq!(root.unsupported, vec!["https://rekor.example.test".to_owned()]);
}
