//! The crate's single error type.
//!
//! Owns: [`FormatError`], whose variants callers match on to tell *why* a document
//! was refused (and map to HTTP 4xx / repository "invalid input" errors), with
//! messages written for the end user who submitted the document.
//!
//! Must never: carry secrets or whole documents in messages (only field names,
//! JSON pointers, sizes and digests), or wrap errors as opaque strings where a
//! typed source exists.

use thiserror::Error;

/// Result alias used throughout the crate.
pub type Result<T, E = FormatError> = std::result::Result<T, E>;

/// Why a document could not be parsed or verified.
///
/// `document` fields name the kind of document being read (for example
/// `"DSSE envelope"`, `"in-toto statement"`, `"Sigstore bundle"`), `field` names a
/// location inside it in dotted form (`signatures[0].sig`), and `path` is an
/// RFC 6901 JSON pointer.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The bytes are not well-formed JSON (or not UTF-8).
    #[error("{document} is not valid JSON: {source}")]
    Json {
        document: &'static str,
        #[source]
        source: serde_json::Error,
    },

    /// A field that must be base64 (standard or URL-safe, padded or not) is not.
    #[error("field `{field}` is not valid base64: {source}")]
    Base64 {
        field: String,
        #[source]
        source: base64::DecodeError,
    },

    /// A field that must be hexadecimal is not.
    #[error("field `{field}` is not valid hex: {source}")]
    Hex {
        field: String,
        #[source]
        source: hex::FromHexError,
    },

    /// A required field is absent (or `null`).
    #[error("{document} is missing required field `{field}`")]
    MissingField { document: &'static str, field: String },

    /// A field is present but has the wrong type or an unacceptable value.
    #[error("{document} field `{field}` is invalid: {reason}")]
    InvalidField {
        document: &'static str,
        field: String,
        reason: String,
    },

    /// A digest string is malformed (wrong prefix, length or characters).
    #[error("invalid digest `{value}`: {reason}")]
    InvalidDigest { value: String, reason: String },

    /// An inclusion proof is missing or structurally wrong for its index and tree size.
    #[error("inclusion proof rejected: {reason}")]
    InclusionProof { reason: String },

    /// An inclusion proof is well-formed but leads to a different root than the one stated.
    #[error("inclusion proof does not match the tree: stated root {expected}, computed root {computed}")]
    RootMismatch {
        /// Stated root hash, lowercase hex.
        expected: String,
        /// Root hash computed from the leaf and the proof, lowercase hex.
        computed: String,
    },

    /// The input is larger than [`crate::Limits::max_document_bytes`].
    #[error("document is too large: {actual} bytes, the limit is {limit} bytes")]
    TooLarge { limit: usize, actual: usize },

    /// A JSON string or object key contains U+0000, which PostgreSQL cannot store.
    #[error(
        "{document} contains a NUL character (U+0000) at JSON pointer `{path}`; PostgreSQL cannot store it"
    )]
    NulCharacter {
        document: &'static str,
        /// RFC 6901 pointer to the offending value (or, for a key, to the member
        /// it names; the NUL itself is shown as the six characters `\u0000`).
        path: String,
    },

    /// The document is JSON but neither CycloneDX nor SPDX.
    #[error("unknown document format: expected CycloneDX JSON (`bomFormat: \"CycloneDX\"`) or SPDX JSON (`spdxVersion: \"SPDX-x.y\"`)")]
    UnknownFormat,

    /// A Sigstore bundle declares a media type this crate does not read.
    #[error("unsupported Sigstore bundle media type `{media_type}`")]
    UnsupportedMediaType { media_type: String },
}
