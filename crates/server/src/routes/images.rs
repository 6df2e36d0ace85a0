//! `POST /v1/images/generations` and `POST /v1/images/edits`: OpenAI's
//! synchronous image routes, each a realtime job that the handler waits for.
//! A client that disconnects drops the handler, which cancels its job; so
//! does a request whose `X-Easel-Timeout` deadline passes.

use axum::Json;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use easel_core::{PromptRule, ResponseFormat, RgbImage, SeedRequest};
use easel_jobs::InitInput;
use easel_store::Job as JobRecord;

use crate::auth::Principal;
use crate::compose::MAX_EDIT_IMAGES;
use crate::dto::images::{CreateImageRequest, ImageData, ImagesResponse, ValidRequest};
use crate::error::{ApiError, ErrorKind};
use crate::extract::{ApiJson, RequestTimeout};
use crate::realtime::{self, Finished, SyncCall};
use crate::routes::images_stream::{self, StreamKind};
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
    body.low_moderation_offered = state.config.moderation.image_low.is_some();
    let valid = body.validate(&state.models)?;
    let call = SyncCall {
        principal: &principal,
        slot: &slot,
        headers: &headers,
        timeout,
    };
    if valid.stream.is_some() {
        return images_stream::stream(&state, call, valid, None, StreamKind::Generation).await;
    }
    run_sync(&state, call, valid, None).await
}

/// The multipart form of `/v1/images/edits`, as text before validation.
#[derive(Default)]
struct EditForm {
    /// The `image` (or `image[]`) files, in the order sent.
    images: Vec<bytes::Bytes>,
    /// OpenAI's mask: a PNG whose transparent pixels are redrawn.
    mask: Option<bytes::Bytes>,
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

/// A form's boolean: `true` or `false` (any case, as clients write them);
/// anything else is refused rather than read as `false`.
fn parse_bool(field: &'static str, code: &'static str, text: &str) -> Result<bool, ApiError> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if text.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(ApiError::invalid(
            code,
            field,
            format!("{field} must be true or false, got `{}`", short(text)),
        ))
    }
}

fn short(text: &str) -> String {
    text.chars().take(40).collect()
}

/// The multipart body of an edit, for the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct CreateEditForm {
    /// The image to edit (PNG, JPEG or WebP). Repeat the field (`image` or
    /// `image[]`) for up to 16 images: they are laid out as a grid, in
    /// order, as the one initial image (docs/openai.md).
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
    let form = read_form(multipart?, MAX_EDIT_IMAGES).await?;
    if form.images.is_empty() {
        return Err(missing_image());
    }
    let mut request = form.request;
    request.strength.get_or_insert(DEFAULT_EDIT_STRENGTH);
    request.low_moderation_offered = state.config.moderation.image_low.is_some();
    let valid = request.validate_with_seed(form.seed, &state.models)?;
    let size = valid.params.size;
    let mut uploads = Vec::with_capacity(form.images.len());
    for bytes in &form.images {
        uploads.push(crate::masks::decode(&state, bytes)?.image);
    }
    let mask = match &form.mask {
        Some(_) if uploads.len() > 1 => {
            return Err(ApiError::invalid(
                "unsupported_parameter",
                "mask",
                format!(
                    "a mask edits one image, but the form has {} images: send one `image` \
                     with the mask",
                    uploads.len()
                ),
            ));
        }
        Some(bytes) => {
            let mask = crate::masks::decode(&state, bytes)?;
            Some(crate::masks::openai(mask, &uploads[0], size)?)
        }
        None => None,
    };
    let image = if uploads.len() == 1 {
        crate::masks::fit(uploads.remove(0), size)?
    } else {
        crate::compose::collage(&uploads, size)?
    };
    let init = InitInput { image, mask };
    let call = SyncCall {
        principal: &principal,
        slot: &slot,
        headers: &headers,
        timeout,
    };
    if valid.stream.is_some() {
        return images_stream::stream(&state, call, valid, Some(init), StreamKind::Edit).await;
    }
    run_sync(&state, call, valid, Some(init)).await
}

/// Strength of a variation when the request gives none: the composition
/// stays, the details change.
pub const DEFAULT_VARIATION_STRENGTH: f64 = 0.6;

/// The multipart body of a variation, for the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct CreateVariationForm {
    /// The image to vary (PNG, JPEG or WebP).
    #[schema(format = Binary, value_type = String)]
    image: Vec<u8>,
    /// Model name.
    model: Option<String>,
    /// Number of images, 1–10.
    n: Option<i64>,
    /// `"WIDTHxHEIGHT"`; default: the model's.
    size: Option<String>,
    /// `b64_json` or `url`.
    response_format: Option<String>,
    /// Extension: what the image shows; default: the prompt recorded in
    /// the image's own `parameters` (any image Easel or the AUTOMATIC1111
    /// web UI made), or an empty prompt for an image that records none.
    prompt: Option<String>,
    /// Extension: how far from the image, 0–1; default 0.6.
    strength: Option<f64>,
    /// Extension: seed of the first image, -1 or 0 to 4294967295.
    seed: Option<i64>,
}

