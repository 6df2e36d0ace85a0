//! The append-only audit log.

use super::{Db, dispatch};
use crate::error::{Result, StoreError};
use crate::records::audit::{AuditEvent, AuditQuery, NewAuditEvent};
use crate::rows;

/// The most events one [`Db::list_audit`] call returns.
pub const MAX_AUDIT_PAGE: i64 = 1000;

impl Db {
    /// Appends an event, stamped with the current time. Audit rows can never
    /// be changed or deleted: triggers in the schema refuse it.
    pub async fn append_audit(&self, event: NewAuditEvent) -> Result<AuditEvent> {
        let detail = rows::to_json(&event.detail, "audit detail")?;
        let now = self.now_ms();
        dispatch!(self, b => b.append_audit(&event, &detail, now).await)
    }

    /// Events matching `query`, in append order. To page, pass the last
    /// event's id as `after_id`.
    pub async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>> {
        let limit = query.limit.unwrap_or(100);
        if !(1..=MAX_AUDIT_PAGE).contains(&limit) {
            return Err(StoreError::InvalidLimit {
                got: limit,
                max: MAX_AUDIT_PAGE,
            });
        }
        dispatch!(self, b => b.list_audit(query, limit).await)
    }
}
