//! API keys (scope `admin`): create, list, read, revoke and rotate. A
//! key's secret is in the answer that creates it and nowhere else; the
//! database keeps its hash. Every change is audited under the key's
//! project.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use easel_core::{Limits, ProjectId};
use easel_store::{ApiKeyRecord, NewAuditEvent, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, PathId};
use crate::routes::admin::require_admin;
use crate::routes::tenancy::{audit, store_error, time_of};
use crate::state::AppState;
use crate::tenancy::keys::KeySpec;

/// Longest grace period of a rotation: a week.
pub const MAX_GRACE_SECONDS: u64 = 7 * 24 * 3600;

/// A key, never with its secret except in the answer that creates it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyObject {
    /// `key_…`.
    pub id: String,
    /// Always `api_key`.
    pub object: String,
    /// The secret, only in the answer that created the key; store it now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The project it acts in.
    pub project: String,
    /// Its name.
    pub name: String,
    /// The secret's first characters.
    pub prefix: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// Its own limits.
    #[schema(value_type = Object)]
    pub limits: Limits,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; null: never.
    pub expires_at: Option<i64>,
    /// Unix seconds; null: not revoked.
    pub revoked_at: Option<i64>,
    /// Unix seconds, to the minute; null: never used.
    pub last_used_at: Option<i64>,
    /// `active`, `expired` or `revoked`.
    pub status: String,
}

fn key_object(k: ApiKeyRecord, secret: Option<String>, now: DateTime<Utc>) -> KeyObject {
    let status = if k.revoked_at.is_some() {
        "revoked"
    } else if k.is_active(now) {
        "active"
    } else {
        "expired"
    };
    KeyObject {
        id: k.id,
        object: "api_key".into(),
        key: secret,
        project: k.project.to_string(),
        name: k.name,
        prefix: k.prefix,
        scopes: k.scopes,
        limits: k.limits,
        created_at: k.created_at.timestamp(),
        expires_at: k.expires_at.map(|t| t.timestamp()),
        revoked_at: k.revoked_at.map(|t| t.timestamp()),
        last_used_at: k.last_used_at.map(|t| t.timestamp()),
        status: status.into(),
    }
}

/// A list of keys.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    /// Always `list`.
    pub object: String,
    /// The keys, newest first.
    pub data: Vec<KeyObject>,
}

/// The body of `POST /v1/admin/keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// The project it acts in (must exist).
    pub project: String,
    /// A name for people (1 to 64 characters).
    pub name: String,
    /// At least one of `generate`, `read`, `review`, `admin`.
    pub scopes: Vec<String>,
    /// The key's own limits; default none.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub limits: Limits,
    /// Unix seconds when it stops working; default never.
    pub expires_at: Option<i64>,
}

/// The body of `POST /v1/admin/keys/{id}/rotate`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// Seconds the old key keeps working, 0 to 604800; default 0.
    #[serde(default)]
    pub grace_seconds: u64,
}

/// `?project=` of `GET /v1/admin/keys`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct KeyListQuery {
    /// Only this project's keys.
    pub project: Option<String>,
}

/// Creates a key; the answer holds its secret, once.
#[utoipa::path(post, path = "/v1/admin/keys", tag = "admin", request_body = CreateKey,
    responses((status = 201, description = "The key, with its secret in `key`", body = KeyObject),
        (status = 400, description = "`invalid_project`, `reserved_project`, `invalid_name`, `invalid_scopes`, `invalid_limit`, `invalid_expiry`", body = crate::error::ErrorBody),
        (status = 404, description = "`project_not_found`", body = crate::error::ErrorBody)))]
pub async fn create_key(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<CreateKey>,
) -> Result<(StatusCode, Json<KeyObject>), ApiError> {
    require_admin(&principal)?;
    let db = state.jobs.db();
    let spec = KeySpec::validate(
        &body.project,
        &body.name,
        &body.scopes,
        body.limits,
        time_of(body.expires_at, "expires_at")?,
        db.now(),
    )?;
    let (secret, new) = spec.mint();
    let record = db
        .insert_api_key(&new)
        .await
        .map_err(|e| store_error("creating a key", e))?;
    audit(
        &state,
        &principal,
        NewAuditEvent::new("key.created")
            .subject(&record.id)
            .project(&record.project)
            .detail(serde_json::json!({ "name": record.name, "scopes": record.scopes, "prefix": record.prefix })),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(key_object(record, Some(secret), db.now())),
    ))
}

