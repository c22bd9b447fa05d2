//! A catalog-driven row generator: valid rows for any tenant table, with
//! values derived from column types, defaults, foreign keys (parents first)
//! and CHECK constraints.
//!
//! It owns the value strategies and a small CHECK solver: a CHECK is parsed
//! from the server's own rendering (`pg_get_expr`) into AND/OR trees of
//! comparisons; each comparison that is false is repaired by a strategy
//! (`col = ANY (ARRAY[…])` → the first element, `octet_length(col) = N` →
//! N bytes, `col >= N` → N, `jsonb_typeof(col) = 'array'` → `[]`,
//! `col = <expr>` → the value of `<expr>` for the rest of the row, …), and
//! every step is re-evaluated by PostgreSQL itself. A table it cannot fill
//! is reported with the reason; it never invents a pass. It must never
//! write anything but the rows it is asked for, inside the caller's
//! rolled-back transaction.

use std::collections::BTreeMap;

use crate::catalog::{Catalog, Column, Table};
use crate::db::Db;
use crate::error::Result;
use crate::{ident, lit};

/// Column name → SQL expression of its value (columns not listed take their
/// default).
pub type Values = BTreeMap<String, String>;

/// A parent row already inserted, as `to_jsonb(row)`.
pub type RowJson = serde_json::Map<String, serde_json::Value>;

/// 64-bit FNV-1a, for deterministic per-row values.
pub fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn hex_bytes(seed: &str, n: usize) -> String {
    let mut out = String::with_capacity(n * 2);
    let mut i = 0u64;
    while out.len() < n * 2 {
        out.push_str(&format!("{:016x}", fnv(&format!("{seed}:{i}"))));
        i += 1;
    }
    out.truncate(n * 2);
    out
}

fn uuid_from(seed: &str) -> String {
    let h = hex_bytes(seed, 16);
    // Version 4, RFC 4122 variant.
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// A value of `col`'s type, or `None` when there is no strategy for it.
pub fn base_value(col: &Column, seed: &str) -> Option<String> {
    if col.typtype == "e" {
        return col.enum_first.as_ref().map(|l| format!("{}::{}", lit(l), col.ty));
    }
    if col.category == "A" {
        return Some(format!("'{{}}'::{}", col.ty));
    }
    let v = match col.base.as_str() {
        "uuid" => lit(&uuid_from(seed)),
        "text" | "varchar" | "bpchar" | "citext" | "name" => {
            let mut s = format!("rls-{:012x}", fnv(seed) & 0xffff_ffff_ffff);
            if let Some(max) = col.max_length {
                s.truncate(max.max(1) as usize);
            }
            lit(&s)
        }
        "bytea" => lit(&format!("\\x{}", hex_bytes(seed, 16))),
        "int2" | "int4" | "int8" | "numeric" | "float4" | "float8" | "oid" => "1".into(),
        "bool" => "false".into(),
        "timestamptz" | "timestamp" => "now()".into(),
        "date" => "current_date".into(),
        "time" | "timetz" => "current_time".into(),
        "interval" => "'1 hour'".into(),
        "jsonb" | "json" => "'{}'".into(),
        "inet" | "cidr" => "'10.0.0.1'".into(),
        "xml" => "'<x/>'".into(),
        _ => return None,
    };
    Some(format!("({v})::{}", col.ty))
}

fn length_value(col: &Column, len: i64, seed: &str) -> Option<String> {
    let len = len.max(0) as usize;
    match col.base.as_str() {
        "bytea" => Some(format!("{}::bytea", lit(&format!("\\x{}", hex_bytes(seed, len))))),
        "text" | "varchar" | "bpchar" | "citext" => {
            let s: String = hex_bytes(seed, len.div_ceil(2)).chars().take(len).collect();
            Some(format!("{}::{}", lit(&s), col.ty))
        }
        _ if col.category == "A" => {
            let elem = col.ty.trim_end_matches("[]");
            Some(format!("array_fill('1'::{elem}, ARRAY[{len}])::{}", col.ty))
        }
        _ => None,
    }
}

/// Builds rows of one table.
pub struct Filler<'a> {
    pub table: &'a Table,
    pub catalog: &'a Catalog,
    /// Try the alternatives of an OR from the last one (the consequent of
    /// `guard OR consequent`, usually) instead of the first.
    pub prefer_last_alternative: bool,
}

/// A parsed boolean expression (the server's rendering of a CHECK).
#[derive(Debug, Clone)]
enum Node {
    And(String, Vec<Node>),
    Or(String, Vec<Node>),
    Atom(String),
}

