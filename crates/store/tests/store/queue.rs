//! Claiming, leases, completion, cancellation and crash recovery.

use std::time::Duration;

use easel_core::{JobId, JobStatus, Tier};
use easel_store::{CancelOutcome, Fence, StoreError};

use crate::helpers::{fresh_db, new_job};

const LEASE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_job_goes_from_queued_to_running_to_succeeded() {
    let t = fresh_db().await;
    let new = new_job(Tier::Batch, "x");
    t.db.insert_job(new.clone()).await.unwrap();

    let running =
        t.db.claim_next_queued("worker-1", LEASE)
            .await
            .unwrap()
            .unwrap();
    assert_eq!(running.id, new.id);
    assert_eq!(running.status, JobStatus::Running);
    assert_eq!(running.attempts, 1);
    assert_eq!(running.lease_owner.as_deref(), Some("worker-1"));
    assert!(running.started_at.is_some());
    assert!(running.lease_expires_at.unwrap() > running.started_at.unwrap());
    assert!(
        t.db.claim_next_queued("worker-2", LEASE)
            .await
            .unwrap()
            .is_none()
    );

    let done = t.db.mark_succeeded(Fence::of(&running), &[]).await.unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
    assert!(done.finished_at.is_some());
    assert_eq!(done.lease_owner, None);
}

#[tokio::test]
async fn a_failed_job_keeps_its_code_and_message() {
    let t = fresh_db().await;
    let new = new_job(Tier::Batch, "x");
    t.db.insert_job(new.clone()).await.unwrap();
    let running = t.db.claim_next_queued("w", LEASE).await.unwrap().unwrap();
    let failed =
        t.db.mark_failed(
            Fence::of(&running),
            "engine_error",
            "out of memory at step 3",
        )
        .await
        .unwrap();
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(failed.error_code.as_deref(), Some("engine_error"));
    assert_eq!(
        failed.error_message.as_deref(),
        Some("out of memory at step 3")
    );
    // A finished job cannot finish again.
    let err =
        t.db.mark_succeeded(Fence::of(&running), &[])
            .await
            .unwrap_err();
    assert!(matches!(
        err,
        StoreError::InvalidTransition {
            from: JobStatus::Failed,
            to: JobStatus::Succeeded,
            ..
        }
    ));
}

#[tokio::test]
async fn a_rejected_job_records_the_category() {
    let t = fresh_db().await;
    let new = new_job(Tier::Realtime, "x");
    t.db.insert_job(new.clone()).await.unwrap();
    let rejected =
        t.db.mark_rejected(fence(new.id, 0), "image_rejected", "category: nsfw")
            .await
            .unwrap();
    assert_eq!(rejected.status, JobStatus::Rejected);
    assert!(rejected.status.is_terminal());
}

#[tokio::test]
async fn a_queued_job_cannot_be_marked_succeeded() {
    let t = fresh_db().await;
    let new = new_job(Tier::Batch, "x");
    t.db.insert_job(new.clone()).await.unwrap();
    let err =
        t.db.mark_succeeded(fence(new.id, 0), &[])
            .await
            .unwrap_err();
    assert_eq!(err.code(), "invalid_job_transition");
    let err =
        t.db.mark_succeeded(fence(JobId::new(), 0), &[])
            .await
            .unwrap_err();
    assert_eq!(err.code(), "job_not_found");
}

#[tokio::test]
async fn realtime_jobs_are_claimed_before_older_batch_jobs() {
    let t = fresh_db().await;
    let batch_old = new_job(Tier::Batch, "batch 1");
    let batch_new = new_job(Tier::Batch, "batch 2");
    let realtime_1 = new_job(Tier::Realtime, "realtime 1");
    let realtime_2 = new_job(Tier::Realtime, "realtime 2");
    for job in [&batch_old, &batch_new, &realtime_1, &realtime_2] {
        t.db.insert_job((*job).clone()).await.unwrap();
    }
    let mut order = Vec::new();
    while let Some(job) = t.db.claim_next_queued("w", LEASE).await.unwrap() {
        order.push(job.id);
    }
    assert_eq!(
        order,
        [realtime_1.id, realtime_2.id, batch_old.id, batch_new.id]
    );
}

#[tokio::test]
async fn cancelling_a_queued_job_cancels_it_at_once() {
    let t = fresh_db().await;
    let new = new_job(Tier::Batch, "x");
    t.db.insert_job(new.clone()).await.unwrap();
    let outcome = t.db.cancel(new.id).await.unwrap();
    let CancelOutcome::Cancelled(job) = outcome else {
        panic!("expected Cancelled, got {outcome:?}");
    };
    assert_eq!(job.status, JobStatus::Cancelled);
    assert!(job.finished_at.is_some());
    // A cancelled job is never claimed.
    assert!(t.db.claim_next_queued("w", LEASE).await.unwrap().is_none());
}

