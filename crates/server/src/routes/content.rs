//! Stored images: `GET /v1/images/{id}` (the record) and
//! `GET /v1/images/{id}/content` (the bytes, by API key or signed link).

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use easel_core::{ImageId, ProjectId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Principal, Scope};
use crate::error::{ApiError, ErrorKind};
use crate::extract::{ApiQuery, PathId};
use crate::state::AppState;

fn image_not_found(id: &str) -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        "image_not_found",
        format!(
            "image `{}` does not exist",
            id.chars().take(80).collect::<String>()
        ),
    )
}

fn parse_image_id(text: &str) -> Result<ImageId, ApiError> {
    text.parse().map_err(|_| image_not_found(text))
}

/// Seconds one stage of making the image took.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StageTimingDto {
    /// `text_encode`, `denoise`, `decode` or `encode`.
    pub stage: String,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// The record of a stored image: everything needed to reproduce it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImageRecordDto {
    /// `img_…`.
    pub id: String,
    /// Always `image`.
    pub object: String,
    /// The job that made it.
    pub job_id: String,
    /// Position within the job.
    pub index: u32,
    /// Unix seconds.
    pub created_at: i64,
    /// Prompt.
    pub prompt: String,
    /// Negative prompt.
    pub negative_prompt: String,
    /// This image's seed.
    pub seed: u64,
    /// Denoising steps.
    pub steps: u32,
    /// Guidance scale.
    pub guidance_scale: f32,
    /// Sampler used.
    pub sampler: String,
    /// Sigma schedule.
    pub schedule: String,
    /// Image-to-image strength, or null.
    pub strength: Option<f32>,
    /// Model name.
    pub model: String,
    /// Model content hash, `blake3:…`.
    pub model_hash: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `png`, `jpeg` or `webp`.
    pub format: String,
    /// File size.
    pub bytes: u64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// Seconds per stage, in the order the stages ran.
    pub timings: Vec<StageTimingDto>,
    /// Non-fatal notes from the engine.
    pub warnings: Vec<String>,
    /// The invisible watermark's id (server tag + image tag, 12 hex
    /// digits), or null when watermarking is off.
    pub watermark_id: Option<String>,
    /// The generated image's 64-bit pHash (16 hex digits), or null when the
    /// near-copy check did not run.
    pub perceptual_hash: Option<String>,
    /// Image moderation and near-copy results, or null when none ran.
    #[schema(value_type = Option<Object>)]
    pub moderation: Option<serde_json::Value>,
    /// Flags raised after generation: `nsfw_flagged`, `near_copy`.
    pub flags: Vec<String>,
    /// The `x-request-id` of the request that created the image's job
    /// (the correlation id in logs and traces); null for jobs created
    /// before it was recorded.
    pub request_id: Option<String>,
    /// The end-user id its job's request named (OpenAI's `user`), with API
    /// keys on or off; null without one.
    pub end_user: Option<String>,
    /// How well the image shows its prompt: the cosine of the quality
    /// scorer's image and prompt embeddings, in [-1, 1] (higher is better;
    /// compare scores of one scorer only), or null when not scored.
    pub quality_score: Option<f32>,
    /// The project that owns it.
    pub project: String,
    /// Its share of the engine call's device time, in seconds.
    pub device_seconds: f64,
    /// What it cost: device seconds × `metrics.price_per_device_second` +
    /// bytes × `metrics.storage_price_per_gb_month` / 10⁹ (one month).
    pub cost: f64,
    /// Whether it is under legal hold (never deleted).
    pub legal_hold: bool,
    /// A signed, expiring link to the bytes.
    pub url: String,
    /// The size it was generated at, `WIDTHxHEIGHT` (the request's); the
    /// file's own `width` and `height` may be larger: small outputs are
    /// enlarged (nearest neighbour) to carry the watermark.
    pub size: String,
    /// The image's generation parameters as the AUTOMATIC1111 web UI
    /// writes them (its `parameters` text), for tools that read those.
    pub parameters: String,
    /// Whether the stored file carries a C2PA manifest signed by this
    /// server (it went through the `sign` stage).
    pub c2pa: bool,
}

