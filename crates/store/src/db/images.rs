//! Image records, and completing a job together with its images.

use easel_core::{ImageId, JobId, JobStatus};

use super::{Db, dispatch};
use crate::cursor::{self, Position};
use crate::error::{Result, StoreError};
use crate::records::image::{Image, ImageFilter, ImagePage, NewImage};
use crate::records::job::{Fence, Job};
use crate::rows;

/// The largest page [`Db::list_images`] returns.
pub const MAX_IMAGE_PAGE: i64 = 100;

impl Db {
    /// Records one image of a job. The job must exist; the (job, index) pair
    /// must be new, or [`StoreError::DuplicateImage`] is returned. The job's
    /// `image_ids` are set when it is marked succeeded
    /// ([`Db::mark_succeeded`]).
    pub async fn insert_image(&self, job: JobId, image: NewImage) -> Result<Image> {
        let now = self.now_ms();
        dispatch!(self, b => b.insert_image(job, &image, now).await)
    }

    /// Records all of a running job's images and marks it `succeeded`, in one
    /// transaction: either every row is written or none is. This is what
    /// makes "each image stored once" hold when a job is retried after a
    /// crash: the `(job_id, index_in_job)` uniqueness rejects a second copy,
    /// and a job that is no longer running under the claim `fence` names
    /// (cancelled, or requeued and claimed again by another worker) cannot
    /// be completed.
    pub async fn complete_job_with_images(
        &self,
        fence: Fence,
        images: Vec<NewImage>,
    ) -> Result<(Job, Vec<Image>)> {
        let mut ordered: Vec<(u32, ImageId)> =
            images.iter().map(|i| (i.index_in_job, i.id)).collect();
        ordered.sort();
        let ids: Vec<ImageId> = ordered.into_iter().map(|(_, id)| id).collect();
        let ids = rows::image_ids_json(&ids);
        let now = self.now_ms();
        match dispatch!(self, b => b.complete_job_with_images(fence, &images, &ids, now).await)? {
            Some(done) => Ok(done),
            None => Err(self.transition_error(fence.job, JobStatus::Succeeded).await),
        }
    }

    /// The image with this id.
    pub async fn get_image(&self, id: ImageId) -> Result<Image> {
        dispatch!(self, b => b.get_image(id).await)?.ok_or(StoreError::ImageNotFound(id))
    }

    /// The image whose invisible watermark carries this payload id (the
    /// 12-hex-digit form), or `None`. Should two images share an id, the
    /// newest is returned.
    pub async fn find_image_by_watermark(&self, watermark_id: &str) -> Result<Option<Image>> {
        dispatch!(self, b => b.find_image_by_watermark(watermark_id).await)
    }

    /// A job's images in index order (empty when it has none or does not exist).
    pub async fn images_for_job(&self, job: JobId) -> Result<Vec<Image>> {
        dispatch!(self, b => b.images_for_job(job).await)
    }

    /// One page of images matching `filter`, newest first.
    ///
    /// `cursor` is `None` for the first page, then the previous page's
    /// `next_cursor`. `limit` must be within 1..=100.
    pub async fn list_images(
        &self,
        filter: &ImageFilter,
        cursor: Option<&str>,
        limit: i64,
    ) -> Result<ImagePage> {
        if !(1..=MAX_IMAGE_PAGE).contains(&limit) {
            return Err(StoreError::InvalidLimit {
                got: limit,
                max: MAX_IMAGE_PAGE,
            });
        }
        let after = cursor.map(cursor::decode).transpose()?;
        // One extra row says whether another page follows.
        let mut images =
            dispatch!(self, b => b.list_images(filter, after.as_ref(), limit + 1).await)?;
        let next_cursor = if images.len() as i64 > limit {
            images.truncate(limit as usize);
            images.last().map(|last| {
                cursor::encode(&Position {
                    created_at: last.created_at.timestamp_millis(),
                    id: last.id.to_string(),
                })
            })
        } else {
            None
        };
        Ok(ImagePage {
            images,
            next_cursor,
        })
    }
}