/// Variations of an image: image-to-image at `strength` 0.6 guided by the
/// prompt the image records (or the `prompt` field; with neither, by an
/// empty prompt).
#[utoipa::path(
    post,
    path = "/v1/images/variations",
    tag = "images",
    request_body(content = CreateVariationForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "The images", body = ImagesResponse),
        (status = 400, description = "Invalid input or image", body = crate::error::ErrorBody),
        (status = 429, description = "The realtime queue is full (`queue_full`)", body = crate::error::ErrorBody),
    )
)]
pub async fn create_variation(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(slot): Extension<RateSlot>,
    RequestTimeout(timeout): RequestTimeout,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let mut form = read_form(multipart?, 1).await?;
    if form.images.is_empty() {
        return Err(missing_image());
    }
    let image = form.images.remove(0);
    let mut request = form.request;
    if request.prompt.trim().is_empty() {
        // OpenAI's variations take any image: one that records no prompt
        // (a photograph, a drawing) is varied with an empty prompt, guided
        // by the image alone.
        match recorded_prompt(&image) {
            Some(prompt) => request.prompt = prompt,
            None => {
                request.prompt.clear();
                request.prompt_rule = PromptRule::MayBeEmpty;
            }
        }
    }
    if form.mask.is_some() {
        return Err(ApiError::invalid(
            "unsupported_parameter",
            "mask",
            "variations take no mask (as in OpenAI's API); use /v1/images/edits",
        ));
    }
    request.strength.get_or_insert(DEFAULT_VARIATION_STRENGTH);
    request.low_moderation_offered = state.config.moderation.image_low.is_some();
    let valid = request.validate_with_seed(form.seed, &state.models)?;
    if valid.stream.is_some() {
        return Err(ApiError::invalid(
            "unsupported_parameter",
            "stream",
            "variations do not stream (as in OpenAI's API)",
        ));
    }
    let init = decode_upload(&state, &image, valid.params.size)?;
    let call = SyncCall {
        principal: &principal,
        slot: &slot,
        headers: &headers,
        timeout,
    };
    run_sync(&state, call, valid, Some(init.into())).await
}

/// The prompt in a PNG's `parameters` text (the lines before the
/// `Negative prompt:` and `Steps:` lines).
fn recorded_prompt(bytes: &[u8]) -> Option<String> {
    let chunks = easel_media::read_png_text(bytes).ok()?;
    let (_, text) = chunks
        .into_iter()
        .find(|(k, _)| k == easel_media::PARAMETERS_KEY)?;
    let prompt = crate::routes::sdapi_info::parse_infotext(&text)["Prompt"]
        .as_str()?
        .trim()
        .to_string();
    (!prompt.is_empty()).then_some(prompt)
}

fn missing_image() -> ApiError {
    ApiError::invalid(
        "missing_image",
        "image",
        "the form must include an `image` file",
    )
}

/// Reads an image form (edits, variations) into its text fields and its
/// images (at most `max_images`) and mask.
async fn read_form(mut multipart: Multipart, max_images: usize) -> Result<EditForm, ApiError> {
    let mut form = EditForm::default();
    while let Some(field) = multipart.next_field().await? {
        let name = field.name().unwrap_or_default().to_string();
        if name == "image" || name == "image[]" {
            if form.images.len() == max_images {
                return Err(ApiError::invalid(
                    "too_many_images",
                    "image",
                    if max_images == 1 {
                        "this route takes one image".to_string()
                    } else {
                        format!("at most {max_images} images per edit")
                    },
                ));
            }
            form.images.push(field.bytes().await?);
            continue;
        }
        if name == "mask" {
            if form.mask.is_some() {
                return Err(ApiError::invalid(
                    "too_many_masks",
                    "mask",
                    "exactly one mask is supported per edit",
                ));
            }
            form.mask = Some(field.bytes().await?);
            continue;
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
            "clip_skip" => r.clip_skip = Some(parse_int("clip_skip", "invalid_clip_skip", &text)?),
            "quality" => r.quality = Some(text),
            "background" => r.background = Some(text),
            "moderation" => r.moderation = Some(text),
            "style" => r.style = Some(text),
            "stream" => r.stream = Some(parse_bool("stream", "invalid_stream", &text)?),
            "partial_images" => {
                r.partial_images = Some(parse_int(
                    "partial_images",
                    "invalid_partial_images",
                    &text,
                )?)
            }
            // Anything else (`input_fidelity`, a typo) is refused at
            // validation, naming it.
            _ => {
                r.unknown
                    .insert(name.clone(), serde_json::Value::String(short(&text)));
            }
        }
    }
    Ok(form)
}

/// Decodes an untrusted upload (header-checked against the pixel limit
/// before any pixel is decoded) and resizes it to the output size.
pub(crate) fn decode_upload(
    state: &AppState,
    bytes: &[u8],
    size: easel_core::Size,
) -> Result<RgbImage, ApiError> {
    crate::masks::fit(crate::masks::decode(state, bytes)?.image, size)
}

/// Submits a realtime job, waits for it (at most `timeout`, the request's
/// parsed `X-Easel-Timeout`), and answers in OpenAI's shape.
async fn run_sync(
    state: &AppState,
    call: SyncCall<'_>,
    valid: ValidRequest,
    init_image: Option<InitInput>,
) -> Result<Response, ApiError> {
    let job = match realtime::submit(state, call, valid, init_image).await? {
        Ok(job) => job,
        Err(refused) => return Ok(refused),
    };
    match realtime::wait(state, &job, call.timeout).await? {
        Finished::Succeeded(done) => {
            images_response(state, call.headers, &done, InlineImages::Bytes)
                .await
                .map(|(r, _)| Json(r).into_response())
        }
        Finished::Cancelled(done) => Err(ApiError::new(
            ErrorKind::Conflict,
            "job_cancelled",
            format!("job `{}` was cancelled before it finished", done.id),
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