impl ImageRecordDto {
    /// The record of `r`, with a signed link made for this request.
    pub async fn from_record(
        state: &AppState,
        r: &easel_store::Image,
        headers: &HeaderMap,
    ) -> Result<Self, ApiError> {
        let p = &r.params;
        Ok(ImageRecordDto {
            id: r.id.to_string(),
            object: "image".into(),
            job_id: r.job_id.to_string(),
            index: r.index_in_job,
            created_at: r.created_at.timestamp(),
            prompt: r.prompt.clone(),
            negative_prompt: r.negative_prompt.clone(),
            seed: r.seed,
            steps: r.steps,
            guidance_scale: r.guidance,
            sampler: r.sampler.clone(),
            schedule: r.schedule.clone(),
            strength: p.strength,
            model: r.model.clone(),
            model_hash: r.model_hash.clone(),
            width: r.width,
            height: r.height,
            format: r.format.as_str().into(),
            bytes: r.byte_size,
            sha256: r.sha256.clone(),
            timings: r
                .timings
                .iter()
                .map(|t| StageTimingDto {
                    stage: t.stage.clone(),
                    seconds: t.seconds,
                })
                .collect(),
            warnings: r.warnings.clone(),
            watermark_id: r.watermark_id.clone(),
            perceptual_hash: r.perceptual_hash.clone(),
            moderation: r.moderation.clone(),
            flags: r.flags.clone(),
            request_id: r.request_id.clone(),
            end_user: r.end_user.clone(),
            quality_score: r.quality_score,
            project: r.project.to_string(),
            device_seconds: r.device_seconds,
            cost: r.cost,
            legal_hold: r.legal_hold,
            url: state.image_url(r, headers).await?,
            size: r.params.size.to_string(),
            parameters: crate::sdapi::info::infotext(r),
            c2pa: r.timings.iter().any(|t| t.stage == "sign"),
        })
    }
}

/// An image's record.
#[utoipa::path(
    get,
    path = "/v1/images/{id}",
    tag = "images",
    params(("id" = String, Path, description = "Image id, `img_…`")),
    responses(
        (status = 200, description = "The record", body = ImageRecordDto),
        (status = 404, description = "No such image", body = crate::error::ErrorBody),
    )
)]
pub async fn get_image(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    PathId(id): PathId,
) -> Result<Json<ImageRecordDto>, ApiError> {
    let image_id = parse_image_id(&id)?;
    let r = state
        .jobs
        .image(image_id)
        .await?
        .filter(|r| principal.sees(&r.project))
        .ok_or_else(|| image_not_found(&id))?;
    Ok(Json(
        ImageRecordDto::from_record(&state, &r, &headers).await?,
    ))
}

/// The query of a signed link.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct SignedQuery {
    /// The project the link was made for (covered by the signature).
    pub project: Option<String>,
    /// Unix seconds after which the link is refused.
    pub expires: Option<String>,
    /// HMAC-SHA256 signature, hex.
    pub sig: Option<String>,
}

/// An image's bytes. Reached through a signed link (`expires` and `sig`),
/// or with an API key.
#[utoipa::path(
    get,
    path = "/v1/images/{id}/content",
    tag = "images",
    params(("id" = String, Path, description = "Image id, `img_…`"), SignedQuery),
    responses(
        (status = 200, description = "The file", content_type = "image/png", body = Vec<u8>),
        (status = 403, description = "Tampered or expired link", body = crate::error::ErrorBody),
        (status = 404, description = "No such image", body = crate::error::ErrorBody),
    )
)]
pub async fn get_image_content(
    State(state): State<AppState>,
    headers: HeaderMap,
    PathId(id): PathId,
    ApiQuery(query): ApiQuery<SignedQuery>,
) -> Result<Response, ApiError> {
    // Who may see which project: a key's principal, or the project a
    // signed link names (`None`: a link made before links named one).
    let allowed: Box<dyn Fn(&ProjectId) -> bool + Send> = match (&query.expires, &query.sig) {
        (None, None) => {
            let principal = crate::tenancy::authenticate(&state, &headers).await?;
            if !principal.allows(Scope::Read) {
                return Err(crate::extract::missing_scope(&principal, Scope::Read));
            }
            Box::new(move |p| principal.sees(p))
        }
        (expires, sig) => {
            // The path is checked as sent: a link for one image never opens
            // another, nor an image of another project.
            let path = format!("/v1/images/{id}/content");
            let project = query.project.clone().filter(|p| !p.is_empty());
            let expires: i64 = expires
                .as_deref()
                .and_then(|e| e.parse().ok())
                .ok_or(crate::signing::LinkError::InvalidSignature)?;
            state.signer.verify(
                &crate::signing::subject(&path, project.as_deref()),
                expires,
                sig.as_deref().unwrap_or_default(),
                state.jobs.db().now().timestamp(),
            )?;
            Box::new(move |p| project.as_deref().is_none_or(|named| named == p.as_str()))
        }
    };
    let image_id = parse_image_id(&id)?;
    let record = state
        .jobs
        .image(image_id)
        .await?
        .filter(|r| allowed(&r.project))
        .ok_or_else(|| image_not_found(&id))?;
    let bytes = state
        .jobs
        .blobs()
        .get(&record.object_key)
        .await
        .map_err(|e| ApiError::store("reading an image file", e))?;
    let mut response = bytes.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(record.format.mime_type()),
    );
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", record.sha256)) {
        h.insert(header::ETAG, etag);
    }
    // Images never change once stored; links expire, the bytes do not.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600, immutable"),
    );
    Ok(response)
}

