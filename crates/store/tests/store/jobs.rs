//! Creating, reading, listing jobs; idempotency.

use easel_core::{JobId, JobStatus, OutputFormat, OutputOptions, ResponseFormat, Tier};
use easel_store::{InsertOutcome, JobFilter, StoreError};

use crate::helpers::{fresh_db, new_job};

#[tokio::test]
async fn a_new_job_is_queued_and_reads_back_as_written() {
    let t = fresh_db().await;
    let mut new = new_job(Tier::Batch, "a red apple");
    new.user_id = Some("alice".into());
    new.options = OutputOptions {
        response_format: ResponseFormat::Url,
        output_format: OutputFormat::Webp,
        output_compression: Some(70),
        preview_every_steps: Some(3),
        moderation: easel_core::ModerationLevel::Low,
    };
    new.request_id = Some("req-1".into());
    new.end_user = Some("end-user-7".into());
    new.trace_parent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
    let created = t.db.insert_job(new.clone()).await.unwrap();
    assert!(created.is_created());
    let job = t.db.get_job(new.id).await.unwrap();
    assert_eq!(&job, created.job());
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.tier, Tier::Batch);
    assert_eq!(job.params, new.params);
    assert_eq!(job.options, new.options);
    assert_eq!(job.user_id.as_deref(), Some("alice"));
    assert_eq!(job.request_id.as_deref(), Some("req-1"));
    assert_eq!(job.end_user.as_deref(), Some("end-user-7"));
    assert_eq!(job.trace_parent, new.trace_parent);
    assert_eq!(
        (job.attempts, job.started_at, job.finished_at),
        (0, None, None)
    );
}

#[tokio::test]
async fn an_unknown_job_is_not_found() {
    let t = fresh_db().await;
    let err = t.db.get_job(JobId::new()).await.unwrap_err();
    assert_eq!(err.code(), "job_not_found");
}

#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_returns_the_original_job() {
    let t = fresh_db().await;
    let mut first = new_job(Tier::Batch, "first");
    first.user_id = Some("alice".into());
    first.idempotency_key = Some("key-1".into());
    let created = t.db.insert_job(first.clone()).await.unwrap();

    let mut retry = new_job(Tier::Batch, "different prompt, same key");
    retry.user_id = Some("alice".into());
    retry.idempotency_key = Some("key-1".into());
    let again = t.db.insert_job(retry.clone()).await.unwrap();
    assert!(matches!(&again, InsertOutcome::Existing(job) if job.id == first.id));
    assert_eq!(again.job(), created.job());
    assert!(matches!(
        t.db.get_job(retry.id).await,
        Err(StoreError::JobNotFound(_))
    ));

    // The key is per user: another user, or an anonymous caller, gets a new job.
    let mut bob = retry.clone();
    bob.id = JobId::new();
    bob.user_id = Some("bob".into());
    assert!(t.db.insert_job(bob).await.unwrap().is_created());
    let mut anon = retry.clone();
    anon.id = JobId::new();
    anon.user_id = None;
    assert!(t.db.insert_job(anon.clone()).await.unwrap().is_created());
    // ... and anonymous retries are deduplicated among themselves.
    let mut anon_retry = anon.clone();
    anon_retry.id = JobId::new();
    let outcome = t.db.insert_job(anon_retry).await.unwrap();
    assert_eq!(outcome.job().id, anon.id);
    assert!(!outcome.is_created());
}

#[tokio::test]
async fn listing_pages_through_a_status_filter_without_gaps_or_repeats() {
    let t = fresh_db().await;
    let mut queued = Vec::new();
    for i in 0..25 {
        let job = new_job(Tier::Batch, &format!("job {i}"));
        queued.push(job.id);
        t.db.insert_job(job).await.unwrap();
        // Interleave jobs of another status, which the filter must skip.
        let other = new_job(Tier::Batch, "to cancel");
        t.db.insert_job(other.clone()).await.unwrap();
        t.db.cancel(other.id).await.unwrap();
    }
    let filter = JobFilter {
        status: Some(JobStatus::Queued),
        user_id: None,

        project: None,
    };
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page =
            t.db.list_jobs(&filter, cursor.as_deref(), 10)
                .await
                .unwrap();
        pages += 1;
        assert!(page.jobs.len() <= 10);
        assert!(page.jobs.iter().all(|j| j.status == JobStatus::Queued));
        seen.extend(page.jobs.iter().map(|j| j.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    // Newest first: the reverse of insertion order (ids are time-ordered).
    queued.reverse();
    assert_eq!(seen, queued);
}

#[tokio::test]
async fn listing_filters_by_user_and_an_exact_last_page_has_no_cursor() {
    let t = fresh_db().await;
    for user in ["alice", "alice", "bob"] {
        let mut job = new_job(Tier::Batch, "x");
        job.user_id = Some(user.into());
        t.db.insert_job(job).await.unwrap();
    }
    let filter = JobFilter {
        status: None,
        user_id: Some("alice".into()),

        project: None,
    };
    let page = t.db.list_jobs(&filter, None, 2).await.unwrap();
    assert_eq!(page.jobs.len(), 2);
    assert!(page.next_cursor.is_none());
}

#[tokio::test]
async fn bad_limits_and_forged_cursors_are_refused_with_codes() {
    let t = fresh_db().await;
    let all = JobFilter::default();
    for limit in [0, 101] {
        let err = t.db.list_jobs(&all, None, limit).await.unwrap_err();
        assert_eq!(err.code(), "invalid_limit");
    }
    let err =
        t.db.list_jobs(&all, Some("not-a-cursor"), 10)
            .await
            .unwrap_err();
    assert_eq!(err.code(), "invalid_cursor");
}

#[tokio::test]
async fn queue_depth_counts_queued_jobs_per_tier() {
    let t = fresh_db().await;
    for tier in [Tier::Batch, Tier::Batch, Tier::Realtime] {
        t.db.insert_job(new_job(tier, "x")).await.unwrap();
    }
    assert_eq!(t.db.queue_depth(None).await.unwrap(), 3);
    assert_eq!(t.db.queue_depth(Some(Tier::Batch)).await.unwrap(), 2);
    assert_eq!(t.db.queue_depth(Some(Tier::Realtime)).await.unwrap(), 1);
}

#[tokio::test]
async fn a_policy_decision_is_recorded_on_the_job() {
    let t = fresh_db().await;
    let job = new_job(Tier::Batch, "x");
    t.db.insert_job(job.clone()).await.unwrap();
    let decision =
        serde_json::json!({"decision": "flag", "rule": "semantic:violence", "score": 0.71});
    t.db.record_policy(job.id, &decision).await.unwrap();
    assert_eq!(t.db.get_job(job.id).await.unwrap().policy, Some(decision));
}

#[tokio::test]
async fn reopening_the_database_keeps_its_jobs() {
    let t = fresh_db().await;
    let job = new_job(Tier::Batch, "durable");
    t.db.insert_job(job.clone()).await.unwrap();
    t.db.close().await;
    let db = t.connect_again().await;
    assert_eq!(db.get_job(job.id).await.unwrap().params.prompt, "durable");
    db.ping().await.unwrap();
}

// SQLite whatever `EASEL_TEST_DATABASE_URL` says: WAL is SQLite's.
#[tokio::test]
async fn a_sqlite_database_runs_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let db = easel_store::Db::open(dir.path().join("data/easel.db"))
        .await
        .unwrap();
    db.insert_job(new_job(Tier::Batch, "x")).await.unwrap();
    assert!(dir.path().join("data/easel.db-wal").exists());
}
