//! The S3 backend of [`Blobs`]: any S3-compatible store (AWS, MinIO,
//! SeaweedFS, Ceph, R2), through `object_store`'s client.
//!
//! - **Where**: `s3://<bucket>[/<prefix>]`. Endpoint, region and
//!   credentials come from the standard variables (`AWS_ENDPOINT_URL` or
//!   `AWS_ENDPOINT`, `AWS_REGION`/`AWS_DEFAULT_REGION`, `AWS_ACCESS_KEY_ID`,
//!   `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, web identity and
//!   container credentials), never from Easel's config file, so secrets stay
//!   in the platform's secret store. Requests use path-style addressing
//!   unless `AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true`; TLS (rustls, the
//!   system's roots) for `https://` endpoints, plain HTTP only when the
//!   endpoint itself says `http://`.
//! - **Retries**: a failed request (a 5xx, a timeout, a dropped connection)
//!   is retried with exponential backoff from 100 ms up to 15 s, at most
//!   [`S3Options::max_retries`] times within [`S3Options::retry_timeout`].
//! - **Encryption at rest**: [`ServerSideEncryption`] is sent with every
//!   upload (SSE-S3 or SSE-KMS with a key id).
//! - **Presigned links**: SigV4 query signatures for `GET`, so the API can
//!   send clients to the bucket (or a CDN) instead of proxying bytes.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::signer::Signer;
use object_store::{Attribute, Attributes, BackoffConfig, ObjectStore, PutOptions, RetryConfig};

use super::Blobs;
use crate::error::{Result, StoreError};

/// How objects are cached once delivered: keys are never reused, so for ever.
pub(crate) const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Server-side encryption of uploaded objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerSideEncryption {
    /// SSE-S3: the store's own keys (`AES256`).
    S3,
    /// SSE-KMS with this key id (or ARN).
    Kms {
        /// The KMS key id or ARN.
        key_id: String,
    },
}

/// Settings of the S3 backend that are not secrets (`[storage]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Options {
    /// At most this many retries of one request. Default 10.
    pub max_retries: usize,
    /// No retry starts later than this after the first attempt. Default 60 s.
    pub retry_timeout: Duration,
    /// Encryption at rest requested on upload; `None` leaves the bucket's
    /// default.
    pub encryption: Option<ServerSideEncryption>,
}

impl Default for S3Options {
    fn default() -> Self {
        Self {
            max_retries: 10,
            retry_timeout: Duration::from_secs(60),
            encryption: None,
        }
    }
}

/// What only the S3 backend has: the unprefixed client, for presigning and
/// the startup check.
#[derive(Debug)]
pub(crate) struct S3Extras {
    client: Arc<AmazonS3>,
    prefix: Option<ObjectPath>,
}

/// Builds the S3 backend for `url` (`rest` is the part after `s3://`),
/// configured from the `AWS_*` variables among `env`.
pub(crate) fn connect(
    url: &str,
    rest: &str,
    options: &S3Options,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Blobs> {
    let (bucket, prefix) = match rest.split_once('/') {
        Some((bucket, prefix)) => (bucket, prefix.trim_matches('/')),
        None => (rest, ""),
    };
    if bucket.is_empty() {
        return Err(StoreError::InvalidStorageUrl(format!(
            "`{url}` names no bucket; write s3://<bucket>[/<prefix>]"
        )));
    }
    let prefix = if prefix.is_empty() {
        None
    } else {
        Some(ObjectPath::parse(prefix).map_err(|e| {
            StoreError::InvalidStorageUrl(format!("`{url}`: the prefix is not a valid path: {e}"))
        })?)
    };
    // As `AmazonS3Builder::from_env` does, but from `env`: every `AWS_*`
    // variable object_store knows (`AWS_ENDPOINT_URL` included).
    let mut builder = AmazonS3Builder::new();
    for (name, value) in env {
        if name.starts_with("AWS_")
            && let Ok(key) = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>()
        {
            builder = builder.with_config(key, value);
        }
    }
    let mut builder = builder.with_bucket_name(bucket);
    if let Some(endpoint) = builder.get_config_value(&AmazonS3ConfigKey::Endpoint)
        && endpoint.starts_with("http://")
    {
        builder = builder.with_allow_http(true);
    }
    if builder
        .get_config_value(&AmazonS3ConfigKey::Region)
        .is_none()
        && builder
            .get_config_value(&AmazonS3ConfigKey::DefaultRegion)
            .is_none()
    {
        // S3-compatible stores ignore the region but SigV4 needs one.
        builder = builder.with_region("us-east-1");
    }
    builder = builder.with_retry(RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            base: 2.0,
        },
        max_retries: options.max_retries,
        retry_timeout: options.retry_timeout,
    });
    match &options.encryption {
        None => {}
        Some(ServerSideEncryption::S3) => {
            let key: AmazonS3ConfigKey = "aws_server_side_encryption"
                .parse()
                .map_err(|e| StoreError::InvalidStorageUrl(format!("{e}")))?;
            builder = builder.with_config(key, "AES256");
        }
        Some(ServerSideEncryption::Kms { key_id }) => {
            builder = builder.with_sse_kms_encryption(key_id.clone());
        }
    }
    let client = Arc::new(builder.build().map_err(|e| {
        StoreError::InvalidStorageUrl(format!("`{url}`: the S3 client cannot be built: {e}"))
    })?);
    let inner: Arc<dyn ObjectStore> = match &prefix {
        Some(prefix) => Arc::new(PrefixStore::new(client.clone(), prefix.clone())),
        None => client.clone(),
    };
    Ok(Blobs {
        inner,
        s3: Some(Arc::new(S3Extras { client, prefix })),
        location: url.trim_end_matches('/').to_string(),
    })
}

