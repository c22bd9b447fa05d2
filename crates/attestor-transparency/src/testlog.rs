//! A transparency log of the tests' own (test support only).
//!
//! Owns: [`TestLog`], a log with a key made from a fixed seed (ECDSA P-256 or
//! Ed25519) that signs SETs and checkpoints exactly as Rekor v1 and v2 do, its
//! trusted-root JSON, and [`TestLog::entry`], which logs a list of bodies and
//! returns the fully signed entry for one of them (as a [`TlogEntry`] or as a
//! Sigstore bundle / Rekor v1 API response), so every crate's tests can build
//! their own evidence and their own forgeries without the fixtures folder.
//!
//! Must never: be compiled into production builds (it sits behind the
//! `test-support` feature), or use a key from anywhere but its seed.

use attestor_formats::{merkle, InclusionProof, TlogEntry};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::pkcs8::EncodePublicKey as _; // (the same `spki` trait encodes both key types)
use p256::ecdsa::signature::Signer as _;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::set::set_payload;
use crate::trusted_root::{TransparencyLog, TrustedRoot, TRUSTED_ROOT_MEDIA_TYPE};

/// Integrated time given to Rekor v1 style entries (2023-11-14T22:13:20Z).
pub const INTEGRATED_TIME: i64 = 1_700_000_000;

enum Signing {
    P256(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

/// A log with its private key.
pub struct TestLog {
    signing: Signing,
    /// The public side, as a trusted root would list it.
    pub log: TransparencyLog,
}

/// Which Rekor generation an entry imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Integrated time, SET, sharded index (global = shard-local + 1000), origin `<name> - 42`.
    V1,
    /// No integrated time, no SET, origin `<name>`.
    V2,
}

impl TestLog {
    /// An ECDSA P-256 log (Rekor v1 style); log id = SHA-256 of the SPKI DER.
    pub fn p256(seed: u8, name: &str) -> Self {
        let mut bytes = [seed; 32];
        bytes[0] = 1; // keep the scalar below the group order for every seed
        let sk = p256::ecdsa::SigningKey::from_bytes(&bytes.into()).expect("valid scalar");
        // Through elliptic-curve's PublicKey: ecdsa's own encoder needs its `pem` feature.
        let der = p256::PublicKey::from(sk.verifying_key())
            .to_public_key_der()
            .expect("encodes")
            .as_bytes()
            .to_vec();
        Self::with(Signing::P256(sk), name, der)
    }

    /// An Ed25519 log (Rekor v2 style); log id = SHA-256(name ‖ `\n` ‖ 0x01 ‖ key).
    pub fn ed25519(seed: u8, name: &str) -> Self {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        let der = sk
            .verifying_key()
            .to_public_key_der()
            .expect("encodes")
            .as_bytes()
            .to_vec();
        Self::with(Signing::Ed25519(sk), name, der)
    }

    fn with(signing: Signing, name: &str, der: Vec<u8>) -> Self {
        let algorithm = match signing {
            Signing::P256(_) => "ecdsa-p256-sha256",
            Signing::Ed25519(_) => "ed25519",
        };
        let key = crate::LogKey::from_spki_der(algorithm, &der).expect("own key decodes");
        let mut log = TransparencyLog {
            base_url: format!("https://{name}"),
            name: name.to_owned(),
            log_id: Vec::new(),
            key,
            spki_der: der,
            valid_from: chrono::DateTime::from_timestamp(1_600_000_000, 0).expect("in range"),
            valid_until: None,
        };
        log.log_id = match &signing {
            Signing::P256(_) => Sha256::digest(&log.spki_der).to_vec(),
            Signing::Ed25519(sk) => {
                let mut h = Sha256::new();
                h.update(name.as_bytes());
                h.update([b'\n', 0x01]);
                h.update(sk.verifying_key().as_bytes());
                h.finalize().to_vec()
            }
        };
        TestLog { signing, log }
    }

