//! Transparency-log (Rekor) entries in one common shape.
//!
//! Owns: [`TlogEntry`], read from either
//! (a) a Rekor v1 API response body `{"<uuid>": {body, integratedTime, logID,
//!     logIndex, verification: {inclusionProof, signedEntryTimestamp}}}`
//!     (integers as JSON numbers, hashes and `logID` as hex, body and SET as base64), or
//! (b) a Sigstore bundle's `verificationMaterial.tlogEntries[0]` (protobuf JSON:
//!     int64 as decimal strings, bytes as base64, `integratedTime` absent for Rekor v2);
//! the signed-note checkpoint text ([`Checkpoint`]); and checking the entry's
//! RFC 9162 inclusion proof against its stated root ([`TlogEntry::verify_inclusion`]).
//!
//! Index vocabulary: `log_index` is the *global* index across all shards (what
//! users search by); the proof's `log_index` (also `shard_log_index`) is the
//! *shard-local* leaf index the Merkle proof is computed for. They differ on
//! sharded Rekor v1 logs and must not be mixed up.
//!
//! [`TlogEntry::verify_inclusion`] checks consistency only: a proof checked
//! against the root the entry states itself proves nothing, since anyone can
//! build a one-leaf tree whose root is their own leaf hash. Whether an entry is
//! evidence (SET and checkpoint signed by a trusted log) is decided by the
//! `attestor-transparency` crate, which holds the trusted keys.
//!
//! Must never: verify the SET or checkpoint signatures (that needs trusted log
//! keys, which `attestor-transparency` owns), treat a valid SET/checkpoint as a
//! substitute for a valid inclusion proof, or accept an entry whose UUID does
//! not name its body.

use serde_json::{Map, Value};

use crate::b64;
use crate::digest::to_array32;
use crate::dsse::check_bundle_media_type;
use crate::error::{FormatError, Result};
use crate::json::{as_object, get, invalid, missing, non_negative_i64, req, req_array, req_obj, req_str};
use crate::limits::{check_no_nul, Limits};
use crate::merkle;

const API: &str = "Rekor API response";
const BUNDLE: &str = "Sigstore bundle";
const BODY: &str = "Rekor entry body";
const CHECKPOINT: &str = "checkpoint";

/// An RFC 9162 inclusion proof as carried by a log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// Shard-local leaf index the proof is for.
    pub log_index: i64,
    pub tree_size: i64,
    pub root_hash: [u8; 32],
    /// Audit path from the leaf upwards.
    pub hashes: Vec<[u8; 32]>,
    /// Signed-note checkpoint text as received, if any.
    pub checkpoint: Option<String>,
}

/// A transparency-log entry, independent of where it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogEntry {
    /// Log ID (SHA-256 of the log's public key, or the C2SP key ID for Rekor v2), lowercase hex.
    pub log_id: String,
    /// Global log index.
    pub log_index: i64,
    /// Shard-local index (from the inclusion proof), when a proof is present.
    pub shard_log_index: Option<i64>,
    /// Rekor entry UUID (API responses only; bundles do not carry it), lowercase hex.
    pub entry_uuid: Option<String>,
    /// Entry type, e.g. `dsse`, `hashedrekord`, `rekord`.
    pub kind: String,
    /// Entry type version, e.g. `0.0.1`.
    pub kind_version: String,
    /// Unix seconds; `None` when the log does not provide it (Rekor v2).
    pub integrated_time: Option<i64>,
    /// The canonicalized entry body, exactly as logged.
    pub canonical_body: Vec<u8>,
    pub inclusion_proof: Option<InclusionProof>,
    /// Signed entry timestamp (inclusion promise) bytes, when present.
    pub signed_entry_timestamp: Option<Vec<u8>>,
    /// RFC 6962 leaf hash of `canonical_body`.
    pub leaf_hash: [u8; 32],
}

/// A parsed C2SP signed-note checkpoint (`origin`, tree size, root hash, signatures).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub tree_size: u64,
    pub root_hash: [u8; 32],
    /// Optional extension lines after the root hash.
    pub extensions: Vec<String>,
    /// The signed note text: every line up to and including the newline before the blank line.
    pub note_text: String,
    pub signatures: Vec<NoteSignature>,
}

