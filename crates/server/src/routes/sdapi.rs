//! `POST /sdapi/v1/txt2img` and `/img2img`: the AUTOMATIC1111 web UI's
//! generation routes. A request is a *task* of `n_iter` realtime jobs of
//! `batch_size` images each, run one after the other (as the web UI does),
//! each through the same policy, limits, queue and pipeline as
//! `/v1/images/generations`; the response carries every image as base64
//! PNG, the request as `parameters`, and the `info` JSON string.
//! `POST /sdapi/v1/skip` cancels the running job and goes on with the
//! next; `/interrupt` cancels it and ends the task with what was made.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use easel_core::{JobId, SeedRequest};
use easel_jobs::InitInput;
use easel_store::{Image, Job};
use serde_json::{Value, json};

use crate::auth::Principal;
use crate::dto::images::CreateImageRequest;
use crate::error::ApiError;
use crate::extract::{ApiJson, RequestTimeout};
use crate::realtime::SyncCall;
use crate::realtime::{self, Finished};
use crate::sdapi::info::{Made, info};
use crate::sdapi::options::CallerOptions;
use crate::sdapi::request::{self, Route, SdRequest};
use crate::sdapi::{caller, tasks::Tasks};
use crate::state::AppState;
use crate::tenancy::rate::RateSlot;

/// Text to image.
#[utoipa::path(post, path = "/sdapi/v1/txt2img", tag = "a1111",
    request_body = Object,
    responses(
        (status = 200, description = "`images` (base64 PNG), `parameters` (the request), `info` (a JSON string)"),
        (status = 400, description = "An invalid or unsupported field (`unsupported_parameter` names it)", body = crate::error::ErrorBody),
        (status = 429, description = "The realtime queue or a limit is full", body = crate::error::ErrorBody),
    ))]
pub async fn txt2img(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(slot): Extension<RateSlot>,
    RequestTimeout(timeout): RequestTimeout,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let call = SyncCall {
        principal: &principal,
        slot: &slot,
        headers: &headers,
        timeout,
    };
    run(&state, call, Route::Txt2Img, body).await
}

/// Image to image.
#[utoipa::path(post, path = "/sdapi/v1/img2img", tag = "a1111",
    request_body = Object,
    responses(
        (status = 200, description = "`images` (base64 PNG), `parameters` (the request), `info` (a JSON string)"),
        (status = 400, description = "An invalid or unsupported field, or an undecodable image", body = crate::error::ErrorBody),
        (status = 429, description = "The realtime queue or a limit is full", body = crate::error::ErrorBody),
    ))]
pub async fn img2img(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(slot): Extension<RateSlot>,
    RequestTimeout(timeout): RequestTimeout,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let call = SyncCall {
        principal: &principal,
        slot: &slot,
        headers: &headers,
        timeout,
    };
    run(&state, call, Route::Img2Img, body).await
}

/// Stops the caller's running task after its current job.
#[utoipa::path(post, path = "/sdapi/v1/interrupt", tag = "a1111",
    responses((status = 200, description = "Interrupted (or nothing was running)")))]
pub async fn interrupt(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    let stop = state.sd_tasks.interrupt(&caller(&principal));
    cancel(&state, stop).await?;
    Ok(Json(json!({})))
}

/// Skips the current job of the caller's running task.
#[utoipa::path(post, path = "/sdapi/v1/skip", tag = "a1111",
    responses((status = 200, description = "Skipped (or nothing was running)")))]
pub async fn skip(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    let stop = state.sd_tasks.skip(&caller(&principal));
    cancel(&state, stop).await?;
    Ok(Json(json!({})))
}

async fn cancel(state: &AppState, stop: crate::sdapi::tasks::Stop) -> Result<(), ApiError> {
    if let crate::sdapi::tasks::Stop::Cancel(job) = stop {
        state.jobs.cancel(job).await?;
    }
    Ok(())
}

/// Ends the caller's task however the handler ends.
struct FinishOnDrop<'a> {
    tasks: &'a Tasks,
    caller: &'a str,
    task: &'a str,
}

impl Drop for FinishOnDrop<'_> {
    fn drop(&mut self) {
        self.tasks.finish(self.caller, self.task);
    }
}