    /// This log's signature over `message` (DER for ECDSA, 64 bytes for Ed25519).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match &self.signing {
            Signing::P256(sk) => {
                let sig: p256::ecdsa::Signature = sk.sign(message);
                sig.to_der().as_bytes().to_vec()
            }
            Signing::Ed25519(sk) => sk.sign(message).to_bytes().to_vec(),
        }
    }

    /// The `tlogs[]` element of a trusted root naming this log.
    pub fn trusted_root_tlog(&self) -> Value {
        let mut valid_for = json!({ "start": self.log.valid_from.to_rfc3339() });
        if let Some(end) = self.log.valid_until {
            valid_for["end"] = json!(end.to_rfc3339());
        }
        json!({
            "baseUrl": self.log.base_url,
            "hashAlgorithm": "SHA2_256",
            "publicKey": {
                "rawBytes": STANDARD.encode(&self.log.spki_der),
                "keyDetails": match self.signing {
                    Signing::P256(_) => "PKIX_ECDSA_P256_SHA_256",
                    Signing::Ed25519(_) => "PKIX_ED25519",
                },
                "validFor": valid_for,
            },
            "logId": { "keyId": STANDARD.encode(&self.log.log_id) },
        })
    }

    /// A trusted-root document listing `logs`.
    pub fn trusted_root_json(logs: &[&TestLog]) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "mediaType": TRUSTED_ROOT_MEDIA_TYPE,
            "tlogs": logs.iter().map(|l| l.trusted_root_tlog()).collect::<Vec<_>>(),
            "certificateAuthorities": [],
            "ctlogs": [],
            "timestampAuthorities": [],
        }))
        .expect("serializes")
    }

    /// The same, parsed.
    pub fn trusted_root(logs: &[&TestLog]) -> TrustedRoot {
        TrustedRoot::from_json(&Self::trusted_root_json(logs)).expect("own trusted root parses")
    }

    /// A checkpoint for `(size, root)` with `origin`, signed by this log, then
    /// the `extra` signature lines (e.g. witness cosignatures) as given.
    pub fn checkpoint(&self, origin: &str, size: u64, root: &[u8; 32], extra: &[String]) -> String {
        let note = format!("{origin}\n{size}\n{}\n", STANDARD.encode(root));
        let mut sig = self.log.note_key_hint().to_vec();
        sig.extend(self.sign(note.as_bytes()));
        let mut text = format!("{note}\n\u{2014} {} {}\n", self.log.name, STANDARD.encode(sig));
        for line in extra {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// The checkpoint origin for `style`.
    pub fn origin(&self, style: Style) -> String {
        match style {
            Style::V1 => format!("{} - 42", self.log.name),
            Style::V2 => self.log.name.clone(),
        }
    }

    /// Logs `bodies` and returns the signed entry of `bodies[index]`.
    pub fn entry(&self, style: Style, bodies: &[Vec<u8>], index: usize) -> TlogEntry {
        let hashes: Vec<[u8; 32]> = bodies.iter().map(|b| merkle::leaf_hash(b)).collect();
        let root = merkle::root_from_leaf_hashes(&hashes);
        let proof = merkle::inclusion_proof_from_leaf_hashes(&hashes, index).expect("index in tree");
        let size = bodies.len() as u64;
        let witness = format!(
            "\u{2014} witness.example.test {}",
            STANDARD.encode([[0x5a; 4].as_slice(), &[0x11; 72]].concat())
        );
        let checkpoint = self.checkpoint(&self.origin(style), size, &root, &[witness]);
        let shard = index as i64;
        let body = bodies[index].clone();
        let (kind, kind_version) = body_kind(&body);
        let mut entry = TlogEntry {
            log_id: self.log.log_id_hex(),
            log_index: if style == Style::V1 { shard + 1000 } else { shard },
            shard_log_index: Some(shard),
            entry_uuid: None,
            kind,
            kind_version,
            integrated_time: (style == Style::V1).then_some(INTEGRATED_TIME),
            leaf_hash: merkle::leaf_hash(&body),
            canonical_body: body,
            inclusion_proof: Some(InclusionProof {
                log_index: shard,
                tree_size: size as i64,
                root_hash: root,
                hashes: proof,
                checkpoint: Some(checkpoint),
            }),
            signed_entry_timestamp: None,
        };
        if style == Style::V1 {
            entry.signed_entry_timestamp = Some(self.sign(&set_payload(&entry).expect("has a time")));
        }
        entry
    }

    /// Re-signs the entry's SET (after its fields were changed on purpose).
    pub fn resign_set(&self, entry: &mut TlogEntry) {
        entry.signed_entry_timestamp = set_payload(entry).map(|p| self.sign(&p));
    }
}

/// `n` small JSON bodies of kind `hashedrekord` 0.0.1 with distinct contents.
pub fn bodies(n: usize, tag: &str) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!(r#"{{"apiVersion":"0.0.1","kind":"hashedrekord","spec":"{tag}-{i}"}}"#).into_bytes())
        .collect()
}

fn body_kind(body: &[u8]) -> (String, String) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("unknown").to_owned();
    (s("kind"), s("apiVersion"))
}

