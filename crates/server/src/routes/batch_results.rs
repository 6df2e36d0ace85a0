//! A batch's results beyond OpenAI's output and error files: the
//! manifest (JSONL or CSV) and the zip export of its images with the
//! manifest (docs/batches.md, "Results").

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::Principal;
use crate::batches::{export, manifest};
use crate::error::ApiError;
use crate::extract::{ApiQuery, PathId};
use crate::routes::batches::visible_batch;
use crate::state::AppState;

/// `GET /v1/batches/{id}/manifest` query.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ManifestQuery {
    /// `jsonl` (the default) or `csv`.
    pub format: Option<String>,
}

fn attachment(response: &mut Response, content_type: &'static str, name: String) {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
}

/// A batch's manifest: an entry per image (and per line that made none),
/// in line order, streamed.
#[utoipa::path(
    get,
    path = "/v1/batches/{id}/manifest",
    tag = "batches",
    params(("id" = String, Path, description = "Batch id, `batch_…`"), ManifestQuery),
    responses(
        (status = 200, description = "The manifest", content_type = "application/jsonl"),
        (status = 400, description = "An unknown format", body = crate::error::ErrorBody),
        (status = 404, description = "No such batch", body = crate::error::ErrorBody),
    )
)]
pub async fn get_manifest(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    PathId(id): PathId,
    ApiQuery(query): ApiQuery<ManifestQuery>,
) -> Result<Response, ApiError> {
    let format = match query.format.as_deref() {
        None | Some("jsonl") => manifest::Format::Jsonl,
        Some("csv") => manifest::Format::Csv,
        Some(other) => {
            return Err(ApiError::invalid(
                "invalid_format",
                "format",
                format!(
                    "format is `{}`; use `jsonl` or `csv`",
                    other.chars().take(32).collect::<String>()
                ),
            ));
        }
    };
    let batch = visible_batch(&state, &principal, &id).await?;
    let ext = match format {
        manifest::Format::Jsonl => "jsonl",
        manifest::Format::Csv => "csv",
    };
    let name = format!("{}_manifest.{ext}", batch.id);
    let mut response =
        Body::from_stream(manifest::stream(state, headers, batch, format)).into_response();
    attachment(&mut response, format.content_type(), name);
    Ok(response)
}

/// A zip of the batch's images (`images/…`) with `manifest.csv` and
/// `manifest.jsonl`, streamed as it is written.
#[utoipa::path(
    get,
    path = "/v1/batches/{id}/export",
    tag = "batches",
    params(("id" = String, Path, description = "Batch id, `batch_…`")),
    responses(
        (status = 200, description = "The zip", content_type = "application/zip"),
        (status = 404, description = "No such batch", body = crate::error::ErrorBody),
    )
)]
pub async fn get_export(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let batch = visible_batch(&state, &principal, &id).await?;
    let name = format!("{}.zip", batch.id);
    let mut response = Body::from_stream(export::stream(state, headers, batch)).into_response();
    attachment(&mut response, "application/zip", name);
    Ok(response)
}