impl Node {
    fn text(&self) -> &str {
        match self {
            Node::And(s, _) | Node::Or(s, _) | Node::Atom(s) => s,
        }
    }
}

/// Split `s` at top-level occurrences of `sep` (outside parentheses,
/// brackets and quotes).
fn split_top<'s>(s: &'s str, sep: &str) -> Vec<&'s str> {
    let mut parts = Vec::new();
    let (mut depth, mut quote, mut start, mut i) = (0i32, None::<u8>, 0usize, 0usize);
    let b = s.as_bytes();
    while i < b.len() {
        let c = b[i];
        match quote {
            Some(q) => {
                if c == q {
                    quote = None;
                }
            }
            None => match c {
                b'\'' | b'"' => quote = Some(c),
                b'(' | b'[' => depth += 1,
                b')' | b']' => depth -= 1,
                _ if depth == 0 && s[i..].starts_with(sep) => {
                    parts.push(&s[start..i]);
                    i += sep.len();
                    start = i;
                    continue;
                }
                _ => {}
            },
        }
        i += 1;
    }
    parts.push(&s[start..]);
    parts
}

/// Remove parentheses around the whole of `s`.
fn strip_outer(mut s: &str) -> &str {
    loop {
        s = s.trim();
        if !(s.starts_with('(') && s.ends_with(')')) {
            return s;
        }
        // Does the first '(' close at the very end?
        let (mut depth, mut quote) = (0i32, None::<char>);
        let mut closes_at_end = true;
        for (i, c) in s.char_indices() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None => match c {
                    '\'' | '"' => quote = Some(c),
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 && i != s.len() - 1 {
                            closes_at_end = false;
                            break;
                        }
                    }
                    _ => {}
                },
            }
        }
        if !closes_at_end {
            return s;
        }
        s = &s[1..s.len() - 1];
    }
}

fn parse(s: &str) -> Node {
    let inner = strip_outer(s);
    let ors = split_top(inner, " OR ");
    if ors.len() > 1 {
        return Node::Or(inner.to_owned(), ors.into_iter().map(parse).collect());
    }
    let ands = split_top(inner, " AND ");
    if ands.len() > 1 {
        return Node::And(inner.to_owned(), ands.into_iter().map(parse).collect());
    }
    Node::Atom(inner.to_owned())
}

const OPS: [&str; 7] = [" >= ", " <= ", " <> ", " != ", " = ", " > ", " < "];

