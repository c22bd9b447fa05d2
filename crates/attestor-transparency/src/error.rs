//! The crate's error types.
//!
//! Owns: [`TrustedRootError`] (why a trusted-root document was refused) and
//! [`VerifyError`] (why an entry is not evidence), one variant per distinct
//! failure so callers can tell a forged entry from an unknown log or a wrong
//! root.
//!
//! Must never: carry key material or whole documents in messages (log ids,
//! field names, sizes and hashes only).

use attestor_formats::FormatError;
use thiserror::Error;

/// Why a trusted-root document could not be read.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TrustedRootError {
    /// Not JSON (or not UTF-8).
    #[error("trusted root is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),

    /// `mediaType` is absent or not the supported version.
    #[error("unsupported trusted root media type `{found}` (expected `{expected}`)")]
    MediaType { found: String, expected: &'static str },

    /// A required field is absent.
    #[error("trusted root is missing required field `{field}`")]
    MissingField { field: String },

    /// A field has the wrong type or an unacceptable value.
    #[error("trusted root field `{field}` is invalid: {reason}")]
    InvalidField { field: String, reason: String },
}

/// Why a transparency-log entry is not evidence of inclusion.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// No log of the trusted root has this log id.
    #[error("log {log_id} is not in the trusted root")]
    UnknownLog {
        /// Lowercase hex.
        log_id: String,
    },

    /// The log is known, but none of its keys was valid at the entry's time.
    #[error("no key of log {log_id} was valid at {at}")]
    KeyNotValid { log_id: String, at: String },

    /// The entry carries no inclusion proof.
    #[error("entry has no inclusion proof")]
    MissingInclusionProof,

    /// The inclusion proof is malformed or does not lead to its root.
    #[error("inclusion proof does not verify: {0}")]
    InclusionProof(#[source] FormatError),

    /// The entry has a SET but no integrated time, so there is nothing it could have signed.
    #[error("entry has a signed entry timestamp but no integrated time")]
    SetWithoutIntegratedTime,

    /// The SET is not a valid signature of the log's key over the entry's canonical payload.
    #[error("signed entry timestamp does not verify with the key of log {log_id}")]
    SetSignature { log_id: String },

    /// The checkpoint text is not a signed note.
    #[error("checkpoint is malformed: {0}")]
    CheckpointMalformed(#[source] FormatError),

    /// The checkpoint's origin line names another log.
    #[error("checkpoint origin `{origin}` is not log `{expected}`")]
    CheckpointOrigin { origin: String, expected: String },

    /// No signature line carries the log's name and key hint.
    #[error("checkpoint has no signature by `{name}` with key hint {key_hint}")]
    CheckpointUnsigned {
        name: String,
        /// Lowercase hex, 4 bytes.
        key_hint: String,
    },

    /// The log's signature line does not verify over the note text.
    #[error("checkpoint signature by `{name}` does not verify")]
    CheckpointSignature { name: String },

    /// The checkpoint is for another tree head than the inclusion proof.
    #[error(
        "checkpoint is for tree size {checkpoint_size} root {checkpoint_root}, but the proof is for tree size {proof_size} root {proof_root}"
    )]
    CheckpointMismatch {
        checkpoint_size: u64,
        checkpoint_root: String,
        proof_size: u64,
        proof_root: String,
    },

    /// The inclusion proof has no checkpoint, so nothing signed by the log binds it.
    #[error(
        "inclusion proof has no checkpoint: its root is not signed by the log, so the proof is not evidence"
    )]
    CheckpointRequired,

    /// An entry with an integrated time (Rekor v1) has no SET, so its time, index and body are unsigned.
    #[error("entry has an integrated time but no signed entry timestamp: a verified SET is required")]
    SetRequired,

    /// An entry without a SET states a log index other than its proof's leaf index.
    #[error("entry states log index {log_index}, but its proof is for leaf {proof_index} and no SET signs the index")]
    LogIndexUnsigned { log_index: i64, proof_index: i64 },
}
