//! A fixed SQL statement that diesel-async prepares once per connection.
//!
//! Owns [`Prepared`] and its binds ([`Bind`], [`Binds`]). `diesel::sql_query`
//! marks itself unsafe to cache, so every run of a hand-written statement
//! through it is parsed, planned and described again (an extra round trip
//! too: Parse/Describe, then Bind/Execute). [`Prepared`] is the same raw SQL
//! without that mark: diesel-async's statement cache keys it by its SQL text
//! and bind types, prepares it (a named server-side statement) on its first
//! run on a connection, and later runs send only Bind/Execute.
//!
//! The SQL is a `&'static str` with PostgreSQL placeholders `$1`, `$2`, …;
//! a placeholder may appear more than once. diesel numbers bind parameters
//! itself, in the order it meets them, so each occurrence becomes a
//! parameter of its own (`$1 … $1` is sent as `$1 … $5`, both bound to the
//! first value); the statement means what it says with the values
//! substituted, as with `sql_query`. Rows load by name (`QueryableByName`),
//! as with `sql_query`.
//!
//! A prepared statement is planned by PostgreSQL's plan cache
//! (`plan_cache_mode`): custom plans for the first five runs, then the
//! generic plan when its estimated cost is not worse. Callers document what
//! that means for their statement.

use std::marker::PhantomData;

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{HasSqlType, Untyped};
use diesel::QueryResult;

/// A value bound as SQL type `ST`.
pub struct Bind<ST, T> {
    value: T,
    _st: PhantomData<ST>,
}

impl<ST, T> Bind<ST, T> {
    /// Bind `value` as `ST`.
    pub fn new(value: T) -> Self {
        Bind {
            value,
            _st: PhantomData,
        }
    }
}

/// The values of `$1`, `$2`, …: a tuple of [`Bind`]s, `$n` being element
/// `n - 1`.
pub trait Binds {
    /// How many values (the highest placeholder number allowed).
    const LEN: usize;

    /// Push the value of placeholder `$(index + 1)` as a bind parameter.
    fn push_bind<'b>(&'b self, index: usize, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()>;
}

/// One element of a [`Binds`] tuple.
trait PushBind {
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()>;
}

impl<ST, T> PushBind for Bind<ST, T>
where
    Pg: HasSqlType<ST>,
    T: ToSql<ST, Pg>,
{
    fn push<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_bind_param::<ST, T>(&self.value)
    }
}

macro_rules! binds_tuple {
    ($len:expr; $($t:ident $st:ident $v:ident $i:tt),+) => {
        #[allow(private_bounds)]
        impl<$($st, $t),+> Binds for ($(Bind<$st, $t>,)+)
        where
            $(Bind<$st, $t>: PushBind,)+
        {
            const LEN: usize = $len;

            fn push_bind<'b>(&'b self, index: usize, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
                match index {
                    $($i => self.$i.push(out),)+
                    _ => Err(diesel::result::Error::QueryBuilderError(
                        format!("placeholder ${} has no bound value", index + 1).into(),
                    )),
                }
            }
        }
    };
}

binds_tuple!(1; A SA a 0);
binds_tuple!(2; A SA a 0, B SB b 1);
binds_tuple!(3; A SA a 0, B SB b 1, C SC c 2);
binds_tuple!(4; A SA a 0, B SB b 1, C SC c 2, D SD d 3);

/// `sql` with `binds`, cached as a prepared statement per connection (see
/// the module docs). Run it with diesel-async's `RunQueryDsl` (`load`,
/// `execute`); rows load by name.
pub struct Prepared<B> {
    sql: &'static str,
    binds: B,
}

impl<B: Binds> Prepared<B> {
    /// `sql` (placeholders `$1 … $B::LEN`) with `binds`.
    pub fn new(sql: &'static str, binds: B) -> Self {
        Prepared { sql, binds }
    }
}

/// Splits `sql` at its placeholders: the text before each one and the
/// placeholder's (zero-based) index, then the rest.
fn segments(sql: &str) -> (Vec<(&str, usize)>, &str) {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let digits = bytes[i + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
            if digits > 0 {
                let n: usize = sql[i + 1..i + 1 + digits].parse().unwrap_or(0);
                out.push((&sql[start..i], n.wrapping_sub(1)));
                i += 1 + digits;
                start = i;
                continue;
            }
        }
        i += 1;
    }
    (out, &sql[start..])
}

impl<B: Binds> QueryFragment<Pg> for Prepared<B> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        // Not `unsafe_to_cache_prepared`: the SQL is fixed, only the values vary.
        let (parts, rest) = segments(self.sql);
        for (text, index) in parts {
            if index >= B::LEN {
                return Err(diesel::result::Error::QueryBuilderError(
                    format!("placeholder ${} has no bound value", index.wrapping_add(1)).into(),
                ));
            }
            out.push_sql(text);
            self.binds.push_bind(index, &mut out)?;
        }
        out.push_sql(rest);
        Ok(())
    }
}

impl<B> QueryId for Prepared<B> {
    // Keyed by the SQL text and bind types, not by type: one Rust type
    // serves many statements.
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<B> Query for Prepared<B> {
    type SqlType = Untyped;
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::sql_types::{Int4, Text};

    #[test]
    fn placeholders_become_binds_in_order() {
        let q = Prepared::new(
            "SELECT $1::int + $2, $1 || '$' || $10x",
            (Bind::<Int4, _>::new(1), Bind::<Text, _>::new("a")),
        );
        // $10 names no value: refused, not sent.
        let mut sql = diesel::pg::PgQueryBuilder::default();
        assert!(q.to_sql(&mut sql, &Pg).is_err());
        let q = Prepared::new(
            "SELECT $1::int + $2, $1 || '$'",
            (Bind::<Int4, _>::new(1), Bind::<Text, _>::new("a")),
        );
        let s = diesel::debug_query::<Pg, _>(&q).to_string();
        assert!(
            s.starts_with("SELECT $1::int + $2, $3 || '$' -- binds: [1, \"a\", 1]"),
            "{s}"
        );
    }
}
