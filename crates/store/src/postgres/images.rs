//! Image records on PostgreSQL, and completing a job together with its
//! images.

use easel_core::{ImageId, JobId};
use sqlx::PgConnection;

use super::PgDb;
use super::queue::SUCCEED;
use crate::cursor::Position;
use crate::error::{Result, StoreError};
use crate::records::image::{Image, ImageFilter, NewImage};
use crate::records::job::{Fence, Job};
use crate::rows;

const INSERT: &str = "INSERT INTO images \
     (id, job_id, index_in_job, prompt, negative_prompt, seed, params, model, model_hash, \
      sampler, schedule, steps, guidance, width, height, format, byte_size, sha256, \
      object_key, timings, warnings, watermark_id, perceptual_hash, moderation, flags, quality_score, \
      created_at, request_id, project_id, device_seconds, cost, end_user) \
     VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
             $19, $20::jsonb, $21::jsonb, $22, $23, $24::jsonb, $25::jsonb, $26, $27, $28, (SELECT project_id FROM jobs WHERE id = $2), $29, $30, \
             (SELECT end_user FROM jobs WHERE id = $2)) \
     RETURNING *";

/// The schema's name for `UNIQUE (job_id, index_in_job)`.
const UNIQUE_INDEX_IN_JOB: &str = "images_job_index_unique";

/// A page of images, newest first; `NULL` parameters leave their filter open.
const LIST: &str = "SELECT * FROM images \
     WHERE ($1::text IS NULL OR project_id = $1) \
       AND ($2::text IS NULL OR model = $2) \
       AND ($3::text IS NULL OR strpos(lower(prompt), lower($3)) > 0) \
       AND ($4::bigint IS NULL OR created_at >= $4) \
       AND ($5::bigint IS NULL OR created_at < $5) \
       AND ($6::bigint IS NULL OR (created_at, id) < ($6, $7)) \
     ORDER BY created_at DESC, id DESC \
     LIMIT $8";

impl PgDb {
    /// Records one image of `job`.
    pub(crate) async fn insert_image(
        &self,
        job: JobId,
        image: &NewImage,
        now: i64,
    ) -> Result<Image> {
        let mut conn = self.pool.acquire().await?;
        insert(&mut conn, job, image, now).await
    }

    /// Marks `job` succeeded and records its images in one transaction;
    /// `None` (nothing written) if it is not running under `fence`. The job's row stays
    /// locked by the update until the commit, so no cancel or second
    /// completion interleaves.
    pub(crate) async fn complete_job_with_images(
        &self,
        fence: Fence,
        images: &[NewImage],
        image_ids: &str,
        now: i64,
    ) -> Result<Option<(Job, Vec<Image>)>> {
        let job = fence.job;
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(SUCCEED)
            .bind(job.to_string())
            .bind(now)
            .bind(image_ids)
            .bind(i64::from(fence.attempt))
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let done = rows::job(&row)?;
        let mut stored = Vec::with_capacity(images.len());
        for image in images {
            // On error the transaction is dropped, which rolls it back.
            stored.push(insert(&mut tx, job, image, now).await?);
        }
        tx.commit().await?;
        Ok(Some((done, stored)))
    }

    /// The image with this id, if any.
    pub(crate) async fn get_image(&self, id: ImageId) -> Result<Option<Image>> {
        let row = sqlx::query("SELECT * FROM images WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::image).transpose()
    }

    /// The newest image with this watermark id, if any.
    pub(crate) async fn find_image_by_watermark(
        &self,
        watermark_id: &str,
    ) -> Result<Option<Image>> {
        let row = sqlx::query(
            "SELECT * FROM images WHERE watermark_id = $1 \
             ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(watermark_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(rows::image).transpose()
    }

    /// A job's images in index order.
    pub(crate) async fn images_for_job(&self, job: JobId) -> Result<Vec<Image>> {
        let found = sqlx::query("SELECT * FROM images WHERE job_id = $1 ORDER BY index_in_job")
            .bind(job.to_string())
            .fetch_all(&self.pool)
            .await?;
        found.iter().map(rows::image).collect()
    }

    /// Up to `fetch` images matching `filter` after `after`, newest first.
    pub(crate) async fn list_images(
        &self,
        filter: &ImageFilter,
        after: Option<&Position>,
        fetch: i64,
    ) -> Result<Vec<Image>> {
        let found = sqlx::query(LIST)
            .bind(filter.project.as_ref().map(|p| p.as_str()))
            .bind(&filter.model)
            .bind(&filter.prompt_contains)
            .bind(filter.created_from_ms)
            .bind(filter.created_until_ms)
            .bind(after.map(|p| p.created_at))
            .bind(after.map(|p| p.id.as_str()))
            .bind(fetch)
            .fetch_all(&self.pool)
            .await?;
        found.iter().map(rows::image).collect()
    }
}

async fn insert(conn: &mut PgConnection, job: JobId, image: &NewImage, now: i64) -> Result<Image> {
    let result = sqlx::query(INSERT)
        .bind(image.id.to_string())
        .bind(job.to_string())
        .bind(i64::from(image.index_in_job))
        .bind(&image.prompt)
        .bind(&image.negative_prompt)
        // BIGINT is signed: keep the seed's bits.
        .bind(image.seed as i64)
        .bind(rows::to_json(&image.params, "image params")?)
        .bind(&image.model)
        .bind(&image.model_hash)
        .bind(&image.sampler)
        .bind(&image.schedule)
        .bind(i64::from(image.steps))
        .bind(f64::from(image.guidance))
        .bind(i64::from(image.width))
        .bind(i64::from(image.height))
        .bind(image.format.as_str())
        .bind(i64::try_from(image.byte_size).unwrap_or(i64::MAX))
        .bind(&image.sha256)
        .bind(&image.object_key)
        .bind(rows::to_json(&image.timings, "image timings")?)
        .bind(rows::to_json(&image.warnings, "image warnings")?)
        .bind(&image.watermark_id)
        .bind(&image.perceptual_hash)
        .bind(
            image
                .moderation
                .as_ref()
                .map(|m| rows::to_json(m, "image moderation"))
                .transpose()?,
        )
        .bind(rows::to_json(&image.flags, "image flags")?)
        .bind(image.quality_score.map(f64::from))
        .bind(now)
        .bind(&image.request_id)
        .bind(image.device_seconds)
        .bind(image.cost)
        .fetch_one(&mut *conn)
        .await;
    match result {
        Ok(row) => rows::image(&row),
        Err(sqlx::Error::Database(e)) if e.constraint() == Some(UNIQUE_INDEX_IN_JOB) => {
            Err(StoreError::DuplicateImage {
                job,
                index: image.index_in_job,
            })
        }
        Err(e) => Err(e.into()),
    }
}
