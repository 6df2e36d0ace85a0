//! Correlation ids: `x-request-id` on every response (generated, or the
//! client's when it is safe), and stored on the job and its images.

use serde_json::Value;

use crate::helpers::{assert_error, small_request, spawn_app, spawn_app_with};

const HEADER: &str = "x-request-id";

fn request_id(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(HEADER)
        .unwrap_or_else(|| panic!("no {HEADER} on a {} response", response.status()))
        .to_str()
        .unwrap()
        .to_string()
}

fn is_generated(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test]
async fn every_response_carries_a_generated_request_id_errors_and_404s_included() {
    let app = spawn_app().await;
    let ok = app.get("/healthz").await;
    assert_eq!(ok.status(), 200);
    let first = request_id(&ok);
    assert!(is_generated(&first), "{first}");

    let mut bad = small_request("a fox");
    bad["n"] = Value::from(0);
    let invalid = app.generate(&bad).await;
    let id = request_id(&invalid);
    assert!(is_generated(&id), "{id}");
    assert_ne!(id, first, "each request gets its own id");
    assert_error(invalid, 400, "invalid_n").await;

    let missing = app.get("/no/such/route").await;
    assert!(is_generated(&request_id(&missing)));
    assert_error(missing, 404, "route_not_found").await;

    let unknown_job = app.get_job("job_doesnotexist").await;
    assert!(is_generated(&request_id(&unknown_job)));
    assert_eq!(unknown_job.status(), 404);
}

#[tokio::test]
async fn a_valid_client_request_id_is_echoed_and_an_invalid_one_replaced() {
    let app = spawn_app().await;
    let send = |id: String| {
        app.client
            .get(app.url("/healthz"))
            .header(HEADER, id)
            .send()
    };
    let mine = "client-42:retry.1_a".to_string();
    assert_eq!(request_id(&send(mine.clone()).await.unwrap()), mine);
    let longest = "a".repeat(128);
    assert_eq!(request_id(&send(longest.clone()).await.unwrap()), longest);

    for bad in [
        "a".repeat(129),
        "has space".into(),
        "quote\"d".into(),
        "é".into(),
    ] {
        let got = request_id(&send(bad.clone()).await.unwrap());
        assert_ne!(got, bad);
        assert!(is_generated(&got), "{bad:?} was replaced by {got}");
    }
}

#[tokio::test]
async fn the_request_id_is_stored_on_the_job_and_on_its_images() {
    let app = spawn_app_with(|c| c.worker.enabled = false).await;
    let created = app
        .client
        .post(app.url("/v1/jobs"))
        .header(HEADER, "job-req-1")
        .json(&small_request("a fox"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 202);
    assert_eq!(request_id(&created), "job-req-1");
    let job: Value = created.json().await.unwrap();
    assert_eq!(job["request_id"], "job-req-1", "{job}");

    assert_eq!(app.run_pending_jobs().await, 1);
    let id = job["id"].as_str().unwrap();
    let read = app.get_job(id).await;
    // Reading it is another request, with its own id.
    assert_ne!(request_id(&read), "job-req-1");
    let done: Value = read.json().await.unwrap();
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["request_id"], "job-req-1");

    let image_id = done["image_ids"][0].as_str().unwrap();
    let record: Value = app.get_image(image_id).await.json().await.unwrap();
    assert_eq!(record["request_id"], "job-req-1", "{record}");
}

#[tokio::test]
async fn a_synchronous_generation_stores_its_generated_request_id() {
    let app = spawn_app().await;
    let response = app.generate(&small_request("a red apple")).await;
    assert_eq!(response.status(), 200);
    let id = request_id(&response);
    assert!(is_generated(&id));
    let page: Value = app.list_jobs("").await.json().await.unwrap();
    let job = &page["data"][0];
    assert_eq!(job["request_id"], id.as_str(), "{job}");
    let image_id = job["image_ids"][0].as_str().unwrap();
    let record: Value = app.get_image(image_id).await.json().await.unwrap();
    assert_eq!(record["request_id"], id.as_str(), "{record}");
}

#[tokio::test]
async fn the_openapi_document_shows_the_request_id_on_jobs_and_images() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let schemas = &doc["components"]["schemas"];
    for schema in ["Job", "ImageRecordDto"] {
        assert!(
            schemas[schema]["properties"]["request_id"].is_object(),
            "{schema}: {}",
            schemas[schema]
        );
    }
}
