//! Pure parsers and verifiers for the documents the attestor repositories store.
//!
//! Owns: turning untrusted bytes (DSSE envelopes, Sigstore bundles, Rekor API
//! responses, CycloneDX/SPDX SBOMs) into typed, validated values, the digests the
//! database keys on (envelope, payload, SBOM, verdict-ledger entry hashes) and the
//! RFC 6962/9162 Merkle inclusion check. Every parser first applies [`Limits`]
//! (document size, no U+0000 anywhere, because PostgreSQL `jsonb`/`text` refuse it).
//!
//! Must never: touch a database, the network, the clock or the file system (the
//! `fixtures` test helper behind the `test-support` feature is the single
//! exception), spawn tasks, or verify *signatures* (this crate checks structure,
//! digests and Merkle proofs; log keys and SET/checkpoint signatures belong to
//! `attestor-transparency`, other key/certificate trust to the caller).
//!
//! Module map:
//! - [`limits`]: size and NUL-character guards applied before any parsing.
//! - [`dsse`]: DSSE envelopes, PAE, in-toto statements, `dsseEnvelope` of Sigstore bundles.
//! - [`merkle`]: RFC 6962/9162 hashing, inclusion verification, test-tree builders.
//! - [`rekor`]: transparency-log entries from Rekor v1 API responses and Sigstore bundles.
//! - [`sbom`]: CycloneDX and SPDX JSON detection, digest and component count.
//! - [`ledger`]: the verdict ledger's hash-chain entry hash (a public contract).
//! - [`digest`]: `sha256:<hex>` and bare 32-byte hex digest parsing/formatting.
//! - [`error`]: the single [`FormatError`] enum.

pub mod digest;
pub mod dsse;
pub mod error;
#[cfg(feature = "test-support")]
pub mod fixtures;
pub mod ledger;
pub mod limits;
pub mod merkle;
pub mod rekor;
pub mod sbom;

mod b64;
mod json;

pub use dsse::{ParsedEnvelope, Signature, Statement, Subject};
pub use error::{FormatError, Result};
pub use ledger::{entry_hash, LedgerEntryContent, GENESIS_PREV_HASH};
pub use limits::Limits;
pub use rekor::{Checkpoint, InclusionProof, TlogEntry};
pub use sbom::{ParsedSbom, SbomFormat};
