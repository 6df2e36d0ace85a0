//! Bounded inserts and deadlines: `insert_job_bounded`, `expire_overdue`.

use std::time::Duration;

use chrono::Utc;
use easel_core::{JobStatus, Tier};
use easel_store::{BoundedInsert, InsertOutcome, QueueFull};

use crate::helpers::{fresh_db, new_job};

#[tokio::test]
async fn a_bounded_insert_is_refused_once_the_tier_holds_its_limit() {
    let t = fresh_db().await;
    for _ in 0..2 {
        let outcome =
            t.db.insert_job_bounded(new_job(Tier::Batch, "x"), 2)
                .await
                .unwrap();
        assert!(matches!(
            outcome,
            BoundedInsert::Admitted(InsertOutcome::Created(_))
        ));
    }
    t.db.insert_job(new_job(Tier::Realtime, "ahead"))
        .await
        .unwrap();
    let refused =
        t.db.insert_job_bounded(new_job(Tier::Batch, "x"), 2)
            .await
            .unwrap();
    assert_eq!(
        refused,
        BoundedInsert::QueueFull(QueueFull {
            tier: Tier::Batch,
            queued: 2,
            ahead: 1,
            limit: 2,
        })
    );
    assert_eq!(t.db.queue_depth(Some(Tier::Batch)).await.unwrap(), 2);
    // The other tier has its own limit.
    let realtime =
        t.db.insert_job_bounded(new_job(Tier::Realtime, "x"), 2)
            .await
            .unwrap();
    assert!(matches!(realtime, BoundedInsert::Admitted(_)));
}

#[tokio::test]
async fn concurrent_bounded_inserts_never_overshoot_the_limit() {
    let t = fresh_db().await;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let db = t.db.clone();
            tokio::spawn(async move {
                db.insert_job_bounded(new_job(Tier::Batch, "burst"), 5)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        if matches!(task.await.unwrap(), BoundedInsert::Admitted(_)) {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 5);
    assert_eq!(t.db.queue_depth(Some(Tier::Batch)).await.unwrap(), 5);
}

#[tokio::test]
async fn an_idempotent_retry_is_answered_even_when_the_tier_is_full() {
    let t = fresh_db().await;
    let mut first = new_job(Tier::Batch, "x");
    first.idempotency_key = Some("k".into());
    t.db.insert_job_bounded(first.clone(), 1).await.unwrap();
    let mut retry = new_job(Tier::Batch, "x");
    retry.idempotency_key = Some("k".into());
    match t.db.insert_job_bounded(retry, 1).await.unwrap() {
        BoundedInsert::Admitted(InsertOutcome::Existing(job)) => assert_eq!(job.id, first.id),
        other => panic!("expected the existing job, got {other:?}"),
    }
}

#[tokio::test]
async fn a_deadline_is_stored_and_overdue_queued_jobs_expire() {
    let t = fresh_db().await;
    let now = Utc::now();
    let mut overdue = new_job(Tier::Batch, "late");
    overdue.deadline_at = Some(now - chrono::Duration::seconds(1));
    let mut later = new_job(Tier::Batch, "not yet");
    later.deadline_at = Some(now + chrono::Duration::hours(1));
    let none = new_job(Tier::Batch, "no deadline");
    let mut running = new_job(Tier::Realtime, "running");
    running.deadline_at = Some(now - chrono::Duration::seconds(1));
    for job in [&overdue, &later, &none, &running] {
        t.db.insert_job(job.clone()).await.unwrap();
    }
    // The realtime job is claimed first: a running job is its worker's
    // business, not expire_overdue's.
    let claimed =
        t.db.claim_next_queued("w", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(claimed.id, running.id);
    assert_eq!(
        t.db.get_job(later.id)
            .await
            .unwrap()
            .deadline_at
            .map(|d| d.timestamp_millis()),
        later.deadline_at.map(|d| d.timestamp_millis())
    );

    let expired = t.db.expire_overdue(Utc::now()).await.unwrap();
    assert_eq!(expired, vec![overdue.id]);
    let job = t.db.get_job(overdue.id).await.unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.error_code.as_deref(), Some("deadline_exceeded"));
    assert!(job.started_at.is_none() && job.finished_at.is_some());
    for id in [later.id, none.id] {
        assert_eq!(t.db.get_job(id).await.unwrap().status, JobStatus::Queued);
    }
    assert_eq!(
        t.db.get_job(running.id).await.unwrap().status,
        JobStatus::Running
    );
    assert!(t.db.expire_overdue(Utc::now()).await.unwrap().is_empty());
}
