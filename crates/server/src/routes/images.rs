//! `POST /v1/images/generations` and `POST /v1/images/edits`: OpenAI's
//! synchronous image routes, each a realtime job that the handler waits for.
//! A client that disconnects drops the handler, which cancels its job; so
//! does a request whose `X-Easel-Timeout` deadline passes.

use std::time::Duration;

use axum::Json;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use easel_core::{JobId, JobStatus, ResponseFormat, RgbImage, SeedRequest, Tier};
use easel_jobs::{Jobs, NewJob};
use easel_store::Job as JobRecord;

use crate::auth::Principal;
use crate::dto::images::{CreateImageRequest, ImageData, ImagesResponse, ValidRequest};
use crate::error::{ApiError, ErrorKind};
use crate::extract::{ApiJson, RequestTimeout};
use crate::state::AppState;
use crate::tenancy::rate::RateSlot;

/// Strength used by edits when the request gives none: keeps the layout of
/// the input while letting the prompt change most of the detail.
pub const DEFAULT_EDIT_STRENGTH: f64 = 0.75;

/// Creates images from a prompt.
#[utoipa::path(
    post,
    path = "/v1/images/generations",
    tag = "images",
    request_body = CreateImageRequest,
    params(("X-Easel-Timeout" = Option<u64>, Header, description = "Deadline in whole seconds, 1 to `queue.max_timeout_seconds`: the request answers 504 `deadline_exceeded` by then and its job is not run (or is cancelled at its next step)")),
    responses(
        (status = 200, description = "The images", body = ImagesResponse),
        (status = 400, description = "Invalid input (a bad `X-Easel-Timeout` is `invalid_timeout`; a seed other than -1 or 0 to 4294967295 is `invalid_seed`)", body = crate::error::ErrorBody),
        (status = 404, description = "Unknown model", body = crate::error::ErrorBody),
        (status = 413, description = "Body over the limit", body = crate::error::ErrorBody),
        (status = 415, description = "Not JSON", body = crate::error::ErrorBody),
        (status = 429, description = "The realtime queue is full (`queue_full`)", body = crate::error::ErrorBody,
            headers(("Retry-After" = u64, description = "Whole seconds, 1 to 300, until a slot is expected to free"))),
        (status = 504, description = "The deadline (`deadline_exceeded`) or `worker.sync_timeout_seconds` (`timeout`) passed", body = crate::error::ErrorBody),
    )
)]
pub async fn create_generation(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(slot): Extension<RateSlot>,
    RequestTimeout(timeout): RequestTimeout,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateImageRequest>,
) -> Result<Response, ApiError> {
    let mut body = body;
    // Text-to-image: strength belongs to edits.
    body.strength = None;
    let valid = body.validate(&state.models)?;
    run_sync(&state, &principal, &slot, &headers, timeout, valid, None).await
}

/// The multipart form of `/v1/images/edits`, as text before validation.
#[derive(Default)]
struct EditForm {
    image: Option<bytes::Bytes>,
    request: CreateImageRequest,
    /// The `seed` field, parsed; default random.
    seed: SeedRequest,
}

fn parse_int(field: &'static str, code: &'static str, text: &str) -> Result<i64, ApiError> {
    text.trim().parse().map_err(|_| {
        ApiError::invalid(
            code,
            field,
            format!("{field} must be an integer, got `{}`", short(text)),
        )
    })
}

fn parse_float(field: &'static str, code: &'static str, text: &str) -> Result<f64, ApiError> {
    text.trim().parse().map_err(|_| {
        ApiError::invalid(
            code,
            field,
            format!("{field} must be a number, got `{}`", short(text)),
        )
    })
}

fn short(text: &str) -> String {
    text.chars().take(40).collect()
}

