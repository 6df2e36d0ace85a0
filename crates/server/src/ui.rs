//! The web UI: static files served at `/` (the page) and `/ui/{path}`
//! (its scripts, styles and icons), built into the binary from
//! `crates/server/ui/` by the build script, or read from `server.ui_dir`
//! on every request while the UI is being worked on; and
//! `/ui/config.json`, the few settings of the page that are not the API's.
//!
//! The page is a client of the public API and nothing else: every call
//! it makes carries the user's key, so it can do nothing the key cannot.
//! Each answer carries a strict Content-Security-Policy (scripts, styles
//! and connections from this origin only, no inline code), an ETag for
//! revalidation, and `Cache-Control: no-cache`, so an upgraded server is
//! never shown with a stale script. Compression is the router's
//! (`app::middleware`).

use std::path::{Component, Path, PathBuf};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::{ApiError, ErrorKind};
use crate::state::AppState;

include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));

/// The policy every UI answer carries.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data: blob:; \
     style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'self'";

/// The UI's routes, when `server.ui` is on.
pub fn routes(state: &AppState) -> Router<AppState> {
    if !state.config.server.ui {
        return Router::new();
    }
    Router::new()
        .route("/", get(index))
        .route("/ui/config.json", get(page_config))
        .route("/ui/{*path}", get(asset))
}

/// `/ui/config.json`: the settings the page reads that are not the API's,
/// today the Grafana base URL its operations view links the dashboards to
/// (`server.grafana_url`, without a trailing slash; `null` when unset).
async fn page_config(State(state): State<AppState>) -> Response {
    let grafana_url = state
        .config
        .server
        .grafana_url
        .as_deref()
        .map(|u| u.trim_end_matches('/'));
    let mut response =
        axum::Json(serde_json::json!({ "grafana_url": grafana_url })).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The built-in file at `path` (relative to `ui/`), if any.
pub fn embedded(path: &str) -> Option<&'static [u8]> {
    ASSETS.iter().find(|(p, _)| *p == path).map(|(_, b)| *b)
}

async fn index(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    serve(&state, "index.html", &headers).await
}

async fn asset(
    State(state): State<AppState>,
    UrlPath(path): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(&state, &path, &headers).await
}

async fn serve(state: &AppState, path: &str, headers: &HeaderMap) -> Result<Response, ApiError> {
    let bytes = match &state.config.server.ui_dir {
        Some(dir) => from_dir(dir, path).await,
        None => embedded(path).map(<[u8]>::to_vec),
    }
    .ok_or_else(|| not_found(path))?;
    let etag = format!("\"{}\"", &blake3::hash(&bytes).to_hex()[..32]);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, content_type(path))],
            axum::body::Body::from(bytes),
        )
            .into_response()
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Ok(response)
}

/// `path` under `dir`, refusing anything that climbs out of it.
async fn from_dir(dir: &Path, path: &str) -> Option<Vec<u8>> {
    let rel = PathBuf::from(path);
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    tokio::fs::read(dir.join(rel)).await.ok()
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        Some("webmanifest") => "application/manifest+json",
        _ => "application/octet-stream",
    }
}

fn not_found(path: &str) -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        "ui_file_not_found",
        format!(
            "the web UI has no file `{}`",
            path.chars().take(120).collect::<String>()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_built_in() {
        let page = embedded("index.html").expect("ui/index.html is embedded");
        assert!(std::str::from_utf8(page).unwrap().contains("<html"));
    }

    #[test]
    fn types_follow_the_extension() {
        assert_eq!(content_type("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("style.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("icon.svg"), "image/svg+xml");
        assert_eq!(content_type("README"), "application/octet-stream");
    }

    #[tokio::test]
    async fn the_folder_override_never_leaves_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.js"), "x").unwrap();
        assert_eq!(from_dir(dir.path(), "a.js").await.unwrap(), b"x");
        assert!(from_dir(dir.path(), "../etc/passwd").await.is_none());
        assert!(from_dir(dir.path(), "/etc/passwd").await.is_none());
        assert!(from_dir(dir.path(), "missing.js").await.is_none());
    }
}
