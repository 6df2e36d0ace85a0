//! `/v1/files`: OpenAI's Files API for batches. Uploads (`purpose=batch`)
//! are JSONL files of requests kept in the blob store; a finished batch's
//! output and error files are rendered from its items when read.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Extension, Multipart, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use easel_store::{BatchRecord, FileRecord, NewFile};

use crate::auth::Principal;
use crate::batches::output::{self, PAGE, Part};
use crate::dto::batches::{FileDeleted, FileList, FileObject, ListQuery};
use crate::error::{ApiError, ErrorKind};
use crate::extract::{ApiQuery, PathId};
use crate::routes::images::InlineImages;
use crate::state::AppState;

/// The purposes a caller may upload.
const UPLOAD_PURPOSES: &[&str] = &["batch"];

fn file_not_found(id: &str) -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        "file_not_found",
        format!(
            "file `{}` does not exist",
            id.chars().take(64).collect::<String>()
        ),
    )
}

/// A file the caller's project owns (another project's answers 404, as a
/// missing one).
pub(crate) async fn visible_file(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<FileRecord, ApiError> {
    match state.jobs.db().file(id).await {
        Ok(Some(file)) if principal.sees(&file.project) => Ok(file),
        Ok(_) => Err(file_not_found(id)),
        Err(e) => Err(ApiError::store("reading a file", e)),
    }
}

/// Uploads a batch input file.
#[utoipa::path(
    post,
    path = "/v1/files",
    tag = "batches",
    request_body(content_type = "multipart/form-data", description = "`file`: the JSONL file; `purpose`: `batch`"),
    responses(
        (status = 200, description = "The file", body = FileObject),
        (status = 400, description = "No file, an unsupported purpose (`unsupported_purpose`), a file that is not UTF-8 text (`invalid_file`) or an unknown field (`unknown_parameter`)", body = crate::error::ErrorBody),
        (status = 413, description = "Over `batches.max_file_bytes`", body = crate::error::ErrorBody),
    )
)]
pub async fn create_file(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<FileObject>, ApiError> {
    let mut multipart = multipart?;
    let (mut file, mut purpose) = (None, None);
    while let Some(field) = multipart.next_field().await? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "file" => {
                let filename = field.file_name().unwrap_or("input.jsonl").to_string();
                file = Some((filename, field.bytes().await?));
            }
            "purpose" => purpose = Some(field.text().await?),
            other => {
                return Err(ApiError::invalid(
                    "unknown_parameter",
                    "file",
                    format!(
                        "unknown field `{}`; a file upload takes `file` and `purpose`",
                        other.chars().take(64).collect::<String>()
                    ),
                ));
            }
        }
    }
    let Some((filename, bytes)) = file else {
        return Err(ApiError::invalid(
            "missing_file",
            "file",
            "the upload has no `file` field",
        ));
    };
    let purpose = purpose.unwrap_or_default();
    if !UPLOAD_PURPOSES.contains(&purpose.as_str()) {
        return Err(ApiError::invalid(
            "unsupported_purpose",
            "purpose",
            format!(
                "purpose is `{}`; this server takes `batch` files only",
                purpose.chars().take(64).collect::<String>()
            ),
        ));
    }
    if std::str::from_utf8(&bytes).is_err() {
        return Err(ApiError::invalid(
            "invalid_file",
            "file",
            "a batch file must be UTF-8 text: one JSON request per line",
        ));
    }
    let record = store_upload(&state, principal.project(), &filename, bytes).await?;
    Ok(Json(FileObject::from_record(&record)))
}

/// Keeps `bytes` as a `batch` upload of `project` named `filename`: the
/// bytes in the blob store, then the record.
pub(crate) async fn store_upload(
    state: &AppState,
    project: easel_core::ProjectId,
    filename: &str,
    bytes: Bytes,
) -> Result<FileRecord, ApiError> {
    let id = crate::batches::new_id("file_");
    let key = format!("files/{id}.jsonl");
    let size = bytes.len() as u64;
    state
        .jobs
        .blobs()
        .put(&key, bytes)
        .await
        .map_err(|e| ApiError::store("storing the file", e))?;
    state
        .jobs
        .db()
        .insert_file(&NewFile {
            id,
            project,
            purpose: "batch".into(),
            filename: filename.chars().take(255).collect(),
            bytes: size,
            object_key: Some(key),
            batch_id: None,
            expires_at: None,
        })
        .await
        .map_err(|e| ApiError::store("recording the file", e))
}

