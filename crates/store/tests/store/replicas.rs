//! Several handles on one database, as several API and worker processes
//! would open it (each with its own pools): claims, bounded inserts and
//! idempotency keys must hold across them, not only within one handle.

use std::collections::HashSet;
use std::time::Duration;

use easel_core::{JobId, Tier};
use easel_store::{BoundedInsert, Db, InsertOutcome};

use crate::helpers::{TestDb, fresh_db, new_job};

const LEASE: Duration = Duration::from_secs(60);
const PROCESSES: usize = 4;

async fn handles(t: &TestDb) -> Vec<Db> {
    let mut handles = vec![t.db.clone()];
    for _ in 1..PROCESSES {
        handles.push(t.connect_again().await);
    }
    handles
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_in_several_processes_never_claim_the_same_job_twice() {
    let t = fresh_db().await;
    let mut ids = Vec::new();
    for i in 0..60 {
        let mut job = new_job(
            if i % 4 == 0 {
                Tier::Realtime
            } else {
                Tier::Batch
            },
            "x",
        );
        job.user_id = Some(format!("user-{}", i % 5));
        ids.push(job.id);
        t.db.insert_job(job).await.unwrap();
    }
    let mut workers = Vec::new();
    for (p, db) in handles(&t).await.into_iter().enumerate() {
        for w in 0..2 {
            let db = db.clone();
            let worker = format!("p{p}-w{w}");
            workers.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    // Half the workers claim one at a time, half choose a
                    // batch from the candidates first, as the scheduler does.
                    let got: Vec<JobId> = if w == 0 {
                        db.claim_next_queued(&worker, LEASE)
                            .await
                            .unwrap()
                            .into_iter()
                            .map(|job| job.id)
                            .collect()
                    } else {
                        let chosen: Vec<JobId> = db
                            .queued_candidates(2)
                            .await
                            .unwrap()
                            .iter()
                            .take(3)
                            .map(|job| job.id)
                            .collect();
                        if chosen.is_empty() {
                            break;
                        }
                        let claimed = db.claim_jobs(&chosen, &worker, LEASE).await.unwrap();
                        claimed.iter().map(|job| job.id).collect()
                    };
                    if got.is_empty() && w == 0 {
                        break;
                    }
                    mine.extend(got);
                }
                mine
            }));
        }
    }
    let mut claimed = Vec::new();
    for worker in workers {
        claimed.extend(worker.await.unwrap());
    }
    let distinct: HashSet<JobId> = claimed.iter().copied().collect();
    assert_eq!(distinct.len(), claimed.len(), "a job was claimed twice");
    claimed.sort();
    ids.sort();
    assert_eq!(claimed, ids, "every job was claimed");
    for id in ids {
        assert_eq!(t.db.get_job(id).await.unwrap().attempts, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bounded_inserts_from_several_processes_never_overshoot_the_limit() {
    let t = fresh_db().await;
    let mut tasks = Vec::new();
    for db in handles(&t).await {
        for _ in 0..8 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                db.insert_job_bounded(new_job(Tier::Batch, "burst"), 5)
                    .await
                    .unwrap()
            }));
        }
    }
    let mut admitted = 0;
    for task in tasks {
        match task.await.unwrap() {
            BoundedInsert::Admitted(InsertOutcome::Created(_)) => admitted += 1,
            BoundedInsert::QueueFull(full) => assert_eq!(full.queued, 5),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(admitted, 5);
    assert_eq!(t.db.queue_depth(Some(Tier::Batch)).await.unwrap(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_idempotency_key_sent_to_several_processes_at_once_makes_one_job() {
    let t = fresh_db().await;
    let mut tasks = Vec::new();
    for db in handles(&t).await {
        for bounded in [false, true] {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                let mut job = new_job(Tier::Realtime, "same request");
                job.user_id = Some("alice".into());
                job.idempotency_key = Some("retry-storm".into());
                if bounded {
                    match db.insert_job_bounded(job, 100).await.unwrap() {
                        BoundedInsert::Admitted(outcome) => outcome,
                        BoundedInsert::QueueFull(full) => panic!("not full: {full:?}"),
                    }
                } else {
                    db.insert_job(job).await.unwrap()
                }
            }));
        }
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    let created = outcomes.iter().filter(|o| o.is_created()).count();
    assert_eq!(created, 1, "{outcomes:?}");
    let ids: HashSet<JobId> = outcomes.iter().map(|o| o.job().id).collect();
    assert_eq!(ids.len(), 1, "every caller got the same job");
    assert_eq!(t.db.queue_depth(None).await.unwrap(), 1);
}