/// One `— <name> <base64>` line of a signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    /// First 4 bytes of the decoded value (the key hint).
    pub key_hint: [u8; 4],
    /// The remaining bytes (signature, or timestamp + signature for cosignatures).
    pub signature: Vec<u8>,
}

impl Checkpoint {
    /// Parses signed-note checkpoint text. Signatures are split out, not verified.
    pub fn parse(text: &str) -> Result<Self> {
        let Some((note, sigs)) = text.split_once("\n\n") else {
            return Err(invalid(
                CHECKPOINT,
                "(text)",
                "no blank line separating the note from its signatures",
            ));
        };
        let note_text = format!("{note}\n");
        let mut lines = note.split('\n');
        let origin = lines.next().unwrap_or_default().to_owned();
        if origin.is_empty() {
            return Err(missing(CHECKPOINT, "origin"));
        }
        let size_line = lines.next().ok_or_else(|| missing(CHECKPOINT, "tree size"))?;
        let tree_size = if !size_line.is_empty() && size_line.bytes().all(|b| b.is_ascii_digit()) {
            size_line.parse::<u64>().ok()
        } else {
            None
        }
        .ok_or_else(|| invalid(CHECKPOINT, "tree size", "expected a decimal integer"))?;
        let root_line = lines.next().ok_or_else(|| missing(CHECKPOINT, "root hash"))?;
        let root_hash = to_array32(
            &b64::decode(root_line, "checkpoint root hash")?,
            CHECKPOINT,
            "root hash",
        )?;
        let extensions = lines.map(str::to_owned).collect();

        let mut signatures = Vec::new();
        for line in sigs.split('\n').filter(|l| !l.is_empty()) {
            let rest = line.strip_prefix("\u{2014} ").ok_or_else(|| {
                invalid(
                    CHECKPOINT,
                    "signature line",
                    "expected `\u{2014} <name> <base64>`",
                )
            })?;
            let (name, sig_b64) = rest.rsplit_once(' ').ok_or_else(|| {
                invalid(
                    CHECKPOINT,
                    "signature line",
                    "expected `\u{2014} <name> <base64>`",
                )
            })?;
            let bytes = b64::decode(sig_b64, format!("checkpoint signature of {name}"))?;
            if bytes.len() < 5 {
                return Err(invalid(
                    CHECKPOINT,
                    "signature line",
                    "signature is shorter than its 4-byte key hint",
                ));
            }
            signatures.push(NoteSignature {
                name: name.to_owned(),
                key_hint: bytes[..4].try_into().expect("length checked"),
                signature: bytes[4..].to_vec(),
            });
        }
        Ok(Self {
            origin,
            tree_size,
            root_hash,
            extensions,
            note_text,
            signatures,
        })
    }
}

impl TlogEntry {
    /// Parses a Rekor v1 `GET /api/v1/log/entries/{uuid}` response body holding exactly one entry.
    pub fn from_rekor_v1_response(bytes: &[u8], limits: &Limits) -> Result<Self> {
        let value = limits.parse_json(bytes, API)?;
        let obj = as_object(&value, API, "")?;
        if obj.len() != 1 {
            return Err(invalid(
                API,
                "(top level)",
                format!(
                    "expected exactly one entry keyed by its UUID, found {}",
                    obj.len()
                ),
            ));
        }
        let (uuid, entry) = obj.iter().next().expect("length checked");
        Self::from_rekor_v1_entry(uuid, entry)
    }

