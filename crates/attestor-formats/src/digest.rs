//! SHA-256 digest helpers.
//!
//! Owns: hashing bytes with SHA-256 and the two textual spellings of a SHA-256
//! digest used across the schema: bare 64-character lowercase hex and the
//! prefixed `sha256:<hex>` form (as in OCI and in-toto subject digests).
//! Parsing is strict (lowercase only, exact length) so each digest has one
//! spelling in the database; formatting always produces that spelling.
//!
//! Must never: accept other algorithms under the `sha256` name, truncated
//! digests, or upper-case hex (which would create a second key for the same digest).

use sha2::{Digest as _, Sha256};

use crate::error::{FormatError, Result};

/// Prefix of the algorithm-qualified form.
pub const SHA256_PREFIX: &str = "sha256:";

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Lowercase hex of a 32-byte digest.
pub fn to_hex(digest: &[u8; 32]) -> String {
    hex::encode(digest)
}

/// `sha256:<lowercase hex>`.
pub fn format_sha256(digest: &[u8; 32]) -> String {
    format!("{SHA256_PREFIX}{}", hex::encode(digest))
}

/// Parses 64 lowercase hex characters into 32 bytes.
pub fn parse_hex32(value: &str) -> Result<[u8; 32]> {
    let invalid = |reason: &str| FormatError::InvalidDigest {
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    if value.len() != 64 {
        return Err(invalid(&format!(
            "expected 64 hex characters (32 bytes), got {} characters",
            value.chars().count()
        )));
    }
    if !value.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(invalid("expected only lowercase hex characters 0-9 and a-f"));
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(value, &mut out).map_err(|e| invalid(&e.to_string()))?;
    Ok(out)
}

/// Parses `sha256:<64 lowercase hex>`.
pub fn parse_sha256(value: &str) -> Result<[u8; 32]> {
    let Some(hex_part) = value.strip_prefix(SHA256_PREFIX) else {
        return Err(FormatError::InvalidDigest {
            value: value.to_owned(),
            reason: "expected the form sha256:<64 lowercase hex characters>".to_owned(),
        });
    };
    parse_hex32(hex_part).map_err(|e| match e {
        FormatError::InvalidDigest { reason, .. } => FormatError::InvalidDigest {
            value: value.to_owned(),
            reason,
        },
        other => other,
    })
}

/// Decodes a value that must be exactly 32 bytes (e.g. a base64 or hex Merkle hash).
pub(crate) fn to_array32(bytes: &[u8], document: &'static str, field: &str) -> Result<[u8; 32]> {
    bytes.try_into().map_err(|_| FormatError::InvalidField {
        document,
        field: field.to_owned(),
        reason: format!("expected a 32-byte SHA-256 hash, got {} bytes", bytes.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn round_trip() {
        let d = sha256(b"");
        assert_eq!(to_hex(&d), EMPTY);
        assert_eq!(parse_hex32(EMPTY).unwrap(), d);
        assert_eq!(parse_sha256(&format_sha256(&d)).unwrap(), d);
    }

    #[test]
    fn rejects_bad_spellings() {
        for bad in [
            &EMPTY[..63],
            &format!("{EMPTY}0"),
            &EMPTY.to_uppercase(),
            &format!("{}g", &EMPTY[..63]),
        ] {
            assert!(
                matches!(parse_hex32(bad), Err(FormatError::InvalidDigest { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_sha256(EMPTY),
            Err(FormatError::InvalidDigest { .. })
        ));
        assert!(matches!(
            parse_sha256(&format!("sha512:{EMPTY}")),
            Err(FormatError::InvalidDigest { .. })
        ));
        assert!(matches!(
            parse_sha256(&format!("SHA256:{EMPTY}")),
            Err(FormatError::InvalidDigest { .. })
        ));
    }
}
