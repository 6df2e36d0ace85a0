//! The API's one error type, and the one place errors become HTTP.
//!
//! Every failure a client can see is an [`ApiError`]: a [`ErrorKind`] that
//! decides the status and OpenAI's `type`, a stable snake_case `code`, the
//! request field at fault (`param`) and a message naming the limit. Errors of
//! the inner layers (parameter validation, the job system, signed links) and
//! axum's own extractor rejections convert into it here, so no handler
//! builds a status code by hand and no error leaves in another shape.

use axum::Json;
use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use easel_core::ParamError;
use easel_jobs::models::UnloadError;
use easel_jobs::{JobError, ModelLookupError};
use serde::Serialize;

use crate::signing::LinkError;

/// The class of an error: decides the HTTP status and OpenAI's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: the request is malformed or a value is out of range.
    InvalidRequest,
    /// 401: no or an unknown API key.
    Unauthenticated,
    /// 403: authenticated but not allowed, or a bad signed link.
    Forbidden,
    /// 404: the thing named does not exist.
    NotFound,
    /// 405: the route exists with other methods.
    MethodNotAllowed,
    /// 409: the request conflicts with the resource's state.
    Conflict,
    /// 413: the body is over the configured limit.
    PayloadTooLarge,
    /// 415: the body's content type is not the one the route takes.
    UnsupportedMediaType,
    /// 429: the queue is full; come back after `Retry-After`.
    TooManyRequests,
    /// 500: a bug or an infrastructure failure.
    Internal,
    /// 503: not ready (model loading, shutting down).
    Unavailable,
    /// 504: the synchronous wait ran out.
    Timeout,
}

