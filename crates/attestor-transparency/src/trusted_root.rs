//! Sigstore `TrustedRoot` documents: the transparency logs and their keys.
//!
//! Owns: parsing `application/vnd.dev.sigstore.trustedroot+json;version=0.1`
//! (protobuf JSON) into [`TransparencyLog`]s: log id (`logId.keyId`, base64),
//! public key (`publicKey.rawBytes`, PKIX SubjectPublicKeyInfo DER, base64) of
//! type `PKIX_ECDSA_P256_SHA_256` or `PKIX_ED25519`, validity window
//! (`publicKey.validFor.start`/`end`, RFC 3339) and the note signer name (the
//! host of `baseUrl`). Logs with another key type or hash algorithm are listed
//! in [`TrustedRoot::unsupported`] and never used. Certificate authorities,
//! CT logs and timestamp authorities are not read.
//!
//! Must never: accept a key whose DER does not decode as the declared type,
//! guess a key type, or treat a log as valid outside its window.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
// One trait (from `spki`) decodes SubjectPublicKeyInfo DER for both key types.
use ed25519_dalek::pkcs8::DecodePublicKey as _;
use p256::ecdsa::signature::Verifier as _;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::error::TrustedRootError;

/// The one trusted-root media type read.
pub const TRUSTED_ROOT_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.trustedroot+json;version=0.1";

/// A log's public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogKey {
    /// ECDSA P-256; signatures are ASN.1 DER over SHA-256 of the message.
    EcdsaP256(p256::ecdsa::VerifyingKey),
    /// Ed25519; signatures are 64 bytes over the message itself.
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl LogKey {
    /// Decodes SubjectPublicKeyInfo DER as the given algorithm
    /// (`ecdsa-p256-sha256` or `ed25519`, the names the trust-anchor table uses).
    pub fn from_spki_der(algorithm: &str, der: &[u8]) -> Result<Self, String> {
        match algorithm {
            "ecdsa-p256-sha256" => p256::ecdsa::VerifyingKey::from_public_key_der(der)
                .map(LogKey::EcdsaP256)
                .map_err(|e| format!("not an ECDSA P-256 SubjectPublicKeyInfo: {e}")),
            "ed25519" => ed25519_dalek::VerifyingKey::from_public_key_der(der)
                .map(LogKey::Ed25519)
                .map_err(|e| format!("not an Ed25519 SubjectPublicKeyInfo: {e}")),
            other => Err(format!("unsupported log key algorithm `{other}`")),
        }
    }

    /// `ecdsa-p256-sha256` or `ed25519`.
    pub fn algorithm(&self) -> &'static str {
        match self {
            LogKey::EcdsaP256(_) => "ecdsa-p256-sha256",
            LogKey::Ed25519(_) => "ed25519",
        }
    }

    /// Whether `signature` is this key's signature over `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            LogKey::EcdsaP256(key) => {
                p256::ecdsa::Signature::from_der(signature).is_ok_and(|sig| key.verify(message, &sig).is_ok())
            }
            LogKey::Ed25519(key) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verify_strict(message, &sig).is_ok()),
        }
    }
}

/// One transparency log of a trusted root (one key of it, with its window).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransparencyLog {
    /// `baseUrl`, e.g. `https://rekor.sigstore.dev`.
    pub base_url: String,
    /// The signer name on its checkpoints: the host of `base_url`.
    pub name: String,
    /// Log id bytes (`logId.keyId`).
    pub log_id: Vec<u8>,
    pub key: LogKey,
    /// The key as SubjectPublicKeyInfo DER.
    pub spki_der: Vec<u8>,
    pub valid_from: DateTime<Utc>,
    pub valid_until: Option<DateTime<Utc>>,
}

