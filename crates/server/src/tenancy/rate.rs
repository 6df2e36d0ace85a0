//! Rate limits, concurrency limits and per-request caps.
//!
//! Every limit is a generic-cell-rate bucket in the database
//! (`easel_store::gcra`), shared by every API replica: a bucket of `L` per
//! minute admits `L` at once and refills one every `60 s / L`. A request
//! takes one unit from its key's and its project's *requests* buckets (in
//! the authentication middleware); a generation takes `n` from their
//! *images* buckets (in [`admit_images`]), and is refused when the project
//! or the key already has `concurrent_jobs` jobs queued or running. A
//! request refused by any bucket takes nothing from any.
//!
//! Answers carry OpenAI's headers (`x-ratelimit-limit-requests`,
//! `x-ratelimit-remaining-requests`, `x-ratelimit-reset-requests`, and the
//! same for `images`), from the tightest bucket of each kind; a refusal is
//! 429 `rate_limit_exceeded` with `Retry-After`.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use easel_core::{GenerationParams, Limits};
use easel_store::{RateState, RateTake};

use crate::auth::{KeyHolder, Principal};
use crate::error::{ApiError, ErrorKind};
use crate::state::AppState;

/// What a request is charged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// One per request.
    Requests,
    /// `n` per generation.
    Images,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Requests => "requests",
            Unit::Images => "images",
        }
    }

    fn limit_of(self, limits: &Limits) -> Option<u64> {
        match self {
            Unit::Requests => limits.requests_per_minute,
            Unit::Images => limits.images_per_minute,
        }
    }
}

/// The bucket states a request collected, turned into headers on its
/// answer by the authentication middleware (a request extension).
#[derive(Debug, Clone, Default)]
pub struct RateSlot(Arc<Mutex<Vec<(Unit, RateState)>>>);

impl RateSlot {
    fn record(&self, unit: Unit, state: RateState) {
        if let Ok(mut held) = self.0.lock() {
            held.retain(|(u, _)| *u != unit);
            held.push((unit, state));
        }
    }

    /// Writes the `x-ratelimit-*` headers of what was recorded.
    pub fn apply(&self, headers: &mut HeaderMap) {
        let held = self.0.lock().map(|h| h.clone()).unwrap_or_default();
        for (unit, state) in held {
            set_headers(headers, unit, &state);
        }
    }
}

fn set_headers(headers: &mut HeaderMap, unit: Unit, state: &RateState) {
    let name = |what: &str| {
        HeaderName::try_from(format!("x-ratelimit-{what}-{}", unit.as_str()))
            .expect("static header names are valid")
    };
    headers.insert(name("limit"), HeaderValue::from(state.limit));
    headers.insert(name("remaining"), HeaderValue::from(state.remaining));
    if let Ok(reset) = HeaderValue::from_str(&openai_duration(state.reset_us)) {
        headers.insert(name("reset"), reset);
    }
}

/// A duration as OpenAI writes it in `x-ratelimit-reset-*`: `6s`, `1m0s`,
/// `250ms`.
pub fn openai_duration(us: i64) -> String {
    let ms = (us.max(0) + 999) / 1000;
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = (ms + 999) / 1000;
    if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m{}s", s / 60, s % 60)
    }
}

/// The buckets `holder` is charged `cost` in for `unit`: its key's and its
/// project's, where those have a limit.
fn takes(holder: &KeyHolder, unit: Unit, cost: u64) -> Vec<RateTake> {
    let mut takes = Vec::new();
    if let Some(limit) = unit.limit_of(&holder.limits) {
        let key = holder
            .id
            .clone()
            .unwrap_or_else(|| format!("config:{}", holder.name));
        takes.push(RateTake {
            subject: format!("key:{key}:{}", unit.as_str()),
            limit,
            cost,
        });
    }
    if let Some(limit) = unit.limit_of(&holder.project_limits) {
        takes.push(RateTake {
            subject: format!("project:{}:{}", holder.project, unit.as_str()),
            limit,
            cost,
        });
    }
    takes
}

/// The state to report of several buckets: the one with least room.
fn tightest(states: &[RateState]) -> Option<RateState> {
    states
        .iter()
        .copied()
        .min_by_key(|s| (s.remaining, std::cmp::Reverse(s.reset_us)))
}

/// A refusal: 429 `rate_limit_exceeded`, `Retry-After`, and the headers.
fn refusal(unit: Unit, states: &[RateState], slot: &RateSlot, what: &str) -> Response {
    let worst = states
        .iter()
        .copied()
        .max_by_key(|s| s.retry_after_us)
        .unwrap_or(RateState {
            limit: 0,
            remaining: 0,
            reset_us: 0,
            retry_after_us: 1_000_000,
        });
    let retry = ((worst.retry_after_us.max(1) + 999_999) / 1_000_000).max(1) as u64;
    if let Some(state) = tightest(states) {
        slot.record(unit, state);
    }
    let mut response = ApiError::new(
        ErrorKind::TooManyRequests,
        "rate_limit_exceeded",
        format!(
            "rate limit reached: {what} ({} per minute); retry after {retry} s",
            worst.limit
        ),
    )
    .with_retry_after(retry)
    .into_response();
    slot.apply(response.headers_mut());
    response
}

