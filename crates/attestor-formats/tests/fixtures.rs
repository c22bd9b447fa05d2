//! Real public sample data from `shared/fixtures` (see its SOURCES.md), checked
//! against the expected values recorded there. Skips with one line when the
//! folder is absent; `generated.rs` covers the same behaviour on built vectors.

use std::path::Path;

use attestor_formats::digest::{sha256, to_hex};
use attestor_formats::dsse::ParsedEnvelope;
use attestor_formats::fixtures::{fixtures_dir, read};
use attestor_formats::rekor::{Checkpoint, TlogEntry};
use attestor_formats::sbom::{ParsedSbom, SbomFormat};
use attestor_formats::{FormatError, Limits};

const A_TXT_SHA256: &str = "a0cfc71271d6e278e57cd332ff957c3f7043fdda354c4cbb190a30d56efa01bf";
const REKOR_PUBLIC_GOOD_LOG_ID: &str = "c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d";

fn hex_matches(actual: &[u8; 32], prefix: &str, suffix: &str) -> bool {
    let h = to_hex(actual);
    h.starts_with(prefix) && h.ends_with(suffix)
}

struct BundleExpect {
    file: &'static str,
    kind: &'static str,
    kind_version: &'static str,
    log_index: i64,
    shard_index: i64,
    tree_size: i64,
    hashes: usize,
    integrated_time: Option<i64>,
    /// `None` where SOURCES.md lists no value.
    leaf_hash: Option<&'static str>,
    root: Option<(&'static str, &'static str)>,
    has_set: bool,
}

fn check_happy_bundle(dir: &Path, e: &BundleExpect) {
    let bytes = read(dir, e.file);
    let entry =
        TlogEntry::from_bundle(&bytes, &Limits::default()).unwrap_or_else(|err| panic!("{}: {err}", e.file));
    assert_eq!(entry.kind, e.kind, "{}", e.file);
    assert_eq!(entry.kind_version, e.kind_version, "{}", e.file);
    assert_eq!(entry.log_index, e.log_index, "{}", e.file);
    assert_eq!(entry.shard_log_index, Some(e.shard_index), "{}", e.file);
    assert_eq!(entry.integrated_time, e.integrated_time, "{}", e.file);
    assert_eq!(entry.signed_entry_timestamp.is_some(), e.has_set, "{}", e.file);
    if let Some(leaf) = e.leaf_hash {
        assert_eq!(to_hex(&entry.leaf_hash), leaf, "{}", e.file);
    }
    let proof = entry.inclusion_proof.as_ref().unwrap();
    assert_eq!(proof.log_index, e.shard_index, "{}", e.file);
    assert_eq!(proof.tree_size, e.tree_size, "{}", e.file);
    assert_eq!(proof.hashes.len(), e.hashes, "{}", e.file);
    if let Some((prefix, suffix)) = e.root {
        assert!(
            hex_matches(&proof.root_hash, prefix, suffix),
            "{}: root {}",
            e.file,
            to_hex(&proof.root_hash)
        );
    }
    entry
        .verify_inclusion()
        .unwrap_or_else(|err| panic!("{}: {err}", e.file));
    let cp = Checkpoint::parse(proof.checkpoint.as_deref().unwrap()).unwrap();
    assert_eq!(cp.tree_size as i64, e.tree_size, "{}", e.file);
    assert_eq!(cp.root_hash, proof.root_hash, "{}", e.file);
}

