//! SBOM documents: CycloneDX JSON and SPDX 2.x JSON.
//!
//! Owns: recognising which of the two formats a JSON document is, its spec
//! version, its component count and its digest.
//! - CycloneDX: top-level `bomFormat == "CycloneDX"`; `spec_version` is
//!   `specVersion` (e.g. `1.2`); the component count is every entry of
//!   `components`, recursively including each component's nested `components`
//!   (`metadata.component`, the subject of the BOM, is not counted).
//! - SPDX: top-level `spdxVersion` of the form `SPDX-<major>.<minor>`;
//!   `spec_version` is that string verbatim (e.g. `SPDX-2.3`); the component
//!   count is the number of `packages` (0 when absent).
//!
//! `digest` is SHA-256 of the exact input bytes (not of a re-serialisation), so
//! it matches what a client computes with `sha256sum`.
//!
//! Must never: validate against the full CycloneDX/SPDX schemas, rewrite the
//! document, or guess a format from anything but the two markers above
//! (anything else is [`FormatError::UnknownFormat`]).

use serde_json::Value;

use crate::digest::sha256;
use crate::error::{FormatError, Result};
use crate::json::{invalid, missing};
use crate::limits::Limits;

const SBOM: &str = "SBOM";

/// The SBOM formats this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SbomFormat {
    Cyclonedx,
    Spdx,
}

impl SbomFormat {
    /// The value stored in the database: `"cyclonedx"` or `"spdx"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cyclonedx => "cyclonedx",
            Self::Spdx => "spdx",
        }
    }
}

impl std::fmt::Display for SbomFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SbomFormat {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cyclonedx" => Ok(Self::Cyclonedx),
            "spdx" => Ok(Self::Spdx),
            _ => Err(FormatError::UnknownFormat),
        }
    }
}

/// A recognised SBOM.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedSbom {
    pub format: SbomFormat,
    /// CycloneDX `specVersion` (e.g. `1.2`) or SPDX `spdxVersion` (e.g. `SPDX-2.3`).
    pub spec_version: String,
    pub component_count: usize,
    /// SHA-256 of the exact input bytes.
    pub digest: [u8; 32],
    pub document: Value,
}

impl ParsedSbom {
    /// Detects and parses a CycloneDX or SPDX JSON document. Applies `limits` first.
    pub fn parse(bytes: &[u8], limits: &Limits) -> Result<Self> {
        let document = limits.parse_json(bytes, SBOM)?;
        let digest = sha256(bytes);
        let obj = document.as_object().ok_or(FormatError::UnknownFormat)?;

        if let Some(bom_format) = obj.get("bomFormat") {
            if bom_format.as_str() != Some("CycloneDX") {
                return Err(FormatError::UnknownFormat);
            }
            let spec_version = match obj.get("specVersion") {
                None | Some(Value::Null) => return Err(missing(SBOM, "specVersion")),
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                Some(_) => {
                    return Err(invalid(
                        SBOM,
                        "specVersion",
                        "expected a non-empty string such as \"1.5\"",
                    ))
                }
            };
            let component_count = count_components(obj.get("components"), "components")?;
            return Ok(Self {
                format: SbomFormat::Cyclonedx,
                spec_version,
                component_count,
                digest,
                document,
            });
        }

        if let Some(spdx_version) = obj.get("spdxVersion") {
            let spec_version = spdx_version
                .as_str()
                .filter(|s| is_spdx_version(s))
                .ok_or_else(|| invalid(SBOM, "spdxVersion", "expected a string such as \"SPDX-2.3\""))?
                .to_owned();
            let component_count = match obj.get("packages") {
                None | Some(Value::Null) => 0,
                Some(Value::Array(p)) => p.len(),
                Some(_) => return Err(invalid(SBOM, "packages", "expected a JSON array")),
            };
            return Ok(Self {
                format: SbomFormat::Spdx,
                spec_version,
                component_count,
                digest,
                document,
            });
        }

        Err(FormatError::UnknownFormat)
    }
}

fn is_spdx_version(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("SPDX-") else {
        return false;
    };
    let mut parts = rest.split('.');
    let numeric = |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    numeric(parts.next()) && numeric(parts.next()) && parts.next().is_none()
}

/// Depth is bounded by serde_json's recursion limit for parsed input.
fn count_components(components: Option<&Value>, field: &str) -> Result<usize> {
    match components {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Array(items)) => {
            let mut n = 0;
            for (i, item) in items.iter().enumerate() {
                n += 1;
                if let Some(obj) = item.as_object() {
                    n += count_components(obj.get("components"), &format!("{field}[{i}].components"))?;
                } else {
                    return Err(invalid(SBOM, format!("{field}[{i}]"), "expected a JSON object"));
                }
            }
            Ok(n)
        }
        Some(_) => Err(invalid(SBOM, field, "expected a JSON array")),
    }
}
