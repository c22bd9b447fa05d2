//! DSSE envelopes and the in-toto statements they carry.
//!
//! Owns: parsing a DSSE JSON envelope (bare, or the `dsseEnvelope` of a Sigstore
//! bundle) into its exact payload bytes and signatures, DSSE v1 PAE, the envelope
//! and payload digests, and decoding an in-toto Statement (v0.1 or v1) from the
//! payload when `payloadType` is `application/vnd.in-toto+json`.
//!
//! ## `envelope_sha256` (the envelope's identity)
//!
//! The same envelope can be spelled many ways: standard or URL-safe base64,
//! with or without padding, any key order, any whitespace. So that all spellings
//! map to one database key, `envelope_sha256` is
//!
//! ```text
//! SHA-256( RFC8785( E' ) )
//! ```
//!
//! where `E'` is the envelope JSON object *as received* (all members, including
//! unknown top-level and per-signature members such as `cert`, are kept) with
//! `payload` and every `signatures[i].sig` replaced by the **standard, padded**
//! base64 encoding of their decoded bytes, and `RFC8785` is the JSON
//! Canonicalization Scheme (sorted keys, no whitespace, ES6 number formatting).
//! Nothing else is normalised: a different `keyid`, an extra field, or a
//! different signature order gives a different digest.
//! [`ParsedEnvelope::canonical_json`] returns the exact bytes hashed.
//!
//! For ordinary envelopes (standard base64, no unknown members) this equals the
//! `envelopeHash` that Rekor's `dsse` entry type records (checked on the real
//! Rekor entries in the shared fixtures), but that is Rekor's definition, not a
//! contract of this crate: read Rekor's value from the entry body when you need it.
//!
//! Must never: verify or trust signatures (key material belongs to the caller),
//! re-encode the payload (the signed bytes are kept exactly), or drop fields the
//! DSSE spec says consumers must ignore; they stay in `raw` and in `extra`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::b64;
use crate::digest::sha256;
use crate::error::{FormatError, Result};
use crate::json::{self, as_object, get, invalid, opt_str, req, req_array, req_obj, req_str};
use crate::limits::{check_no_nul, Limits};

/// `payloadType` of an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// Sigstore bundle media types whose `dsseEnvelope` this module reads
/// (v0.1 and v0.2 use the same envelope layout as v0.3).
pub const SIGSTORE_BUNDLE_MEDIA_TYPES: &[&str] = &[
    "application/vnd.dev.sigstore.bundle.v0.3+json",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
];

const ENVELOPE: &str = "DSSE envelope";
const STATEMENT: &str = "in-toto statement";
const BUNDLE: &str = "Sigstore bundle";

/// One DSSE signature.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    /// `keyid` as sent (`Some("")` when the envelope carries an empty key id).
    pub keyid: Option<String>,
    /// Decoded signature bytes (never empty).
    pub sig: Vec<u8>,
    /// Every other member of the signature object (e.g. a non-standard `cert`), unchanged.
    pub extra: Map<String, Value>,
}

/// A validated DSSE envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedEnvelope {
    /// The envelope object as received (original base64 spellings, unknown members kept).
    pub raw: Value,
    pub payload_type: String,
    /// The exact payload bytes that were signed.
    pub payload: Vec<u8>,
    /// At least one signature, in envelope order.
    pub signatures: Vec<Signature>,
    /// SHA-256 of `payload`.
    pub payload_sha256: [u8; 32],
    /// See the module documentation for the exact definition.
    pub envelope_sha256: [u8; 32],
    /// The decoded statement when `payload_type` is [`IN_TOTO_PAYLOAD_TYPE`].
    pub statement: Option<Statement>,
}

/// One in-toto subject (a `ResourceDescriptor` with a digest set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// `name`, when present (required by v0.1, optional in v1).
    pub name: Option<String>,
    /// Algorithm → digest value. Values for the well-known hash algorithms
    /// (`sha1`, `sha224`, `sha256`, `sha384`, `sha512`, `sha512_224`,
    /// `sha512_256`, `sha3_*`, `md5`) are checked to be hex of the right length
    /// and lowercased; others (e.g. `gitCommit`, `dirHash`) are kept verbatim.
    pub digests: BTreeMap<String, String>,
}

/// An in-toto Statement (v0.1 or v1).
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// `_type`, e.g. `https://in-toto.io/Statement/v1`.
    pub statement_type: String,
    pub predicate_type: String,
    /// At least one subject.
    pub subjects: Vec<Subject>,
    /// `predicate`, or `Value::Null` when absent (v1 allows omitting an empty predicate).
    pub predicate: Value,
    /// The whole statement object as decoded from the payload.
    pub raw: Value,
}