    /// Parses one Rekor v1 API entry object (the value under its UUID key).
    pub fn from_rekor_v1_entry(uuid: &str, entry: &Value) -> Result<Self> {
        let prefix = "<uuid>";
        check_no_nul(entry, API)?;
        let e = entry
            .as_object()
            .ok_or_else(|| invalid(API, prefix, "expected a JSON object"))?;
        let canonical_body = b64::decode(req_str(e, "body", API, prefix)?, "body")?;
        let (kind, kind_version) = body_kind(&canonical_body)?.ok_or_else(|| {
            invalid(
                API,
                "body",
                "decoded body is not a JSON object with `kind` and `apiVersion`",
            )
        })?;
        let integrated_time = Some(non_negative_i64(
            req(e, "integratedTime", API, prefix)?,
            API,
            "integratedTime",
            false,
        )?);
        let log_id = hex_field(req_str(e, "logID", API, prefix)?, "logID", API)?;
        let log_index = non_negative_i64(req(e, "logIndex", API, prefix)?, API, "logIndex", false)?;

        let mut inclusion_proof = None;
        let mut signed_entry_timestamp = None;
        if let Some(v) = get(e, "verification") {
            let vo = v
                .as_object()
                .ok_or_else(|| invalid(API, "verification", "expected a JSON object"))?;
            if let Some(p) = get(vo, "inclusionProof") {
                let po = p
                    .as_object()
                    .ok_or_else(|| invalid(API, "verification.inclusionProof", "expected a JSON object"))?;
                inclusion_proof = Some(api_proof(po)?);
            }
            if let Some(s) = get(vo, "signedEntryTimestamp") {
                let s = s
                    .as_str()
                    .ok_or_else(|| invalid(API, "verification.signedEntryTimestamp", "expected a string"))?;
                signed_entry_timestamp = Some(b64::decode(s, "verification.signedEntryTimestamp")?);
            }
        }

        let leaf_hash = merkle::leaf_hash(&canonical_body);
        let entry_uuid = check_uuid(uuid, &leaf_hash)?;
        Ok(Self {
            log_id,
            log_index,
            shard_log_index: inclusion_proof.as_ref().map(|p| p.log_index),
            entry_uuid: Some(entry_uuid),
            kind,
            kind_version,
            integrated_time,
            canonical_body,
            inclusion_proof,
            signed_entry_timestamp,
            leaf_hash,
        })
    }

    /// Parses `verificationMaterial.tlogEntries[0]` of a Sigstore bundle.
    pub fn from_bundle(bundle_json: &[u8], limits: &Limits) -> Result<Self> {
        let bundle = limits.parse_json(bundle_json, BUNDLE)?;
        let obj = as_object(&bundle, BUNDLE, "")?;
        check_bundle_media_type(obj)?;
        let vm = req_obj(obj, "verificationMaterial", BUNDLE, "")?;
        let entries = req_array(vm, "tlogEntries", BUNDLE, "verificationMaterial")?;
        let first = entries
            .first()
            .ok_or_else(|| missing(BUNDLE, "verificationMaterial.tlogEntries[0]"))?;
        Self::from_bundle_tlog_entry(first)
    }