impl TransparencyLog {
    /// A log configured outside a trusted-root file (e.g. a tenant's trust
    /// anchor): `algorithm` is `ecdsa-p256-sha256` or `ed25519`, `spki_der`
    /// its SubjectPublicKeyInfo DER, the window `valid_from..valid_until`.
    /// The same checks as a trusted-root document's `tlogs[]` entry; the
    /// field names in errors are `baseUrl`, `logId`, `publicKey`, `validFor`.
    ///
    /// Errors: [`TrustedRootError::InvalidField`].
    pub fn new(
        base_url: &str,
        log_id: Vec<u8>,
        algorithm: &str,
        spki_der: Vec<u8>,
        valid_from: DateTime<Utc>,
        valid_until: Option<DateTime<Utc>>,
    ) -> Result<Self, TrustedRootError> {
        let name = host(base_url).ok_or_else(|| invalid("baseUrl", "expected an http(s) URL with a host"))?;
        if log_id.is_empty() {
            return Err(invalid("logId", "must not be empty"));
        }
        let key =
            LogKey::from_spki_der(algorithm, &spki_der).map_err(|reason| invalid("publicKey", reason))?;
        if valid_until.is_some_and(|end| end <= valid_from) {
            return Err(invalid("validFor", "end is not after start"));
        }
        Ok(TransparencyLog {
            base_url: base_url.to_owned(),
            name,
            log_id,
            key,
            spki_der,
            valid_from,
            valid_until,
        })
    }

    /// Log id, lowercase hex (how [`attestor_formats::TlogEntry::log_id`] spells it).
    pub fn log_id_hex(&self) -> String {
        hex::encode(&self.log_id)
    }

    /// Whether the key may sign at `at`: `valid_from <= at < valid_until`.
    pub fn is_valid_at(&self, at: DateTime<Utc>) -> bool {
        self.valid_from <= at && self.valid_until.is_none_or(|end| at < end)
    }

    /// The 4-byte key hint of this key's signed-note signatures: for ECDSA
    /// (Rekor v1) the first bytes of SHA-256 of the SPKI DER; for Ed25519
    /// (C2SP signed note) the first bytes of SHA-256(name ‖ `\n` ‖ 0x01 ‖ key).
    pub fn note_key_hint(&self) -> [u8; 4] {
        let digest: [u8; 32] = match &self.key {
            LogKey::EcdsaP256(_) => Sha256::digest(&self.spki_der).into(),
            LogKey::Ed25519(key) => {
                let mut h = Sha256::new();
                h.update(self.name.as_bytes());
                h.update([b'\n', 0x01]);
                h.update(key.as_bytes());
                h.finalize().into()
            }
        };
        digest[..4].try_into().expect("32 > 4")
    }
}

/// The transparency logs of a trusted root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedRoot {
    pub tlogs: Vec<TransparencyLog>,
    /// `baseUrl`s of logs skipped for an unsupported key type or hash algorithm.
    pub unsupported: Vec<String>,
}

impl TrustedRoot {
    /// A root made of these logs (for keys configured outside a trusted-root file).
    pub fn from_logs(tlogs: Vec<TransparencyLog>) -> Self {
        TrustedRoot {
            tlogs,
            unsupported: Vec::new(),
        }
    }

