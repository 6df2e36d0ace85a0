//! Looking images up by their watermark payload id.

use easel_core::Tier;
use sqlx::AssertSqlSafe;

use crate::helpers::{Raw, fresh_db, new_image, new_job};

#[tokio::test]
async fn an_image_is_found_by_its_watermark_id_and_unknown_ids_find_nothing() {
    let t = fresh_db().await;
    let job = new_job(Tier::Batch, "a lighthouse");
    t.db.insert_job(job.clone()).await.unwrap();
    let mut marked = new_image(&job.params, 0);
    marked.watermark_id = Some("0001000000a7".into());
    let stored = t.db.insert_image(job.id, marked).await.unwrap();
    t.db.insert_image(job.id, new_image(&job.params, 1))
        .await
        .unwrap();

    let found = t.db.find_image_by_watermark("0001000000a7").await.unwrap();
    assert_eq!(found, Some(stored));
    assert_eq!(
        t.db.find_image_by_watermark("0001000000a8").await.unwrap(),
        None
    );
    assert_eq!(t.db.find_image_by_watermark("").await.unwrap(), None);
}

#[tokio::test]
async fn when_two_images_share_a_watermark_id_the_newest_is_returned() {
    let t = fresh_db().await;
    let job = new_job(Tier::Batch, "twins");
    t.db.insert_job(job.clone()).await.unwrap();
    let mut first = new_image(&job.params, 0);
    first.watermark_id = Some("00020000002a".into());
    t.db.insert_image(job.id, first).await.unwrap();
    t.clock.advance(std::time::Duration::from_millis(1));
    let mut second = new_image(&job.params, 1);
    second.watermark_id = Some("00020000002a".into());
    let second = t.db.insert_image(job.id, second).await.unwrap();
    let found = t.db.find_image_by_watermark("00020000002a").await.unwrap();
    assert_eq!(found.map(|i| i.id), Some(second.id));
}

#[tokio::test]
async fn the_watermark_lookup_uses_the_provenance_index() {
    let t = fresh_db().await;
    let lookup = "SELECT * FROM images WHERE watermark_id = '0001000000a7' \
                  ORDER BY created_at DESC, id DESC LIMIT 1";
    let plan = match t.raw().await {
        Raw::Sqlite(mut conn) => {
            let plan: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {lookup}")))
                    .fetch_all(&mut conn)
                    .await
                    .unwrap();
            plan.into_iter().map(|r| r.3).collect::<Vec<_>>()
        }
        Raw::Postgres(mut conn) => {
            // On an empty table a sequential scan is cheapest; with it ruled
            // out the planner shows whether the index can serve the query.
            sqlx::query("SET enable_seqscan = off")
                .execute(&mut conn)
                .await
                .unwrap();
            sqlx::query_scalar::<_, String>(AssertSqlSafe(format!("EXPLAIN {lookup}")))
                .fetch_all(&mut conn)
                .await
                .unwrap()
        }
    };
    let detail = plan.join("; ");
    assert!(detail.contains("images_watermark_id"), "{detail}");
}
