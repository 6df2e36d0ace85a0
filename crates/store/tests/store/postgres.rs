//! What only PostgreSQL has: row locks held by other sessions, and a server
//! that may lack the database. These tests need
//! `EASEL_TEST_DATABASE_URL=postgres://…`; on SQLite they return at once.

use std::time::Duration;

use easel_core::Tier;
use easel_store::Db;
use sqlx::Connection as _;

use crate::helpers::{Raw, TestDb, fresh_db, new_job};

const LEASE: Duration = Duration::from_secs(60);

/// A deadlock guard, not a timing check: a claim that waited on the locked
/// row would wait for the lock's holder, this test, for ever.
const HANG_GUARD: Duration = Duration::from_secs(60);

async fn postgres_db() -> Option<TestDb> {
    let t = fresh_db().await;
    t.is_postgres().then_some(t)
}

#[tokio::test]
async fn a_claim_passes_over_a_job_another_transaction_holds_locked() {
    let Some(t) = postgres_db().await else { return };
    let first = new_job(Tier::Batch, "first");
    let second = new_job(Tier::Batch, "second");
    t.db.insert_job(first.clone()).await.unwrap();
    t.db.insert_job(second.clone()).await.unwrap();

    // Another worker's claim, caught half-way: the oldest job is locked.
    let Raw::Postgres(mut other) = t.raw().await else {
        unreachable!()
    };
    let mut other = other.begin().await.unwrap();
    sqlx::query("SELECT id FROM jobs WHERE id = $1 FOR UPDATE")
        .bind(first.id.to_string())
        .execute(&mut *other)
        .await
        .unwrap();

    let claimed = tokio::time::timeout(HANG_GUARD, t.db.claim_next_queued("w", LEASE))
        .await
        .expect("the claim waited on the locked row")
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, second.id);
    let chosen = tokio::time::timeout(
        HANG_GUARD,
        t.db.claim_jobs(&[first.id, second.id], "w", LEASE),
    )
    .await
    .expect("the claim waited on the locked row")
    .unwrap();
    assert!(chosen.is_empty(), "{chosen:?}");

    // Once the lock is gone the job is there to take.
    other.rollback().await.unwrap();
    let claimed = t.db.claim_next_queued("w", LEASE).await.unwrap().unwrap();
    assert_eq!(claimed.id, first.id);
}

#[tokio::test]
async fn a_postgres_database_that_does_not_exist_is_an_open_error() {
    let Some(t) = postgres_db().await else { return };
    let missing = format!("{}_missing", t.url);
    let err = Db::connect(&missing).await.unwrap_err();
    assert_eq!(err.code(), "database_open_failed", "{err}");
    assert!(err.to_string().contains("_missing"), "{err}");
}

#[tokio::test]
async fn json_columns_are_jsonb_and_times_are_milliseconds() {
    let Some(t) = postgres_db().await else { return };
    let mut job = new_job(Tier::Batch, "typed");
    job.policy = Some(serde_json::json!({"decision": "allow"}));
    let stored = t.db.insert_job(job.clone()).await.unwrap().into_job();
    let Raw::Postgres(mut conn) = t.raw().await else {
        unreachable!()
    };
    let (prompt, decision, created_at): (String, String, i64) = sqlx::query_as(
        "SELECT params->>'prompt', policy->>'decision', created_at FROM jobs WHERE id = $1",
    )
    .bind(job.id.to_string())
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((prompt.as_str(), decision.as_str()), ("typed", "allow"));
    assert_eq!(created_at, stored.created_at.timestamp_millis());
}
