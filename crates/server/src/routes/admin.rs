//! Administrative routes (scope `admin`): loading and unloading models of
//! the warm pool. Each load and unload is audited with the key's name as
//! the actor (`model.loaded`, `model.load_failed`, `model.unloaded`).
//! The audit log itself is read in `routes::audit`.
//!
//! A load is started and answered at once (202); watch `GET /v1/models/{name}`
//! for `ready` or `failed`. An unload is refused with 409 `model_in_use`
//! while a running batch holds the model, rather than waiting: unloading it
//! then would free no memory, and an operator's request should not hang on
//! someone else's batch. Retry once the batch is done.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;

use crate::auth::{Principal, Scope};
use crate::error::ApiError;
use crate::extract::PathId;
use crate::routes::models::{ModelObject, model_object};
use crate::state::AppState;

/// 403 unless the principal has the `admin` scope.
pub(crate) fn require_admin(principal: &Principal) -> Result<(), ApiError> {
    if principal.allows(Scope::Admin) {
        Ok(())
    } else {
        Err(crate::extract::missing_scope(principal, Scope::Admin))
    }
}

/// Starts loading a model in the background (also retries a failed one).
#[utoipa::path(
    post,
    path = "/v1/admin/models/{name}/load",
    tag = "admin",
    params(("name" = String, Path, description = "The model's name")),
    responses(
        (status = 202, description = "Loading (or already ready)", body = ModelObject),
        (status = 403, description = "`missing_scope`: the key lacks the admin scope", body = crate::error::ErrorBody),
        (status = 404, description = "`model_not_found`", body = crate::error::ErrorBody),
    )
)]
pub async fn load_model(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathId(name): PathId,
) -> Result<(StatusCode, Json<ModelObject>), ApiError> {
    require_admin(&principal)?;
    let models = &state.models;
    models.load_as(&name, Some(principal.name()))?;
    tracing::info!(model = %name, by = principal.name(), "admin: model load requested");
    let status = models.status(&name)?;
    Ok((StatusCode::ACCEPTED, Json(model_object(&status))))
}

/// Unloads a model now, freeing its memory.
#[utoipa::path(
    post,
    path = "/v1/admin/models/{name}/unload",
    tag = "admin",
    params(("name" = String, Path, description = "The model's name")),
    responses(
        (status = 200, description = "Unloaded", body = ModelObject),
        (status = 403, description = "`missing_scope`: the key lacks the admin scope", body = crate::error::ErrorBody),
        (status = 404, description = "`model_not_found`", body = crate::error::ErrorBody),
        (status = 409, description = "`model_in_use` (a running batch holds it) or `model_loading`", body = crate::error::ErrorBody),
    )
)]
pub async fn unload_model(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathId(name): PathId,
) -> Result<Json<ModelObject>, ApiError> {
    require_admin(&principal)?;
    let models = &state.models;
    models.unload_as(&name, Some(principal.name()))?;
    tracing::info!(model = %name, by = principal.name(), "admin: model unloaded");
    let status = models.status(&name)?;
    Ok(Json(model_object(&status)))
}
