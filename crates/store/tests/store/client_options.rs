//! Per-caller options of the AUTOMATIC1111-compatible API.

use serde_json::json;

use crate::helpers::fresh_db;

#[tokio::test]
async fn each_caller_keeps_its_own_options_and_a_write_replaces_them() {
    let t = fresh_db().await;
    let db = &t.db;
    assert_eq!(db.client_options("p/alice").await.unwrap(), json!({}));
    db.set_client_options("p/alice", &json!({"sd_model_checkpoint": "a"}))
        .await
        .unwrap();
    db.set_client_options("p/bob", &json!({"sd_model_checkpoint": "b"}))
        .await
        .unwrap();
    assert_eq!(
        db.client_options("p/alice").await.unwrap(),
        json!({"sd_model_checkpoint": "a"})
    );
    db.set_client_options("p/alice", &json!({"show_progress_every_n_steps": 3}))
        .await
        .unwrap();
    assert_eq!(
        db.client_options("p/alice").await.unwrap(),
        json!({"show_progress_every_n_steps": 3})
    );
    assert_eq!(
        db.client_options("p/bob").await.unwrap(),
        json!({"sd_model_checkpoint": "b"})
    );
}
