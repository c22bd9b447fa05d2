//! Keyset pagination on `(created_at, id)`, newest first.
//!
//! Owns: [`PageRequest`] (a limit and an optional cursor), [`Cursor`] (the
//! `(created_at, id)` of the last row seen, with an opaque string form for
//! APIs) and [`Page`]. Every list in this crate orders by `created_at DESC,
//! id DESC` and continues strictly after the cursor, which the
//! `(tenant_id, created_at, id)` indexes serve without OFFSET scans.
//!
//! Must never: use OFFSET, or accept a limit outside `1..=MAX_PAGE_SIZE`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::RepoError;

/// Largest page size.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Position after which a page starts: the last row of the previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

impl fmt::Display for Cursor {
    /// `<microseconds since the epoch>.<uuid>`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}",
            self.created_at.timestamp_micros(),
            self.id.hyphenated()
        )
    }
}

impl FromStr for Cursor {
    type Err = RepoError;
    fn from_str(s: &str) -> Result<Self, RepoError> {
        let bad = || RepoError::invalid(format!("malformed page cursor `{s}`"));
        let (micros, id) = s.split_once('.').ok_or_else(bad)?;
        let micros: i64 = micros.parse().map_err(|_| bad())?;
        Ok(Cursor {
            created_at: DateTime::from_timestamp_micros(micros).ok_or_else(bad)?,
            id: Uuid::try_parse(id).map_err(|_| bad())?,
        })
    }
}

/// Which page to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Rows per page, `1..=MAX_PAGE_SIZE`.
    pub limit: u32,
    /// Continue after this row; `None` for the newest rows.
    pub after: Option<Cursor>,
}

impl PageRequest {
    /// The first (newest) page of `limit` rows.
    pub fn first(limit: u32) -> Self {
        PageRequest { limit, after: None }
    }

    /// The page after `cursor`.
    pub fn after(limit: u32, cursor: Cursor) -> Self {
        PageRequest {
            limit,
            after: Some(cursor),
        }
    }

    pub(crate) fn checked_limit(&self) -> Result<i64, RepoError> {
        if (1..=MAX_PAGE_SIZE).contains(&self.limit) {
            Ok(i64::from(self.limit))
        } else {
            Err(RepoError::invalid(format!(
                "page size {} is outside 1..={MAX_PAGE_SIZE}",
                self.limit
            )))
        }
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest::first(50)
    }
}

/// One page of rows, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Cursor for the next page; `None` when this page is the last.
    pub next: Option<Cursor>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows (the extra row only says there is more).
    pub(crate) fn from_rows(mut rows: Vec<T>, limit: i64, key: impl Fn(&T) -> Cursor) -> Self {
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next = if more { rows.last().map(&key) } else { None };
        Page { items: rows, next }
    }
}

/// `(created_at, id) < (cursor)` for a table with those two columns, as a diesel filter.
macro_rules! keyset_before {
    ($query:expr, $table:ident, $after:expr) => {{
        let mut q = $query;
        if let Some(c) = $after {
            q = q.filter(
                $table::created_at
                    .lt(c.created_at)
                    .or($table::created_at.eq(c.created_at).and($table::id.lt(c.id))),
            );
        }
        q.order(($table::created_at.desc(), $table::id.desc()))
    }};
}
pub(crate) use keyset_before;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips() {
        let c = Cursor {
            created_at: DateTime::from_timestamp_micros(1_734_374_576_123_456).unwrap(),
            id: Uuid::new_v4(),
        };
        assert_eq!(c.to_string().parse::<Cursor>().unwrap(), c);
        assert!("nope".parse::<Cursor>().is_err());
        assert!(PageRequest::first(0).checked_limit().is_err());
        assert!(PageRequest::first(MAX_PAGE_SIZE + 1).checked_limit().is_err());
    }
}