impl ParsedEnvelope {
    /// Parses a DSSE JSON envelope. Applies `limits` first.
    pub fn parse(bytes: &[u8], limits: &Limits) -> Result<Self> {
        let value = limits.parse_json(bytes, ENVELOPE)?;
        Self::from_checked_value(value, limits)
    }

    /// Parses an envelope that is already a JSON value (it is NUL-checked here;
    /// size is the caller's business since the original bytes are not known).
    pub fn from_value(value: Value, limits: &Limits) -> Result<Self> {
        check_no_nul(&value, ENVELOPE)?;
        Self::from_checked_value(value, limits)
    }

    /// Extracts and parses `dsseEnvelope` from a Sigstore bundle
    /// (media types in [`SIGSTORE_BUNDLE_MEDIA_TYPES`]). Applies `limits` to the
    /// whole bundle first.
    pub fn from_bundle(bundle_json: &[u8], limits: &Limits) -> Result<Self> {
        let bundle = limits.parse_json(bundle_json, BUNDLE)?;
        let obj = as_object(&bundle, BUNDLE, "")?;
        check_bundle_media_type(obj)?;
        let envelope = req(obj, "dsseEnvelope", BUNDLE, "")?.clone();
        Self::from_checked_value(envelope, limits)
    }

    fn from_checked_value(raw: Value, limits: &Limits) -> Result<Self> {
        let obj = as_object(&raw, ENVELOPE, "")?;
        let payload_type = req_str(obj, "payloadType", ENVELOPE, "")?.to_owned();
        let payload = b64::decode(req_str(obj, "payload", ENVELOPE, "")?, "payload")?;

        let sig_values = req_array(obj, "signatures", ENVELOPE, "")?;
        if sig_values.is_empty() {
            return Err(invalid(
                ENVELOPE,
                "signatures",
                "at least one signature is required",
            ));
        }
        let mut signatures = Vec::with_capacity(sig_values.len());
        for (i, s) in sig_values.iter().enumerate() {
            let prefix = format!("signatures[{i}]");
            let so = s
                .as_object()
                .ok_or_else(|| invalid(ENVELOPE, prefix.clone(), "expected a JSON object"))?;
            let keyid = opt_str(so, "keyid", ENVELOPE, &prefix)?.map(str::to_owned);
            let sig_field = json::join(&prefix, "sig");
            let sig = b64::decode(req_str(so, "sig", ENVELOPE, &prefix)?, sig_field.clone())?;
            if sig.is_empty() {
                return Err(invalid(ENVELOPE, sig_field, "signature is empty"));
            }
            let extra = so
                .iter()
                .filter(|(k, _)| k.as_str() != "keyid" && k.as_str() != "sig")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            signatures.push(Signature { keyid, sig, extra });
        }

        let statement = if payload_type == IN_TOTO_PAYLOAD_TYPE {
            Some(Statement::parse(&payload, limits)?)
        } else {
            None
        };

        let payload_sha256 = sha256(&payload);
        let envelope_sha256 = sha256(&normalized_canonical(&raw, &payload, &signatures));
        Ok(Self {
            raw,
            payload_type,
            payload,
            signatures,
            payload_sha256,
            envelope_sha256,
            statement,
        })
    }

    /// DSSE v1 pre-authentication encoding of this envelope's type and payload.
    pub fn pae(&self) -> Vec<u8> {
        pae(&self.payload_type, &self.payload)
    }

    /// The RFC 8785 bytes whose SHA-256 is [`ParsedEnvelope::envelope_sha256`].
    pub fn canonical_json(&self) -> Vec<u8> {
        normalized_canonical(&self.raw, &self.payload, &self.signatures)
    }

    /// `"alg:hex"` subject digests of the statement, sorted; empty without a statement.
    pub fn subject_digests(&self) -> Vec<String> {
        self.statement
            .as_ref()
            .map(Statement::subject_digests)
            .unwrap_or_default()
    }
}

fn normalized_canonical(raw: &Value, payload: &[u8], signatures: &[Signature]) -> Vec<u8> {
    let mut normalized = raw.clone();
    if let Some(obj) = normalized.as_object_mut() {
        obj.insert("payload".to_owned(), Value::String(b64::encode_std(payload)));
        if let Some(Value::Array(sigs)) = obj.get_mut("signatures") {
            for (slot, sig) in sigs.iter_mut().zip(signatures) {
                if let Some(so) = slot.as_object_mut() {
                    so.insert("sig".to_owned(), Value::String(b64::encode_std(&sig.sig)));
                }
            }
        }
    }
    json::canonical(&normalized)
}

