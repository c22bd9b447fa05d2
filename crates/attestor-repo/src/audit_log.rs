//! The audit log, read per tenant.
//!
//! Owns: reading `attestor.audit_log`, which the database's `audit_row()`
//! trigger writes on every INSERT/UPDATE/DELETE of the audited tables (the
//! tenant, table, row id, action, actor from `app.actor`, the changed columns
//! as JSONB and the transaction id). Lists newest first, or the history of one
//! row oldest first.
//!
//! Must never: write audit rows (only the trigger does; the table is
//! append-only, `AT003` on UPDATE/DELETE/TRUNCATE) or read across tenants.

use attestor_schema::schema::attestor::audit_log;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde_json::Value;
use uuid::Uuid;

use crate::page::{keyset_before, Cursor, Page, PageRequest};
use crate::{RepoError, TenantTx};

/// One audit record.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = audit_log, check_for_backend(diesel::pg::Pg))]
pub struct AuditEntry {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Table name within schema `attestor`.
    pub table_name: String,
    pub row_id: Uuid,
    /// `INSERT`, `UPDATE` or `DELETE`.
    pub action: String,
    pub actor: Option<String>,
    /// INSERT/DELETE: the row; UPDATE: `{"col": {"old": …, "new": …}}` of the changed columns.
    pub changes: Value,
    pub txid: i64,
}

impl AuditEntry {
    /// Cursor of this row for [`list`].
    pub fn cursor(&self) -> Cursor {
        Cursor {
            created_at: self.created_at,
            id: self.id,
        }
    }
}

/// Optional filters for [`list`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub table_name: Option<String>,
    pub row_id: Option<Uuid>,
    pub action: Option<String>,
}

/// The tenant's audit records, newest first.
pub async fn list(
    tx: &mut TenantTx,
    filter: &AuditFilter,
    page: PageRequest,
) -> Result<Page<AuditEntry>, RepoError> {
    let limit = page.checked_limit()?;
    let rows = tx
        .statement("audit_log::list", |s| {
            let mut q = s
                .table(audit_log::table)
                .select(AuditEntry::as_select())
                .into_boxed();
            if let Some(t) = &filter.table_name {
                q = q.filter(audit_log::table_name.eq(t.clone()));
            }
            if let Some(r) = filter.row_id {
                q = q.filter(audit_log::row_id.eq(r));
            }
            if let Some(a) = &filter.action {
                q = q.filter(audit_log::action.eq(a.clone()));
            }
            keyset_before!(q, audit_log, page.after).limit(limit + 1)
        })
        .load()
        .await?;
    Ok(Page::from_rows(rows, limit, AuditEntry::cursor))
}

/// The history of one row, oldest first (by time, transaction, then INSERT < UPDATE < DELETE).
pub async fn history(
    tx: &mut TenantTx,
    table_name: &str,
    row_id: Uuid,
) -> Result<Vec<AuditEntry>, RepoError> {
    tx.statement("audit_log::history", |s| {
        s.table(audit_log::table)
            .filter(audit_log::table_name.eq(table_name))
            .filter(audit_log::row_id.eq(row_id))
            .order((audit_log::created_at.asc(), audit_log::txid.asc()))
            .then_order_by(diesel::dsl::sql::<diesel::sql_types::Integer>(
                "CASE action WHEN 'INSERT' THEN 0 WHEN 'UPDATE' THEN 1 ELSE 2 END",
            ))
            .select(AuditEntry::as_select())
    })
    .load()
    .await
}