    /// Parses one protobuf-JSON `TransparencyLogEntry` object.
    pub fn from_bundle_tlog_entry(entry: &Value) -> Result<Self> {
        let p = "verificationMaterial.tlogEntries[0]";
        check_no_nul(entry, BUNDLE)?;
        let e = entry
            .as_object()
            .ok_or_else(|| invalid(BUNDLE, p, "expected a JSON object"))?;
        let f = |name: &str| format!("{p}.{name}");

        let log_index = non_negative_i64(req(e, "logIndex", BUNDLE, p)?, BUNDLE, &f("logIndex"), true)?;
        let log_id_obj = req_obj(e, "logId", BUNDLE, p)?;
        let key_id = b64::decode(
            req_str(log_id_obj, "keyId", BUNDLE, &f("logId"))?,
            f("logId.keyId"),
        )?;
        if key_id.is_empty() {
            return Err(invalid(BUNDLE, f("logId.keyId"), "must not be empty"));
        }
        let kv = req_obj(e, "kindVersion", BUNDLE, p)?;
        let kind = req_str(kv, "kind", BUNDLE, &f("kindVersion"))?.to_owned();
        let kind_version = req_str(kv, "version", BUNDLE, &f("kindVersion"))?.to_owned();
        // proto3 JSON omits default values, so an absent field and "0" both mean "not set".
        let integrated_time = match get(e, "integratedTime") {
            None => None,
            Some(v) => Some(non_negative_i64(v, BUNDLE, &f("integratedTime"), true)?).filter(|t| *t != 0),
        };
        let canonical_body = b64::decode(
            req_str(e, "canonicalizedBody", BUNDLE, p)?,
            f("canonicalizedBody"),
        )?;
        if let Some((body_kind, body_version)) = body_kind(&canonical_body)? {
            if body_kind != kind || body_version != kind_version {
                return Err(invalid(
                    BUNDLE,
                    f("kindVersion"),
                    format!(
                        "says {kind} {kind_version} but the canonicalized body is {body_kind} {body_version}"
                    ),
                ));
            }
        }

        let signed_entry_timestamp = match get(e, "inclusionPromise") {
            None => None,
            Some(v) => {
                let o = v
                    .as_object()
                    .ok_or_else(|| invalid(BUNDLE, f("inclusionPromise"), "expected a JSON object"))?;
                let set = req_str(o, "signedEntryTimestamp", BUNDLE, &f("inclusionPromise"))?;
                Some(b64::decode(set, f("inclusionPromise.signedEntryTimestamp"))?)
            }
        };

        let inclusion_proof = match get(e, "inclusionProof") {
            None => None,
            Some(v) => {
                let pp = f("inclusionProof");
                let o = v
                    .as_object()
                    .ok_or_else(|| invalid(BUNDLE, pp.clone(), "expected a JSON object"))?;
                let fp = |name: &str| format!("{pp}.{name}");
                let log_index =
                    non_negative_i64(req(o, "logIndex", BUNDLE, &pp)?, BUNDLE, &fp("logIndex"), true)?;
                let tree_size =
                    non_negative_i64(req(o, "treeSize", BUNDLE, &pp)?, BUNDLE, &fp("treeSize"), true)?;
                let root_hash = to_array32(
                    &b64::decode(req_str(o, "rootHash", BUNDLE, &pp)?, fp("rootHash"))?,
                    BUNDLE,
                    &fp("rootHash"),
                )?;
                let mut hashes = Vec::new();
                for (i, h) in req_array(o, "hashes", BUNDLE, &pp)?.iter().enumerate() {
                    let field = format!("{pp}.hashes[{i}]");
                    let s = h
                        .as_str()
                        .ok_or_else(|| invalid(BUNDLE, field.clone(), "expected a string"))?;
                    hashes.push(to_array32(&b64::decode(s, field.clone())?, BUNDLE, &field)?);
                }
                let checkpoint = match get(o, "checkpoint") {
                    None => None,
                    Some(c) => {
                        let co = c
                            .as_object()
                            .ok_or_else(|| invalid(BUNDLE, fp("checkpoint"), "expected a JSON object"))?;
                        Some(req_str(co, "envelope", BUNDLE, &fp("checkpoint"))?.to_owned())
                    }
                };
                Some(InclusionProof {
                    log_index,
                    tree_size,
                    root_hash,
                    hashes,
                    checkpoint,
                })
            }
        };

        Ok(Self {
            log_id: hex::encode(key_id),
            log_index,
            shard_log_index: inclusion_proof.as_ref().map(|p| p.log_index),
            entry_uuid: None,
            kind,
            kind_version,
            integrated_time,
            leaf_hash: merkle::leaf_hash(&canonical_body),
            canonical_body,
            inclusion_proof,
            signed_entry_timestamp,
        })
    }

    /// Checks the inclusion proof's consistency (not evidence of inclusion: see
    /// the module docs): leaf = `leaf_hash(canonical_body)` at the proof's
    /// shard-local index must lead to the stated root. When a checkpoint is
    /// attached, its tree size and root must equal the proof's (its signature is
    /// not checked here).
    ///
    /// Errors: [`FormatError::InclusionProof`] with reason `"missing"` when the
    /// entry has no proof, or a structural reason; [`FormatError::RootMismatch`]
    /// when the proof does not lead to the stated root.
    pub fn verify_inclusion(&self) -> Result<()> {
        let proof = self
            .inclusion_proof
            .as_ref()
            .ok_or_else(|| FormatError::InclusionProof {
                reason: "missing".to_owned(),
            })?;
        let index = u64::try_from(proof.log_index).map_err(|_| FormatError::InclusionProof {
            reason: format!("negative leaf index {}", proof.log_index),
        })?;
        let size = u64::try_from(proof.tree_size).map_err(|_| FormatError::InclusionProof {
            reason: format!("negative tree size {}", proof.tree_size),
        })?;
        merkle::verify_inclusion(&self.leaf_hash, index, size, &proof.hashes, &proof.root_hash)?;
        if let Some(text) = &proof.checkpoint {
            let cp = Checkpoint::parse(text)?;
            if cp.tree_size != size || cp.root_hash != proof.root_hash {
                return Err(FormatError::InclusionProof {
                    reason: format!(
                        "checkpoint is for tree size {} root {}, but the proof is for tree size {size} root {}",
                        cp.tree_size,
                        hex::encode(cp.root_hash),
                        hex::encode(proof.root_hash)
                    ),
                });
            }
        }
        Ok(())
    }
}

