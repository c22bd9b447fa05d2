//! Tenant identity and the context a tenant transaction runs in.
//!
//! Owns: [`TenantId`], the validated tenant identifier (a UUID, never the nil
//! UUID; displayed and serialized as the lowercase hyphenated string the
//! database's `require_current_tenant()` casts directly), and
//! [`TenantContext`] (tenant + optional actor recorded by the audit log).
//!
//! Must never: construct a `TenantId` from the nil UUID or from anything that
//! is not a UUID, or touch the database.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use crate::error::RepoError;

/// A tenant identifier: a UUID other than the nil UUID.
///
/// `FromStr`/`TryFrom<Uuid>`/`Deserialize` refuse malformed and nil values
/// with [`RepoError::InvalidTenant`]; `Display`/`Serialize` give the lowercase
/// hyphenated form (`8-4-4-4-12`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(Uuid);

impl TenantId {
    /// The tenant's UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// A fresh random tenant id (v4), e.g. for tests and provisioning.
    pub fn new_random() -> Self {
        TenantId(Uuid::new_v4())
    }
}

impl TryFrom<Uuid> for TenantId {
    type Error = RepoError;
    fn try_from(value: Uuid) -> Result<Self, RepoError> {
        if value.is_nil() {
            Err(RepoError::InvalidTenant)
        } else {
            Ok(TenantId(value))
        }
    }
}

impl From<TenantId> for Uuid {
    fn from(value: TenantId) -> Uuid {
        value.0
    }
}

impl FromStr for TenantId {
    type Err = RepoError;
    fn from_str(s: &str) -> Result<Self, RepoError> {
        let uuid = Uuid::try_parse(s.trim()).map_err(|_| RepoError::InvalidTenant)?;
        TenantId::try_from(uuid)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({})", self.0.hyphenated())
    }
}

impl serde::Serialize for TenantId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for TenantId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(|_| {
            serde::de::Error::custom(format!("invalid tenant id `{s}`: expected a non-nil UUID"))
        })
    }
}

/// Who a tenant transaction runs for: the tenant, and the actor the audit log
/// records (`app.actor`; `None` records NULL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantContext {
    pub tenant: TenantId,
    pub actor: Option<String>,
}

/// Longest accepted actor, in bytes.
pub const MAX_ACTOR_BYTES: usize = 512;

impl TenantContext {
    /// A context for `tenant` with no actor.
    pub fn new(tenant: TenantId) -> Self {
        TenantContext { tenant, actor: None }
    }

    /// Sets the actor recorded in the audit log. Validated when the
    /// transaction opens (no NUL, at most [`MAX_ACTOR_BYTES`] bytes).
    pub fn with_actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let t: TenantId = "0b3c5c1e-8f4e-4c59-9d4e-2f1a6f3b9a10".parse().unwrap();
        assert_eq!(t.to_string(), "0b3c5c1e-8f4e-4c59-9d4e-2f1a6f3b9a10");
        let upper: TenantId = "0B3C5C1E-8F4E-4C59-9D4E-2F1A6F3B9A10".parse().unwrap();
        assert_eq!(upper, t);
        for bad in [
            "",
            "nope",
            "00000000-0000-0000-0000-000000000000",
            "0b3c5c1e-8f4e-4c59-9d4e",
        ] {
            assert!(
                matches!(bad.parse::<TenantId>(), Err(RepoError::InvalidTenant)),
                "{bad}"
            );
        }
        assert!(matches!(
            TenantId::try_from(Uuid::nil()),
            Err(RepoError::InvalidTenant)
        ));
    }

    #[test]
    fn serde_is_a_plain_string() {
        let t = TenantId::new_random();
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, format!("\"{t}\""));
        assert_eq!(serde_json::from_str::<TenantId>(&json).unwrap(), t);
        assert!(serde_json::from_str::<TenantId>("\"00000000-0000-0000-0000-000000000000\"").is_err());
        assert!(serde_json::from_str::<TenantId>("42").is_err());
    }
}