fn check_bundles(dir: &Path) {
    let happy = [
        BundleExpect {
            file: "bundles/conformance-happy-path-intoto-in-dsse-v3.sigstore.json",
            kind: "dsse",
            kind_version: "0.0.1",
            log_index: 155690850,
            shard_index: 33786588,
            tree_size: 33786589,
            hashes: 11,
            integrated_time: Some(1734374576),
            leaf_hash: Some("875d33538d49eb9bc3224c4868c25d06f78f566730771c4437f50962530906ae"),
            root: Some((
                "66b611dbded32538b4a2ec753e77d8cda731455040929e5e5b9969c3fa856164",
                "",
            )),
            has_set: true,
        },
        BundleExpect {
            file: "bundles/conformance-rekor2-dsse-happy-path.sigstore.json",
            kind: "hashedrekord",
            kind_version: "0.0.2",
            log_index: 4026478,
            shard_index: 4026478,
            tree_size: 4026479,
            hashes: 13,
            integrated_time: None,
            leaf_hash: Some("fe40655a0f968947de630c778c0f68bd52c68a40c5a25fc1a3a4edd6ab3c2f99"),
            root: Some(("e62697e3", "48adf6")),
            has_set: false,
        },
        BundleExpect {
            file: "bundles/conformance-managed-key-happy-path.sigstore.json",
            kind: "hashedrekord",
            kind_version: "0.0.1",
            log_index: 771488337,
            shard_index: 649584075,
            tree_size: 649584076,
            hashes: 20,
            integrated_time: Some(1766077479),
            leaf_hash: None,
            root: None,
            has_set: true,
        },
        BundleExpect {
            file: "bundles/slsa-verifier-bcr-MODULE.bazel.sigstore.json",
            kind: "dsse",
            kind_version: "0.0.1",
            log_index: 188622862,
            shard_index: 66718600,
            tree_size: 66718601,
            hashes: 13,
            integrated_time: Some(1743032850),
            leaf_hash: Some("015d37d0182dfb7164dae807fd5b684d816c1c97a9d797a458b281c0242458cd"),
            root: None,
            has_set: true,
        },
    ];
    for e in &happy {
        check_happy_bundle(dir, e);
    }

    // Rekor v1 public-good log ID; Rekor v2 full C2SP key ID.
    let v1 = TlogEntry::from_bundle(&read(dir, happy[0].file), &Limits::default()).unwrap();
    assert_eq!(v1.log_id, REKOR_PUBLIC_GOOD_LOG_ID);
    let v2 = TlogEntry::from_bundle(&read(dir, happy[1].file), &Limits::default()).unwrap();
    assert_eq!(v2.log_id.len(), 64);
    let cp = Checkpoint::parse(
        v2.inclusion_proof
            .as_ref()
            .unwrap()
            .checkpoint
            .as_deref()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(cp.origin, "log2025-alpha3.rekor.sigstage.dev");
    assert_eq!(
        cp.signatures.len(),
        4,
        "log signature + three witness cosignatures"
    );
    assert_eq!(hex::encode(cp.signatures[0].key_hint), "d3d3a70c");

    // The corrupted-hash bundle parses but its proof is refused.
    let file = "bundles/conformance-inclusion-proof-corrupted-hash_fail.sigstore.json";
    let bad = TlogEntry::from_bundle(&read(dir, file), &Limits::default()).unwrap();
    let proof = bad.inclusion_proof.as_ref().unwrap();
    assert_eq!((proof.log_index, proof.tree_size), (75408392, 75408393));
    assert!(
        bad.signed_entry_timestamp.is_some(),
        "the SET is there (and valid upstream); it must not help"
    );
    match bad.verify_inclusion() {
        Err(FormatError::RootMismatch { expected, computed }) => {
            assert!(
                expected.starts_with("1679e3d7") && expected.ends_with("6ad573"),
                "{expected}"
            );
            assert_ne!(expected, computed);
        }
        other => panic!("{file}: expected RootMismatch, got {other:?}"),
    }
}

fn check_bundle_envelopes(dir: &Path) {
    let l = Limits::default();
    let env = ParsedEnvelope::from_bundle(
        &read(
            dir,
            "bundles/conformance-happy-path-intoto-in-dsse-v3.sigstore.json",
        ),
        &l,
    )
    .unwrap();
    assert_eq!(env.payload_type, "application/vnd.in-toto+json");
    assert_eq!(env.payload.len(), 1018);
    assert_eq!(
        to_hex(&sha256(&env.pae())),
        "7e43d7270b4d9eee2bcea7d8912b9d2e41f88d2bdeb7e27782af47ac7c4671be"
    );
    let st = env.statement.as_ref().unwrap();
    assert_eq!(st.statement_type, "https://in-toto.io/Statement/v1");
    assert_eq!(st.predicate_type, "https://slsa.dev/provenance/v1");
    assert_eq!(st.subjects[0].name.as_deref(), Some("a.txt"));
    assert_eq!(env.subject_digests(), vec![format!("sha256:{A_TXT_SHA256}")]);
    assert_eq!(
        to_hex(&sha256(&read(dir, "bundles/conformance-a.txt"))),
        A_TXT_SHA256
    );

    // The dsse tlog body records payloadHash = sha256(payload) and the same signature.
    let entry = TlogEntry::from_bundle(
        &read(
            dir,
            "bundles/conformance-happy-path-intoto-in-dsse-v3.sigstore.json",
        ),
        &l,
    )
    .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&entry.canonical_body).unwrap();
    assert_eq!(body["spec"]["payloadHash"]["value"], to_hex(&env.payload_sha256));
    // For an ordinary envelope, envelope_sha256 equals Rekor's dsse envelopeHash.
    assert_eq!(
        body["spec"]["envelopeHash"]["value"],
        to_hex(&env.envelope_sha256)
    );
    let body_sig = body["spec"]["signatures"][0]["signature"].as_str().unwrap();
    assert_eq!(base64_std(&env.signatures[0].sig), body_sig);

    // Rekor v2: the hashedrekord digest is sha256(PAE).
    let env2 = ParsedEnvelope::from_bundle(
        &read(dir, "bundles/conformance-rekor2-dsse-happy-path.sigstore.json"),
        &l,
    )
    .unwrap();
    assert_eq!(
        to_hex(&sha256(&env2.pae())),
        "57f2135c594c7f9360e79a5422c291f8878d4ae5c539bc04dca45da63d7c2e11"
    );
    assert_eq!(env2.subject_digests(), vec![format!("sha256:{A_TXT_SHA256}")]);

    let env3 = ParsedEnvelope::from_bundle(
        &read(dir, "bundles/slsa-verifier-bcr-MODULE.bazel.sigstore.json"),
        &l,
    )
    .unwrap();
    let entry3 = TlogEntry::from_bundle(
        &read(dir, "bundles/slsa-verifier-bcr-MODULE.bazel.sigstore.json"),
        &l,
    )
    .unwrap();
    let body3: serde_json::Value = serde_json::from_slice(&entry3.canonical_body).unwrap();
    assert_eq!(
        body3["spec"]["envelopeHash"]["value"],
        to_hex(&env3.envelope_sha256)
    );
    assert_eq!(
        body3["spec"]["payloadHash"]["value"],
        to_hex(&env3.payload_sha256)
    );
    let st3 = env3.statement.as_ref().unwrap();
    assert_eq!(st3.statement_type, "https://in-toto.io/Statement/v1");
    assert_eq!(st3.predicate_type, "https://slsa.dev/provenance/v1");
    assert_eq!(st3.subjects[0].name.as_deref(), Some("MODULE.bazel"));
    assert_eq!(
        env3.subject_digests(),
        vec!["sha256:06ce330900a7d6403bc8d88e5dfad6aeeb8ae40179f66bb89e69c8bf6f6b1a0b".to_owned()]
    );

    // A message-signature bundle has no DSSE envelope.
    assert!(matches!(
        ParsedEnvelope::from_bundle(
            &read(dir, "bundles/conformance-managed-key-happy-path.sigstore.json"),
            &l
        ),
        Err(FormatError::MissingField { .. })
    ));
}

fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn check_bare_envelope(dir: &Path) {
    let bytes = read(
        dir,
        "dsse/slsa-github-generator-v1.2.2-workflow_dispatch.intoto.jsonl",
    );
    let env = ParsedEnvelope::parse(&bytes, &Limits::default()).unwrap();
    assert_eq!(env.payload.len(), 8916);
    assert_eq!(
        to_hex(&env.payload_sha256),
        "eaff14b29d3de4b8d1421ff311a27653f83fb59eebf4af1f0bf497ace7f984f4"
    );
    assert_eq!(
        to_hex(&sha256(&env.pae())),
        "4e88dae00b8a233b8137afdf7e2481e4f5c5e1af5940d08a9f8795a2745be0fd"
    );
    assert_eq!(env.signatures.len(), 1);
    assert_eq!(env.signatures[0].keyid.as_deref(), Some(""));
    let cert = env.signatures[0].extra["cert"]
        .as_str()
        .expect("non-standard cert field kept");
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(env.raw["signatures"][0]["cert"].as_str(), Some(cert));
    let st = env.statement.as_ref().unwrap();
    assert_eq!(st.statement_type, "https://in-toto.io/Statement/v0.1");
    assert_eq!(st.predicate_type, "https://slsa.dev/provenance/v0.2");
    assert_eq!(st.subjects.len(), 1);
    assert_eq!(
        st.subjects[0].name.as_deref(),
        Some("binary-linux-amd64-workflow_dispatch")
    );
    assert_eq!(
        env.subject_digests(),
        vec!["sha256:ec8ff1bb40da2a36e3e9113dd7a5dd452c5125f7013e849519c0754b3c9fda89".to_owned()]
    );

    // The same envelope re-encoded URL-safe without padding keeps its identity.
    let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    use base64::Engine as _;
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    v["payload"] = url.encode(&env.payload).into();
    v["signatures"][0]["sig"] = url.encode(&env.signatures[0].sig).into();
    let again = ParsedEnvelope::parse(&serde_json::to_vec_pretty(&v).unwrap(), &Limits::default()).unwrap();
    assert_eq!(again.envelope_sha256, env.envelope_sha256);
}

