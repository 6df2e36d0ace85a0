//! Native asynchronous jobs: create (202), read, list, cancel, and a
//! server-sent event stream of each job's progress.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use easel_core::{JobId, JobStatus};
use easel_jobs::{JobEvent, NewJob, Watch};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use crate::auth::Principal;
use crate::dto::jobs::{CreateJobRequest, Job, JobList, ListJobsQuery};
use crate::error::{ApiError, ErrorKind};
use crate::extract::{ApiJson, ApiQuery, PathId, RequestTimeout};
use crate::state::AppState;
use crate::tenancy::rate::RateSlot;

/// Longest accepted `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// How long `DELETE` waits for a running job to stop at its next step
/// before answering with the job still `running`.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

/// A job id from the path; a malformed one is unknown.
pub fn parse_job_id(text: &str) -> Result<JobId, ApiError> {
    text.parse().map_err(|_| job_not_found(text))
}

fn job_not_found(id: &str) -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        "job_not_found",
        format!(
            "job `{}` does not exist",
            id.chars().take(80).collect::<String>()
        ),
    )
}

/// Job `text`, if the principal may see it; another project's job is
/// `job_not_found`, exactly like an id that does not exist.
async fn visible_job(
    state: &AppState,
    principal: &Principal,
    text: &str,
) -> Result<easel_store::Job, ApiError> {
    let id = parse_job_id(text)?;
    match state.jobs.get(id).await {
        Ok(job) if principal.sees(&job.project) => Ok(job),
        Ok(_) | Err(easel_jobs::JobError::NotFound(_)) => Err(job_not_found(text)),
        Err(e) => Err(e.into()),
    }
}

/// A queued job's place in the queue (`None` for any other job).
async fn queue_position(state: &AppState, job: &easel_store::Job) -> Result<Option<u64>, ApiError> {
    if job.status != JobStatus::Queued {
        return Ok(None);
    }
    state
        .jobs
        .db()
        .queue_position(job.id)
        .await
        .map_err(|e| ApiError::store("reading the queue position", e))
}

fn progress_of(state: &AppState, id: JobId) -> Option<(u32, u32)> {
    match state.jobs.hub().latest(id) {
        Some(JobEvent::Progress { step, total, .. }) => Some((step, total)),
        _ => None,
    }
}

/// Queues a job and answers at once with 202. With an `Idempotency-Key`
/// header, a retry returns the job created by the first request (even when
/// the queue is full). With `X-Easel-Timeout`, a job still queued that many
/// seconds later is not run: it fails with `deadline_exceeded`. When the
/// job's tier already holds `queue.max_queued_*` jobs, the answer is 429
/// `queue_full` with `Retry-After`.
#[utoipa::path(
    post,
    path = "/v1/jobs",
    tag = "jobs",
    request_body = CreateJobRequest,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key returns the same job, even when the queue is full"),
        ("X-Easel-Timeout" = Option<u64>, Header, description = "Deadline in whole seconds from submission, 1 to `queue.max_timeout_seconds` (default 86400). A job still queued at its deadline is never run and fails with `deadline_exceeded`; a running one is cancelled at its next step. Stored as the job's `deadline_at`."),
    ),
    responses(
        (status = 202, description = "The job, stored and queued", body = Job),
        (status = 400, description = "Invalid input (a bad `X-Easel-Timeout` is `invalid_timeout`; a seed other than -1 or 0 to 4294967295 is `invalid_seed`)", body = crate::error::ErrorBody),
        (status = 429, description = "The job's tier is full (`queue_full`); nothing was stored", body = crate::error::ErrorBody,
            headers(("Retry-After" = u64, description = "Whole seconds, 1 to 300, until a slot is expected to free, from the current drain rate"))),
    )
)]
pub async fn create_job(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(slot): Extension<RateSlot>,
    RequestTimeout(timeout): RequestTimeout,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateJobRequest>,
) -> Result<Response, ApiError> {
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY);
            Some(
                key.ok_or_else(|| {
                    ApiError::invalid(
                        "invalid_idempotency_key",
                        "Idempotency-Key",
                        format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"),
                    )
                })?
                .to_string(),
            )
        }
    };
    let tier = body.tier()?;
    let mut request = body.request.clone();
    request.strength = None;
    request.low_moderation_offered = state.config.moderation.image_low.is_some();
    let mut valid = request.validate(&state.models)?;
    if let Some(every) = body.previews(valid.params.steps)? {
        valid.output.preview_every_steps = Some(every);
    }
    if valid.stream.is_some() {
        return Err(ApiError::invalid(
            "unsupported_parameter",
            "stream",
            "a job does not stream its response: follow it with GET /v1/jobs/{id}/events",
        ));
    }
    let policy = crate::responsible::check_prompt(
        &state,
        &principal,
        valid.user.as_deref(),
        &valid.params.prompt,
    )
    .await?;
    if let Err(refused) =
        crate::tenancy::rate::admit_images(&state, &principal, &valid.params, &slot).await
    {
        return Ok(refused);
    }
    let trace = crate::correlation::JobTrace::of(&headers);
    let (job, _created) = state
        .jobs
        .submit(NewJob {
            params: valid.params,
            output: valid.output,
            tier,
            project: principal.project(),
            end_user: valid.user.clone(),
            user_id: crate::auth::user_id(&principal, valid.user),
            idempotency_key,
            init_image: None,
            mask: None,
            timeout,
            policy,
            request_id: trace.request_id,
            trace_parent: trace.trace_parent,
        })
        .await?;
    Ok((StatusCode::ACCEPTED, Json(Job::from_record(&job, None))).into_response())
}

