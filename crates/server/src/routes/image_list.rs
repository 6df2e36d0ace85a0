//! `GET /v1/images`: the caller's stored images, newest first, paged, and
//! filtered by model, prompt text and creation time: the gallery's query.
//! A project's key sees its own project's images; an admin key (or an
//! open server) every project's.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use easel_store::ImageFilter;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::routes::content::ImageRecordDto;
use crate::state::AppState;

/// The longest `prompt` filter, in characters.
pub const MAX_PROMPT_FILTER: usize = 500;

/// Query of `GET /v1/images`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListImagesQuery {
    /// Only images of this model (its name).
    pub model: Option<String>,
    /// Only images whose prompt contains this text, ignoring case; at most
    /// 500 characters.
    pub prompt: Option<String>,
    /// Only images created at or after this time, Unix seconds.
    pub created_after: Option<String>,
    /// Only images created before this time, Unix seconds.
    pub created_before: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to `limits.max_page_size` (default 100); default 20.
    pub limit: Option<i64>,
}

/// One page of image records.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImageList {
    /// Always `list`.
    pub object: String,
    /// The images, newest first.
    pub data: Vec<ImageRecordDto>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
    /// Whether another page follows.
    pub has_more: bool,
}

/// The caller's images, newest first.
#[utoipa::path(
    get,
    path = "/v1/images",
    tag = "images",
    params(ListImagesQuery),
    responses(
        (status = 200, description = "One page of image records", body = ImageList),
        (status = 400, description = "A bad filter, limit or cursor", body = crate::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list_images(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<ListImagesQuery>,
) -> Result<Json<ImageList>, ApiError> {
    let limit = crate::dto::page_limit(query.limit, state.config.limits.max_page_size)?;
    let prompt = query.prompt.filter(|p| !p.is_empty());
    if let Some(p) = &prompt
        && p.chars().count() > MAX_PROMPT_FILTER
    {
        return Err(ApiError::invalid(
            "invalid_prompt_filter",
            "prompt",
            format!("the prompt filter is at most {MAX_PROMPT_FILTER} characters"),
        ));
    }
    let filter = ImageFilter {
        project: principal.listing_scope(),
        model: query.model.filter(|m| !m.is_empty()),
        prompt_contains: prompt,
        created_from_ms: unix_ms("created_after", query.created_after.as_deref())?,
        created_until_ms: unix_ms("created_before", query.created_before.as_deref())?,
    };
    let page = state
        .jobs
        .db()
        .list_images(
            &filter,
            query.cursor.as_deref().filter(|c| !c.is_empty()),
            limit,
        )
        .await
        .map_err(|e| match e {
            easel_store::StoreError::InvalidCursor => ApiError::invalid(
                "invalid_cursor",
                "cursor",
                "cursor is not one this server issued",
            ),
            other => ApiError::store("listing images", other),
        })?;
    let mut data = Vec::with_capacity(page.images.len());
    for image in &page.images {
        data.push(ImageRecordDto::from_record(&state, image, &headers).await?);
    }
    Ok(Json(ImageList {
        object: "list".into(),
        data,
        has_more: page.next_cursor.is_some(),
        next_cursor: page.next_cursor,
    }))
}

/// Unix seconds from the query as milliseconds; empty is no filter.
fn unix_ms(field: &'static str, text: Option<&str>) -> Result<Option<i64>, ApiError> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => t
            .parse::<i64>()
            .ok()
            .and_then(|s| s.checked_mul(1000))
            .map(Some)
            .ok_or_else(|| {
                let code = match field {
                    "created_after" => "invalid_created_after",
                    _ => "invalid_created_before",
                };
                ApiError::invalid(
                    code,
                    field,
                    format!("{field} must be a time in Unix seconds, got `{t:.40}`"),
                )
            }),
    }
}
