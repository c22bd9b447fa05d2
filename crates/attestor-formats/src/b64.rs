//! Base64 decoding shared by the parsers (crate-private).
//!
//! Owns: the one lenient decoder every base64 field goes through: the standard
//! or the URL-safe alphabet (never both in one value), with or without `=`
//! padding, rejecting whitespace and non-canonical trailing bits so that each
//! byte string has exactly one accepted spelling per alphabet/padding choice.
//!
//! Must never: guess at other encodings (hex, base32) or silently drop characters.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

use crate::error::{FormatError, Result};

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_encode_padding(true)
    .with_decode_padding_mode(DecodePaddingMode::Indifferent);

const STD_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Decodes standard or URL-safe base64, padded or not. `field` names the value in errors.
pub(crate) fn decode(value: &str, field: impl Into<String>) -> Result<Vec<u8>> {
    match STD_LENIENT.decode(value) {
        Ok(bytes) => Ok(bytes),
        Err(std_err) => {
            // Only fall back to the URL-safe alphabet when the text uses it;
            // otherwise report the standard-alphabet error, which is the likelier intent.
            if value.contains(['-', '_']) {
                URL_LENIENT.decode(value).map_err(|source| FormatError::Base64 {
                    field: field.into(),
                    source,
                })
            } else {
                Err(FormatError::Base64 {
                    field: field.into(),
                    source: std_err,
                })
            }
        }
    }
}

/// Encodes as standard, padded base64 (the normal form used for digests).
pub(crate) fn encode_std(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}
