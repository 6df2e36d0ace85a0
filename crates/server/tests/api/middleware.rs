//! The HTTP middleware stack (`easel_server::app::middleware`): panics as
//! 500s, the request timeout, compression and CORS.
//!
//! Panics and timeouts need handlers the API does not have (one that panics,
//! one that never answers), so those tests wrap a router of their own in the
//! same public function the server uses; compression and CORS are checked
//! on the real app.

use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use easel_config::HttpConfig;
use easel_server::app::middleware;

use crate::helpers::{assert_error, spawn_app, spawn_app_with, startup_error, test_config};

/// Serves `router` wrapped in the middleware stack on 127.0.0.1:0 and
/// returns its base URL; the server lives as long as the test's runtime.
async fn serve_with_middleware(router: Router, http: &HttpConfig) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = middleware(router, http);
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn panics() -> &'static str {
    panic!("a bug in a handler")
}

fn test_router() -> Router {
    Router::new()
        .route("/panics", get(panics))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                "too late"
            }),
        )
        // An SSE-like untimed route: the timeout must leave it alone.
        .route(
            "/v1/jobs/{id}/events",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(120)).await;
                "the job ended"
            }),
        )
        .route(
            "/image",
            get(|| async { ([(header::CONTENT_TYPE, "image/png")], vec![7u8; 4096]) }),
        )
}

#[tokio::test]
async fn a_handler_that_panics_answers_500_in_the_error_shape() {
    let base = serve_with_middleware(test_router(), &HttpConfig::default()).await;
    let client = reqwest::Client::new();

    let response = client.get(format!("{base}/panics")).send().await.unwrap();

    let body = assert_error(response, 500, "internal_error").await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(!message.contains("a bug in a handler"), "{body}");
    // The connection survived the panic: the server still answers.
    let again = client.get(format!("{base}/image")).send().await.unwrap();
    assert_eq!(again.status(), 200);
}

// Paused time: the clock jumps to the next timer whenever the runtime is
// idle, so the 60 s timeout and the 120 s stream cost no real time.
#[tokio::test(start_paused = true)]
async fn a_request_over_the_timeout_answers_504_request_timeout() {
    let http = HttpConfig {
        request_timeout_seconds: 60,
        ..HttpConfig::default()
    };
    let started = tokio::time::Instant::now();
    let base = serve_with_middleware(test_router(), &http).await;
    let client = reqwest::Client::new();

    let response = client.get(format!("{base}/slow")).send().await.unwrap();
    let body = assert_error(response, 504, "request_timeout").await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("http.request_timeout_seconds (60 s)"),
        "{body}"
    );
    assert_eq!(started.elapsed().as_secs(), 60, "answered at the timeout");

    // The job event stream (120 s here) outlives the timeout.
    let events = client
        .get(format!("{base}/v1/jobs/abc/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    assert_eq!(events.text().await.unwrap(), "the job ended");
}

#[tokio::test]
async fn image_bytes_are_not_compressed() {
    let base = serve_with_middleware(test_router(), &HttpConfig::default()).await;

    let response = reqwest::Client::new()
        .get(format!("{base}/image"))
        .header(header::ACCEPT_ENCODING, "gzip, br")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    assert!(response.headers().get(header::CONTENT_ENCODING).is_none());
    assert_eq!(response.bytes().await.unwrap().len(), 4096);
}

#[tokio::test]
async fn json_is_gzipped_when_asked_and_no_cors_headers_are_sent_by_default() {
    let app = spawn_app().await;

    let response = app
        .client
        .get(app.url("/v1/models"))
        .header(header::ACCEPT_ENCODING, "gzip")
        .header(header::ORIGIN, "https://app.example.com")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers[header::CONTENT_ENCODING], "gzip");
    assert!(headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    let body = response.bytes().await.unwrap();
    assert_eq!(&body[..2], &[0x1f, 0x8b], "a gzip stream starts 1f 8b");

    // Without Accept-Encoding the JSON comes as it is.
    let plain = app.client.get(app.url("/v1/models")).send().await.unwrap();
    assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
    let _: serde_json::Value = plain.json().await.unwrap();
}

#[tokio::test]
async fn a_cors_preflight_is_answered_for_a_configured_origin_only() {
    let app = spawn_app_with(|c| {
        c.http.cors_allowed_origins = vec!["https://app.example.com".into()];
    })
    .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/v1/images/generations"))
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                "authorization,content-type",
            )
            .send()
    };

    let allowed = preflight("https://app.example.com").await.unwrap();
    assert_eq!(allowed.status(), 200);
    let h = allowed.headers();
    assert_eq!(
        h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example.com"
    );
    assert!(
        h[header::ACCESS_CONTROL_ALLOW_METHODS]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    assert_eq!(
        h[header::ACCESS_CONTROL_ALLOW_HEADERS],
        "authorization,content-type"
    );

    let other = preflight("https://evil.example").await.unwrap();
    assert!(
        other
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none(),
        "{:?}",
        other.headers()
    );

    // A simple request from the allowed origin carries the header too, and
    // exposes the request id to the page.
    let get = app
        .client
        .get(app.url("/v1/models"))
        .header(header::ORIGIN, "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        get.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example.com"
    );
    assert!(
        get.headers()[header::ACCESS_CONTROL_EXPOSE_HEADERS]
            .to_str()
            .unwrap()
            .contains("x-request-id")
    );
}

#[tokio::test]
async fn a_cors_origin_with_a_path_stops_startup() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.http.cors_allowed_origins = vec!["https://app.example.com/".into()];

    let err = startup_error(config).await;

    assert!(err.contains("is not an origin"), "{err}");
}
