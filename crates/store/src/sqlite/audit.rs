//! The append-only audit log.

use super::{Db, rows};
use crate::error::{Result, StoreError};
use crate::records::audit::{AuditEvent, AuditQuery, NewAuditEvent};

/// The most events one [`Db::list_audit`] call returns.
pub const MAX_AUDIT_PAGE: i64 = 1000;

const LIST: &str = "SELECT * FROM audit_log \
     WHERE (?1 IS NULL OR at >= ?1) \
       AND (?2 IS NULL OR at < ?2) \
       AND (?3 IS NULL OR event_type = ?3) \
       AND (?4 IS NULL OR id > ?4) \
     ORDER BY id \
     LIMIT ?5";

impl Db {
    /// Appends an event, stamped with the current time. Audit rows can never
    /// be changed or deleted: triggers in the schema refuse it.
    pub async fn append_audit(&self, event: NewAuditEvent) -> Result<AuditEvent> {
        let row = sqlx::query(
            "INSERT INTO audit_log (at, event_type, actor, subject, detail) \
             VALUES (?1, ?2, ?3, ?4, ?5) RETURNING *",
        )
        .bind(self.now_ms())
        .bind(&event.event_type)
        .bind(&event.actor)
        .bind(&event.subject)
        .bind(rows::to_json(&event.detail, "audit detail")?)
        .fetch_one(&self.writer)
        .await?;
        rows::audit(&row)
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
        let found = sqlx::query(LIST)
            .bind(query.from.map(rows::ms))
            .bind(query.until.map(rows::ms))
            .bind(&query.event_type)
            .bind(query.after_id)
            .bind(limit)
            .fetch_all(&self.reader)
            .await?;
        found.iter().map(rows::audit).collect()
    }
}