/// DSSE v1 PAE: `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths
/// as ASCII decimal byte counts.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_type.len() + payload.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

pub(crate) fn check_bundle_media_type(obj: &Map<String, Value>) -> Result<()> {
    let media_type = req_str(obj, "mediaType", BUNDLE, "")?;
    if SIGSTORE_BUNDLE_MEDIA_TYPES.contains(&media_type) {
        Ok(())
    } else {
        Err(FormatError::UnsupportedMediaType {
            media_type: media_type.to_owned(),
        })
    }
}

/// Expected hex length of digests for well-known algorithms.
fn known_hex_len(alg: &str) -> Option<usize> {
    Some(match alg {
        "md5" => 32,
        "sha1" => 40,
        "sha224" | "sha512_224" | "sha3_224" => 56,
        "sha256" | "sha512_256" | "sha3_256" => 64,
        "sha384" | "sha3_384" => 96,
        "sha512" | "sha3_512" => 128,
        _ => return None,
    })
}

impl Statement {
    /// Decodes an in-toto Statement from payload bytes (UTF-8 JSON object),
    /// applying `limits` first (the statement is stored as `jsonb`).
    pub fn parse(payload: &[u8], limits: &Limits) -> Result<Self> {
        let raw = limits.parse_json(payload, STATEMENT)?;
        let obj = as_object(&raw, STATEMENT, "")?;

        let statement_type = req_str(obj, "_type", STATEMENT, "")?.to_owned();
        if !statement_type.starts_with("https://in-toto.io/Statement/") {
            return Err(invalid(
                STATEMENT,
                "_type",
                format!(
                    "`{statement_type}` is not an in-toto Statement type (https://in-toto.io/Statement/...)"
                ),
            ));
        }
        let predicate_type = req_str(obj, "predicateType", STATEMENT, "")?.to_owned();
        if predicate_type.is_empty() {
            return Err(invalid(STATEMENT, "predicateType", "must not be empty"));
        }

        let subject_values = req_array(obj, "subject", STATEMENT, "")?;
        if subject_values.is_empty() {
            return Err(invalid(STATEMENT, "subject", "at least one subject is required"));
        }
        let mut subjects = Vec::with_capacity(subject_values.len());
        for (i, s) in subject_values.iter().enumerate() {
            let prefix = format!("subject[{i}]");
            let so = s
                .as_object()
                .ok_or_else(|| invalid(STATEMENT, prefix.clone(), "expected a JSON object"))?;
            let name = opt_str(so, "name", STATEMENT, &prefix)?.map(str::to_owned);
            let digest_obj = req_obj(so, "digest", STATEMENT, &prefix)?;
            if digest_obj.is_empty() {
                return Err(invalid(
                    STATEMENT,
                    json::join(&prefix, "digest"),
                    "at least one digest is required",
                ));
            }
            let mut digests = BTreeMap::new();
            for (alg, v) in digest_obj {
                let field = format!("{prefix}.digest.{alg}");
                let value = v
                    .as_str()
                    .ok_or_else(|| invalid(STATEMENT, field.clone(), "expected a string"))?;
                let value = match known_hex_len(alg) {
                    Some(len) => {
                        if value.len() != len || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
                            return Err(FormatError::InvalidDigest {
                                value: format!("{alg}:{value}"),
                                reason: format!("{field} must be {len} hex characters"),
                            });
                        }
                        value.to_ascii_lowercase()
                    }
                    None => {
                        if value.is_empty() {
                            return Err(invalid(STATEMENT, field, "must not be empty"));
                        }
                        value.to_owned()
                    }
                };
                digests.insert(alg.clone(), value);
            }
            subjects.push(Subject { name, digests });
        }

        let predicate = get(obj, "predicate").cloned().unwrap_or(Value::Null);
        if !predicate.is_null() && !predicate.is_object() {
            return Err(invalid(STATEMENT, "predicate", "expected a JSON object"));
        }

        Ok(Self {
            statement_type,
            predicate_type,
            subjects,
            predicate,
            raw,
        })
    }

    /// Every subject digest as `"alg:value"`, sorted and de-duplicated.
    pub fn subject_digests(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .subjects
            .iter()
            .flat_map(|s| s.digests.iter().map(|(alg, v)| format!("{alg}:{v}")))
            .collect();
        out.sort();
        out.dedup();
        out
    }
}