/// The answer of `DELETE /v1/images/{id}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeletedImage {
    /// The image's id.
    pub id: String,
    /// Always `image.deleted`.
    pub object: String,
    /// Always true.
    pub deleted: bool,
}

/// Deletes an image: its file and its record. Its links stop working; the
/// audit log keeps a tombstone (`image.deleted`). Refused while the image
/// is under legal hold.
#[utoipa::path(
    delete,
    path = "/v1/images/{id}",
    tag = "images",
    params(("id" = String, Path, description = "Image id, `img_…`")),
    responses(
        (status = 200, description = "Deleted", body = DeletedImage),
        (status = 404, description = "No such image", body = crate::error::ErrorBody),
        (status = 409, description = "`legal_hold`: the image is held", body = crate::error::ErrorBody),
    )
)]
pub async fn delete_image(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathId(id): PathId,
) -> Result<Json<DeletedImage>, ApiError> {
    let image_id = parse_image_id(&id)?;
    state
        .jobs
        .image(image_id)
        .await?
        .filter(|r| principal.sees(&r.project))
        .ok_or_else(|| image_not_found(&id))?;
    match state
        .jobs
        .delete_image(image_id, Some(principal.name()))
        .await
    {
        Ok(_) => Ok(Json(DeletedImage {
            id: image_id.to_string(),
            object: "image.deleted".into(),
            deleted: true,
        })),
        Err(easel_jobs::JobError::Store(easel_store::StoreError::LegalHold(_))) => {
            Err(legal_hold(&id))
        }
        Err(easel_jobs::JobError::Store(easel_store::StoreError::ImageNotFound(_))) => {
            Err(image_not_found(&id))
        }
        Err(e) => Err(e.into()),
    }
}

fn legal_hold(id: &str) -> ApiError {
    ApiError::new(
        ErrorKind::Conflict,
        "legal_hold",
        format!(
            "image `{}` is under legal hold and cannot be deleted; an admin releases it with \
             POST /v1/admin/images/{{id}}/legal_hold {{\"hold\": false}}",
            id.chars().take(80).collect::<String>()
        ),
    )
}

/// The body of `POST /v1/admin/images/{id}/legal_hold`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LegalHoldRequest {
    /// Hold (true) or release (false).
    pub hold: bool,
}

/// An image's legal hold.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LegalHoldState {
    /// The image's id.
    pub id: String,
    /// Its project.
    pub project: String,
    /// Whether it is held.
    pub legal_hold: bool,
}

/// Holds or releases an image: a held image is never deleted, by request
/// or by retention. Audited (`image.legal_hold`).
#[utoipa::path(
    post,
    path = "/v1/admin/images/{id}/legal_hold",
    tag = "admin",
    params(("id" = String, Path, description = "Image id, `img_…`")),
    request_body = LegalHoldRequest,
    responses(
        (status = 200, description = "The hold as it now stands", body = LegalHoldState),
        (status = 404, description = "No such image", body = crate::error::ErrorBody),
    )
)]
pub async fn set_legal_hold(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathId(id): PathId,
    crate::extract::ApiJson(body): crate::extract::ApiJson<LegalHoldRequest>,
) -> Result<Json<LegalHoldState>, ApiError> {
    crate::routes::admin::require_admin(&principal)?;
    let image_id = parse_image_id(&id)?;
    let db = state.jobs.db();
    let image = db
        .set_legal_hold(image_id, body.hold)
        .await
        .map_err(|e| match e {
            easel_store::StoreError::ImageNotFound(_) => image_not_found(&id),
            other => ApiError::store("setting a legal hold", other),
        })?;
    db.append_audit(
        easel_store::NewAuditEvent::new("image.legal_hold")
            .actor(principal.name().to_string())
            .subject(image.id)
            .project(&image.project)
            .detail(serde_json::json!({ "hold": body.hold })),
    )
    .await
    .map_err(|e| ApiError::store("appending to the audit log", e))?;
    Ok(Json(LegalHoldState {
        id: image.id.to_string(),
        project: image.project.to_string(),
        legal_hold: image.legal_hold,
    }))
}
