//! `GET /v1/me`: who the caller is, as this server sees it: whether a key
//! was needed, the project it acts in and the scopes it holds. The web UI
//! reads it to show only what the key can do; scripts use it to check a
//! key before a long job.

use axum::Json;
use axum::extract::Extension;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Principal, Scope};

/// The caller.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Me {
    /// Always `principal`.
    pub object: String,
    /// `open` (authentication is off: loopback without keys, or
    /// `--insecure-no-auth`) or `key`.
    pub auth: String,
    /// The project the caller acts in (what it creates belongs there).
    pub project: String,
    /// The key's id (`key_…`) for a database key; null for a config-file
    /// key and with authentication off.
    pub key_id: Option<String>,
    /// The key's name; null with authentication off.
    pub key_name: Option<String>,
    /// Every scope the caller holds, implied ones included (`admin`
    /// implies all): `generate`, `read`, `review`, `admin`.
    pub scopes: Vec<String>,
    /// Whether the caller sees every project's data (admin keys, and open
    /// servers).
    pub sees_all_projects: bool,
}

/// The caller's identity and scopes.
#[utoipa::path(
    get,
    path = "/v1/me",
    tag = "auth",
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = 401, description = "Missing or invalid API key", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get_me(Extension(principal): Extension<Principal>) -> Json<Me> {
    let (auth, key_id, key_name) = match &principal {
        Principal::Anonymous => ("open", None, None),
        Principal::Key(k) => ("key", k.id.clone(), Some(k.name.clone())),
    };
    Json(Me {
        object: "principal".into(),
        auth: auth.into(),
        project: principal.project().to_string(),
        key_id,
        key_name,
        scopes: Scope::ALL
            .into_iter()
            .filter(|s| principal.allows(*s))
            .map(|s| s.as_str().to_string())
            .collect(),
        sees_all_projects: principal.sees_all(),
    })
}
