//! The verdict ledger's per-tenant hash chain.
//!
//! Owns: the entry-hash function, a **public contract**: anyone holding the
//! rows must be able to recompute every `entry_hash` with a few lines in any
//! language, and changing it breaks every stored chain.
//!
//! ## Encoding (version `v1`)
//!
//! ```text
//! entry_hash = SHA-256( "attestor/verdict-ledger/v1\n" || JCS(obj) )
//! ```
//!
//! - The prefix is the 26 ASCII bytes `attestor/verdict-ledger/v1` followed by one
//!   line feed (0x0A), 27 bytes in all, with no length prefix and nothing after the JSON.
//! - `JCS` is RFC 8785 (JSON Canonicalization Scheme): members sorted by their
//!   UTF-16 code units, no insignificant whitespace, strings with minimal escaping
//!   (UTF-8, only `"` `\` and control characters escaped), numbers in ECMAScript
//!   form. Integers are written as plain decimal digits.
//! - `obj` is a JSON object with exactly these seven members:
//!
//!   | member | JSON type | value |
//!   |---|---|---|
//!   | `decision` | string | as given (e.g. `pass`, `fail`, `warn`) |
//!   | `inputs` | any JSON | as given, canonicalised recursively |
//!   | `policy_ref` | string | as given |
//!   | `prev_hash` | string | 64 lowercase hex chars; [`GENESIS_PREV_HASH`] (all zero) for `seq`'s first entry |
//!   | `seq` | number | the entry's sequence number, an integer |
//!   | `subject_digest` | string | as given (e.g. `sha256:<hex>`) |
//!   | `tenant_id` | string | lowercase hyphenated UUID (`8-4-4-4-12`) |
//!
//! - The chain rule (enforced by the repository, not here): entry `n` stores
//!   `prev_hash = entry_hash(entry n-1)`, and the first entry of a tenant stores
//!   [`GENESIS_PREV_HASH`].
//!
//! For inputs without floating-point numbers and with ASCII keys, the canonical
//! JSON equals Python's `json.dumps(obj, sort_keys=True, separators=(",", ":"),
//! ensure_ascii=False)`, which the known-answer test uses.
//!
//! Must never: depend on database encodings (the `jsonb` round trip reorders
//! keys; this hash never sees `jsonb` text), include row metadata such as
//! `created_at` or `id`, or accept a different prefix or member set without a
//! new version string.

use serde_json::{Map, Value};

use crate::digest::sha256;
use crate::json::canonical;

/// `prev_hash` of a tenant's first ledger entry.
pub const GENESIS_PREV_HASH: [u8; 32] = [0u8; 32];

/// Domain-separation prefix hashed before the canonical JSON.
pub const ENTRY_HASH_PREFIX: &[u8] = b"attestor/verdict-ledger/v1\n";

/// The hashed content of one ledger entry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LedgerEntryContent<'a> {
    pub tenant_id: uuid::Uuid,
    pub seq: i64,
    pub subject_digest: &'a str,
    pub decision: &'a str,
    pub policy_ref: &'a str,
    pub inputs: &'a Value,
    pub prev_hash: [u8; 32],
}

/// The exact bytes that [`entry_hash`] hashes: prefix followed by the canonical JSON.
pub fn entry_hash_preimage(content: &LedgerEntryContent<'_>) -> Vec<u8> {
    let mut obj = Map::new();
    obj.insert("decision".into(), Value::from(content.decision));
    obj.insert("inputs".into(), content.inputs.clone());
    obj.insert("policy_ref".into(), Value::from(content.policy_ref));
    obj.insert("prev_hash".into(), Value::from(hex::encode(content.prev_hash)));
    obj.insert("seq".into(), Value::from(content.seq));
    obj.insert("subject_digest".into(), Value::from(content.subject_digest));
    obj.insert(
        "tenant_id".into(),
        Value::from(content.tenant_id.hyphenated().to_string()),
    );
    let mut out = ENTRY_HASH_PREFIX.to_vec();
    out.extend_from_slice(&canonical(&Value::Object(obj)));
    out
}

/// `SHA-256(prefix || JCS(obj))`; see the module documentation for the contract.
pub fn entry_hash(content: &LedgerEntryContent<'_>) -> [u8; 32] {
    sha256(&entry_hash_preimage(content))
}
