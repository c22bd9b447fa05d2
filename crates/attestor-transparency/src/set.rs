//! Signed entry timestamps (SET, Rekor v1's inclusion promise).
//!
//! Owns: the SET's signed payload, the RFC 8785 canonical JSON of
//! `{"body": <base64 of the canonical body>, "integratedTime": <unix seconds>,
//! "logID": <hex log id>, "logIndex": <global index>}`, and its check with a
//! log's key.
//!
//! Must never: build the payload from anything but the entry's own fields (the
//! signature binds exactly those), or accept a SET for an entry without an
//! integrated time.

use attestor_formats::TlogEntry;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::json;

use crate::error::VerifyError;
use crate::trusted_root::TransparencyLog;

/// The bytes a log signs for the entry's SET, or `None` without an integrated time.
pub fn set_payload(entry: &TlogEntry) -> Option<Vec<u8>> {
    let time = entry.integrated_time?;
    let payload = json!({
        "body": STANDARD.encode(&entry.canonical_body),
        "integratedTime": time,
        "logID": entry.log_id,
        "logIndex": entry.log_index,
    });
    Some(
        serde_json_canonicalizer::to_vec(&payload)
            .expect("a JSON object of strings and integers canonicalizes"),
    )
}

/// Checks `set` as `log`'s signature over the entry's SET payload.
///
/// Errors: [`VerifyError::SetWithoutIntegratedTime`], [`VerifyError::SetSignature`].
pub fn verify_set(entry: &TlogEntry, set: &[u8], log: &TransparencyLog) -> Result<(), VerifyError> {
    let payload = set_payload(entry).ok_or(VerifyError::SetWithoutIntegratedTime)?;
    if log.key.verifies(&payload, set) {
        Ok(())
    } else {
        Err(VerifyError::SetSignature {
            log_id: log.log_id_hex(),
        })
    }
}
