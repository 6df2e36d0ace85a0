//! Object storage for image bytes.
//!
//! [`Blobs`] wraps an `object_store` backend chosen by URL
//! ([`Blobs::connect`]): `file://<folder>` (or a plain path) for a folder on
//! disk, `s3://<bucket>[/<prefix>]` for any S3-compatible store (`s3`
//! module: endpoint, region and credentials from the standard `AWS_*`
//! variables, retries with backoff, server-side encryption, presigned
//! links). Callers see the same five operations either way.
//!
//! Objects are immutable: a key names one image's bytes for ever (keys
//! carry the job or image id), so an S3 object is uploaded with
//! `Cache-Control: public, max-age=31536000, immutable` and its content
//! type, and a CDN in front of the bucket may cache it for ever.
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
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Datelike, Utc};
use easel_core::{ImageId, OutputFormat};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutOptions, PutPayload};

use crate::error::{Result, StoreError};

mod s3;

pub use s3::{S3Options, ServerSideEncryption};

/// A handle to the object store: cheap to clone.
#[derive(Debug, Clone)]
pub struct Blobs {
    inner: Arc<dyn ObjectStore>,
    /// Set for S3: uploads carry caching headers, links can be presigned.
    s3: Option<Arc<s3::S3Extras>>,
    /// Where the objects are, for messages (`file:///…`, `s3://bucket/prefix`).
    location: String,
}

impl Blobs {
    /// Uses any object store (in-memory for tests, say). Uploads carry no
    /// extra headers and links cannot be presigned.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            s3: None,
            location: "(a custom object store)".into(),
        }
    }

    /// The object store at `url`: `file://<folder>` or a plain folder path
    /// (created if missing), or `s3://<bucket>[/<prefix>]` with `s3`'s
    /// settings. A malformed URL or an unknown scheme is
    /// [`StoreError::InvalidStorageUrl`]; nothing is contacted yet (see
    /// [`Blobs::check`]).
    pub fn connect(url: &str, s3: &S3Options) -> Result<Self> {
        Self::connect_with_env(url, s3, std::env::vars())
    }

    /// [`Blobs::connect`] reading the `AWS_*` variables from `env` instead
    /// of the process environment (tests, tools).
    pub fn connect_with_env(
        url: &str,
        s3: &S3Options,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        if let Some(rest) = url.strip_prefix("s3://") {
            return s3::connect(url, rest, s3, env);
        }
        if let Some(path) = url.strip_prefix("file://") {
            if path.is_empty() {
                return Err(StoreError::InvalidStorageUrl(format!(
                    "`{url}` names no folder; write file:///absolute/path or a plain path"
                )));
            }
            return Self::local(path);
        }
        if let Some((scheme, _)) = url.split_once("://") {
            return Err(StoreError::InvalidStorageUrl(format!(
                "`{url}`: unknown scheme `{scheme}`; use file://<folder> or s3://<bucket>[/<prefix>]"
            )));
        }
        Self::local(url)
    }

    /// Where the objects are, for logs and messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Whether links to objects can be presigned (S3 only).
    pub fn can_presign(&self) -> bool {
        self.s3.is_some()
    }

    /// Checks that the store can be used: the folder exists, or the bucket
    /// exists and the credentials are accepted. A startup check: the error
    /// says which of those failed.
    pub async fn check(&self) -> Result<()> {
        match &self.s3 {
            None => Ok(()),
            Some(extras) => extras.check(&self.location).await,
        }
    }

    /// A presigned `GET` link to the object under `key`, valid for `ttl`;
    /// `None` when the store cannot presign (a local folder).
    pub async fn presigned_get(&self, key: &str, ttl: Duration) -> Result<Option<String>> {
        match &self.s3 {
            None => Ok(None),
            Some(extras) => extras.presign_get(&parse_key(key)?, ttl).await.map(Some),
        }
    }

    /// Stores objects as files under `root`, creating the folder if missing.
    pub fn local(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        std::fs::create_dir_all(root).map_err(|e| StoreError::Open {
            path: root.display().to_string(),
            source: Box::new(e),
        })?;
        let fs = LocalFileSystem::new_with_prefix(root)?.with_fsync(true);
        let location = match root.canonicalize() {
            Ok(abs) => format!("file://{}", abs.display()),
            Err(_) => root.display().to_string(),
        };
        Ok(Self {
            inner: Arc::new(fs),
            s3: None,
            location,
        })
    }

    /// Stores `bytes` under `key`, replacing any previous object atomically.
    /// On S3 the object carries its content type and immutable caching
    /// headers; failed requests are retried with backoff (`S3Options`).
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        let path = parse_key(key)?;
        let options = match &self.s3 {
            Some(_) => s3::put_options(key),
            None => PutOptions::default(),
        };
        self.inner
            .put_opts(&path, PutPayload::from(bytes), options)
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

    /// Every key under `prefix` (a folder-like `images/2026/`, or `""` for
    /// all), in no particular order: for audits that compare objects with
    /// image rows, and for the fault tests.
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        use futures::TryStreamExt as _;
        let prefix = match prefix.trim_end_matches('/') {
            "" => None,
            p => Some(parse_key(p)?),
        };
        let listed: Vec<_> = self.inner.list(prefix.as_ref()).try_collect().await?;
        Ok(listed
            .into_iter()
            .map(|meta| meta.location.to_string())
            .collect())
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
