//! Image records and atomic completion.

use std::time::Duration;

use easel_core::{ImageId, JobStatus, Tier};
use easel_store::{Fence, StoreError};

use crate::helpers::{fresh_db, new_image, new_job, params};

#[tokio::test]
async fn completing_a_job_stores_its_images_and_marks_it_succeeded() {
    let t = fresh_db().await;
    let mut new = new_job(Tier::Realtime, "two apples");
    new.params = params("two apples", 2);
    t.db.insert_job(new.clone()).await.unwrap();
    let running =
        t.db.claim_next_queued("w", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();

    let mut images = vec![new_image(&new.params, 0), new_image(&new.params, 1)];
    images[1].seed = u64::MAX; // survives the signed column
    images[1].moderation = Some(serde_json::json!({"nsfw": 0.01}));
    images[1].flags = vec!["memorization_near_copy".into()];
    images[1].warnings = vec!["prompt truncated to 77 tokens".into()];
    let (job, stored) =
        t.db.complete_job_with_images(Fence::of(&running), images.clone())
            .await
            .unwrap();
    assert_eq!(job.status, JobStatus::Succeeded);
    assert_eq!(job.image_ids, [images[0].id, images[1].id]);
    assert_eq!(t.db.get_job(new.id).await.unwrap().image_ids, job.image_ids);
    assert_eq!(stored.len(), 2);

    let listed = t.db.images_for_job(new.id).await.unwrap();
    assert_eq!(listed, stored);
    let second = t.db.get_image(images[1].id).await.unwrap();
    assert_eq!(second.job_id, new.id);
    assert_eq!(second.seed, u64::MAX);
    assert_eq!(second.params, new.params);
    assert_eq!(second.timings, images[1].timings);
    assert_eq!(second.moderation, images[1].moderation);
    assert_eq!(second.flags, images[1].flags);
    assert_eq!(second.warnings, images[1].warnings);
    assert_eq!(second.sha256, images[1].sha256);
}

#[tokio::test]
async fn a_duplicate_index_fails_the_completion_and_leaves_no_partial_rows() {
    let t = fresh_db().await;
    let mut new = new_job(Tier::Batch, "x");
    new.params = params("x", 3);
    t.db.insert_job(new.clone()).await.unwrap();
    let running =
        t.db.claim_next_queued("w", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();

    let images = vec![
        new_image(&new.params, 0),
        new_image(&new.params, 1),
        new_image(&new.params, 1),
    ];
    let err =
        t.db.complete_job_with_images(Fence::of(&running), images)
            .await
            .unwrap_err();
    assert!(
        matches!(err, StoreError::DuplicateImage { index: 1, .. }),
        "{err:?}"
    );
    assert_eq!(err.code(), "duplicate_image");
    assert!(t.db.images_for_job(new.id).await.unwrap().is_empty());
    assert_eq!(
        t.db.get_job(new.id).await.unwrap().status,
        JobStatus::Running
    );
}

#[tokio::test]
async fn an_image_is_never_stored_twice_for_the_same_job_and_index() {
    let t = fresh_db().await;
    let new = new_job(Tier::Batch, "x");
    t.db.insert_job(new.clone()).await.unwrap();
    t.db.insert_image(new.id, new_image(&new.params, 0))
        .await
        .unwrap();
    let err =
        t.db.insert_image(new.id, new_image(&new.params, 0))
            .await
            .unwrap_err();
    assert_eq!(err.code(), "duplicate_image");
    assert_eq!(t.db.images_for_job(new.id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn images_inserted_one_by_one_are_listed_on_the_job_when_it_succeeds() {
    let t = fresh_db().await;
    let new = new_job(Tier::Batch, "x");
    t.db.insert_job(new.clone()).await.unwrap();
    let running =
        t.db.claim_next_queued("w", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
    let image =
        t.db.insert_image(new.id, new_image(&new.params, 0))
            .await
            .unwrap();
    let job =
        t.db.mark_succeeded(Fence::of(&running), &[image.id])
            .await
            .unwrap();
    assert_eq!(job.image_ids, [image.id]);
}

#[tokio::test]
async fn a_job_that_is_no_longer_running_cannot_be_completed() {
    let t = fresh_db().await;
    let new = new_job(Tier::Batch, "x");
    t.db.insert_job(new.clone()).await.unwrap();
    t.db.cancel(new.id).await.unwrap();
    let err =
        t.db.complete_job_with_images(
            Fence {
                job: new.id,
                attempt: 0,
            },
            vec![new_image(&new.params, 0)],
        )
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        StoreError::InvalidTransition {
            from: JobStatus::Cancelled,
            ..
        }
    ));
    assert!(t.db.images_for_job(new.id).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_image_of_an_unknown_job_is_refused() {
    let t = fresh_db().await;
    let new = new_job(Tier::Batch, "never inserted");
    let err =
        t.db.insert_image(new.id, new_image(&new.params, 0))
            .await
            .unwrap_err();
    assert_eq!(err.code(), "database_error"); // the foreign key
    assert_eq!(
        t.db.get_image(ImageId::new()).await.unwrap_err().code(),
        "image_not_found"
    );
}
