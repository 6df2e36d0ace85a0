//! Image records, and completing a job together with its images.

use easel_core::{ImageId, JobId, JobStatus};
use sqlx::SqliteConnection;

use super::{Db, rows};
use crate::error::{Result, StoreError};
use crate::records::image::{Image, NewImage};
use crate::records::job::Job;

const INSERT: &str = "INSERT INTO images \
     (id, job_id, index_in_job, prompt, negative_prompt, seed, params, model, model_hash, \
      sampler, schedule, steps, guidance, width, height, format, byte_size, sha256, \
      object_key, timings, warnings, watermark_id, perceptual_hash, moderation, flags, quality_score, \
      created_at, request_id) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
             ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28) \
     RETURNING *";

const SUCCEED: &str = "UPDATE jobs \
     SET status = 'succeeded', finished_at = ?2, image_ids = ?3, \
         lease_owner = NULL, lease_expires_at = NULL \
     WHERE id = ?1 AND status = 'running' \
     RETURNING *";

impl Db {
    /// Records one image of a job. The job must exist; the (job, index) pair
    /// must be new, or [`StoreError::DuplicateImage`] is returned. The job's
    /// `image_ids` are set when it is marked succeeded
    /// ([`Db::mark_succeeded`]).
    pub async fn insert_image(&self, job: JobId, image: NewImage) -> Result<Image> {
        let mut conn = self.writer.acquire().await?;
        insert(&mut conn, job, &image, self.now_ms()).await
    }

    /// Records all of a running job's images and marks it `succeeded`, in one
    /// transaction: either every row is written or none is. This is what
    /// makes "each image stored once" hold when a job is retried after a
    /// crash: the `(job_id, index_in_job)` uniqueness rejects a second copy,
    /// and a job that is no longer running (cancelled, requeued and finished
    /// elsewhere) cannot be completed.
    pub async fn complete_job_with_images(
        &self,
        job: JobId,
        images: Vec<NewImage>,
    ) -> Result<(Job, Vec<Image>)> {
        let mut ordered: Vec<(u32, ImageId)> =
            images.iter().map(|i| (i.index_in_job, i.id)).collect();
        ordered.sort();
        let ids: Vec<ImageId> = ordered.into_iter().map(|(_, id)| id).collect();
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let row = sqlx::query(SUCCEED)
            .bind(job.to_string())
            .bind(self.now_ms())
            .bind(rows::image_ids_json(&ids))
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            drop(tx);
            return Err(self.transition_error(job, JobStatus::Succeeded).await);
        };
        let done = rows::job(&row)?;
        let mut stored = Vec::with_capacity(images.len());
        for image in &images {
            stored.push(insert(&mut tx, job, image, self.now_ms()).await?);
        }
        tx.commit().await?;
        Ok((done, stored))
    }

    /// The image with this id.
    pub async fn get_image(&self, id: ImageId) -> Result<Image> {
        let row = sqlx::query("SELECT * FROM images WHERE id = ?1")
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await?
            .ok_or(StoreError::ImageNotFound(id))?;
        rows::image(&row)
    }

    /// The image whose invisible watermark carries this payload id (the
    /// 12-hex-digit form), or `None`. Should two images share an id, the
    /// newest is returned.
    pub async fn find_image_by_watermark(&self, watermark_id: &str) -> Result<Option<Image>> {
        let row = sqlx::query(
            "SELECT * FROM images WHERE watermark_id = ?1 \
             ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(watermark_id)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(rows::image).transpose()
    }

    /// A job's images in index order (empty when it has none or does not exist).
    pub async fn images_for_job(&self, job: JobId) -> Result<Vec<Image>> {
        let found = sqlx::query("SELECT * FROM images WHERE job_id = ?1 ORDER BY index_in_job")
            .bind(job.to_string())
            .fetch_all(&self.reader)
            .await?;
        found.iter().map(rows::image).collect()
    }
}

async fn insert(
    conn: &mut SqliteConnection,
    job: JobId,
    image: &NewImage,
    now_ms: i64,
) -> Result<Image> {
    let result = sqlx::query(INSERT)
        .bind(image.id.to_string())
        .bind(job.to_string())
        .bind(i64::from(image.index_in_job))
        .bind(&image.prompt)
        .bind(&image.negative_prompt)
        // SQLite integers are signed 64-bit: keep the seed's bits.
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
        .bind(now_ms)
        .bind(&image.request_id)
        .fetch_one(&mut *conn)
        .await;
    match result {
        Ok(row) => rows::image(&row),
        Err(sqlx::Error::Database(e))
            if e.is_unique_violation() && e.message().contains("index_in_job") =>
        {
            Err(StoreError::DuplicateImage {
                job,
                index: image.index_in_job,
            })
        }
        Err(e) => Err(e.into()),
    }
}
