//! `GET /v1/admin/audit` (scope `admin`): the append-only audit log, oldest
//! first, filtered by time and event type and paged by event id.
//!
//! Paging is by id rather than by an opaque cursor: ids only grow, so
//! "after id N" is stable while new events are appended, and an operator
//! can resume an export from the last id they stored.

use axum::Json;
use axum::extract::{Extension, State};
use chrono::{DateTime, SecondsFormat, Utc};
use easel_store::{AuditEvent, AuditQuery, MAX_AUDIT_PAGE};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::routes::admin::require_admin;
use crate::state::AppState;

/// Page size when `limit` is not given.
const DEFAULT_LIMIT: i64 = 100;

/// Longest accepted `type` filter.
const MAX_TYPE_LEN: usize = 64;

/// Query of `GET /v1/admin/audit`. Every value is read as text and parsed
/// here, so a bad one is a 400 that names its parameter.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
pub struct AuditListQuery {
    /// Events at or after this time, RFC 3339 (e.g. `2026-11-26T14:00:00Z`);
    /// default: the beginning.
    pub from: Option<String>,
    /// Events strictly before this time, RFC 3339; default: no end.
    pub until: Option<String>,
    /// Only this event type, e.g. `job.created`, `model.loaded`,
    /// `config.loaded`; default: all.
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// Only events with a larger id: `next_after` of the previous page;
    /// default: from the first.
    pub after: Option<String>,
    /// Page size, 1 to 1000; default 100.
    pub limit: Option<String>,
    /// Only this project's events; default: every project's and the
    /// service's own.
    pub project: Option<String>,
}

/// One audit event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEventDto {
    /// Sequence number, increasing in append order.
    pub id: i64,
    /// When it was appended, RFC 3339 UTC with milliseconds.
    pub at: String,
    /// Dotted event type: `config.loaded`, `job.created`, `job.cancelled`,
    /// `model.loaded`, `model.load_failed`, `model.unloaded`,
    /// `worker.drain_requested`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Who did it: an API key's name; null for the server itself.
    pub actor: Option<String>,
    /// What it was done to: a job id, a model name, a worker id; null when
    /// none.
    pub subject: Option<String>,
    /// Event-specific details (JSON).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    /// The project it belongs to; null for the service itself.
    pub project: Option<String>,
}

impl From<AuditEvent> for AuditEventDto {
    fn from(e: AuditEvent) -> Self {
        Self {
            id: e.id,
            at: e.at.to_rfc3339_opts(SecondsFormat::Millis, true),
            event_type: e.event_type,
            actor: e.actor,
            subject: e.subject,
            detail: e.detail,
            project: e.project.map(|p| p.to_string()),
        }
    }
}

/// A page of audit events.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditList {
    /// Always `list`.
    pub object: String,
    /// The events, oldest first.
    pub data: Vec<AuditEventDto>,
    /// Whether more events match after this page.
    pub has_more: bool,
    /// Pass as `after` for the next page; null on the last page.
    pub next_after: Option<i64>,
}

/// Audit events, oldest first, one page at a time.
#[utoipa::path(
    get,
    path = "/v1/admin/audit",
    tag = "admin",
    params(AuditListQuery),
    responses(
        (status = 200, description = "A page of events", body = AuditList),
        (status = 400, description = "`invalid_from`, `invalid_until`, `invalid_time_range`, `invalid_type`, `invalid_after` or `invalid_limit`", body = crate::error::ErrorBody),
        (status = 403, description = "`missing_scope`: the key lacks the admin scope", body = crate::error::ErrorBody),
    )
)]
pub async fn list_audit(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiQuery(raw): ApiQuery<AuditListQuery>,
) -> Result<Json<AuditList>, ApiError> {
    require_admin(&principal)?;
    let query = parse_query(&raw)?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    let db = state.jobs.db();
    let events = db
        .list_audit(&query)
        .await
        .map_err(|e| ApiError::store("reading the audit log", e))?;
    // A full page may be the last one: look one event further.
    let next_after = match events.last() {
        Some(last) if events.len() as i64 == limit => {
            let probe = AuditQuery {
                after_id: Some(last.id),
                limit: Some(1),
                ..query.clone()
            };
            let more = db
                .list_audit(&probe)
                .await
                .map_err(|e| ApiError::store("reading the audit log", e))?;
            (!more.is_empty()).then_some(last.id)
        }
        _ => None,
    };
    Ok(Json(AuditList {
        object: "list".into(),
        data: events.into_iter().map(AuditEventDto::from).collect(),
        has_more: next_after.is_some(),
        next_after,
    }))
}