/// `lhs op rhs` at top level.
fn split_cmp(s: &str) -> Option<(&str, &'static str, &str)> {
    let mut best: Option<(usize, &'static str)> = None;
    for op in OPS {
        let parts = split_top(s, op);
        if parts.len() >= 2 {
            let pos = parts[0].len();
            if best.is_none_or(|(p, _)| pos < p) {
                best = Some((pos, op));
            }
        }
    }
    let (pos, op) = best?;
    Some((&s[..pos], op.trim(), &s[pos + op.len()..]))
}

fn flip(op: &'static str) -> &'static str {
    match op {
        ">" => "<",
        "<" => ">",
        ">=" => "<=",
        "<=" => ">=",
        o => o,
    }
}

impl<'a> Filler<'a> {
    pub fn new(catalog: &'a Catalog, table: &'a Table) -> Self {
        Filler {
            table,
            catalog,
            prefer_last_alternative: true,
        }
    }

    /// A column reference `s` (bare, quoted, parenthesized or cast).
    fn as_column(&self, s: &str) -> Option<&'a Column> {
        let mut s = strip_outer(s);
        let casts = split_top(s, "::");
        if casts.len() > 1 {
            s = strip_outer(casts[0]);
        }
        let name = if s.starts_with('"') && s.ends_with('"') && s.len() >= 2 {
            s[1..s.len() - 1].replace("\"\"", "\"")
        } else {
            s.to_owned()
        };
        self.table.columns.iter().find(|c| c.name == name)
    }

    /// `f(col, …)` → (f, col).
    fn as_function_of_column(&self, s: &str) -> Option<(String, &'a Column)> {
        let s = strip_outer(s);
        let open = s.find('(')?;
        if !s.ends_with(')') {
            return None;
        }
        let f = s[..open].trim().to_ascii_lowercase();
        if f.is_empty()
            || !f
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            return None;
        }
        let args = &s[open + 1..s.len() - 1];
        let first = split_top(args, ",").into_iter().next()?;
        Some((
            f.rsplit('.').next().unwrap_or(&f).to_owned(),
            self.as_column(first)?,
        ))
    }

    /// The evaluation context: one row with every column, as a subquery.
    fn context(&self, values: &Values) -> String {
        let mut inner = Vec::new();
        let mut generated = Vec::new();
        for c in &self.table.columns {
            if c.generated {
                generated.push(c);
                continue;
            }
            let expr = match values.get(&c.name) {
                Some(v) => v.clone(),
                None => match &c.default {
                    Some(d) if !d.contains("nextval(") => d.clone(),
                    Some(_) => "1".into(),
                    None if c.identity.is_empty() => "NULL".into(),
                    None => "1".into(),
                },
            };
            inner.push(format!("({expr})::{} AS {}", c.ty, ident(&c.name)));
        }
        let base = format!("SELECT {}", inner.join(", "));
        if generated.is_empty() {
            base
        } else {
            let gens: Vec<String> = generated
                .iter()
                .map(|c| {
                    format!(
                        "({})::{} AS {}",
                        c.default.as_deref().unwrap_or("NULL"),
                        c.ty,
                        ident(&c.name)
                    )
                })
                .collect();
            format!("SELECT b.*, {} FROM ({base}) AS b", gens.join(", "))
        }
    }

    fn eval(&self, db: &mut Db, values: &Values, expr: &str) -> Result<bool> {
        let sql = format!(
            "SELECT (({expr}) IS NOT FALSE)::text AS v FROM ({}) AS t",
            self.context(values)
        );
        Ok(matches!(db.try_text(&sql)?, Ok(Some(v)) if v == "true"))
    }

    /// The value of `expr` for the row, as a literal of `col`'s type.
    fn value_of(&self, db: &mut Db, values: &Values, expr: &str, col: &Column) -> Result<Option<String>> {
        let sql = format!(
            "SELECT (({expr})::{})::text AS v FROM ({}) AS t",
            col.ty,
            self.context(values)
        );
        Ok(match db.try_text(&sql)? {
            Ok(Some(v)) => Some(format!("{}::{}", lit(&v), col.ty)),
            Ok(None) => Some(format!("NULL::{}", col.ty)),
            Err(_) => None,
        })
    }

    /// Try to make `node` true by changing `values`.
    fn fix(&self, db: &mut Db, values: &mut Values, node: &Node, seed: &str) -> Result<()> {
        if self.eval(db, values, node.text())? {
            return Ok(());
        }
        match node {
            Node::And(_, parts) => {
                for _ in 0..3 {
                    for p in parts {
                        if !self.eval(db, values, p.text())? {
                            self.fix(db, values, p, seed)?;
                        }
                    }
                    if self.eval(db, values, node.text())? {
                        break;
                    }
                }
            }
            Node::Or(_, parts) => {
                let ordered: Vec<&Node> = if self.prefer_last_alternative {
                    parts.iter().rev().collect()
                } else {
                    parts.iter().collect()
                };
                for p in ordered {
                    let saved = values.clone();
                    self.fix(db, values, p, seed)?;
                    if self.eval(db, values, node.text())? {
                        return Ok(());
                    }
                    *values = saved;
                }
            }
            Node::Atom(a) => self.fix_atom(db, values, a, seed)?,
        }
        Ok(())
    }

    fn set(values: &mut Values, col: &Column, expr: Option<String>) {
        if let Some(e) = expr {
            values.insert(col.name.clone(), e);
        }
    }

    fn fix_atom(&self, db: &mut Db, values: &mut Values, atom: &str, seed: &str) -> Result<()> {
        if let Some(subject) = atom.strip_suffix(" IS NOT NULL") {
            if let Some(c) = self.as_column(subject) {
                Self::set(values, c, base_value(c, &format!("{seed}:{}", c.name)));
            }
            return Ok(());
        }
        if let Some(subject) = atom.strip_suffix(" IS NULL") {
            if let Some(c) = self.as_column(subject) {
                if !c.not_null {
                    values.insert(c.name.clone(), format!("NULL::{}", c.ty));
                }
            }
            return Ok(());
        }
        let Some((lhs, op, rhs)) = split_cmp(atom) else {
            return Ok(());
        };
        let (lhs, op, rhs) = if self.as_column(lhs).is_none()
            && self.as_function_of_column(lhs).is_none()
            && (self.as_column(rhs).is_some() || self.as_function_of_column(rhs).is_some())
        {
            (rhs, flip(op), lhs)
        } else {
            (lhs, op, rhs)
        };
        let rhs = rhs.trim();
        if let Some(c) = self.as_column(lhs) {
            if c.generated {
                return Ok(());
            }
            let target = if op == "=" {
                match rhs.strip_prefix("ANY ") {
                    Some(arr) => format!("({})[1]", strip_outer(arr)),
                    None => rhs.to_owned(),
                }
            } else if op == ">" || op == "<" || op == "<>" || op == "!=" {
                let sign = if op == "<" { "-" } else { "+" };
                match c.category.as_str() {
                    "N" => format!("({rhs}) {sign} 1"),
                    "D" => format!("({rhs}) {sign} interval '1 day'"),
                    _ if op == "<>" || op == "!=" => {
                        Self::set(values, c, base_value(c, &format!("{seed}:{}:ne", c.name)));
                        return Ok(());
                    }
                    _ => format!("({rhs}) || 'z'"),
                }
            } else {
                rhs.to_owned()
            };
            let v = self.value_of(db, values, &target, c)?;
            Self::set(values, c, v);
            return Ok(());
        }
        if let Some((f, c)) = self.as_function_of_column(lhs) {
            let col_seed = format!("{seed}:{}", c.name);
            match f.as_str() {
                "octet_length" | "length" | "char_length" | "character_length" | "cardinality"
                | "array_length" => {
                    let Ok(n) = strip_outer(rhs).parse::<i64>() else {
                        return Ok(());
                    };
                    let len = match op {
                        ">" | "<>" | "!=" => n + 1,
                        "<" => n - 1,
                        _ => n,
                    };
                    Self::set(values, c, length_value(c, len, &col_seed));
                }
                "jsonb_typeof" | "json_typeof" => {
                    let kinds = match rhs.strip_prefix("ANY ") {
                        Some(arr) => arr.to_owned(),
                        None => rhs.to_owned(),
                    };
                    let wanted = ["object", "array", "string", "number", "boolean", "null"]
                        .into_iter()
                        .find(|k| kinds.contains(&format!("'{k}'")));
                    let doc = match wanted {
                        Some("object") => "{}",
                        Some("array") => "[]",
                        Some("string") => "\"x\"",
                        Some("number") => "0",
                        Some("boolean") => "true",
                        Some("null") => "null",
                        _ => return Ok(()),
                    };
                    if op == "=" {
                        values.insert(c.name.clone(), format!("{}::{}", lit(doc), c.ty));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Values for one row of `tenant`; `Err(reason)` when the table cannot be filled.
    pub fn row(
        &self,
        db: &mut Db,
        tenant: &str,
        tag: &str,
        parents: &BTreeMap<String, RowJson>,
    ) -> Result<std::result::Result<Values, String>> {
        let t = self.table;
        let seed = format!("{tenant}:{}:{tag}", t.key());
        let mut values = Values::new();
        for c in &t.columns {
            if c.generated || c.identity == "a" {
                continue;
            }
            if c.name == "tenant_id" {
                values.insert(c.name.clone(), format!("{}::{}", lit(tenant), c.ty));
            } else if c.default.is_some() || !c.not_null || !c.identity.is_empty() {
                continue;
            } else {
                match base_value(c, &format!("{seed}:{}", c.name)) {
                    Some(v) => {
                        values.insert(c.name.clone(), v);
                    }
                    None => {
                        return Ok(Err(format!(
                            "no value strategy for column {} of type {}",
                            c.name, c.ty
                        )))
                    }
                }
            }
        }
        // Foreign keys: point at the parent row of the same tenant.
        for fk in self.catalog.constraints_of(t).filter(|c| c.kind == "f") {
            let (Some(rs), Some(rt)) = (&fk.ref_schema, &fk.ref_table) else {
                continue;
            };
            let cols: Vec<&Column> = fk.columns.iter().filter_map(|n| t.column(n)).collect();
            if cols.iter().any(|c| c.generated) {
                continue; // e.g. a hash chain through a generated column: NULL for the first row
            }
            let parent_key = format!("{rs}.{rt}");
            let required = cols.iter().any(|c| c.not_null && c.name != "tenant_id");
            let parent_row = if parent_key == t.key() {
                None
            } else if let Some(p) = parents.get(&parent_key) {
                Some(p.clone())
            } else if self.catalog.table(rs, rt).is_some_and(|p| !p.is_tenant()) {
                let text = db.try_text(&format!(
                    "SELECT to_jsonb(p)::text AS v FROM {} AS p LIMIT 1",
                    crate::qualified(rs, rt)
                ))?;
                match text {
                    Ok(Some(j)) => serde_json::from_str::<RowJson>(&j).ok(),
                    _ => None,
                }
            } else {
                None
            };
            match parent_row {
                Some(p) => {
                    for (c, rc) in fk.columns.iter().zip(&fk.ref_columns) {
                        if c == "tenant_id" {
                            continue;
                        }
                        let Some(col) = t.column(c) else { continue };
                        let v = match p.get(rc) {
                            None | Some(serde_json::Value::Null) => format!("NULL::{}", col.ty),
                            Some(serde_json::Value::String(s)) => format!("{}::{}", lit(s), col.ty),
                            Some(other) => format!("{}::{}", lit(&other.to_string()), col.ty),
                        };
                        values.insert(c.clone(), v);
                    }
                }
                None if required => {
                    return Ok(Err(format!(
                        "foreign key {} needs a row in {parent_key}, which could not be filled",
                        fk.name
                    )))
                }
                None => {
                    for c in &fk.columns {
                        if c != "tenant_id" {
                            if let Some(col) = t.column(c) {
                                values.insert(c.clone(), format!("NULL::{}", col.ty));
                            }
                        }
                    }
                }
            }
        }
        // CHECK constraints.
        let checks: Vec<_> = self.catalog.constraints_of(t).filter(|c| c.kind == "c").collect();
        for _ in 0..2 {
            for c in &checks {
                let Some(expr) = &c.expr else { continue };
                let node = parse(expr);
                self.fix(db, &mut values, &node, &seed)?;
            }
        }
        for c in &checks {
            if let Some(expr) = &c.expr {
                if !self.eval(db, &values, expr)? {
                    return Ok(Err(format!("cannot satisfy CHECK {} {}", c.name, c.def)));
                }
            }
        }
        Ok(Ok(values))
    }

    /// The INSERT of one row, answering the inserted row as one JSON text
    /// column `v`. Its RETURNING returns columns only (`*`) and the row is
    /// turned into JSON outside it, by the SELECT over the data-modifying
    /// CTE: Citus refuses non-IMMUTABLE functions such as `to_jsonb` in the
    /// RETURNING clause of a distributed table.
    pub fn insert_sql(&self, values: &Values) -> String {
        let target = self.table.qualified();
        let insert = if values.is_empty() {
            format!("INSERT INTO {target} DEFAULT VALUES RETURNING *")
        } else {
            let cols: Vec<String> = values.keys().map(|c| ident(c)).collect();
            let vals: Vec<&str> = values.values().map(String::as_str).collect();
            format!(
                "INSERT INTO {target} ({}) VALUES ({}) RETURNING *",
                cols.join(", "),
                vals.join(", ")
            )
        };
        format!("WITH inserted AS ({insert}) SELECT to_jsonb(inserted)::text AS v FROM inserted")
    }

    /// A plain INSERT statement for a probe (no RETURNING).
    pub fn plain_insert(&self, values: &Values) -> String {
        if values.is_empty() {
            return format!("INSERT INTO {} DEFAULT VALUES", self.table.qualified());
        }
        let cols: Vec<String> = values.keys().map(|c| ident(c)).collect();
        let vals: Vec<&str> = values.values().map(String::as_str).collect();
        format!(
            "INSERT INTO {} ({}) VALUES ({})",
            self.table.qualified(),
            cols.join(", "),
            vals.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pg_renderings() {
        let n = parse("((octet_length(payload_sha256) = 32) AND (payload_sha256 = sha256(payload)))");
        match n {
            Node::And(_, parts) => {
                assert_eq!(parts.len(), 2);
                assert_eq!(parts[1].text(), "payload_sha256 = sha256(payload)");
            }
            other => panic!("{other:?}"),
        }
        let n = parse("((valid_until IS NULL) OR (valid_until > valid_from))");
        assert!(matches!(n, Node::Or(_, ref p) if p.len() == 2));
        assert_eq!(
            split_cmp("status = ANY (ARRAY['queued'::text, 'running'::text])"),
            Some(("status", "=", "ANY (ARRAY['queued'::text, 'running'::text])"))
        );
        assert_eq!(split_cmp("seq >= 1"), Some(("seq", ">=", "1")));
        assert_eq!(strip_outer("(a) AND (b)"), "(a) AND (b)");
    }

    #[test]
    fn uuids_are_well_formed() {
        let u = uuid_from("x");
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
