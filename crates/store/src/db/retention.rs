//! Deleting images: by request, by a project's retention, and the legal
//! hold that stops both. A deleted image's row goes in the same
//! transaction that records its object as pending deletion; the object is
//! removed afterwards and the pending row with it, so a failure of the
//! object store leaves a record to retry, never an object nobody knows of.

use easel_core::ImageId;

use super::{Db, dispatch};
use crate::error::{Result, StoreError};
use crate::records::image::Image;

/// The most rows [`Db::expired_images`] and [`Db::pending_deletions`] return.
pub const MAX_SWEEP_BATCH: i64 = 1000;

impl Db {
    /// Sets or clears image `id`'s legal hold.
    pub async fn set_legal_hold(&self, id: ImageId, hold: bool) -> Result<Image> {
        if dispatch!(self, b => b.set_legal_hold(id, hold).await)? {
            self.get_image(id).await
        } else {
            Err(StoreError::ImageNotFound(id))
        }
    }

    /// Deletes image `id`'s row unless it is held
    /// ([`StoreError::LegalHold`]), recording its object as pending
    /// deletion; returns the deleted record. Call
    /// [`Db::object_deleted`] once the object is gone.
    pub async fn delete_image(&self, id: ImageId) -> Result<Image> {
        let now = self.now_ms();
        match dispatch!(self, b => b.delete_image(id, now).await)? {
            Some(image) => Ok(image),
            None => {
                let image = self.get_image(id).await?;
                if image.legal_hold {
                    Err(StoreError::LegalHold(id))
                } else {
                    // Deleted by someone else between the two reads.
                    Err(StoreError::ImageNotFound(id))
                }
            }
        }
    }

    /// The object `key` is gone from the object store.
    pub async fn object_deleted(&self, key: &str) -> Result<()> {
        dispatch!(self, b => b.object_deleted(key).await)
    }

    /// Up to `limit` images past their project's retention and not held,
    /// oldest first.
    pub async fn expired_images(&self, limit: i64) -> Result<Vec<Image>> {
        let now = self.now_ms();
        dispatch!(self, b => b.expired_images(now, limit.clamp(1, MAX_SWEEP_BATCH)).await)
    }

    /// Up to `limit` objects whose deletion is not confirmed, oldest first.
    pub async fn pending_deletions(&self, limit: i64) -> Result<Vec<String>> {
        dispatch!(self, b => b.pending_deletions(limit.clamp(1, MAX_SWEEP_BATCH)).await)
    }
}
