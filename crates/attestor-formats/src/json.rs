//! Typed field access on `serde_json::Value` (crate-private).
//!
//! Owns: turning "field absent / wrong type" into [`FormatError::MissingField`] and
//! [`FormatError::InvalidField`] with the document kind and a dotted field name.
//!
//! Must never: coerce types silently (a number is not a string, except where a
//! caller explicitly asks for protobuf-JSON int64 handling).

use serde_json::{Map, Value};

use crate::error::{FormatError, Result};

pub(crate) fn join(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_owned()
    } else {
        format!("{prefix}.{field}")
    }
}

pub(crate) fn invalid(
    document: &'static str,
    field: impl Into<String>,
    reason: impl Into<String>,
) -> FormatError {
    FormatError::InvalidField {
        document,
        field: field.into(),
        reason: reason.into(),
    }
}

pub(crate) fn missing(document: &'static str, field: impl Into<String>) -> FormatError {
    FormatError::MissingField {
        document,
        field: field.into(),
    }
}

pub(crate) fn as_object<'a>(
    value: &'a Value,
    document: &'static str,
    field: &str,
) -> Result<&'a Map<String, Value>> {
    value.as_object().ok_or_else(|| {
        invalid(
            document,
            if field.is_empty() { "(top level)" } else { field },
            "expected a JSON object",
        )
    })
}

/// A present, non-null member, or `None`.
pub(crate) fn get<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

pub(crate) fn req<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    document: &'static str,
    prefix: &str,
) -> Result<&'a Value> {
    get(obj, key).ok_or_else(|| missing(document, join(prefix, key)))
}

pub(crate) fn req_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    document: &'static str,
    prefix: &str,
) -> Result<&'a str> {
    req(obj, key, document, prefix)?
        .as_str()
        .ok_or_else(|| invalid(document, join(prefix, key), "expected a string"))
}

pub(crate) fn opt_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    document: &'static str,
    prefix: &str,
) -> Result<Option<&'a str>> {
    match get(obj, key) {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .map(Some)
            .ok_or_else(|| invalid(document, join(prefix, key), "expected a string")),
    }
}

pub(crate) fn req_obj<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    document: &'static str,
    prefix: &str,
) -> Result<&'a Map<String, Value>> {
    req(obj, key, document, prefix)?
        .as_object()
        .ok_or_else(|| invalid(document, join(prefix, key), "expected a JSON object"))
}

pub(crate) fn req_array<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    document: &'static str,
    prefix: &str,
) -> Result<&'a Vec<Value>> {
    req(obj, key, document, prefix)?
        .as_array()
        .ok_or_else(|| invalid(document, join(prefix, key), "expected a JSON array"))
}

/// Reads a non-negative integer. With `allow_string`, also accepts the protobuf
/// JSON spelling of int64 as a decimal string (`"123"`).
pub(crate) fn non_negative_i64(
    value: &Value,
    document: &'static str,
    field: &str,
    allow_string: bool,
) -> Result<i64> {
    let n = match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) if allow_string => {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid(document, field, "expected a decimal integer string"));
            }
            s.parse::<i64>().ok()
        }
        _ => {
            return Err(invalid(
                document,
                field,
                if allow_string {
                    "expected an integer or a decimal integer string"
                } else {
                    "expected an integer"
                },
            ))
        }
    };
    match n {
        Some(n) if n >= 0 => Ok(n),
        _ => Err(invalid(
            document,
            field,
            "expected an integer between 0 and 2^63-1",
        )),
    }
}

pub(crate) fn canonical(value: &Value) -> Vec<u8> {
    // A serde_json::Value cannot hold NaN or infinities, the only values RFC 8785
    // canonicalization refuses, so this cannot fail.
    serde_json_canonicalizer::to_vec(value)
        .expect("RFC 8785 canonicalization of a serde_json::Value cannot fail")
}
