//! What several processes on one database rely on: fenced object staging,
//! the model catalog, and (PostgreSQL) notifications between processes.

use std::time::Duration;

use easel_core::{JobStatus, Tier};
use easel_store::{CHANNEL_CANCEL, CHANNEL_QUEUED, Fence};

use crate::helpers::{fresh_db, new_job};

const LEASE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn staged_keys_are_fenced_survive_a_dead_claim_and_clear_on_success() {
    let t = fresh_db().await;
    let new = new_job(Tier::Batch, "x");
    t.db.insert_job(new.clone()).await.unwrap();
    let first = t.db.claim_next_queued("w1", LEASE).await.unwrap().unwrap();
    assert!(first.staged_keys.is_empty());
    let keys = vec!["images/2026/12/06/img_a.png".to_string()];
    assert!(
        t.db.stage_objects(Fence::of(&first), &keys, LEASE)
            .await
            .unwrap()
    );

    // The first claim dies; its lease runs out and another worker claims
    // the job, finding the files the first may have written.
    t.clock.advance(LEASE + Duration::from_secs(1));
    assert_eq!(t.db.requeue_expired_leases().await.unwrap(), [new.id]);
    let second = t.db.claim_next_queued("w2", LEASE).await.unwrap().unwrap();
    assert_eq!(second.staged_keys, keys);

    // The dead claim can stage nothing more.
    let late = vec!["images/2026/12/06/img_b.png".to_string()];
    assert!(
        !t.db
            .stage_objects(Fence::of(&first), &late, LEASE)
            .await
            .unwrap()
    );
    assert_eq!(t.db.get_job(new.id).await.unwrap().staged_keys, keys);

    let mine = vec!["images/2026/12/06/img_c.png".to_string()];
    assert!(
        t.db.stage_objects(Fence::of(&second), &mine, LEASE)
            .await
            .unwrap()
    );
    let done = t.db.mark_succeeded(Fence::of(&second), &[]).await.unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
    assert!(
        done.staged_keys.is_empty(),
        "a success leaves nothing staged"
    );
}

#[tokio::test]
async fn the_model_catalog_keeps_the_latest_description_of_each_model() {
    let t = fresh_db().await;
    assert!(t.db.model_catalog().await.unwrap().is_empty());
    let v1 = serde_json::json!({"name": "m", "content_hash": "blake3:01", "max_side": 512});
    let v2 = serde_json::json!({"name": "m", "content_hash": "blake3:02", "max_side": 1024});
    t.db.publish_model("m", &v1).await.unwrap();
    t.db.publish_model("other", &v1).await.unwrap();
    t.clock.advance(Duration::from_secs(5));
    t.db.publish_model("m", &v2).await.unwrap();
    let catalog = t.db.model_catalog().await.unwrap();
    let names: Vec<&str> = catalog.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["m", "other"]);
    assert_eq!(catalog[0].info, v2);
    assert!(catalog[0].updated_at > catalog[1].updated_at);
}

#[tokio::test]
async fn other_processes_hear_when_a_job_is_queued_and_when_a_cancel_is_requested() {
    let t = fresh_db().await;
    let Some(mut listener) =
        t.db.listen(&[CHANNEL_QUEUED, CHANNEL_CANCEL, "test_channel"])
            .await
            .unwrap()
    else {
        assert!(!t.db.is_shared(), "only SQLite has no notifications");
        return;
    };
    // Another process: its own handle on the same database.
    let other = t.connect_again().await;
    let new = new_job(Tier::Realtime, "x");
    other.insert_job(new.clone()).await.unwrap();
    let heard = next(&mut listener).await;
    assert_eq!(
        (heard.channel.as_str(), heard.payload.as_str()),
        (CHANNEL_QUEUED, "realtime")
    );

    let running = other.claim_next_queued("w", LEASE).await.unwrap().unwrap();
    other.cancel(new.id).await.unwrap();
    let heard = next(&mut listener).await;
    assert_eq!(heard.channel, CHANNEL_CANCEL);
    assert_eq!(heard.payload, new.id.to_string());

    // A job put back in the queue wakes the workers again.
    other.requeue(Fence::of(&running)).await.unwrap();
    let heard = next(&mut listener).await;
    assert_eq!(heard.channel, CHANNEL_QUEUED);

    other.notify("test_channel", "hello").await.unwrap();
    let heard = next(&mut listener).await;
    assert_eq!(
        (heard.channel.as_str(), heard.payload.as_str()),
        ("test_channel", "hello")
    );
}

/// The next notification, within ten seconds.
async fn next(listener: &mut easel_store::Listener) -> easel_store::Notification {
    tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("a notification arrives")
        .unwrap()
}
