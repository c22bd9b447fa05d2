//! Generated test vectors: own envelopes, own Merkle trees, own Rekor
//! responses and Sigstore bundles, own SBOMs. Signatures are random bytes:
//! the repositories never verify signatures, only structure, digests and
//! inclusion proofs, which these vectors exercise for real.
#![allow(dead_code)]

use attestor_formats::merkle;
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

/// A Merkle tree of `size` leaves with `body` at `index`; returns (root, proof).
pub fn tree_with(body: &[u8], size: usize, index: usize) -> ([u8; 32], Vec<[u8; 32]>) {
    let leaves: Vec<Vec<u8>> = (0..size)
        .map(|i| {
            if i == index {
                body.to_vec()
            } else {
                random_bytes(40)
            }
        })
        .collect();
    (
        merkle::root(&leaves),
        merkle::inclusion_proof(&leaves, index).unwrap(),
    )
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

/// A Rekor v1 API response for `body`, logged at shard index `index` of a
/// `size`-leaf tree; `corrupt` flips a bit in one proof hash.
pub fn rekor_v1_response(body: &[u8], log_index: i64, size: usize, index: usize, corrupt: bool) -> Vec<u8> {
    let (root, mut proof) = tree_with(body, size, index);
    if corrupt {
        proof[0][0] ^= 1;
    }
    let uuid = hex::encode(merkle::leaf_hash(body));
    serde_json::to_vec(&json!({
        uuid: {
            "body": STANDARD.encode(body),
            "integratedTime": 1_700_000_000,
            "logID": "c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d",
            "logIndex": log_index,
            "verification": {
                "inclusionProof": {
                    "logIndex": index,
                    "treeSize": size,
                    "rootHash": hex::encode(root),
                    "hashes": proof.iter().map(hex::encode).collect::<Vec<_>>(),
                },
                "signedEntryTimestamp": STANDARD.encode(random_bytes(70)),
            }
        }
    }))
    .unwrap()
}

/// A Sigstore v0.3 bundle holding `envelope` and a tlog entry for it.
pub fn bundle(envelope: &Value, log_index: i64, size: usize, index: usize, corrupt: bool) -> Vec<u8> {
    let body = rekor_body(&serde_json::to_vec(envelope).unwrap());
    let (root, mut proof) = tree_with(&body, size, index);
    if corrupt {
        proof[0][0] ^= 1;
    }
    serde_json::to_vec(&json!({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {
            "tlogEntries": [{
                "logIndex": log_index.to_string(),
                "logId": {"keyId": STANDARD.encode(random_bytes(32))},
                "kindVersion": {"kind": "dsse", "version": "0.0.1"},
                "integratedTime": "1700000000",
                "canonicalizedBody": STANDARD.encode(&body),
                "inclusionProof": {
                    "logIndex": index.to_string(),
                    "treeSize": size.to_string(),
                    "rootHash": STANDARD.encode(root),
                    "hashes": proof.iter().map(|h| STANDARD.encode(h)).collect::<Vec<_>>(),
                }
            }]
        },
        "dsseEnvelope": envelope,
    }))
    .unwrap()
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
