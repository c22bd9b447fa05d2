//! The real fixtures (shared/fixtures, see its SOURCES.md) against their real
//! trusted roots, through the library and through `attestor-verify-bundle`.
//! Each test prints one line and checks nothing when the folder is missing;
//! tests/generated.rs covers the same rules on the tests' own logs.

use std::path::{Path, PathBuf};
use std::process::Command;

use attestor_formats::fixtures::{fixtures_dir, read};
use attestor_formats::{Limits, TlogEntry};
use attestor_transparency::testlog::{bodies, forged_entry, to_bundle, Style, TestLog};
use attestor_transparency::{verify_entry, Evidence, TrustedRoot, VerifyError};
use chrono::{DateTime, Utc};

const PUBLIC_GOOD: &str = "trust/public-good.trusted_root.json";
const STAGING: &str = "trust/staging-rekor2.trusted_root.json";
const V1_HAPPY: [&str; 3] = [
    "bundles/conformance-happy-path-intoto-in-dsse-v3.sigstore.json",
    "bundles/conformance-managed-key-happy-path.sigstore.json",
    "bundles/slsa-verifier-bcr-MODULE.bazel.sigstore.json",
];
const V2_HAPPY: &str = "bundles/conformance-rekor2-dsse-happy-path.sigstore.json";
const CORRUPTED: &str = "bundles/conformance-inclusion-proof-corrupted-hash_fail.sigstore.json";
const API: &str = "rekor/rekor-v1-api-logentry-rekord-74497915.json";

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_790_000_000, 0).unwrap() // 2026-09: inside alpha3's window
}

fn root(dir: &Path, rel: &str) -> TrustedRoot {
    TrustedRoot::from_json(&read(dir, rel)).unwrap()
}

fn bundle_entry(dir: &Path, rel: &str) -> TlogEntry {
    TlogEntry::from_bundle(&read(dir, rel), &Limits::default()).unwrap()
}

#[test]
fn trusted_roots_list_their_logs() {
    let Some(dir) = fixtures_dir() else { return };
    let pg = root(&dir, PUBLIC_GOOD);
    let names: Vec<(&str, &str)> = pg
        .tlogs
        .iter()
        .map(|l| (l.name.as_str(), l.key.algorithm()))
        .collect();
    assert_eq!(
        names,
        [
            ("rekor.sigstore.dev", "ecdsa-p256-sha256"),
            ("log2025-1.rekor.sigstore.dev", "ed25519")
        ]
    );
    assert_eq!(
        pg.tlogs[0].log_id_hex(),
        "c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d"
    );
    let st = root(&dir, STAGING);
    assert_eq!(st.tlogs.len(), 4);
    let alpha3 = &st.tlogs[3];
    assert_eq!(alpha3.name, "log2025-alpha3.rekor.sigstage.dev");
    // The C2SP key hint SOURCES.md gives for its checkpoint signature line.
    assert_eq!(hex::encode(alpha3.note_key_hint()), "d3d3a70c");
    assert!(st.tlogs[1].valid_until.is_some());
}

#[test]
fn positive_fixtures_verify_against_their_root_only() {
    let Some(dir) = fixtures_dir() else { return };
    let (pg, st) = (root(&dir, PUBLIC_GOOD), root(&dir, STAGING));
    for rel in V1_HAPPY {
        let e = bundle_entry(&dir, rel);
        let v = verify_entry(&e, &pg, now()).unwrap_or_else(|err| panic!("{rel}: {err}"));
        assert_eq!(v.evidence, Evidence::SignedEntryTimestampAndCheckpoint, "{rel}");
        assert_eq!(v.log.name, "rekor.sigstore.dev");
        assert!(
            matches!(verify_entry(&e, &st, now()), Err(VerifyError::UnknownLog { .. })),
            "{rel}"
        );
    }
    let api = TlogEntry::from_rekor_v1_response(&read(&dir, API), &Limits::default()).unwrap();
    assert_eq!(
        verify_entry(&api, &pg, now()).unwrap().evidence,
        Evidence::SignedEntryTimestampAndCheckpoint
    );
    assert!(matches!(
        verify_entry(&api, &st, now()),
        Err(VerifyError::UnknownLog { .. })
    ));

    let v2 = bundle_entry(&dir, V2_HAPPY);
    let v = verify_entry(&v2, &st, now()).unwrap();
    assert_eq!(v.evidence, Evidence::Checkpoint);
    assert_eq!(v.log.name, "log2025-alpha3.rekor.sigstage.dev");
    assert!(matches!(
        verify_entry(&v2, &pg, now()),
        Err(VerifyError::UnknownLog { .. })
    ));
    // Before alpha3's window opened (2025-09-22) its key cannot vouch for anything.
    let before = DateTime::from_timestamp(1_758_000_000, 0).unwrap();
    assert!(matches!(
        verify_entry(&v2, &st, before),
        Err(VerifyError::KeyNotValid { .. })
    ));
}

#[test]
fn corrupted_hash_fails_although_set_and_checkpoint_verify() {
    let Some(dir) = fixtures_dir() else { return };
    let e = bundle_entry(&dir, CORRUPTED);
    assert!(matches!(
        verify_entry(&e, &root(&dir, PUBLIC_GOOD), now()),
        Err(VerifyError::InclusionProof(_))
    ));
}

