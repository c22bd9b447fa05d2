//! Generated test vectors: own envelopes, own Merkle trees, own Rekor
//! responses and Sigstore bundles, own SBOMs. DSSE signatures are random
//! bytes (the repositories do not verify envelope signatures); transparency-log
//! entries are signed for real by [`test_log`], whose key [`trust`] trusts.
#![allow(dead_code)]

use attestor_formats::TlogEntry;
use attestor_transparency::testlog::{self, Style, TestLog};
use attestor_transparency::TrustedRoot;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Value};
use uuid::Uuid;

pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        out.extend_from_slice(Uuid::new_v4().as_bytes());
    }
    out.truncate(n);
    out
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(attestor_formats::digest::sha256(data))
}

/// An in-toto v1 statement.
pub fn statement(predicate_type: &str, subject_sha256: &str, predicate: Value) -> Value {
    json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "artifact.bin", "digest": {"sha256": subject_sha256}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    })
}

/// A DSSE envelope around `payload`, base64 standard or URL-safe (unpadded).
pub fn envelope_json(payload_type: &str, payload: &[u8], url_safe: bool) -> Value {
    let enc = |b: &[u8]| {
        if url_safe {
            URL_SAFE_NO_PAD.encode(b)
        } else {
            STANDARD.encode(b)
        }
    };
    // 0xfb 0xff make '+'/'/' (or '-'/'_') appear in the encodings.
    let mut sig = vec![0xfb, 0xff, 0xfe];
    sig.extend(random_bytes(61));
    json!({
        "payloadType": payload_type,
        "payload": enc(payload),
        "signatures": [{"keyid": "test-key", "sig": enc(&sig)}],
    })
}

pub fn intoto_envelope(
    predicate_type: &str,
    subject_sha256: &str,
    predicate: Value,
    url_safe: bool,
) -> Vec<u8> {
    let st = statement(predicate_type, subject_sha256, predicate);
    let env = envelope_json(
        "application/vnd.in-toto+json",
        &serde_json::to_vec(&st).unwrap(),
        url_safe,
    );
    serde_json::to_vec(&env).unwrap()
}

/// A Rekor entry body of kind `dsse` 0.0.1.
pub fn rekor_body(envelope: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "0.0.1",
        "kind": "dsse",
        "spec": {"envelopeHash": {"algorithm": "sha256", "value": sha256_hex(envelope)}},
    }))
    .unwrap()
}

/// The tests' own Rekor v1 style log (ECDSA P-256 key from a fixed seed).
pub fn test_log() -> TestLog {
    TestLog::p256(21, "rekor.example.test")
}

/// A trusted root holding [`test_log`] only.
pub fn trust() -> TrustedRoot {
    TestLog::trusted_root(&[&test_log()])
}

/// The signed entry for `body` at shard index `index` of a `size`-leaf tree
/// and global index `log_index`; `corrupt` flips a bit in one proof hash
/// (after signing, so the SET and checkpoint still verify).
pub fn signed_entry(body: &[u8], log_index: i64, size: usize, index: usize, corrupt: bool) -> TlogEntry {
    let log = test_log();
    let leaves: Vec<Vec<u8>> = (0..size)
        .map(|i| {
            if i == index {
                body.to_vec()
            } else {
                format!("leaf-{i}").into_bytes()
            }
        })
        .collect();
    let mut entry = log.entry(Style::V1, &leaves, index);
    entry.log_index = log_index;
    log.resign_set(&mut entry);
    if corrupt {
        entry.inclusion_proof.as_mut().unwrap().hashes[0][0] ^= 1;
    }
    entry
}

/// A Rekor v1 API response for `body` (see [`signed_entry`]).
pub fn rekor_v1_response(body: &[u8], log_index: i64, size: usize, index: usize, corrupt: bool) -> Vec<u8> {
    testlog::to_rekor_v1_response(&signed_entry(body, log_index, size, index, corrupt))
}

/// A Sigstore v0.3 bundle holding `envelope` and a signed tlog entry for it.
pub fn bundle(envelope: &Value, log_index: i64, size: usize, index: usize, corrupt: bool) -> Vec<u8> {
    let body = rekor_body(&serde_json::to_vec(envelope).unwrap());
    let entry = signed_entry(&body, log_index, size, index, corrupt);
    let mut bundle: Value = serde_json::from_slice(&testlog::to_bundle(&entry)).unwrap();
    bundle["dsseEnvelope"] = envelope.clone();
    serde_json::to_vec(&bundle).unwrap()
}

pub fn cyclonedx(components: usize) -> Vec<u8> {
    let comps: Vec<Value> = (0..components)
        .map(|i| json!({"type": "library", "name": format!("lib-{i}"), "version": "1.0.0"}))
        .collect();
    serde_json::to_vec(&json!({
        "bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
        "serialNumber": format!("urn:uuid:{}", Uuid::new_v4()),
        "components": comps,
    }))
    .unwrap()
}

pub fn spdx(packages: usize) -> Vec<u8> {
    let pkgs: Vec<Value> = (0..packages)
        .map(|i| json!({"SPDXID": format!("SPDXRef-Package-{i}"), "name": format!("pkg-{i}")}))
        .collect();
    serde_json::to_vec(&json!({
        "spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT",
        "name": "generated", "documentNamespace": format!("https://example.com/{}", Uuid::new_v4()),
        "packages": pkgs,
    }))
    .unwrap()
}