/// The multipart body of an edit, for the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct CreateEditForm {
    /// The image to edit (PNG, JPEG or WebP).
    #[schema(format = Binary, value_type = String)]
    image: Vec<u8>,
    /// What the result should show.
    prompt: String,
    /// Model name.
    model: Option<String>,
    /// Number of images, 1–10.
    n: Option<i64>,
    /// `"WIDTHxHEIGHT"`; default: the model's.
    size: Option<String>,
    /// `b64_json` or `url`.
    response_format: Option<String>,
    /// `png`, `jpeg` or `webp`.
    output_format: Option<String>,
    /// Extension: how much to change the image, 0–1; default 0.75.
    strength: Option<f64>,
    /// Extension: seed of the first image, an integer from 0 to 4294967295,
    /// or -1 for a random one (default); as for generations.
    #[schema(minimum = -1, maximum = 4294967295_u32)]
    seed: Option<i64>,
    /// Extension: denoising steps.
    steps: Option<i64>,
}

/// Edits an image: image-to-image guided by a prompt.
#[utoipa::path(
    post,
    path = "/v1/images/edits",
    tag = "images",
    request_body(content = CreateEditForm, content_type = "multipart/form-data"),
    params(("X-Easel-Timeout" = Option<u64>, Header, description = "Deadline in whole seconds, as for generations")),
    responses(
        (status = 200, description = "The images", body = ImagesResponse),
        (status = 400, description = "Invalid input or image (a seed other than -1 or 0 to 4294967295 is `invalid_seed`, as for generations)", body = crate::error::ErrorBody),
        (status = 413, description = "Body over the limit", body = crate::error::ErrorBody),
        (status = 415, description = "Not multipart", body = crate::error::ErrorBody),
        (status = 429, description = "The realtime queue is full (`queue_full`)", body = crate::error::ErrorBody,
            headers(("Retry-After" = u64, description = "Whole seconds, 1 to 300, until a slot is expected to free"))),
        (status = 504, description = "The deadline or the synchronous wait ran out", body = crate::error::ErrorBody),
    )
)]
pub async fn create_edit(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(slot): Extension<RateSlot>,
    RequestTimeout(timeout): RequestTimeout,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let mut multipart = multipart?;
    let mut form = EditForm::default();
    while let Some(field) = multipart.next_field().await? {
        let name = field.name().unwrap_or_default().to_string();
        if name == "image" || name == "image[]" {
            if form.image.is_some() {
                return Err(ApiError::invalid(
                    "too_many_images",
                    "image",
                    "exactly one image is supported per edit",
                ));
            }
            form.image = Some(field.bytes().await?);
            continue;
        }
        if name == "mask" {
            return Err(ApiError::invalid(
                "unsupported_parameter",
                "mask",
                "masks are not supported; the whole image is edited",
            ));
        }
        let text = field.text().await?;
        let r = &mut form.request;
        match name.as_str() {
            "prompt" => r.prompt = text,
            "model" => r.model = Some(text),
            "n" => r.n = Some(parse_int("n", "invalid_n", &text)?),
            "size" => r.size = Some(text),
            "response_format" => r.response_format = Some(text),
            "output_format" => r.output_format = Some(text),
            "output_compression" => {
                r.output_compression = Some(parse_int(
                    "output_compression",
                    "invalid_output_compression",
                    &text,
                )?)
            }
            "user" => r.user = Some(text),
            // The same parser, range and message as the JSON routes.
            "seed" => form.seed = text.parse()?,
            "steps" => r.steps = Some(parse_int("steps", "invalid_steps", &text)?),
            "guidance_scale" => {
                r.guidance_scale = Some(parse_float(
                    "guidance_scale",
                    "invalid_guidance_scale",
                    &text,
                )?)
            }
            "negative_prompt" => r.negative_prompt = Some(text),
            "sampler" => r.sampler = Some(text),
            "schedule" => r.schedule = Some(text),
            "strength" => r.strength = Some(parse_float("strength", "invalid_strength", &text)?),
            // OpenAI fields without meaning here (quality, background, ...).
            _ => {}
        }
    }
    let image = form.image.ok_or_else(|| {
        ApiError::invalid(
            "missing_image",
            "image",
            "the form must include an `image` file",
        )
    })?;
    let mut request = form.request;
    request.strength.get_or_insert(DEFAULT_EDIT_STRENGTH);
    let valid = request.validate_with_seed(form.seed, &state.models)?;
    let init = decode_upload(&state, &image, valid.params.size)?;
    run_sync(
        &state,
        &principal,
        &slot,
        &headers,
        timeout,
        valid,
        Some(init),
    )
    .await
}

