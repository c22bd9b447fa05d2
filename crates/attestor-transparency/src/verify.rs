//! The rule for what makes a transparency-log entry evidence of inclusion.
//!
//! Owns: [`verify_entry`], which checks an entry against a [`TrustedRoot`] in
//! this order: known log id and a key valid at the entry's time; the inclusion
//! proof leads from the leaf hash to the proof's root; the SET, when present,
//! verifies; the checkpoint is present, verifies and states the proof's tree
//! size and root; an entry with an integrated time has its SET, one without has
//! the proof's leaf index as its log index (the crate docs give the reasons).
//! [`VerifiedEntry`] says which key verified and with what;
//! [`VerifiedTlogEntry`] owns the entry with that answer, for callers that
//! store it.
//!
//! Must never: accept an entry on a proof checked only against its own stated
//! root, skip a signature that is present, or read the clock.

use attestor_formats::{merkle, FormatError, TlogEntry};
use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};

use crate::checkpoint::verify_checkpoint;
use crate::error::VerifyError;
use crate::set::verify_set;
use crate::trusted_root::{TransparencyLog, TrustedRoot};

/// Which signatures of the log made the entry evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// The checkpoint (an entry without an integrated time: Rekor v2).
    Checkpoint,
    /// The checkpoint and the SET (an entry with an integrated time: Rekor v1).
    SignedEntryTimestampAndCheckpoint,
}

impl Evidence {
    /// `checkpoint` or `set+checkpoint` (the stored spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            Evidence::Checkpoint => "checkpoint",
            Evidence::SignedEntryTimestampAndCheckpoint => "set+checkpoint",
        }
    }
}

/// An entry that verified, and with what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedEntry<'a> {
    /// The log (and key) whose signatures verified.
    pub log: &'a TransparencyLog,
    pub evidence: Evidence,
    /// The time the key's validity was checked at: the integrated time, or the
    /// caller's reference time for an entry without one.
    pub checked_at: DateTime<Utc>,
}

/// Verifies `entry` against `root`. `observed_at` is when the verifier
/// obtained the entry's signed checkpoint (the log's answer arrived, or the
/// bundle was handed in): the reference time for an entry without an
/// integrated time (Rekor v2), whose log key must be valid then (the crate
/// docs, *Reference time*, say why this and no other time).
///
/// Errors: one [`VerifyError`] variant per failure, the first one found in the
/// order of the module docs.
pub fn verify_entry<'a>(
    entry: &TlogEntry,
    root: &'a TrustedRoot,
    observed_at: DateTime<Utc>,
) -> Result<VerifiedEntry<'a>, VerifyError> {
    let at = reference_time(entry, observed_at)?;
    let mut logs = root.logs_with_id(&entry.log_id).peekable();
    if logs.peek().is_none() {
        return Err(VerifyError::UnknownLog {
            log_id: entry.log_id.clone(),
        });
    }
    let log = logs
        .find(|log| log.is_valid_at(at))
        .ok_or_else(|| VerifyError::KeyNotValid {
            log_id: entry.log_id.clone(),
            at: at.to_rfc3339(),
        })?;

    let proof = entry
        .inclusion_proof
        .as_ref()
        .ok_or(VerifyError::MissingInclusionProof)?;
    let bad_number = |what: &str, n: i64| {
        VerifyError::InclusionProof(FormatError::InclusionProof {
            reason: format!("negative {what} {n}"),
        })
    };
    let index = u64::try_from(proof.log_index).map_err(|_| bad_number("leaf index", proof.log_index))?;
    let size = u64::try_from(proof.tree_size).map_err(|_| bad_number("tree size", proof.tree_size))?;
    merkle::verify_inclusion(&entry.leaf_hash, index, size, &proof.hashes, &proof.root_hash)
        .map_err(VerifyError::InclusionProof)?;

    if let Some(set) = &entry.signed_entry_timestamp {
        verify_set(entry, set, log)?;
    }
    let text = proof
        .checkpoint
        .as_deref()
        .ok_or(VerifyError::CheckpointRequired)?;
    let cp = verify_checkpoint(text, log)?;
    if cp.tree_size != size || cp.root_hash != proof.root_hash {
        return Err(VerifyError::CheckpointMismatch {
            checkpoint_size: cp.tree_size,
            checkpoint_root: hex::encode(cp.root_hash),
            proof_size: size,
            proof_root: hex::encode(proof.root_hash),
        });
    }
    let evidence = match (entry.integrated_time, &entry.signed_entry_timestamp) {
        (Some(_), Some(_)) => Evidence::SignedEntryTimestampAndCheckpoint,
        (Some(_), None) => return Err(VerifyError::SetRequired),
        (None, _) if entry.log_index != proof.log_index => {
            return Err(VerifyError::LogIndexUnsigned {
                log_index: entry.log_index,
                proof_index: proof.log_index,
            })
        }
        (None, _) => Evidence::Checkpoint,
    };
    Ok(VerifiedEntry {
        log,
        evidence,
        checked_at: at,
    })
}

/// The time the log key's validity window is checked at: the entry's
/// integrated time when it has one (the SET signs it), else `observed_at`.
fn reference_time(entry: &TlogEntry, observed_at: DateTime<Utc>) -> Result<DateTime<Utc>, VerifyError> {
    match entry.integrated_time {
        Some(secs) => DateTime::<Utc>::from_timestamp(secs, 0).ok_or_else(|| VerifyError::KeyNotValid {
            log_id: entry.log_id.clone(),
            at: format!("unix time {secs}"),
        }),
        None => Ok(observed_at),
    }
}

/// An entry that verified, owned together with what verified it: the only
/// way to get one is [`VerifiedTlogEntry::verify`], so a function that takes
/// one (the queue's completion) cannot be handed an entry nobody checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedTlogEntry {
    entry: TlogEntry,
    key_sha256: [u8; 32],
    evidence: Evidence,
    checked_at: DateTime<Utc>,
}

impl VerifiedTlogEntry {
    /// [`verify_entry`], keeping the entry.
    ///
    /// Errors: as [`verify_entry`].
    pub fn verify(
        entry: TlogEntry,
        root: &TrustedRoot,
        observed_at: DateTime<Utc>,
    ) -> Result<Self, VerifyError> {
        let v = verify_entry(&entry, root, observed_at)?;
        let key_sha256 = Sha256::digest(&v.log.spki_der).into();
        let (evidence, checked_at) = (v.evidence, v.checked_at);
        Ok(VerifiedTlogEntry {
            entry,
            key_sha256,
            evidence,
            checked_at,
        })
    }

    /// The entry.
    pub fn entry(&self) -> &TlogEntry {
        &self.entry
    }

    /// SHA-256 of the SubjectPublicKeyInfo DER of the log key that verified it.
    pub fn key_sha256(&self) -> &[u8; 32] {
        &self.key_sha256
    }

    /// Which signatures verified.
    pub fn evidence(&self) -> Evidence {
        self.evidence
    }

    /// The time the key's validity was checked at.
    pub fn checked_at(&self) -> DateTime<Utc> {
        self.checked_at
    }
}