/// A job.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = String, Path, description = "Job id, `job_…`")),
    responses(
        (status = 200, description = "The job", body = Job),
        (status = 404, description = "No such job", body = crate::error::ErrorBody),
    )
)]
pub async fn get_job(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathId(id): PathId,
) -> Result<Json<Job>, ApiError> {
    let job = visible_job(&state, &principal, &id).await?;
    let id = job.id;
    let mut dto = Job::from_record(&job, progress_of(&state, id));
    dto.queue_position = queue_position(&state, &job).await?;
    Ok(Json(dto))
}

/// Jobs, newest first, one page at a time.
#[utoipa::path(
    get,
    path = "/v1/jobs",
    tag = "jobs",
    params(ListJobsQuery),
    responses(
        (status = 200, description = "A page of jobs", body = JobList),
        (status = 400, description = "Bad filter, cursor or limit", body = crate::error::ErrorBody),
    )
)]
pub async fn list_jobs(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiQuery(query): ApiQuery<ListJobsQuery>,
) -> Result<Json<JobList>, ApiError> {
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            s.parse::<JobStatus>()
                .map_err(|e| ApiError::invalid("invalid_status", "status", e.to_string()))?,
        ),
    };
    let limit = crate::dto::page_limit(query.limit, state.config.limits.max_page_size)?;
    let page = state
        .jobs
        .list(
            status,
            principal.listing_scope(),
            query.cursor.as_deref().filter(|c| !c.is_empty()),
            limit as u32,
        )
        .await
        .map_err(|e| match e {
            easel_jobs::JobError::Store(easel_store::StoreError::InvalidCursor) => {
                ApiError::invalid(
                    "invalid_cursor",
                    "cursor",
                    "cursor is not one this server issued",
                )
            }
            other => other.into(),
        })?;
    let mut data = Vec::with_capacity(page.jobs.len());
    for j in &page.jobs {
        let mut dto = Job::from_record(j, progress_of(&state, j.id));
        dto.queue_position = queue_position(&state, j).await?;
        data.push(dto);
    }
    Ok(Json(JobList {
        object: "list".into(),
        data,
        has_more: page.next_cursor.is_some(),
        next_cursor: page.next_cursor,
    }))
}

/// Cancels a job: a queued job at once, a running one at its next step.
/// Cancelling a finished job changes nothing and returns it.
#[utoipa::path(
    delete,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = String, Path, description = "Job id, `job_…`")),
    responses(
        (status = 200, description = "The job after cancelling", body = Job),
        (status = 404, description = "No such job", body = crate::error::ErrorBody),
    )
)]
pub async fn cancel_job(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathId(id): PathId,
) -> Result<Json<Job>, ApiError> {
    let id = visible_job(&state, &principal, &id).await?.id;
    let mut job = state.jobs.cancel(id).await?;
    if job.status == JobStatus::Running
        && let Ok(done) = tokio::time::timeout(CANCEL_WAIT, state.jobs.wait(id)).await
    {
        job = done?;
    }
    let mut dto = Job::from_record(&job, progress_of(&state, id));
    dto.queue_position = queue_position(&state, &job).await?;
    Ok(Json(dto))
}

/// Server-sent events of a job: first its current state, then `started`,
/// `progress` (with `step` and `total`), and one of `completed` (with
/// `image_ids`), `failed` (with `code` and `message`) or `cancelled`, after
/// which the stream ends. Each event's `data` is a JSON object with a
/// `type` field equal to the event name.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/events",
    tag = "jobs",
    params(("id" = String, Path, description = "Job id, `job_…`")),
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream", body = String),
        (status = 404, description = "No such job", body = crate::error::ErrorBody),
    )
)]
pub async fn job_events(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    PathId(id): PathId,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let id = visible_job(&state, &principal, &id).await?.id;
    let watch = state.jobs.watch(id).await?;
    let jobs = state.jobs.clone();
    let stream = async_stream::stream! {
        let mut sub = match watch {
            Watch::Finished(event) => {
                yield Ok(sse_event(&event));
                return;
            }
            Watch::Live(sub) => sub,
        };
        yield Ok(sse_event(&sub.current));
        if sub.current.is_terminal() {
            return;
        }
        loop {
            match sub.receiver.recv().await {
                Ok(event) => {
                    yield Ok(sse_event(&event));
                    if event.is_terminal() {
                        return;
                    }
                }
                // A slow reader missed some progress: carry on from here.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => {
                    // Channel closed without a terminal event reaching us
                    // (lagged past it): the store has the final state.
                    if let Ok(job) = jobs.get(id).await
                        && job.status.is_terminal()
                    {
                        yield Ok(sse_event(&easel_jobs::terminal_or_current_event(&job)));
                    }
                    return;
                }
            }
        }
    };
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn sse_event(event: &JobEvent) -> Event {
    Event::default()
        .event(event.name())
        .json_data(event)
        .unwrap_or_else(|_| Event::default().event(event.name()))
}
