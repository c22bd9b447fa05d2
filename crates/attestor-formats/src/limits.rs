//! Input guards applied before any parsing.
//!
//! Owns: [`Limits`] (the largest document accepted) and the rule that no JSON
//! string or object key may contain U+0000, which PostgreSQL `jsonb` and `text`
//! refuse. Every parser in this crate calls [`Limits::parse_json`] (size check,
//! then JSON parse, then NUL check) before it looks at a single field, so a
//! document that passes a parser can always be stored.
//!
//! Must never: truncate, repair or re-encode input; a document is accepted whole
//! or refused with [`FormatError::TooLarge`] / [`FormatError::NulCharacter`].

use serde_json::Value;

use crate::error::{FormatError, Result};

/// Default [`Limits::max_document_bytes`]: 16 MiB.
pub const DEFAULT_MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;

/// Resource limits for untrusted input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted input, in bytes, as received (before any base64 decoding).
    pub max_document_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_document_bytes: DEFAULT_MAX_DOCUMENT_BYTES,
        }
    }
}

impl Limits {
    /// Refuses inputs longer than `max_document_bytes` with [`FormatError::TooLarge`].
    pub fn check_size(&self, actual: usize) -> Result<()> {
        if actual > self.max_document_bytes {
            return Err(FormatError::TooLarge {
                limit: self.max_document_bytes,
                actual,
            });
        }
        Ok(())
    }

    /// Size check, JSON parse, NUL check, in that order. `document` names the
    /// kind of document in error messages.
    pub fn parse_json(&self, bytes: &[u8], document: &'static str) -> Result<Value> {
        self.check_size(bytes.len())?;
        let value: Value =
            serde_json::from_slice(bytes).map_err(|source| FormatError::Json { document, source })?;
        check_no_nul(&value, document)?;
        Ok(value)
    }
}

/// Refuses any string value or object key containing U+0000 with
/// [`FormatError::NulCharacter`], whose `path` is an RFC 6901 JSON pointer.
pub fn check_no_nul(value: &Value, document: &'static str) -> Result<()> {
    let mut path = Vec::new();
    walk(value, &mut path).map_err(|path| FormatError::NulCharacter { document, path })
}

/// Depth is bounded by serde_json's recursion limit (128) for parsed input.
fn walk<'a>(value: &'a Value, path: &mut Vec<Segment<'a>>) -> std::result::Result<(), String> {
    match value {
        Value::String(s) if s.contains('\0') => Err(pointer(path)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(Segment::Index(i));
                walk(item, path)?;
                path.pop();
            }
            Ok(())
        }
        Value::Object(map) => {
            for (key, item) in map {
                path.push(Segment::Key(key));
                if key.contains('\0') {
                    return Err(pointer(path));
                }
                walk(item, path)?;
                path.pop();
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn pointer(path: &[Segment<'_>]) -> String {
    let mut out = String::new();
    for segment in path {
        out.push('/');
        match segment {
            Segment::Index(i) => out.push_str(&i.to_string()),
            Segment::Key(k) => {
                for c in k.chars() {
                    match c {
                        '~' => out.push_str("~0"),
                        '/' => out.push_str("~1"),
                        '\0' => out.push_str("\\u0000"),
                        c => out.push(c),
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointer_escapes_rfc6901() {
        let v = json!({"a/b": {"c~d": ["ok", "x\u{0}y"]}});
        match check_no_nul(&v, "test").unwrap_err() {
            FormatError::NulCharacter { path, .. } => assert_eq!(path, "/a~1b/c~0d/1"),
            e => panic!("unexpected {e:?}"),
        }
    }

    #[test]
    fn nul_in_key_is_reported() {
        let v = json!({"ok": {"bad\u{0}key": 1}});
        match check_no_nul(&v, "test").unwrap_err() {
            FormatError::NulCharacter { path, .. } => assert_eq!(path, "/ok/bad\\u0000key"),
            e => panic!("unexpected {e:?}"),
        }
    }

    #[test]
    fn size_limit_is_inclusive() {
        let limits = Limits {
            max_document_bytes: 4,
        };
        assert!(limits.check_size(4).is_ok());
        assert!(matches!(
            limits.check_size(5),
            Err(FormatError::TooLarge { limit: 4, actual: 5 })
        ));
    }
}