fn check_rekor_api(dir: &Path) {
    let bytes = read(dir, "rekor/rekor-v1-api-logentry-rekord-74497915.json");
    let entry = TlogEntry::from_rekor_v1_response(&bytes, &Limits::default()).unwrap();
    assert_eq!(entry.log_index, 74497915);
    assert_eq!(entry.shard_log_index, Some(70334484));
    assert_eq!(entry.kind, "rekord");
    assert_eq!(entry.kind_version, "0.0.1");
    assert_eq!(entry.integrated_time, Some(1709113639));
    assert_eq!(entry.log_id, REKOR_PUBLIC_GOOD_LOG_ID);
    assert_eq!(
        to_hex(&entry.leaf_hash),
        "de5b579fc915590fd46170507ed6f36f061847f5d592eb30c4febf9c6d0e8ea3"
    );
    let uuid = entry.entry_uuid.as_deref().unwrap();
    assert_eq!(uuid.len(), 80);
    assert!(uuid.starts_with("24296fb24b8ad77a"));
    assert_eq!(u64::from_str_radix(&uuid[..16], 16).unwrap(), 2605736670972794746);
    let proof = entry.inclusion_proof.as_ref().unwrap();
    assert_eq!(proof.tree_size, 70334487);
    assert_eq!(proof.hashes.len(), 11);
    assert!(hex_matches(&proof.root_hash, "024f593b", "f79755"));
    assert!(entry.signed_entry_timestamp.is_some());
    entry.verify_inclusion().unwrap();
    let cp = Checkpoint::parse(proof.checkpoint.as_deref().unwrap()).unwrap();
    assert_eq!(cp.origin, "rekor.sigstore.dev - 2605736670972794746");
    assert_eq!(hex::encode(cp.signatures[0].key_hint), "c0d23d6a");
}

fn check_sboms(dir: &Path) {
    let bytes = read(dir, "sbom/cyclonedx-1.2-cern-lhc-vdm-editor.bom.json");
    let cdx = ParsedSbom::parse(&bytes, &Limits::default()).unwrap();
    assert_eq!(cdx.format, SbomFormat::Cyclonedx);
    assert_eq!(cdx.spec_version, "1.2");
    assert_eq!(cdx.component_count, 43);
    assert_eq!(
        to_hex(&cdx.digest),
        "2e4891eb09928d6c0418a2f619399cb859c3a4aa6b9f7a7d0db3db31e941687f"
    );

    let bytes = read(dir, "sbom/spdx-2.3-example11.sbom.spdx.json");
    let spdx = ParsedSbom::parse(&bytes, &Limits::default()).unwrap();
    assert_eq!(spdx.format, SbomFormat::Spdx);
    assert_eq!(spdx.spec_version, "SPDX-2.3");
    assert_eq!(spdx.component_count, 4);
    assert_eq!(
        to_hex(&spdx.digest),
        "e38ee905f9c006755e4facc4691af57d4e637a7ef97c3468887c94e0c0f46060"
    );

    // Neither a bundle nor a trusted root is an SBOM.
    for other in [
        "trust/public-good.trusted_root.json",
        "bundles/conformance-happy-path-intoto-in-dsse-v3.sigstore.json",
    ] {
        assert!(
            matches!(
                ParsedSbom::parse(&read(dir, other), &Limits::default()),
                Err(FormatError::UnknownFormat)
            ),
            "{other}"
        );
    }
}

#[test]
fn real_fixtures_match_sources_md() {
    let Some(dir) = fixtures_dir() else {
        return;
    };
    check_bundles(&dir);
    check_bundle_envelopes(&dir);
    check_bare_envelope(&dir);
    check_rekor_api(&dir);
    check_sboms(&dir);
}