/// Decodes an untrusted upload (header-checked against the pixel limit
/// before any pixel is decoded) and resizes it to the output size.
fn decode_upload(
    state: &AppState,
    bytes: &[u8],
    size: easel_core::Size,
) -> Result<RgbImage, ApiError> {
    let limits = easel_media::DecodeLimits {
        max_pixels: state.config.limits.max_upload_pixels,
        max_bytes: state.config.server.body_limit_bytes,
        ..Default::default()
    };
    let decoded =
        easel_media::decode_untrusted(bytes, &limits).map_err(crate::error::from_media_error)?;
    if (decoded.width, decoded.height) == (size.width, size.height) {
        return Ok(decoded);
    }
    easel_media::resize(&decoded, size.width, size.height).map_err(crate::error::from_media_error)
}

/// Cancels a synchronous request's job if the handler is dropped before
/// the job finished: the client went away, so nobody wants the images.
struct CancelOnDrop {
    jobs: Jobs,
    id: JobId,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (jobs, id) = (self.jobs.clone(), self.id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            tracing::info!(job = %id, "client left; cancelling its job");
            runtime.spawn(async move {
                if let Err(e) = jobs.cancel(id).await {
                    tracing::warn!(job = %id, error = %e, "could not cancel an abandoned job");
                }
            });
        }
    }
}

/// Submits a realtime job, waits for it (at most `timeout`, the request's
/// parsed `X-Easel-Timeout`), and answers in OpenAI's shape.
async fn run_sync(
    state: &AppState,
    principal: &Principal,
    slot: &RateSlot,
    headers: &HeaderMap,
    timeout: Option<Duration>,
    valid: ValidRequest,
    init_image: Option<RgbImage>,
) -> Result<Response, ApiError> {
    let policy = crate::responsible::check_prompt(
        state,
        principal,
        valid.user.as_deref(),
        &valid.params.prompt,
    )
    .await?;
    if let Err(refused) =
        crate::tenancy::rate::admit_images(state, principal, &valid.params, slot).await
    {
        return Ok(refused);
    }
    let trace = crate::correlation::JobTrace::of(headers);
    let (job, _) = state
        .jobs
        .submit(NewJob {
            params: valid.params,
            output: valid.output,
            tier: Tier::Realtime,
            project: principal.project(),
            user_id: crate::auth::user_id(principal, valid.user),
            idempotency_key: None,
            init_image,
            timeout,
            policy,
            request_id: trace.request_id,
            trace_parent: trace.trace_parent,
        })
        .await?;
    let mut guard = CancelOnDrop {
        jobs: state.jobs.clone(),
        id: job.id,
        armed: true,
    };
    let sync_limit = Duration::from_secs(state.config.worker.sync_timeout_seconds);
    let limit = timeout.map_or(sync_limit, |t| t.min(sync_limit));
    let done = match tokio::time::timeout(limit, state.jobs.wait(job.id)).await {
        Ok(Err(easel_jobs::JobError::ShuttingDown)) => {
            // The job is back in the queue and runs after the restart.
            guard.armed = false;
            return Err(ApiError::new(
                ErrorKind::Unavailable,
                "shutting_down",
                format!(
                    "the server is shutting down; job `{}` stays queued and runs after the restart \
                     (GET /v1/jobs/{})",
                    job.id, job.id
                ),
            ));
        }
        Ok(done) => done?,
        Err(_) if timeout.is_some_and(|t| t <= sync_limit) => {
            // Still queued: it fails `deadline_exceeded` now and never runs.
            // Still running: the guard cancels it at its next step.
            if let Err(e) = state.jobs.expire_deadlines().await {
                tracing::warn!(job = %job.id, error = %e, "could not expire overdue jobs");
            }
            return Err(ApiError::new(
                ErrorKind::Timeout,
                "deadline_exceeded",
                format!(
                    "job `{}` did not finish within its deadline of {} s (X-Easel-Timeout) \
                     and was stopped",
                    job.id,
                    limit.as_secs()
                ),
            ));
        }
        Err(_) => {
            return Err(ApiError::new(
                ErrorKind::Timeout,
                "timeout",
                format!(
                    "the job did not finish within {} s (worker.sync_timeout_seconds) and was cancelled; \
                     use POST /v1/jobs for long work",
                    limit.as_secs()
                ),
            ));
        }
    };
    guard.armed = false;
    match done.status {
        JobStatus::Succeeded => images_response(state, headers, &done, InlineImages::Bytes)
            .await
            .map(|(r, _)| Json(r).into_response()),
        JobStatus::Cancelled => Err(ApiError::new(
            ErrorKind::Conflict,
            "job_cancelled",
            format!("job `{}` was cancelled before it finished", done.id),
        )),
        _ => Err(ApiError::from_job_failure(
            done.error_code.as_deref().unwrap_or("generation_failed"),
            done.error_message.as_deref().unwrap_or("generation failed"),
        )),
    }
}