impl ErrorKind {
    fn status(self) -> StatusCode {
        match self {
            ErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// OpenAI's `type` field.
    fn openai_type(self) -> &'static str {
        match self {
            ErrorKind::Unauthenticated => "authentication_error",
            ErrorKind::Forbidden => "permission_error",
            ErrorKind::TooManyRequests => "rate_limit_error",
            ErrorKind::Internal | ErrorKind::Unavailable | ErrorKind::Timeout => "server_error",
            _ => "invalid_request_error",
        }
    }
}

/// An error as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// Status and type.
    pub kind: ErrorKind,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable message naming the field and limit.
    pub message: String,
    /// The request field at fault.
    pub param: Option<&'static str>,
    /// Sent as the `Retry-After` header, in whole seconds (429 and 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A new error.
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            code,
            message: message.into(),
            param: None,
            retry_after: None,
        }
    }

    /// Tells the client when to try again (the `Retry-After` header).
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Names the request field at fault.
    pub fn with_param(mut self, param: &'static str) -> Self {
        self.param = Some(param);
        self
    }

    /// 400 with a code, naming a field.
    pub fn invalid(code: &'static str, param: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, code, message).with_param(param)
    }

    /// 500 for an unexpected failure. The detail is logged, not sent.
    pub fn internal(context: &str, error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "{context}");
        Self::new(
            ErrorKind::Internal,
            "internal_error",
            format!("internal error while {context}; see the server log"),
        )
    }

    /// A store error: 503 `database_unavailable` (or `storage_unavailable`
    /// for the object store) with `Retry-After: 2` when the dependency did
    /// not answer, so clients retry instead of giving up on a restart or a
    /// failover; otherwise [`ApiError::internal`].
    pub fn store(context: &str, error: easel_store::StoreError) -> Self {
        if !error.is_unavailable() {
            return Self::internal(context, error);
        }
        tracing::warn!(%error, "{context}: dependency unavailable");
        let (code, what) = match error {
            easel_store::StoreError::Blob(_) | easel_store::StoreError::StorageUnavailable(_) => {
                ("storage_unavailable", "the object store")
            }
            _ => ("database_unavailable", "the database"),
        };
        Self::new(
            ErrorKind::Unavailable,
            code,
            format!("{what} did not answer while {context}; retry in a few seconds"),
        )
        .with_retry_after(2)
    }

    /// The error for a job that failed in the worker, from the code and
    /// message it recorded. Codes that blame the request (a size the engine
    /// refused, say) stay 4xx; everything else is the server's fault.
    pub fn from_job_failure(code: &str, message: &str) -> Self {
        const BAD_REQUEST: &[&str] = &[
            "invalid_size",
            "invalid_steps",
            "invalid_guidance_scale",
            "invalid_strength",
            "invalid_image",
            "invalid_sampler",
            "image_rejected",
            // A LoRA that does not fit the model, or changed since the
            // job was accepted.
            "lora_not_found",
            "lora_invalid",
            "lora_unknown_key",
            "lora_unmatched_key",
            "lora_shape_mismatch",
            "lora_invalid_weight",
            "lora_changed",
        ];
        const UNAVAILABLE: &[&str] = &["model_not_found", "model_not_ready"];
        if code == "deadline_exceeded" {
            return Self::new(ErrorKind::Timeout, "deadline_exceeded", message);
        }
        if let Some(code) = BAD_REQUEST.iter().find(|c| **c == code) {
            return Self::new(ErrorKind::InvalidRequest, code, message);
        }
        if let Some(code) = UNAVAILABLE.iter().find(|c| **c == code) {
            return Self::new(ErrorKind::Unavailable, code, message);
        }
        tracing::warn!(code, message, "job failed");
        Self::new(
            ErrorKind::Internal,
            "generation_failed",
            format!("generation failed ({code}): {message}"),
        )
    }

    /// The HTTP status this error maps to.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// Its stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// Its message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The body it answers with, as JSON (a batch's error file carries it
    /// for each request line that failed).
    pub fn body_json(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind.openai_type(),
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

/// The body: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// OpenAI's error object.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Human-readable explanation.
    pub message: String,
    /// Class: `invalid_request_error`, `authentication_error`,
    /// `permission_error` or `server_error`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The request field at fault, or null.
    pub param: Option<&'static str>,
    /// Stable machine-readable code, e.g. `invalid_size`.
    pub code: &'static str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            error: ErrorDetail {
                message: self.message,
                kind: self.kind.openai_type(),
                param: self.param,
                code: self.code,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<ParamError> for ApiError {
    fn from(e: ParamError) -> Self {
        ApiError::invalid(e.code, e.field, e.message)
    }
}

impl From<ModelLookupError> for ApiError {
    fn from(e: ModelLookupError) -> Self {
        match e {
            ModelLookupError::NotFound { .. } => {
                ApiError::new(ErrorKind::NotFound, "model_not_found", e.to_string())
                    .with_param("model")
            }
            ModelLookupError::NotReady { .. } => {
                ApiError::new(ErrorKind::Unavailable, "model_not_ready", e.to_string())
                    .with_param("model")
            }
        }
    }
}

impl From<UnloadError> for ApiError {
    fn from(e: UnloadError) -> Self {
        match e {
            UnloadError::NotFound(e) => ApiError::from(e),
            e @ UnloadError::InUse { .. } => {
                ApiError::new(ErrorKind::Conflict, "model_in_use", e.to_string())
            }
            e @ UnloadError::Loading { .. } => {
                ApiError::new(ErrorKind::Conflict, "model_loading", e.to_string())
            }
        }
    }
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::NotFound(id) => ApiError::new(
                ErrorKind::NotFound,
                "job_not_found",
                format!("job `{id}` does not exist"),
            ),
            JobError::Model(e) => e.into(),
            JobError::Param(e) => e.into(),
            JobError::ShuttingDown => ApiError::new(
                ErrorKind::Unavailable,
                "shutting_down",
                "the server is shutting down and takes no new jobs",
            ),
            JobError::QueueFull {
                tier,
                limit,
                queued,
                retry_after,
            } => ApiError::new(
                ErrorKind::TooManyRequests,
                "queue_full",
                format!(
                    "the {tier} queue is full ({queued} jobs queued, limit {limit}: \
                     queue.max_queued_{tier}); retry after {} s",
                    retry_after.as_secs(),
                    tier = tier.as_str(),
                ),
            )
            .with_retry_after(retry_after.as_secs()),
            JobError::IdempotencyConflict => ApiError::new(
                ErrorKind::Conflict,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request body",
            ),
            JobError::Store(e) => ApiError::store("accessing the job store", e),
            JobError::Blob(e) => ApiError::store("accessing the image store", e),
        }
    }
}