async fn run(
    state: &AppState,
    call: SyncCall<'_>,
    route: Route,
    mut body: Value,
) -> Result<Response, ApiError> {
    let r = request::parse(route, &body)?;
    let who = caller(call.principal);
    let options = CallerOptions::load(state, &who).await?;
    let model = r.model.clone().or(options.model.clone());
    // A random seed is drawn once: iteration `k` starts at `seed + k·batch_size`.
    let first_seed = match r.seed {
        SeedRequest::Fixed(s) => s,
        SeedRequest::Random => rand::random::<u32>(),
    };
    let base = CreateImageRequest {
        model: model.map(|m| crate::sdapi::name_of_title(&m).to_string()),
        prompt: r.prompt.clone(),
        n: Some(r.batch_size),
        size: match (r.width, r.height) {
            (Some(w), Some(h)) => Some(format!("{w}x{h}")),
            (None, None) => None,
            _ => {
                return Err(ApiError::invalid(
                    "invalid_size",
                    "width",
                    "give both width and height, or neither for the model's default size",
                ));
            }
        },
        steps: r.steps,
        guidance_scale: r.cfg_scale,
        negative_prompt: Some(r.negative_prompt.clone()),
        sampler: r.sampler.map(|s| s.as_str().to_string()),
        schedule: r.schedule.map(|s| s.as_str().to_string()),
        clip_skip: r
            .clip_skip
            .or((options.clip_skip > 1).then_some(i64::from(options.clip_skip))),
        strength: r.init_image.as_ref().map(|_| {
            r.denoising_strength
                .unwrap_or(crate::routes::images::DEFAULT_EDIT_STRENGTH)
        }),
        prompt_tags: if r.disable_extra_networks {
            crate::dto::loras::PromptTags::Strip
        } else {
            crate::dto::loras::PromptTags::Apply
        },
        ..Default::default()
    };
    // Validated once up front, so a bad field fails before any job runs.
    let mut first = base
        .clone()
        .validate_with_seed(SeedRequest::Fixed(first_seed), &state.models)?;
    if options.preview_every > 0 {
        first.output.preview_every_steps = Some(options.preview_every);
    }
    let init = match &r.init_image {
        Some(b64) => {
            let (init, area) = init_input(state, &r, b64, first.params.size)?;
            first.params.inpaint_area = area;
            Some(init)
        }
        None => None,
    };
    let task_id = r
        .task_id
        .clone()
        .unwrap_or_else(|| format!("task({})", JobId::new()));
    let n_iter = r.n_iter as u32;
    state.sd_tasks.start(&who, task_id.clone(), n_iter);
    let _finish = FinishOnDrop {
        tasks: &state.sd_tasks,
        caller: &who,
        task: &task_id,
    };
    let mut jobs: Vec<Job> = Vec::new();
    let mut images: Vec<Image> = Vec::new();
    let mut encoded: Vec<String> = Vec::new();
    let params = first.params.clone();
    let mut interrupted = false;
    for k in 0..n_iter {
        if state.sd_tasks.interrupted(&who, &task_id) {
            interrupted = true;
            break;
        }
        let mut valid = first.clone();
        let seed =
            u64::from(first_seed).wrapping_add(u64::from(k) * u64::from(params.n)) % (1u64 << 32);
        valid.params.seed = seed;
        let job = match realtime::submit(state, call, valid, init.clone()).await? {
            Ok(job) => job,
            Err(refused) => return Ok(refused),
        };
        if state.sd_tasks.running(&who, &task_id, k, job.id) {
            let _ = state.jobs.cancel(job.id).await;
            interrupted = true;
            jobs.push(job);
            break;
        }
        watch_progress(state, &who, job.id);
        match realtime::wait(state, &job, call.timeout).await? {
            Finished::Succeeded(done) => {
                for id in &done.image_ids {
                    let image = state.jobs.image(*id).await?.ok_or_else(|| {
                        ApiError::internal(
                            "reading a finished job's images",
                            format!("image {id} missing"),
                        )
                    })?;
                    if r.send_images {
                        let bytes = state
                            .jobs
                            .blobs()
                            .get(&image.object_key)
                            .await
                            .map_err(|e| ApiError::store("reading an image file", e))?;
                        encoded.push(base64::engine::general_purpose::STANDARD.encode(&bytes));
                    }
                    images.push(image);
                }
                jobs.push(done);
            }
            // Skipped (go on) or interrupted (stop).
            Finished::Cancelled(done) => {
                jobs.push(done);
                if state.sd_tasks.interrupted(&who, &task_id) {
                    interrupted = true;
                    break;
                }
            }
        }
    }
    let model_hash = state
        .models
        .info(Some(&params.model))
        .ok()
        .map(|i| i.content_hash.clone());
    let info = info(&Made {
        params: &params,
        batch_size: params.n,
        jobs: &jobs,
        images: &images,
        model_hash: model_hash.as_deref(),
        interrupted,
    });
    if let Some(init) = r.init_image.as_ref().filter(|_| r.include_init_images) {
        encoded.push(strip_data_url(init).to_string());
    }
    if let Some(map) = body.as_object_mut()
        && !r.include_init_images
    {
        // As the web UI: the response does not echo the uploaded images.
        for key in ["init_images", "mask"] {
            if map.contains_key(key) {
                map.insert(key.into(), Value::Null);
            }
        }
    }
    Ok(Json(json!({ "images": encoded, "parameters": body, "info": info })).into_response())
}