fn api_proof(po: &Map<String, Value>) -> Result<InclusionProof> {
    let pp = "verification.inclusionProof";
    let fp = |name: &str| format!("{pp}.{name}");
    let log_index = non_negative_i64(req(po, "logIndex", API, pp)?, API, &fp("logIndex"), false)?;
    let tree_size = non_negative_i64(req(po, "treeSize", API, pp)?, API, &fp("treeSize"), false)?;
    let root_hash = hash_hex(req_str(po, "rootHash", API, pp)?, &fp("rootHash"))?;
    let mut hashes = Vec::new();
    for (i, h) in req_array(po, "hashes", API, pp)?.iter().enumerate() {
        let field = format!("{pp}.hashes[{i}]");
        let s = h
            .as_str()
            .ok_or_else(|| invalid(API, field.clone(), "expected a string"))?;
        hashes.push(hash_hex(s, &field)?);
    }
    let checkpoint = match get(po, "checkpoint") {
        None => None,
        Some(c) => Some(
            c.as_str()
                .ok_or_else(|| invalid(API, fp("checkpoint"), "expected a string"))?
                .to_owned(),
        ),
    };
    Ok(InclusionProof {
        log_index,
        tree_size,
        root_hash,
        hashes,
        checkpoint,
    })
}

fn hex_field(value: &str, field: &str, document: &'static str) -> Result<String> {
    let bytes = hex::decode(value).map_err(|source| FormatError::Hex {
        field: field.to_owned(),
        source,
    })?;
    if bytes.is_empty() {
        return Err(invalid(document, field, "must not be empty"));
    }
    Ok(hex::encode(bytes))
}

fn hash_hex(value: &str, field: &str) -> Result<[u8; 32]> {
    let bytes = hex::decode(value).map_err(|source| FormatError::Hex {
        field: field.to_owned(),
        source,
    })?;
    to_array32(&bytes, API, field)
}

/// `(kind, apiVersion)` of a canonicalized body, or `None` if it is not a JSON
/// object carrying both as strings.
fn body_kind(body: &[u8]) -> Result<Option<(String, String)>> {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Ok(None);
    };
    let Some(obj) = value.as_object() else {
        return Ok(None);
    };
    for key in ["kind", "apiVersion"] {
        if obj
            .get(key)
            .and_then(Value::as_str)
            .is_some_and(|s| s.contains('\0'))
        {
            return Err(FormatError::NulCharacter {
                document: BODY,
                path: format!("/{key}"),
            });
        }
    }
    match (
        obj.get("kind").and_then(Value::as_str),
        obj.get("apiVersion").and_then(Value::as_str),
    ) {
        (Some(k), Some(v)) if !k.is_empty() && !v.is_empty() => Ok(Some((k.to_owned(), v.to_owned()))),
        (Some(_), Some(_)) => Err(invalid(BODY, "kind", "kind and apiVersion must not be empty")),
        _ => Ok(None),
    }
}

/// A Rekor UUID is the 64-hex leaf hash, optionally prefixed by a 16-hex tree ID.
fn check_uuid(uuid: &str, leaf_hash: &[u8; 32]) -> Result<String> {
    let lower = uuid.to_ascii_lowercase();
    if !(lower.len() == 64 || lower.len() == 80) || !lower.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid(
            API,
            "<uuid>",
            "expected 64 or 80 hex characters (optional tree ID + leaf hash)",
        ));
    }
    let expected = hex::encode(leaf_hash);
    if lower[lower.len() - 64..] != expected {
        return Err(invalid(
            API,
            "<uuid>",
            format!("entry UUID does not end with the leaf hash of its body ({expected})"),
        ));
    }
    Ok(lower)
}