impl S3Extras {
    /// Lists the prefix once: a missing bucket, rejected credentials or an
    /// unreachable endpoint fail here, each said plainly.
    pub(crate) async fn check(&self, location: &str) -> Result<()> {
        let e = match self.client.list_with_delimiter(self.prefix.as_ref()).await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        // object_store reports a list's 403 and 404 as generic errors with
        // the S3 error document in the text: classify by the S3 codes.
        let text = e.to_string();
        let has = |codes: &[&str]| codes.iter().any(|c| text.contains(c));
        let message = if matches!(e, object_store::Error::NotFound { .. })
            || has(&["NoSuchBucket", "404 Not Found"])
        {
            format!("the bucket of {location} does not exist (create it first): {e}")
        } else if matches!(
            e,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        ) || has(&[
            "SignatureDoesNotMatch",
            "InvalidAccessKeyId",
            "AccessDenied",
            "403 Forbidden",
        ]) {
            format!(
                "{location} refused the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY): {e}"
            )
        } else {
            format!("{location} cannot be reached or used: {e}")
        };
        Err(StoreError::StorageUnavailable(message))
    }

    /// A SigV4-presigned `GET` of `key` (under the prefix), valid for `ttl`.
    pub(crate) async fn presign_get(&self, key: &ObjectPath, ttl: Duration) -> Result<String> {
        let full = match &self.prefix {
            Some(prefix) => prefix.parts().chain(key.parts()).collect(),
            None => key.clone(),
        };
        let url = self
            .client
            .signed_url(object_store::signer::Method::GET, &full, ttl)
            .await
            .map_err(StoreError::Blob)?;
        Ok(url.to_string())
    }
}

/// The upload options of an S3 object: immutable caching and, from the
/// key's extension, its content type.
pub(crate) fn put_options(key: &str) -> PutOptions {
    let mut attributes = Attributes::new();
    attributes.insert(Attribute::CacheControl, IMMUTABLE.into());
    if let Some(kind) = content_type(key) {
        attributes.insert(Attribute::ContentType, kind.into());
    }
    PutOptions {
        attributes,
        ..PutOptions::default()
    }
}

/// The media type of an object from its key's extension.
fn content_type(key: &str) -> Option<&'static str> {
    let (_, ext) = key.rsplit_once('.')?;
    Some(match ext {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "json" => "application/json",
        "jsonl" => "application/jsonl",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_without_a_bucket_are_refused() {
        let e = connect("s3://", "", &S3Options::default(), []).unwrap_err();
        assert_eq!(e.code(), "invalid_storage_url");
        assert!(e.to_string().contains("names no bucket"), "{e}");
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(content_type("images/2026/a-0.png"), Some("image/png"));
        assert_eq!(content_type("images/2026/a-0.jpeg"), Some("image/jpeg"));
        assert_eq!(content_type("images/2026/a-0.webp"), Some("image/webp"));
        assert_eq!(content_type("images/2026/a-0"), None);
        let options = put_options("inputs/x.png");
        assert_eq!(
            options
                .attributes
                .get(&Attribute::CacheControl)
                .map(|v| v.as_ref()),
            Some(IMMUTABLE)
        );
    }
}
