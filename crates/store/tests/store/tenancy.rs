//! Projects, keys, rate buckets and image deletion, on either backend.

use std::time::Duration;

use easel_core::{Limits, ProjectId, Tier};
use easel_store::{Fence, JobFilter, NewApiKey, NewProject, ProjectChange, RateTake, StoreError};

use crate::helpers::{fresh_db, new_image, new_job};

fn project(name: &str) -> ProjectId {
    name.parse().unwrap()
}

fn key(id: &str, project_name: &str, hash: &str) -> NewApiKey {
    NewApiKey {
        id: id.into(),
        project: project(project_name),
        name: format!("{id}-name"),
        hash: hash.into(),
        prefix: "easel_sk_abcdefg".into(),
        scopes: vec!["generate".into()],
        limits: Limits::default(),
        expires_at: None,
    }
}

fn take(subject: &str, limit: u64, cost: u64) -> RateTake {
    RateTake {
        subject: subject.into(),
        limit,
        cost,
    }
}

#[tokio::test]
async fn keys_are_found_by_hash_revoked_and_rotated() {
    let t = fresh_db().await;
    assert!(!t.db.any_active_api_key().await.unwrap());
    let missing =
        t.db.insert_api_key(&key("key_1", "acme", "blake3:aa"))
            .await;
    assert!(matches!(missing, Err(StoreError::ProjectNotFound(_))));
    let acme = NewProject {
        id: project("acme"),
        ..Default::default()
    };
    t.db.create_project(&acme).await.unwrap();
    assert!(matches!(
        t.db.create_project(&acme).await,
        Err(StoreError::ProjectExists(_))
    ));
    t.db.insert_api_key(&key("key_1", "acme", "blake3:aa"))
        .await
        .unwrap();
    assert!(t.db.any_active_api_key().await.unwrap());
    let found = t.db.api_key_by_hash("blake3:aa").await.unwrap().unwrap();
    assert_eq!(found.key.id, "key_1");
    assert_eq!(found.project.id, project("acme"));
    assert!(t.db.api_key_by_hash("blake3:bb").await.unwrap().is_none());

    // last_used_at moves at most once a minute.
    t.db.touch_api_key("key_1").await.unwrap();
    let first = t.db.api_key("key_1").await.unwrap().last_used_at.unwrap();
    t.clock.advance(Duration::from_secs(30));
    t.db.touch_api_key("key_1").await.unwrap();
    assert_eq!(
        t.db.api_key("key_1").await.unwrap().last_used_at,
        Some(first)
    );
    t.clock.advance(Duration::from_secs(31));
    t.db.touch_api_key("key_1").await.unwrap();
    assert!(t.db.api_key("key_1").await.unwrap().last_used_at.unwrap() > first);

    // Rotation with a grace period: both work until it ends.
    let until = t.db.now() + chrono::Duration::seconds(60);
    t.db.rotate_api_key("key_1", &key("key_2", "acme", "blake3:cc"), until)
        .await
        .unwrap();
    let old = t.db.api_key("key_1").await.unwrap();
    assert!(old.is_active(t.db.now()));
    t.clock.advance(Duration::from_secs(61));
    assert!(!t.db.api_key("key_1").await.unwrap().is_active(t.db.now()));
    assert!(t.db.api_key("key_2").await.unwrap().is_active(t.db.now()));
    // A rotation of an unknown key writes nothing.
    let bad =
        t.db.rotate_api_key("key_9", &key("key_3", "acme", "blake3:dd"), until)
            .await;
    assert!(matches!(bad, Err(StoreError::ApiKeyNotFound(_))));
    assert!(t.db.api_key_by_hash("blake3:dd").await.unwrap().is_none());

    let revoked = t.db.revoke_api_key("key_2").await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert!(!t.db.any_active_api_key().await.unwrap());
    assert_eq!(
        t.db.api_keys(Some(&project("acme"))).await.unwrap().len(),
        2
    );
    assert!(
        t.db.api_keys(Some(&project("default")))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_bucket_admits_its_limit_then_refills_and_refusals_charge_nothing() {
    let t = fresh_db().await;
    let mut admitted = 0;
    for _ in 0..12 {
        if t.db.take_rate(&[take("a", 10, 1)]).await.unwrap().admitted {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 10);
    t.clock.advance(Duration::from_secs(6));
    assert!(t.db.take_rate(&[take("a", 10, 1)]).await.unwrap().admitted);
    assert!(!t.db.take_rate(&[take("a", 10, 1)]).await.unwrap().admitted);
    // Refused by `a`, `b` is not charged.
    let d =
        t.db.take_rate(&[take("b", 3, 3), take("a", 10, 1)])
            .await
            .unwrap();
    assert!(!d.admitted);
    let d = t.db.take_rate(&[take("b", 3, 3)]).await.unwrap();
    assert!(d.admitted);
    assert_eq!(d.states[0].remaining, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_racing_for_one_bucket_get_exactly_its_limit() {
    let t = fresh_db().await;
    let other = t.connect_again().await;
    let tries = (0..40).map(|i| {
        let db = if i % 2 == 0 {
            t.db.clone()
        } else {
            other.clone()
        };
        tokio::spawn(async move {
            db.take_rate(&[
                take("project:p:requests", 10, 1),
                take("key:k:requests", 25, 1),
            ])
            .await
            .unwrap()
            .admitted
        })
    });
    let results = futures::future::join_all(tries).await;
    let admitted = results.into_iter().filter(|r| *r.as_ref().unwrap()).count();
    assert_eq!(admitted, 10);
}

#[tokio::test]
async fn listings_and_idempotency_keys_are_per_project() {
    let t = fresh_db().await;
    for name in ["acme", "zeta"] {
        t.db.create_project(&NewProject {
            id: project(name),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let mut a = new_job(Tier::Batch, "a");
    a.project = project("acme");
    a.user_id = Some("ci".into());
    a.idempotency_key = Some("same".into());
    let mut z = new_job(Tier::Batch, "z");
    z.project = project("zeta");
    z.user_id = Some("ci".into());
    z.idempotency_key = Some("same".into());
    let a = t.db.insert_job(a).await.unwrap().into_job();
    let z = t.db.insert_job(z).await.unwrap().into_job();
    assert_ne!(
        a.id, z.id,
        "the same user name and key in two projects are two jobs"
    );
    let filter = JobFilter {
        project: Some(project("acme")),
        ..Default::default()
    };
    let page = t.db.list_jobs(&filter, None, 10).await.unwrap();
    assert_eq!(page.jobs.iter().map(|j| j.id).collect::<Vec<_>>(), [a.id]);
    assert_eq!(
        t.db.active_jobs(&project("acme"), Some("ci"))
            .await
            .unwrap(),
        (1, 1)
    );
    assert_eq!(
        t.db.active_jobs(&project("acme"), Some("other"))
            .await
            .unwrap(),
        (1, 0)
    );
}

#[tokio::test]
async fn retention_lists_expired_unheld_images_and_deletion_records_the_object() {
    let t = fresh_db().await;
    t.db.create_project(&NewProject {
        id: project("brief"),
        retention_seconds: Some(1),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut job = new_job(Tier::Batch, "brief");
    job.project = project("brief");
    job.params.n = 2;
    let params = job.params.clone();
    t.db.insert_job(job).await.unwrap();
    let running =
        t.db.claim_next_queued("w", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
    let images = vec![new_image(&params, 0), new_image(&params, 1)];
    let (_, stored) =
        t.db.complete_job_with_images(Fence::of(&running), images)
            .await
            .unwrap();
    assert!(stored.iter().all(|i| i.project == project("brief")));
    // Another project's old image is kept forever (no retention).
    assert!(t.db.expired_images(10).await.unwrap().is_empty());
    t.clock.advance(Duration::from_secs(2));
    t.db.set_legal_hold(stored[1].id, true).await.unwrap();
    let expired = t.db.expired_images(10).await.unwrap();
    assert_eq!(
        expired.iter().map(|i| i.id).collect::<Vec<_>>(),
        [stored[0].id]
    );

    let deleted = t.db.delete_image(stored[0].id).await.unwrap();
    assert_eq!(
        t.db.pending_deletions(10).await.unwrap(),
        std::slice::from_ref(&deleted.object_key)
    );
    t.db.object_deleted(&deleted.object_key).await.unwrap();
    assert!(t.db.pending_deletions(10).await.unwrap().is_empty());
    assert!(matches!(
        t.db.get_image(stored[0].id).await,
        Err(StoreError::ImageNotFound(_))
    ));
    assert!(matches!(
        t.db.delete_image(stored[1].id).await,
        Err(StoreError::LegalHold(_))
    ));
    assert!(matches!(
        t.db.delete_image(stored[0].id).await,
        Err(StoreError::ImageNotFound(_))
    ));

    // Retention can be lifted.
    let lifted = ProjectChange {
        retention_seconds: Some(None),
        ..Default::default()
    };
    let p =
        t.db.update_project(&project("brief"), &lifted)
            .await
            .unwrap();
    assert_eq!(p.retention_seconds, None);
}

#[tokio::test]
async fn keys_of_the_same_name_in_two_projects_are_two_fair_share_users() {
    let t = fresh_db().await;
    for name in ["acme", "zeta"] {
        t.db.create_project(&NewProject {
            id: project(name),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    for (p, prompt) in [("acme", "a"), ("zeta", "z"), ("default", "d")] {
        let mut job = new_job(Tier::Batch, prompt);
        job.project = project(p);
        job.user_id = Some("ci".into());
        t.db.insert_job(job).await.unwrap();
    }
    let mut users: Vec<Option<String>> =
        t.db.queued_candidates(10)
            .await
            .unwrap()
            .into_iter()
            .map(|q| q.user_id)
            .collect();
    users.sort();
    assert_eq!(
        users,
        [
            Some("acme/ci".into()),
            Some("ci".into()),
            Some("zeta/ci".into())
        ]
    );
}
