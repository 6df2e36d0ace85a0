//! `GET /v1/usage`: images, device seconds and cost over a time range,
//! grouped by project, key, model or day. A project's key sees its own
//! project only; an admin key sees every project (or one, with
//! `project=`).

use axum::Json;
use axum::extract::{Extension, State};
use chrono::{DateTime, Duration, Utc};
use easel_core::ProjectId;
use easel_store::{UsageGroup, UsageQuery};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::state::AppState;

/// The longest range one report covers: a year and a day.
pub const MAX_RANGE_DAYS: i64 = 366;

/// Query of `GET /v1/usage`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct UsageParams {
    /// Start, RFC 3339 or Unix seconds; default: 30 days before `until`.
    pub from: Option<String>,
    /// End (exclusive), RFC 3339 or Unix seconds; default: now.
    pub until: Option<String>,
    /// `project` (default), `key`, `model` or `day` (UTC).
    pub group_by: Option<String>,
    /// Admin keys only: one project.
    pub project: Option<String>,
}

/// One group's usage.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsageEntry {
    /// The group: a project, `project/key`, a model or a `YYYY-MM-DD` day.
    pub group: String,
    /// Images made.
    pub images: u64,
    /// Device seconds.
    pub device_seconds: f64,
    /// Cost.
    pub cost: f64,
}

/// A usage report.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsageReport {
    /// Always `usage`.
    pub object: String,
    /// Unix seconds.
    pub from: i64,
    /// Unix seconds (exclusive).
    pub until: i64,
    /// How `data` is grouped.
    pub group_by: String,
    /// One entry per group, largest cost first (days in order).
    pub data: Vec<UsageEntry>,
    /// The sums of `data`.
    pub total: UsageEntry,
}

fn parse_time(text: &str, field: &'static str) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(seconds) = text.parse::<i64>() {
        return DateTime::from_timestamp(seconds, 0).ok_or_else(|| bad_time(field, text));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| bad_time(field, text))
}

fn bad_time(field: &'static str, text: &str) -> ApiError {
    ApiError::invalid(
        "invalid_time",
        field,
        format!(
            "{field} must be RFC 3339 (2026-12-01T00:00:00Z) or Unix seconds, got `{}`",
            text.chars().take(40).collect::<String>()
        ),
    )
}

/// Usage of the caller's project (admins: every project), grouped.
#[utoipa::path(
    get,
    path = "/v1/usage",
    tag = "usage",
    params(UsageParams),
    responses(
        (status = 200, description = "The report", body = UsageReport),
        (status = 400, description = "`invalid_time`, `invalid_time_range`, `invalid_group_by`, `invalid_project`", body = crate::error::ErrorBody),
    )
)]
pub async fn get_usage(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiQuery(params): ApiQuery<UsageParams>,
) -> Result<Json<UsageReport>, ApiError> {
    let present = |v: &Option<String>| v.as_deref().filter(|s| !s.is_empty()).map(str::to_string);
    let until = match present(&params.until) {
        Some(t) => parse_time(&t, "until")?,
        None => state.jobs.db().now(),
    };
    let from = match present(&params.from) {
        Some(t) => parse_time(&t, "from")?,
        None => until - Duration::days(30),
    };
    if from >= until || until - from > Duration::days(MAX_RANGE_DAYS) {
        return Err(ApiError::invalid(
            "invalid_time_range",
            "from",
            format!("from must be before until, at most {MAX_RANGE_DAYS} days apart"),
        ));
    }
    let group: UsageGroup = present(&params.group_by)
        .unwrap_or_else(|| "project".into())
        .parse()
        .map_err(|e: String| ApiError::invalid("invalid_group_by", "group_by", e))?;
    let asked = present(&params.project)
        .map(|p| p.parse::<ProjectId>())
        .transpose()?;
    // A project's key reports its own project whatever it asks for.
    let project = match principal.listing_scope() {
        Some(own) => Some(own),
        None => asked,
    };
    let rows = state
        .jobs
        .db()
        .usage(&UsageQuery {
            from,
            until,
            project,
            group,
        })
        .await
        .map_err(|e| ApiError::store("reading usage", e))?;
    let mut total = UsageEntry {
        group: "total".into(),
        images: 0,
        device_seconds: 0.0,
        cost: 0.0,
    };
    let data = rows
        .into_iter()
        .map(|r| {
            total.images += r.images;
            total.device_seconds += r.device_seconds;
            total.cost += r.cost;
            UsageEntry {
                group: r.group,
                images: r.images,
                device_seconds: r.device_seconds,
                cost: r.cost,
            }
        })
        .collect();
    Ok(Json(UsageReport {
        object: "usage".into(),
        from: from.timestamp(),
        until: until.timestamp(),
        group_by: group.as_str().into(),
        data,
        total,
    }))
}
