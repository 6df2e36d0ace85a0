//! A batch's input file, parsed at the edge: every line must be a request
//! to the batch's endpoint whose body passes the same validation as the
//! endpoint itself (and the caller's caps), or the batch is refused with
//! the lines at fault, and nothing is queued.

use std::collections::HashSet;

use easel_jobs::batches::ItemRequest;
use easel_store::NewBatchItem;

use crate::auth::Principal;
use crate::dto::batches::RequestLine;
use crate::dto::images::CreateImageRequest;
use crate::error::ApiError;
use crate::state::AppState;

/// The endpoint a batch's lines may call.
pub const ENDPOINT: &str = "/v1/images/generations";

/// The longest `custom_id`, in bytes.
pub const MAX_CUSTOM_ID: usize = 512;

/// How many bad lines the refusal names.
const NAMED_ERRORS: usize = 20;

/// One bad line: its number (from 1) and why.
#[derive(Debug, Clone, PartialEq)]
pub struct LineError {
    /// Line number, from 1.
    pub line: usize,
    /// Why it was refused.
    pub message: String,
}

/// Parses the lines of `text` into items (with their requests), or the
/// refusal naming the bad
/// lines (400 `invalid_batch_input`), an empty file (400 `empty_batch`) or
/// one with too many lines (400 `batch_too_large`).
pub fn parse(
    state: &AppState,
    principal: &Principal,
    text: &str,
    max_requests: usize,
) -> Result<Vec<(NewBatchItem, ItemRequest)>, ApiError> {
    let mut items = Vec::new();
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    let mut lines = 0;
    for (index, raw) in text.split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.trim().is_empty() {
            continue;
        }
        lines += 1;
        if lines > max_requests {
            return Err(ApiError::invalid(
                "batch_too_large",
                "input_file_id",
                format!(
                    "the input file has more than {max_requests} requests, the most one batch \
                     may have (batches.max_requests)"
                ),
            ));
        }
        match parse_line(state, principal, raw, &mut seen) {
            Ok(item) => items.push(item),
            Err(message) => errors.push(LineError {
                line: index + 1,
                message,
            }),
        }
    }
    if !errors.is_empty() {
        let named: Vec<String> = errors
            .iter()
            .take(NAMED_ERRORS)
            .map(|e| format!("line {}: {}", e.line, e.message))
            .collect();
        let more = errors.len().saturating_sub(NAMED_ERRORS);
        return Err(ApiError::invalid(
            "invalid_batch_input",
            "input_file_id",
            format!(
                "{} of {lines} lines of the input file are invalid; nothing was queued. {}{}",
                errors.len(),
                named.join("; "),
                if more > 0 {
                    format!("; and {more} more")
                } else {
                    String::new()
                }
            ),
        ));
    }
    if items.is_empty() {
        return Err(ApiError::invalid(
            "empty_batch",
            "input_file_id",
            "the input file has no request lines",
        ));
    }
    Ok(items)
}

/// One line, or why it is refused.
fn parse_line(
    state: &AppState,
    principal: &Principal,
    raw: &str,
    seen: &mut HashSet<String>,
) -> Result<(NewBatchItem, ItemRequest), String> {
    let line: RequestLine = serde_json::from_str(raw).map_err(|e| {
        format!(
            "not a request object with custom_id, method, url and body ({})",
            e
        )
    })?;
    if line.custom_id.is_empty() || line.custom_id.len() > MAX_CUSTOM_ID {
        return Err(format!(
            "custom_id must be 1 to {MAX_CUSTOM_ID} bytes (it has {})",
            line.custom_id.len()
        ));
    }
    if line.method != "POST" {
        return Err(format!("method is `{}`; only POST is allowed", line.method));
    }
    if line.url != ENDPOINT {
        return Err(format!(
            "url is `{}`; every line must call the batch's endpoint `{ENDPOINT}`",
            line.url
        ));
    }
    let body: CreateImageRequest = serde_json::from_value(line.body)
        .map_err(|e| format!("body is not an image generation request: {e}"))?;
    let mut body = body;
    body.strength = None;
    body.low_moderation_offered = state.config.moderation.image_low.is_some();
    let valid = body.validate(&state.models).map_err(describe)?;
    if valid.stream.is_some() {
        return Err(
            "`stream` is not supported in a batch: its results go to the output file".into(),
        );
    }
    crate::tenancy::rate::check_caps(principal, &valid.params).map_err(describe)?;
    if !seen.insert(line.custom_id.clone()) {
        return Err(format!(
            "custom_id `{}` is used by an earlier line; each must be unique",
            line.custom_id
        ));
    }
    let request = ItemRequest {
        params: valid.params,
        output: valid.output,
        end_user: valid.user,
    };
    let item = NewBatchItem {
        custom_id: line.custom_id,
        request: serde_json::to_value(&request)
            .map_err(|e| format!("the request could not be stored: {e}"))?,
        sample: false,
    };
    Ok((item, request))
}

/// A validation error as a line's reason: its code and message.
fn describe(e: ApiError) -> String {
    format!("{} ({})", e.message(), e.code())
}