/// Follows `job`'s events and keeps the caller's task's step and latest
/// preview for `GET /sdapi/v1/progress`.
fn watch_progress(state: &AppState, who: &str, job: JobId) {
    let (jobs, tasks, who) = (state.jobs.clone(), state.sd_tasks.clone(), who.to_string());
    tokio::spawn(async move {
        let Ok(easel_jobs::Watch::Live(mut sub)) = jobs.watch(job).await else {
            return;
        };
        loop {
            match sub.receiver.recv().await {
                Ok(easel_jobs::JobEvent::Progress {
                    step,
                    total,
                    previews,
                    ..
                }) => {
                    let preview = previews.first().map(|url| strip_data_url(url).to_string());
                    tasks.progress(&who, job, step, total, preview);
                }
                Ok(event) if event.is_terminal() => return,
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            }
        }
    });
}

/// The base64 part of a `data:…;base64,` URL (or the text as is).
pub(crate) fn strip_data_url(text: &str) -> &str {
    match text.split_once(";base64,") {
        Some((head, rest)) if head.starts_with("data:") => rest,
        _ => text,
    }
}

/// A base64 upload's bytes (`field` names it in the error).
fn b64_bytes(field: &'static str, b64: &str) -> Result<Vec<u8>, ApiError> {
    base64::engine::general_purpose::STANDARD
        .decode(strip_data_url(b64).trim())
        .map_err(|e| {
            ApiError::invalid(
                "invalid_image",
                field,
                format!("{field} is not valid base64: {e}"),
            )
        })
}

/// The initial image (the web UI's `init_images[0]`) and its mask,
/// checked like any upload and brought to the output size; with
/// `inpainting_fill: 0` the masked part is first painted with its
/// surroundings. "Only masked" (`inpaint_full_res`, with a mask) keeps
/// the image and mask at their own size and returns the region to
/// generate.
fn init_input(
    state: &AppState,
    r: &SdRequest,
    b64: &str,
    size: easel_core::Size,
) -> Result<(InitInput, Option<easel_core::Region>), ApiError> {
    let upload = crate::masks::decode(state, &b64_bytes("init_images", b64)?)?;
    let Some(mask_b64) = &r.mask else {
        let image = crate::masks::fit(upload.image, size)?;
        return Ok((InitInput { image, mask: None }, None));
    };
    let mask_upload = crate::masks::decode(state, &b64_bytes("mask", mask_b64)?)?;
    let own = easel_core::Size {
        width: upload.image.width,
        height: upload.image.height,
    };
    let at = if r.only_masked { own } else { size };
    let mask = crate::masks::a1111(mask_upload, &upload.image, at, r.mask_options)?;
    let mut image = crate::masks::fit(upload.image, at)?;
    if r.fill {
        image = crate::masks::fill(&image, &mask);
    }
    let area = r
        .only_masked
        .then(|| crate::masks::only_masked_region(&mask, r.only_masked_padding, size));
    Ok((
        InitInput {
            image,
            mask: Some(mask),
        },
        area,
    ))
}