    /// The logs (keys) with this log id (lowercase or uppercase hex).
    pub fn logs_with_id<'a>(&'a self, log_id_hex: &str) -> impl Iterator<Item = &'a TransparencyLog> + 'a {
        let id = hex::decode(log_id_hex).unwrap_or_default();
        self.tlogs
            .iter()
            .filter(move |log| !id.is_empty() && log.log_id == id)
    }

    /// Parses a trusted-root document.
    pub fn from_json(bytes: &[u8]) -> Result<Self, TrustedRootError> {
        let value: Value = serde_json::from_slice(bytes).map_err(TrustedRootError::Json)?;
        let obj = value
            .as_object()
            .ok_or_else(|| invalid("", "expected a JSON object"))?;
        let media_type = obj.get("mediaType").and_then(Value::as_str).unwrap_or_default();
        if media_type != TRUSTED_ROOT_MEDIA_TYPE {
            return Err(TrustedRootError::MediaType {
                found: media_type.to_owned(),
                expected: TRUSTED_ROOT_MEDIA_TYPE,
            });
        }
        let tlogs = obj
            .get("tlogs")
            .ok_or_else(|| missing("tlogs"))?
            .as_array()
            .ok_or_else(|| invalid("tlogs", "expected an array"))?;
        let mut root = TrustedRoot::default();
        for (i, t) in tlogs.iter().enumerate() {
            let p = format!("tlogs[{i}]");
            let t = t
                .as_object()
                .ok_or_else(|| invalid(&p, "expected a JSON object"))?;
            let base_url = req_str(t, "baseUrl", &p)?.to_owned();
            let hash = req_str(t, "hashAlgorithm", &p)?;
            let pk = req_obj(t, "publicKey", &p)?;
            let pkp = format!("{p}.publicKey");
            let details = req_str(pk, "keyDetails", &pkp)?;
            let algorithm = match details {
                "PKIX_ECDSA_P256_SHA_256" => "ecdsa-p256-sha256",
                "PKIX_ED25519" => "ed25519",
                _ => {
                    root.unsupported.push(base_url);
                    continue;
                }
            };
            if hash != "SHA2_256" {
                root.unsupported.push(base_url);
                continue;
            }
            let spki_der = b64(req_str(pk, "rawBytes", &pkp)?, &format!("{pkp}.rawBytes"))?;
            let key = LogKey::from_spki_der(algorithm, &spki_der)
                .map_err(|reason| invalid(&format!("{pkp}.rawBytes"), reason))?;
            let vp = format!("{pkp}.validFor");
            let valid_for = req_obj(pk, "validFor", &pkp)?;
            let valid_from = time(req_str(valid_for, "start", &vp)?, &format!("{vp}.start"))?;
            let valid_until = match valid_for.get("end") {
                None | Some(Value::Null) => None,
                Some(v) => Some(time(
                    v.as_str()
                        .ok_or_else(|| invalid(&format!("{vp}.end"), "expected a string"))?,
                    &format!("{vp}.end"),
                )?),
            };
            if valid_until.is_some_and(|end| end <= valid_from) {
                return Err(invalid(&vp, "end is not after start"));
            }
            let log_id = b64(
                req_str(req_obj(t, "logId", &p)?, "keyId", &format!("{p}.logId"))?,
                &format!("{p}.logId.keyId"),
            )?;
            if log_id.is_empty() {
                return Err(invalid(&format!("{p}.logId.keyId"), "must not be empty"));
            }
            let name = host(&base_url)
                .ok_or_else(|| invalid(&format!("{p}.baseUrl"), "expected an http(s) URL with a host"))?;
            root.tlogs.push(TransparencyLog {
                base_url,
                name,
                log_id,
                key,
                spki_der,
                valid_from,
                valid_until,
            });
        }
        Ok(root)
    }
}

/// The host of an `http(s)://host[:port][/path]` URL.
fn host(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

fn missing(field: &str) -> TrustedRootError {
    TrustedRootError::MissingField {
        field: field.to_owned(),
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> TrustedRootError {
    TrustedRootError::InvalidField {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

fn field(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

fn req_str<'a>(o: &'a Map<String, Value>, name: &str, prefix: &str) -> Result<&'a str, TrustedRootError> {
    match o.get(name) {
        None | Some(Value::Null) => Err(missing(&field(prefix, name))),
        Some(v) => v
            .as_str()
            .ok_or_else(|| invalid(&field(prefix, name), "expected a string")),
    }
}

fn req_obj<'a>(
    o: &'a Map<String, Value>,
    name: &str,
    prefix: &str,
) -> Result<&'a Map<String, Value>, TrustedRootError> {
    match o.get(name) {
        None | Some(Value::Null) => Err(missing(&field(prefix, name))),
        Some(v) => v
            .as_object()
            .ok_or_else(|| invalid(&field(prefix, name), "expected a JSON object")),
    }
}

fn b64(value: &str, field: &str) -> Result<Vec<u8>, TrustedRootError> {
    STANDARD
        .decode(value)
        .map_err(|e| invalid(field, format!("not valid base64: {e}")))
}

fn time(value: &str, field: &str) -> Result<DateTime<Utc>, TrustedRootError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| invalid(field, format!("not an RFC 3339 time: {e}")))
}
