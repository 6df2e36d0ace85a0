//! Audit log records.

use chrono::{DateTime, Utc};
use easel_core::ProjectId;

/// An event to append to the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEvent {
    /// Dotted event type, e.g. `job.created`, `job.cancelled`, `model.loaded`.
    pub event_type: String,
    /// Who did it (user or API key name); `None` for the system itself.
    pub actor: Option<String>,
    /// What it was done to (a job or image id, a model name).
    pub subject: Option<String>,
    /// Anything else worth keeping; default `null`.
    pub detail: serde_json::Value,
    /// The project the event belongs to; `None` for the service itself.
    pub project: Option<ProjectId>,
}

impl NewAuditEvent {
    /// An event with no actor, subject or detail.
    pub fn new(event_type: impl Into<String>) -> Self {
        Self {
            event_type: event_type.into(),
            actor: None,
            subject: None,
            detail: serde_json::Value::Null,
            project: None,
        }
    }

    /// Sets the actor.
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// Sets the subject.
    pub fn subject(mut self, subject: impl ToString) -> Self {
        self.subject = Some(subject.to_string());
        self
    }

    /// Sets the project.
    pub fn project(mut self, project: &ProjectId) -> Self {
        self.project = Some(project.clone());
        self
    }

    /// Sets the detail.
    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}

/// A stored audit event.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// Sequence number, increasing in append order.
    pub id: i64,
    /// When it was appended.
    pub at: DateTime<Utc>,
    /// Dotted event type.
    pub event_type: String,
    /// Who did it.
    pub actor: Option<String>,
    /// What it was done to.
    pub subject: Option<String>,
    /// Anything else recorded.
    pub detail: serde_json::Value,
    /// The project it belongs to; `None` for the service itself.
    pub project: Option<ProjectId>,
}

/// Which events [`Db::list_audit`](crate::Db::list_audit) returns, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditQuery {
    /// Events at or after this time; default the beginning.
    pub from: Option<DateTime<Utc>>,
    /// Events strictly before this time; default now and later.
    pub until: Option<DateTime<Utc>>,
    /// Only this event type; default all.
    pub event_type: Option<String>,
    /// Only events of this project; default all.
    pub project: Option<ProjectId>,
    /// Only events after this sequence number (for paging); default none.
    pub after_id: Option<i64>,
    /// At most this many events, 1..=1000; default 100.
    pub limit: Option<i64>,
}