/// Whether [`images_response`] reads the image files it inlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InlineImages {
    /// Inline each file as base64 (what a client gets).
    Bytes,
    /// Leave `b64_json` empty and count its length instead (a batch's
    /// file size, without reading any image).
    Sized,
}

/// The response of a finished job: each image inline or as a signed
/// link; and the base64 characters left out (with [`InlineImages::Sized`]).
pub(crate) async fn images_response(
    state: &AppState,
    headers: &HeaderMap,
    job: &JobRecord,
    inline: InlineImages,
) -> Result<(ImagesResponse, u64), ApiError> {
    let mut data = Vec::with_capacity(job.image_ids.len());
    let mut omitted = 0;
    let format = job.options;
    for id in &job.image_ids {
        let record = state.jobs.image(*id).await?.ok_or_else(|| {
            ApiError::internal(
                "reading a finished job's images",
                format!("image {id} missing"),
            )
        })?;
        let item = match format.response_format {
            ResponseFormat::B64Json => {
                let b64 = match inline {
                    InlineImages::Bytes => {
                        let bytes = state
                            .jobs
                            .blobs()
                            .get(&record.object_key)
                            .await
                            .map_err(|e| ApiError::store("reading an image file", e))?;
                        base64::engine::general_purpose::STANDARD.encode(&bytes)
                    }
                    InlineImages::Sized => {
                        omitted += record.byte_size.div_ceil(3) * 4;
                        String::new()
                    }
                };
                ImageData {
                    b64_json: Some(b64),
                    url: None,
                    revised_prompt: None,
                    id: id.to_string(),
                    seed: record.seed,
                }
            }
            ResponseFormat::Url => ImageData {
                b64_json: None,
                url: Some(state.image_url(&record, headers).await?),
                revised_prompt: None,
                id: id.to_string(),
                seed: record.seed,
            },
        };
        data.push(item);
    }
    let response = ImagesResponse {
        created: job.created_at.timestamp(),
        data,
        output_format: format.output_format.as_str().to_string(),
        size: job.params.size.to_string(),
        job_id: job.id.to_string(),
        seed: job.params.seed,
        model: job.params.model.clone(),
    };
    Ok((response, omitted))
}
