//! Whether a transparency-log entry is *evidence*: signed by a log this
//! deployment trusts.
//!
//! Owns: reading a Sigstore `TrustedRoot` document
//! (`application/vnd.dev.sigstore.trustedroot+json;version=0.1`) into the
//! transparency logs it names ([`TrustedRoot`], [`TransparencyLog`], [`LogKey`]);
//! checking a log's signed entry timestamp ([`set`]) and signed-note checkpoint
//! ([`checkpoint`]) with that log's key; and the one rule for what makes an
//! entry evidence ([`verify_entry`], [`VerifiedEntry`]).
//!
//! What an entry needs, exactly:
//! - its log id names a log of the trusted root whose key was valid at the
//!   entry's integrated time (or, for an entry without one, at the caller's
//!   reference time);
//! - an inclusion proof that leads from the entry's leaf hash to the proof's root;
//! - **always a verified checkpoint**: the log's signed tree head, whose tree
//!   size and root equal the proof's. Only the checkpoint binds the proof to the
//!   log; without it the proof is checked against the root it states itself,
//!   and anyone can build a one-leaf tree whose root is their own leaf hash;
//! - an entry **with** an integrated time (Rekor v1) also needs a verified SET:
//!   it is the log's only signature over the integrated time, the global log
//!   index, the log id and the body;
//! - an entry **without** an integrated time (Rekor v2, which issues no SET)
//!   must state the proof's leaf index as its log index, since nothing else
//!   binds it.
//!
//! A present SET or checkpoint that does not verify is a failure, never ignored.
//!
//! Must never: implement cryptography itself (key types and signature checks
//! come from the RustCrypto `p256` and `ed25519-dalek` crates), accept a
//! signature from a key the trusted root does not list or outside its validity
//! window, let an unknown witness cosignature decide anything, read the clock
//! (the reference time is a parameter), or touch a database, the network or the
//! file system (the `attestor-verify-bundle` binary reads its two input files).

pub mod checkpoint;
pub mod error;
pub mod set;
#[cfg(feature = "test-support")]
pub mod testlog;
pub mod trusted_root;
pub mod verify;

pub use error::{TrustedRootError, VerifyError};
pub use trusted_root::{LogKey, TransparencyLog, TrustedRoot, TRUSTED_ROOT_MEDIA_TYPE};
pub use verify::{verify_entry, Evidence, VerifiedEntry};