/// The store query for the raw parameters; empty values count as absent.
fn parse_query(raw: &AuditListQuery) -> Result<AuditQuery, ApiError> {
    let from = present(&raw.from)
        .map(|s| parse_time(s, "from", "invalid_from"))
        .transpose()?;
    let until = present(&raw.until)
        .map(|s| parse_time(s, "until", "invalid_until"))
        .transpose()?;
    if let (Some(from), Some(until)) = (from, until)
        && from > until
    {
        return Err(ApiError::invalid(
            "invalid_time_range",
            "until",
            format!(
                "until ({}) is before from ({})",
                until.to_rfc3339(),
                from.to_rfc3339()
            ),
        ));
    }
    let event_type = present(&raw.event_type)
        .map(|t| {
            let ok = t.len() <= MAX_TYPE_LEN
                && t.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._".contains(&b));
            if ok {
                Ok(t.to_string())
            } else {
                Err(ApiError::invalid(
                    "invalid_type",
                    "type",
                    format!(
                        "type must be an event type of at most {MAX_TYPE_LEN} characters \
                         (lowercase letters, digits, `.` and `_`, e.g. `job.created`), got `{}`",
                        clip(t)
                    ),
                ))
            }
        })
        .transpose()?;
    let after_id = present(&raw.after)
        .map(|s| match s.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(n),
            _ => Err(ApiError::invalid(
                "invalid_after",
                "after",
                format!(
                    "after must be an event id (a whole number, 0 or more) such as a previous \
                     page's next_after, got `{}`",
                    clip(s)
                ),
            )),
        })
        .transpose()?;
    let limit = present(&raw.limit)
        .map(|s| match s.parse::<i64>() {
            Ok(n) if (1..=MAX_AUDIT_PAGE).contains(&n) => Ok(n),
            _ => Err(ApiError::invalid(
                "invalid_limit",
                "limit",
                format!(
                    "limit must be between 1 and {MAX_AUDIT_PAGE}, got `{}`",
                    clip(s)
                ),
            )),
        })
        .transpose()?;
    let project = present(&raw.project)
        .map(|p| p.parse::<easel_core::ProjectId>())
        .transpose()?;
    Ok(AuditQuery {
        from,
        until,
        event_type,
        after_id,
        limit: Some(limit.unwrap_or(DEFAULT_LIMIT)),
        project,
    })
}

fn parse_time(
    text: &str,
    param: &'static str,
    code: &'static str,
) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            ApiError::invalid(
                code,
                param,
                format!(
                    "{param} must be an RFC 3339 time such as 2026-11-26T14:00:00Z, got `{}`: {e}",
                    clip(text)
                ),
            )
        })
}

/// A parameter's value, trimmed; empty counts as absent.
fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// At most 40 characters of a rejected value, for the message.
fn clip(text: &str) -> String {
    text.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> AuditListQuery {
        let mut q = AuditListQuery::default();
        for (k, v) in pairs {
            let v = Some(v.to_string());
            match *k {
                "from" => q.from = v,
                "until" => q.until = v,
                "type" => q.event_type = v,
                "after" => q.after = v,
                "limit" => q.limit = v,
                _ => unreachable!(),
            }
        }
        q
    }

    #[test]
    fn each_bad_parameter_is_named_with_its_own_code() {
        for (pairs, code, param) in [
            (vec![("from", "yesterday")], "invalid_from", "from"),
            (
                vec![("until", "2026-13-01T00:00:00Z")],
                "invalid_until",
                "until",
            ),
            (
                vec![
                    ("from", "2026-11-27T00:00:00Z"),
                    ("until", "2026-11-26T00:00:00Z"),
                ],
                "invalid_time_range",
                "until",
            ),
            (vec![("type", "Job Created")], "invalid_type", "type"),
            (vec![("after", "-1")], "invalid_after", "after"),
            (vec![("after", "abc")], "invalid_after", "after"),
            (vec![("limit", "0")], "invalid_limit", "limit"),
            (vec![("limit", "1001")], "invalid_limit", "limit"),
        ] {
            let e = parse_query(&query(&pairs)).unwrap_err();
            assert_eq!((e.code, e.param), (code, Some(param)), "{pairs:?}");
        }
    }

    #[test]
    fn good_parameters_become_the_store_query() {
        let q = parse_query(&query(&[
            ("from", "2026-11-26T15:00:00+01:00"),
            ("type", "model.loaded"),
            ("after", "7"),
            ("limit", "1000"),
            ("until", ""),
        ]))
        .unwrap();
        assert_eq!(q.from.unwrap().to_rfc3339(), "2026-11-26T14:00:00+00:00");
        assert_eq!(q.until, None);
        assert_eq!(q.event_type.as_deref(), Some("model.loaded"));
        assert_eq!((q.after_id, q.limit), (Some(7), Some(1000)));
        assert_eq!(parse_query(&query(&[])).unwrap().limit, Some(100));
    }
}