/// The real entries with their proof rebuilt to a tree of one.
#[test]
fn forged_fixture_entries_are_refused() {
    let Some(dir) = fixtures_dir() else { return };
    let (pg, st) = (root(&dir, PUBLIC_GOOD), root(&dir, STAGING));
    let attacker = TestLog::p256(66, "rekor.sigstore.dev");
    let attacker_ed = TestLog::ed25519(66, "log2025-alpha3.rekor.sigstage.dev");
    for (rel, trusted, attacker) in [
        (V1_HAPPY[0], &pg, &attacker),
        (V1_HAPPY[1], &pg, &attacker),
        (V2_HAPPY, &st, &attacker_ed),
    ] {
        let real = bundle_entry(&dir, rel);
        let mut e = real.clone();
        let p = e.inclusion_proof.as_mut().unwrap();
        let origin = attestor_formats::Checkpoint::parse(p.checkpoint.as_deref().unwrap())
            .unwrap()
            .origin;
        p.tree_size = 1;
        p.log_index = 0;
        p.root_hash = e.leaf_hash;
        p.hashes.clear();
        // Genuine checkpoint kept: it is for the real tree.
        assert!(
            matches!(
                verify_entry(&e, trusted, now()),
                Err(VerifyError::CheckpointMismatch { .. })
            ),
            "{rel}"
        );
        // Checkpoint removed (the genuine SET, where there is one, stays).
        e.inclusion_proof.as_mut().unwrap().checkpoint = None;
        assert!(
            matches!(
                verify_entry(&e, trusted, now()),
                Err(VerifyError::CheckpointRequired)
            ),
            "{rel}"
        );
        // Checkpoint re-signed with another key for the one-leaf tree.
        e.inclusion_proof.as_mut().unwrap().checkpoint =
            Some(attacker.checkpoint(&origin, 1, &e.leaf_hash, &[]));
        assert!(
            matches!(
                verify_entry(&e, trusted, now()),
                Err(VerifyError::CheckpointUnsigned { .. })
            ),
            "{rel}"
        );
        // SET removed or re-signed (v1 entries).
        if real.integrated_time.is_some() {
            let mut e = real.clone();
            e.signed_entry_timestamp = None;
            assert!(
                matches!(verify_entry(&e, trusted, now()), Err(VerifyError::SetRequired)),
                "{rel}"
            );
            attacker.resign_set(&mut e);
            assert!(
                matches!(
                    verify_entry(&e, trusted, now()),
                    Err(VerifyError::SetSignature { .. })
                ),
                "{rel}"
            );
        }
    }
}

fn verify_bundle(root: &Path, bundle: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_attestor-verify-bundle"))
        .arg("--trusted-root")
        .arg(root)
        .arg(bundle)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap(), text)
}

#[test]
fn verify_bundle_binary_on_fixtures() {
    let Some(dir) = fixtures_dir() else { return };
    let (pg, st) = (dir.join(PUBLIC_GOOD), dir.join(STAGING));
    for rel in V1_HAPPY {
        assert_eq!(verify_bundle(&pg, &dir.join(rel)).0, 0, "{rel}");
        assert_eq!(verify_bundle(&st, &dir.join(rel)).0, 1, "{rel}");
    }
    let (code, text) = verify_bundle(&st, &dir.join(V2_HAPPY));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("evidence checkpoint"), "{text}");
    assert_eq!(verify_bundle(&pg, &dir.join(V2_HAPPY)).0, 1);
    let (code, text) = verify_bundle(&pg, &dir.join(CORRUPTED));
    assert_eq!(code, 1);
    assert!(text.contains("inclusion proof"), "{text}");
    // A trusted root given as the bundle, and a bundle given as the root: unusable.
    assert_eq!(verify_bundle(&pg, &pg).0, 2);
    assert_eq!(verify_bundle(&dir.join(V2_HAPPY), &dir.join(V2_HAPPY)).0, 2);
}

/// A scratch folder for generated inputs (never a copy of a fixture).
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("attestor-verify-bundle-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn verify_bundle_binary_on_generated_vectors() {
    let dir = scratch("generated");
    let a = TestLog::p256(7, "rekor.example.test");
    let b = TestLog::ed25519(9, "log2.example.test");
    let root = dir.join("root.json");
    std::fs::write(&root, TestLog::trusted_root_json(&[&a, &b])).unwrap();
    let write = |name: &str, e: &TlogEntry| {
        let p = dir.join(name);
        std::fs::write(&p, to_bundle(e)).unwrap();
        p
    };
    let leaves = bodies(6, "bin");
    assert_eq!(
        verify_bundle(&root, &write("v1.json", &a.entry(Style::V1, &leaves, 2))).0,
        0
    );
    assert_eq!(
        verify_bundle(&root, &write("v2.json", &b.entry(Style::V2, &leaves, 5))).0,
        0
    );
    let forged = forged_entry(&a.log, &leaves[0], Style::V1, None);
    let (code, text) = verify_bundle(&root, &write("forged.json", &forged));
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("checkpoint"), "{text}");
    let other_root = dir.join("other-root.json");
    std::fs::write(
        &other_root,
        TestLog::trusted_root_json(&[&TestLog::p256(8, "rekor.example.test")]),
    )
    .unwrap();
    assert_eq!(verify_bundle(&other_root, &dir.join("v1.json")).0, 1);
    // Unusable input: missing file, not a bundle, no arguments.
    assert_eq!(verify_bundle(&root, &dir.join("absent.json")).0, 2);
    std::fs::write(dir.join("junk.json"), b"{}").unwrap();
    assert_eq!(verify_bundle(&root, &dir.join("junk.json")).0, 2);
    let out = Command::new(env!("CARGO_BIN_EXE_attestor-verify-bundle"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}
