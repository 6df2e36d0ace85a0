//! What the admin routes of projects (`routes::projects`) and keys
//! (`routes::keys`) share: the store's tenancy errors as HTTP, the audit
//! entry of a change, and Unix-second times.

use chrono::{DateTime, Utc};
use easel_store::{NewAuditEvent, StoreError};

use crate::auth::Principal;
use crate::error::{ApiError, ErrorKind};
use crate::state::AppState;

pub(crate) fn store_error(context: &str, e: StoreError) -> ApiError {
    match e {
        StoreError::ProjectNotFound(id) => ApiError::new(
            ErrorKind::NotFound,
            "project_not_found",
            format!("project `{id}` does not exist; create it with POST /v1/admin/projects"),
        )
        .with_param("project"),
        StoreError::ProjectExists(id) => ApiError::new(
            ErrorKind::Conflict,
            "project_exists",
            format!("project `{id}` already exists"),
        )
        .with_param("id"),
        StoreError::ApiKeyNotFound(id) => ApiError::new(
            ErrorKind::NotFound,
            "api_key_not_found",
            format!(
                "API key `{}` does not exist",
                id.chars().take(80).collect::<String>()
            ),
        ),
        other => ApiError::store(context, other),
    }
}

pub(crate) async fn audit(
    state: &AppState,
    principal: &Principal,
    event: NewAuditEvent,
) -> Result<(), ApiError> {
    state
        .jobs
        .db()
        .append_audit(event.actor(principal.name().to_string()))
        .await
        .map(|_| ())
        .map_err(|e| ApiError::store("appending to the audit log", e))
}

pub(crate) fn time_of(
    seconds: Option<i64>,
    field: &'static str,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    seconds
        .map(|s| {
            DateTime::from_timestamp(s, 0).ok_or_else(|| {
                ApiError::invalid(
                    "invalid_expiry",
                    field,
                    format!("{field} must be Unix seconds"),
                )
            })
        })
        .transpose()
}
