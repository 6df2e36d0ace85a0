//! The append-only audit log on SQLite.

use super::SqliteDb;
use crate::error::Result;
use crate::records::audit::{AuditEvent, AuditQuery, NewAuditEvent};
use crate::rows;

const LIST: &str = "SELECT * FROM audit_log \
     WHERE (?1 IS NULL OR at >= ?1) \
       AND (?2 IS NULL OR at < ?2) \
       AND (?3 IS NULL OR event_type = ?3) \
       AND (?4 IS NULL OR id > ?4) \
       AND (?6 IS NULL OR project_id = ?6) \
     ORDER BY id \
     LIMIT ?5";

impl SqliteDb {
    /// Appends `event` with its `detail` already encoded as JSON.
    pub(crate) async fn append_audit(
        &self,
        event: &NewAuditEvent,
        detail: &str,
        now: i64,
    ) -> Result<AuditEvent> {
        let row = sqlx::query(
            "INSERT INTO audit_log (at, event_type, actor, subject, detail, project_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING *",
        )
        .bind(now)
        .bind(&event.event_type)
        .bind(&event.actor)
        .bind(&event.subject)
        .bind(detail)
        .bind(event.project.as_ref().map(|p| p.as_str()))
        .fetch_one(&self.writer)
        .await?;
        rows::audit(&row)
    }

    /// Up to `limit` events matching `query`, in id order.
    pub(crate) async fn list_audit(
        &self,
        query: &AuditQuery,
        limit: i64,
    ) -> Result<Vec<AuditEvent>> {
        let found = sqlx::query(LIST)
            .bind(query.from.map(rows::ms))
            .bind(query.until.map(rows::ms))
            .bind(&query.event_type)
            .bind(query.after_id)
            .bind(limit)
            .bind(query.project.as_ref().map(|p| p.as_str()))
            .fetch_all(&self.reader)
            .await?;
        found.iter().map(rows::audit).collect()
    }
}