/// Charges one request to the principal's request buckets; `Err` holds the
/// 429 answer.
pub async fn take_request(
    state: &AppState,
    principal: &Principal,
    slot: &RateSlot,
) -> Result<(), Response> {
    let Principal::Key(holder) = principal else {
        return Ok(());
    };
    charge(state, holder, Unit::Requests, 1, slot).await
}

async fn charge(
    state: &AppState,
    holder: &KeyHolder,
    unit: Unit,
    cost: u64,
    slot: &RateSlot,
) -> Result<(), Response> {
    let takes = takes(holder, unit, cost);
    if takes.is_empty() {
        return Ok(());
    }
    let decision = state
        .jobs
        .db()
        .take_rate(&takes)
        .await
        .map_err(|e| ApiError::store("checking rate limits", e).into_response())?;
    if !decision.admitted {
        let what = format!(
            "{} of {}",
            unit.as_str(),
            if takes.len() == 1 && takes[0].subject.starts_with("key:") {
                format!("key `{}`", holder.name)
            } else {
                format!("project `{}` or its key `{}`", holder.project, holder.name)
            }
        );
        tracing::info!(project = %holder.project, key = %holder.name, unit = unit.as_str(), "rate limited");
        return Err(refusal(unit, &decision.states, slot, &what));
    }
    if let Some(state) = tightest(&decision.states) {
        slot.record(unit, state);
    }
    Ok(())
}

/// The smaller of two optional limits.
fn min_limit(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Refuses a request over the key's or project's caps on `n`, steps and
/// pixels (400 `limit_exceeded` naming the field and the limit); a batch
/// checks each request line with it.
pub fn check_caps(principal: &Principal, params: &GenerationParams) -> Result<(), ApiError> {
    let Principal::Key(holder) = principal else {
        return Ok(());
    };
    let (key, project) = (&holder.limits, &holder.project_limits);
    let pixels = u64::from(params.size.width) * u64::from(params.size.height);
    let caps = [
        (
            "n",
            u64::from(params.n),
            min_limit(key.max_n, project.max_n),
            "max_n",
        ),
        (
            "steps",
            u64::from(params.steps),
            min_limit(key.max_steps, project.max_steps),
            "max_steps",
        ),
        (
            "size",
            pixels,
            min_limit(key.max_pixels, project.max_pixels),
            "max_pixels",
        ),
    ];
    for (field, value, cap, name) in caps {
        if let Some(cap) = cap
            && value > cap
        {
            return Err(ApiError::invalid(
                "limit_exceeded",
                field,
                format!(
                    "{field} is {value}, above the limit of {cap} ({name}) for project `{}`",
                    holder.project
                ),
            ));
        }
    }
    Ok(())
}

/// Checks a generation against the principal's caps (400 naming the field
/// and the limit), its concurrency limits and its image buckets (429).
pub async fn admit_images(
    state: &AppState,
    principal: &Principal,
    params: &GenerationParams,
    slot: &RateSlot,
) -> Result<(), Response> {
    let Principal::Key(holder) = principal else {
        return Ok(());
    };
    check_caps(principal, params).map_err(IntoResponse::into_response)?;
    let (key, project) = (&holder.limits, &holder.project_limits);
    if key.concurrent_jobs.is_some() || project.concurrent_jobs.is_some() {
        let (all, mine) = state
            .jobs
            .db()
            .active_jobs(&holder.project, Some(&holder.name))
            .await
            .map_err(|e| ApiError::store("counting active jobs", e).into_response())?;
        let over = [
            (
                project.concurrent_jobs,
                all,
                format!("project `{}`", holder.project),
            ),
            (key.concurrent_jobs, mine, format!("key `{}`", holder.name)),
        ]
        .into_iter()
        .find(|(limit, active, _)| limit.is_some_and(|l| *active >= l));
        if let Some((limit, active, who)) = over {
            let mut response = ApiError::new(
                ErrorKind::TooManyRequests,
                "rate_limit_exceeded",
                format!(
                    "{who} has {active} jobs queued or running, its limit of concurrent jobs \
                     ({}); retry when one finishes",
                    limit.unwrap_or_default()
                ),
            )
            .with_retry_after(1)
            .into_response();
            slot.apply(response.headers_mut());
            return Err(response);
        }
    }
    crate::tenancy::quota::admit(state, principal, params).await?;
    charge(state, holder, Unit::Images, u64::from(params.n), slot).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_durations_read_like_openai() {
        assert_eq!(openai_duration(250_000), "250ms");
        assert_eq!(openai_duration(6_000_000), "6s");
        assert_eq!(openai_duration(5_999_001), "6s");
        assert_eq!(openai_duration(60_000_000), "1m0s");
        assert_eq!(openai_duration(0), "0ms");
    }
}