#[tokio::test]
async fn cancelling_a_running_job_sets_the_flag_for_the_worker() {
    let t = fresh_db().await;
    let new = new_job(Tier::Batch, "x");
    t.db.insert_job(new.clone()).await.unwrap();
    t.db.claim_next_queued("w", LEASE).await.unwrap().unwrap();
    assert!(!t.db.cancel_requested(new.id).await.unwrap());

    let outcome = t.db.cancel(new.id).await.unwrap();
    let CancelOutcome::Requested(job) = outcome else {
        panic!("expected Requested, got {outcome:?}");
    };
    assert_eq!(job.status, JobStatus::Running);
    assert!(job.cancel_requested);
    assert!(t.db.cancel_requested(new.id).await.unwrap());

    // The worker sees the flag and stops.
    let stopped = t.db.mark_cancelled(fence(new.id, 1)).await.unwrap();
    assert_eq!(stopped.status, JobStatus::Cancelled);
}

#[tokio::test]
async fn cancelling_a_finished_job_returns_it_unchanged() {
    let t = fresh_db().await;
    let new = new_job(Tier::Batch, "x");
    t.db.insert_job(new.clone()).await.unwrap();
    let running = t.db.claim_next_queued("w", LEASE).await.unwrap().unwrap();
    let done = t.db.mark_succeeded(Fence::of(&running), &[]).await.unwrap();
    let outcome = t.db.cancel(new.id).await.unwrap();
    assert_eq!(outcome, CancelOutcome::AlreadyFinished(done));
    assert_eq!(
        t.db.cancel(JobId::new()).await.unwrap_err().code(),
        "job_not_found"
    );
}

#[tokio::test]
async fn after_a_crash_running_jobs_are_requeued_and_run_again() {
    let t = fresh_db().await;
    // Built in insertion order: ids are time-ordered and break created_at ties.
    let interrupted = new_job(Tier::Batch, "interrupted");
    let cancelled_mid_run = new_job(Tier::Batch, "cancel requested");
    let waiting = new_job(Tier::Batch, "waiting");
    t.db.insert_job(interrupted.clone()).await.unwrap();
    t.db.insert_job(cancelled_mid_run.clone()).await.unwrap();
    t.db.insert_job(waiting.clone()).await.unwrap();
    t.db.claim_next_queued("dead-worker", LEASE)
        .await
        .unwrap()
        .unwrap();
    t.db.claim_next_queued("dead-worker", LEASE)
        .await
        .unwrap()
        .unwrap();
    t.db.cancel(cancelled_mid_run.id).await.unwrap();

    // The process dies; a new one opens the same database.
    t.db.close().await;
    let db = t.connect_again().await;
    let mut touched = db.requeue_running_on_startup().await.unwrap();
    touched.sort();
    let mut expected = vec![interrupted.id, cancelled_mid_run.id];
    expected.sort();
    assert_eq!(touched, expected);

    let job = db.get_job(interrupted.id).await.unwrap();
    assert_eq!(
        (job.status, job.lease_owner.as_deref()),
        (JobStatus::Queued, None)
    );
    assert_eq!(
        db.get_job(cancelled_mid_run.id).await.unwrap().status,
        JobStatus::Cancelled
    );
    assert_eq!(
        db.get_job(waiting.id).await.unwrap().status,
        JobStatus::Queued
    );

    // The interrupted job is older than the waiting one, so it runs first,
    // and its attempts count the retry.
    let again = db
        .claim_next_queued("new-worker", LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.id, again.attempts), (interrupted.id, 2));
}