/// The caller's files, newest first.
#[utoipa::path(
    get,
    path = "/v1/files",
    tag = "batches",
    params(ListQuery),
    responses((status = 200, description = "A page of files", body = FileList))
)]
pub async fn list_files(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<FileList>, ApiError> {
    let limit = page_limit(query.limit)?;
    let project = principal.listing_scope();
    let mut files = state
        .jobs
        .db()
        .list_files(
            project.as_ref(),
            query.purpose.as_deref(),
            query.after.as_deref(),
            limit + 1,
        )
        .await
        .map_err(|e| ApiError::store("listing files", e))?;
    let has_more = files.len() > limit as usize;
    files.truncate(limit as usize);
    let data: Vec<FileObject> = files.iter().map(FileObject::from_record).collect();
    Ok(Json(FileList {
        object: "list".into(),
        first_id: data.first().map(|f| f.id.clone()),
        last_id: data.last().map(|f| f.id.clone()),
        has_more,
        data,
    }))
}

/// The page size of a list: 1 to 100, default 20.
pub(crate) fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit.unwrap_or(20) {
        n @ 1..=100 => Ok(n),
        n => Err(ApiError::invalid(
            "invalid_limit",
            "limit",
            format!("limit is {n}; it must be from 1 to 100"),
        )),
    }
}

/// One file.
#[utoipa::path(
    get,
    path = "/v1/files/{id}",
    tag = "batches",
    params(("id" = String, Path, description = "File id, `file_…`")),
    responses(
        (status = 200, description = "The file", body = FileObject),
        (status = 404, description = "No such file", body = crate::error::ErrorBody),
    )
)]
pub async fn get_file(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathId(id): PathId,
) -> Result<Json<FileObject>, ApiError> {
    let file = visible_file(&state, &principal, &id).await?;
    Ok(Json(FileObject::from_record(&file)))
}

/// Deletes a file (an upload's bytes too). Batches made from an upload
/// keep their requests; a deleted output file can no longer be read.
#[utoipa::path(
    delete,
    path = "/v1/files/{id}",
    tag = "batches",
    params(("id" = String, Path, description = "File id, `file_…`")),
    responses(
        (status = 200, description = "Deleted", body = FileDeleted),
        (status = 404, description = "No such file", body = crate::error::ErrorBody),
    )
)]
pub async fn delete_file(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathId(id): PathId,
) -> Result<Json<FileDeleted>, ApiError> {
    let file = visible_file(&state, &principal, &id).await?;
    state
        .jobs
        .db()
        .delete_file(&file.id)
        .await
        .map_err(|e| ApiError::store("deleting the file", e))?;
    if let Some(key) = &file.object_key {
        // The record is gone, so nothing names the bytes any more; a
        // failure here leaves an orphan object, not a broken file.
        if let Err(e) = state.jobs.blobs().delete(key).await {
            tracing::warn!(file = %file.id, error = %e, "the file's bytes could not be deleted");
        }
    }
    Ok(Json(FileDeleted {
        id: file.id,
        object: "file".into(),
        deleted: true,
    }))
}

/// A file's content: an upload as it was uploaded; a batch's output or
/// error file rendered from its items, streamed (`application/jsonl`).
#[utoipa::path(
    get,
    path = "/v1/files/{id}/content",
    tag = "batches",
    params(("id" = String, Path, description = "File id, `file_…`")),
    responses(
        (status = 200, description = "The file's bytes", content_type = "application/jsonl"),
        (status = 404, description = "No such file", body = crate::error::ErrorBody),
    )
)]
pub async fn get_file_content(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let file = visible_file(&state, &principal, &id).await?;
    let body = match (&file.object_key, &file.batch_id) {
        (Some(key), _) => Body::from(
            state
                .jobs
                .blobs()
                .get(key)
                .await
                .map_err(|e| ApiError::store("reading the file", e))?,
        ),
        (None, Some(batch_id)) => {
            let batch = state
                .jobs
                .db()
                .batch(batch_id)
                .await
                .map_err(|e| ApiError::store("reading the file's batch", e))?
                .ok_or_else(|| file_not_found(&id))?;
            let part = if file.purpose == Part::Errors.purpose() {
                Part::Errors
            } else {
                Part::Output
            };
            Body::from_stream(rendered(state, headers, batch, part))
        }
        (None, None) => return Err(file_not_found(&id)),
    };
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jsonl"),
    );
    Ok(response)
}

/// A batch's file, a page of items at a time.
fn rendered(
    state: AppState,
    headers: HeaderMap,
    batch: BatchRecord,
    part: Part,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures::stream::try_unfold(Some(None), move |after: Option<Option<u32>>| {
        let (state, headers, batch) = (state.clone(), headers.clone(), batch.clone());
        async move {
            let Some(after) = after else {
                return Ok(None);
            };
            let items = state
                .jobs
                .db()
                .batch_items(&batch.id, None, after, PAGE)
                .await
                .map_err(std::io::Error::other)?;
            let Some(last) = items.last().map(|i| i.line) else {
                return Ok(None);
            };
            let mut chunk = String::new();
            for item in items.iter().filter(|i| part.holds(i)) {
                let (text, _) = output::line(&state, &headers, &batch, item, InlineImages::Bytes)
                    .await
                    .map_err(|e| std::io::Error::other(e.message().to_string()))?;
                chunk.push_str(&text);
            }
            Ok(Some((Bytes::from(chunk), Some(Some(last)))))
        }
    })
}
