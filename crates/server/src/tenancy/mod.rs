//! Tenancy at the edge: who a request is (its key, its project), what it
//! may do (scopes), and how much (rate limits, concurrency and caps).
//!
//! - `authenticate`: config-file keys first (constant-time), then database
//!   keys by the hash of the presented secret.
//! - [`rate`]: the request-rate middleware, the image admission of a
//!   generation, and OpenAI's `x-ratelimit-*` headers.
//! - [`keys`]: making keys (secret, hash, prefix) for the admin routes and
//!   the CLI.

pub mod keys;
pub mod quota;
pub mod rate;

use axum::http::HeaderMap;
use easel_config::keys::KeyHash;
use easel_core::Limits;

use crate::auth::{KeyHolder, Principal};
use crate::error::{ApiError, ErrorKind};
use crate::extract::bearer_token;
use crate::state::AppState;

fn invalid_key() -> ApiError {
    ApiError::new(
        ErrorKind::Unauthenticated,
        "invalid_api_key",
        "the API key is not valid (unknown, revoked or expired)",
    )
}

/// Who made the request.
///
/// With no key presented: [`Principal::Anonymous`] when no key exists
/// anywhere (neither in the config nor in the database), else 401
/// `missing_api_key`. A presented key must be a config key or an active
/// database key (401 `invalid_api_key` otherwise; unknown, revoked and
/// expired keys are answered alike). A database key's `last_used_at` is
/// stamped (to the minute).
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let db = state.jobs.db();
    let Some(token) = bearer_token(headers) else {
        return if keys_exist(state).await? {
            Err(ApiError::new(
                ErrorKind::Unauthenticated,
                "missing_api_key",
                "an API key is required: send `Authorization: Bearer <key>`",
            ))
        } else {
            Ok(Principal::Anonymous)
        };
    };
    let defaults = &state.config.tenancy.default_limits;
    if let Some(key) = state.keys.authenticate(&token) {
        let project = db
            .project(&key.project)
            .await
            .map_err(|e| ApiError::store("reading the key's project", e))?;
        return Ok(Principal::Key(Box::new(KeyHolder {
            id: None,
            name: key.name,
            project: key.project,
            scopes: key.scopes,
            limits: Limits::default(),
            project_limits: project.limits.or(defaults),
            billable: project.billable,
        })));
    }
    let hash = KeyHash::blake3_of(&token).to_string();
    let found = db
        .api_key_by_hash(&hash)
        .await
        .map_err(|e| ApiError::store("looking up an API key", e))?;
    match found {
        Some(found) if found.key.is_active(db.now()) => {
            let key = found.key;
            if let Err(e) = db.touch_api_key(&key.id).await {
                tracing::warn!(error = %e, key = %key.id, "could not record the key's last use");
            }
            let scopes = key.scopes.iter().filter_map(|s| s.parse().ok()).collect();
            Ok(Principal::Key(Box::new(KeyHolder {
                id: Some(key.id),
                name: key.name,
                project: key.project,
                scopes,
                limits: key.limits,
                project_limits: found.project.limits.or(defaults),
                billable: found.project.billable,
            })))
        }
        Some(_) => Err(invalid_key()),
        // A token when no key exists anywhere: authentication is off.
        None if !keys_exist(state).await? => Ok(Principal::Anonymous),
        None => Err(invalid_key()),
    }
}

/// Whether requests must present a key: config keys, or an active key in
/// the database.
pub async fn keys_exist(state: &AppState) -> Result<bool, ApiError> {
    if state.keys.required() {
        return Ok(true);
    }
    state
        .jobs
        .db()
        .any_active_api_key()
        .await
        .map_err(|e| ApiError::store("checking for API keys", e))
}