#[tokio::test]
async fn an_expired_lease_puts_the_job_back_and_its_worker_cannot_renew() {
    let t = fresh_db().await;
    let new = new_job(Tier::Batch, "x");
    t.db.insert_job(new.clone()).await.unwrap();
    let first = t.db.claim_next_queued("w1", LEASE).await.unwrap().unwrap();
    t.clock.advance(LEASE - Duration::from_secs(1));
    assert!(
        t.db.requeue_expired_leases().await.unwrap().is_empty(),
        "a lease one second from its end is still live"
    );
    t.clock.advance(Duration::from_secs(2));

    assert_eq!(t.db.requeue_expired_leases().await.unwrap(), [new.id]);
    assert!(!t.db.renew_lease(Fence::of(&first), LEASE).await.unwrap());

    let job = t.db.claim_next_queued("w2", LEASE).await.unwrap().unwrap();
    assert_eq!((job.id, job.attempts), (new.id, 2));
    assert!(t.db.renew_lease(Fence::of(&job), LEASE).await.unwrap());
    // The first claim is fenced off: it can neither renew nor finish the
    // job the second claim holds.
    assert!(!t.db.renew_lease(Fence::of(&first), LEASE).await.unwrap());
    for err in [
        t.db.mark_succeeded(Fence::of(&first), &[])
            .await
            .unwrap_err(),
        t.db.mark_failed(Fence::of(&first), "x", "y")
            .await
            .unwrap_err(),
        t.db.mark_cancelled(Fence::of(&first)).await.unwrap_err(),
        t.db.requeue(Fence::of(&first)).await.unwrap_err(),
    ] {
        assert_eq!(err.code(), "invalid_job_transition");
    }
    assert_eq!(
        t.db.get_job(new.id).await.unwrap().status,
        JobStatus::Running
    );
    // A live lease is left alone.
    assert!(t.db.requeue_expired_leases().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_worker_shutting_down_puts_its_job_back_in_place() {
    let t = fresh_db().await;
    let first = new_job(Tier::Batch, "first");
    let second = new_job(Tier::Batch, "second");
    t.db.insert_job(first.clone()).await.unwrap();
    t.db.insert_job(second.clone()).await.unwrap();
    let running = t.db.claim_next_queued("w", LEASE).await.unwrap().unwrap();

    let back = t.db.requeue(Fence::of(&running)).await.unwrap();
    assert_eq!(
        (back.status, back.lease_owner.as_deref()),
        (JobStatus::Queued, None)
    );
    // It keeps its place ahead of the younger job.
    let next = t.db.claim_next_queued("w", LEASE).await.unwrap().unwrap();
    assert_eq!((next.id, next.attempts), (first.id, 2));
    // Only a running job can be requeued.
    assert_eq!(
        t.db.requeue(fence(second.id, 0)).await.unwrap_err().code(),
        "invalid_job_transition"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_workers_never_claim_the_same_job_twice() {
    let t = fresh_db().await;
    let mut ids = Vec::new();
    for i in 0..40 {
        let job = new_job(
            if i % 3 == 0 {
                Tier::Realtime
            } else {
                Tier::Batch
            },
            "x",
        );
        ids.push(job.id);
        t.db.insert_job(job).await.unwrap();
    }
    let mut workers = Vec::new();
    for w in 0..8 {
        let db = t.db.clone();
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(job) = db.claim_next_queued(&format!("w{w}"), LEASE).await.unwrap() {
                mine.push(job.id);
            }
            mine
        }));
    }
    let mut claimed = Vec::new();
    for worker in workers {
        claimed.extend(worker.await.unwrap());
    }
    claimed.sort();
    ids.sort();
    assert_eq!(claimed, ids);
}

#[tokio::test]
async fn candidates_are_bounded_per_user_and_ordered_by_tier_then_age() {
    let t = fresh_db().await;
    let mut heavy = Vec::new();
    for _ in 0..50 {
        let mut job = new_job(Tier::Batch, "heavy");
        job.user_id = Some("heavy".into());
        heavy.push(job.id);
        t.db.insert_job(job).await.unwrap();
    }
    let mut light = new_job(Tier::Batch, "light");
    light.user_id = Some("light".into());
    let light_id = light.id;
    t.db.insert_job(light).await.unwrap();
    let rt = new_job(Tier::Realtime, "rt");
    let rt_id = rt.id;
    t.db.insert_job(rt).await.unwrap();

    let got = t.db.queued_candidates(4).await.unwrap();
    let ids: Vec<JobId> = got.iter().map(|j| j.id).collect();
    // The realtime job first, then the heavy user's four oldest, then the
    // light user's one: 6 rows, not 52.
    assert_eq!(ids.len(), 6, "{ids:?}");
    assert_eq!(ids[0], rt_id);
    assert_eq!(&ids[1..5], &heavy[..4]);
    assert_eq!(ids[5], light_id);
    assert_eq!(got[5].user_id.as_deref(), Some("light"));
    assert_eq!(got[0].tier, Tier::Realtime);
}

#[tokio::test]
async fn claiming_chosen_jobs_skips_those_already_taken_or_cancelled() {
    let t = fresh_db().await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        let job = new_job(Tier::Batch, "x");
        ids.push(job.id);
        t.db.insert_job(job).await.unwrap();
    }
    // Another worker took the first; the owner cancelled the second.
    let other = t.db.claim_jobs(&ids[..1], "other", LEASE).await.unwrap();
    assert_eq!(other.len(), 1);
    t.db.cancel(ids[1]).await.unwrap();

    let wanted = [ids[3], ids[0], ids[1], ids[2]];
    let mine = t.db.claim_jobs(&wanted, "me", LEASE).await.unwrap();
    let got: Vec<JobId> = mine.iter().map(|j| j.id).collect();
    assert_eq!(got, vec![ids[3], ids[2]], "in the order asked for");
    for job in &mine {
        assert_eq!(job.status, JobStatus::Running);
        assert_eq!(job.lease_owner.as_deref(), Some("me"));
        assert_eq!(job.attempts, 1);
        assert!(job.lease_expires_at.is_some());
    }
    assert!(t.db.claim_jobs(&[], "me", LEASE).await.unwrap().is_empty());
}

/// The fence of `job` at attempt `attempt`.
fn fence(job: JobId, attempt: u32) -> Fence {
    Fence { job, attempt }
}