impl From<LinkError> for ApiError {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::InvalidSignature => {
                ApiError::new(ErrorKind::Forbidden, "invalid_signature", e.to_string())
            }
            LinkError::Expired => ApiError::new(
                ErrorKind::Forbidden,
                "link_expired",
                "the link has expired; fetch the image record again for a fresh one",
            ),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                ErrorKind::UnsupportedMediaType,
                "unsupported_media_type",
                "expected a body with `Content-Type: application/json`",
            ),
            JsonRejection::JsonSyntaxError(e) => ApiError::new(
                ErrorKind::InvalidRequest,
                "invalid_json",
                format!("the body is not valid JSON: {}", e.body_text()),
            ),
            JsonRejection::JsonDataError(e) => ApiError::new(
                ErrorKind::InvalidRequest,
                "invalid_request_body",
                format!("the JSON body does not match the schema: {}", e.body_text()),
            ),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                payload_too_large()
            }
            other => ApiError::new(ErrorKind::InvalidRequest, "invalid_body", other.body_text()),
        }
    }
}

/// The error for a body over the configured limit.
pub fn payload_too_large() -> ApiError {
    ApiError::new(
        ErrorKind::PayloadTooLarge,
        "payload_too_large",
        "the request body is larger than the server's limit (server.body_limit_bytes)",
    )
}

impl From<MultipartRejection> for ApiError {
    fn from(r: MultipartRejection) -> Self {
        ApiError::new(
            ErrorKind::UnsupportedMediaType,
            "unsupported_media_type",
            format!("expected a `multipart/form-data` body: {}", r.body_text()),
        )
    }
}

impl From<MultipartError> for ApiError {
    fn from(e: MultipartError) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return payload_too_large();
        }
        ApiError::new(
            ErrorKind::InvalidRequest,
            "invalid_multipart",
            format!("the multipart body could not be read: {}", e.body_text()),
        )
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::new(ErrorKind::InvalidRequest, "invalid_query", r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::new(ErrorKind::InvalidRequest, "invalid_path", r.body_text())
    }
}

/// The error for an upload the media decoder refused (or could not resize).
pub fn from_media_error(e: easel_media::MediaError) -> ApiError {
    use easel_media::MediaError;
    match e {
        MediaError::ImageTooLarge { .. } => {
            ApiError::invalid("image_too_large", "image", e.to_string())
        }
        MediaError::FileTooLarge { .. } => payload_too_large().with_param("image"),
        MediaError::InvalidImage { .. } | MediaError::UnsupportedFormat { .. } => {
            ApiError::invalid(
                "invalid_image",
                "image",
                format!("the upload is not a readable PNG, JPEG or WebP image: {e}"),
            )
        }
        other => ApiError::invalid(other.code(), "image", other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unanswering_store_is_503_with_retry_after_and_other_store_errors_are_500() {
        let down = ApiError::store(
            "reading",
            easel_store::StoreError::StorageUnavailable("timeout".into()),
        );
        let response = down.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "2");
        let refused = ApiError::store("reading", easel_store::StoreError::InvalidCursor);
        assert_eq!(
            refused.into_response().status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn param_errors_keep_their_code_and_field() {
        let e: ApiError = ParamError::new("size", "invalid_size", "bad").into();
        assert_eq!(
            (e.status(), e.code, e.param),
            (StatusCode::BAD_REQUEST, "invalid_size", Some("size"))
        );
    }

    #[test]
    fn a_full_queue_is_429_with_retry_after_naming_the_tier_and_limit() {
        let e: ApiError = JobError::QueueFull {
            tier: easel_core::Tier::Batch,
            limit: 10,
            queued: 10,
            retry_after: std::time::Duration::from_secs(7),
        }
        .into();
        assert_eq!(
            (e.status(), e.code, e.retry_after),
            (StatusCode::TOO_MANY_REQUESTS, "queue_full", Some(7))
        );
        assert!(e.message.contains("batch") && e.message.contains("limit 10"));
        let response = e.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
    }

    #[test]
    fn link_errors_are_forbidden_with_distinct_codes() {
        let a: ApiError = LinkError::InvalidSignature.into();
        let b: ApiError = LinkError::Expired.into();
        assert_eq!(
            (a.status(), a.code),
            (StatusCode::FORBIDDEN, "invalid_signature")
        );
        assert_eq!(
            (b.status(), b.code),
            (StatusCode::FORBIDDEN, "link_expired")
        );
    }
}
