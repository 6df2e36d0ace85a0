//! `stream: true` on the synchronous image routes: the answer is a stream
//! of server-sent events in OpenAI's format for image streaming:
//! `partial_images` (0–3) `…partial_image` events with evenly spaced
//! previews from the denoising loop (the engine's cheap per-step previews,
//! so a latent model's are at latent resolution), then one `…completed`
//! event per finished image (the stored file, base64), or one `error`
//! event. Generations use the `image_generation.` prefix, edits
//! `image_edit.`. A client that disconnects cancels the job, as with the
//! whole response.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use easel_core::OutputFormat;
use easel_jobs::{JobEvent, Watch};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::dto::images::ValidRequest;
use crate::error::ApiError;
use crate::realtime::CancelOnDrop;
use crate::routes::sdapi::strip_data_url;
use crate::state::AppState;

/// Which route streams: the events' prefix.
#[derive(Debug, Clone, Copy)]
pub(crate) enum StreamKind {
    /// `image_generation.`
    Generation,
    /// `image_edit.`
    Edit,
}

impl StreamKind {
    fn prefix(self) -> &'static str {
        match self {
            StreamKind::Generation => "image_generation",
            StreamKind::Edit => "image_edit",
        }
    }
}

/// Submits `valid` (with `valid.stream` set) and answers with its events.
pub(crate) async fn stream(
    state: &AppState,
    call: crate::realtime::SyncCall<'_>,
    valid: ValidRequest,
    init_image: Option<easel_jobs::InitInput>,
    kind: StreamKind,
) -> Result<Response, ApiError> {
    let partial_images = valid.stream.unwrap_or(0);
    let format = valid.output.output_format;
    let size = valid.params.size.to_string();
    let job = match crate::realtime::submit(state, call, valid, init_image).await? {
        Ok(job) => job,
        Err(refused) => return Ok(refused),
    };
    let watch = state.jobs.watch(job.id).await?;
    let mut guard = CancelOnDrop::new(state.jobs.clone(), job.id);
    let state = state.clone();
    let sync_limit = Duration::from_secs(state.config.worker.sync_timeout_seconds);
    let limit = call.timeout.map_or(sync_limit, |t| t.min(sync_limit));
    let deadline = tokio::time::Instant::now() + limit;
    let id = job.id;
    let events = async_stream::stream! {
        let common = |b64: String| json!({
            "b64_json": b64,
            "background": "opaque",
            "created_at": chrono::Utc::now().timestamp(),
            "output_format": format.as_str(),
            "quality": "auto",
            "size": size,
        });
        let mut sub = match watch {
            Watch::Live(sub) => Some(sub),
            Watch::Finished(_) => None,
        };
        let mut sent = 0u32;
        let terminal = loop {
            let Some(s) = sub.as_mut() else { break None };
            let event = match tokio::time::timeout_at(deadline, s.receiver.recv()).await {
                Err(_) => {
                    yield Ok::<Event, Infallible>(error_event(&ApiError::new(
                        crate::error::ErrorKind::Timeout,
                        "timeout",
                        format!("the job did not finish within {} s and was cancelled", limit.as_secs()),
                    )));
                    return;
                }
                Ok(Ok(event)) => event,
                Ok(Err(RecvError::Lagged(_))) => continue,
                Ok(Err(RecvError::Closed)) => break None,
            };
            match event {
                JobEvent::Progress { previews, .. } if !previews.is_empty() && sent < partial_images => {
                    for preview in previews {
                        let Some(b64) = transcode(&preview, format) else { continue };
                        let mut data = common(b64);
                        data["type"] = json!(format!("{}.partial_image", kind.prefix()));
                        data["partial_image_index"] = json!(sent);
                        yield Ok(sse(&data));
                    }
                    sent += 1;
                }
                e if e.is_terminal() => break Some(e),
                _ => {}
            }
        };
        // The store has the final state (also when the channel closed).
        let done = match state.jobs.get(id).await {
            Ok(job) => job,
            Err(e) => {
                yield Ok(error_event(&ApiError::from(e)));
                return;
            }
        };
        let _ = terminal;
        match done.status {
            easel_core::JobStatus::Succeeded => {
                guard.disarm();
                for image_id in &done.image_ids {
                    let file = match read_image(&state, *image_id).await {
                        Ok(file) => file,
                        Err(e) => {
                            yield Ok(error_event(&e));
                            return;
                        }
                    };
                    let (bytes, seed) = file;
                    let mut data = common(base64::engine::general_purpose::STANDARD.encode(bytes));
                    data["type"] = json!(format!("{}.completed", kind.prefix()));
                    data["usage"] = json!({"input_tokens": 0, "output_tokens": 0, "total_tokens": 0,
                                           "input_tokens_details": {"image_tokens": 0, "text_tokens": 0}});
                    data["id"] = json!(image_id.to_string());
                    data["seed"] = json!(seed);
                    data["job_id"] = json!(done.id.to_string());
                    yield Ok(sse(&data));
                }
            }
            easel_core::JobStatus::Cancelled => {
                guard.disarm();
                yield Ok(error_event(&ApiError::new(
                    crate::error::ErrorKind::Conflict,
                    "job_cancelled",
                    format!("job `{}` was cancelled before it finished", done.id),
                )));
            }
            status if status.is_terminal() => {
                guard.disarm();
                yield Ok(error_event(&ApiError::from_job_failure(
                    done.error_code.as_deref().unwrap_or("generation_failed"),
                    done.error_message.as_deref().unwrap_or("generation failed"),
                )));
            }
            _ => {
                yield Ok(error_event(&ApiError::new(
                    crate::error::ErrorKind::Unavailable,
                    "shutting_down",
                    format!("the server stopped following job `{}`; see GET /v1/jobs/{}", done.id, done.id),
                )));
            }
        }
    };
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

async fn read_image(
    state: &AppState,
    id: easel_core::ImageId,
) -> Result<(bytes::Bytes, u64), ApiError> {
    let record = state.jobs.image(id).await?.ok_or_else(|| {
        ApiError::internal(
            "reading a finished job's images",
            format!("image {id} missing"),
        )
    })?;
    let bytes = state
        .jobs
        .blobs()
        .get(&record.object_key)
        .await
        .map_err(|e| ApiError::store("reading an image file", e))?;
    Ok((bytes, record.seed))
}

fn sse(data: &Value) -> Event {
    let kind = data["type"].as_str().unwrap_or("message").to_string();
    Event::default().event(kind).data(data.to_string())
}

fn error_event(e: &ApiError) -> Event {
    let mut body = e.body_json();
    body["type"] = json!("error");
    Event::default().event("error").data(body.to_string())
}

/// A preview (`data:image/png;base64,…`) as base64 in the requested format.
fn transcode(preview: &str, format: OutputFormat) -> Option<String> {
    let b64 = strip_data_url(preview);
    if format == OutputFormat::Png {
        return Some(b64.to_string());
    }
    let png = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let image = easel_media::decode_untrusted(&png, &easel_media::DecodeLimits::default()).ok()?;
    let bytes = easel_media::encode(&image, format, None, &easel_media::Metadata::none()).ok()?;
    Some(base64::engine::general_purpose::STANDARD.encode(bytes))
}
