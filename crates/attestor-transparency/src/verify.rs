//! The rule for what makes a transparency-log entry evidence of inclusion.
//!
//! Owns: [`verify_entry`], which checks an entry against a [`TrustedRoot`] in
//! this order: known log id and a key valid at the entry's time; the inclusion
//! proof leads from the leaf hash to the proof's root; the SET, when present,
//! verifies; the checkpoint is present, verifies and states the proof's tree
//! size and root; an entry with an integrated time has its SET, one without has
//! the proof's leaf index as its log index (the crate docs give the reasons).
//! [`VerifiedEntry`] says which key verified and with what.
//!
//! Must never: accept an entry on a proof checked only against its own stated
//! root, skip a signature that is present, or read the clock.

use attestor_formats::{merkle, FormatError, TlogEntry};
use chrono::{DateTime, Utc};

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

/// Verifies `entry` against `root`; `now` is the reference time for an entry
/// without an integrated time (Rekor v2), whose log key must be valid then.
///
/// Errors: one [`VerifyError`] variant per failure, the first one found in the
/// order of the module docs.
pub fn verify_entry<'a>(
    entry: &TlogEntry,
    root: &'a TrustedRoot,
    now: DateTime<Utc>,
) -> Result<VerifiedEntry<'a>, VerifyError> {
    let at = match entry.integrated_time {
        Some(secs) => DateTime::<Utc>::from_timestamp(secs, 0).ok_or_else(|| VerifyError::KeyNotValid {
            log_id: entry.log_id.clone(),
            at: format!("unix time {secs}"),
        })?,
        None => now,
    };
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
