//! Projects (scope `admin`): create, list, read and change (limits,
//! billable flag, retention). Every change is audited under its project.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use easel_core::{Limits, ProjectId};
use easel_store::{NewAuditEvent, NewProject, Project, ProjectChange, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{ApiJson, PathId};
use crate::routes::admin::require_admin;
use crate::routes::tenancy::{audit, store_error};
use crate::state::AppState;

/// A project.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProjectObject {
    /// Its name.
    pub id: String,
    /// Always `project`.
    pub object: String,
    /// Its own limits (unset fields fall back to `tenancy.default_limits`).
    #[schema(value_type = Object)]
    pub limits: Limits,
    /// Whether it has its own `project` label on metrics.
    pub billable: bool,
    /// How long its images are kept, in seconds; null: forever.
    pub retention_seconds: Option<u64>,
    /// Unix seconds.
    pub created_at: i64,
}

impl From<Project> for ProjectObject {
    fn from(p: Project) -> Self {
        Self {
            id: p.id.to_string(),
            object: "project".into(),
            limits: p.limits,
            billable: p.billable,
            retention_seconds: p.retention_seconds,
            created_at: p.created_at.timestamp(),
        }
    }
}

/// A list of projects.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProjectList {
    /// Always `list`.
    pub object: String,
    /// The projects, by name.
    pub data: Vec<ProjectObject>,
}

/// The body of `POST /v1/admin/projects`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    /// 1 to 64 lowercase letters, digits, `-` or `_`.
    pub id: String,
    /// Rates and caps; default none.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub limits: Limits,
    /// Default false.
    #[serde(default)]
    pub billable: bool,
    /// How long its images are kept, in seconds (1 or more); default:
    /// forever.
    pub retention_seconds: Option<u64>,
}

/// The body of `PATCH /v1/admin/projects/{id}`: each field present is set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProject {
    /// Replaces the project's limits.
    #[schema(value_type = Option<Object>)]
    pub limits: Option<Limits>,
    /// Sets the billable flag.
    pub billable: Option<bool>,
    /// Sets the retention in seconds (1 or more); `null` keeps images
    /// forever; absent leaves it as it is.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>)]
    pub retention_seconds: Option<Option<u64>>,
}

/// Tells an explicit `null` (`Some(None)`) from an absent field (`None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    Option::<u64>::deserialize(d).map(Some)
}

fn check_retention(seconds: Option<u64>) -> Result<(), ApiError> {
    if seconds == Some(0) {
        return Err(ApiError::invalid(
            "invalid_retention",
            "retention_seconds",
            "retention_seconds must be 1 or more (null keeps images forever)",
        ));
    }
    Ok(())
}

/// Creates a project.
#[utoipa::path(post, path = "/v1/admin/projects", tag = "admin", request_body = CreateProject,
    responses((status = 201, body = ProjectObject), (status = 400, description = "`invalid_project`, `invalid_limit`", body = crate::error::ErrorBody),
        (status = 409, description = "`project_exists`", body = crate::error::ErrorBody)))]
pub async fn create_project(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<CreateProject>,
) -> Result<(StatusCode, Json<ProjectObject>), ApiError> {
    require_admin(&principal)?;
    let id: ProjectId = body.id.parse()?;
    body.limits.validate()?;
    check_retention(body.retention_seconds)?;
    let project = state
        .jobs
        .db()
        .create_project(&NewProject {
            id: id.clone(),
            limits: body.limits.clone(),
            billable: body.billable,
            retention_seconds: body.retention_seconds,
        })
        .await
        .map_err(|e| store_error("creating a project", e))?;
    audit(
        &state,
        &principal,
        NewAuditEvent::new("project.created")
            .subject(&id)
            .project(&id)
            .detail(serde_json::json!({
                "limits": body.limits,
                "billable": body.billable,
                "retention_seconds": body.retention_seconds,
            })),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(project.into())))
}

/// Lists the projects.
#[utoipa::path(get, path = "/v1/admin/projects", tag = "admin", responses((status = 200, body = ProjectList)))]
pub async fn list_projects(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<ProjectList>, ApiError> {
    require_admin(&principal)?;
    let projects = state
        .jobs
        .db()
        .projects()
        .await
        .map_err(|e| store_error("listing projects", e))?;
    Ok(Json(ProjectList {
        object: "list".into(),
        data: projects.into_iter().map(Into::into).collect(),
    }))
}

fn project_id(text: &str) -> Result<ProjectId, ApiError> {
    text.parse().map_err(|_| {
        store_error(
            "reading a project",
            StoreError::ProjectNotFound(text.chars().take(80).collect()),
        )
    })
}

/// One project.
#[utoipa::path(get, path = "/v1/admin/projects/{id}", tag = "admin", params(("id" = String, Path)),
    responses((status = 200, body = ProjectObject), (status = 404, description = "`project_not_found`", body = crate::error::ErrorBody)))]
pub async fn get_project(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathId(id): PathId,
) -> Result<Json<ProjectObject>, ApiError> {
    require_admin(&principal)?;
    let project = state
        .jobs
        .db()
        .project(&project_id(&id)?)
        .await
        .map_err(|e| store_error("reading a project", e))?;
    Ok(Json(project.into()))
}

/// Changes a project's limits or billable flag.
#[utoipa::path(patch, path = "/v1/admin/projects/{id}", tag = "admin", params(("id" = String, Path)), request_body = UpdateProject,
    responses((status = 200, body = ProjectObject), (status = 400, description = "`invalid_limit`", body = crate::error::ErrorBody),
        (status = 404, description = "`project_not_found`", body = crate::error::ErrorBody)))]
pub async fn update_project(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathId(id): PathId,
    ApiJson(body): ApiJson<UpdateProject>,
) -> Result<Json<ProjectObject>, ApiError> {
    require_admin(&principal)?;
    let id = project_id(&id)?;
    if let Some(limits) = &body.limits {
        limits.validate()?;
    }
    check_retention(body.retention_seconds.flatten())?;
    let change = ProjectChange {
        limits: body.limits,
        billable: body.billable,
        retention_seconds: body.retention_seconds,
    };
    let project = state
        .jobs
        .db()
        .update_project(&id, &change)
        .await
        .map_err(|e| store_error("changing a project", e))?;
    // This process's worker re-reads limits at its next turn (others
    // within their cache's few seconds).
    if let Some(worker) = &state.worker {
        worker.refresh_budgets();
    }
    audit(
        &state,
        &principal,
        NewAuditEvent::new("project.updated")
            .subject(&id)
            .project(&id)
            .detail(serde_json::json!({
                "limits": project.limits,
                "billable": project.billable,
                "retention_seconds": project.retention_seconds,
            })),
    )
    .await?;
    Ok(Json(project.into()))
}
