//! Signed-note checkpoints: a log's signed tree head.
//!
//! Owns: checking checkpoint text as a signed note of one log: the origin line
//! names the log (its name, or `<name> - <tree id>` for a Rekor v1 shard), and
//! a signature line with the log's name and key hint
//! ([`TransparencyLog::note_key_hint`]) verifies over the note text (every line
//! up to and including the newline before the blank line) with the log's key.
//! Lines of other signers (witness cosignatures) are ignored: they neither make
//! a checkpoint valid nor invalid.
//!
//! Must never: accept a checkpoint on a signature line whose key hint or name
//! is not the log's, or compare the tree head with a proof (the caller does, with
//! the checkpoint this returns).

use attestor_formats::Checkpoint;

use crate::error::VerifyError;
use crate::trusted_root::TransparencyLog;

/// Verifies `text` as a checkpoint signed by `log` and returns it parsed.
///
/// Errors: [`VerifyError::CheckpointMalformed`], [`VerifyError::CheckpointOrigin`],
/// [`VerifyError::CheckpointUnsigned`], [`VerifyError::CheckpointSignature`].
pub fn verify_checkpoint(text: &str, log: &TransparencyLog) -> Result<Checkpoint, VerifyError> {
    let cp = Checkpoint::parse(text).map_err(VerifyError::CheckpointMalformed)?;
    let shard_prefix = format!("{} - ", log.name);
    if cp.origin != log.name && !cp.origin.starts_with(&shard_prefix) {
        return Err(VerifyError::CheckpointOrigin {
            origin: cp.origin,
            expected: log.name.clone(),
        });
    }
    let hint = log.note_key_hint();
    let mut candidates = cp
        .signatures
        .iter()
        .filter(|s| s.name == log.name && s.key_hint == hint)
        .peekable();
    if candidates.peek().is_none() {
        return Err(VerifyError::CheckpointUnsigned {
            name: log.name.clone(),
            key_hint: hex::encode(hint),
        });
    }
    if candidates.any(|s| log.key.verifies(cp.note_text.as_bytes(), &s.signature)) {
        Ok(cp)
    } else {
        Err(VerifyError::CheckpointSignature {
            name: log.name.clone(),
        })
    }
}
