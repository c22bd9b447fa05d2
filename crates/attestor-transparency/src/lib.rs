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
//!   entry's reference time (below);
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
//! # Reference time
//!
//! A log key vouches only while its trusted-root window `[start, end)` is
//! open, so every entry is checked at one time `t`, which
//! [`VerifiedEntry::checked_at`] reports:
//! - **with an integrated time (Rekor v1)**, `t` is that integrated time:
//!   the SET is the log's signature over it, so it is the time the log says
//!   it took the entry, and signed by the very key being checked. A bundle
//!   verified years later still verifies as long as the key was valid then.
//! - **without one (Rekor v2)**, `t` is the caller's `observed_at`: when
//!   the verifier obtained the signed checkpoint (the queue worker: when the
//!   log's answer arrived; ingest: when the bundle was handed in). Nothing
//!   signed by the log carries a time: a checkpoint has none; the witness
//!   cosignatures' timestamps are signed by keys the trusted root does not
//!   list (so they are ignored, like the cosignatures themselves); and the
//!   bundle's RFC 3161 timestamp is signed by a timestamp authority whose
//!   signature this crate does not verify, so its time is whatever the bundle
//!   says. `observed_at` is the one time the verifier knows, and it is an
//!   upper bound of the checkpoint's signing time: a key whose window ended
//!   before it could have signed after its end (a retired or compromised key)
//!   and is refused; a key whose window had not yet started is refused too.
//!   The price: a genuine v2 entry presented after its key's window closed
//!   no longer verifies. That is why ingest verifies on arrival and the
//!   stored row records the key that verified it.
//!
//! `observed_at` is a parameter, never the clock read here, and for a
//! Rekor v1 entry it is not used at all.
//!
//! Must never: implement cryptography itself (key types and signature checks
//! come from the RustCrypto `p256` and `ed25519-dalek` crates), accept a
//! signature from a key the trusted root does not list or outside its validity
//! window at the reference time, let an unknown witness cosignature decide
//! anything, take a time from unsigned or unverified data, read the clock (the
//! observation time is a parameter), or touch a database, the network or the
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
pub use verify::{verify_entry, Evidence, VerifiedEntry, VerifiedTlogEntry};