/// The hand-built entry an attacker can make for any body: a tree of one
/// leaf (no hashes, root = the leaf hash), claiming `log`, with `checkpoint` as given.
pub fn forged_entry(
    log: &TransparencyLog,
    body: &[u8],
    style: Style,
    checkpoint: Option<String>,
) -> TlogEntry {
    let leaf = merkle::leaf_hash(body);
    let (kind, kind_version) = body_kind(body);
    TlogEntry {
        log_id: log.log_id_hex(),
        log_index: 0,
        shard_log_index: Some(0),
        entry_uuid: None,
        kind,
        kind_version,
        integrated_time: (style == Style::V1).then_some(INTEGRATED_TIME),
        canonical_body: body.to_vec(),
        inclusion_proof: Some(InclusionProof {
            log_index: 0,
            tree_size: 1,
            root_hash: leaf,
            hashes: Vec::new(),
            checkpoint,
        }),
        signed_entry_timestamp: None,
        leaf_hash: leaf,
    }
}

/// The entry as a Sigstore bundle (v0.3, `verificationMaterial.tlogEntries[0]` only).
pub fn to_bundle(entry: &TlogEntry) -> Vec<u8> {
    let mut tlog = json!({
        "logIndex": entry.log_index.to_string(),
        "logId": { "keyId": STANDARD.encode(hex::decode(&entry.log_id).unwrap_or_default()) },
        "kindVersion": { "kind": entry.kind, "version": entry.kind_version },
        "canonicalizedBody": STANDARD.encode(&entry.canonical_body),
    });
    if let Some(t) = entry.integrated_time {
        tlog["integratedTime"] = json!(t.to_string());
    }
    if let Some(set) = &entry.signed_entry_timestamp {
        tlog["inclusionPromise"] = json!({ "signedEntryTimestamp": STANDARD.encode(set) });
    }
    if let Some(p) = &entry.inclusion_proof {
        let mut proof = json!({
            "logIndex": p.log_index.to_string(),
            "rootHash": STANDARD.encode(p.root_hash),
            "treeSize": p.tree_size.to_string(),
            "hashes": p.hashes.iter().map(|h| STANDARD.encode(h)).collect::<Vec<_>>(),
        });
        if let Some(c) = &p.checkpoint {
            proof["checkpoint"] = json!({ "envelope": c });
        }
        tlog["inclusionProof"] = proof;
    }
    serde_json::to_vec(&json!({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": { "tlogEntries": [tlog] },
    }))
    .expect("serializes")
}

/// The entry as a Rekor v1 `GET /api/v1/log/entries/{uuid}` response
/// (needs an integrated time; the UUID is the leaf hash).
pub fn to_rekor_v1_response(entry: &TlogEntry) -> Vec<u8> {
    let mut verification = json!({});
    if let Some(set) = &entry.signed_entry_timestamp {
        verification["signedEntryTimestamp"] = json!(STANDARD.encode(set));
    }
    if let Some(p) = &entry.inclusion_proof {
        let mut proof = json!({
            "logIndex": p.log_index,
            "rootHash": hex::encode(p.root_hash),
            "treeSize": p.tree_size,
            "hashes": p.hashes.iter().map(hex::encode).collect::<Vec<_>>(),
        });
        if let Some(c) = &p.checkpoint {
            proof["checkpoint"] = json!(c);
        }
        verification["inclusionProof"] = proof;
    }
    let mut body = json!({
        "body": STANDARD.encode(&entry.canonical_body),
        "integratedTime": entry.integrated_time.unwrap_or_default(),
        "logID": entry.log_id,
        "logIndex": entry.log_index,
        "verification": verification,
    });
    if entry.signed_entry_timestamp.is_none() && entry.inclusion_proof.is_none() {
        body.as_object_mut().expect("object").remove("verification");
    }
    serde_json::to_vec(&json!({ hex::encode(entry.leaf_hash): body })).expect("serializes")
}
