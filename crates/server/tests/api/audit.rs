//! `GET /v1/admin/audit`: the events the server records (configuration,
//! model pool, jobs), their filters and paging, and who may read them.

use std::time::Duration;

use easel_config::ModelEntry;
use easel_server::auth::Scope;
use serde_json::Value;

use crate::helpers::{MODEL, TestApp, assert_error, small_request, spawn_app_with};

/// An app with keys `user` (generate) and `ops` (admin), a second model
/// `missing` whose folder does not exist, and the worker off.
async fn app_with_keys() -> (TestApp, String, String) {
    let (keys, auth) =
        crate::helpers::auth_with_keys(&[("user", &[Scope::Generate]), ("ops", &[Scope::Admin])]);
    let (user_key, admin_key) = (keys[0].clone(), keys[1].clone());
    let app = spawn_app_with(move |c| {
        c.auth = auth;
        c.worker.enabled = false;
        c.models.push(ModelEntry {
            name: "missing".into(),
            path: "/nonexistent/easel-model".into(),
        });
    })
    .await;
    (app, user_key, admin_key)
}

async fn audit(app: &TestApp, query: &str, key: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/v1/admin/audit?{query}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

async fn audit_ok(app: &TestApp, query: &str, key: &str) -> Value {
    let r = audit(app, query, key).await;
    assert_eq!(r.status(), 200, "{query}");
    r.json().await.unwrap()
}

/// Polls until an event of `kind` about `subject` with `actor` is listed
/// (model events are appended from the loader thread, a moment later).
async fn wait_for(
    app: &TestApp,
    key: &str,
    kind: &str,
    subject: &str,
    actor: Option<&str>,
) -> Value {
    for _ in 0..200 {
        let page = audit_ok(app, &format!("type={kind}&limit=1000"), key).await;
        if let Some(e) = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["subject"] == subject && e["actor"].as_str() == actor)
        {
            return e.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {kind} event for {subject} by {actor:?}");
}

async fn admin_post(app: &TestApp, path: &str, key: &str) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn startup_models_admin_actions_and_jobs_are_audited_with_their_actors() {
    let (app, user_key, admin_key) = app_with_keys().await;

    let all = audit_ok(&app, "", &admin_key).await;
    assert_eq!(all["object"], "list");
    let first = &all["data"][0];
    assert_eq!(first["type"], "config.loaded", "{all}");
    assert_eq!(first["actor"], Value::Null);
    let config = &first["detail"];
    assert_eq!(config["listen"], "127.0.0.1:0");
    assert_eq!(
        config["data_dir"].as_str(),
        Some(app.data_dir.path().to_str().unwrap())
    );
    assert_eq!(config["default_model"], MODEL);
    let keys = config["auth"]["api_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(
        keys[1],
        serde_json::json!({"name": "ops", "scopes": ["admin"], "project": "default"})
    );
    let text = config.to_string();
    assert!(!text.contains("blake3:"), "a key hash leaked: {text}");
    assert!(!text.contains(&admin_key) && !text.contains(&user_key));

    // The server's own loads: no actor.
    let loaded = wait_for(&app, &admin_key, "model.loaded", MODEL, None).await;
    assert!(
        loaded["detail"]["model_hash"]
            .as_str()
            .unwrap()
            .starts_with("blake3:")
    );
    let failed = wait_for(&app, &admin_key, "model.load_failed", "missing", None).await;
    assert!(failed["detail"]["code"].is_string(), "{failed}");

    // Admin actions: the key's name.
    let r = admin_post(
        &app,
        &format!("/v1/admin/models/{MODEL}/unload"),
        &admin_key,
    )
    .await;
    assert_eq!(r.status(), 200);
    let unloaded = wait_for(&app, &admin_key, "model.unloaded", MODEL, Some("ops")).await;
    assert_eq!(unloaded["detail"]["reason"], "requested");
    let r = admin_post(&app, &format!("/v1/admin/models/{MODEL}/load"), &admin_key).await;
    assert_eq!(r.status(), 202);
    wait_for(&app, &admin_key, "model.loaded", MODEL, Some("ops")).await;
    let r = admin_post(&app, "/v1/admin/models/missing/load", &admin_key).await;
    assert_eq!(r.status(), 202);
    wait_for(
        &app,
        &admin_key,
        "model.load_failed",
        "missing",
        Some("ops"),
    )
    .await;
    app.wait_until_ready().await;

    // Jobs: the submitting key's name, the job id as subject.
    let job: Value = app
        .client
        .post(app.url("/v1/jobs"))
        .bearer_auth(&user_key)
        .json(&small_request("a red kite"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = job["id"].as_str().unwrap();
    let r = app
        .client
        .delete(app.url(&format!("/v1/jobs/{id}")))
        .bearer_auth(&user_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_for(&app, &admin_key, "job.created", id, Some("user")).await;
    wait_for(&app, &admin_key, "job.cancelled", id, Some("user")).await;

    // Ids grow and times never go back.
    let all = audit_ok(&app, "limit=1000", &admin_key).await;
    let events = all["data"].as_array().unwrap();
    assert!(events.len() >= 8, "{all}");
    for pair in events.windows(2) {
        assert!(pair[0]["id"].as_i64() < pair[1]["id"].as_i64());
        assert!(pair[0]["at"].as_str() <= pair[1]["at"].as_str());
    }
    assert_eq!(all["has_more"], false);
    assert_eq!(all["next_after"], Value::Null);
}

#[tokio::test]
async fn filters_by_type_time_and_id_and_pages_through_everything_once() {
    let (app, _user, admin_key) = app_with_keys().await;
    wait_for(&app, &admin_key, "model.load_failed", "missing", None).await;
    for _ in 0..3 {
        admin_post(
            &app,
            &format!("/v1/admin/models/{MODEL}/unload"),
            &admin_key,
        )
        .await;
        admin_post(&app, &format!("/v1/admin/models/{MODEL}/load"), &admin_key).await;
        app.wait_until_ready().await;
    }
    // 1 config + 2 startup loads + 3 × (unload, load) = 9 events.
    let mut all = Vec::new();
    for _ in 0..100 {
        all = audit_ok(&app, "limit=1000", &admin_key).await["data"]
            .as_array()
            .unwrap()
            .clone();
        if all.len() >= 9 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(all.len(), 9, "{all:?}");

    let unloads = audit_ok(&app, "type=model.unloaded", &admin_key).await;
    let unloads = unloads["data"].as_array().unwrap();
    assert_eq!(unloads.len(), 3);
    assert!(
        unloads
            .iter()
            .all(|e| e["type"] == "model.unloaded" && e["actor"] == "ops")
    );
    assert_eq!(
        audit_ok(&app, "type=no.such_event", &admin_key).await["data"],
        serde_json::json!([])
    );

    // Time: `from` is inclusive, `until` exclusive.
    let pivot = &all[4];
    let at = pivot["at"].as_str().unwrap();
    let enc = |s: &str| s.replace('+', "%2B").replace(':', "%3A");
    let from = audit_ok(&app, &format!("from={}&limit=1000", enc(at)), &admin_key).await;
    let from = from["data"].as_array().unwrap();
    assert!(from.iter().any(|e| e["id"] == pivot["id"]));
    assert!(from.iter().all(|e| e["at"].as_str().unwrap() >= at));
    let until = audit_ok(&app, &format!("until={}&limit=1000", enc(at)), &admin_key).await;
    let until = until["data"].as_array().unwrap();
    assert!(!until.iter().any(|e| e["id"] == pivot["id"]));
    assert!(until.iter().all(|e| e["at"].as_str().unwrap() < at));
    assert_eq!(from.len() + until.len(), all.len());
    let window = audit_ok(
        &app,
        &format!("from={}&until={}", enc(at), enc(at)),
        &admin_key,
    )
    .await;
    assert_eq!(window["data"], serde_json::json!([]));

    // `after`: strictly greater ids.
    let after = audit_ok(
        &app,
        &format!("after={}&limit=1000", all[6]["id"]),
        &admin_key,
    )
    .await;
    assert_eq!(after["data"].as_array().unwrap(), &all[7..]);

    // Paging with limit 2: 5 pages, every event once, in order.
    let mut paged = Vec::new();
    let mut query = "limit=2".to_string();
    let mut pages = 0;
    loop {
        let page = audit_ok(&app, &query, &admin_key).await;
        pages += 1;
        paged.extend(page["data"].as_array().unwrap().iter().cloned());
        if page["has_more"] == false {
            assert_eq!(page["next_after"], Value::Null);
            break;
        }
        let next = page["next_after"].as_i64().unwrap();
        assert_eq!(Some(next), page["data"][1]["id"].as_i64());
        query = format!("limit=2&after={next}");
    }
    assert_eq!(pages, 5);
    assert_eq!(paged, all);
    // A last page that is exactly full says there is nothing more.
    let tail = audit_ok(&app, &format!("limit=2&after={}", all[6]["id"]), &admin_key).await;
    assert_eq!(tail["data"].as_array().unwrap().len(), 2);
    assert_eq!(tail["has_more"], false);
}

#[tokio::test]
async fn bad_parameters_are_400s_that_name_the_field() {
    let (app, _user, admin_key) = app_with_keys().await;
    for (query, code, param) in [
        ("from=yesterday", "invalid_from", "from"),
        ("until=2026-11-26", "invalid_until", "until"),
        (
            "from=2026-11-27T00:00:00Z&until=2026-11-26T00:00:00Z",
            "invalid_time_range",
            "until",
        ),
        ("type=DROP%20TABLE", "invalid_type", "type"),
        ("after=-5", "invalid_after", "after"),
        ("after=x", "invalid_after", "after"),
        ("limit=0", "invalid_limit", "limit"),
        ("limit=1001", "invalid_limit", "limit"),
        ("limit=ten", "invalid_limit", "limit"),
    ] {
        let body = assert_error(audit(&app, query, &admin_key).await, 400, code).await;
        assert_eq!(body["error"]["param"], param, "{query}: {body}");
    }
    let body = assert_error(
        audit(&app, "limit=5000", &admin_key).await,
        400,
        "invalid_limit",
    )
    .await;
    assert!(
        body["error"]["message"].as_str().unwrap().contains("1000"),
        "{body}"
    );
}

#[tokio::test]
async fn only_admin_keys_may_read_the_audit_log() {
    let (app, user_key, _admin) = app_with_keys().await;
    assert_error(audit(&app, "", &user_key).await, 403, "missing_scope").await;
    let r = app
        .client
        .get(app.url("/v1/admin/audit"))
        .send()
        .await
        .unwrap();
    assert_error(r, 401, "missing_api_key").await;
}