/// Lists keys (never their secrets).
#[utoipa::path(get, path = "/v1/admin/keys", tag = "admin", params(KeyListQuery), responses((status = 200, body = KeyList)))]
pub async fn list_keys(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiQuery(query): ApiQuery<KeyListQuery>,
) -> Result<Json<KeyList>, ApiError> {
    require_admin(&principal)?;
    let project = match query.project.as_deref() {
        None | Some("") => None,
        Some(p) => Some(p.parse::<ProjectId>()?),
    };
    let db = state.jobs.db();
    let keys = db
        .api_keys(project.as_ref())
        .await
        .map_err(|e| store_error("listing keys", e))?;
    let now = db.now();
    Ok(Json(KeyList {
        object: "list".into(),
        data: keys.into_iter().map(|k| key_object(k, None, now)).collect(),
    }))
}

/// One key (never its secret).
#[utoipa::path(get, path = "/v1/admin/keys/{id}", tag = "admin", params(("id" = String, Path)),
    responses((status = 200, body = KeyObject), (status = 404, description = "`api_key_not_found`", body = crate::error::ErrorBody)))]
pub async fn get_key(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathId(id): PathId,
) -> Result<Json<KeyObject>, ApiError> {
    require_admin(&principal)?;
    let db = state.jobs.db();
    let key = db
        .api_key(&id)
        .await
        .map_err(|e| store_error("reading a key", e))?;
    Ok(Json(key_object(key, None, db.now())))
}

/// Revokes a key: it stops working at once, on every replica.
#[utoipa::path(delete, path = "/v1/admin/keys/{id}", tag = "admin", params(("id" = String, Path)),
    responses((status = 200, description = "The revoked key", body = KeyObject), (status = 404, description = "`api_key_not_found`", body = crate::error::ErrorBody)))]
pub async fn revoke_key(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathId(id): PathId,
) -> Result<Json<KeyObject>, ApiError> {
    require_admin(&principal)?;
    let db = state.jobs.db();
    let key = db
        .revoke_api_key(&id)
        .await
        .map_err(|e| store_error("revoking a key", e))?;
    audit(
        &state,
        &principal,
        NewAuditEvent::new("key.revoked")
            .subject(&key.id)
            .project(&key.project)
            .detail(serde_json::json!({ "name": key.name, "prefix": key.prefix })),
    )
    .await?;
    tracing::warn!(key = %key.id, project = %key.project, by = principal.name(), "admin: key revoked");
    Ok(Json(key_object(key, None, db.now())))
}

/// Replaces a key by a new one with the same project, name, scopes, limits
/// and expiry; the old one stops after `grace_seconds`.
#[utoipa::path(post, path = "/v1/admin/keys/{id}/rotate", tag = "admin", params(("id" = String, Path)), request_body = RotateKey,
    responses((status = 201, description = "The new key, with its secret in `key`", body = KeyObject),
        (status = 400, description = "`invalid_grace`", body = crate::error::ErrorBody),
        (status = 404, description = "`api_key_not_found` (unknown or revoked)", body = crate::error::ErrorBody)))]
pub async fn rotate_key(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathId(id): PathId,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<KeyObject>), ApiError> {
    require_admin(&principal)?;
    // The body is optional: none means no grace period.
    let body: RotateKey = if body.iter().all(u8::is_ascii_whitespace) {
        RotateKey::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::invalid(
                "invalid_json",
                "body",
                format!("the body is not a valid rotation: {e}"),
            )
        })?
    };
    if body.grace_seconds > MAX_GRACE_SECONDS {
        return Err(ApiError::invalid(
            "invalid_grace",
            "grace_seconds",
            format!("grace_seconds must be from 0 to {MAX_GRACE_SECONDS}"),
        ));
    }
    let db = state.jobs.db();
    let old = db
        .api_key(&id)
        .await
        .map_err(|e| store_error("reading a key", e))?;
    if !old.is_active(db.now()) {
        return Err(store_error(
            "rotating a key",
            StoreError::ApiKeyNotFound(id),
        ));
    }
    let spec = KeySpec::successor(&old);
    let (secret, new) = spec.mint();
    let until = db.now() + chrono::Duration::seconds(body.grace_seconds as i64);
    let record = db
        .rotate_api_key(&old.id, &new, until)
        .await
        .map_err(|e| store_error("rotating a key", e))?;
    audit(
        &state,
        &principal,
        NewAuditEvent::new("key.rotated")
            .subject(&record.id)
            .project(&record.project)
            .detail(serde_json::json!({ "replaces": old.id, "old_until": until.timestamp(), "prefix": record.prefix })),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(key_object(record, Some(secret), db.now())),
    ))
}
