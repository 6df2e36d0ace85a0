//! Extractors whose rejections are [`ApiError`]s, the request deadline
//! header, and the API-key check.
//!
//! axum's own `Json`, `Query` and `Path` reject with plain-text bodies; these
//! wrappers convert every rejection into the OpenAI error shape.

use std::time::Duration;

use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use serde::de::DeserializeOwned;

use crate::auth::{Principal, Scope};
use crate::error::{ApiError, ErrorKind};
use crate::state::AppState;
use crate::tenancy::rate::RateSlot;

/// `Json<T>` with OpenAI-shaped rejections.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Self(value))
    }
}

/// `Query<T>` with OpenAI-shaped rejections.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// A path id, parsed into its typed form; a malformed id is simply unknown
/// (404 with the route's not-found code), as a client cannot tell the two apart.
pub struct PathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(id) =
            axum::extract::Path::<String>::from_request_parts(parts, state).await?;
        Ok(Self(id))
    }
}

/// The request header carrying a job's deadline.
pub const TIMEOUT_HEADER: &str = "X-Easel-Timeout";

/// The deadline a request asks for: `X-Easel-Timeout`, whole seconds from
/// 1 to `queue.max_timeout_seconds`, counted from when the job is stored;
/// `None` when absent. A header rather than a body field, so the JSON and the
/// multipart (edits) routes take it the same way and OpenAI's request bodies
/// stay as they are. Parsed once per request, here; handlers pass the value
/// on. A bad value is 400 `invalid_timeout` naming the header and the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTimeout(pub Option<Duration>);

impl RequestTimeout {
    /// Parses the header of `headers`, allowing 1 to `max_seconds`.
    pub fn parse(headers: &axum::http::HeaderMap, max_seconds: u64) -> Result<Self, ApiError> {
        let Some(value) = headers.get(TIMEOUT_HEADER) else {
            return Ok(Self(None));
        };
        let text = value.to_str().unwrap_or_default().trim();
        match text.parse::<u64>() {
            Ok(seconds) if (1..=max_seconds).contains(&seconds) => {
                Ok(Self(Some(Duration::from_secs(seconds))))
            }
            _ => Err(ApiError::invalid(
                "invalid_timeout",
                TIMEOUT_HEADER,
                format!(
                    "{TIMEOUT_HEADER} must be a whole number of seconds from 1 to {max_seconds} \
                     (queue.max_timeout_seconds), got `{}`",
                    text.chars().take(40).collect::<String>()
                ),
            )),
        }
    }
}

impl FromRequestParts<AppState> for RequestTimeout {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Self::parse(&parts.headers, state.config.queue.max_timeout_seconds)
    }
}

/// The API key a request carries: a bearer token, or the password of
/// HTTP Basic credentials.
pub fn bearer_token(parts: &axum::http::HeaderMap) -> Option<String> {
    let value = parts.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(token.trim().to_string());
    }
    // HTTP Basic, as AUTOMATIC1111 clients send it (`--api-auth`,
    // `webuiapi`'s `set_auth(user, password)`): the password is the key,
    // the user name is not checked.
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (_, password) = text.split_once(':')?;
        return Some(password.to_string());
    }
    None
}

/// Middleware for the keyed routes: authenticates ([`crate::tenancy::authenticate`]),
/// checks the route's scope ([`crate::routes::table`]; 403
/// `missing_scope` naming it), charges the request rate
/// ([`crate::tenancy::rate`]; 429 `rate_limit_exceeded`), and stores the
/// [`Principal`] and a [`RateSlot`] as extensions. The answer carries the
/// `x-ratelimit-*` headers of every limit the request was charged against.
pub async fn require_key(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let principal = crate::tenancy::authenticate(&state, request.headers()).await?;
    // A route missing from the table needs the widest scope: fail closed.
    let scope = matched
        .as_ref()
        .and_then(|m| crate::routes::scope_of(request.method(), m.as_str()))
        .unwrap_or(Scope::Admin);
    if !principal.allows(scope) {
        return Err(missing_scope(&principal, scope));
    }
    let slot = RateSlot::default();
    if let Err(refused) = crate::tenancy::rate::take_request(&state, &principal, &slot).await {
        return Ok(refused);
    }
    request.extensions_mut().insert(principal);
    request.extensions_mut().insert(slot.clone());
    let mut response = next.run(request).await;
    slot.apply(response.headers_mut());
    Ok(response)
}

/// 403 `missing_scope`, naming the scope.
pub fn missing_scope(principal: &Principal, scope: Scope) -> ApiError {
    ApiError::new(
        ErrorKind::Forbidden,
        "missing_scope",
        format!(
            "the key `{}` lacks the `{}` scope this route needs",
            principal.name(),
            scope.as_str()
        ),
    )
}
