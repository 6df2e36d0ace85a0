//! Object storage for image bytes.
//!
//! [`Blobs`] wraps any `object_store` backend; [`Blobs::local`] uses a
//! folder on disk, and an S3-compatible store can be passed to
//! [`Blobs::new`] later without changing callers.
//!
//! The local backend writes each object to a staging file beside its
//! destination (`<key>#<n>`) and renames it into place, so a reader never
//! sees a partly written image and a crash leaves either the old object or
//! the new one (checked in object_store 0.14.2: `LocalFileSystem::put_opts`
//! calls `new_staged_upload`, then `finish_staged_rename`, and removes the
//! staging file on error). [`Blobs::local`] also turns on `fsync`, so the
//! bytes are on disk before the database records the image that points at
//! them: an image record must never outlive its bytes.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Datelike, Utc};
use easel_core::{ImageId, OutputFormat};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::{Result, StoreError};

/// A handle to the object store: cheap to clone.
#[derive(Debug, Clone)]
pub struct Blobs {
    inner: Arc<dyn ObjectStore>,
}

impl Blobs {
    /// Uses any object store (local, S3, in-memory for tests).
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self { inner }
    }

    /// Stores objects as files under `root`, creating the folder if missing.
    pub fn local(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        std::fs::create_dir_all(root).map_err(|e| StoreError::Open {
            path: root.display().to_string(),
            source: Box::new(e),
        })?;
        let fs = LocalFileSystem::new_with_prefix(root)?.with_fsync(true);
        Ok(Self::new(Arc::new(fs)))
    }

    /// Stores `bytes` under `key`, replacing any previous object atomically.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        self.inner
            .put(&parse_key(key)?, PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    /// The object stored under `key`, or [`StoreError::BlobNotFound`].
    pub async fn get(&self, key: &str) -> Result<Bytes> {
        let path = parse_key(key)?;
        let found = self
            .inner
            .get(&path)
            .await
            .map_err(|e| not_found_as(key, e))?;
        found.bytes().await.map_err(|e| not_found_as(key, e))
    }

    /// Deletes the object under `key`; deleting a missing object is not an error.
    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.inner.delete(&parse_key(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether an object is stored under `key`.
    pub async fn exists(&self, key: &str) -> Result<bool> {
        match self.inner.head(&parse_key(key)?).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// The key of an image's bytes: `images/YYYY/MM/DD/<id>.<ext>`, dated by
/// `at` (UTC) so that a folder never grows without bound and old days can be
/// archived or expired as a whole.
pub fn image_key(id: ImageId, format: OutputFormat, at: DateTime<Utc>) -> String {
    format!(
        "images/{:04}/{:02}/{:02}/{id}.{}",
        at.year(),
        at.month(),
        at.day(),
        format.extension()
    )
}

/// Checks a key and turns it into an object path. Keys are relative,
/// `/`-separated, with no empty, `.` or `..` segments.
fn parse_key(key: &str) -> Result<ObjectPath> {
    let invalid = |reason: String| StoreError::InvalidKey {
        key: key.chars().take(200).collect(),
        reason,
    };
    if key.is_empty() || key.starts_with('/') || key.ends_with('/') {
        return Err(invalid(
            "keys are relative paths with no leading or trailing `/`".into(),
        ));
    }
    if key
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(invalid("keys have no empty, `.` or `..` segments".into()));
    }
    ObjectPath::parse(key).map_err(|e| invalid(e.to_string()))
}

/// Maps the store's not-found to ours, naming the key the caller used.
fn not_found_as(key: &str, e: object_store::Error) -> StoreError {
    match e {
        object_store::Error::NotFound { .. } => StoreError::BlobNotFound(key.to_string()),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_keys_are_dated_and_named_by_id() {
        let at = DateTime::parse_from_rfc3339("2026-11-26T10:00:00Z")
            .unwrap()
            .to_utc();
        let id = ImageId::new();
        assert_eq!(
            image_key(id, OutputFormat::Png, at),
            format!("images/2026/11/26/{id}.png")
        );
    }

    #[test]
    fn escaping_keys_are_refused() {
        for bad in ["", "/abs", "a//b", "../etc/passwd", "a/./b", "dir/"] {
            assert_eq!(
                parse_key(bad).unwrap_err().code(),
                "invalid_object_key",
                "{bad}"
            );
        }
    }
}
